//! The vendor report as a document: [`ProbeReport::to_html`] (one self-contained page, inline
//! CSS and SVG, nothing loaded from anywhere) and [`ProbeReport::to_markdown`] (the same
//! content for a ticket). The report module owns the verdicts and the evidence module what the
//! bytes are; this one only chooses what a vendor's network team sees and in which order: the
//! summary, then per address the findings with their known bug and references, a drawing of
//! the hellos, every test, and for each failing test its hello against the closest passing one.
//!
//! Both renderers read the same [`Evidence`] list, so the HTML and the Markdown cannot show
//! different failing tests, diffs or commands.

mod chart;
mod html;
mod markdown;

use super::evidence::{
    closest_passing, hello_diff, hello_fields, hex_dump, known_bug, FailedHow, FieldKind,
    HelloDiff, HexLine, KnownBug, Reference, RFC7507, RFC7685, RFC8446_BACKWARD,
    RFC8446_INVARIANTS, TLDR_FAIL,
};
use super::{Finding, ProbeReport, ProbeTest, TestId, TestOutcome};
use crate::wire::{alert, EXT_KEY_SHARE, EXT_SUPPORTED_GROUPS};

/// What a rendered report carries besides the report itself.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct RenderOptions<'a> {
    /// The pcapng file written next to the report (`--pcap FILE`), named in its details.
    pub pcap: Option<&'a str>,
}

impl ProbeReport {
    /// The report as one self-contained HTML page for the vendor: inline CSS and SVG, a
    /// Content-Security-Policy that lets nothing load, every string from the report escaped.
    ///
    /// ```
    /// # fn show(report: &tls_fallback::probe::ProbeReport) -> std::io::Result<()> {
    /// std::fs::write("probe-report.html", report.to_html())?;
    /// # Ok(()) }
    /// ```
    pub fn to_html(&self) -> String {
        html::render(self, RenderOptions::default())
    }

    /// As [`to_html`](Self::to_html), naming the pcapng file written with it (`--pcap FILE`)
    /// so the vendor knows to look for it.
    pub fn to_html_with(&self, pcap: Option<&str>) -> String {
        html::render(self, RenderOptions { pcap })
    }

    /// The report as GitHub-flavoured Markdown for a ticket: the same content as the HTML,
    /// with tables, and hex dumps and commands in fenced code blocks (`^^` under the bytes
    /// that differ from the closest passing hello).
    pub fn to_markdown(&self) -> String {
        markdown::render(self, RenderOptions::default())
    }

    /// As [`to_markdown`](Self::to_markdown), naming the pcapng file written with it.
    pub fn to_markdown_with(&self, pcap: Option<&str>) -> String {
        markdown::render(self, RenderOptions { pcap })
    }
}

/// One failing test with everything a vendor needs to see it fail.
pub(super) struct Evidence<'a> {
    /// The failing test.
    pub test: &'a ProbeTest,
    /// The passing hello closest to it, if any passed.
    pub passing: Option<&'a ProbeTest>,
    /// The two hellos compared (absent without a passing one).
    pub diff: Option<HelloDiff>,
    /// What differs, in sentences, how the bytes were written included.
    pub differences: Vec<String>,
    /// The known bug this failure matches.
    pub bug: Option<KnownBug>,
}

impl Evidence<'_> {
    /// The failing hello's dump, its differing fields highlighted.
    pub fn failing_dump(&self) -> Vec<HexLine> {
        let marks = self.diff.as_ref().map(|d| d.failing_highlights());
        hex_dump(&self.test.record, &marks.unwrap_or_default())
    }

    /// The passing hello's dump, its differing fields highlighted.
    pub fn passing_dump(&self) -> Option<Vec<HexLine>> {
        let p = self.passing?;
        let marks = self.diff.as_ref().map(|d| d.passing_highlights());
        Some(hex_dump(&p.record, &marks.unwrap_or_default()))
    }

    /// The failing hello's differing fields: name, offset, length, what they say.
    pub fn highlighted_fields(&self) -> Vec<String> {
        let Some(diff) = &self.diff else {
            return Vec::new();
        };
        diff.failing
            .iter()
            .filter(|f| f.differs)
            .map(|f| {
                let field = &f.field;
                format!(
                    "{} at offset {:#06x}, {} bytes: {}",
                    field.name,
                    field.start,
                    field.bytes.len(),
                    field.note
                )
            })
            .collect()
    }
}

/// The tests a vendor must see fail, in the order they ran: the failed tests a finding rests
/// on, and the failed tests that match a known bug (refusing TLS 1.0 is not one). Without any
/// TLS answer, only the finding's own tests (every hello failed the same way).
pub(super) fn evidence(r: &ProbeReport) -> Vec<Evidence<'_>> {
    let in_finding = |id: TestId| r.findings.iter().any(|f| f.tests.contains(&id));
    let shown = |t: &&ProbeTest| {
        let Some(how) = FailedHow::of(&t.outcome) else {
            return false;
        };
        if t.record.is_empty() {
            return false;
        }
        match t.name {
            TestId::FallbackScsv => in_finding(t.name),
            _ if r.no_tls_answer.is_some() => t.failed() && in_finding(t.name),
            _ => t.failed() && (in_finding(t.name) || known_bug(t.name, how).is_some()),
        }
    };
    r.tests
        .iter()
        .filter(shown)
        .map(|t| evidence_of(r, t))
        .collect()
}

fn evidence_of<'a>(r: &'a ProbeReport, t: &'a ProbeTest) -> Evidence<'a> {
    let candidates: Vec<&ProbeTest> = r
        .tests
        .iter()
        .filter(|p| p.server_hello() && !p.record.is_empty() && p.name != t.name)
        .collect();
    let records: Vec<&[u8]> = candidates.iter().map(|p| p.record.as_slice()).collect();
    let passing = closest_passing(&t.record, &records).and_then(|i| candidates.get(i).copied());
    let diff = passing.map(|p| hello_diff(&t.record, &p.record));
    let mut differences = diff
        .as_ref()
        .map(|d| d.sentences.clone())
        .unwrap_or_default();
    if let Some(p) = passing {
        if t.segments.len() != p.segments.len() {
            differences.push(format!(
                "written in {} vs {}",
                segments_text(&t.segments),
                segments_text(&p.segments)
            ));
        }
    }
    if passing.is_some() && differences.is_empty() {
        differences.push("the same bytes apart from the random".into());
    }
    Evidence {
        test: t,
        passing,
        diff,
        differences,
        bug: FailedHow::of(&t.outcome).and_then(|how| known_bug(t.name, how)),
    }
}

/// A test's reproduction command and its caveat, which the report appends as a shell comment
/// (`  # ...`); the comment is split off only where a shell would read one, never inside a
/// quoted argument (a server name `x'  # y` is quoted `'x'\''  # y'`).
pub(super) fn command_and_note(t: &ProbeTest) -> Option<(&str, Option<&str>)> {
    let line = t.reproduce.as_deref()?;
    match unquoted_comment(line) {
        Some(at) => Some((line.get(..at)?, line.get(at + 4..))),
        None => Some((line, None)),
    }
}

/// Where the last `"  # "` outside single quotes and backslash escapes (the quoting the
/// evidence module writes) starts.
fn unquoted_comment(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let (mut quoted, mut escaped, mut found) = (false, false, None);
    for (i, &b) in bytes.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\'' => quoted = !quoted,
            b'\\' if !quoted => escaped = true,
            b' ' if !quoted && bytes.get(i..).is_some_and(|r| r.starts_with(b"  # ")) => {
                found = Some(i)
            }
            _ => {}
        }
    }
    found
}

/// "2 TCP segments (106 + 111 bytes)", "1 TCP segment (217 bytes)".
pub(super) fn segments_text(segments: &[usize]) -> String {
    let sizes: Vec<String> = segments.iter().map(usize::to_string).collect();
    let s = if segments.len() == 1 { "" } else { "s" };
    format!(
        "{} TCP segment{s} ({} bytes)",
        segments.len(),
        sizes.join(" + ")
    )
}

/// The references of a finding: those of the known bugs its failing tests match, else the
/// documents its kind rests on.
pub(super) fn references(f: &Finding, evidence: &[Evidence<'_>]) -> Vec<Reference> {
    let mut out: Vec<Reference> = Vec::new();
    let bugs = evidence
        .iter()
        .filter(|e| f.tests.contains(&e.test.name))
        .filter_map(|e| e.bug.as_ref());
    for r in bugs.flat_map(|b| b.references.iter()) {
        if !out.contains(r) {
            out.push(*r);
        }
    }
    if out.is_empty() {
        out = match f.id {
            "long_handshake" => vec![RFC7685],
            "higher_version_blocked" | "scsv_ignored" => vec![RFC7507, RFC8446_BACKWARD],
            "version_intolerance" => vec![RFC8446_BACKWARD, RFC8446_INVARIANTS],
            "long_hello" | "split_hello" | "pq_key_share" => vec![TLDR_FAIL, RFC8446_INVARIANTS],
            "cipher_count" | "unknown_extension" => vec![RFC8446_INVARIANTS],
            _ => Vec::new(),
        };
    }
    out
}

/// The known bugs a finding's failing tests match, each once.
pub(super) fn finding_bugs<'a>(f: &Finding, evidence: &'a [Evidence<'_>]) -> Vec<&'a KnownBug> {
    let mut out: Vec<&KnownBug> = Vec::new();
    let bugs = evidence
        .iter()
        .filter(|e| f.tests.contains(&e.test.name))
        .filter_map(|e| e.bug.as_ref());
    for b in bugs {
        if !out.iter().any(|x| x.name == b.name) {
            out.push(b);
        }
    }
    out
}

/// How a test ended, as a class a device log shows: the ServerHello's version, FIN, RST, the
/// alert's name and number, the timeout.
pub(super) fn outcome_class(t: &ProbeTest) -> String {
    match &t.outcome {
        TestOutcome::ServerHello(v) => format!("ServerHello TLS {v}"),
        TestOutcome::Alert(n) => format!("alert {} ({n})", alert::name(*n)),
        TestOutcome::Closed => "FIN (closed, no answer)".into(),
        TestOutcome::Reset => "RST (reset)".into(),
        TestOutcome::Timeout => format!("timeout after {} ms", t.ms),
        TestOutcome::Connected(profile) => match t.negotiated {
            Some(v) => format!("connected ({profile}, TLS {v})"),
            None => format!("connected ({profile})"),
        },
        other => other.to_string(),
    }
}

/// The colour class of an outcome: `ok`, `alert`, `fin`, `rst`, `timeout` or `other`.
pub(super) fn outcome_kind(outcome: &TestOutcome) -> &'static str {
    match outcome {
        TestOutcome::ServerHello(_) | TestOutcome::Connected(_) | TestOutcome::ConnectedPlain => {
            "ok"
        }
        TestOutcome::Alert(_) => "alert",
        TestOutcome::Closed => "fin",
        TestOutcome::Reset => "rst",
        TestOutcome::Timeout => "timeout",
        _ => "other",
    }
}

/// What a hello offered, in one line: versions, suites, extensions, groups, key shares.
pub(super) fn hello_summary(t: &ProbeTest) -> String {
    let Some(o) = &t.offer else {
        return String::new();
    };
    let versions: Vec<String> = o.versions.iter().map(ToString::to_string).collect();
    let fields = hello_fields(&t.record);
    let note = |ty: u16| {
        fields
            .iter()
            .find(|f| f.kind == FieldKind::Extension(ty))
            .map(|f| f.note.clone())
    };
    let groups = note(EXT_SUPPORTED_GROUPS).unwrap_or_else(|| o.groups.join(", "));
    let shares = note(EXT_KEY_SHARE).unwrap_or_else(|| o.key_shares.join(", "));
    let mut parts = vec![
        format!("TLS {}", versions.join(", ")),
        format!(
            "{} suites{}",
            o.suites,
            if o.scsv { " (with SCSV)" } else { "" }
        ),
        format!("{} extensions", o.extensions),
    ];
    if !groups.is_empty() {
        parts.push(format!("groups {groups}"));
    }
    if !shares.is_empty() {
        parts.push(format!("key shares {shares}"));
    }
    parts.join("; ")
}

/// A hex dump's lines with runs of three or more identical lines (long zero padding) cut to
/// the first and a count, as `hexdump` does with `*`.
pub(super) enum DumpLine<'a> {
    /// A line to show.
    Line(&'a HexLine),
    /// This many lines like the one before were left out.
    Same(usize),
}

pub(super) fn squeeze(lines: &[HexLine]) -> Vec<DumpLine<'_>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = &lines[i];
        let same = lines[i + 1..]
            .iter()
            .take_while(|l| l.bytes == line.bytes && l.highlighted == line.highlighted)
            .count();
        out.push(DumpLine::Line(line));
        if same >= 2 {
            out.push(DumpLine::Same(same));
            i += same + 1;
        } else {
            i += 1;
        }
    }
    out
}

/// The one-word state of an address, for the badge: "problems", "not reachable", "no TLS
/// answer" or "no problems".
pub(super) fn status(r: &ProbeReport) -> (&'static str, &'static str) {
    if r.unreachable.is_some() {
        ("not reachable", "bad")
    } else if r.no_tls_answer.is_some() {
        ("no TLS answer", "bad")
    } else if !r.findings.is_empty() {
        ("problems found", "bad")
    } else {
        ("no problems found", "good")
    }
}

/// The name's state: problems if any address has one.
pub(super) fn overall_status(r: &ProbeReport) -> (&'static str, &'static str) {
    let all = r.per_address();
    if all.iter().any(|a| status(a).1 == "bad") {
        let n = all.iter().filter(|a| status(a).1 == "bad").count();
        if all.len() > 1 && n < all.len() {
            return ("problems on some addresses", "bad");
        }
        return status(all.iter().find(|a| status(a).1 == "bad").unwrap_or(&r));
    }
    ("no problems found", "good")
}

/// The SSL Labs fields, as the JSON carries them, with their bits in words.
pub(super) fn ssl_labs(r: &ProbeReport) -> Vec<(&'static str, String)> {
    let bits = |v: u32, names: &[(u32, &str)]| {
        let set: Vec<&str> = names
            .iter()
            .filter(|(b, _)| v & b != 0)
            .map(|(_, n)| *n)
            .collect();
        if set.is_empty() {
            format!("{v} (none)")
        } else {
            format!("{v} ({})", set.join(", "))
        }
    };
    let protocol = [
        (1, "TLS 1.0"),
        (2, "TLS 1.1"),
        (4, "TLS 1.2"),
        (8, "TLS 1.3"),
        (16, "0x0398"),
        (32, "0x0498"),
    ];
    let misc = [
        (1, "extension"),
        (2, "long handshake"),
        (4, "long-handshake workaround works"),
    ];
    vec![
        (
            "protocolIntolerance",
            bits(r.protocol_intolerance, &protocol),
        ),
        ("miscIntolerance", bits(r.misc_intolerance, &misc)),
        ("fallbackScsv", r.fallback_scsv_bool.to_string()),
    ]
}

#[cfg(test)]
mod tests;
