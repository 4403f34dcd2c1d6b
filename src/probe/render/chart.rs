//! The drawing of one address's hellos as inline SVG: one bar per test, as long as its hello,
//! split where the hello went out in two TCP segments, ending in a mark whose colour and shape
//! say how the test ended. The F5 window (256..511 bytes) is shaded and the size past which a
//! hello needs two TCP segments on a 1,500-byte MTU path is a dashed line, both labelled.

use std::fmt::Write as _;

use super::html::esc;
use super::{outcome_class, outcome_kind};
use crate::probe::{ProbeReport, ProbeTest};

/// Bytes at the right end of the size axis.
const MAX_BYTES: usize = 1700;
/// Where the bars start and end, and where the outcome column starts (SVG units).
const X0: f64 = 150.0;
const X1: f64 = 590.0;
const XO: f64 = 612.0;
const WIDTH: f64 = 760.0;
/// Height of one test's row, and of the axis and labels above the rows.
const ROW: f64 = 20.0;
const TOP: f64 = 46.0;
/// One TCP segment's payload on a 1,500-byte MTU path (IPv4, no options).
pub(super) const ONE_SEGMENT: usize = 1460;

fn x(bytes: usize) -> f64 {
    X0 + (X1 - X0) * bytes.min(MAX_BYTES) as f64 / MAX_BYTES as f64
}

/// The SVG of `r`'s tests that sent a hello (the connector test and skipped ones have none).
pub(super) fn svg(r: &ProbeReport) -> String {
    let tests: Vec<&ProbeTest> = r.tests.iter().filter(|t| t.hello_len > 0).collect();
    let bottom = TOP + ROW * tests.len() as f64 + 4.0;
    let height = bottom + 66.0;
    let mut s = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" \
         xmlns=\"http://www.w3.org/2000/svg\" aria-label=\"Hello size against outcome, one bar \
         per test\">"
    );
    frame(&mut s, bottom);
    for (i, t) in tests.iter().enumerate() {
        row(&mut s, t, TOP + ROW * i as f64);
    }
    legend(&mut s, bottom + 40.0);
    s.push_str("</svg>");
    s
}

/// The shaded window, the two-segment line, the axis with its ticks.
fn frame(s: &mut String, bottom: f64) {
    let (w0, w1) = (x(256), x(512));
    let seg = x(ONE_SEGMENT);
    let _ = write!(
        s,
        "<rect class=\"f5\" x=\"{w0:.1}\" y=\"{y}\" width=\"{w:.1}\" height=\"{h:.1}\"/>\
         <text class=\"lbl\" x=\"{mid:.1}\" y=\"12\" text-anchor=\"middle\">F5 window</text>\
         <text class=\"lbl\" x=\"{mid:.1}\" y=\"24\" text-anchor=\"middle\">256..511</text>\
         <line class=\"seg\" x1=\"{seg:.1}\" y1=\"{y}\" x2=\"{seg:.1}\" y2=\"{bottom:.1}\"/>\
         <text class=\"lbl\" x=\"{seg:.1}\" y=\"12\" text-anchor=\"middle\">2 TCP segments</text>\
         <text class=\"lbl\" x=\"{seg:.1}\" y=\"24\" text-anchor=\"middle\">past ~{ONE_SEGMENT}</text>",
        y = TOP - 12.0,
        w = w1 - w0,
        h = bottom - TOP + 12.0,
        mid = (w0 + w1) / 2.0,
    );
    let _ = write!(
        s,
        "<line class=\"axis\" x1=\"{X0}\" y1=\"{bottom:.1}\" x2=\"{X1}\" y2=\"{bottom:.1}\"/>"
    );
    for tick in [0, 256, 512, 1024, 1550] {
        let tx = x(tick);
        let _ = write!(
            s,
            "<line class=\"axis\" x1=\"{tx:.1}\" y1=\"{bottom:.1}\" x2=\"{tx:.1}\" y2=\"{:.1}\"/>\
             <text class=\"tick\" x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{tick}</text>",
            bottom + 4.0,
            bottom + 15.0
        );
    }
    let _ = write!(
        s,
        "<text class=\"lbl\" x=\"{X0}\" y=\"{y:.1}\">hello size (handshake bytes)</text>\
         <text class=\"lbl\" x=\"{XO}\" y=\"{t:.1}\">outcome</text>",
        y = bottom + 28.0,
        t = TOP - 16.0,
    );
}

/// One test: its name, its bar (one piece per TCP segment), its mark and outcome.
fn row(s: &mut String, t: &ProbeTest, y: f64) {
    let kind = outcome_kind(&t.outcome);
    let mid = y + ROW / 2.0;
    let _ = write!(
        s,
        "<g class=\"{kind}\"><title>{}: {} bytes, {}</title>\
         <text class=\"name\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
        esc(t.name.as_str()),
        t.hello_len,
        esc(&outcome_class(t)),
        X0 - 6.0,
        mid + 4.0,
        esc(t.name.as_str()),
    );
    bar(s, t, y + 5.0);
    mark(s, kind, x(t.hello_len), mid);
    let _ = write!(
        s,
        "<text class=\"out\" x=\"{XO}\" y=\"{:.1}\">{}</text></g>",
        mid + 4.0,
        esc(&short_outcome(t))
    );
}

/// The bar, cut where the writes were (record bytes scaled to the handshake length).
fn bar(s: &mut String, t: &ProbeTest, y: f64) {
    let total: usize = t.segments.iter().sum();
    let pieces: Vec<usize> = if t.segments.len() > 1 && total > 0 {
        t.segments.iter().map(|n| n * t.hello_len / total).collect()
    } else {
        vec![t.hello_len]
    };
    let mut at = 0;
    for (i, n) in pieces.iter().enumerate() {
        let gap = if i > 0 { 3.0 } else { 0.0 };
        let (a, b) = (x(at) + gap, x(at + n));
        let _ = write!(
            s,
            "<rect class=\"bar\" x=\"{a:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"10\"/>",
            (b - a).max(1.0)
        );
        at += n;
    }
}

/// The end mark: a circle for a ServerHello, a triangle for an alert, a square for FIN, a
/// diamond for RST, an hourglass-like cross for a timeout.
fn mark(s: &mut String, kind: &str, cx: f64, cy: f64) {
    let _ = match kind {
        "ok" => write!(
            s,
            "<circle class=\"mk\" cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"5\"/>"
        ),
        "alert" => write!(
            s,
            "<path class=\"mk\" d=\"M{cx:.1} {:.1}L{:.1} {:.1}L{:.1} {:.1}Z\"/>",
            cy - 6.0,
            cx + 6.0,
            cy + 5.0,
            cx - 6.0,
            cy + 5.0
        ),
        "fin" => write!(
            s,
            "<rect class=\"mk\" x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\"/>",
            cx - 5.0,
            cy - 5.0
        ),
        "rst" => write!(
            s,
            "<path class=\"mk\" d=\"M{cx:.1} {:.1}L{:.1} {cy:.1}L{cx:.1} {:.1}L{:.1} {cy:.1}Z\"/>",
            cy - 6.0,
            cx + 6.0,
            cy + 6.0,
            cx - 6.0
        ),
        _ => write!(
            s,
            "<path class=\"mk x\" d=\"M{:.1} {:.1}L{:.1} {:.1}M{:.1} {:.1}L{:.1} {:.1}\"/>",
            cx - 5.0,
            cy - 5.0,
            cx + 5.0,
            cy + 5.0,
            cx + 5.0,
            cy - 5.0,
            cx - 5.0,
            cy + 5.0
        ),
    };
}

/// "1.3", "alert 47", "FIN", "RST", "timeout".
fn short_outcome(t: &ProbeTest) -> String {
    use crate::probe::TestOutcome::*;
    match &t.outcome {
        ServerHello(v) => format!("TLS {v}"),
        Alert(n) => format!("alert {n}"),
        Closed => "FIN".into(),
        Reset => "RST".into(),
        Timeout => format!("timeout {} ms", t.ms),
        other => other.to_string(),
    }
}

/// What the marks mean.
fn legend(s: &mut String, y: f64) {
    let items = [
        ("ok", "ServerHello"),
        ("alert", "alert"),
        ("fin", "FIN"),
        ("rst", "RST"),
        ("timeout", "timeout"),
    ];
    let mut at = 20.0;
    for (kind, label) in items {
        let _ = write!(s, "<g class=\"{kind}\">");
        mark(s, kind, at, y + 10.0);
        let _ = write!(
            s,
            "<text class=\"lbl\" x=\"{:.1}\" y=\"{:.1}\">{label}</text></g>",
            at + 10.0,
            y + 14.0
        );
        at += 40.0 + 8.0 * label.len() as f64;
    }
}
