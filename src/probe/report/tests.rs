//! The report through the one analysis: findings, summary, table, recommendation, JSON.

use super::table::outcome_cell;
use super::*;
use crate::wire::{TLS10, TLS11, TLS12, TLS13};
use crate::ErrorKind;
use TestId::*;

fn hello(v: u16) -> TestOutcome {
    TestOutcome::ServerHello(WireVersion(v))
}

/// A report of one address from these test rows, through the one analysis.
fn report_of(rows: &[(TestId, TestOutcome)]) -> ProbeReport {
    let cfg = ProbeConfig::new("h:443");
    let target = Target::parse("h:443").unwrap();
    let tests = rows
        .iter()
        .map(|(id, o)| ProbeTest::sample(*id, o.clone()))
        .collect();
    let addr: SocketAddr = "127.0.0.1:443".parse().unwrap();
    ProbeReport::of_address(&cfg, &target, addr, None, tests)
}

/// A TLS 1.2/1.3 server's version rows, with `v13` the outcome of the hellos offering 1.3.
fn modern_versions(v13: TestOutcome) -> Vec<(TestId, TestOutcome)> {
    vec![
        (Version10, TestOutcome::Alert(70)),
        (Version11, TestOutcome::Alert(70)),
        (Version12, hello(TLS12)),
        (Version13Only, v13.clone()),
        (Version13, v13),
        (Future0304, hello(TLS12)),
        (Future0398, hello(TLS12)),
        (Future0498, hello(TLS12)),
    ]
}

#[test]
fn a_clean_host_needs_nothing_and_says_so_everywhere() {
    let mut rows = modern_versions(hello(TLS13));
    rows.extend([
        (LongShort, hello(TLS13)),
        (LongHello, hello(TLS13)),
        (SplitHello, hello(TLS13)),
        (PqKeyShare, hello(TLS13)),
        (FallbackScsv, TestOutcome::Alert(86)),
    ]);
    let r = report_of(&rows);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
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
    assert_eq!((r.protocol_intolerance, r.misc_intolerance), (0, 0));
    assert!(r.fallback_scsv_bool);
    assert!(
        r.summary.contains("handled every test hello correctly"),
        "{}",
        r.summary
    );
}

/// The first case: a box that hangs on long hellos in front of a healthy TLS 1.3
/// server is never "Nothing needed"; split in two segments tells reassembly from size.
#[test]
fn long_and_split_hello_failures_are_named_and_never_nothing_needed() {
    // (split outcome, pq outcome, finding id, words in the verdict)
    let rows = [
        (
            TestOutcome::Timeout,
            TestOutcome::Timeout,
            "split_hello",
            "does not reassemble",
        ),
        (
            hello(TLS13),
            TestOutcome::Timeout,
            "long_hello",
            "a size limit",
        ),
    ];
    for (split, pq, id, words) in rows {
        let mut tests = modern_versions(hello(TLS13));
        tests.extend([
            (LongShort, hello(TLS13)),
            (Long512, hello(TLS13)),
            (BaselinePadded, hello(TLS13)),
            (LongHello, TestOutcome::Timeout),
            (SplitHello, split),
            (PqKeyShare, pq),
            (FallbackScsv, TestOutcome::Alert(86)),
        ]);
        let r = report_of(&tests);
        assert!(r.long_hello_intolerance);
        assert_eq!(r.findings[0].id, id, "{:?}", r.findings);
        assert!(
            r.findings[0].verdict.contains(words),
            "{}",
            r.findings[0].verdict
        );
        // Every sample hello is 100 bytes: the largest that passed.
        assert!(
            r.findings[0].verdict.contains("longer than 100 bytes"),
            "{}",
            r.findings[0].verdict
        );
        assert!(
            !r.recommendation.contains("Nothing needed"),
            "{}",
            r.recommendation
        );
        assert!(
            r.recommendation.contains("modern-compact"),
            "{}",
            r.recommendation
        );
        assert!(
            r.recommendation.contains("no version loss"),
            "{}",
            r.recommendation
        );
    }
    // The post-quantum share alone: the long hello passes, the PQ one fails.
    let mut tests = modern_versions(hello(TLS13));
    tests.extend([
        (LongShort, hello(TLS13)),
        (LongHello, hello(TLS13)),
        (SplitHello, hello(TLS13)),
        (PqKeyShare, TestOutcome::Alert(47)),
    ]);
    let r = report_of(&tests);
    assert!(r.pq_key_share_intolerance && !r.long_hello_intolerance);
    assert_eq!(r.findings[0].id, "pq_key_share");
    assert!(r.findings[0]
        .evidence
        .contains(&"pq_key_share=alert:47".to_string()));
}

/// The third case: a box closing TLS 1.3 hellos in front of a TLS 1.3 server. The
/// SCSV hello at TLS 1.2 is refused with inappropriate_fallback: the server speaks more
/// than the path lets through, in the table, the findings, the recommendation and the JSON.
#[test]
fn an_scsv_refusal_at_the_best_version_proves_a_blocked_higher_version() {
    let mut rows = modern_versions(TestOutcome::Closed);
    rows.push((FallbackScsv, TestOutcome::Alert(86)));
    let r = report_of(&rows);
    assert!(r.higher_version_blocked);
    assert_eq!(r.fallback_scsv, ScsvSupport::Supported);
    assert_eq!(r.findings[0].id, "higher_version_blocked");
    assert!(
        r.recommendation.contains("Two readings"),
        "{}",
        r.recommendation
    );
    assert!(
        r.recommendation.contains("pin h to TLS 1.2"),
        "{}",
        r.recommendation
    );
    assert!(
        r.recommendation.contains("gives up"),
        "{}",
        r.recommendation
    );
    assert_eq!(r.protocol_intolerance, 8);
    let table = r.to_table();
    assert!(
        table.contains("supports a higher version than the path lets through"),
        "{table}"
    );
    // Accepted at the best version instead: unknown, and said why.
    let mut rows = modern_versions(TestOutcome::Closed);
    rows.push((FallbackScsv, hello(TLS12)));
    let r = report_of(&rows);
    assert!(!r.higher_version_blocked);
    assert_eq!(r.fallback_scsv_unknown, Some(ScsvUnknown::AcceptedAtBest));
}

/// The sixth case: a box resetting every hello above TLS 1.0 in front of a server
/// speaking 1.0 and 1.1. Allowing legacy cannot work (the connector sees a downgrade):
/// the advice is the report and an explicit pin, with legacy allowed.
#[test]
fn a_blocked_legacy_host_gets_the_pin_not_allow_legacy() {
    let rows = [
        (Version10, hello(TLS10)),
        (Version11, TestOutcome::Reset),
        (Version12, TestOutcome::Reset),
        (Version13Only, TestOutcome::Reset),
        (Version13, TestOutcome::Reset),
        (FallbackScsv, TestOutcome::Alert(86)),
    ];
    let r = report_of(&rows);
    assert!(r.higher_version_blocked);
    assert!(
        !r.recommendation.contains("allow legacy TLS for this host"),
        "{}",
        r.recommendation
    );
    assert!(
        r.recommendation.contains("pin h to TLS 1.0"),
        "{}",
        r.recommendation
    );
    assert!(
        r.recommendation.contains("--allow-legacy"),
        "{}",
        r.recommendation
    );
    assert_eq!(r.protocol_intolerance, 2 | 4 | 8);
}

/// The second case: nothing negotiated, every hello above 1.0 closed. The table
/// never says "ok" next to a failed row.
#[test]
fn the_summary_never_says_ok_next_to_a_failed_row() {
    let rows = [
        (Version10, TestOutcome::Alert(70)),
        (Version11, TestOutcome::Closed),
        (Version12, TestOutcome::Closed),
        (Version13Only, TestOutcome::Closed),
        (Version13, TestOutcome::Closed),
    ];
    let r = report_of(&rows);
    let table = r.to_table();
    let line = table
        .lines()
        .find(|l| l.contains("Version intolerance"))
        .unwrap();
    assert!(
        !line.contains("1.1: ok") && !line.contains("1.3: ok"),
        "{line}"
    );
    assert!(line.contains("1.1: closed"), "{line}");
}

#[test]
fn the_connector_row_shows_its_rung_and_the_version_apart() {
    let mut t = ProbeTest::sample(
        FallbackConnector,
        TestOutcome::Connected("tls11-legacy".into()),
    );
    t.negotiated = Some(WireVersion(TLS10));
    assert_eq!(outcome_cell(&t), "ok:tls11-legacy (TLS 1.0)");
    let _ = TLS11;
}

#[test]
fn ssl_labs_fields_follow_the_findings() {
    let mut rows = modern_versions(hello(TLS13));
    rows[6] = (Future0398, TestOutcome::Closed);
    rows.extend([
        (LongShort, hello(TLS13)),
        (Long300, TestOutcome::Timeout),
        (Long512, hello(TLS13)),
        (BaselinePadded, hello(TLS13)),
        (ExtensionUnknown, TestOutcome::Alert(50)),
    ]);
    let r = report_of(&rows);
    assert_eq!(r.protocol_intolerance, 16);
    assert_eq!(r.misc_intolerance, 1 | 2 | 4);
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["protocolIntolerance"], 16);
    assert_eq!(v["miscIntolerance"], 7);
    assert_eq!(v["fallbackScsv"], false);
}

#[test]
fn the_probes_own_certificate_failure_comes_first_in_the_advice() {
    let mut rows = modern_versions(hello(TLS13));
    rows.push((
        FallbackConnector,
        TestOutcome::Failed(ErrorKind::Certificate),
    ));
    let r = report_of(&rows);
    assert!(
        r.recommendation.starts_with("Fix the certificate first"),
        "{}",
        r.recommendation
    );
    assert!(
        r.recommendation.contains("--ca-file"),
        "{}",
        r.recommendation
    );
}

/// The original JSON contract: the same keys, in the same order, with the same string
/// forms; the new keys come after them.
#[test]
fn report_json_keeps_the_original_keys_first_and_in_order() {
    let rows = [
        (Version12, hello(TLS12)),
        (Future0398, TestOutcome::Alert(70)),
        (Long300, TestOutcome::Skipped),
    ];
    let r = report_of(&rows);
    let text = serde_json::to_string(&r).unwrap();
    let original = [
        "\"target\":\"h:443\"",
        "\"supported\":[\"1.2\"]",
        "\"version_intolerance\":{\"1.0\":false,\"1.1\":false,\"1.2\":false,\"1.3\":false,\"future\":true}",
        "\"long_handshake_intolerance\":false",
        "\"cipher_count_intolerance\":false",
        "\"extension_intolerance\":false",
        "\"fallback_scsv\":\"unknown\"",
        "\"recommendation\":",
        "\"tests\":[{\"name\":\"version_1.2\",\"description\":\"\",\"hello_len\":100,\"outcome\":\"server_hello:1.2\",\"negotiated\":\"1.2\",\"ms\":1}",
        "\"fallback_scsv_unknown\":\"single_version\"",
        "\"long_hello_intolerance\":false",
        "\"protocolIntolerance\":16",
    ];
    let mut at = 0;
    for key in original {
        let found = text[at..]
            .find(key)
            .unwrap_or_else(|| panic!("{key} after {at}: {text}"));
        at += found + key.len();
    }
    assert!(
        !text.contains("\"record\"") && !text.contains("\"exchange\""),
        "{text}"
    );
    let _ = TLS13;
}

#[test]
fn addresses_left_out_are_said_in_the_summary_and_the_json() {
    let mut r = report_of(&modern_versions(hello(TLS13)));
    r.note_not_probed(0);
    assert_eq!(r.addresses_not_probed, 0);
    assert!(serde_json::to_value(&r)
        .unwrap()
        .get("addresses_not_probed")
        .is_none());
    r.note_not_probed(3);
    assert!(r.summary.ends_with("3 more addresses of this name were not probed (the first 0 were); --resolve HOST:PORT:ADDR chooses which."), "{}", r.summary);
    assert!(r.recommendation.contains("--resolve"));
    assert_eq!(serde_json::to_value(&r).unwrap()["addresses_not_probed"], 3);
}

/// An attacker (or a box) resetting the SCSV hello at the best version, after dropping the
/// newer ones: the report never advises legacy TLS on that evidence.
#[test]
fn a_failed_scsv_hello_holds_back_the_legacy_advice() {
    let rows = [
        (Version10, hello(TLS10)),
        (Version11, TestOutcome::Reset),
        (Version12, TestOutcome::Reset),
        (Version13Only, TestOutcome::Reset),
        (Version13, TestOutcome::Reset),
        (FallbackScsv, TestOutcome::Reset),
    ];
    let r = report_of(&rows);
    assert_eq!(r.fallback_scsv_unknown, Some(ScsvUnknown::Inconclusive));
    assert!(
        r.findings.iter().any(|f| f.id == "scsv_intolerance"),
        "{:?}",
        r.findings
    );
    assert!(
        !r.recommendation.contains("allow legacy TLS for this host"),
        "{}",
        r.recommendation
    );
    assert!(
        !r.recommendation.contains("falls back"),
        "{}",
        r.recommendation
    );
    assert!(
        r.recommendation.contains("Do not allow legacy TLS"),
        "{}",
        r.recommendation
    );
    // The same box answering the SCSV hello with a ServerHello is a plain legacy host.
    let mut rows = rows.to_vec();
    rows[5] = (FallbackScsv, hello(TLS10));
    let r = report_of(&rows);
    assert!(r.findings.iter().all(|f| f.id != "scsv_intolerance"));
    assert!(
        r.recommendation.contains("allow legacy TLS for this host"),
        "{}",
        r.recommendation
    );
}

/// `--only`: one test reports what happened to it, never a finding about the host (one failed
/// hello has nothing to be compared with, so it is not "no TLS answer").
#[test]
fn a_single_test_reports_its_outcome_and_no_finding() {
    let mut cfg = ProbeConfig::new("h:443");
    cfg.only = Some(LongHello);
    let target = Target::parse("h:443").unwrap();
    let mut t = ProbeTest::sample(LongHello, TestOutcome::Timeout);
    t.how = Some("no answer: timed out after 5000 ms".into());
    let addr: SocketAddr = "127.0.0.1:443".parse().unwrap();
    let r = ProbeReport::of_address(&cfg, &target, addr, None, vec![t]);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(
        r.summary,
        "long_hello alone against h (127.0.0.1): no answer: timed out after 5000 ms."
    );
    assert!(
        r.recommendation.contains("run the full probe"),
        "{}",
        r.recommendation
    );
    assert!(!r.to_table().contains("Is this a TLS port"));
}
