//! The probe's report: what it found ([`ProbeReport`], serialized for `--json`), the table for a
//! terminal or a mail to the vendor, and the recommendation (pure: derived from the report).

use std::collections::BTreeMap;

use serde::Serialize;

use super::findings::{
    NoTlsAnswer, ScsvSupport, ScsvUnknown, TestId, TestOutcome, VersionKey, WireVersion,
};
use crate::error::ErrorKind;
use crate::TlsVersion;

/// Everything the probe found, ready for `--json` or [`ProbeReport::to_table`].
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    /// The target as given.
    pub target: String,
    /// Versions the server negotiates when offered alone, ascending ("1.0".."1.3").
    pub supported: Vec<TlsVersion>,
    /// Per offered version ("1.0", "1.1", "1.2", "1.3", "future"): true if intolerant.
    pub version_intolerance: BTreeMap<VersionKey, bool>,
    /// A 256..=511-byte hello fails while a shorter one works (old F5 BIG-IP).
    pub long_handshake_intolerance: bool,
    /// A hello with ~150 suites fails while the same length with few suites works.
    pub cipher_count_intolerance: bool,
    /// A hello with one unknown extension fails while the same length without it works.
    pub extension_intolerance: bool,
    /// TLS_FALLBACK_SCSV: "supported", "not_supported" or "unknown".
    pub fallback_scsv: ScsvSupport,
    /// What to do about this host, in one or two sentences.
    pub recommendation: String,
    /// Every test, in the order it ran.
    pub tests: Vec<ProbeTest>,
    /// Why `fallback_scsv` is "unknown" (absent otherwise): "no_tls_answer", "no_version",
    /// "single_version" or "inconclusive".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_scsv_unknown: Option<ScsvUnknown>,
    /// Present when nothing answered in TLS (no ServerHello, no alert): "silent", "not_tls",
    /// "closed" or "mixed". The intolerance flags then mean "not tested", not "tolerant".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_tls_answer: Option<NoTlsAnswer>,
}

/// One ClientHello sent (or one connector handshake) and what came back.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeTest {
    /// Short identifier, e.g. `version_1.2` or `long_300`.
    pub name: TestId,
    /// What the hello offers and why.
    pub description: String,
    /// Handshake message length, 4-byte header included (0 if the test was skipped).
    pub hello_len: usize,
    /// `server_hello:1.2`, `alert:N`, `closed`, `reset`, `timeout`, `garbage`, `connect_error`,
    /// `io_error` or `skipped`; for the connector test `ok:PROFILE` or `error:KIND`.
    pub outcome: TestOutcome,
    /// Negotiated version ("1.0".."1.3" or hex) when the server answered with a ServerHello.
    pub negotiated: Option<WireVersion>,
    /// Duration of the test in milliseconds.
    pub ms: u64,
    /// The error message behind an `error:KIND` outcome (not in the JSON).
    #[serde(skip)]
    pub detail: Option<String>,
}

impl ProbeTest {
    /// A test that did not run; `why` becomes its description.
    pub fn skipped(name: TestId, why: impl Into<String>) -> ProbeTest {
        ProbeTest {
            name,
            description: why.into(),
            hello_len: 0,
            outcome: TestOutcome::Skipped,
            negotiated: None,
            ms: 0,
            detail: None,
        }
    }

    /// Whether the server answered with a ServerHello.
    pub fn server_hello(&self) -> bool {
        self.negotiated.is_some()
    }

    /// The hello got a real answer that is not a ServerHello (connect errors and skips don't count).
    pub fn failed(&self) -> bool {
        !self.server_hello()
            && !matches!(
                self.outcome,
                TestOutcome::ConnectError | TestOutcome::Skipped
            )
    }
}

impl ProbeReport {
    /// The test with this name, if it ran.
    pub fn test(&self, id: TestId) -> Option<&ProbeTest> {
        self.tests.iter().find(|t| t.name == id)
    }

    /// A human-readable multi-line report, for a terminal or a mail to the vendor.
    pub fn to_table(&self) -> String {
        let untested = self.no_tls_answer.is_some();
        let verdict = |b: bool| match (untested, b) {
            (true, _) => "not tested (no TLS answer)",
            (false, true) => "INTOLERANT",
            (false, false) => "ok",
        };
        let mut out = format!("TLS protocol details for {}\n", self.target);
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
        let versions = if untested {
            verdict(false).to_string()
        } else {
            let each: Vec<String> = self
                .version_intolerance
                .iter()
                .map(|(k, &v)| format!("{k}: {}", verdict(v)))
                .collect();
            each.join(", ")
        };
        let rows = [
            ("Version intolerance      ", versions),
            (
                "Long handshake (256..511)",
                verdict(self.long_handshake_intolerance).into(),
            ),
            (
                "Cipher count             ",
                verdict(self.cipher_count_intolerance).into(),
            ),
            (
                "Unknown extension        ",
                verdict(self.extension_intolerance).into(),
            ),
            ("TLS_FALLBACK_SCSV        ", self.scsv_cell()),
        ];
        for (label, value) in rows {
            out.push_str(&format!("  {label} {value}\n"));
        }
        out.push('\n');
        out.push_str(&self.tests_table());
        out.push('\n');
        out.push_str(&format!("Recommendation: {}\n", self.recommendation));
        out
    }

    fn scsv_cell(&self) -> String {
        match &self.fallback_scsv_unknown {
            Some(why) if self.fallback_scsv == ScsvSupport::Unknown => format!(
                "unknown ({})",
                why.explain(&self.supported, self.test(TestId::FallbackScsv))
            ),
            _ => self.fallback_scsv.to_string(),
        }
    }

    fn tests_table(&self) -> String {
        let outcomes: Vec<String> = self.tests.iter().map(|t| t.outcome.to_string()).collect();
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

/// Versions as in the JSON ("1.2"), joined.
fn join(versions: &[TlsVersion], sep: &str) -> String {
    let names: Vec<&str> = versions.iter().map(|v| v.as_str()).collect();
    names.join(sep)
}

/// One or two sentences: what the user (or the vendor) should do about this host.
pub fn recommend(r: &ProbeReport, host: &str) -> String {
    let mut text = match r.no_tls_answer {
        Some(none) => format!(
            "No TLS answer from {host} ({}). Is this a TLS port? Check the port number, and \
             whether a firewall or proxy in between swallows the hello, before blaming \
             intolerance.",
            none.explain()
        ),
        None => versions_advice(r, host),
    };
    if r.fallback_scsv == ScsvSupport::NotSupported {
        text.push_str(
            " The server ignores TLS_FALLBACK_SCSV, so a forced downgrade would go unnoticed: \
             ask the vendor to enable it.",
        );
    }
    if let Some(t) = r.test(TestId::FallbackConnector) {
        if t.outcome == TestOutcome::Failed(ErrorKind::Certificate) {
            text = format!(
                "Fix the certificate first: the probe's own full handshake failed the \
                 certificate check ({}); fix the server's certificate chain, or if a private CA \
                 signed it, pass that CA with --ca-file (ProbeConfig::ca_file). No client \
                 connects until then. Then: {text}",
                t.detail.as_deref().unwrap_or("certificate rejected")
            );
        }
    }
    text
}

/// The advice when the server answered in TLS: intolerances found, legacy only, or a pin.
fn versions_advice(r: &ProbeReport, host: &str) -> String {
    let (found, evidence) = intolerances(r);
    let legacy_only = r.supported.last().is_some_and(|v| v.is_legacy());
    let supported = join(&r.supported, "/");
    match r.supported.last() {
        None => format!(
            "No TLS version could be negotiated with {host} (every hello failed, see the tests): \
             check that the target speaks TLS on this port before blaming intolerance."
        ),
        Some(best) if !found.is_empty() => {
            let best = best.as_str();
            let tolerated = r
                .supported
                .iter()
                .rev()
                .find(|v| r.version_intolerance.get(&key(**v)) != Some(&true))
                .map_or(best, |v| v.as_str());
            let action = if legacy_only {
                format!(
                    "meanwhile the tls-fallback connector can reach it only if legacy TLS is \
                     allowed for {host}, then walks its ladder down to TLS {best} (with \
                     TLS_FALLBACK_SCSV) and caches that rung"
                )
            } else if r.version_intolerance.values().any(|&v| v) {
                format!(
                    "meanwhile the tls-fallback connector falls back (with TLS_FALLBACK_SCSV) to \
                     TLS {tolerated} and caches that per host; you can also pin {host} to TLS \
                     {tolerated}"
                )
            } else {
                "meanwhile the tls-fallback connector works around it with its padded \
                 (>= 512 bytes) or compact (< 256 bytes, few suites) hellos, falling back with \
                 TLS_FALLBACK_SCSV and caching the working rung per host"
                    .to_string()
            };
            format!(
                "Contact the vendor: the gateway at {host} is intolerant to {} (evidence: {}); {action}.",
                found.join(", "),
                evidence.join(", ")
            )
        }
        Some(_) if legacy_only => format!(
            "Allow legacy TLS for this host ({host} only speaks TLS {supported}), since the \
             connector's floor is TLS 1.2, and ask the vendor to enable TLS 1.2."
        ),
        Some(TlsVersion::Tls1_3) => {
            format!("Nothing needed: {host} negotiates TLS {supported} without any intolerance.")
        }
        Some(best) => format!(
            "Pin {host} to TLS {}: it only supports TLS {supported} and negotiates down \
             correctly, so a pin just skips the TLS 1.3 offer.",
            best.as_str()
        ),
    }
}

fn key(v: TlsVersion) -> VersionKey {
    VersionKey::of(v.wire()).unwrap_or(VersionKey::Future)
}

/// What the server is intolerant to, and the test outcomes that show it.
fn intolerances(r: &ProbeReport) -> (Vec<String>, Vec<String>) {
    let mut found: Vec<String> = Vec::new();
    let mut evidence: Vec<String> = Vec::new();
    let outcome_of = |id: TestId| r.test(id).map(|t| format!("{id}={}", t.outcome));
    let bad_versions: Vec<VersionKey> = r
        .version_intolerance
        .iter()
        .filter(|(_, &v)| v)
        .map(|(&k, _)| k)
        .collect();
    if !bad_versions.is_empty() {
        let names: Vec<&str> = bad_versions.iter().map(|k| k.as_str()).collect();
        found.push(format!("ClientHellos offering TLS {}", names.join(", ")));
        for key in &bad_versions {
            let ids: &[TestId] = match key {
                VersionKey::Tls10 => &[TestId::Version10],
                VersionKey::Tls11 => &[TestId::Version11],
                VersionKey::Tls12 => &[TestId::Version12],
                VersionKey::Tls13 => &[TestId::Version13],
                VersionKey::Future => &[TestId::Future0304, TestId::Future0398, TestId::Future0498],
            };
            evidence.extend(
                r.tests
                    .iter()
                    .filter(|t| ids.contains(&t.name) && t.failed())
                    .map(|t| format!("{}={}", t.name, t.outcome)),
            );
        }
    }
    let shapes = [
        (
            r.long_handshake_intolerance,
            "ClientHellos of 256..511 bytes",
            [TestId::LongShort, TestId::Long300],
        ),
        (
            r.cipher_count_intolerance,
            "long cipher lists",
            [TestId::BaselinePadded, TestId::CiphersMany],
        ),
        (
            r.extension_intolerance,
            "unknown extensions",
            [TestId::BaselinePadded, TestId::ExtensionUnknown],
        ),
    ];
    for (flag, what, ids) in shapes {
        if flag {
            found.push(what.into());
            evidence.extend(ids.into_iter().filter_map(outcome_of));
        }
    }
    evidence.dedup();
    (found, evidence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TlsVersion::*;

    fn hello(v: TlsVersion) -> TestOutcome {
        TestOutcome::ServerHello(WireVersion(v.wire()))
    }

    fn report(supported: &[TlsVersion], scsv: ScsvSupport) -> ProbeReport {
        ProbeReport {
            target: "h:443".into(),
            supported: supported.to_vec(),
            version_intolerance: VersionKey::ALL.into_iter().map(|k| (k, false)).collect(),
            long_handshake_intolerance: false,
            cipher_count_intolerance: false,
            extension_intolerance: false,
            fallback_scsv: scsv,
            recommendation: String::new(),
            tests: vec![],
            fallback_scsv_unknown: None,
            no_tls_answer: None,
        }
    }

    #[test]
    fn recommendation_covers_each_case() {
        use ScsvSupport::*;
        let rows: [(ProbeReport, &str); 4] = [
            (report(&[Tls1_2, Tls1_3], Supported), "Nothing needed"),
            (report(&[Tls1_2], Unknown), "Pin h to TLS 1.2"),
            (
                report(&[Tls1_0, Tls1_1], NotSupported),
                "Allow legacy TLS for this host",
            ),
            (report(&[], Unknown), "No TLS version"),
        ];
        for (r, start) in rows {
            let text = recommend(&r, "h");
            assert!(text.starts_with(start), "{text}");
            assert!(!text.contains("--ca-file"), "{text}");
            assert_eq!(
                text.contains("ignores TLS_FALLBACK_SCSV"),
                r.fallback_scsv == NotSupported,
                "{text}"
            );
        }

        let mut r = report(&[Tls1_2, Tls1_3], Supported);
        r.version_intolerance.insert(VersionKey::Tls13, true);
        r.tests = vec![ProbeTest::sample(TestId::Version13, TestOutcome::Alert(40))];
        let text = recommend(&r, "h");
        assert!(text.contains("(evidence: version_1.3=alert:40)"), "{text}");
        assert!(text.contains("pin h to TLS 1.2"), "{text}");

        let mut r = report(&[Tls1_0], Unknown);
        r.version_intolerance.insert(VersionKey::Tls12, true);
        r.long_handshake_intolerance = true;
        r.tests = vec![
            ProbeTest::sample(TestId::Version10, hello(Tls1_0)),
            ProbeTest::sample(TestId::Version12, TestOutcome::Reset),
            ProbeTest::sample(TestId::LongShort, hello(Tls1_0)),
            ProbeTest::sample(TestId::Long300, TestOutcome::Timeout),
        ];
        let text = recommend(&r, "h");
        assert!(text.starts_with("Contact the vendor"), "{text}");
        assert!(text.contains("version_1.2=reset"), "{text}");
        assert!(text.contains("long_300=timeout"), "{text}");
        assert!(text.contains("legacy TLS is allowed"), "{text}");
    }

    #[test]
    fn no_tls_answer_is_said_in_the_table_and_the_recommendation() {
        let mut r = report(&[], ScsvSupport::Unknown);
        r.no_tls_answer = Some(NoTlsAnswer::Silent);
        r.fallback_scsv_unknown = Some(ScsvUnknown::NoTlsAnswer);
        r.tests = vec![ProbeTest::sample(TestId::Version10, TestOutcome::Timeout)];
        r.recommendation = recommend(&r, "h");
        assert!(
            r.recommendation.starts_with("No TLS answer from h"),
            "{}",
            r.recommendation
        );
        assert!(r.recommendation.contains("Is this a TLS port?"));
        let table = r.to_table();
        assert!(table.contains(". Is this a TLS port?"), "{table}");
        assert!(
            !table.contains(": ok") && !table.contains(" ok\n"),
            "{table}"
        );
        assert!(
            table.contains("unknown (not tested: nothing answered in TLS)"),
            "{table}"
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["no_tls_answer"], "silent");
        assert_eq!(v["fallback_scsv_unknown"], "no_tls_answer");
    }

    #[test]
    fn the_probes_own_certificate_failure_comes_first_in_the_advice() {
        let mut r = report(&[Tls1_2, Tls1_3], ScsvSupport::Supported);
        let mut t = ProbeTest::sample(
            TestId::FallbackConnector,
            TestOutcome::Failed(ErrorKind::Certificate),
        );
        t.detail = Some("unable to get local issuer certificate".into());
        r.tests = vec![t];
        let text = recommend(&r, "h");
        assert!(
            text.contains("failed the certificate check (unable to get local issuer"),
            "{text}"
        );
        assert!(text.contains("--ca-file"), "{text}");
        r.tests[0].outcome = TestOutcome::Connected("modern".into());
        assert!(!recommend(&r, "h").contains("--ca-file"));
    }

    #[test]
    fn report_serializes_with_the_documented_keys() {
        let mut r = report(&[Tls1_3], ScsvSupport::Unknown);
        r.tests
            .push(ProbeTest::sample(TestId::Version13Only, hello(Tls1_3)));
        let v = serde_json::to_value(&r).unwrap();
        for key in [
            "target",
            "supported",
            "version_intolerance",
            "long_handshake_intolerance",
            "cipher_count_intolerance",
            "extension_intolerance",
            "fallback_scsv",
            "recommendation",
            "tests",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert!(v.get("no_tls_answer").is_none());
        assert_eq!(v["supported"], serde_json::json!(["1.3"]));
        assert_eq!(v["version_intolerance"].as_object().unwrap().len(), 5);
        assert_eq!(v["tests"][0]["outcome"], "server_hello:1.3");
        assert_eq!(v["tests"][0]["negotiated"], "1.3");
        assert!(v["tests"][0].get("detail").is_none());
        assert!(r.to_table().contains("version_1.3_only"));
    }

    /// The JSON contract, byte for byte: key order, string forms of every enum, absent new keys.
    #[test]
    fn report_json_is_byte_for_byte_the_contract() {
        let mut r = report(&[Tls1_2, Tls1_3], ScsvSupport::NotSupported);
        r.version_intolerance.insert(VersionKey::Future, true);
        r.recommendation = "R".into();
        r.tests = vec![
            ProbeTest::sample(TestId::Version12, hello(Tls1_2)),
            ProbeTest::sample(TestId::Future0398, TestOutcome::Alert(70)),
            ProbeTest::sample(TestId::Long300, TestOutcome::Skipped),
            ProbeTest::sample(
                TestId::FallbackConnector,
                TestOutcome::Connected("tls12".into()),
            ),
        ];
        r.tests[3].negotiated = Some(WireVersion(0x0303));
        r.tests[3].detail = Some("not serialized".into());
        let expected = concat!(
            r#"{"target":"h:443","supported":["1.2","1.3"],"#,
            r#""version_intolerance":{"1.0":false,"1.1":false,"1.2":false,"1.3":false,"future":true},"#,
            r#""long_handshake_intolerance":false,"cipher_count_intolerance":false,"#,
            r#""extension_intolerance":false,"fallback_scsv":"not_supported","recommendation":"R","#,
            r#""tests":["#,
            r#"{"name":"version_1.2","description":"","hello_len":100,"outcome":"server_hello:1.2","negotiated":"1.2","ms":1},"#,
            r#"{"name":"future_0x0398","description":"","hello_len":100,"outcome":"alert:70","negotiated":null,"ms":1},"#,
            r#"{"name":"long_300","description":"","hello_len":100,"outcome":"skipped","negotiated":null,"ms":1},"#,
            r#"{"name":"fallback_connector","description":"","hello_len":100,"outcome":"ok:tls12","negotiated":"1.2","ms":1}"#,
            r#"]}"#
        );
        assert_eq!(serde_json::to_string(&r).unwrap(), expected);
        r.no_tls_answer = Some(NoTlsAnswer::Mixed);
        r.fallback_scsv_unknown = Some(ScsvUnknown::Inconclusive);
        let grown = serde_json::to_string(&r).unwrap();
        assert!(
            grown.ends_with(r#"],"fallback_scsv_unknown":"inconclusive","no_tls_answer":"mixed"}"#),
            "{grown}"
        );
    }
}
