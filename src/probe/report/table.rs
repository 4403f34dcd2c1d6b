//! The report as text: per address its summary, verdict rows and tests, for a terminal or a
//! mail to the vendor.

use super::{ProbeReport, ProbeTest};
use crate::probe::advice;
use crate::probe::findings::{ScsvSupport, TestId, TestOutcome};
use crate::TlsVersion;

impl ProbeReport {
    /// A human-readable multi-line report, for a terminal or a mail to the vendor: the summary,
    /// then per address its findings and tests, then the recommendation.
    pub fn to_table(&self) -> String {
        let mut out = format!("TLS protocol details for {}\n", self.target);
        out.push_str(&format!(
            "  {} {} on {}; port {}, SNI {}; started {}\n",
            self.tool.name,
            self.tool.version,
            self.tool.openssl,
            self.port,
            self.sni.as_deref().unwrap_or("(none)"),
            self.started
        ));
        if let Some(differ) = &self.addresses_differ {
            out.push_str(&format!("  {differ}\n"));
        }
        for r in self.per_address() {
            out.push('\n');
            out.push_str(&r.address_table());
        }
        out.push('\n');
        out.push_str(&format!("Recommendation: {}\n", self.recommendation));
        out
    }

    /// One address's part of the table.
    fn address_table(&self) -> String {
        let addr = self.address.map_or("?".to_string(), |a| a.to_string());
        let source = self
            .source
            .map_or(String::new(), |s| format!(" (from {s})"));
        let mut out = format!("Address {addr}{source}\n");
        if let Some(why) = &self.unreachable {
            out.push_str(&format!("  {why}\n"));
            return out;
        }
        out.push_str(&format!("  Summary                   {}\n", self.summary));
        if self.only.is_some() {
            out.push('\n');
            out.push_str(&self.tests_table());
            return out;
        }
        if let Some(none) = self.no_tls_answer {
            out.push_str(&format!(
                "  No TLS answer             {}. Is this a TLS port?\n",
                none.explain()
            ));
        }
        let supported = if self.supported.is_empty() {
            "none".to_string()
        } else {
            join(&self.supported, ", ")
        };
        out.push_str(&format!("  Supported versions        {supported}\n"));
        for (label, value) in self.verdict_rows() {
            out.push_str(&format!("  {label:<25} {value}\n"));
        }
        out.push_str(&format!("  Connector                 {}\n", self.connector));
        out.push('\n');
        out.push_str(&self.tests_table());
        out
    }

    /// The summary rows: one verdict per finding kind.
    fn verdict_rows(&self) -> Vec<(&'static str, String)> {
        let untested = self.no_tls_answer.is_some();
        let verdict = |b: bool, ids: &[TestId]| -> String {
            match (untested, b) {
                (true, _) => "not tested (no TLS answer)".into(),
                (false, true) => "INTOLERANT".into(),
                (false, false) => self.unproven(ids).unwrap_or_else(|| "ok".into()),
            }
        };
        let versions = if untested {
            "not tested (no TLS answer)".to_string()
        } else {
            let each: Vec<String> = self
                .version_intolerance
                .iter()
                .map(|(k, &v)| format!("{k}: {}", verdict(v, advice::tests_of(*k))))
                .collect();
            each.join(", ")
        };
        vec![
            ("Version intolerance", versions),
            (
                "Long handshake (256..511)",
                verdict(self.long_handshake_intolerance, &[TestId::Long300]),
            ),
            (
                "Cipher count",
                verdict(self.cipher_count_intolerance, &[TestId::CiphersMany]),
            ),
            (
                "Unknown extension",
                verdict(self.extension_intolerance, &[TestId::ExtensionUnknown]),
            ),
            (
                "Long hello (~1550 bytes)",
                verdict(self.long_hello_intolerance, &[TestId::LongHello]),
            ),
            (
                "Split hello (2 segments)",
                verdict(self.split_hello_intolerance, &[TestId::SplitHello]),
            ),
            (
                "Post-quantum key share",
                verdict(self.pq_key_share_intolerance, &[TestId::PqKeyShare]),
            ),
            ("TLS_FALLBACK_SCSV", self.scsv_cell()),
        ]
    }

    /// For a verdict that is not "intolerant": the failed outcome of its tests, if any failed,
    /// so the summary never says "ok" next to a failed row.
    fn unproven(&self, ids: &[TestId]) -> Option<String> {
        let failed: Vec<String> = self
            .tests
            .iter()
            .filter(|t| ids.contains(&t.name) && t.failed())
            .map(|t| t.outcome.to_string())
            .collect();
        (!failed.is_empty()).then(|| {
            format!(
                "{} (no working baseline to compare with, so not proven intolerance)",
                failed.join(", ")
            )
        })
    }

    fn scsv_cell(&self) -> String {
        let blocked = if self.higher_version_blocked {
            ": the server supports a higher version than the path lets through"
        } else {
            ""
        };
        match &self.fallback_scsv_unknown {
            Some(why) if self.fallback_scsv == ScsvSupport::Unknown => format!(
                "unknown ({})",
                why.explain(&self.supported, self.test(TestId::FallbackScsv))
            ),
            _ => format!("{}{blocked}", self.fallback_scsv),
        }
    }

    fn tests_table(&self) -> String {
        let outcomes: Vec<String> = self.tests.iter().map(outcome_cell).collect();
        let w = self
            .tests
            .iter()
            .map(|t| t.name.as_str().len())
            .max()
            .unwrap_or(4)
            .max(4);
        let wo = outcomes.iter().map(String::len).max().unwrap_or(7).max(7);
        let mut out = format!(
            "  {:<w$}  {:>5}  {:<wo$}  {:>6}  description\n",
            "test", "bytes", "outcome", "ms"
        );
        for (t, outcome) in self.tests.iter().zip(&outcomes) {
            out.push_str(&format!(
                "  {:<w$}  {:>5}  {:<wo$}  {:>6}  {}\n",
                t.name.as_str(),
                t.hello_len,
                outcome,
                t.ms,
                t.description
            ));
        }
        out
    }
}

/// A test's outcome for the table: the connector's rung with the version it negotiated, so a
/// rung name is never read as a version.
pub(super) fn outcome_cell(t: &ProbeTest) -> String {
    match (&t.outcome, t.negotiated) {
        (TestOutcome::Connected(_), Some(v)) => format!("{} (TLS {v})", t.outcome),
        _ => t.outcome.to_string(),
    }
}

/// Versions as in the JSON ("1.2"), joined.
fn join(versions: &[TlsVersion], sep: &str) -> String {
    let names: Vec<&str> = versions.iter().map(|v| v.as_str()).collect();
    names.join(sep)
}
