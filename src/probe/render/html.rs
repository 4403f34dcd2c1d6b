//! The report as one HTML page a vendor can open anywhere: inline CSS and SVG, no script, and
//! a Content-Security-Policy that lets nothing load. References are printed as text, not
//! links, so the page has no address to fetch or follow. Every string from the report (host
//! names, descriptions, what the server sent) goes through [`esc`].

use std::fmt::Write as _;

use super::{
    chart, command_and_note, evidence, finding_bugs, hello_summary, outcome_class, outcome_kind,
    overall_status, references, segments_text, squeeze, ssl_labs, status, DumpLine, Evidence,
    RenderOptions,
};
use crate::probe::evidence::HexLine;
use crate::probe::{Finding, ProbeReport, ProbeTest};

/// The page's policy: nothing may load; inline styles and `data:` images only.
pub(super) const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

/// Text for HTML, in an element or a quoted attribute.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

pub(super) fn render(r: &ProbeReport, options: RenderOptions<'_>) -> String {
    let mut s = String::with_capacity(64 * 1024);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>TLS protocol details: {}</title><style>{STYLE}</style></head><body><main>",
        esc(&r.target)
    );
    summary(&mut s, r);
    for (i, a) in r.per_address().into_iter().enumerate() {
        address(&mut s, a, i);
    }
    details(&mut s, r, options);
    s.push_str("</main></body></html>\n");
    s
}

/// The part a non-expert forwards: what was tested, when, the verdict and what to do.
fn summary(s: &mut String, r: &ProbeReport) {
    let (word, class) = overall_status(r);
    let _ = write!(
        s,
        "<header><h1>TLS protocol details for <span class=\"host\">{}</span></h1>\
         <p class=\"sub\">Made by {} {} on {}, started {} (UTC)</p></header>\
         <section class=\"summary {class}\"><h2>Summary <span class=\"badge {class}\">{}</span></h2>",
        esc(&r.target),
        esc(r.tool.name),
        esc(r.tool.version),
        esc(r.tool.openssl),
        esc(&r.started),
        esc(word),
    );
    let addrs: Vec<String> = r
        .per_address()
        .iter()
        .map(|a| {
            let addr = a.address.map_or("?".into(), |x| x.ip().to_string());
            format!("{} ({})", esc(&addr), esc(status(a).0))
        })
        .collect();
    dl(
        s,
        &[
            ("Target", esc(&r.target)),
            ("Date", esc(&r.started)),
            ("Addresses", addrs.join(", ")),
            ("Verdict", esc(&r.summary)),
            ("What to do", esc(&r.recommendation)),
            ("What the connector does", esc(&r.connector)),
        ],
    );
    s.push_str("</section>");
}

/// A definition list of already escaped values.
fn dl(s: &mut String, rows: &[(&str, String)]) {
    s.push_str("<dl>");
    for (k, v) in rows {
        let _ = write!(s, "<dt>{}</dt><dd>{v}</dd>", esc(k));
    }
    s.push_str("</dl>");
}

/// One address: its findings, its drawing, its tests, the evidence of its failing tests.
fn address(s: &mut String, r: &ProbeReport, index: usize) {
    let addr = r.address.map_or("?".into(), |a| a.to_string());
    let (word, class) = status(r);
    let _ = write!(
        s,
        "<section class=\"address\" id=\"address-{index}\"><h2>Address {} \
         <span class=\"badge {class}\">{}</span></h2>",
        esc(&addr),
        esc(word)
    );
    if let Some(why) = &r.unreachable {
        let _ = write!(s, "<p>{}</p></section>", esc(why));
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
    dl(
        s,
        &[
            ("Verdict", esc(&r.summary)),
            ("Supported versions", esc(&or_none(&supported.join(", ")))),
            ("TLS_FALLBACK_SCSV", esc(&scsv)),
            ("Connector", esc(&r.connector)),
            (
                "Connection",
                format!("from {} to {}", esc(&source), esc(&addr)),
            ),
        ],
    );
    let ev = evidence(r);
    if !r.findings.is_empty() {
        s.push_str("<h3>Findings</h3>");
        for f in &r.findings {
            finding(s, f, &ev);
        }
    }
    let _ = write!(
        s,
        "<h3>The hellos</h3><figure class=\"scroll\">{}</figure>",
        chart::svg(r)
    );
    tests_table(s, r);
    if !ev.is_empty() {
        s.push_str("<h3>Failing hellos, byte for byte</h3>");
        for e in &ev {
            evidence_block(s, e);
        }
    }
    s.push_str("</section>");
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "none".into()
    } else {
        s.to_string()
    }
}

/// One finding: the verdict, the tests behind it, what to do, the known bug, the references.
fn finding(s: &mut String, f: &Finding, ev: &[Evidence<'_>]) {
    let _ = write!(
        s,
        "<div class=\"finding\" id=\"finding-{}\"><p class=\"verdict\">{}</p>\
         <p><b>Evidence:</b> {}</p><p><b>What to do:</b> {}</p>",
        esc(f.id),
        esc(&f.verdict),
        f.evidence
            .iter()
            .map(|e| format!("<code>{}</code>", esc(e)))
            .collect::<Vec<_>>()
            .join(", "),
        esc(&f.advice)
    );
    for bug in finding_bugs(f, ev) {
        let _ = write!(
            s,
            "<p><b>Known bug:</b> {}. {}</p>",
            esc(bug.name),
            esc(&bug.explanation)
        );
    }
    let refs = references(f, ev);
    if !refs.is_empty() {
        s.push_str("<p><b>References:</b></p><ul class=\"refs\">");
        for r in refs {
            let _ = write!(
                s,
                "<li>{} <span class=\"url\">{}</span></li>",
                esc(r.title),
                esc(r.url)
            );
        }
        s.push_str("</ul>");
    }
    s.push_str("</div>");
}

/// Every test: when it started, its size and segments, what the hello offered, how it ended.
fn tests_table(s: &mut String, r: &ProbeReport) {
    s.push_str(
        "<h3>Every test</h3><div class=\"scroll\"><table class=\"tests\"><thead><tr>\
         <th>Test</th><th>Started (UTC)</th><th>Bytes</th><th>Segments</th><th>Hello</th>\
         <th>Outcome</th><th>ms</th></tr></thead><tbody>",
    );
    for t in &r.tests {
        test_row(s, t);
    }
    s.push_str("</tbody></table></div>");
}

fn test_row(s: &mut String, t: &ProbeTest) {
    let segments: Vec<String> = t.segments.iter().map(usize::to_string).collect();
    let how = t.how.as_deref().unwrap_or_default();
    let _ = write!(
        s,
        "<tr><td><code>{}</code><br><small>{}</small></td><td class=\"nw\">{}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td><td><small>{}</small></td>\
         <td class=\"{}\"><span class=\"oc\">{}</span><br><small>{}</small></td>\
         <td class=\"num\">{}</td></tr>",
        esc(t.name.as_str()),
        esc(&t.description),
        esc(t.started.as_deref().unwrap_or("-")),
        t.hello_len,
        esc(&segments.join(" + ")),
        esc(&hello_summary(t)),
        outcome_kind(&t.outcome),
        esc(&outcome_class(t)),
        esc(how),
        t.ms,
    );
}

/// One failing test: the known bug, what differs from the closest passing hello, both dumps
/// and the commands that repeat it.
fn evidence_block(s: &mut String, e: &Evidence<'_>) {
    let t = e.test;
    let _ = write!(
        s,
        "<div class=\"evidence\" id=\"evidence-{}\"><h4><code>{}</code>: {}</h4><p>{}. \
         A {}-byte hello, sent at {} UTC in {}.</p>",
        esc(t.name.as_str()),
        esc(t.name.as_str()),
        esc(&outcome_class(t)),
        esc(&t.description),
        t.hello_len,
        esc(t.started.as_deref().unwrap_or("?")),
        esc(&segments_text(&t.segments)),
    );
    if let Some(bug) = &e.bug {
        let _ = write!(s, "<p><b>Known bug:</b> {}</p>", esc(bug.name));
    }
    match e.passing {
        Some(p) => {
            let _ = write!(
                s,
                "<p><b>Closest passing hello:</b> <code>{}</code> ({}). What differs:</p><ul>",
                esc(p.name.as_str()),
                esc(&outcome_class(p))
            );
            for d in &e.differences {
                let _ = write!(s, "<li>{}</li>", esc(d));
            }
            s.push_str("</ul>");
        }
        None => s.push_str(
            "<p>No hello passed at this address, so there is nothing to compare with.</p>",
        ),
    }
    let marked = e.highlighted_fields();
    if !marked.is_empty() {
        s.push_str("<p><b>Highlighted in the failing hello:</b></p><ul class=\"fields\">");
        for m in marked {
            let _ = write!(s, "<li>{}</li>", esc(&m));
        }
        s.push_str("</ul>");
    }
    dump(
        s,
        &format!("Failing hello ({}), {} bytes", t.name, t.record.len()),
        &e.failing_dump(),
    );
    if let (Some(p), Some(lines)) = (e.passing, e.passing_dump()) {
        dump(
            s,
            &format!("Passing hello ({}), {} bytes", p.name, p.record.len()),
            &lines,
        );
    }
    commands(s, e);
    s.push_str("</div>");
}

/// A hex dump in a box of its own, the differing bytes marked.
fn dump(s: &mut String, caption: &str, lines: &[HexLine]) {
    let _ = write!(
        s,
        "<p class=\"cap\">{}</p><pre class=\"hex\">",
        esc(caption)
    );
    for line in squeeze(lines) {
        match line {
            DumpLine::Line(l) => {
                let _ = write!(s, "{:04x} ", l.offset);
                for (b, &h) in l.bytes.iter().zip(&l.highlighted) {
                    if h {
                        let _ = write!(s, " <mark>{b:02x}</mark>");
                    } else {
                        let _ = write!(s, " {b:02x}");
                    }
                }
                s.push('\n');
            }
            DumpLine::Same(n) => {
                let _ = writeln!(s, "*     ({n} more lines like the one above)");
            }
        }
    }
    s.push_str("</pre>");
}

/// The command that repeats a failing test, and its caveat.
fn commands(s: &mut String, e: &Evidence<'_>) {
    let Some((cmd, note)) = command_and_note(e.test) else {
        return;
    };
    let _ = write!(
        s,
        "<p><b>Reproduce:</b></p><pre class=\"cmd\">{}</pre>",
        esc(cmd)
    );
    if let Some(note) = note {
        let _ = write!(s, "<p class=\"note\">{}</p>", esc(note));
    }
}

/// The tool, the addresses and ports, the SSL Labs fields, the capture.
fn details(s: &mut String, r: &ProbeReport, options: RenderOptions<'_>) {
    s.push_str("<section class=\"details\"><h2>Details</h2>");
    let mut rows = vec![
        (
            "Tool",
            format!("{} {}", esc(r.tool.name), esc(r.tool.version)),
        ),
        ("OpenSSL", esc(r.tool.openssl)),
        ("Port", r.port.to_string()),
        ("SNI", esc(r.sni.as_deref().unwrap_or("(none)"))),
        ("Started", format!("{} UTC", esc(&r.started))),
    ];
    for a in r.per_address() {
        let to = a.address.map_or("?".into(), |x| x.to_string());
        let from = a.source.map_or("?".into(), |x| x.to_string());
        rows.push(("Connection", format!("from {} to {}", esc(&from), esc(&to))));
    }
    if let Some(differ) = &r.addresses_differ {
        rows.push(("Addresses", esc(differ)));
    }
    for (k, v) in ssl_labs(r) {
        rows.push((k, esc(&v)));
    }
    let capture = match options.pcap {
        Some(file) => format!(
            "every test's packets are in <code>{}</code> (pcapng, rebuilt from what each \
             socket wrote and read; open it in Wireshark)",
            esc(file)
        ),
        None => "not written (run with <code>--pcap FILE</code> to get one)".into(),
    };
    rows.push(("Packet capture", capture));
    dl(s, &rows);
    s.push_str("</section>");
}

const STYLE: &str = "\
:root{--ok:#1a7f37;--alert:#b35900;--fin:#c62828;--rst:#8e24aa;--timeout:#455a64;\
--line:#d0d7de;--soft:#f6f8fa;--ink:#1f2328;--mute:#57606a}\
*{box-sizing:border-box}\
body{margin:0;font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--ink);background:#fff}\
main{max-width:1000px;margin:0 auto;padding:16px}\
h1{font-size:1.5em;margin:.2em 0;overflow-wrap:anywhere}\
h2{font-size:1.25em;margin:1.4em 0 .5em;overflow-wrap:anywhere}\
h3{font-size:1.05em;margin:1.3em 0 .4em}\
h4{font-size:1em;margin:.2em 0 .4em}\
p,li,dd{overflow-wrap:anywhere}\
.sub{color:var(--mute);margin:0}\
.summary{border:1px solid var(--line);border-left:6px solid var(--ok);border-radius:6px;padding:4px 16px 8px;margin-top:12px}\
.summary.bad{border-left-color:var(--fin);background:#fff8f7}\
.summary h2{margin-top:.6em}\
.badge{display:inline-block;font-size:.7em;font-weight:600;padding:1px 8px;border-radius:10px;vertical-align:middle;color:#fff;background:var(--ok)}\
.badge.bad{background:var(--fin)}\
dl{display:grid;grid-template-columns:minmax(7em,12em) 1fr;gap:4px 12px;margin:.6em 0}\
dt{font-weight:600;color:var(--mute)}dd{margin:0}\
.address{border-top:2px solid var(--line);margin-top:1.6em}\
.finding{border-left:4px solid var(--fin);background:var(--soft);padding:2px 12px;margin:.6em 0;border-radius:4px}\
.finding p{margin:.4em 0}.verdict{font-weight:600}\
.refs{margin:.2em 0 .6em;padding-left:1.2em}.url{color:var(--mute);font-family:ui-monospace,monospace;font-size:.9em}\
.scroll{overflow-x:auto;margin:0;max-width:100%}\
figure.scroll{border:1px solid var(--line);border-radius:6px;padding:6px}\
svg.chart{display:block;width:100%;min-width:560px;height:auto;font:11px system-ui,sans-serif}\
.chart .f5{fill:#fff3c4}.chart .seg{stroke:#c62828;stroke-dasharray:4 3}\
.chart .axis{stroke:#57606a}.chart .lbl,.chart .tick{fill:#57606a}.chart .name{fill:#1f2328;font-family:ui-monospace,monospace}\
.chart .bar{fill:#9aa7b4}.chart .mk{stroke:#fff;stroke-width:1}.chart .mk.x{stroke-width:3}\
.chart .ok .mk{fill:var(--ok)}.chart .alert .mk{fill:var(--alert)}.chart .fin .mk{fill:var(--fin)}\
.chart .rst .mk{fill:var(--rst)}.chart .timeout .mk.x,.chart .other .mk.x{stroke:var(--timeout)}\
.chart .ok .out{fill:var(--ok)}.chart .alert .out{fill:var(--alert)}.chart .fin .out{fill:var(--fin)}\
.chart .rst .out{fill:var(--rst)}.chart .timeout .out{fill:var(--timeout)}\
table{border-collapse:collapse;width:100%;font-size:.88em}\
th,td{border-bottom:1px solid var(--line);padding:4px 6px;text-align:left;vertical-align:top}\
th{background:var(--soft);white-space:nowrap}\
table.tests{min-width:860px}\
td.num{text-align:right;white-space:nowrap}td.nw{white-space:nowrap;font-family:ui-monospace,monospace;font-size:.92em}\
td.ok .oc{color:var(--ok);font-weight:600}td.alert .oc{color:var(--alert);font-weight:600}\
td.fin .oc{color:var(--fin);font-weight:600}td.rst .oc{color:var(--rst);font-weight:600}\
td.timeout .oc{color:var(--timeout);font-weight:600}\
small{color:var(--mute)}\
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}\
pre{background:var(--soft);border:1px solid var(--line);border-radius:6px;padding:8px;overflow:auto;font-size:12.5px;line-height:1.45}\
pre.hex{max-height:26em}\
pre.cmd{white-space:pre-wrap;overflow-wrap:anywhere}\
mark{background:#ffd8a8;color:#7a2e00;border-radius:2px}\
.evidence{border:1px solid var(--line);border-radius:6px;padding:8px 12px;margin:.8em 0}\
.cap{margin:.6em 0 .2em;font-weight:600}.note{color:var(--mute);font-size:.9em}\
.fields{font-family:ui-monospace,monospace;font-size:.85em}\
@media (max-width:600px){main{padding:10px}dl{grid-template-columns:1fr}dt{margin-top:4px}}\
@media print{main{max-width:none}pre.hex{max-height:none}.scroll{overflow:visible}\
table.tests{min-width:0}svg.chart{min-width:0}.address{break-before:page}.evidence{break-inside:avoid}}\
";
