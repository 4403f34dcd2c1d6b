use std::net::SocketAddr;

use super::*;
use crate::probe::findings::WireVersion;
use crate::probe::hello::{build_client_hello, HelloSpec, TLS12, TLS13};
use crate::probe::{ProbeConfig, ProbeTest, Target, TestId::*, TestOutcome};

const HOSTILE: &str = "<img src=x onerror=alert(1)>\"'&|`*_[x](http://evil.test)";

fn hello_test(id: TestId, spec: &HelloSpec, outcome: TestOutcome) -> ProbeTest {
    let mut t = ProbeTest::sample(id, outcome);
    t.record = build_client_hello(spec);
    t.hello_len = t.record.len() - 5;
    t.segments = vec![t.record.len()];
    t.offer = crate::probe::HelloOffer::of(&t.record);
    t.started = Some("2026-12-08T04:37:49.212Z".into());
    t
}

/// A TLS 1.3 server behind a box that drops hellos longer than 1,000 bytes, the report made
/// by the one analysis; `target` is what the user typed (shown, never parsed here).
fn long_hello_report(target: &str) -> ProbeReport {
    let ok = TestOutcome::ServerHello(WireVersion(TLS13));
    let short = HelloSpec::up_to(TLS13, Some("h".into()));
    let mut long = short.clone();
    long.pad_to = Some(1550);
    let tests = vec![
        hello_test(
            Version12,
            &HelloSpec::up_to(TLS12, None),
            TestOutcome::ServerHello(WireVersion(TLS12)),
        ),
        hello_test(Version13, &short, ok.clone()),
        hello_test(LongShort, &short, ok.clone()),
        hello_test(LongHello, &long, TestOutcome::Timeout),
        hello_test(SplitHello, &short, ok),
        hello_test(
            FallbackScsv,
            &HelloSpec::up_to(TLS12, None),
            TestOutcome::Alert(86),
        ),
    ];
    let mut cfg = ProbeConfig::new("h:443");
    cfg.target = target.into();
    let parsed = Target::parse("h:443").unwrap();
    let addr: SocketAddr = "127.0.0.1:443".parse().unwrap();
    ProbeReport::of_address(&cfg, &parsed, addr, None, tests)
}

#[test]
fn the_failing_long_hello_is_compared_with_the_closest_passing_one() {
    let r = long_hello_report("h:443");
    let ev = evidence(&r);
    let names: Vec<TestId> = ev.iter().map(|e| e.test.name).collect();
    // The SCSV refusal is the right answer here (no finding rests on it): not evidence.
    assert_eq!(names, [LongHello]);
    let e = &ev[0];
    assert!(matches!(
        e.passing.map(|p| p.name),
        Some(Version13 | LongShort)
    ));
    assert!(
        e.differences[0].starts_with("length 1550 bytes vs"),
        "{:?}",
        e.differences
    );
    assert!(e.bug.as_ref().is_some_and(|b| b.name.contains("tldr.fail")));
    assert!(e
        .failing_dump()
        .iter()
        .any(|l| l.highlighted.contains(&true)));
    assert!(
        e.highlighted_fields()
            .iter()
            .any(|f| f.starts_with("extension padding")),
        "{:?}",
        e.highlighted_fields()
    );
    let refs = references(&r.findings[0], &ev);
    assert!(refs.contains(&TLDR_FAIL), "{refs:?}");
}

#[test]
fn a_split_hello_differs_by_its_segments_not_its_bytes() {
    let mut r = long_hello_report("h:443");
    let split = r.tests.iter_mut().find(|t| t.name == SplitHello).unwrap();
    split.outcome = TestOutcome::Reset;
    split.negotiated = None;
    split.segments = vec![100, split.record.len() - 100];
    let e = evidence_of(&r, r.test(SplitHello).unwrap());
    assert!(
        e.differences
            .iter()
            .any(|d| d.starts_with("written in 2 TCP segments (100 + ")),
        "{:?}",
        e.differences
    );
}

#[test]
fn long_runs_of_equal_lines_are_squeezed_like_hexdump() {
    let mut record = vec![1u8; 16];
    record.extend([0u8; 16 * 5]);
    record.extend([2u8; 3]);
    let lines = hex_dump(&record, &[]);
    let squeezed = squeeze(&lines);
    assert_eq!(squeezed.len(), 4, "first, one zero line, '*', last");
    assert!(matches!(squeezed[2], DumpLine::Same(4)));
    // Two equal lines stay as they are.
    assert_eq!(squeeze(&hex_dump(&[0u8; 32], &[])).len(), 2);
}

#[test]
fn html_escapes_every_string_from_the_report() {
    let mut r = long_hello_report(HOSTILE);
    r.summary = HOSTILE.into();
    r.sni = Some(HOSTILE.into());
    r.tests[0].description = HOSTILE.into();
    r.tests[0].how = Some(HOSTILE.into());
    let html = r.to_html_with(Some(HOSTILE));
    assert!(!html.contains("<img"), "{html}");
    assert!(!html.contains("<script"), "{html}");
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;&quot;&#39;&amp;"));
    for attr in ["src=", "href="] {
        let escaped = html.matches(&format!("{attr}x")).count();
        assert_eq!(
            html.matches(attr).count(),
            escaped,
            "{attr} only inside escaped text"
        );
    }
    assert!(html.contains(&format!("content=\"{}\"", html::CSP)));
}

#[test]
fn markdown_escapes_and_keeps_every_table_row_as_wide_as_its_header() {
    let mut r = long_hello_report(HOSTILE);
    r.tests[0].description = HOSTILE.into();
    r.tests[0].how = Some(format!("a | b\n| c {HOSTILE}"));
    r.sni = Some(HOSTILE.into());
    let text = r.to_markdown();
    // Only the references' own autolinks open an angle bracket.
    let unescaped = |c: &str| {
        text.match_indices(c)
            .any(|(i, _)| !text[..i].ends_with('\\') && !text[i..].starts_with("<https://"))
    };
    assert!(!unescaped("<"), "{text}");
    let unescaped_link = text
        .match_indices("](")
        .any(|(i, _)| !text[..i].ends_with('\\'));
    assert!(!unescaped_link, "no link: {text}");
    assert_tables_are_rectangular(&text);
}

/// Every row of every table has as many cells as its header (escaped pipes do not count).
pub(crate) fn assert_tables_are_rectangular(text: &str) {
    let cells = |line: &str| line.replace("\\|", "").matches('|').count();
    let mut header: Option<usize> = None;
    for line in text.lines() {
        match (line.starts_with('|'), header) {
            (true, None) => header = Some(cells(line)),
            (true, Some(n)) => assert_eq!(cells(line), n, "{line}"),
            (false, _) => header = None,
        }
    }
}

#[test]
fn a_comment_inside_a_quoted_server_name_is_not_the_reproduction_note() {
    use crate::probe::evidence::reproduce;
    let addr: SocketAddr = "192.0.2.7:443".parse().unwrap();
    let mut t = ProbeTest::sample(Version12, TestOutcome::Alert(40));
    for sni in ["x'  # y", "x  # y", "x'\\'  # 'y"] {
        let line = reproduce(Version12, "h", addr, Some(sni), None).command;
        t.reproduce = Some(line.clone());
        assert_eq!(command_and_note(&t), Some((line.as_str(), None)), "{sni}");
        // With a real caveat after it, the caveat alone is split off.
        t.reproduce = Some(format!("{line}  # needs OpenSSL 3.5 ('X25519MLKEM768')"));
        assert_eq!(
            command_and_note(&t),
            Some((line.as_str(), Some("needs OpenSSL 3.5 ('X25519MLKEM768')"))),
            "{sni}"
        );
    }
    let legacy = reproduce(Version10, "h", addr, Some("pay.example"), None);
    let line = format!("{}  # {}", legacy.command, legacy.note.clone().unwrap());
    t.reproduce = Some(line);
    assert_eq!(
        command_and_note(&t),
        Some((legacy.command.as_str(), legacy.note.as_deref()))
    );
}
