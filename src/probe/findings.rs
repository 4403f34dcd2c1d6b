//! What the probe found, as values: the name and outcome of every test, the version keys of
//! the intolerance map, TLS_FALLBACK_SCSV support and why it is unknown, and whether anything
//! answered in TLS at all. Each enum serializes to the string the JSON report has always
//! carried, so the JSON contract is unchanged. The `analysis` module derives the findings
//! that span several tests.

use std::fmt;

use serde::{Serialize, Serializer};

use super::ProbeTest;
use crate::error::ErrorKind;
use crate::wire::{alert, TLS10, TLS11, TLS12, TLS13};
use crate::TlsVersion;

/// Serializes a type through its `Display` (the JSON strings of the report).
macro_rules! serialize_as_display {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                displays_as(self, other)
            }
        }
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                displays_as(self, other)
            }
        }
    )*};
}

/// Whether `value` displays as exactly `text`, without building a string.
fn displays_as(value: &dyn fmt::Display, text: &str) -> bool {
    struct Eat<'a>(&'a str);
    impl fmt::Write for Eat<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0 = self.0.strip_prefix(s).ok_or(fmt::Error)?;
            Ok(())
        }
    }
    let mut rest = Eat(text);
    fmt::write(&mut rest, format_args!("{value}")).is_ok() && rest.0.is_empty()
}

/// A version code as a server sent it: "1.0".."1.3", else hex such as "0x0398".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WireVersion(pub u16);

impl WireVersion {
    /// The version, if it is one of TLS 1.0..1.3.
    pub fn tls(self) -> Option<TlsVersion> {
        TlsVersion::from_wire(self.0)
    }
}

impl fmt::Display for WireVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.tls() {
            Some(v) => f.write_str(v.as_str()),
            None => write!(f, "{:#06x}", self.0),
        }
    }
}

/// Which test a row is; serializes to its short name (`version_1.2`, `long_300`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TestId {
    /// `version_1.0`: legacy_version 1.0 only.
    Version10,
    /// `version_1.1`: legacy_version 1.1.
    Version11,
    /// `version_1.2`: legacy_version 1.2.
    Version12,
    /// `version_1.3_only`: supported_versions [1.3] only.
    Version13Only,
    /// `version_1.3`: supported_versions [1.3, 1.2, 1.1, 1.0].
    Version13,
    /// `future_0x0304`: legacy_version 0x0304 without supported_versions.
    Future0304,
    /// `future_0x0398`: legacy_version 0x0398.
    Future0398,
    /// `future_0x0498`: legacy_version 0x0498.
    Future0498,
    /// `long_short`: the baseline hello, unpadded.
    LongShort,
    /// `long_300`: padded into the F5 window (256..511 bytes).
    Long300,
    /// `long_512`: padded past the F5 window.
    Long512,
    /// `baseline_padded`: the baseline for the cipher-count and extension tests.
    BaselinePadded,
    /// `ciphers_many`: about 150 suites.
    CiphersMany,
    /// `extension_unknown`: one unknown extension.
    ExtensionUnknown,
    /// `long_hello`: the TLS 1.3 baseline padded to about 1,550 bytes, the size a post-quantum
    /// key share gives (in one write; two TCP segments on a 1,500-byte MTU path).
    LongHello,
    /// `split_hello`: the short TLS 1.3 baseline written in two TCP segments (a reassembly
    /// test, told apart from a size limit).
    SplitHello,
    /// `pq_key_share`: a TLS 1.3 hello offering an X25519MLKEM768 key share (and x25519).
    PqKeyShare,
    /// `fallback_scsv`: one version below the best, with TLS_FALLBACK_SCSV.
    FallbackScsv,
    /// `fallback_connector`: a full handshake through the fallback connector.
    FallbackConnector,
}

impl TestId {
    /// Every test, in plan order.
    pub const ALL: [TestId; 19] = [
        TestId::Version10,
        TestId::Version11,
        TestId::Version12,
        TestId::Version13Only,
        TestId::Version13,
        TestId::Future0304,
        TestId::Future0398,
        TestId::Future0498,
        TestId::LongShort,
        TestId::Long300,
        TestId::Long512,
        TestId::BaselinePadded,
        TestId::CiphersMany,
        TestId::ExtensionUnknown,
        TestId::LongHello,
        TestId::SplitHello,
        TestId::PqKeyShare,
        TestId::FallbackScsv,
        TestId::FallbackConnector,
    ];

    /// The test with this short name (`version_1.2`, `long_hello`, ...).
    pub fn from_name(name: &str) -> Option<TestId> {
        TestId::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The short name used in reports and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            TestId::Version10 => "version_1.0",
            TestId::Version11 => "version_1.1",
            TestId::Version12 => "version_1.2",
            TestId::Version13Only => "version_1.3_only",
            TestId::Version13 => "version_1.3",
            TestId::Future0304 => "future_0x0304",
            TestId::Future0398 => "future_0x0398",
            TestId::Future0498 => "future_0x0498",
            TestId::LongShort => "long_short",
            TestId::Long300 => "long_300",
            TestId::Long512 => "long_512",
            TestId::BaselinePadded => "baseline_padded",
            TestId::CiphersMany => "ciphers_many",
            TestId::ExtensionUnknown => "extension_unknown",
            TestId::LongHello => "long_hello",
            TestId::SplitHello => "split_hello",
            TestId::PqKeyShare => "pq_key_share",
            TestId::FallbackScsv => "fallback_scsv",
            TestId::FallbackConnector => "fallback_connector",
        }
    }
}

impl fmt::Display for TestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one test ended; serializes to `server_hello:1.2`, `alert:70`, `closed`, `reset`,
/// `timeout`, `garbage`, `connect_error`, `io_error`, `skipped`, and for the connector test
/// `ok:PROFILE`, `ok` or `error:KIND`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestOutcome {
    /// The server answered with a ServerHello (or HelloRetryRequest) for this version.
    ServerHello(WireVersion),
    /// The server answered with an alert of this number.
    Alert(u8),
    /// The server closed the connection (FIN) without answering.
    Closed,
    /// The connection was reset.
    Reset,
    /// Nothing decisive came back before the timeout.
    Timeout,
    /// The server answered with bytes that are not TLS.
    Garbage,
    /// The TCP connection could not be made.
    ConnectError,
    /// Another I/O error.
    IoError,
    /// The test did not run (its description says why).
    Skipped,
    /// The connector's handshake succeeded on this rung (profile name).
    Connected(String),
    /// The connector's connection succeeded without TLS information.
    ConnectedPlain,
    /// The connector failed with this error kind.
    Failed(ErrorKind),
}

impl TestOutcome {
    /// A TLS answer: a ServerHello or an alert (anything that proves a TLS stack listened).
    pub fn is_tls_answer(&self) -> bool {
        matches!(self, TestOutcome::ServerHello(_) | TestOutcome::Alert(_))
    }
}

impl fmt::Display for TestOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TestOutcome::ServerHello(v) => write!(f, "server_hello:{v}"),
            TestOutcome::Alert(n) => write!(f, "alert:{n}"),
            TestOutcome::Closed => f.write_str("closed"),
            TestOutcome::Reset => f.write_str("reset"),
            TestOutcome::Timeout => f.write_str("timeout"),
            TestOutcome::Garbage => f.write_str("garbage"),
            TestOutcome::ConnectError => f.write_str("connect_error"),
            TestOutcome::IoError => f.write_str("io_error"),
            TestOutcome::Skipped => f.write_str("skipped"),
            TestOutcome::Connected(profile) => write!(f, "ok:{profile}"),
            TestOutcome::ConnectedPlain => f.write_str("ok"),
            TestOutcome::Failed(kind) => write!(f, "error:{}", kind.as_str()),
        }
    }
}

/// A key of the version intolerance map: "1.0", "1.1", "1.2", "1.3" or "future".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VersionKey {
    /// Hellos offering at most TLS 1.0.
    Tls10,
    /// Hellos offering at most TLS 1.1.
    Tls11,
    /// Hellos offering at most TLS 1.2.
    Tls12,
    /// Hellos offering TLS 1.3 (and below).
    Tls13,
    /// Hellos with a legacy_version above TLS 1.2 and no supported_versions.
    Future,
}

impl VersionKey {
    /// Every key, in report order.
    pub const ALL: [VersionKey; 5] = [
        VersionKey::Tls10,
        VersionKey::Tls11,
        VersionKey::Tls12,
        VersionKey::Tls13,
        VersionKey::Future,
    ];

    /// The version a key tests (`None` for the future values).
    pub fn version(self) -> Option<u16> {
        match self {
            VersionKey::Tls10 => Some(TLS10),
            VersionKey::Tls11 => Some(TLS11),
            VersionKey::Tls12 => Some(TLS12),
            VersionKey::Tls13 => Some(TLS13),
            VersionKey::Future => None,
        }
    }

    /// The key for a known version.
    pub fn of(v: u16) -> Option<VersionKey> {
        match v {
            TLS10 => Some(VersionKey::Tls10),
            TLS11 => Some(VersionKey::Tls11),
            TLS12 => Some(VersionKey::Tls12),
            TLS13 => Some(VersionKey::Tls13),
            _ => None,
        }
    }

    /// "1.0" .. "1.3" or "future".
    pub fn as_str(self) -> &'static str {
        match self {
            VersionKey::Tls10 => "1.0",
            VersionKey::Tls11 => "1.1",
            VersionKey::Tls12 => "1.2",
            VersionKey::Tls13 => "1.3",
            VersionKey::Future => "future",
        }
    }
}

impl fmt::Display for VersionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the server honours TLS_FALLBACK_SCSV (RFC 7507).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScsvSupport {
    /// It refused a fallback hello with `inappropriate_fallback`.
    Supported,
    /// It accepted a fallback hello below its best version.
    NotSupported,
    /// Not known: [`ScsvUnknown`] says why.
    Unknown,
}

impl fmt::Display for ScsvSupport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScsvSupport::Supported => "supported",
            ScsvSupport::NotSupported => "not_supported",
            ScsvSupport::Unknown => "unknown",
        })
    }
}

serialize_as_display!(WireVersion, TestId, TestOutcome, VersionKey, ScsvSupport);

/// Why TLS_FALLBACK_SCSV support is unknown.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScsvUnknown {
    /// Nothing answered in TLS, so nothing could be asked.
    NoTlsAnswer,
    /// No version was negotiated at all.
    NoVersion,
    /// The server negotiates only one version: there is no lower version to offer with the SCSV.
    SingleVersion,
    /// The SCSV hello got neither a ServerHello nor `inappropriate_fallback`.
    Inconclusive,
    /// A higher version failed, and the SCSV hello at the best version that got through was
    /// accepted: either the server speaks nothing higher (the failures above come from the
    /// server itself) or it ignores the SCSV; the probe cannot tell which.
    AcceptedAtBest,
}

impl ScsvUnknown {
    /// One sentence for the table, given the report's supported versions and the SCSV test.
    pub fn explain(&self, supported: &[TlsVersion], scsv_test: Option<&ProbeTest>) -> String {
        match self {
            ScsvUnknown::NoTlsAnswer => "not tested: nothing answered in TLS".into(),
            ScsvUnknown::NoVersion => "not tested: no TLS version could be negotiated".into(),
            ScsvUnknown::SingleVersion => format!(
                "not tested: the server negotiates only TLS {}, so there is no lower version \
                 to offer with the SCSV",
                supported.first().map_or("?", |v| v.as_str())
            ),
            ScsvUnknown::AcceptedAtBest => format!(
                "the SCSV hello at TLS {} was accepted although a higher version failed: either \
                 the server speaks nothing higher (then the failures above are its own) or it \
                 ignores the SCSV",
                scsv_test
                    .and_then(|t| t.negotiated)
                    .map_or("?".to_string(), |v| v.to_string())
            ),
            ScsvUnknown::Inconclusive => format!(
                "the fallback hello got {}, neither a ServerHello nor alert {} \
                 (inappropriate_fallback)",
                scsv_test.map_or("no answer".into(), |t| t.outcome.to_string()),
                alert::INAPPROPRIATE_FALLBACK
            ),
        }
    }
}

/// The verdict on TLS_FALLBACK_SCSV from the SCSV test's outcome (`None`: it did not run).
/// `at_best`: the hello offered the best version that got through (a higher one failed), so a
/// ServerHello proves nothing about the SCSV.
pub fn scsv_verdict(test: Option<&TestOutcome>, at_best: bool) -> ScsvSupport {
    match test {
        Some(TestOutcome::ServerHello(_)) if !at_best => ScsvSupport::NotSupported,
        Some(TestOutcome::Alert(alert::INAPPROPRIATE_FALLBACK)) => ScsvSupport::Supported,
        _ => ScsvSupport::Unknown,
    }
}

/// Nothing answered in TLS: what came back instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoTlsAnswer {
    /// Every hello timed out: the port accepts TCP and stays silent.
    Silent,
    /// The server answered with bytes that are not TLS.
    NotTls,
    /// Every connection was closed or reset before any answer.
    Closed,
    /// A mix of silence, closes and non-TLS bytes.
    Mixed,
}

impl NoTlsAnswer {
    /// `Some` when no test that ran got a TLS answer (a ServerHello or an alert); tests that
    /// were skipped, could not connect or belong to the connector do not count.
    pub fn of(tests: &[ProbeTest]) -> Option<NoTlsAnswer> {
        let ran: Vec<&TestOutcome> = tests
            .iter()
            .filter(|t| t.name != TestId::FallbackConnector)
            .map(|t| &t.outcome)
            .filter(|o| !matches!(o, TestOutcome::Skipped | TestOutcome::ConnectError))
            .collect();
        if ran.is_empty() || ran.iter().any(|o| o.is_tls_answer()) {
            return None;
        }
        let all = |f: fn(&TestOutcome) -> bool| ran.iter().all(|o| f(o));
        Some(if all(|o| *o == TestOutcome::Timeout) {
            NoTlsAnswer::Silent
        } else if all(|o| *o == TestOutcome::Garbage) {
            NoTlsAnswer::NotTls
        } else if all(|o| matches!(o, TestOutcome::Closed | TestOutcome::Reset)) {
            NoTlsAnswer::Closed
        } else {
            NoTlsAnswer::Mixed
        })
    }

    /// What came back, as a clause ("every hello timed out: the port accepts TCP and never
    /// answers").
    pub fn explain(self) -> &'static str {
        match self {
            NoTlsAnswer::Silent => {
                "every hello timed out: the port accepts TCP connections and never answers"
            }
            NoTlsAnswer::NotTls => "the server answered every hello with bytes that are not TLS",
            NoTlsAnswer::Closed => "the server closed or reset every connection without a word",
            NoTlsAnswer::Mixed => {
                "no hello got a ServerHello or an alert (only silence, closes and non-TLS bytes)"
            }
        }
    }
}

#[cfg(test)]
impl ProbeTest {
    /// A row for tests: `name` ended with `outcome`.
    pub(crate) fn sample(name: TestId, outcome: TestOutcome) -> Self {
        let mut t = ProbeTest::skipped(name, "");
        t.hello_len = 100;
        t.negotiated = match outcome {
            TestOutcome::ServerHello(v) => Some(v),
            _ => None,
        };
        t.outcome = outcome;
        t.ms = 1;
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_v12(outcome: TestOutcome) -> ProbeTest {
        ProbeTest::sample(TestId::Version12, outcome)
    }
    use std::collections::BTreeMap;

    #[test]
    fn outcomes_serialize_to_the_documented_strings() {
        let rows = [
            (
                TestOutcome::ServerHello(WireVersion(TLS12)),
                "server_hello:1.2",
            ),
            (
                TestOutcome::ServerHello(WireVersion(0x0398)),
                "server_hello:0x0398",
            ),
            (TestOutcome::Alert(70), "alert:70"),
            (TestOutcome::Closed, "closed"),
            (TestOutcome::Reset, "reset"),
            (TestOutcome::Timeout, "timeout"),
            (TestOutcome::Garbage, "garbage"),
            (TestOutcome::ConnectError, "connect_error"),
            (TestOutcome::IoError, "io_error"),
            (TestOutcome::Skipped, "skipped"),
            (TestOutcome::Connected("tls13".into()), "ok:tls13"),
            (TestOutcome::ConnectedPlain, "ok"),
            (
                TestOutcome::Failed(ErrorKind::Certificate),
                "error:certificate",
            ),
        ];
        for (outcome, text) in rows {
            assert_eq!(serde_json::to_value(&outcome).unwrap(), text);
            assert!(outcome == text, "{outcome:?}");
        }
    }

    #[test]
    fn keys_and_verdicts_serialize_as_before() {
        let map: BTreeMap<VersionKey, bool> =
            VersionKey::ALL.into_iter().map(|k| (k, false)).collect();
        assert_eq!(
            serde_json::to_string(&map).unwrap(),
            r#"{"1.0":false,"1.1":false,"1.2":false,"1.3":false,"future":false}"#
        );
        for (v, text) in [
            (ScsvSupport::Supported, "supported"),
            (ScsvSupport::NotSupported, "not_supported"),
            (ScsvSupport::Unknown, "unknown"),
        ] {
            assert_eq!(serde_json::to_value(v).unwrap(), text);
        }
        assert_eq!(
            serde_json::to_value(TestId::Version13Only).unwrap(),
            "version_1.3_only"
        );
    }

    #[test]
    fn the_scsv_verdict_follows_the_answer() {
        let hello = Some(TestOutcome::ServerHello(WireVersion(TLS12)));
        // (outcome, offered at the best version that got through, verdict)
        let rows = [
            (hello.clone(), false, ScsvSupport::NotSupported),
            (hello, true, ScsvSupport::Unknown),
            (Some(TestOutcome::Alert(86)), false, ScsvSupport::Supported),
            (Some(TestOutcome::Alert(86)), true, ScsvSupport::Supported),
            (Some(TestOutcome::Alert(70)), false, ScsvSupport::Unknown),
            (Some(TestOutcome::Timeout), true, ScsvSupport::Unknown),
            (None, false, ScsvSupport::Unknown),
        ];
        for (outcome, at_best, verdict) in rows {
            let got = scsv_verdict(outcome.as_ref(), at_best);
            assert_eq!(got, verdict, "{outcome:?} {at_best}");
        }
    }

    #[test]
    fn no_tls_answer_is_told_apart_from_intolerance() {
        use TestOutcome::*;
        let rows: Vec<(Vec<TestOutcome>, Option<NoTlsAnswer>)> = vec![
            (vec![Timeout, Timeout, Skipped], Some(NoTlsAnswer::Silent)),
            (vec![Garbage, Garbage], Some(NoTlsAnswer::NotTls)),
            (vec![Closed, Reset, ConnectError], Some(NoTlsAnswer::Closed)),
            (vec![Closed, Timeout, Garbage], Some(NoTlsAnswer::Mixed)),
            (vec![Closed, Timeout, Alert(70)], None),
            (vec![Timeout, ServerHello(WireVersion(TLS10))], None),
            (vec![Skipped, ConnectError], None),
            (vec![], None),
        ];
        for (outcomes, expected) in rows {
            let tests: Vec<ProbeTest> = outcomes.iter().cloned().map(sample_v12).collect();
            assert_eq!(NoTlsAnswer::of(&tests), expected, "{outcomes:?}");
        }
    }
}
