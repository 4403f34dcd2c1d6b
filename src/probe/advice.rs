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
    let mut out = Vec::new();
    if let Some(f) = certificate_finding(r) {
        out.push(f);
    }
    if let Some(none) = a.no_tls_answer {
        out.push(Finding {
            id: "no_tls_answer",
            verdict: format!(
                "No TLS answer from {host} ({}). Is this a TLS port?",
                none.explain()
            ),
            evidence: evidence(
                r,
                &[TestId::Version10, TestId::Version12, TestId::Version13],
                any,
            ),
            advice: "Check the port number, and whether a firewall or proxy in between \
                     swallows the hello, before blaming intolerance."
                .into(),
            tests: vec![TestId::Version10, TestId::Version12, TestId::Version13],
        });
        return out;
    }
    let scsv_failed = scsv_failed_finding(r, a, host);
    if a.higher_version_blocked {
        out.push(blocked_finding(r, a, host));
    } else if let Some(f) = downgrade_finding(r, a, host) {
        out.push(f);
    }
    let bad = a.intolerant_versions();
    if !bad.is_empty() {
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
        out.push(Finding {
            id: "version_intolerance",
            verdict: format!(
                "Hellos offering TLS {} fail at {host} although they also offer a version it \
                 speaks (RFC 8446 appendix D: a server must answer with the highest version it \
                 supports).",
                names.join(", ")
            ),
            evidence: evidence(r, &ids, ProbeTest::failed),
            advice: if scsv_failed.is_some() {
                format!(
                    "Ask the vendor to fix version negotiation on the box in front of {host}; \
                     the connector cannot fall back meanwhile: its fallback hellos carry \
                     TLS_FALLBACK_SCSV, and the SCSV hello failed here (below)."
                )
            } else if a.versions.best >= TLS13 {
                // Only the TLS 1.3-only hello (3 suites) got through: the same version offered
                // with a longer suite list fails, which a suite-count limit explains as well.
                format!(
                    "Ask the vendor to fix version negotiation on the box in front of {host} \
                     (only the hello offering TLS 1.3 alone, with 3 suites, got through: a \
                     limit on the number of cipher suites reads the same); meanwhile the \
                     connector gets through with its compact TLS 1.3 hello (few suites, with \
                     TLS_FALLBACK_SCSV): no version loss."
                )
            } else {
                format!(
                    "Ask the vendor to fix version negotiation on the box in front of {host}; \
                     meanwhile the connector falls back with TLS_FALLBACK_SCSV to TLS {}.",
                    a.best_name()
                )
            },
            tests: ids,
        });
    }
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

/// What the tls-fallback connector does for this host: what it did in the last test when
/// that ran, else what the findings predict.
pub fn connector(r: &ProbeReport, a: &Analysis, host: &str) -> String {
    if let Some(t) = r.test(TestId::FallbackConnector) {
        match (&t.outcome, t.negotiated) {
            (TestOutcome::Connected(profile), Some(v)) => {
                return format!(
                    "connects on rung {profile} with TLS {v} (legacy allowed for this test), \
                     certificates checked{}",
                    if profile == "modern" {
                        ": no fallback needed"
                    } else {
                        ", after falling back with TLS_FALLBACK_SCSV; the rung is cached per host"
                    }
                )
            }
            (TestOutcome::Failed(ErrorKind::DowngradeDetected), _) => {
                return format!(
                    "refuses {host} (downgrade_detected): the server signalled a newer version \
                     than the path lets through; only an explicit pin gets through"
                )
            }
            (TestOutcome::Failed(kind), _) => {
                return format!(
                    "fails with {} ({})",
                    kind.as_str(),
                    t.detail.as_deref().unwrap_or("")
                )
            }
            _ => {}
        }
    }
    match (a.no_tls_answer, a.versions.supported.last()) {
        (Some(_), _) | (None, None) => "cannot connect: nothing negotiated".into(),
        (None, Some(_))
            if a.higher_version_blocked
                || r.findings.iter().any(|f| f.id == "downgrade_signalled") =>
        {
            format!("refuses {host} (downgrade_detected) unless it is pinned")
        }
        (None, Some(&v)) if v < TLS12 => format!(
            "reaches it only with legacy TLS allowed for {host}, on TLS {}",
            version_name(a.versions.best)
        ),
        (None, Some(_)) => format!("connects with TLS {}", a.best_name()),
    }
}

/// The recommendation: the findings' advice, worst first, or what a clean host needs.
pub fn recommend(r: &ProbeReport, a: &Analysis, host: &str) -> String {
    let found = &r.findings;
    let mut text = match found.first() {
        None => clean_advice(r, a, host),
        Some(_) => {
            let parts: Vec<String> = found
                .iter()
                .map(|f| {
                    format!(
                        "{} Evidence: {}. {}",
                        f.verdict,
                        f.evidence.join(", "),
                        f.advice
                    )
                })
                .collect();
            parts.join(" ")
        }
    };
    if let Some(first) = found.first() {
        if first.id == "certificate" {
            text = format!("Fix the certificate first: {text}");
        } else if !matches!(
            first.id,
            "no_tls_answer" | "higher_version_blocked" | "downgrade_signalled"
        ) {
            text = format!("Contact the vendor: {text}");
        }
    }
    if a.versions.supported.last().is_some_and(|&v| v < TLS12)
        && !a.higher_version_blocked
        && !found
            .iter()
            .any(|f| matches!(f.id, "downgrade_signalled" | "scsv_intolerance"))
        && a.no_tls_answer.is_none()
    {
        text.push_str(&format!(
            " {host} only speaks TLS {}: allow legacy TLS for this host (the connector's floor \
             is TLS 1.2), and ask the vendor to enable TLS 1.2.",
            join(&a.versions.supported)
        ));
    }
    text
}

/// A host with no finding.
fn clean_advice(r: &ProbeReport, a: &Analysis, host: &str) -> String {
    let supported = join(&a.versions.supported);
    match a.versions.supported.last() {
        None => format!(
            "No TLS version could be negotiated with {host} (every hello failed, see the \
             tests): check that the target speaks TLS on this port before blaming intolerance."
        ),
        Some(&v) if v < TLS12 => {
            format!("Allow legacy TLS for this host ({host} only speaks TLS {supported}).")
        }
        Some(&TLS13) => {
            let pq = r
                .test(TestId::PqKeyShare)
                .is_some_and(ProbeTest::server_hello);
            format!(
                "Nothing needed: {host} negotiates TLS {supported} without any intolerance{}.",
                if pq {
                    ", long and post-quantum hellos included"
                } else {
                    ""
                }
            )
        }
        Some(&v) => format!(
            "Pin {host} to TLS {}: it only supports TLS {supported} and negotiates down \
             correctly, so a pin just skips the TLS 1.3 offer.",
            version_name(v)
        ),
    }
}

/// The summary for a non-expert: one or two sentences.
pub fn summary(r: &ProbeReport, host: &str) -> String {
    if r.findings.is_empty() {
        return match r.supported.last() {
            None => format!("{host}: no TLS version could be negotiated."),
            Some(v) => format!(
                "{host} handled every test hello correctly (best version TLS {}).",
                v.as_str()
            ),
        };
    }
    let ids: Vec<&str> = r.findings.iter().map(|f| f.id).collect();
    format!(
        "{host} has {} problem{}: {}. The connector {}.",
        ids.len(),
        if ids.len() == 1 { "" } else { "s" },
        ids.join(", ").replace('_', " "),
        r.connector
    )
}

/// When the addresses of one name behave differently, the sentence that says so.
pub fn addresses_differ(reports: &[ProbeReport]) -> Option<String> {
    if reports.len() < 2 {
        return None;
    }
    let signature = |r: &ProbeReport| -> String {
        if r.unreachable.is_some() {
            return "could not be reached over TCP".into();
        }
        let (other, intolerant): (Vec<&str>, Vec<&str>) = r
            .findings
            .iter()
            .map(|f| f.id)
            .partition(|id| matches!(*id, "no_tls_answer" | "certificate" | "scsv_ignored"));
        let mut parts: Vec<String> = other
            .iter()
            .map(|id| match *id {
                "no_tls_answer" => "gives no TLS answer".to_string(),
                "certificate" => "fails the certificate check".to_string(),
                _ => "ignores TLS_FALLBACK_SCSV".to_string(),
            })
            .collect();
        match (intolerant.is_empty(), parts.is_empty()) {
            (true, true) => parts.push("is not intolerant".into()),
            (true, false) => {}
            (false, _) => parts.insert(
                0,
                format!(
                    "is intolerant ({})",
                    intolerant.join(", ").replace('_', " ")
                ),
            ),
        }
        parts.join(" and ")
    };
    let sigs: Vec<String> = reports.iter().map(signature).collect();
    if sigs.windows(2).all(|w| w[0] == w[1]) {
        return None;
    }
    let parts: Vec<String> = reports
        .iter()
        .zip(&sigs)
        .map(|(r, s)| {
            let ip = r.address.map_or("?".into(), |a| a.ip().to_string());
            format!("{ip} {s}")
        })
        .collect();
    Some(format!(
        "{}: the addresses behave differently.",
        parts.join(", ")
    ))
}

/// A command that repeats one failed test against one address: `openssl s_client` where
/// OpenSSL can send that kind of hello, else this tool's `--only` with `--resolve` to the same
/// address and, for a test built on the best version, `--baseline` at that version (what the
/// full probe chose), with the evidence module's caveat after it.
pub fn reproduce(
    t: &ProbeTest,
    target: &Target,
    addr: SocketAddr,
    sni: &Option<String>,
    a: &Analysis,
) -> String {
    let offered = t.offer.as_ref().and_then(|o| o.versions.last().copied());
    let fallback_version = match t.name {
        TestId::FallbackScsv => offered.and_then(|v| crate::TlsVersion::from_wire(v.0)),
        _ => None,
    };
    let r = super::evidence::reproduce(
        t.name,
        target.host(),
        addr,
        sni.as_deref(),
        fallback_version,
    );
    let builds_on_best = !super::plan::version_plan(sni)
        .iter()
        .any(|s| s.id == t.name);
    let baseline = match t.name {
        TestId::FallbackScsv => offered.map_or(a.versions.best, |v| v.0),
        _ => a.versions.best,
    };
    let mut command = r.command;
    if builds_on_best && baseline != TLS13 && command.starts_with("tls-fallback probe ") {
        command = command.replacen(
            "tls-fallback probe ",
            &format!("tls-fallback probe --baseline {} ", version_name(baseline)),
            1,
        );
    }
    match r.note {
        Some(note) => format!("{command}  # {}", note.replace(['\n', '\r'], " ")),
        None => command,
    }
}

fn join(versions: &[u16]) -> String {
    let names: Vec<String> = versions.iter().map(|&v| version_name(v)).collect();
    names.join("/")
}
