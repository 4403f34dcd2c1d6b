//! The probe against test kit gateways (real OpenSSL servers behind the intolerance emulator,
//! on 127.0.0.1): each row is a gateway and the findings the report must carry, including the
//! ones that are not intolerance at all (nothing answering in TLS, the probe's own certificate
//! failure) and the connector test reaching the probed address whatever the SNI name says.
#![cfg(feature = "testkit")]

use std::io::Write;
use std::time::{Duration, Instant};

use tls_fallback::probe::{
    probe, NoTlsAnswer, ProbeConfig, ProbeReport, ScsvSupport, ScsvUnknown, TestId, TestOutcome,
};
use tls_fallback::testkit::{Action, Emulator, Rule, TestPki, TlsServer, Trigger};
use tls_fallback::TlsVersion::{self, *};

/// Per-test timeout: short, the gateways are local.
const TIMEOUT: Duration = Duration::from_millis(500);

struct Row {
    name: &'static str,
    server: TlsServer,
    rules: Vec<Rule>,
    /// `None`: the default (no SNI for an IP target).
    sni: Option<&'static str>,
    ca: bool,
    expect: Expect,
}

struct Expect {
    supported: &'static [TlsVersion],
    no_tls_answer: Option<NoTlsAnswer>,
    scsv: ScsvSupport,
    scsv_unknown: Option<ScsvUnknown>,
    /// The start of the connector test's outcome (`ok:`, `error:certificate`, `skipped`).
    connector: &'static str,
    /// Substrings of the recommendation.
    advice: &'static [&'static str],
    /// Substrings the recommendation must not have.
    not_advice: &'static [&'static str],
    /// Substrings of the table.
    table: &'static [&'static str],
}

fn always(action: Action) -> Rule {
    Rule {
        trigger: Trigger::Always,
        action,
    }
}

async fn rows() -> Vec<Row> {
    let modern = || async { TlsServer::modern().await.unwrap() };
    vec![
        Row {
            name: "clean modern server, CA given",
            server: modern().await,
            rules: vec![],
            sni: Some("localhost"),
            ca: true,
            expect: Expect {
                supported: &[Tls1_2, Tls1_3],
                no_tls_answer: None,
                scsv: ScsvSupport::Supported,
                scsv_unknown: None,
                connector: "ok:",
                advice: &["Nothing needed"],
                not_advice: &["--ca-file", "TLS port"],
                table: &["TLS_FALLBACK_SCSV         supported"],
            },
        },
        Row {
            name: "clean modern server, no CA: the probe's own certificate failure leads",
            server: modern().await,
            rules: vec![],
            sni: Some("localhost"),
            ca: false,
            expect: Expect {
                supported: &[Tls1_2, Tls1_3],
                no_tls_answer: None,
                scsv: ScsvSupport::Supported,
                scsv_unknown: None,
                connector: "error:certificate",
                advice: &[
                    "failed the certificate check",
                    "--ca-file",
                    "certificate chain",
                ],
                not_advice: &["TLS port"],
                table: &[],
            },
        },
        Row {
            name: "SNI name that resolves nowhere: the connector still dials the target",
            server: modern().await,
            rules: vec![],
            sni: Some("pay.invalid"),
            ca: true,
            expect: Expect {
                supported: &[Tls1_2, Tls1_3],
                no_tls_answer: None,
                scsv: ScsvSupport::Supported,
                scsv_unknown: None,
                connector: "error:certificate",
                advice: &["hostname mismatch"],
                not_advice: &[],
                table: &[],
            },
        },
        Row {
            name: "silent port: accepts TCP, never answers",
            server: modern().await,
            rules: vec![always(Action::Hang)],
            sni: Some("localhost"),
            ca: true,
            expect: Expect {
                supported: &[],
                no_tls_answer: Some(NoTlsAnswer::Silent),
                scsv: ScsvSupport::Unknown,
                scsv_unknown: Some(ScsvUnknown::NoTlsAnswer),
                connector: "skipped",
                advice: &["No TLS answer", "never answers", "Is this a TLS port?"],
                not_advice: &["intolerant to", "--ca-file"],
                table: &["No TLS answer", "not tested (no TLS answer)"],
            },
        },
        Row {
            name: "plain text on the port",
            server: modern().await,
            rules: vec![Rule::garbage()],
            sni: Some("localhost"),
            ca: true,
            expect: Expect {
                supported: &[],
                no_tls_answer: Some(NoTlsAnswer::NotTls),
                scsv: ScsvSupport::Unknown,
                scsv_unknown: Some(ScsvUnknown::NoTlsAnswer),
                connector: "skipped",
                advice: &["bytes that are not TLS", "Is this a TLS port?"],
                not_advice: &[],
                table: &[],
            },
        },
        Row {
            name: "every connection closed",
            server: modern().await,
            rules: vec![always(Action::Close)],
            sni: Some("localhost"),
            ca: true,
            expect: Expect {
                supported: &[],
                no_tls_answer: Some(NoTlsAnswer::Closed),
                scsv: ScsvSupport::Unknown,
                scsv_unknown: Some(ScsvUnknown::NoTlsAnswer),
                connector: "skipped",
                advice: &["closed or reset every connection"],
                not_advice: &[],
                table: &[],
            },
        },
        Row {
            name: "TLS 1.2 only: SCSV unknown, and the table says why",
            server: TlsServer::only(Tls1_2).await.unwrap(),
            rules: vec![],
            sni: Some("localhost"),
            ca: true,
            expect: Expect {
                supported: &[Tls1_2],
                no_tls_answer: None,
                scsv: ScsvSupport::Unknown,
                scsv_unknown: Some(ScsvUnknown::SingleVersion),
                connector: "ok:",
                advice: &["Pin 127.0.0.1 to TLS 1.2"],
                not_advice: &["--ca-file"],
                table: &["unknown (not tested: the server negotiates only TLS 1.2"],
            },
        },
        Row {
            name: "TLS 1.0 box closing newer hellos: intolerance, the connector gets through",
            server: TlsServer::only(Tls1_0).await.unwrap(),
            rules: vec![Rule::close_above(Tls1_0)],
            sni: Some("localhost"),
            ca: true,
            expect: Expect {
                supported: &[Tls1_0],
                no_tls_answer: None,
                scsv: ScsvSupport::Unknown,
                // A higher version failed, so the SCSV hello goes out at TLS 1.0; a 1.0-only
                // server rightly accepts it, which proves nothing about the SCSV.
                scsv_unknown: Some(ScsvUnknown::AcceptedAtBest),
                connector: "ok:",
                advice: &["Contact the vendor", "version_1.1=closed"],
                not_advice: &["TLS port"],
                table: &["1.1: INTOLERANT"],
            },
        },
    ]
}

fn ca_file() -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(&TestPki::shared().ca_pem()).unwrap();
    f
}

fn check(name: &str, r: &ProbeReport, e: &Expect) {
    let ctx = || format!("{name}\n{}", r.to_table());
    assert_eq!(r.supported, e.supported, "{}", ctx());
    assert_eq!(r.no_tls_answer, e.no_tls_answer, "{}", ctx());
    assert_eq!(r.fallback_scsv, e.scsv, "{}", ctx());
    assert_eq!(r.fallback_scsv_unknown, e.scsv_unknown, "{}", ctx());
    let connector = r.test(TestId::FallbackConnector).expect("connector row");
    assert!(
        connector.outcome.to_string().starts_with(e.connector),
        "{}",
        ctx()
    );
    for s in e.advice {
        assert!(r.recommendation.contains(s), "{s:?}: {}", ctx());
    }
    for s in e.not_advice {
        assert!(!r.recommendation.contains(s), "{s:?}: {}", ctx());
    }
    let table = r.to_table();
    for s in e.table {
        assert!(table.contains(s), "{s:?}: {}", ctx());
    }
    if r.no_tls_answer.is_some() {
        // Nothing answered: no row says a hello was tolerated, and nothing claims "ok".
        assert!(
            !table.contains(": ok") && !table.contains(" ok\n"),
            "{}",
            ctx()
        );
        assert!(r.tests.iter().all(|t| !t.server_hello()), "{}", ctx());
        let skipped = r
            .tests
            .iter()
            .filter(|t| t.outcome == TestOutcome::Skipped)
            .count();
        // Only the four hellos that could prove a version supported ran.
        assert_eq!(r.tests.len() - skipped, 4, "{}", ctx());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_findings_per_gateway() {
    let ca = ca_file();
    for row in rows().await {
        let em = Emulator::start(row.server.addr(), row.rules.clone())
            .await
            .unwrap();
        let mut cfg = ProbeConfig::new(format!("127.0.0.1:{}", em.addr().port()));
        cfg.sni = row.sni.map(String::from);
        cfg.timeout = TIMEOUT;
        cfg.ca_file = row.ca.then(|| ca.path().to_path_buf());
        let started = Instant::now();
        let report = probe(&cfg).await.unwrap();
        check(row.name, &report, &row.expect);
        if report.no_tls_answer.is_some() {
            // Four version hellos, each bounded by the timeout; the rest is skipped.
            assert!(
                started.elapsed() < TIMEOUT * 4 + Duration::from_secs(2),
                "{}",
                row.name
            );
        }
        // Every hello the probe sent reached this gateway, the connector's too, with the SNI.
        let sent = report.tests.iter().filter(|t| t.hello_len > 0).count();
        let hellos = em.hellos();
        assert!(
            hellos.len() >= sent,
            "{}: {} < {sent}",
            row.name,
            hellos.len()
        );
        if report.test(TestId::FallbackConnector).map(|t| &t.outcome) != Some(&TestOutcome::Skipped)
        {
            assert!(
                hellos.len() > sent,
                "{}: the connector reached the target",
                row.name
            );
        }
        if let Some(sni) = row.sni {
            let named = hellos.iter().filter_map(|h| h.hello.as_ref()?.sni.clone());
            assert!(named.into_iter().all(|s| s == sni), "{}", row.name);
        }
    }
}

#[tokio::test]
async fn probe_accepts_urls_and_rejects_bad_targets_with_a_reason() {
    let server = TlsServer::modern().await.unwrap();
    let mut cfg = ProbeConfig::new(format!("https://localhost:{}/health", server.addr().port()));
    assert_eq!(cfg.sni.as_deref(), Some("localhost"));
    cfg.timeout = TIMEOUT;
    cfg.full_handshake = false;
    let report = probe(&cfg).await.unwrap();
    assert_eq!(report.supported, [Tls1_2, Tls1_3]);
    assert!(report.test(TestId::FallbackConnector).is_none());

    let err = probe(&ProbeConfig::new("localhost:99999"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "port 99999 is out of range 1-65535; expected HOST[:PORT] or https://HOST[:PORT]/"
    );
}

/// An attacker on the path strips supported_versions from every hello (the test kit's
/// `strip_tls13`): each probe hello is answered at TLS 1.2, as by a 1.2-only server, but the
/// TLS 1.3 server's random carries the RFC 8446 downgrade sentinel and the connector refuses
/// the host. The report must say so, never "handled every test hello correctly" with a pin
/// that "just skips the TLS 1.3 offer".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_that_strips_tls13_is_a_downgrade_never_a_pin_to_skip_it() {
    let ca = ca_file();
    let server = TlsServer::modern().await.unwrap();
    let em = Emulator::start(server.addr(), vec![Rule::strip_tls13()])
        .await
        .unwrap();
    for full_handshake in [true, false] {
        let mut cfg = ProbeConfig::new(format!("127.0.0.1:{}", em.addr().port()));
        cfg.sni = Some("localhost".into());
        cfg.timeout = TIMEOUT;
        cfg.ca_file = Some(ca.path().to_path_buf());
        cfg.full_handshake = full_handshake;
        let r = probe(&cfg).await.unwrap();
        let ctx = format!("full_handshake {full_handshake}\n{}", r.to_table());
        assert_eq!(r.supported, [Tls1_2], "{ctx}");
        let ids: Vec<&str> = r.findings.iter().map(|f| f.id).collect();
        assert_eq!(ids, ["downgrade_signalled"], "{ctx}");
        assert!(r.findings[0].tests.contains(&TestId::Version13), "{ctx}");
        for bad in [
            "just skips the TLS 1.3 offer",
            "Nothing needed",
            "Contact the vendor",
        ] {
            assert!(!r.recommendation.contains(bad), "{bad:?}: {ctx}");
        }
        for good in [
            "Two readings",
            "Do not pin or lower this host",
            "If you trust the path",
        ] {
            assert!(r.recommendation.contains(good), "{good:?}: {ctx}");
        }
        assert!(
            !r.summary.contains("handled every test hello correctly"),
            "{ctx}"
        );
        assert!(r.connector.contains("downgrade_detected"), "{ctx}");
    }
}
