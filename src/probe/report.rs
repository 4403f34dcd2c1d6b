//! The probe's report: what it found ([`ProbeReport`], serialized for `--json`), per address
//! and for the name, and the table for a terminal or a mail to the vendor. Every field is
//! derived from one [`Analysis`] of the tests, so the summary, the table, the recommendation and
//! the JSON cannot disagree.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Serialize;

use super::advice::{self, Finding};
use super::analysis::Analysis;
use super::capture::{utc_millis, Exchange};
use super::findings::{
    NoTlsAnswer, ScsvSupport, ScsvUnknown, TestId, TestOutcome, VersionKey, WireVersion,
};
use super::{ProbeConfig, Target};
use crate::TlsVersion;

/// Everything the probe found, ready for `--json` or [`ProbeReport::to_table`].
///
/// The fields up to `no_tls_answer` are the original JSON contract, unchanged; the name's
/// report carries the findings of its first address there, and every address's own report in
/// `addresses`.
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
    /// What to do about this host, in a few sentences.
    pub recommendation: String,
    /// Every test, in the order it ran.
    pub tests: Vec<ProbeTest>,
    /// Why `fallback_scsv` is "unknown" (absent otherwise): "no_tls_answer", "no_version",
    /// "single_version", "inconclusive" or "accepted_at_best".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_scsv_unknown: Option<ScsvUnknown>,
    /// Present when nothing answered in TLS (no ServerHello, no alert): "silent", "not_tls",
    /// "closed" or "mixed". The intolerance flags then mean "not tested", not "tolerant".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_tls_answer: Option<NoTlsAnswer>,
    /// A hello of about 1,550 bytes (the size of a post-quantum key share) fails while a
    /// shorter one works.
    pub long_hello_intolerance: bool,
    /// A short hello written in two TCP segments fails while the same hello in one works.
    pub split_hello_intolerance: bool,
    /// A hello with an X25519MLKEM768 key share fails while one without it works.
    pub pq_key_share_intolerance: bool,
    /// The server refused the SCSV hello at the best version that got through: it speaks a
    /// higher version than the path lets through (a middlebox, or an attacker, blocks it).
    pub higher_version_blocked: bool,
    /// SSL Labs' `protocolIntolerance` bit mask: 1 TLS 1.0, 2 TLS 1.1, 4 TLS 1.2, 8 TLS 1.3,
    /// 16 for 0x0398, 32 for 0x0498.
    #[serde(rename = "protocolIntolerance")]
    pub protocol_intolerance: u32,
    /// SSL Labs' `miscIntolerance`: 1 an extension, 2 a long handshake, 4 the long-handshake
    /// workaround works.
    #[serde(rename = "miscIntolerance")]
    pub misc_intolerance: u32,
    /// SSL Labs' `fallbackScsv`: the server refuses a fallback hello carrying the SCSV.
    #[serde(rename = "fallbackScsv")]
    pub fallback_scsv_bool: bool,
    /// In a few plain sentences, for someone who is not a TLS engineer.
    pub summary: String,
    /// What the tls-fallback connector does (or did, in the last test) for this host.
    pub connector: String,
    /// Each finding with its verdict, evidence and advice, worst first.
    pub findings: Vec<Finding>,
    /// The address these findings are about (the name's first address in its report).
    pub address: Option<SocketAddr>,
    /// The probe's own address and port of its last connection there.
    pub source: Option<SocketAddr>,
    /// The port probed.
    pub port: u16,
    /// The server name sent in SNI.
    pub sni: Option<String>,
    /// When the probe started, UTC, to the millisecond.
    pub started: String,
    /// The tool and the OpenSSL it runs on.
    pub tool: ToolInfo,
    /// Why this address could not be probed (no TCP connection).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
    /// Every address's own report (the name's report only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<ProbeReport>,
    /// How the addresses differ, in words (absent when they agree or there is one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addresses_differ: Option<String>,
    /// The one test run alone (`--only`): the report then holds its row and no verdicts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub only: Option<TestId>,
    /// Addresses of the name left out (past the first 16); `--resolve` chooses them.
    #[serde(skip_serializing_if = "is_zero")]
    pub addresses_not_probed: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The tool and library versions a report was made with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolInfo {
    /// `tls-fallback`.
    pub name: &'static str,
    /// The crate's version.
    pub version: &'static str,
    /// OpenSSL's version text, e.g. `OpenSSL 3.0.15 3 Sep 2024`.
    pub openssl: &'static str,
}

impl ToolInfo {
    /// This build.
    pub fn current() -> ToolInfo {
        ToolInfo {
            name: "tls-fallback",
            version: env!("CARGO_PKG_VERSION"),
            openssl: openssl::version::version(),
        }
    }
}

/// What a hello offered, read back from the bytes sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HelloOffer {
    /// Versions a server may pick, ascending.
    pub versions: Vec<WireVersion>,
    /// Number of cipher suites (SCSVs included).
    pub suites: usize,
    /// Number of extensions.
    pub extensions: usize,
    /// Named groups offered (hex codes).
    pub groups: Vec<String>,
    /// Key shares: group and key length, e.g. `0x11ec:1216`.
    pub key_shares: Vec<String>,
    /// Whether TLS_FALLBACK_SCSV is in the suites.
    pub scsv: bool,
}

impl HelloOffer {
    /// Reads a hello record back; `None` if it does not parse (it always does for the
    /// probe's own hellos).
    pub fn of(record: &[u8]) -> Option<HelloOffer> {
        let info = crate::wire::parse_client_hello(record).ok()?;
        let mut versions: Vec<WireVersion> = match &info.supported_versions {
            Some(v) => v
                .iter()
                .filter(|v| !crate::wire::is_grease(**v))
                .map(|&v| WireVersion(v))
                .collect(),
            None => (crate::wire::TLS10..=info.legacy_version.min(crate::wire::TLS12))
                .map(WireVersion)
                .collect(),
        };
        versions.sort();
        versions.dedup();
        Some(HelloOffer {
            versions,
            suites: info.cipher_count,
            extensions: info.extensions.len(),
            groups: info
                .supported_groups
                .iter()
                .map(|g| format!("{g:#06x}"))
                .collect(),
            key_shares: info
                .key_shares
                .iter()
                .map(|k| format!("{:#06x}:{}", k.group, k.key_len))
                .collect(),
            scsv: info.scsv,
        })
    }
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
    /// When the test started, UTC, to the millisecond.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    /// How it ended, in words: FIN, RST, which alert, timeout after N ms, the ServerHello.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub how: Option<String>,
    /// What the hello offered (versions, suites, extensions, groups, key shares).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offer: Option<HelloOffer>,
    /// The sizes of the writes the hello went out in (two for the split hello).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<usize>,
    /// The hello record as sent, in hex.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hello_hex: String,
    /// A command that repeats this test.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reproduce: Option<String>,
    /// The hello record as sent (in the JSON as `hello_hex`).
    #[serde(skip)]
    pub record: Vec<u8>,
    /// What the socket wrote and read (for the pcap).
    #[serde(skip)]
    pub exchange: Option<Exchange>,
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
            started: None,
            how: None,
            offer: None,
            segments: Vec::new(),
            hello_hex: String::new(),
            reproduce: None,
            record: Vec::new(),
            exchange: None,
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
    /// The report of one address from its tests.
    pub(super) fn of_address(
        cfg: &ProbeConfig,
        target: &Target,
        addr: SocketAddr,
        source: Option<SocketAddr>,
        mut tests: Vec<ProbeTest>,
    ) -> ProbeReport {
        let analysis = Analysis::of(&tests, &cfg.sni);
        for t in tests
            .iter_mut()
            .filter(|t| !t.record.is_empty() && t.failed())
        {
            t.reproduce = Some(advice::reproduce(t, target, addr, &cfg.sni, &analysis));
        }
        let mut r = ProbeReport::empty(cfg, target, Some(addr));
        r.source = source;
        r.supported = analysis
            .versions
            .supported
            .iter()
            .filter_map(|&v| TlsVersion::from_wire(v))
            .collect();
        r.version_intolerance = analysis.versions.intolerance.clone();
        r.long_handshake_intolerance = analysis.shapes.long_handshake;
        r.cipher_count_intolerance = analysis.shapes.cipher_count;
        r.extension_intolerance = analysis.shapes.extension;
        r.fallback_scsv = analysis.scsv;
        r.fallback_scsv_unknown = analysis.scsv_unknown.clone();
        r.no_tls_answer = analysis.no_tls_answer;
        r.long_hello_intolerance = analysis.sizes.long_hello;
        r.split_hello_intolerance = analysis.sizes.split_hello;
        r.pq_key_share_intolerance = analysis.sizes.pq_key_share;
        r.higher_version_blocked = analysis.higher_version_blocked;
        r.protocol_intolerance = analysis.protocol_intolerance(&tests);
        r.misc_intolerance = analysis.misc_intolerance(&tests);
        r.fallback_scsv_bool = analysis.scsv == ScsvSupport::Supported;
        r.tests = tests;
        let host = advice::host_label(target, Some(addr));
        if let Some(only) = cfg.only {
            // A reproduction: one test says what happened to it, not what the host has (one
            // failed hello has no baseline to be judged against).
            let how = r.test(only).and_then(|t| t.how.clone());
            r.summary = format!(
                "{only} alone against {host}: {}.",
                how.unwrap_or_else(|| "did not run".into())
            );
            r.recommendation = format!(
                "This run repeats one test (--only {only}); run the full probe for findings."
            );
            r.connector = "not tested (--only)".into();
            r.only = Some(only);
            r.no_tls_answer = None;
            r.fallback_scsv_unknown = None;
            return r;
        }
        r.findings = advice::findings(&r, &analysis, &host);
        r.connector = advice::connector(&r, &analysis, &host);
        r.recommendation = advice::recommend(&r, &analysis, &host);
        r.summary = advice::summary(&r, &host);
        r
    }

    /// The report of an address no TCP connection reached.
    pub(super) fn unreachable(
        cfg: &ProbeConfig,
        target: &Target,
        addr: SocketAddr,
        e: &std::io::Error,
    ) -> ProbeReport {
        let mut r = ProbeReport::empty(cfg, target, Some(addr));
        r.unreachable = Some(format!("cannot connect to {addr}: {e}"));
        r.summary =
            format!("{addr} could not be reached over TCP ({e}); nothing was tested there.");
        r.recommendation = r.summary.clone();
        r.connector = "nothing: no TCP connection".into();
        r
    }

    fn empty(cfg: &ProbeConfig, target: &Target, addr: Option<SocketAddr>) -> ProbeReport {
        ProbeReport {
            target: cfg.target.clone(),
            supported: Vec::new(),
            version_intolerance: VersionKey::ALL.into_iter().map(|k| (k, false)).collect(),
            long_handshake_intolerance: false,
            cipher_count_intolerance: false,
            extension_intolerance: false,
            fallback_scsv: ScsvSupport::Unknown,
            recommendation: String::new(),
            tests: Vec::new(),
            fallback_scsv_unknown: None,
            no_tls_answer: None,
            long_hello_intolerance: false,
            split_hello_intolerance: false,
            pq_key_share_intolerance: false,
            higher_version_blocked: false,
            protocol_intolerance: 0,
            misc_intolerance: 0,
            fallback_scsv_bool: false,
            summary: String::new(),
            connector: String::new(),
            findings: Vec::new(),
            address: addr,
            source: None,
            port: target.port(),
            sni: cfg.sni.clone(),
            started: String::new(),
            tool: ToolInfo::current(),
            unreachable: None,
            addresses: Vec::new(),
            addresses_differ: None,
            addresses_not_probed: 0,
            only: None,
        }
    }

    /// Says, in the summary and the recommendation, that `n` addresses were left out.
    pub(super) fn note_not_probed(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.addresses_not_probed = n;
        let (noun, verb) = if n == 1 {
            ("address", "was")
        } else {
            ("addresses", "were")
        };
        let note = format!(
            "{n} more {noun} of this name {verb} not probed (the first {} were); --resolve \
             HOST:PORT:ADDR chooses which.",
            self.addresses.len()
        );
        self.summary = format!("{} {note}", self.summary);
        self.recommendation = format!("{} {note}", self.recommendation);
    }

    /// The name's report: its first reachable address's findings at the top (the original
    /// JSON fields), every address's report in `addresses`, and in words how they differ.
    /// `None` when `reports` is empty.
    pub(super) fn combine(reports: Vec<ProbeReport>, started_us: u64) -> Option<ProbeReport> {
        let primary = reports
            .iter()
            .position(|r| r.unreachable.is_none())
            .unwrap_or(0);
        let mut top = reports.get(primary)?.clone();
        top.started = utc_millis(started_us);
        top.addresses_differ = advice::addresses_differ(&reports);
        if let Some(differ) = &top.addresses_differ {
            top.summary = format!("{differ} {}", top.summary);
            top.recommendation = format!("{differ} {}", top.recommendation);
        }
        top.addresses = reports
            .into_iter()
            .map(|mut r| {
                r.started = top.started.clone();
                r
            })
            .collect();
        Some(top)
    }

    /// The test with this name, if it ran.
    pub fn test(&self, id: TestId) -> Option<&ProbeTest> {
        self.tests.iter().find(|t| t.name == id)
    }

    /// Every address's report: `addresses`, or this report when it is one address's.
    pub fn per_address(&self) -> Vec<&ProbeReport> {
        if self.addresses.is_empty() {
            vec![self]
        } else {
            self.addresses.iter().collect()
        }
    }

    /// Every test's exchange of every address as one pcapng file (`--pcap`), rebuilt from what
    /// each socket wrote and read ([`super::pcap::pcapng`]); the section comment names the
    /// target, the OpenSSL and the start time.
    pub fn to_pcapng(&self) -> Vec<u8> {
        let rows: Vec<(&str, &Exchange)> = self
            .per_address()
            .into_iter()
            .flat_map(|r| r.tests.iter())
            .filter_map(|t| t.exchange.as_ref().map(|x| (t.name.as_str(), x)))
            .collect();
        let comment = format!(
            "probe of {} with {}, started {}",
            self.target, self.tool.openssl, self.started
        );
        super::pcap::pcapng(&rows, &comment)
    }
}

mod table;
#[cfg(test)]
mod tests;
