//! The report as GitHub-flavoured Markdown for a ticket: the HTML page's content in the same
//! order, tables for the tests, the drawing as text, hex dumps and commands in fenced code
//! blocks with `^^` under the bytes that differ. Every string from the report goes through
//! [`md`] (prose and table cells) or [`fence`] (code blocks), so a hostile host name cannot
//! add markup, a link or a table column.

use std::fmt::Write as _;

use super::chart::ONE_SEGMENT;
use super::{
    command_and_note, evidence, finding_bugs, hello_summary, outcome_class, overall_status,
    references, segments_text, squeeze, ssl_labs, status, DumpLine, Evidence, RenderOptions,
};
use crate::probe::evidence::HexLine;
use crate::probe::{Finding, ProbeReport, ProbeTest};

/// Text for Markdown prose or a table cell: punctuation that could start markup is escaped
/// with a backslash, line breaks become spaces.
pub(super) fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '!' | '~' | '&' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

/// A fenced code block that `body` cannot close: a fence longer than any backtick run in it.
fn fence(s: &mut String, info: &str, body: &str) {
    let longest = body.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let f = "`".repeat(longest.max(2) + 1);
    let _ = write!(s, "{f}{info}\n{}\n{f}\n\n", body.trim_end_matches('\n'));
}

pub(super) fn render(r: &ProbeReport, options: RenderOptions<'_>) -> String {
    let mut s = String::with_capacity(32 * 1024);
    summary(&mut s, r);
    for a in r.per_address() {
        address(&mut s, a);
    }
    details(&mut s, r, options);
    s
}

fn summary(s: &mut String, r: &ProbeReport) {
    let (word, _) = overall_status(r);
    let _ = write!(
        s,
        "# TLS protocol details for {}\n\nMade by {} {} on {}, started {} (UTC).\n\n\
         ## Summary: {}\n\n",
        md(&r.target),
        md(r.tool.name),
        md(r.tool.version),
        md(r.tool.openssl),
        md(&r.started),
        md(word)
    );
    let addrs: Vec<String> = r
        .per_address()
        .iter()
        .map(|a| {
            let ip = a.address.map_or("?".into(), |x| x.ip().to_string());
            format!("{} ({})", md(&ip), md(status(a).0))
        })
        .collect();
    list(
        s,
        &[
            ("Target", md(&r.target)),
            ("Date", md(&r.started)),
            ("Addresses", addrs.join(", ")),
            ("Verdict", md(&r.summary)),
            ("What to do", md(&r.recommendation)),
            ("What the connector does", md(&r.connector)),
        ],
    );
}

/// `- **Key:** value` lines of already escaped values.
fn list(s: &mut String, rows: &[(&str, String)]) {
    for (k, v) in rows {
        let _ = writeln!(s, "- **{}:** {v}", md(k));
    }
    s.push('\n');
}

fn address(s: &mut String, r: &ProbeReport) {
    let addr = r.address.map_or("?".into(), |a| a.to_string());
    let _ = write!(s, "## Address {}: {}\n\n", md(&addr), md(status(r).0));
    if let Some(why) = &r.unreachable {
        let _ = write!(s, "{}\n\n", md(why));
        return;
    }
    let supported: Vec<&str> = r.supported.iter().map(|v| v.as_str()).collect();
    let scsv = match &r.fallback_scsv_unknown {
        Some(why) => format!(
            "{} ({})",
            r.fallback_scsv,
            why.explain(&r.supported, r.test(crate::probe::TestId::FallbackScsv))
        ),
        None => r.fallback_scsv.to_string(),
    };
    let source = r.source.map_or("?".into(), |a| a.to_string());
    let versions = if supported.is_empty() {
        "none".into()
    } else {
        supported.join(", ")
    };
    list(
        s,
        &[
            ("Verdict", md(&r.summary)),
            ("Supported versions", md(&versions)),
            ("TLS_FALLBACK_SCSV", md(&scsv)),
            ("Connector", md(&r.connector)),
            (
                "Connection",
                format!("from {} to {}", md(&source), md(&addr)),
            ),
        ],
    );
    let ev = evidence(r);
    if !r.findings.is_empty() {
        s.push_str("### Findings\n\n");
        for f in &r.findings {
            finding(s, f, &ev);
        }
    }
    s.push_str("### The hellos\n\n");
    fence(s, "text", &drawing(r));
    tests_table(s, r);
    if !ev.is_empty() {
        s.push_str("### Failing hellos, byte for byte\n\n");
        for e in &ev {
            evidence_block(s, e);
        }
    }
}

fn finding(s: &mut String, f: &Finding, ev: &[Evidence<'_>]) {
    let evidence: Vec<String> = f.evidence.iter().map(|e| md(e)).collect();
    let _ = write!(
        s,
        "**{}**\n\n- **Evidence:** {}\n- **What to do:** {}\n",
        md(&f.verdict),
        evidence.join(", "),
        md(&f.advice)
    );
    for bug in finding_bugs(f, ev) {
        let _ = writeln!(
            s,
            "- **Known bug:** {}. {}",
            md(bug.name),
            md(&bug.explanation)
        );
    }
    let refs = references(f, ev);
    if !refs.is_empty() {
        s.push_str("- **References:**\n");
        for r in refs {
            // The evidence module's own constants, as autolinks.
            let _ = writeln!(s, "  - {}: <{}>", md(r.title), r.url);
        }
    }
    s.push('\n');
}

/// The drawing as text: one bar per test (a gap where the hello was split in two writes),
/// the F5 window and the two-segment size on a ruler above.
fn drawing(r: &ProbeReport) -> String {
    const COLS: usize = 50;
    const MAX: usize = 1700;
    let col = |bytes: usize| (bytes.min(MAX) * COLS / MAX).min(COLS);
    let name_w = 18;
    let mut ruler = [' '; COLS];
    for c in ruler.iter_mut().take(col(511) + 1).skip(col(256)) {
        *c = '=';
    }
    ruler[col(ONE_SEGMENT).min(COLS - 1)] = '!';
    let mut out = format!(
        "{:name_w$} {:>5}  {}  === F5 window 256..511, ! two TCP segments past ~{ONE_SEGMENT}\n",
        "test",
        "bytes",
        ruler.iter().collect::<String>()
    );
    for t in r.tests.iter().filter(|t| t.hello_len > 0) {
        let mut bar = [' '; COLS];
        for c in bar.iter_mut().take(col(t.hello_len).max(1)) {
            *c = '#';
        }
        if t.segments.len() > 1 {
            let total: usize = t.segments.iter().sum();
            let first = t.segments.first().copied().unwrap_or(0);
            let at = col(first * t.hello_len / total.max(1));
            if let Some(c) = bar.get_mut(at) {
                *c = ' ';
            }
        }
        let _ = writeln!(
            out,
            "{:name_w$} {:>5}  {}  {}",
            t.name.as_str(),
            t.hello_len,
            bar.iter().collect::<String>(),
            outcome_class(t)
        );
    }
    out
}

fn tests_table(s: &mut String, r: &ProbeReport) {
    s.push_str(
        "### Every test\n\n| Test | Started (UTC) | Bytes | Segments | Hello | Outcome | How it ended | ms |\n\
         |---|---|--:|---|---|---|---|--:|\n",
    );
    for t in &r.tests {
        test_row(s, t);
    }
    s.push('\n');
}

fn test_row(s: &mut String, t: &ProbeTest) {
    let segments: Vec<String> = t.segments.iter().map(usize::to_string).collect();
    let _ = writeln!(
        s,
        "| {} | {} | {} | {} | {} | {} | {} | {} |",
        md(t.name.as_str()),
        md(t.started.as_deref().unwrap_or("-")),
        t.hello_len,
        md(&segments.join(" + ")),
        md(&hello_summary(t)),
        md(&outcome_class(t)),
        md(t.how.as_deref().unwrap_or_default()),
        t.ms
    );
}

fn evidence_block(s: &mut String, e: &Evidence<'_>) {
    let t = e.test;
    let _ = write!(
        s,
        "#### {}: {}\n\n{}. A {}-byte hello, sent at {} UTC in {}.\n\n",
        md(t.name.as_str()),
        md(&outcome_class(t)),
        md(&t.description),
        t.hello_len,
        md(t.started.as_deref().unwrap_or("?")),
        md(&segments_text(&t.segments)),
    );
    if let Some(bug) = &e.bug {
        let _ = write!(s, "**Known bug:** {}\n\n", md(bug.name));
    }
    match e.passing {
        Some(p) => {
            let _ = write!(
                s,
                "**Closest passing hello:** {} ({}). What differs:\n\n",
                md(p.name.as_str()),
                md(&outcome_class(p))
            );
            for d in &e.differences {
                let _ = writeln!(s, "- {}", md(d));
            }
            s.push('\n');
        }
        None => {
            s.push_str("No hello passed at this address, so there is nothing to compare with.\n\n")
        }
    }
    let marked = e.highlighted_fields();
    if !marked.is_empty() {
        s.push_str("Highlighted (`^^`) in the failing hello:\n\n");
        for m in marked {
            let _ = writeln!(s, "- {}", md(&m));
        }
        s.push('\n');
    }
    let _ = write!(
        s,
        "Failing hello ({}), {} bytes:\n\n",
        md(t.name.as_str()),
        t.record.len()
    );
    fence(s, "text", &dump(&e.failing_dump()));
    if let (Some(p), Some(lines)) = (e.passing, e.passing_dump()) {
        let _ = write!(
            s,
            "Passing hello ({}), {} bytes:\n\n",
            md(p.name.as_str()),
            p.record.len()
        );
        fence(s, "text", &dump(&lines));
    }
    if let Some((cmd, note)) = command_and_note(t) {
        s.push_str("Reproduce:\n\n");
        fence(s, "sh", &one_line(cmd));
        if let Some(note) = note {
            let _ = write!(s, "{}\n\n", md(note));
        }
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// The dump's lines, `^^` under the highlighted bytes, repeated lines squeezed to `*`.
fn dump(lines: &[HexLine]) -> String {
    let mut out = String::new();
    for line in squeeze(lines) {
        match line {
            DumpLine::Line(l) => {
                out.push_str(&l.text());
                out.push('\n');
                if let Some(m) = l.markers() {
                    out.push_str(&m);
                    out.push('\n');
                }
            }
            DumpLine::Same(n) => {
                let _ = writeln!(out, "*     ({n} more lines like the one above)");
            }
        }
    }
    out
}

fn details(s: &mut String, r: &ProbeReport, options: RenderOptions<'_>) {
    s.push_str("## Details\n\n| Field | Value |\n|---|---|\n");
    let mut rows = vec![
        (
            "Tool".to_string(),
            format!("{} {}", r.tool.name, r.tool.version),
        ),
        ("OpenSSL".into(), r.tool.openssl.to_string()),
        ("Port".into(), r.port.to_string()),
        (
            "SNI".into(),
            r.sni.clone().unwrap_or_else(|| "(none)".into()),
        ),
        ("Started".into(), format!("{} UTC", r.started)),
    ];
    for a in r.per_address() {
        let to = a.address.map_or("?".into(), |x| x.to_string());
        let from = a.source.map_or("?".into(), |x| x.to_string());
        rows.push(("Connection".into(), format!("from {from} to {to}")));
    }
    if let Some(differ) = &r.addresses_differ {
        rows.push(("Addresses".into(), differ.clone()));
    }
    for (k, v) in ssl_labs(r) {
        rows.push((k.to_string(), v));
    }
    rows.push((
        "Packet capture".into(),
        match options.pcap {
            Some(file) => format!(
                "every test's packets are in {file} (pcapng, rebuilt from what each socket \
                 wrote and read; open it in Wireshark)"
            ),
            None => "not written (run with --pcap FILE to get one)".into(),
        },
    ));
    for (k, v) in rows {
        let _ = writeln!(s, "| {} | {} |", md(&k), md(&v));
    }
}
