//! What the findings mean for the people who read the report (pure): each finding with its
//! verdict, evidence and advice; the one-paragraph summary for a non-expert; what the
//! connector does for this host; the recommendation; how the addresses of one name differ.
//! Everything is read from one [`Analysis`] and the report's tests.

use std::net::SocketAddr;

use serde::Serialize;

use super::analysis::Analysis;
use super::findings::{TestId, TestOutcome, VersionKey};
use super::report::{ProbeReport, ProbeTest};
use super::{version_name, Target};
use crate::error::ErrorKind;
use crate::wire::{TLS12, TLS13};

mod story;
pub use story::{addresses_differ, connector, recommend, reproduce, summary};

/// One finding: what is wrong (or right), the tests that show it, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable identifier: `no_tls_answer`, `version_intolerance`, `higher_version_blocked`,
    /// `long_handshake`, `cipher_count`, `unknown_extension`, `long_hello`, `split_hello`,
    /// `pq_key_share`, `scsv_ignored`, `scsv_intolerance`, `certificate`, `downgrade_signalled`.
    pub id: &'static str,
    /// The verdict in one sentence.
    pub verdict: String,
    /// The tests that show it, as `name=outcome`.
    pub evidence: Vec<String>,
    /// What to do about it.
    pub advice: String,
    /// The tests behind it.
    pub tests: Vec<TestId>,
}

/// `pay.example (127.0.0.1)`, or the address alone when the target is one.
pub fn host_label(target: &Target, addr: Option<SocketAddr>) -> String {
    match addr {
        Some(a) if a.ip().to_string() != target.host() => format!("{} ({})", target.host(), a.ip()),
        _ => target.host().to_string(),
    }
}

/// The version tests behind a key of the intolerance map.
pub fn tests_of(key: VersionKey) -> &'static [TestId] {
    match key {
        VersionKey::Tls10 => &[TestId::Version10],
        VersionKey::Tls11 => &[TestId::Version11],
        VersionKey::Tls12 => &[TestId::Version12],
        VersionKey::Tls13 => &[TestId::Version13],
        VersionKey::Future => &[TestId::Future0304, TestId::Future0398, TestId::Future0498],
    }
}

/// `name=outcome` for each of `ids` that ran and matches `keep`.
fn evidence(r: &ProbeReport, ids: &[TestId], keep: fn(&ProbeTest) -> bool) -> Vec<String> {
    r.tests
        .iter()
        .filter(|t| ids.contains(&t.name) && keep(t))
        .map(|t| format!("{}={}", t.name, t.outcome))
        .collect()
}

fn any(_: &ProbeTest) -> bool {
    true
}

/// Every finding, worst first.
pub fn findings(r: &ProbeReport, a: &Analysis, host: &str) -> Vec<Finding> {
    let mut out: Vec<Finding> = certificate_finding(r).into_iter().collect();
    if let Some(none) = a.no_tls_answer {
        let tests = vec![TestId::Version10, TestId::Version12, TestId::Version13];
        out.push(Finding {
            id: "no_tls_answer",
            verdict: format!(
                "No TLS answer from {host} ({}). Is this a TLS port?",
                none.explain()
            ),
            evidence: evidence(r, &tests, any),
            advice: "Check the port number, and whether a firewall or proxy in between \
                     swallows the hello, before blaming intolerance."
                .into(),
            tests,
        });
        return out;
    }
    let scsv_failed = scsv_failed_finding(r, a, host);
    if a.higher_version_blocked {
        out.push(blocked_finding(r, a, host));
    } else if let Some(f) = downgrade_finding(r, a, host) {
        out.push(f);
    }
    out.extend(version_finding(r, a, host, scsv_failed.is_some()));
    out.extend(shape_findings(r, a, host));
    out.extend(size_findings(r, a, host));
    if a.scsv == super::ScsvSupport::NotSupported {
        out.push(Finding {
            id: "scsv_ignored",
            verdict: format!(
                "{host} accepts a fallback hello carrying TLS_FALLBACK_SCSV below its best \
                 version (RFC 7507): a forced downgrade would go unnoticed."
            ),
            evidence: evidence(r, &[TestId::FallbackScsv], any),
            advice: "Ask the vendor to enable TLS_FALLBACK_SCSV.".into(),
            tests: vec![TestId::FallbackScsv],
        });
    }
    out.extend(scsv_failed);
    out
}

/// Version intolerance: hellos offering a version fail although they also offer one the
/// server speaks. `scsv_failed`: the connector cannot fall back there (its SCSV hello failed).
fn version_finding(
    r: &ProbeReport,
    a: &Analysis,
    host: &str,
    scsv_failed: bool,
) -> Option<Finding> {
    let bad = a.intolerant_versions();
    if bad.is_empty() {
        return None;
    }
    let ids: Vec<TestId> = bad
        .iter()
        .flat_map(|k| tests_of(*k).iter().copied())
        .collect();
    let names: Vec<&str> = bad
        .iter()
        .map(|k| match k {
            VersionKey::Future => "versions from the future (0x0304, 0x0398, 0x0498)",
            k => k.as_str(),
        })
        .collect();
    let fix = format!("Ask the vendor to fix version negotiation on the box in front of {host}");
    let advice = if scsv_failed {
        format!(
            "{fix}; the connector cannot fall back meanwhile: its fallback hellos carry \
             TLS_FALLBACK_SCSV, and the SCSV hello failed here (below)."
        )
    } else if a.versions.best >= TLS13 {
        // Only the TLS 1.3-only hello (3 suites) got through: the same version offered with a
        // longer suite list fails, which a suite-count limit explains as well.
        format!(
            "{fix} (only the hello offering TLS 1.3 alone, with 3 suites, got through: a limit \
             on the number of cipher suites reads the same); meanwhile the connector gets \
             through with its compact TLS 1.3 hello (few suites, with TLS_FALLBACK_SCSV): no \
             version loss."
        )
    } else {
        format!(
            "{fix}; meanwhile the connector falls back with TLS_FALLBACK_SCSV to TLS {}.",
            a.best_name()
        )
    };
    Some(Finding {
        id: "version_intolerance",
        verdict: format!(
            "Hellos offering TLS {} fail at {host} although they also offer a version it speaks \
             (RFC 8446 appendix D: a server must answer with the highest version it supports).",
            names.join(", ")
        ),
        evidence: evidence(r, &ids, ProbeTest::failed),
        advice,
        tests: ids,
    })
}

/// The SCSV hello failed outright (no ServerHello, no alert 86) at a version that got through
/// without it: a box that drops fallback hellos, or an attacker hiding a downgrade. Either way
/// the connector, which sends the SCSV on every fallback, fails the same way, so neither legacy
/// TLS nor a lower pin is advised on this evidence.
fn scsv_failed_finding(r: &ProbeReport, a: &Analysis, host: &str) -> Option<Finding> {
    let t = r.test(TestId::FallbackScsv)?;
    let plan = super::plan::ScsvPlan::of(&a.versions, a.no_tls_answer.is_none()).ok()?;
    let failed = matches!(
        t.outcome,
        TestOutcome::Closed | TestOutcome::Reset | TestOutcome::Timeout | TestOutcome::Garbage
    );
    (plan.at_best && failed).then(|| Finding {
        id: "scsv_intolerance",
        verdict: format!(
            "The fallback hello at TLS {} carrying TLS_FALLBACK_SCSV failed ({}) at {host}, \
             while the same version without it got through: a box that drops fallback hellos \
             (RFC 7507 requires servers to accept the SCSV), or an attacker on the path hiding \
             a downgrade.",
            version_name(plan.offered),
            t.outcome
        ),
        evidence: evidence(r, &[TestId::FallbackScsv], any),
        advice: "Do not allow legacy TLS or pin this host lower on this evidence: the \
                 connector sends the SCSV on every fallback and would fail the same way. Send \
                 this report to the vendor."
            .into(),
        tests: vec![TestId::FallbackScsv],
    })
}

fn certificate_finding(r: &ProbeReport) -> Option<Finding> {
    let t = r.test(TestId::FallbackConnector)?;
    (t.outcome == TestOutcome::Failed(ErrorKind::Certificate)).then(|| Finding {
        id: "certificate",
        verdict: format!(
            "The probe's own full handshake failed the certificate check ({}).",
            t.detail.as_deref().unwrap_or("certificate rejected")
        ),
        evidence: vec![format!("{}={}", t.name, t.outcome)],
        advice: "Fix the server's certificate chain, or if a private CA signed it, pass that \
                 CA with --ca-file (ProbeConfig::ca_file). No client connects until then."
            .into(),
        tests: vec![TestId::FallbackConnector],
    })
}

/// The server speaks a higher version than the path lets through: the two readings and the
/// safe next steps (RFC 7507 cannot tell a blocking box from an attacker).
fn blocked_finding(r: &ProbeReport, a: &Analysis, host: &str) -> Finding {
    let best = a.best_name();
    let higher: Vec<&str> = a
        .intolerant_versions()
        .into_iter()
        .filter(|k| k.version().is_some_and(|v| v > a.versions.best))
        .map(|k| k.as_str())
        .collect();
    let mut ids: Vec<TestId> = vec![TestId::FallbackScsv];
    for k in a.intolerant_versions() {
        ids.extend(tests_of(k));
    }
    let legacy = a.versions.best < TLS12;
    let pin = pin_advice(host, a.versions.best, legacy);
    Finding {
        id: "higher_version_blocked",
        verdict: format!(
            "The server behind {host} supports a higher version than the path lets through: it \
             refused a TLS {best} hello carrying TLS_FALLBACK_SCSV with inappropriate_fallback \
             (RFC 7507), while every hello offering TLS {} failed. Two readings: a box in front \
             of the server (firewall, load balancer, TLS inspection) blocks the newer version, \
             or an attacker on the path forces a downgrade. The probe cannot tell them apart, \
             and the connector refuses such a host (downgrade_detected) rather than guess.",
            higher.join(", ")
        ),
        evidence: evidence(r, &ids, |t| t.failed()),
        advice: format!(
            "Send this report to the vendor: their network team can find the device that drops \
             the newer hellos. If you trust the path to {host} (a private link, a known \
             firewall), {pin}"
        ),
        tests: ids,
    }
}

/// RFC 8446 section 4.1.3: a TLS 1.3 server that negotiates TLS 1.2 or below ends its
/// random with these 7 bytes and then 1 (TLS 1.2) or 0 (below).
const DOWNGRADE_SENTINEL: &[u8; 7] = b"DOWNGRD";

/// Whether `t`'s hello offered TLS 1.3 and got a lower ServerHello whose random carries the
/// RFC 8446 downgrade sentinel: the server speaks TLS 1.3, but the hello it answered did not
/// offer it (something on the path rewrote or replaced the probe's hello).
fn carries_downgrade_sentinel(t: &ProbeTest) -> bool {
    let offered_13 = t
        .offer
        .as_ref()
        .is_some_and(|o| o.versions.iter().any(|v| v.0 == TLS13));
    let below_13 = t.negotiated.is_some_and(|v| v.0 < TLS13);
    if !(offered_13 && below_13) {
        return false;
    }
    let got = t
        .exchange
        .as_ref()
        .map(|x| x.received())
        .unwrap_or_default();
    // Record header (5), handshake header (4), server_version (2), then the 32-byte random.
    got.get(35..42) == Some(&DOWNGRADE_SENTINEL[..]) && matches!(got.get(42), Some(0 | 1))
}

/// The server signalled a newer version than the one it negotiated (the RFC 8446 sentinel
/// answering a hello that offered TLS 1.3, or the connector's own handshake refused as a
/// downgrade) although no hello proved a version blocked: the probe's hellos were answered as
/// by a server that negotiates down correctly, which is what a path that rewrites hellos
/// shows. Never "nothing needed" and never a pin "that just skips the TLS 1.3 offer".
fn downgrade_finding(r: &ProbeReport, a: &Analysis, host: &str) -> Option<Finding> {
    let mut ids: Vec<TestId> = r
        .tests
        .iter()
        .filter(|t| carries_downgrade_sentinel(t))
        .map(|t| t.name)
        .collect();
    let connector_refused = r
        .test(TestId::FallbackConnector)
        .is_some_and(|t| t.outcome == TestOutcome::Failed(ErrorKind::DowngradeDetected));
    if connector_refused {
        ids.push(TestId::FallbackConnector);
    }
    if ids.is_empty() {
        return None;
    }
    let best = a.best_name();
    let legacy = a.versions.best < TLS12;
    Some(Finding {
        id: "downgrade_signalled",
        verdict: format!(
            "The server behind {host} signalled that it supports a newer version than it \
             negotiated (RFC 8446 downgrade sentinel or inappropriate_fallback), although the \
             probe's hellos were answered at TLS {best}: a hello offering TLS 1.3 did not reach \
             the server as it was sent. Two readings: an attacker on the path rewrites the \
             hellos to force a downgrade, or a box in front of the server (TLS inspection, a \
             load balancer) strips the newer version. The probe cannot tell them apart, and \
             the connector refuses such a host (downgrade_detected) rather than guess."
        ),
        evidence: evidence(r, &ids, any),
        advice: format!(
            "Do not pin or lower this host on this evidence. Send this report to the vendor: \
             their network team can find the device that rewrites the hellos. If you trust \
             the path to {host} (a private link, a known firewall), {}",
            pin_advice(host, a.versions.best, legacy)
        ),
        tests: ids,
    })
}

/// The pin that gets through, as an explicit decision, with what it gives up.
fn pin_advice(host: &str, best: u16, legacy: bool) -> String {
    let v = version_name(best);
    let name = host.split(' ').next().unwrap_or(host);
    let legacy_note = if legacy {
        format!(" It also needs legacy TLS allowed for {name} (--allow-legacy).")
    } else {
        String::new()
    };
    format!(
        "pin {name} to TLS {v} as an explicit, logged decision (`get --pin {name}={v}`, \
         the proxy's `pin = [\"{name}:PORT={v}\"]`, or `FallbackLayerBuilder::pin`): a pinned \
         host gets one TLS {v} hello with no fallback, so the connector no longer needs to \
         detect a downgrade there. The pin gives up the newer version and the downgrade check \
         for this host until you remove it.{legacy_note}"
    )
}

/// The F5 window, cipher-count and unknown-extension findings.
fn shape_findings(r: &ProbeReport, a: &Analysis, host: &str) -> Vec<Finding> {
    let rows = [
        (
            a.shapes.long_handshake,
            "long_handshake",
            format!(
                "Hellos of 256..511 bytes fail at {host} while shorter ones work: the F5 BIG-IP \
                 long-handshake bug (RFC 7685 pads hellos past it)."
            ),
            [TestId::LongShort, TestId::Long300],
        ),
        (
            a.shapes.cipher_count,
            "cipher_count",
            format!("Hellos with a long cipher list fail at {host} while short lists work."),
            [TestId::BaselinePadded, TestId::CiphersMany],
        ),
        (
            a.shapes.extension,
            "unknown_extension",
            format!(
                "A hello with one unknown extension fails at {host}: RFC 8446 section 9.3 \
                 requires unknown extensions to be ignored."
            ),
            [TestId::BaselinePadded, TestId::ExtensionUnknown],
        ),
    ];
    rows.into_iter()
        .filter(|(flag, ..)| *flag)
        .map(|(_, id, verdict, tests)| Finding {
            id,
            verdict,
            evidence: evidence(r, &tests, any),
            advice: "Ask the vendor to update the box's firmware; meanwhile the connector \
                     works around it with its padded (>= 512 bytes) or compact (< 256 bytes, \
                     few suites) hellos."
                .into(),
            tests: tests.to_vec(),
        })
        .collect()
}

/// The long, split and post-quantum hello findings, named plainly: they are never "nothing
/// needed", and the connector keeps TLS 1.3 through its compact rung.
fn size_findings(r: &ProbeReport, a: &Analysis, host: &str) -> Vec<Finding> {
    let s = a.sizes;
    let limit = s
        .largest_passing
        .map_or(String::new(), |n| format!(" longer than {n} bytes"));
    let modern_passed = r
        .test(TestId::FallbackConnector)
        .is_some_and(|t| matches!(&t.outcome, TestOutcome::Connected(rung) if rung == "modern"));
    let keep = if a.versions.best >= TLS13 && modern_passed {
        "Meanwhile the connector stays on TLS 1.3: its own first hello (rung modern) got \
         through here, and where a longer one does not (OpenSSL 3.5+ sends an X25519MLKEM768 \
         share), its compact rung does (modern-compact: a hello under 256 bytes, one x25519 \
         key share): no version loss."
    } else if a.versions.best >= TLS13 {
        "Meanwhile the connector stays on TLS 1.3 through its compact rung (modern-compact: a \
         hello under 256 bytes, one x25519 key share): no version loss."
    } else {
        "Meanwhile the connector's compact rungs keep the hello short."
    };
    let advice = |what: &str| format!("Ask the vendor to fix {what} (see tldr.fail). {keep}");
    let mut out = Vec::new();
    if s.split_hello {
        let size = if s.long_hello {
            format!("Hellos{limit} (a post-quantum key share) are dropped, and ")
        } else {
            String::new()
        };
        out.push(Finding {
            id: "split_hello",
            verdict: format!(
                "{size}a short hello written in two TCP segments fails at {host} while the \
                 same hello in one segment works: the box in front of {host} does not \
                 reassemble a ClientHello that spans two TCP segments."
            ),
            evidence: evidence(
                r,
                &[TestId::LongShort, TestId::SplitHello, TestId::LongHello],
                any,
            ),
            advice: advice("TCP reassembly of the ClientHello"),
            tests: vec![TestId::LongShort, TestId::SplitHello, TestId::LongHello],
        });
    } else if s.long_hello {
        out.push(Finding {
            id: "long_hello",
            verdict: format!(
                "Hellos{limit} (the size a post-quantum key share gives) are dropped at {host}, \
                 while the same hello written in two segments at its short size works: a size \
                 limit, not a reassembly bug."
            ),
            evidence: evidence(r, &[TestId::LongHello, TestId::SplitHello], any),
            advice: advice("the ClientHello size limit"),
            tests: vec![TestId::LongHello, TestId::SplitHello],
        });
    }
    if s.pq_key_share && !s.long_hello {
        out.push(Finding {
            id: "pq_key_share",
            verdict: format!(
                "A hello offering an X25519MLKEM768 key share fails at {host} while a hello of \
                 about the same size without it works: the box inspects key shares and rejects \
                 the post-quantum group."
            ),
            evidence: evidence(r, &[TestId::PqKeyShare, TestId::LongHello], any),
            advice: advice("its handling of the X25519MLKEM768 group (0x11ec)"),
            tests: vec![TestId::PqKeyShare, TestId::LongHello],
        });
    }
    out
}
