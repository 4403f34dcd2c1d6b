//! A failing hello against a passing one: fields paired by name, which differ, and what the
//! differences are in plain sentences. The random is new in every test, so it is marked as
//! such and never reported as a cause; the record header, handshake header and extensions
//! length follow from the other fields' sizes, so they are highlighted but summed up in the
//! one "length" sentence.

use std::ops::Range;

use serde::Serialize;

use super::fields::{hello_fields, Field, FieldKind};
use super::names::extension_short_name;

/// One side's field, with whether it differs from the other side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffField {
    /// The field.
    #[serde(flatten)]
    pub field: Field,
    /// The other hello has no field of this name, or its bytes are different. Always false
    /// for the random (see `new_every_test`).
    pub differs: bool,
    /// The field changes in every test by design (the random): not a cause.
    pub new_every_test: bool,
}

/// The comparison of a failing and a passing hello.
///
/// ```
/// use tls_fallback::probe::evidence::hello_diff;
/// use tls_fallback::probe::hello::{build_client_hello, HelloSpec, TLS13};
///
/// let passing = HelloSpec::up_to(TLS13, Some("example.com".into()));
/// let mut failing = passing.clone();
/// failing.pad_to = Some(1550);
/// let diff = hello_diff(&build_client_hello(&failing), &build_client_hello(&passing));
/// assert!(diff.sentences[0].starts_with("length 1550 bytes vs "));
/// assert!(diff.sentences.iter().any(|s| s.starts_with("padding extension: ") && s.ends_with(" vs absent")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HelloDiff {
    /// The failing hello's fields, in wire order.
    pub failing: Vec<DiffField>,
    /// The passing hello's fields, in wire order.
    pub passing: Vec<DiffField>,
    /// What differs, one plain sentence each, the length first ("length 1550 bytes vs 517",
    /// "padding extension: 1033 bytes vs absent"). How the bytes were written (one TCP
    /// segment or two) is not in the bytes: the caller adds it.
    pub sentences: Vec<String>,
}

impl HelloDiff {
    /// Ranges of the failing hello's differing fields, for [`hex_dump`](super::hex_dump).
    pub fn failing_highlights(&self) -> Vec<Range<usize>> {
        highlights(&self.failing)
    }

    /// Ranges of the passing hello's differing fields, for [`hex_dump`](super::hex_dump).
    pub fn passing_highlights(&self) -> Vec<Range<usize>> {
        highlights(&self.passing)
    }
}

fn highlights(side: &[DiffField]) -> Vec<Range<usize>> {
    side.iter()
        .filter(|f| f.differs)
        .map(|f| f.field.range())
        .collect()
}

/// Compares two ClientHello records field by field (see [`hello_fields`]); never panics.
pub fn hello_diff(failing: &[u8], passing: &[u8]) -> HelloDiff {
    let f = hello_fields(failing);
    let p = hello_fields(passing);
    let mut sentences = Vec::new();
    sentences.extend(length_sentence(failing, &f, passing, &p));
    for field in &f {
        match find(&p, &field.name) {
            Some(other) if is_cause(field) && other.bytes != field.bytes => {
                sentences.push(changed(field, other));
            }
            None if is_cause(field) => {
                sentences.push(format!("{}: {} vs absent", label(field), field.note))
            }
            _ => {}
        }
    }
    for field in p
        .iter()
        .filter(|x| is_cause(x) && find(&f, &x.name).is_none())
    {
        sentences.push(format!("{}: absent vs {}", label(field), field.note));
    }
    HelloDiff {
        failing: mark(&f, &p),
        passing: mark(&p, &f),
        sentences,
    }
}

/// Index of the passing hello closest to `failing`: the fewest differing fields (the random
/// and the length-derived headers not counted), ties broken by the closer length, then by the
/// earlier index. `None` if `passing` is empty.
///
/// ```
/// use tls_fallback::probe::evidence::closest_passing;
/// use tls_fallback::probe::hello::{build_client_hello, HelloSpec, TLS12, TLS13};
///
/// let mut long = HelloSpec::up_to(TLS13, None);
/// long.pad_to = Some(1550);
/// let mut padded = HelloSpec::up_to(TLS13, None);
/// padded.pad_to = Some(512);
/// let tls12 = build_client_hello(&HelloSpec::up_to(TLS12, None));
/// let padded = build_client_hello(&padded);
/// let pick = closest_passing(&build_client_hello(&long), &[&tls12, &padded]);
/// assert_eq!(pick, Some(1));
/// ```
pub fn closest_passing(failing: &[u8], passing: &[&[u8]]) -> Option<usize> {
    let f = hello_fields(failing);
    passing
        .iter()
        .enumerate()
        .min_by_key(|(i, p)| {
            let fields = hello_fields(p);
            let count = causes(&f, &fields) + missing(&fields, &f);
            (count, failing.len().abs_diff(p.len()), *i)
        })
        .map(|(i, _)| i)
}

/// How many cause fields of `a` have no identical field of the same name in `b`.
fn causes(a: &[Field], b: &[Field]) -> usize {
    a.iter()
        .filter(|x| is_cause(x))
        .filter(|x| find(b, &x.name).is_none_or(|y| y.bytes != x.bytes))
        .count()
}

/// How many cause fields of `a` have no field of the same name in `b`.
fn missing(a: &[Field], b: &[Field]) -> usize {
    a.iter()
        .filter(|x| is_cause(x) && find(b, &x.name).is_none())
        .count()
}

fn mark(side: &[Field], other: &[Field]) -> Vec<DiffField> {
    side.iter()
        .map(|field| {
            let new_every_test = field.kind == FieldKind::Random;
            let same = find(other, &field.name).is_some_and(|o| o.bytes == field.bytes);
            DiffField {
                field: field.clone(),
                differs: !same && !new_every_test,
                new_every_test,
            }
        })
        .collect()
}

fn find<'a>(fields: &'a [Field], name: &str) -> Option<&'a Field> {
    fields.iter().find(|f| f.name == name)
}

/// A field whose difference can explain a different outcome.
fn is_cause(f: &Field) -> bool {
    f.kind != FieldKind::Random && !f.kind.is_derived()
}

/// "padding extension", "cipher suites", "unparsed".
fn label(f: &Field) -> String {
    match f.kind {
        FieldKind::Extension(ty) => {
            // Repeated extensions carry a " #n" suffix in their name: keep it.
            let suffix = f.name.rfind(" #").map_or("", |i| &f.name[i..]);
            format!("{} extension{suffix}", extension_short_name(ty))
        }
        _ => f.name.clone(),
    }
}

fn changed(field: &Field, other: &Field) -> String {
    if field.note == other.note {
        format!(
            "{}: different bytes ({} vs {} bytes)",
            label(field),
            field.bytes.len(),
            other.bytes.len()
        )
    } else {
        format!("{}: {} vs {}", label(field), field.note, other.note)
    }
}

/// "length N bytes vs M": the handshake message lengths (the size that matters to middleboxes
/// and to the F5 window), or the whole records' when either has no handshake header.
fn length_sentence(failing: &[u8], f: &[Field], passing: &[u8], p: &[Field]) -> Option<String> {
    let has_hs = |x: &[Field]| x.iter().any(|f| f.kind == FieldKind::HandshakeHeader);
    let (fl, pl, basis) = if has_hs(f) && has_hs(p) {
        (
            failing.len().saturating_sub(5),
            passing.len().saturating_sub(5),
            "",
        )
    } else {
        (failing.len(), passing.len(), " (whole records)")
    };
    (fl != pl).then(|| format!("length {fl} bytes vs {pl}{basis}"))
}
