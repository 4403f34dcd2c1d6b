//! Diagnostic probe: SSL Labs' "Protocol Details" for any endpoint, with hand-built hellos.
//!
//! [`probe`] opens one TCP connection per test, writes one ClientHello built by
//! [`hello::build_client_hello`] (no OpenSSL on this side, so it can send what OpenSSL never
//! would: a legacy version of 0x0398, 150 suites, an unknown extension, an exact length) and
//! reads only the server's first answer, decoded by [`crate::wire::parse_server_answer`]. It
//! never completes a handshake and never sends application data. Each test changes one variable
//! against its baseline, so a failure points at one cause: version, hello length (the F5
//! 256..511-byte bug), cipher count or unknown extensions. TLS_FALLBACK_SCSV support is checked
//! next, and last one full handshake through the fallback connector, to the same address, with
//! certificate checks. A port where nothing answers in TLS is its own finding
//! ([`NoTlsAnswer`]), not a tolerant server. The [`ProbeReport`] serializes to JSON and renders
//! as a table for the vendor.
//!
//! The layers: `plan` says which hellos to send (pure), `runner` sends them (I/O), `findings`
//! holds what they show as enums and `analysis` derives them (pure), `report` renders the
//! table and the recommendation.
//!
//! ```no_run
//! use tls_fallback::probe::{probe, ProbeConfig, ScsvSupport};
//!
//! # async fn run() -> Result<(), tls_fallback::probe::ProbeError> {
//! let report = probe(&ProbeConfig::new("gateway.example:443")).await?;
//! println!("{}", report.to_table());
//! if report.fallback_scsv == ScsvSupport::NotSupported {
//!     eprintln!("{}", report.recommendation);
//! }
//! # Ok(())
//! # }
//! ```

mod advice;
mod analysis;
pub mod capture;
pub mod evidence;
mod findings;
mod handshake;
pub mod hello;
pub mod pcap;
mod plan;
mod render;
mod report;
mod runner;
mod target;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Told when each test starts: the address and the test (for a progress line).
pub type Progress = Arc<dyn Fn(SocketAddr, TestId) + Send + Sync>;

pub use advice::Finding;
pub use analysis::{ShapeFindings, SizeFindings};
pub use findings::{
    NoTlsAnswer, ScsvSupport, ScsvUnknown, TestId, TestOutcome, VersionKey, WireVersion,
};
pub use report::{HelloOffer, ProbeReport, ProbeTest, ToolInfo};
pub use runner::probe;
pub use target::{Target, TargetError};

/// What to probe and how long each test may take.
#[derive(Clone)]
pub struct ProbeConfig {
    /// `HOST[:PORT]`, `[v6][:PORT]` or `https://HOST[:PORT]/` (see [`Target`]).
    pub target: String,
    /// Server name sent in SNI and checked in the certificate; defaults to the host part of
    /// `target` unless it is an IP literal. The tests still connect to `target`.
    pub sni: Option<String>,
    /// Time budget of one test, TCP connect and answer included (and of each handshake of the
    /// connector test).
    pub timeout: Duration,
    /// Extra root certificates (PEM) for the connector test's certificate check.
    pub ca_file: Option<PathBuf>,
    /// Run the last test, a full handshake through the fallback connector (default: true).
    pub full_handshake: bool,
    /// The addresses to probe, as curl's `--resolve` chooses them (a backend behind a VIP, a
    /// host DNS does not list); empty: every address the name resolves to (A and AAAA).
    pub resolve: Vec<IpAddr>,
    /// Run this one test alone (a reproduction), on `baseline`.
    pub only: Option<TestId>,
    /// With `only`: the highest version the test's hello offers (TLS 1.3 when `None`), as the
    /// full probe would have chosen it.
    pub baseline: Option<u16>,
    /// Told when each test starts.
    pub progress: Option<Progress>,
}

impl fmt::Debug for ProbeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeConfig")
            .field("target", &self.target)
            .field("sni", &self.sni)
            .field("timeout", &self.timeout)
            .field("ca_file", &self.ca_file)
            .field("full_handshake", &self.full_handshake)
            .field("resolve", &self.resolve)
            .field("only", &self.only)
            .field("baseline", &self.baseline)
            .field("progress", &self.progress.as_ref().map(|_| "callback"))
            .finish()
    }
}

impl ProbeConfig {
    /// A config for `target` with the default SNI and a 5 s per-test timeout.
    pub fn new(target: impl Into<String>) -> Self {
        let target = target.into();
        let sni = Target::parse(&target).ok().and_then(|t| t.default_sni());
        ProbeConfig {
            target,
            sni,
            timeout: Duration::from_secs(5),
            ca_file: None,
            full_handshake: true,
            resolve: Vec::new(),
            only: None,
            baseline: None,
            progress: None,
        }
    }
}

/// Why a probe could not run at all (a failing test is an outcome, not an error).
#[derive(Debug)]
pub enum ProbeError {
    /// The target is not valid; the message says what is wrong and what is expected.
    BadTarget(String),
    /// The first TCP connection (or the name resolution before it) failed.
    Connect {
        /// The target as given.
        target: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::BadTarget(message) => f.write_str(message),
            ProbeError::Connect { target, source } => {
                write!(f, "cannot connect to {target}: {source}")
            }
        }
    }
}

impl std::error::Error for ProbeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProbeError::BadTarget(_) => None,
            ProbeError::Connect { source, .. } => Some(source),
        }
    }
}

/// Name of a TLS version as used in reports: "1.0".."1.3", else hex such as "0x0398".
pub fn version_name(v: u16) -> String {
    WireVersion(v).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_sni_is_the_host_name_but_never_an_ip() {
        let rows = [
            ("Example.COM.:443", Some("example.com")),
            ("https://pay.example:8443/x", Some("pay.example")),
            ("10.0.0.1:443", None),
            ("[::1]:443", None),
            ("localhost:99999", None),
        ];
        for (target, sni) in rows {
            assert_eq!(ProbeConfig::new(target).sni.as_deref(), sni, "{target}");
        }
        let cfg = ProbeConfig::new("localhost:1");
        assert_eq!(cfg.timeout, Duration::from_secs(5));
        assert!(cfg.full_handshake && cfg.ca_file.is_none());
    }

    #[test]
    fn version_names_are_dotted_or_hex() {
        assert_eq!(version_name(0x0301), "1.0");
        assert_eq!(version_name(0x0304), "1.3");
        assert_eq!(version_name(0x0398), "0x0398");
        assert_eq!(version_name(0x0300), "0x0300");
    }

    #[tokio::test]
    async fn bad_targets_and_refused_connections_are_errors() {
        let err = probe(&ProbeConfig::new("localhost:99999"))
            .await
            .unwrap_err();
        assert!(matches!(err, ProbeError::BadTarget(_)));
        assert_eq!(
            err.to_string(),
            "port 99999 is out of range 1-65535; expected HOST[:PORT] or https://HOST[:PORT]/"
        );
        // Bind then drop to get a port that refuses connections.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = probe(&ProbeConfig::new(format!("127.0.0.1:{port}")))
            .await
            .unwrap_err();
        assert!(matches!(err, ProbeError::Connect { .. }), "{err}");
        assert!(std::error::Error::source(&err).is_some());
    }
}
