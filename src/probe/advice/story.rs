//! The sentences built on the findings: what the connector does, the recommendation, the
//! summary for a non-expert, how the addresses of one name differ, and the reproduction
//! command of a failed test.

use std::net::SocketAddr;

use crate::error::ErrorKind;
use crate::probe::analysis::Analysis;
use crate::probe::findings::{TestId, TestOutcome};
use crate::probe::report::{ProbeReport, ProbeTest};
use crate::probe::{version_name, Target};
use crate::wire::{TLS12, TLS13};

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
    let r = crate::probe::evidence::reproduce(
        t.name,
        target.host(),
        addr,
        sni.as_deref(),
        fallback_version,
    );
    let builds_on_best = !crate::probe::plan::version_plan(sni)
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
