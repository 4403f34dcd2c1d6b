//! A ClientHello record cut into named byte ranges, each with a short note in words.
//!
//! The cutter never trusts a length field: each part must fit in the bytes that are there and
//! in the structure around it (record, handshake message, extensions block). Where it stops,
//! the rest of the input becomes one `unparsed` field that says why, so garbage, a truncated
//! capture or trailing bytes still render as a dump with labels up to the point of trouble.

use std::ops::Range;

use serde::{Serialize, Serializer};

use super::names::{
    cipher_suites_note, compression_note, extension_name, extension_note, version_list_entry,
};
use crate::wire::{CT_HANDSHAKE, HS_CLIENT_HELLO};

/// What part of a ClientHello a [`Field`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "type")]
pub enum FieldKind {
    /// The 5-byte record header (content type, record version, length).
    RecordHeader,
    /// The 4-byte handshake header (message type, 24-bit length).
    HandshakeHeader,
    /// `legacy_version` (the "client_version" of TLS 1.2 and below).
    LegacyVersion,
    /// The 32-byte client random: new in every test, so never the cause of a difference.
    Random,
    /// `legacy_session_id`, length byte included.
    SessionId,
    /// The cipher suite list, length included.
    CipherSuites,
    /// The compression methods, length byte included.
    CompressionMethods,
    /// The 2-byte length of the extensions block.
    ExtensionsLength,
    /// One extension (4-byte header and data) of this type.
    Extension(u16),
    /// Bytes the cutter could not place (the note says why).
    Unparsed,
}

impl FieldKind {
    /// Whether the field only follows from the others' lengths (record header, handshake
    /// header, extensions length), so a difference in it is a consequence, not a cause.
    pub fn is_derived(self) -> bool {
        matches!(
            self,
            FieldKind::RecordHeader | FieldKind::HandshakeHeader | FieldKind::ExtensionsLength
        )
    }
}

/// One named byte range of a ClientHello record.
///
/// ```
/// use tls_fallback::probe::evidence::{hello_fields, FieldKind};
/// use tls_fallback::probe::hello::{build_client_hello, HelloSpec, TLS13};
///
/// let record = build_client_hello(&HelloSpec::up_to(TLS13, Some("example.com".into())));
/// let fields = hello_fields(&record);
/// assert_eq!(fields[0].name, "record header");
/// let versions = fields.iter().find(|f| f.name.contains("supported_versions")).unwrap();
/// assert_eq!(versions.note, "TLS 1.3, 1.2, 1.1, 1.0");
/// assert!(fields.iter().all(|f| f.kind != FieldKind::Unparsed));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field {
    /// Display name, unique within one hello ("cipher suites", "extension key_share (51)").
    pub name: String,
    /// What part of the hello this is.
    #[serde(flatten)]
    pub kind: FieldKind,
    /// Offset of the first byte in the record.
    pub start: usize,
    /// The bytes (serialized as lowercase hex).
    #[serde(serialize_with = "as_hex")]
    pub bytes: Vec<u8>,
    /// What the bytes say, in words ("TLS 1.3, 1.2", "1033 bytes", "17 suites").
    pub note: String,
}

impl Field {
    /// The field's byte range in the record.
    pub fn range(&self) -> Range<usize> {
        self.start..self.start.saturating_add(self.bytes.len())
    }
}

fn as_hex<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&super::hex::Hex(bytes))
}

/// Cuts a ClientHello record (5-byte record header, then the handshake message, as
/// [`build_client_hello`](crate::probe::hello::build_client_hello) returns it) into named
/// fields, in wire order. Never panics: on garbage, truncation or trailing bytes, the fields
/// parsed so far come first, then one field of kind [`FieldKind::Unparsed`] with the rest (empty
/// when the input ends exactly where a field was due) and a note saying why.
///
/// Only the first record is read; a hello fragmented over several records ends in an
/// `unparsed` field saying so (the probe's builder always writes one record).
pub fn hello_fields(record: &[u8]) -> Vec<Field> {
    let mut cut = Cutter {
        data: record,
        pos: 0,
        fields: Vec::new(),
    };
    let (why, stopped) = match cut.hello() {
        Ok(()) => ("bytes after the end of the ClientHello".to_string(), false),
        Err(why) => (why, true),
    };
    // After a stop the field is there even when empty: it carries why parsing stopped.
    let rest = record.get(cut.pos..).unwrap_or_default();
    if stopped || !rest.is_empty() {
        cut.fields.push(Field {
            name: "unparsed".into(),
            kind: FieldKind::Unparsed,
            start: cut.pos,
            bytes: rest.to_vec(),
            note: format!("{} bytes: {why}", rest.len()),
        });
    }
    unique_names(&mut cut.fields);
    cut.fields
}

/// Appends " #2", " #3"... to repeated names (a hostile hello may repeat an extension), so
/// names can pair the fields of two hellos.
fn unique_names(fields: &mut [Field]) {
    let mut seen: Vec<String> = Vec::with_capacity(fields.len());
    for f in fields.iter_mut() {
        let mut n = 1;
        let base = f.name.clone();
        while seen.contains(&f.name) {
            n += 1;
            f.name = format!("{base} #{n}");
        }
        seen.push(f.name.clone());
    }
}

/// The cursor: every step checks that its bytes exist and fit the enclosing structure.
struct Cutter<'a> {
    data: &'a [u8],
    pos: usize,
    fields: Vec<Field>,
}

type Step<T = ()> = Result<T, String>;

impl<'a> Cutter<'a> {
    fn hello(&mut self) -> Step {
        let header = self.field("record header", FieldKind::RecordHeader, 5, 5, record_note)?;
        if header.first() != Some(&CT_HANDSHAKE) {
            return Err("the record is not a handshake record".into());
        }
        let record_end = 5 + be(&header[3..5]);
        let msg = self.field(
            "handshake header",
            FieldKind::HandshakeHeader,
            4,
            record_end,
            handshake_note,
        )?;
        if msg.first() != Some(&HS_CLIENT_HELLO) {
            return Err("the handshake message is not a ClientHello".into());
        }
        let declared_end = 9 + be(&msg[1..4]);
        let end = declared_end.min(record_end);
        let body = self.body(end);
        if declared_end > record_end {
            // A hello fragmented over records (or a lying length): say so, not which field
            // the record boundary happened to cut.
            return Err(format!(
                "the ClientHello continues past this record ({} more bytes declared)",
                declared_end - record_end
            ));
        }
        body
    }

    /// The ClientHello body up to `end`.
    fn body(&mut self, end: usize) -> Step {
        self.field("legacy_version", FieldKind::LegacyVersion, 2, end, |b| {
            version_list_entry(be(b) as u16)
        })?;
        self.field("random", FieldKind::Random, 32, end, |_| {
            "32 bytes, new in every test".into()
        })?;
        let sid = self.prefixed("session id", FieldKind::SessionId, 1, end, |d| {
            if d.is_empty() {
                "empty".into()
            } else {
                format!("{} bytes", d.len())
            }
        });
        sid?;
        self.prefixed(
            "cipher suites",
            FieldKind::CipherSuites,
            2,
            end,
            cipher_suites_note,
        )?;
        self.prefixed(
            "compression methods",
            FieldKind::CompressionMethods,
            1,
            end,
            compression_note,
        )?;
        if self.pos >= end {
            return Ok(()); // a hello without extensions (allowed up to TLS 1.2)
        }
        let len = self.field(
            "extensions length",
            FieldKind::ExtensionsLength,
            2,
            end,
            |b| format!("{} bytes", be(b)),
        )?;
        let ext_end = (self.pos + be(len)).min(end);
        while self.pos < ext_end {
            self.extension(ext_end)?;
        }
        if self.pos < end {
            return Err("the extensions length is shorter than the message".into());
        }
        Ok(())
    }

    fn extension(&mut self, end: usize) -> Step {
        let head = self
            .data
            .get(self.pos..self.pos.saturating_add(4))
            .filter(|_| self.pos + 4 <= end)
            .ok_or("an extension header is cut short")?;
        let ty = be(&head[..2]) as u16;
        let len = be(&head[2..4]);
        let name = format!("extension {}", extension_name(ty));
        self.field(&name, FieldKind::Extension(ty), 4 + len, end, |b| {
            extension_note(ty, b.get(4..).unwrap_or_default())
        })?;
        Ok(())
    }

    /// A vector with a `width`-byte length prefix, the prefix included in the field.
    fn prefixed(
        &mut self,
        name: &str,
        kind: FieldKind,
        width: usize,
        end: usize,
        note: impl FnOnce(&[u8]) -> String,
    ) -> Step {
        let prefix = self
            .data
            .get(self.pos..self.pos.saturating_add(width))
            .ok_or_else(|| format!("the {name} length is cut short"))?;
        let len = be(prefix);
        self.field(name, kind, width + len, end, |b| {
            note(b.get(width..).unwrap_or_default())
        })?;
        Ok(())
    }

    /// Takes `len` bytes as one field if they exist and end by `end`.
    fn field(
        &mut self,
        name: &str,
        kind: FieldKind,
        len: usize,
        end: usize,
        note: impl FnOnce(&[u8]) -> String,
    ) -> Step<&'a [u8]> {
        let stop = self.pos.saturating_add(len);
        let bytes = self
            .data
            .get(self.pos..stop)
            .filter(|_| stop <= end)
            .ok_or_else(|| {
                cut_short(name, len, end.min(self.data.len()).saturating_sub(self.pos))
            })?;
        self.fields.push(Field {
            name: name.to_string(),
            kind,
            start: self.pos,
            bytes: bytes.to_vec(),
            note: note(bytes),
        });
        self.pos = stop;
        Ok(bytes)
    }
}

fn cut_short(name: &str, need: usize, left: usize) -> String {
    format!("{name} needs {need} bytes, {left} left")
}

/// Big-endian value of up to 3 bytes (lengths and codes).
fn be(b: &[u8]) -> usize {
    b.iter().fold(0, |acc, &x| acc << 8 | usize::from(x))
}

fn record_note(b: &[u8]) -> String {
    let ty = match b[0] {
        CT_HANDSHAKE => "handshake".to_string(),
        t => format!("content type {t}, not handshake"),
    };
    let version = version_list_entry(be(&b[1..3]) as u16);
    format!("{ty}, version {version}, length {}", be(&b[3..5]))
}

fn handshake_note(b: &[u8]) -> String {
    let ty = match b[0] {
        HS_CLIENT_HELLO => "client_hello".to_string(),
        t => format!("handshake type {t}, not client_hello"),
    };
    format!("{ty}, length {}", be(&b[1..4]))
}
