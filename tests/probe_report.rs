//! The vendor report against a real probe: a name with two addresses on one port, 127.0.0.1
//! healthy and 127.0.0.2 a box that hangs on hellos longer than 1,000 bytes, both in front of
//! one real OpenSSL server. The HTML opens in headless Chromium (driven by
//! `probe_report_browser.py`): it renders, loads nothing but itself, fits a phone, and its text
//! carries the verdicts, the failing tests and the failing hello's hex. The Markdown carries
//! the same, in tables as wide as their headers.
#![cfg(feature = "testkit")]

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use tls_fallback::probe::evidence::hex_dump;
use tls_fallback::probe::{probe, ProbeConfig, ProbeReport, TestId};
use tls_fallback::testkit::{Emulator, Rule, TestPki, TlsServer};

/// The probe against the two addresses, with the servers kept alive until it is done.
async fn two_address_report() -> ProbeReport {
    let server = TlsServer::modern().await.expect("the TLS server");
    let healthy = Emulator::start(server.addr(), vec![])
        .await
        .expect("the healthy box");
    let port = healthy.addr().port();
    let broken = Emulator::start_at(
        ([127, 0, 0, 2], port).into(),
        server.addr(),
        vec![Rule::hang_if_longer_than(1000)],
    )
    .await
    .expect("the broken box on 127.0.0.2, same port");
    let mut ca = tempfile::NamedTempFile::new().expect("a temp file");
    ca.write_all(&TestPki::shared().ca_pem()).expect("the CA");
    let mut cfg = ProbeConfig::new(format!("localhost:{port}"));
    cfg.timeout = Duration::from_millis(500);
    cfg.ca_file = Some(ca.path().to_path_buf());
    cfg.resolve = vec!["127.0.0.2".parse().unwrap(), "127.0.0.1".parse().unwrap()];
    let report = probe(&cfg).await.expect("the probe runs");
    assert!(!broken.hellos().is_empty() && !healthy.hellos().is_empty());
    report
}

/// The broken address's report, and the failing tests every report must show.
fn broken(report: &ProbeReport) -> &ProbeReport {
    let r = report
        .per_address()
        .into_iter()
        .find(|r| r.address.is_some_and(|a| a.ip().to_string() == "127.0.0.2"))
        .expect("127.0.0.2 in the report");
    assert!(r.long_hello_intolerance, "{}", r.to_table());
    assert!(!r.findings.is_empty());
    r
}

const FAILING: [TestId; 2] = [TestId::LongHello, TestId::PqKeyShare];

/// The first lines of the failing hellos' hex dumps, as the reports print them.
fn failing_hex(r: &ProbeReport) -> Vec<String> {
    FAILING
        .iter()
        .flat_map(|id| {
            let t = r.test(*id).expect("the test ran");
            assert!(t.failed(), "{id} failed: {}", t.outcome);
            hex_dump(&t.record, &[])
                .into_iter()
                .take(3)
                .map(|l| l.text())
        })
        .collect()
}

/// Every finding's verdict, of every address.
fn verdicts(report: &ProbeReport) -> Vec<String> {
    let all = report.per_address().into_iter();
    all.flat_map(|r| r.findings.iter().map(|f| f.verdict.clone()))
        .collect()
}

/// The browser run's report (see `probe_report_browser.py`).
fn browse(html: &Path, png: &Path) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/probe_report_browser.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(html)
        .arg(png)
        .output()
        .expect("python3 runs (.ci/run installs it)");
    assert!(
        out.status.success(),
        "the browser run failed (headless Chromium is required: apt-get install chromium; \
         .ci/run installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_the_html_report_shows_the_verdicts_and_hex_and_loads_nothing_else() {
    let report = two_address_report().await;
    let bad = broken(&report);
    let dir = tempfile::tempdir().expect("a temp dir");
    let html = dir.path().join("probe-report.html");
    std::fs::write(&html, report.to_html_with(Some("probe.pcapng"))).expect("write the report");
    let png = dir.path().join("probe-report.png");
    let (h, p) = (html.clone(), png.clone());
    let out = tokio::task::spawn_blocking(move || browse(&h, &p))
        .await
        .expect("the browser run");
    assert_eq!(out["loaded"], true, "{out}");

    // The text: the verdicts, the failing tests, the failing hellos' hex, the addresses.
    let text = out["text"].as_str().unwrap_or_default();
    for verdict in verdicts(&report) {
        assert!(
            text.contains(&verdict),
            "{verdict:?} not on the page: {text}"
        );
    }
    for want in [
        "127.0.0.1",
        "127.0.0.2",
        "the addresses behave differently",
        "probe.pcapng",
    ] {
        assert!(text.contains(want), "{want:?} not on the page");
    }
    for id in FAILING {
        assert!(text.contains(id.as_str()), "{id} not on the page");
    }
    for line in failing_hex(bad) {
        assert!(text.contains(&line), "hex {line:?} not on the page: {text}");
    }
    for reference in ["https://tldr.fail/", "RFC 8446"] {
        assert!(text.contains(reference), "{reference:?} not on the page");
    }
    assert!(
        out["svg"].as_u64() >= Some(2),
        "one drawing per address: {out}"
    );

    // Nothing from elsewhere: the one request is the file itself, nothing in the DOM points
    // anywhere, the policy forbids everything, and the log sees an outside request.
    let requests: Vec<&str> = (out["requests"].as_array().into_iter().flatten())
        .filter_map(|u| u.as_str())
        .collect();
    let own = out["url"].as_str().unwrap_or_default();
    assert!(!requests.is_empty(), "the page's own load is logged");
    assert!(requests.iter().all(|u| *u == own), "{requests:?}");
    assert_eq!(
        out["probe_seen"], true,
        "the log sees an outside request: {out}"
    );
    assert_eq!(
        out["attributes"],
        serde_json::json!([]),
        "no src/href at all"
    );
    assert_eq!(out["scripts"], 0);
    let csp = out["csp"].to_string();
    assert!(
        csp.contains(
            "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; img-src data:"
        ),
        "{csp}"
    );
    let console = out["console"].to_string();
    assert!(!console.contains("Content Security Policy"), "{console}");

    // A phone: no horizontal page scroll at 390 px (wide tables scroll in their own box).
    let w = &out["width_390"];
    assert_eq!(w["inner"], 390, "{w}");
    assert!(w["scroll"].as_u64().unwrap_or(u64::MAX) <= 390, "{w}");
    assert!(w["body_scroll"].as_u64().unwrap_or(u64::MAX) <= 390, "{w}");

    let shot = std::fs::read(&png).expect("the screenshot");
    assert!(shot.starts_with(b"\x89PNG"), "a PNG");
    if let Ok(keep) = std::env::var("PROBE_REPORT_SCREENSHOT") {
        std::fs::copy(&png, &keep).expect("copy the screenshot");
        let phone = dir.path().join("probe-report-390.png");
        std::fs::copy(phone, keep.replace(".png", "-390.png")).expect("copy the phone's");
        std::fs::copy(&html, keep.replace(".png", ".html")).expect("copy the report");
        std::fs::write(keep.replace(".png", ".md"), report.to_markdown()).expect("the Markdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_markdown_report_carries_the_verdicts_and_hex_in_rectangular_tables() {
    let report = two_address_report().await;
    let bad = broken(&report);
    let text = report.to_markdown_with(Some("probe.pcapng"));
    // Markdown escapes punctuation with a backslash; the verdicts have none of their own.
    let plain = text.replace('\\', "");
    for verdict in verdicts(&report) {
        assert!(plain.contains(&verdict), "{verdict:?} not in: {text}");
    }
    for line in failing_hex(bad) {
        assert!(text.contains(&line), "hex {line:?} not in: {text}");
    }
    assert!(text.contains("\n```text\n"), "hex in fenced blocks");
    assert!(text.contains("^^"), "differing bytes marked");
    assert!(
        text.contains("tls-fallback probe --only long_hello"),
        "{text}"
    );
    assert!(text.contains("probe.pcapng"));
    for addr in report.per_address() {
        let ip = addr.address.expect("an address").ip().to_string();
        assert!(text.contains(&format!("## Address {ip}:")), "{ip}");
    }
    // Every table row has as many cells as its header (escaped pipes do not count).
    let cells = |line: &str| line.replace("\\|", "").matches('|').count();
    let mut header: Option<usize> = None;
    let mut rows = 0;
    for line in text.lines() {
        match (line.starts_with('|'), header) {
            (true, None) => header = Some(cells(line)),
            (true, Some(n)) => {
                assert_eq!(cells(line), n, "{line}");
                rows += 1;
            }
            (false, _) => header = None,
        }
    }
    assert!(
        rows > 2 * 18,
        "the tests of both addresses and the details: {rows}"
    );
}
