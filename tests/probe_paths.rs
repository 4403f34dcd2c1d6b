//! The probe's new paths against real servers behind the test kit's emulator, checked on the
//! wire (what the emulator saw) and on the outcome:
//!
//! - the long, split and post-quantum hellos against a box for each of them (size, reassembly,
//!   key share told apart, never "Nothing needed");
//! - nginx (a server that is not this process's OpenSSL) behind a long-hello box and behind a
//!   box closing TLS 1.3 hellos (the SCSV hello at the best version proves 1.3 blocked);
//! - `probe` and `get` against every intolerant kind of the test kit: one story (the probe's
//!   connector row is what `get` did, the findings, summary, table, recommendation and JSON
//!   follow one analysis);
//! - every address (two emulators on 127.0.0.1:P and 127.0.0.2:P, an unreachable one) and
//!   `--only` / `--baseline` sending exactly one hello.
//!
//! Every wait is bounded by the per-test timeout; hanging boxes cost one timeout per hello.
#![cfg(feature = "testkit")]

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::Value;
use tls_fallback::probe::{probe, ProbeConfig, ProbeReport, ScsvSupport, TestId, TestOutcome};
use tls_fallback::testkit::{Action, Emulator, Rule, SeenHello, TestPki, TlsServer};
use tls_fallback::wire::GROUP_X25519MLKEM768;
use tls_fallback::{Error, ErrorKind, TlsInfo, TlsVersion};
use TlsVersion::*;

/// Per-test timeout of the probe, and the handshake timeout of the `get` client: short, every
/// box is local.
const TIMEOUT: Duration = Duration::from_millis(600);
/// Hellos longer than this fail at the long-hello boxes (the probe's compact hellos are far
/// below, its long and post-quantum hellos far above).
const LIMIT: usize = 1000;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The test CA as a file, for the probe's connector test.
fn ca_file() -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(&TestPki::shared().ca_pem()).unwrap();
    f
}

/// Whether this build's OpenSSL offers X25519MLKEM768 by default (3.5 and later): then the
/// connector's `modern` hello carries a 1,216-byte ML-KEM share and is longer than [`LIMIT`].
fn client_sends_mlkem() -> bool {
    openssl::version::number() >= 0x3050_0000
}

/// The config probing `localhost:PORT` at exactly these addresses (SNI `localhost`, so the
/// connector's certificate check passes with the test CA).
fn config(port: u16, addrs: &[IpAddr], ca: &tempfile::NamedTempFile) -> ProbeConfig {
    let mut cfg = ProbeConfig::new(format!("localhost:{port}"));
    cfg.timeout = TIMEOUT;
    cfg.ca_file = Some(ca.path().to_path_buf());
    cfg.resolve = addrs.to_vec();
    cfg
}

/// The full probe of the emulator's one address.
async fn probe_box(em: &Emulator, ca: &tempfile::NamedTempFile) -> ProbeReport {
    let cfg = config(em.addr().port(), &[em.addr().ip()], ca);
    let r = probe(&cfg).await.expect("the probe runs");
    assert_eq!(r.per_address().len(), 1, "{}", r.to_table());
    r
}

/// A real `get` through the library client: legacy allowed, the test CA trusted, the same
/// handshake timeout as the probe's connector test (so neither races a rung the other waits
/// for). A fresh layer: nothing learned before.
async fn get_box(em: &Emulator) -> Result<TlsInfo, Error> {
    let layer = common::builder()
        .allow_legacy("*")
        .handshake_timeout(TIMEOUT)
        .build()
        .unwrap();
    let client = common::client(&layer);
    match common::get(&client, &em.url()).await {
        Ok((res, _)) => Ok(common::tls(&res)),
        Err(e) => Err(common::tls_error(&e)),
    }
}

/// The hand-built hellos the probe sent (not the connector's), in order.
fn sent(r: &ProbeReport) -> Vec<(TestId, usize)> {
    r.tests
        .iter()
        .filter(|t| t.hello_len > 0 && t.name != TestId::FallbackConnector)
        .map(|t| (t.name, t.hello_len))
        .collect()
}

/// The emulator saw the probe's hellos first, one connection each, in the probe's order and at
/// the lengths the report states; the split hello came in two reads, every other in one. Returns
/// what it saw after them (the connector's hellos).
fn wire_matches_report(name: &str, r: &ProbeReport, seen: &[SeenHello]) -> Vec<SeenHello> {
    let sent = sent(r);
    assert!(seen.len() >= sent.len(), "{name}: {seen:?}");
    for ((id, len), hello) in sent.iter().zip(seen) {
        assert_eq!(hello.len(), *len, "{name}: {id} on the wire");
        let reads = if *id == TestId::SplitHello { 2 } else { 1 };
        assert_eq!(
            hello.reads, reads,
            "{name}: {id} arrived in {} reads",
            hello.reads
        );
    }
    seen[sent.len()..].to_vec()
}

/// (highest version offered, SCSV) of each hello.
fn ladder(seen: &[SeenHello]) -> Vec<(Option<TlsVersion>, bool)> {
    seen.iter().map(|h| (h.offered(), h.scsv())).collect()
}

fn ids(r: &ProbeReport) -> Vec<&'static str> {
    r.findings.iter().map(|f| f.id).collect()
}

/// The connector row's outcome and version, e.g. `("ok:modern-compact", Some("1.3"))`.
fn connector_row(r: &ProbeReport) -> (String, Option<String>) {
    let t = r
        .test(TestId::FallbackConnector)
        .expect("the connector row");
    (t.outcome.to_string(), t.negotiated.map(|v| v.to_string()))
}

/// Summary, table, recommendation and JSON of one address tell one story: every JSON flag is
/// behind a finding and every finding behind its flag, the SSL Labs fields follow, the table
/// never shows "ok" next to a failed test, and a host with a finding never needs "nothing".
fn one_analysis(name: &str, r: &ProbeReport) {
    let ctx = || format!("{name}\n{}", r.to_table());
    let v: Value = serde_json::to_value(r).unwrap();
    let found: BTreeSet<&str> = ids(r).into_iter().collect();
    let has = |id: &str| found.contains(id);
    let flag = |key: &str| {
        v[key]
            .as_bool()
            .unwrap_or_else(|| panic!("{key}: {}", ctx()))
    };
    let versions = &v["version_intolerance"];
    let any_version = ["1.0", "1.1", "1.2", "1.3", "future"]
        .iter()
        .any(|k| versions[k] == true);
    assert_eq!(any_version, has("version_intolerance"), "{}", ctx());
    for (key, id) in [
        ("long_handshake_intolerance", "long_handshake"),
        ("cipher_count_intolerance", "cipher_count"),
        ("extension_intolerance", "unknown_extension"),
        ("split_hello_intolerance", "split_hello"),
        ("higher_version_blocked", "higher_version_blocked"),
    ] {
        assert_eq!(flag(key), has(id), "{key} vs finding {id}: {}", ctx());
    }
    // The size findings name the cause: a split failure explains a long one, a long one
    // explains a failing post-quantum hello.
    assert_eq!(
        flag("long_hello_intolerance"),
        has("long_hello") || (has("split_hello") && r.long_hello_intolerance),
        "{}",
        ctx()
    );
    assert!(
        !has("long_hello") || flag("long_hello_intolerance"),
        "{}",
        ctx()
    );
    if flag("pq_key_share_intolerance") {
        assert!(
            has("pq_key_share") || flag("long_hello_intolerance"),
            "{}",
            ctx()
        );
    }
    assert!(
        !has("pq_key_share") || flag("pq_key_share_intolerance"),
        "{}",
        ctx()
    );
    assert_eq!(
        v["fallback_scsv"] == "not_supported",
        has("scsv_ignored"),
        "{}",
        ctx()
    );
    assert_eq!(
        v["fallbackScsv"] == true,
        v["fallback_scsv"] == "supported",
        "{}",
        ctx()
    );
    let mut mask = 0;
    for (k, bit) in [("1.0", 1), ("1.1", 2), ("1.2", 4), ("1.3", 8)] {
        if versions[k] == true {
            mask |= bit;
        }
    }
    let protocol = v["protocolIntolerance"].as_u64().unwrap();
    assert_eq!(protocol & 15, mask, "{}", ctx());
    let misc = v["miscIntolerance"].as_u64().unwrap();
    assert_eq!(misc & 1 == 1, flag("extension_intolerance"), "{}", ctx());
    assert_eq!(
        misc & 2 == 2,
        flag("long_handshake_intolerance"),
        "{}",
        ctx()
    );

    // The table: a verdict row says "ok" only when none of its tests failed.
    let table = r.to_table();
    let failed = |id: TestId| r.test(id).is_some_and(|t| t.failed());
    for (label, tests) in [
        ("Long handshake (256..511)", &[TestId::Long300][..]),
        ("Cipher count", &[TestId::CiphersMany]),
        ("Unknown extension", &[TestId::ExtensionUnknown]),
        ("Long hello (~1550 bytes)", &[TestId::LongHello]),
        ("Split hello (2 segments)", &[TestId::SplitHello]),
        ("Post-quantum key share", &[TestId::PqKeyShare]),
    ] {
        let line = table
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("{label}: {}", ctx()));
        let cell = line.trim_start()[label.len()..].trim();
        if tests.iter().any(|&id| failed(id)) {
            assert_ne!(cell, "ok", "{label} next to a failed test: {}", ctx());
        }
    }
    let line = table
        .lines()
        .find(|l| l.contains("Version intolerance"))
        .unwrap();
    for (key, id) in [
        ("1.0", TestId::Version10),
        ("1.1", TestId::Version11),
        ("1.2", TestId::Version12),
        ("1.3", TestId::Version13),
    ] {
        if failed(id) {
            assert!(!line.contains(&format!("{key}: ok")), "{key}: {line}");
        }
    }
    // No placeholder where a version belongs.
    assert!(!table.contains("TLS ?"), "{}", ctx());
    // Summary and recommendation.
    if found.is_empty() {
        assert!(
            r.summary.contains("handled every test hello correctly"),
            "{}",
            ctx()
        );
    } else {
        assert!(!r.recommendation.contains("Nothing needed"), "{}", ctx());
        for id in &found {
            assert!(r.summary.contains(&id.replace('_', " ")), "{id}: {}", ctx());
        }
        assert!(r.summary.contains(&r.connector), "{}", ctx());
    }
    // The connector sentence says the rung and version of the connector row.
    if let (outcome, Some(version)) = connector_row(r) {
        if let Some(rung) = outcome.strip_prefix("ok:") {
            let words = format!("rung {rung} with TLS {version}");
            assert!(r.connector.contains(&words), "{words}: {}", ctx());
        }
    }
}

/// Findings a host may have while the connector's own `modern` hello gets through: the ones
/// about a hello shape the connector does not send (on this build), or about the SCSV.
const NOT_ON_THE_MODERN_HELLO: [&str; 7] = [
    "long_handshake",
    "cipher_count",
    "unknown_extension",
    "long_hello",
    "split_hello",
    "pq_key_share",
    "scsv_ignored",
];

/// `probe` and `get` against one box tell one story.
fn one_story(name: &str, r: &ProbeReport, got: &Result<TlsInfo, Error>) {
    let ctx = || format!("{name}\n{}", r.to_table());
    let (outcome, version) = connector_row(r);
    match got {
        Err(e) if e.kind() == ErrorKind::DowngradeDetected => {
            assert_eq!(outcome, "error:downgrade_detected", "{}", ctx());
            assert!(r.higher_version_blocked, "{}", ctx());
            assert_eq!(r.fallback_scsv, ScsvSupport::Supported, "{}", ctx());
            assert_eq!(ids(r).first(), Some(&"higher_version_blocked"), "{}", ctx());
            let rec = &r.recommendation;
            assert!(rec.contains("Two readings"), "{}", ctx());
            assert!(rec.contains("as an explicit, logged decision"), "{}", ctx());
            assert!(rec.contains("--pin localhost="), "{}", ctx());
            assert!(!rec.contains("allow legacy TLS for this host"), "{}", ctx());
            assert!(!rec.contains("Allow legacy TLS"), "{}", ctx());
            assert!(r.connector.contains("downgrade_detected"), "{}", ctx());
        }
        Err(e) => assert_eq!(
            outcome,
            format!("error:{}", e.kind().as_str()),
            "{e}\n{}",
            ctx()
        ),
        Ok(info) => {
            assert_eq!(outcome, format!("ok:{}", info.profile), "{}", ctx());
            assert_eq!(version.as_deref(), Some(info.version.as_str()), "{}", ctx());
            assert!(!r.higher_version_blocked, "{}", ctx());
            if &*info.profile == "modern" {
                let other: Vec<&str> = ids(r)
                    .into_iter()
                    .filter(|id| !NOT_ON_THE_MODERN_HELLO.contains(id))
                    .collect();
                assert!(other.is_empty(), "modern needs no {other:?}: {}", ctx());
            } else {
                assert!(
                    !r.findings.is_empty(),
                    "a fallback to {}: {}",
                    info.profile,
                    ctx()
                );
            }
        }
    }
    one_analysis(name, r);
}

/// A server of the test kit and the rules of the box in front of it.
struct Kind {
    name: &'static str,
    server: fn() -> Server,
    rules: Vec<Rule>,
    /// What `get` does: the rung and version, or `None` for downgrade_detected. `LONG` and
    /// `PQ` stand for "modern-compact on a build whose modern hello carries ML-KEM, else modern".
    expect: Option<(&'static str, TlsVersion)>,
    /// The findings the probe must have (more are allowed only when `exact` is false).
    findings: &'static [&'static str],
}

/// The rung a box failing hellos longer than [`LIMIT`] or carrying an ML-KEM share leaves to
/// the connector: its modern hello carries that share from OpenSSL 3.5 on.
const LONG: &str = "modern or modern-compact";

#[derive(Clone, Copy)]
enum Server {
    Modern,
    Only(TlsVersion),
    /// TLS 1.0 and 1.1 (security level 0).
    Legacy,
    /// TLS 1.0 to 1.3 (security level 0).
    All,
}

async fn start(server: Server) -> TlsServer {
    match server {
        Server::Modern => TlsServer::modern().await,
        Server::Only(v) => TlsServer::only(v).await,
        Server::Legacy => {
            TlsServer::builder()
                .min_version(Tls1_0)
                .max_version(Tls1_1)
                .security_level(0)
                .start()
                .await
        }
        Server::All => {
            TlsServer::builder()
                .min_version(Tls1_0)
                .security_level(0)
                .start()
                .await
        }
    }
    .expect("a test kit server")
}

/// Waits until the box has seen no new connection for 300 ms (at most 3 s): a hello the
/// connector's race launched before it won can arrive after the probe returned, and must not
/// be counted as `get`'s (seen once in CI: `get`'s "first" hello was the probe's TLS 1.2 one).
async fn settle(em: &Emulator) {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut last = em.count();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = em.count();
        if now == last {
            return;
        }
        last = now;
    }
}

/// Runs `probe`, then `get`, against one fresh box of this kind and checks the story, the wire
/// and the expected outcome. Returns how long the probe took.
async fn probe_and_get(kind: Kind, ca: &tempfile::NamedTempFile) -> Duration {
    let server = start((kind.server)()).await;
    let em = Emulator::start(server.addr(), kind.rules.clone())
        .await
        .unwrap();
    let started = Instant::now();
    let r = probe_box(&em, ca).await;
    let took = started.elapsed();
    settle(&em).await;
    let probe_connector = wire_matches_report(kind.name, &r, &em.hellos());
    em.clear();
    let got = get_box(&em).await;
    settle(&em).await;
    let get_seen = em.hellos();
    let ctx = || format!("{}\n{}", kind.name, r.to_table());
    // The same ladder on the wire: the probe's connector test is a get. After a silent rung the
    // connector races the next rungs, and a loser's hello may or may not have gone out (both
    // seen on a loaded machine): the first hello and the hellos at the winning version are
    // compared, the others are not.
    let floor = got.as_ref().ok().map(|info| info.version);
    let decisive = |seen: &[SeenHello]| {
        let mut l = ladder(seen);
        let first = l.first().copied();
        l.retain(|(v, _)| floor.is_none() || *v == floor);
        (first, l)
    };
    assert_eq!(decisive(&probe_connector), decisive(&get_seen), "{}", ctx());
    assert_eq!(get_seen.first().map(|h| h.scsv()), Some(false), "{}", ctx());
    assert!(get_seen.iter().skip(1).all(|h| h.scsv()), "{}", ctx());
    one_story(kind.name, &r, &got);
    match (kind.expect, &got) {
        (None, Err(e)) => assert_eq!(e.kind(), ErrorKind::DowngradeDetected, "{}", ctx()),
        (Some((rung, v)), Ok(info)) => {
            let rung = match rung {
                LONG if client_sends_mlkem() => "modern-compact",
                LONG => "modern",
                rung => rung,
            };
            assert_eq!((&*info.profile, info.version), (rung, v), "{}", ctx());
        }
        (expect, got) => panic!("expected {expect:?}, got {got:?}: {}", ctx()),
    }
    for id in kind.findings {
        assert!(ids(&r).contains(id), "{id}: {}", ctx());
    }
    took
}

// ---------------------------------------------------------------------------------------------
// 1. The long, split and post-quantum hellos against the test kit
// ---------------------------------------------------------------------------------------------

/// One box in front of `TlsServer::modern()`, probed; with what the emulator saw.
async fn probe_modern_behind(
    rules: Vec<Rule>,
    ca: &tempfile::NamedTempFile,
) -> (ProbeReport, Vec<SeenHello>, TlsServer, Emulator) {
    let server = TlsServer::modern().await.unwrap();
    let em = Emulator::start(server.addr(), rules).await.unwrap();
    let r = probe_box(&em, ca).await;
    let seen = em.hellos();
    (r, seen, server, em)
}

/// The hello the emulator saw for test `id` of the report.
fn seen_for<'a>(r: &ProbeReport, seen: &'a [SeenHello], id: TestId) -> &'a SeenHello {
    let at = sent(r)
        .iter()
        .position(|(t, _)| *t == id)
        .unwrap_or_else(|| panic!("{id} was not sent"));
    &seen[at]
}

/// What the new findings share, whatever the box does to the hello: named, never "Nothing
/// needed", TLS 1.3 kept, the connector row as this build's connector hello meets the box.
fn check_size_finding(name: &str, r: &ProbeReport, connector: &[SeenHello], id: &str) {
    let ctx = || format!("{name}\n{}", r.to_table());
    assert_eq!(ids(r), [id], "{}", ctx());
    assert!(!r.recommendation.contains("Nothing needed"), "{}", ctx());
    assert!(r.recommendation.contains("Contact the vendor"), "{}", ctx());
    assert!(r.recommendation.contains("no version loss"), "{}", ctx());
    assert!(r.recommendation.contains("tldr.fail"), "{}", ctx());
    assert_eq!(r.supported, [Tls1_2, Tls1_3], "{}", ctx());
    assert_eq!(r.version_intolerance.values().filter(|b| **b).count(), 0);
    // The connector's first hello is OpenSSL's modern one: it passes unless it is long (3.5+).
    let first = connector.first().expect("the connector reached the box");
    let (outcome, version) = connector_row(r);
    let expected = if first.action == Action::Pass {
        "ok:modern"
    } else {
        "ok:modern-compact"
    };
    assert_eq!(
        (outcome.as_str(), version.as_deref()),
        (expected, Some("1.3")),
        "{}",
        ctx()
    );
    // What the connector does meanwhile is what it did in the last test.
    let said = r
        .recommendation
        .contains("its own first hello (rung modern) got through here");
    assert_eq!(said, expected == "ok:modern", "{}", ctx());
    one_analysis(name, r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hellos_longer_than_a_limit_are_a_size_finding_whatever_the_box_does_with_them() {
    let ca = ca_file();
    let rows = [
        ("hang", Rule::hang_if_longer_than(LIMIT), "timeout"),
        ("reset", Rule::reset_if_longer_than(LIMIT), "reset"),
        (
            "alert 47",
            Rule::alert_if_longer_than(LIMIT, 47),
            "alert:47",
        ),
    ];
    for (name, rule, failure) in rows {
        let (r, seen, _server, _em) = probe_modern_behind(vec![rule], &ca).await;
        let ctx = || format!("{name}\n{}", r.to_table());
        let connector = wire_matches_report(name, &r, &seen);
        check_size_finding(name, &r, &connector, "long_hello");
        // The verdict: a size limit, with the largest hello that passed.
        let verdict = &r.findings[0].verdict;
        assert!(
            verdict.contains("a size limit, not a reassembly bug"),
            "{}",
            ctx()
        );
        let largest = r
            .tests
            .iter()
            .filter(|t| t.server_hello() && t.name != TestId::FallbackConnector);
        let largest = largest.map(|t| t.hello_len).max().unwrap();
        assert!(largest <= LIMIT, "{}", ctx());
        assert!(
            verdict.contains(&format!("longer than {largest} bytes")),
            "{}",
            ctx()
        );
        // On the wire: the long hello at about 1,550 bytes in one read, failed as the rule says;
        // the split hello (short) in two reads, passed.
        let long = seen_for(&r, &seen, TestId::LongHello);
        assert!(long.len() >= 1500, "{long:?}");
        assert_eq!(long.reads, 1);
        assert_ne!(long.action, Action::Pass);
        let split = seen_for(&r, &seen, TestId::SplitHello);
        assert!(split.len() < LIMIT && split.reads == 2 && split.action == Action::Pass);
        let t = r.test(TestId::LongHello).unwrap();
        assert_eq!(t.outcome.to_string(), failure, "{}", ctx());
        assert!(r.test(TestId::SplitHello).unwrap().server_hello());
        // The post-quantum hello is long too: it fails, and the size explains it.
        assert!(
            r.pq_key_share_intolerance && r.long_hello_intolerance && !r.split_hello_intolerance
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["long_hello_intolerance"], true);
        assert_eq!(v["split_hello_intolerance"], false);
        assert_eq!(v["version_intolerance"]["1.3"], false);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_that_does_not_reassemble_fails_the_split_hello_only() {
    let ca = ca_file();
    for (name, rule, failure) in [
        (
            "hang on two segments",
            Rule::hang_if_fragmented(),
            "timeout",
        ),
        (
            "reset on two segments",
            Rule::reset_if_fragmented(),
            "reset",
        ),
    ] {
        let (r, seen, _server, _em) = probe_modern_behind(vec![rule], &ca).await;
        let ctx = || format!("{name}\n{}", r.to_table());
        let connector = wire_matches_report(name, &r, &seen);
        check_size_finding(name, &r, &connector, "split_hello");
        let verdict = &r.findings[0].verdict;
        assert!(
            verdict.contains("does not reassemble a ClientHello that spans two TCP segments"),
            "{}",
            ctx()
        );
        // Reassembly, not size: the long hello (one write, one read on loopback) passed.
        assert!(!verdict.contains("are dropped"), "{}", ctx());
        assert!(
            !r.long_hello_intolerance && r.split_hello_intolerance,
            "{}",
            ctx()
        );
        let split = seen_for(&r, &seen, TestId::SplitHello);
        assert_eq!(
            (split.reads, split.action == Action::Pass),
            (2, false),
            "{split:?}"
        );
        let long = seen_for(&r, &seen, TestId::LongHello);
        assert!(long.len() >= 1500 && long.reads == 1 && long.action == Action::Pass);
        assert_eq!(
            r.test(TestId::SplitHello).unwrap().outcome.to_string(),
            failure
        );
        assert_eq!(r.test(TestId::SplitHello).unwrap().segments.len(), 2);
        // Every hello but the split one came in one read: nothing else fired the rule.
        let fired: Vec<&SeenHello> = seen.iter().filter(|h| h.action != Action::Pass).collect();
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(
            serde_json::to_value(&r).unwrap()["split_hello_intolerance"],
            true
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_that_chokes_on_the_ml_kem_share_fails_the_post_quantum_hello_only() {
    let ca = ca_file();
    for (name, rule, failure) in [
        (
            "hang on 0x11ec",
            Rule::hang_if_key_share(GROUP_X25519MLKEM768),
            "timeout",
        ),
        (
            "alert 47 on 0x11ec",
            Rule::alert_if_key_share(GROUP_X25519MLKEM768, 47),
            "alert:47",
        ),
    ] {
        let (r, seen, _server, _em) = probe_modern_behind(vec![rule], &ca).await;
        let ctx = || format!("{name}\n{}", r.to_table());
        let connector = wire_matches_report(name, &r, &seen);
        check_size_finding(name, &r, &connector, "pq_key_share");
        assert!(
            r.findings[0].verdict.contains("X25519MLKEM768"),
            "{}",
            ctx()
        );
        assert!(
            !r.long_hello_intolerance && r.pq_key_share_intolerance,
            "{}",
            ctx()
        );
        let pq = seen_for(&r, &seen, TestId::PqKeyShare);
        let shares = &pq.hello.as_ref().unwrap().key_shares;
        assert_eq!(
            shares.first().map(|k| k.group),
            Some(GROUP_X25519MLKEM768),
            "{pq:?}"
        );
        assert_ne!(pq.action, Action::Pass);
        // Only the post-quantum hello (and a connector hello carrying the share) fired.
        for h in &seen {
            let mlkem = h
                .hello
                .as_ref()
                .is_some_and(|x| x.has_key_share(GROUP_X25519MLKEM768));
            assert_eq!(h.action != Action::Pass, mlkem, "{h:?}");
        }
        assert_eq!(
            r.test(TestId::PqKeyShare).unwrap().outcome.to_string(),
            failure
        );
        // The connector's modern hello carries the share exactly when OpenSSL is 3.5 or later.
        let modern = connector.first().unwrap().hello.as_ref().unwrap();
        assert_eq!(
            modern.has_key_share(GROUP_X25519MLKEM768),
            client_sends_mlkem()
        );
    }
}

/// Without a box, the post-quantum hello gets a TLS 1.3 ServerHello whether the server knows
/// the group (OpenSSL 3.5+, vendored) or ignores it (the system 3.0 picks x25519).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_server_passes_the_long_split_and_post_quantum_hellos() {
    let ca = ca_file();
    let (r, seen, _server, _em) = probe_modern_behind(vec![], &ca).await;
    wire_matches_report("clean", &r, &seen);
    for id in [TestId::LongHello, TestId::SplitHello, TestId::PqKeyShare] {
        assert_eq!(
            r.test(id).unwrap().outcome.to_string(),
            "server_hello:1.3",
            "{id}"
        );
    }
    assert!(r.findings.is_empty(), "{}", r.to_table());
    assert!(
        r.recommendation.starts_with("Nothing needed"),
        "{}",
        r.recommendation
    );
    assert!(
        r.recommendation.contains("post-quantum"),
        "{}",
        r.recommendation
    );
    assert_eq!(connector_row(&r), ("ok:modern".into(), Some("1.3".into())));
    one_analysis("clean", &r);
}

// ---------------------------------------------------------------------------------------------
// 2. nginx behind the emulator
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_behind_a_long_hello_box_is_a_size_finding_and_keeps_tls13() {
    let dir = tempfile::tempdir().unwrap();
    let Some((nginx, port)) = common::servers::nginx(dir.path(), "TLSv1.2 TLSv1.3").await else {
        return;
    };
    let ca = ca_file();
    let em = Emulator::start(
        ([127, 0, 0, 1], port).into(),
        vec![Rule::hang_if_longer_than(LIMIT)],
    )
    .await
    .unwrap();
    let r = probe_box(&em, &ca).await;
    let seen = em.hellos();
    let connector = wire_matches_report("nginx long", &r, &seen);
    check_size_finding("nginx long", &r, &connector, "long_hello");
    assert!(
        r.findings[0].verdict.contains("a size limit"),
        "{}\n{}",
        r.to_table(),
        nginx.log()
    );
    assert!(seen_for(&r, &seen, TestId::LongHello).len() >= 1500);
    assert_eq!(r.fallback_scsv, ScsvSupport::Supported, "{}", r.to_table());
    em.clear();
    let got = get_box(&em).await;
    one_story("nginx long", &r, &got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_tls13_behind_a_box_closing_tls13_hellos_is_a_blocked_higher_version() {
    let dir = tempfile::tempdir().unwrap();
    let Some((nginx, port)) = common::servers::nginx(dir.path(), "TLSv1.2 TLSv1.3").await else {
        return;
    };
    let ca = ca_file();
    let em = Emulator::start(
        ([127, 0, 0, 1], port).into(),
        vec![Rule::close_above(Tls1_2)],
    )
    .await
    .unwrap();
    let r = probe_box(&em, &ca).await;
    let ctx = || format!("{}\n{}", r.to_table(), nginx.log());
    let seen = em.hellos();
    wire_matches_report("nginx blocked", &r, &seen);
    assert!(r.higher_version_blocked, "{}", ctx());
    assert_eq!(r.fallback_scsv, ScsvSupport::Supported, "{}", ctx());
    assert_eq!(r.supported, [Tls1_2], "{}", ctx());
    assert_eq!(
        ids(&r)[..2],
        ["higher_version_blocked", "version_intolerance"],
        "{}",
        ctx()
    );
    assert!(r.findings[0].verdict.contains("Two readings"), "{}", ctx());
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["higher_version_blocked"], true);
    assert_eq!(v["fallback_scsv"], "supported");
    assert_eq!(v["fallbackScsv"], true);
    assert_eq!(v["protocolIntolerance"].as_u64().unwrap() & 8, 8);
    // On the wire: the SCSV hello offered TLS 1.2 (the best that got through), and nginx
    // refused it: alert 86.
    let scsv = seen_for(&r, &seen, TestId::FallbackScsv);
    assert_eq!(
        (scsv.offered(), scsv.scsv(), scsv.action),
        (Some(Tls1_2), true, Action::Pass)
    );
    assert_eq!(
        r.test(TestId::FallbackScsv).unwrap().outcome.to_string(),
        "alert:86"
    );
    em.clear();
    let got = get_box(&em).await;
    assert_eq!(
        got.as_ref().err().map(Error::kind),
        Some(ErrorKind::DowngradeDetected)
    );
    one_story("nginx blocked", &r, &got);
}

// ---------------------------------------------------------------------------------------------
// 3. probe and get: one story for every intolerant kind
// ---------------------------------------------------------------------------------------------

fn kinds_version() -> Vec<Kind> {
    vec![
        Kind {
            name: "TLS 1.0 only, closes above 1.0",
            server: || Server::Only(Tls1_0),
            rules: vec![Rule::close_above(Tls1_0)],
            expect: Some(("tls10-legacy", Tls1_0)),
            findings: &["version_intolerance"],
        },
        Kind {
            name: "TLS 1.1 only, resets above 1.1",
            server: || Server::Only(Tls1_1),
            rules: vec![Rule::reset_above(Tls1_1)],
            expect: Some(("tls11-legacy", Tls1_1)),
            findings: &["version_intolerance"],
        },
        Kind {
            name: "TLS 1.2 only, hangs above 1.2",
            server: || Server::Only(Tls1_2),
            rules: vec![Rule::hang_above(Tls1_2)],
            expect: Some(("tls12", Tls1_2)),
            findings: &["version_intolerance"],
        },
        Kind {
            name: "TLS 1.2 only, alert 40 above 1.2",
            server: || Server::Only(Tls1_2),
            rules: vec![Rule::alert_above(Tls1_2, 40)],
            expect: Some(("tls12", Tls1_2)),
            findings: &["version_intolerance"],
        },
    ]
}

fn kinds_blocked() -> Vec<Kind> {
    vec![
        Kind {
            name: "TLS 1.3 server, closes TLS 1.3 hellos",
            server: || Server::Modern,
            rules: vec![Rule::close_above(Tls1_2)],
            expect: None,
            findings: &["higher_version_blocked", "version_intolerance"],
        },
        Kind {
            name: "TLS 1.0/1.1 server, resets above 1.0",
            server: || Server::Legacy,
            rules: vec![Rule::reset_above(Tls1_0)],
            expect: None,
            findings: &["higher_version_blocked", "version_intolerance"],
        },
        Kind {
            name: "TLS 1.0-1.3 server, closes above 1.0",
            server: || Server::All,
            rules: vec![Rule::close_above(Tls1_0)],
            expect: None,
            findings: &["higher_version_blocked", "version_intolerance"],
        },
    ]
}

fn kinds_shape() -> Vec<Kind> {
    let modern = || Server::Modern;
    vec![
        Kind {
            name: "F5: hangs on 256..511 bytes",
            server: modern,
            rules: vec![Rule::f5_hang()],
            expect: Some(("modern", Tls1_3)),
            findings: &["long_handshake"],
        },
        // The demo's box. Every probe hello but the TLS 1.3-only one carries 17 to 20 suites,
        // so the probe cannot tell this limit from version intolerance (it says 1.3 is
        // intolerant); the story with `get` still holds.
        Kind {
            name: "closes more than 16 suites",
            server: modern,
            rules: vec![Rule::close_if_ciphers_above(16)],
            expect: Some(("modern-compact", Tls1_3)),
            findings: &[],
        },
        // A limit between the probe's baseline (20 suites) and its long list (150): named.
        Kind {
            name: "closes more than 32 suites",
            server: modern,
            rules: vec![Rule::close_if_ciphers_above(32)],
            expect: Some(("modern", Tls1_3)),
            findings: &["cipher_count"],
        },
        Kind {
            name: "closes hellos longer than 1000",
            server: modern,
            rules: vec![Rule::close_if_longer_than(LIMIT)],
            expect: Some((LONG, Tls1_3)),
            findings: &["long_hello"],
        },
    ]
}

fn kinds_size() -> Vec<Kind> {
    let modern = || Server::Modern;
    let key_share = GROUP_X25519MLKEM768;
    vec![
        Kind {
            name: "hangs on hellos longer than 1000",
            server: modern,
            rules: vec![Rule::hang_if_longer_than(LIMIT)],
            expect: Some((LONG, Tls1_3)),
            findings: &["long_hello"],
        },
        Kind {
            name: "resets hellos longer than 1000",
            server: modern,
            rules: vec![Rule::reset_if_longer_than(LIMIT)],
            expect: Some((LONG, Tls1_3)),
            findings: &["long_hello"],
        },
        Kind {
            name: "alert 47 on hellos longer than 1000",
            server: modern,
            rules: vec![Rule::alert_if_longer_than(LIMIT, 47)],
            expect: Some((LONG, Tls1_3)),
            findings: &["long_hello"],
        },
        Kind {
            name: "hangs on a hello in two segments",
            server: modern,
            rules: vec![Rule::hang_if_fragmented()],
            expect: Some(("modern", Tls1_3)),
            findings: &["split_hello"],
        },
        Kind {
            name: "resets a hello in two segments",
            server: modern,
            rules: vec![Rule::reset_if_fragmented()],
            expect: Some(("modern", Tls1_3)),
            findings: &["split_hello"],
        },
        Kind {
            name: "hangs on an ML-KEM key share",
            server: modern,
            rules: vec![Rule::hang_if_key_share(key_share)],
            expect: Some((LONG, Tls1_3)),
            findings: &["pq_key_share"],
        },
        Kind {
            name: "alert 47 on an ML-KEM key share",
            server: modern,
            rules: vec![Rule::alert_if_key_share(key_share, 47)],
            expect: Some((LONG, Tls1_3)),
            findings: &["pq_key_share"],
        },
    ]
}

async fn run_kinds(kinds: Vec<Kind>) {
    let ca = ca_file();
    for kind in kinds {
        let name = kind.name;
        let took = probe_and_get(kind, &ca).await;
        eprintln!("{name}: probe {} ms", took.as_millis());
        assert!(took < Duration::from_secs(20), "{name}: {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_and_get_agree_on_version_intolerant_boxes() {
    run_kinds(kinds_version()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_and_get_agree_on_boxes_that_block_a_version_the_server_speaks() {
    run_kinds(kinds_blocked()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_and_get_agree_on_shape_intolerant_boxes() {
    run_kinds(kinds_shape()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_and_get_agree_on_long_split_and_post_quantum_boxes() {
    run_kinds(kinds_size()).await;
}

/// An attacker resetting the first two connections: `get`'s first contact sees a downgrade and
/// refuses it; once the attack stops, the probe and a second `get` both find a clean host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_and_get_agree_after_an_attacker_resets_the_first_two_connections() {
    let ca = ca_file();
    let server = TlsServer::modern().await.unwrap();
    let em = Emulator::start(server.addr(), vec![Rule::reset_first(2)])
        .await
        .unwrap();
    let first = get_box(&em).await;
    assert_eq!(
        first.as_ref().err().map(Error::kind),
        Some(ErrorKind::DowngradeDetected)
    );
    assert_eq!(
        ladder(&em.hellos()),
        [
            (Some(Tls1_3), false),
            (Some(Tls1_3), true),
            (Some(Tls1_2), true)
        ]
    );
    em.clear();
    let r = probe_box(&em, &ca).await;
    let connector = wire_matches_report("after the attack", &r, &em.hellos());
    assert!(em.hellos().iter().all(|h| h.action == Action::Pass));
    em.clear();
    let second = get_box(&em).await;
    assert_eq!(ladder(&connector), ladder(&em.hellos()));
    assert!(r.findings.is_empty(), "{}", r.to_table());
    one_story("after the attack", &r, &second);
    assert_eq!(connector_row(&r), ("ok:modern".into(), Some("1.3".into())));
}

// ---------------------------------------------------------------------------------------------
// 4. Every address; one test alone
// ---------------------------------------------------------------------------------------------

/// Two emulators on one port of 127.0.0.1 and 127.0.0.2 (retried when the port is taken on
/// the second address).
async fn two_addresses(
    backend: SocketAddr,
    first: Vec<Rule>,
    second: Vec<Rule>,
) -> (Emulator, Emulator) {
    for _ in 0..5 {
        let a = Emulator::start(backend, first.clone()).await.unwrap();
        let at = SocketAddr::from(([127, 0, 0, 2], a.addr().port()));
        match Emulator::start_at(at, backend, second.clone()).await {
            Ok(b) => return (a, b),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => panic!("bind {at}: {e}"),
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_addresses_of_one_name_are_probed_each_and_their_difference_is_said() {
    let ca = ca_file();
    let server = TlsServer::modern().await.unwrap();
    let (broken, healthy) = two_addresses(
        server.addr(),
        vec![Rule::hang_if_longer_than(LIMIT)],
        vec![],
    )
    .await;
    let port = broken.addr().port();
    let ips: Vec<IpAddr> = vec![broken.addr().ip(), healthy.addr().ip()];
    let r = probe(&config(port, &ips, &ca)).await.unwrap();
    let ctx = || r.to_table();
    let each = r.per_address();
    assert_eq!(each.len(), 2, "{}", ctx());
    assert_eq!(each[0].address, Some(broken.addr()));
    assert_eq!(each[1].address, Some(healthy.addr()));
    assert_eq!(ids(each[0]), ["long_hello"], "{}", ctx());
    assert!(each[1].findings.is_empty(), "{}", ctx());
    let differ = r.addresses_differ.as_deref().expect("the addresses differ");
    assert_eq!(
        differ,
        "127.0.0.1 is intolerant (long hello), 127.0.0.2 is not intolerant: the addresses \
         behave differently."
    );
    assert!(r.summary.starts_with(differ), "{}", r.summary);
    assert!(r.recommendation.starts_with(differ), "{}", r.recommendation);
    assert!(ctx().contains(differ));
    // The name's own fields are its first address's (the original JSON keys).
    assert!(r.long_hello_intolerance);
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["addresses"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["addresses"][1]["long_hello_intolerance"], false);
    assert_eq!(v["addresses_differ"], differ);
    // Each emulator saw its own address's tests and nothing else: the probe's hellos in order,
    // then that address's connector test (one `modern` hello on the healthy one).
    wire_matches_report("127.0.0.1", each[0], &broken.hellos());
    let on_healthy = wire_matches_report("127.0.0.2", each[1], &healthy.hellos());
    assert_eq!(ladder(&on_healthy), [(Some(Tls1_3), false)]);
    assert!(healthy.hellos().iter().all(|h| h.action == Action::Pass));
    // Every connection of an address's tests went to that address.
    for (report, em) in [(each[0], &broken), (each[1], &healthy)] {
        let exchanges: Vec<_> = report
            .tests
            .iter()
            .filter_map(|t| t.exchange.as_ref())
            .collect();
        assert_eq!(exchanges.len(), sent(report).len());
        assert!(exchanges.iter().all(|x| x.server == em.addr()));
        assert!(report.source.is_some_and(|s| s.ip().is_loopback()));
    }
    one_analysis("127.0.0.1", each[0]);
    one_analysis("127.0.0.2", each[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_second_address_is_reported_not_fatal() {
    let ca = ca_file();
    let server = TlsServer::modern().await.unwrap();
    let em = Emulator::start(server.addr(), vec![]).await.unwrap();
    // Nothing listens on 127.0.0.3 at this port: connections are refused at once.
    let nowhere: IpAddr = [127, 0, 0, 3].into();
    let started = Instant::now();
    let r = probe(&config(em.addr().port(), &[em.addr().ip(), nowhere], &ca))
        .await
        .expect("one address answered");
    assert!(started.elapsed() < Duration::from_secs(10));
    let each = r.per_address();
    assert_eq!(each.len(), 2, "{}", r.to_table());
    assert!(each[0].unreachable.is_none() && each[0].findings.is_empty());
    let why = each[1]
        .unreachable
        .as_deref()
        .expect("reported unreachable");
    assert!(
        why.contains(&format!("127.0.0.3:{}", em.addr().port())),
        "{why}"
    );
    assert!(each[1].tests.is_empty());
    let differ = r.addresses_differ.as_deref().unwrap();
    assert!(differ.contains("127.0.0.1 is not intolerant"), "{differ}");
    assert!(
        differ.contains("127.0.0.3 could not be reached"),
        "{differ}"
    );
    assert!(r.to_table().contains(why), "{}", r.to_table());
    // The top report is the reachable address's.
    assert_eq!(r.address, Some(em.addr()));
    assert_eq!(r.supported, [Tls1_2, Tls1_3]);
    // Unreachable everywhere: an error, not a report.
    let err = probe(&config(em.addr().port(), &[nowhere], &ca))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_test_on_a_baseline_sends_exactly_one_hello() {
    let ca = ca_file();
    let server = TlsServer::modern().await.unwrap();
    let em = Emulator::start(server.addr(), vec![Rule::hang_if_fragmented()])
        .await
        .unwrap();
    // (test, baseline, highest version offered, reads, passed)
    let rows = [
        (TestId::SplitHello, Some(0x0303), Tls1_2, 2, false),
        (TestId::SplitHello, None, Tls1_3, 2, false),
        (TestId::LongHello, Some(0x0303), Tls1_2, 1, true),
        (TestId::PqKeyShare, None, Tls1_3, 1, true),
        (TestId::FallbackScsv, Some(0x0303), Tls1_2, 1, true),
        (TestId::Version11, None, Tls1_1, 1, true),
    ];
    for (id, baseline, offered, reads, passed) in rows {
        em.clear();
        let mut cfg = config(em.addr().port(), &[em.addr().ip()], &ca);
        cfg.only = Some(id);
        cfg.baseline = baseline;
        let r = probe(&cfg).await.unwrap();
        let seen = em.hellos();
        assert_eq!(seen.len(), 1, "{id}: {seen:?}");
        assert_eq!(r.tests.len(), 1, "{id}");
        assert_eq!(r.tests[0].name, id);
        let h = &seen[0];
        assert_eq!(
            (h.offered(), h.reads, h.action == Action::Pass),
            (Some(offered), reads, passed),
            "{id}"
        );
        assert_eq!(h.len(), r.tests[0].hello_len, "{id}");
        assert_eq!(h.scsv(), id == TestId::FallbackScsv, "{id}");
        if id == TestId::LongHello {
            assert!(h.len() >= 1500);
        }
        if id == TestId::FallbackScsv {
            // The server speaks 1.3: a 1.2 hello with the SCSV is refused.
            assert_eq!(r.tests[0].outcome, TestOutcome::Alert(86));
        }
    }
}
