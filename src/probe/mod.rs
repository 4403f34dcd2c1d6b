//! Diagnostic probe: SSL Labs' "Protocol Details" for any endpoint, with hand-built hellos.
//!
//! [`probe`] opens one TCP connection per test, writes one ClientHello built by
//! [`hello::build_client_hello`] (no OpenSSL on this side, so it can send what OpenSSL never
//! would: a legacy version of 0x0398, 150 suites, an unknown extension, an exact length) and
//! reads only the server's first answer, decoded by [`server::parse_server_answer`]. It never
//! completes a handshake and never sends application data. Each test changes one variable
//! against its baseline, so a failure points at one cause: version, hello length (the F5
//! 256..511-byte bug), cipher count or unknown extensions. TLS_FALLBACK_SCSV support is checked
//! last. The [`ProbeReport`] serializes to JSON and renders as a table for the vendor.
//!
//! ```no_run
//! use tls_fallback::probe::{probe, ProbeConfig};
//!
//! # async fn run() -> Result<(), tls_fallback::probe::ProbeError> {
//! let report = probe(&ProbeConfig::new("gateway.example:443")).await?;
//! println!("{}", report.to_table());
//! if report.fallback_scsv == "not_supported" {
//!     eprintln!("{}", report.recommendation);
//! }
//! # Ok(())
//! # }
//! ```

pub mod hello;
pub mod server;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use hello::{HelloSpec, FALLBACK_SCSV, TLS10, TLS11, TLS12, TLS13};
use server::ServerAnswer;

/// Most bytes read from the server for one test before giving up on deciding.
const MAX_READ: usize = 16 * 1024;
/// Length the cipher-count and extension tests pad their hellos to.
const PADDED_LEN: usize = 600;
/// Length inside the F5 window (256..=511) used by the long-handshake test.
const LONG_LEN: usize = 300;
/// Smallest length past the F5 window.
const PAST_F5: usize = 512;
/// Cipher suites offered by the "many suites" hello.
const MANY_SUITES: usize = 150;
/// Unknown extension type sent by the extension test (a reserved GREASE value, RFC 8701).
const UNKNOWN_EXTENSION: u16 = 0x7a7a;
/// Alert description inappropriate_fallback (RFC 7507).
const ALERT_INAPPROPRIATE_FALLBACK: u8 = 86;

/// What to probe and how long each test may take.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// `host:port` or `[v6]:port`.
    pub target: String,
    /// Server name sent in SNI; defaults to the host part of `target` unless it is an IP literal.
    pub sni: Option<String>,
    /// Time budget of one test, TCP connect and answer included.
    pub timeout: Duration,
}

impl ProbeConfig {
    /// A config for `target` with the default SNI and a 5 s per-test timeout.
    pub fn new(target: impl Into<String>) -> Self {
        let target = target.into();
        let sni = split_target(&target)
            .ok()
            .and_then(|(host, _)| default_sni(&host));
        ProbeConfig {
            target,
            sni,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Why a probe could not run at all (a failing test is an outcome, not an error).
#[derive(Debug)]
pub enum ProbeError {
    /// The target is not `host:port` or `[v6]:port`.
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
            ProbeError::BadTarget(t) => {
                write!(f, "bad probe target {t:?}: expected host:port or [v6]:port")
            }
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

/// Everything the probe found, ready for `--json` or [`ProbeReport::to_table`].
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    /// The target as given.
    pub target: String,
    /// Versions the server negotiates when offered alone, ascending ("1.0".."1.3").
    pub supported: Vec<String>,
    /// Per offered version ("1.0", "1.1", "1.2", "1.3", "future"): true if intolerant.
    pub version_intolerance: BTreeMap<String, bool>,
    /// A 256..=511-byte hello fails while a shorter one works (old F5 BIG-IP).
    pub long_handshake_intolerance: bool,
    /// A hello with ~150 suites fails while the same length with few suites works.
    pub cipher_count_intolerance: bool,
    /// A hello with one unknown extension fails while the same length without it works.
    pub extension_intolerance: bool,
    /// TLS_FALLBACK_SCSV: "supported", "not_supported" or "unknown".
    pub fallback_scsv: String,
    /// What to do about this host, in one or two sentences.
    pub recommendation: String,
    /// Every test, in the order it ran.
    pub tests: Vec<ProbeTest>,
}

/// One ClientHello sent and what came back.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeTest {
    /// Short identifier, e.g. `version_1.2` or `long_300`.
    pub name: String,
    /// What the hello offers and why.
    pub description: String,
    /// Handshake message length, 4-byte header included (0 if the test was skipped).
    pub hello_len: usize,
    /// `server_hello:1.2`, `alert:N`, `closed`, `reset`, `timeout`, `garbage`, `connect_error`,
    /// `io_error` or `skipped`.
    pub outcome: String,
    /// Negotiated version ("1.0".."1.3" or hex) when the server answered with a ServerHello.
    pub negotiated: Option<String>,
    /// Duration of the test in milliseconds.
    pub ms: u64,
}

impl ProbeTest {
    fn server_hello(&self) -> bool {
        self.negotiated.is_some()
    }

    /// The hello got a real answer that is not a ServerHello (connect errors and skips don't count).
    fn failed(&self) -> bool {
        !self.server_hello() && !matches!(self.outcome.as_str(), "connect_error" | "skipped")
    }
}

/// Name of a TLS version as used in reports: "1.0".."1.3", else hex such as "0x0398".
pub fn version_name(v: u16) -> String {
    match v {
        TLS10 => "1.0".into(),
        TLS11 => "1.1".into(),
        TLS12 => "1.2".into(),
        TLS13 => "1.3".into(),
        other => format!("{other:#06x}"),
    }
}

/// Runs every test against `cfg.target`, sequentially, one TCP connection each.
pub async fn probe(cfg: &ProbeConfig) -> Result<ProbeReport, ProbeError> {
    let (host, port) =
        split_target(&cfg.target).map_err(|()| ProbeError::BadTarget(cfg.target.clone()))?;
    let mut runner = Runner::resolve(cfg, &host, port).await?;
    let sni = cfg.sni.clone();
    let mut tests = Vec::new();

    // 1 and 2: one hello per version, then the "future" ones.
    let plan = version_plan(&sni);
    for step in &plan {
        tests.push(runner.run(step.name, step.description, &step.spec).await);
        if let Some(e) = runner.take_first_error() {
            return Err(e);
        }
    }
    let mut supported: Vec<u16> = Vec::new();
    for (step, test) in plan.iter().zip(&tests) {
        if let Some(v) = step.support {
            if test.negotiated.as_deref() == Some(version_name(v).as_str()) {
                supported.push(v);
            }
        }
    }
    supported.sort_unstable();
    let mut version_intolerance: BTreeMap<String, bool> = ["1.0", "1.1", "1.2", "1.3", "future"]
        .into_iter()
        .map(|k| (k.to_string(), false))
        .collect();
    for (step, test) in plan.iter().zip(&tests) {
        // Intolerant: no ServerHello although the hello offered a version the server supports.
        let offered_supported = step
            .spec
            .offered_versions()
            .iter()
            .any(|v| supported.contains(v));
        if let (Some(key), true) = (step.intolerance, test.failed() && offered_supported) {
            version_intolerance.insert(key.to_string(), true);
        }
    }

    // The baseline for the next tests offers the best version the server supports and
    // tolerates as a maximum, so that they only measure their own variable.
    let highest = supported.last().copied();
    let best = supported
        .iter()
        .rev()
        .copied()
        .find(|&v| version_intolerance.get(&version_name(v)) == Some(&false))
        .or(highest)
        .unwrap_or(TLS13);
    let base = HelloSpec::up_to(best, sni.clone());
    let best_name = version_name(best);

    // 3: long handshake.
    let natural = base.natural_len();
    let mut short = base.clone();
    short.pad_to = None;
    let mut long = base.clone();
    long.pad_to = Some(LONG_LEN.max(natural + 4));
    let mut past = base.clone();
    past.pad_to = Some(PAST_F5.max(natural + 4));
    let short_test = if natural < 256 {
        runner
            .run(
                "long_short",
                &format!("TLS {best_name} hello, unpadded (< 256 bytes)"),
                &short,
            )
            .await
    } else {
        skipped(
            "long_short",
            "unpadded hello is already >= 256 bytes (long SNI)",
        )
    };
    let long_test = if long.hello_len() <= 511 {
        runner
            .run(
                "long_300",
                "same, padded into the F5 window (256..511 bytes)",
                &long,
            )
            .await
    } else {
        skipped("long_300", "hello cannot fit the 256..511 window")
    };
    let past_test = runner
        .run(
            "long_512",
            "same, padded past the F5 window (>= 512 bytes)",
            &past,
        )
        .await;
    let long_handshake_intolerance = long_test.failed() && short_test.server_hello();
    tests.extend([short_test, long_test, past_test]);

    // 4 and 5: cipher count and unknown extension, all at the same padded length.
    let mut many = base.clone();
    many.cipher_suites = many_suites(&base.cipher_suites);
    let mut unknown = base.clone();
    unknown.unknown_extension = Some(UNKNOWN_EXTENSION);
    let target_len = [
        base.natural_len(),
        many.natural_len(),
        unknown.natural_len(),
    ]
    .into_iter()
    .max()
    .unwrap_or(0)
    .saturating_add(4)
    .max(PADDED_LEN);
    let mut baseline = base.clone();
    for s in [&mut baseline, &mut many, &mut unknown] {
        s.pad_to = Some(target_len);
    }
    let baseline_test = runner
        .run(
            "baseline_padded",
            &format!(
                "TLS {best_name} hello, {} suites, padded",
                baseline.cipher_suites.len()
            ),
            &baseline,
        )
        .await;
    let many_test = runner
        .run(
            "ciphers_many",
            &format!(
                "same with {} suites (real and unassigned)",
                many.cipher_suites.len()
            ),
            &many,
        )
        .await;
    let unknown_test = runner
        .run(
            "extension_unknown",
            &format!("baseline plus unknown extension {UNKNOWN_EXTENSION:#06x}"),
            &unknown,
        )
        .await;
    let cipher_count_intolerance = many_test.failed() && baseline_test.server_hello();
    let extension_intolerance = unknown_test.failed() && baseline_test.server_hello();
    tests.extend([baseline_test, many_test, unknown_test]);

    // 6: TLS_FALLBACK_SCSV with a max one below the best supported version.
    let fallback_scsv = if let (Some(highest), true) = (highest, supported.len() >= 2) {
        let below = highest.saturating_sub(1).max(TLS10);
        let mut spec = HelloSpec::up_to(below, sni.clone());
        spec.cipher_suites.push(FALLBACK_SCSV);
        avoid_f5_window(&mut spec);
        let t = runner
            .run(
                "fallback_scsv",
                &format!("max TLS {} plus TLS_FALLBACK_SCSV", version_name(below)),
                &spec,
            )
            .await;
        let verdict = if t.server_hello() {
            "not_supported"
        } else if t.outcome == format!("alert:{ALERT_INAPPROPRIATE_FALLBACK}") {
            "supported"
        } else {
            "unknown"
        };
        tests.push(t);
        verdict
    } else {
        "unknown"
    };

    let mut report = ProbeReport {
        target: cfg.target.clone(),
        supported: supported.iter().map(|&v| version_name(v)).collect(),
        version_intolerance,
        long_handshake_intolerance,
        cipher_count_intolerance,
        extension_intolerance,
        fallback_scsv: fallback_scsv.to_string(),
        recommendation: String::new(),
        tests,
    };
    report.recommendation = recommend(&report, &host);
    Ok(report)
}

/// One hello of the version tests.
struct VersionStep {
    name: &'static str,
    description: &'static str,
    spec: HelloSpec,
    /// The version this hello proves supported when the server negotiates it.
    support: Option<u16>,
    /// The `version_intolerance` key this hello tests.
    intolerance: Option<&'static str>,
}

/// The version support and intolerance hellos, each kept outside the F5 window.
fn version_plan(sni: &Option<String>) -> Vec<VersionStep> {
    let step = |name, description, spec, support, intolerance| {
        let mut spec: HelloSpec = spec;
        avoid_f5_window(&mut spec);
        VersionStep {
            name,
            description,
            spec,
            support,
            intolerance,
        }
    };
    let sni = || sni.clone();
    vec![
        step(
            "version_1.0",
            "legacy_version 1.0 only",
            HelloSpec::legacy(TLS10, sni()),
            Some(TLS10),
            Some("1.0"),
        ),
        step(
            "version_1.1",
            "legacy_version 1.1, no supported_versions",
            HelloSpec::legacy(TLS11, sni()),
            Some(TLS11),
            Some("1.1"),
        ),
        step(
            "version_1.2",
            "legacy_version 1.2, no supported_versions",
            HelloSpec::legacy(TLS12, sni()),
            Some(TLS12),
            Some("1.2"),
        ),
        step(
            "version_1.3_only",
            "supported_versions [1.3] only, TLS 1.3 suites",
            HelloSpec::with_supported_versions(vec![TLS13], sni()),
            Some(TLS13),
            None,
        ),
        step(
            "version_1.3",
            "supported_versions [1.3, 1.2, 1.1, 1.0]",
            HelloSpec::up_to(TLS13, sni()),
            None,
            Some("1.3"),
        ),
        step(
            "future_0x0304",
            "legacy_version 0x0304 without supported_versions",
            HelloSpec::legacy(0x0304, sni()),
            None,
            Some("future"),
        ),
        step(
            "future_0x0398",
            "legacy_version 0x0398 (\"TLS 1.152\")",
            HelloSpec::legacy(0x0398, sni()),
            None,
            Some("future"),
        ),
        step(
            "future_0x0498",
            "legacy_version 0x0498 (\"TLS 2.152\")",
            HelloSpec::legacy(0x0498, sni()),
            None,
            Some("future"),
        ),
    ]
}

/// Pads a hello that would fall into 256..=511 bytes to 512, so F5 is not mistaken for the cause.
fn avoid_f5_window(spec: &mut HelloSpec) {
    let natural = spec.natural_len();
    if natural >= 256 {
        spec.pad_to = Some(PAST_F5.max(natural + 4));
    }
}

/// `base` first, then real legacy suites and unassigned values, up to [`MANY_SUITES`].
fn many_suites(base: &[u16]) -> Vec<u16> {
    let mut out = base.to_vec();
    let reserved = |s: u16| s == hello::RENEGOTIATION_SCSV || s == FALLBACK_SCSV;
    let real = 0x0001u16..=0x006b;
    let unassigned = 0x7a00u16..=0x7a6f;
    for s in real.chain(unassigned) {
        if out.len() >= MANY_SUITES {
            break;
        }
        if !out.contains(&s) && !reserved(s) {
            out.push(s);
        }
    }
    out
}

fn skipped(name: &str, why: &str) -> ProbeTest {
    ProbeTest {
        name: name.to_string(),
        description: why.to_string(),
        hello_len: 0,
        outcome: "skipped".to_string(),
        negotiated: None,
        ms: 0,
    }
}

/// Where the tests connect: the resolved addresses, then the one that answered first.
struct Runner {
    target: String,
    addrs: Vec<SocketAddr>,
    chosen: Option<SocketAddr>,
    /// Why the very first connection failed (the probe then returns [`ProbeError::Connect`]).
    first_error: Option<std::io::Error>,
    timeout: Duration,
    seed: u64,
}

impl Runner {
    /// Resolves the host once, so that every test reaches the same address.
    async fn resolve(cfg: &ProbeConfig, host: &str, port: u16) -> Result<Runner, ProbeError> {
        let connect_err = |source| ProbeError::Connect {
            target: cfg.target.clone(),
            source,
        };
        let addrs: Vec<SocketAddr> =
            match tokio::time::timeout(cfg.timeout, tokio::net::lookup_host((host, port))).await {
                Ok(Ok(a)) => a.collect(),
                Ok(Err(e)) => return Err(connect_err(e)),
                Err(_) => return Err(connect_err(timed_out("name resolution"))),
            };
        if addrs.is_empty() {
            let e = std::io::Error::new(std::io::ErrorKind::NotFound, "no address for host");
            return Err(connect_err(e));
        }
        Ok(Runner {
            target: cfg.target.clone(),
            addrs,
            chosen: None,
            first_error: None,
            timeout: cfg.timeout,
            seed: seed(),
        })
    }

    /// The error to return if the first connection of the probe failed.
    fn take_first_error(&mut self) -> Option<ProbeError> {
        self.first_error.take().map(|source| ProbeError::Connect {
            target: self.target.clone(),
            source,
        })
    }

    /// Connects to the chosen address, or on the first call to the first address that answers.
    async fn open(&mut self, deadline: tokio::time::Instant) -> Option<TcpStream> {
        if let Some(addr) = self.chosen {
            return match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => Some(s),
                _ => None,
            };
        }
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        for &addr in &self.addrs {
            match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    self.chosen = Some(addr);
                    return Some(s);
                }
                Ok(Err(e)) => last = e,
                Err(_) => {
                    last = timed_out("connect");
                    break;
                }
            }
        }
        self.first_error = Some(last);
        None
    }

    async fn run(&mut self, name: &str, description: &str, spec: &HelloSpec) -> ProbeTest {
        let mut spec = spec.clone();
        spec.random = self.next_random();
        let record = hello::build_client_hello(&spec);
        let start = Instant::now();
        let outcome = self.exchange(&record).await;
        let negotiated = match outcome {
            Outcome::Answer(ServerAnswer::ServerHello { version, .. }) => {
                Some(version_name(version))
            }
            _ => None,
        };
        ProbeTest {
            name: name.to_string(),
            description: description.to_string(),
            hello_len: record.len().saturating_sub(5),
            outcome: outcome.label(),
            negotiated,
            ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Connects, writes `record`, reads until the first answer can be decided.
    async fn exchange(&mut self, record: &[u8]) -> Outcome {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let Some(mut stream) = self.open(deadline).await else {
            return Outcome::ConnectError;
        };
        let _ = stream.set_nodelay(true);
        let talk = async {
            if let Err(e) = stream.write_all(record).await {
                return Outcome::from_io(&e);
            }
            let mut buf: Vec<u8> = Vec::with_capacity(2048);
            let mut chunk = [0u8; 4096];
            loop {
                match stream.read(&mut chunk).await {
                    Ok(0) => {
                        return match server::parse_server_answer(&buf) {
                            ServerAnswer::Garbage => Outcome::Answer(ServerAnswer::Garbage),
                            _ => Outcome::Closed,
                        }
                    }
                    Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
                    Err(e) => return Outcome::from_io(&e),
                }
                match server::parse_server_answer(&buf) {
                    ServerAnswer::Incomplete if buf.len() < MAX_READ => {}
                    ServerAnswer::Incomplete => return Outcome::Answer(ServerAnswer::Garbage),
                    answer => return Outcome::Answer(answer),
                }
            }
        };
        tokio::time::timeout_at(deadline, talk)
            .await
            .unwrap_or(Outcome::Timeout)
    }

    /// A fresh client random per hello (splitmix64; uniqueness matters, secrecy does not).
    fn next_random(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            self.seed = self.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_be_bytes());
        }
        out
    }
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
}

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} timed out"))
}

/// How one exchange ended.
enum Outcome {
    Answer(ServerAnswer),
    Closed,
    Reset,
    Timeout,
    ConnectError,
    IoError,
}

impl Outcome {
    fn from_io(e: &std::io::Error) -> Outcome {
        use std::io::ErrorKind::*;
        match e.kind() {
            ConnectionReset | ConnectionAborted | BrokenPipe => Outcome::Reset,
            _ => Outcome::IoError,
        }
    }

    fn label(&self) -> String {
        match self {
            Outcome::Answer(ServerAnswer::ServerHello { version, .. }) => {
                format!("server_hello:{}", version_name(*version))
            }
            Outcome::Answer(ServerAnswer::Alert { description, .. }) => {
                format!("alert:{description}")
            }
            Outcome::Answer(ServerAnswer::Garbage | ServerAnswer::Incomplete) => "garbage".into(),
            Outcome::Closed => "closed".into(),
            Outcome::Reset => "reset".into(),
            Outcome::Timeout => "timeout".into(),
            Outcome::ConnectError => "connect_error".into(),
            Outcome::IoError => "io_error".into(),
        }
    }
}

/// Splits `host:port` / `[v6]:port` into the host (brackets removed) and the port.
fn split_target(target: &str) -> Result<(String, u16), ()> {
    let (host, port) = if let Some(rest) = target.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or(())?;
        let port = after.strip_prefix(':').ok_or(())?;
        host.parse::<std::net::Ipv6Addr>().map_err(|_| ())?;
        (host, port)
    } else {
        let (host, port) = target.rsplit_once(':').ok_or(())?;
        if host.contains(':') {
            return Err(());
        }
        (host, port)
    };
    let port: u16 = port.parse().map_err(|_| ())?;
    if host.is_empty() || port == 0 || host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(());
    }
    Ok((host.to_string(), port))
}

/// The SNI for `host`: the name without a trailing dot, or `None` for an IP literal.
fn default_sni(host: &str) -> Option<String> {
    if host.parse::<IpAddr>().is_ok() {
        return None;
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    (!name.is_empty()).then(|| name.to_ascii_lowercase())
}

/// One or two sentences: what the user (or the vendor) should do about this host.
fn recommend(r: &ProbeReport, host: &str) -> String {
    let highest = r.supported.last().cloned();
    let mut found: Vec<String> = Vec::new();
    let mut evidence: Vec<String> = Vec::new();
    let outcome_of = |name: &str| {
        r.tests
            .iter()
            .find(|t| t.name == name)
            .map(|t| format!("{name}={}", t.outcome))
    };
    let bad_versions: Vec<&str> = r
        .version_intolerance
        .iter()
        .filter(|(_, &v)| v)
        .map(|(k, _)| k.as_str())
        .collect();
    if !bad_versions.is_empty() {
        found.push(format!(
            "ClientHellos offering TLS {}",
            bad_versions.join(", ")
        ));
        for key in &bad_versions {
            let names: &[&str] = match *key {
                "1.0" => &["version_1.0"],
                "1.1" => &["version_1.1"],
                "1.2" => &["version_1.2"],
                "1.3" => &["version_1.3"],
                _ => &["future_0x0304", "future_0x0398", "future_0x0498"],
            };
            for t in r
                .tests
                .iter()
                .filter(|t| names.contains(&t.name.as_str()) && t.failed())
            {
                evidence.push(format!("{}={}", t.name, t.outcome));
            }
        }
    }
    if r.long_handshake_intolerance {
        found.push("ClientHellos of 256..511 bytes".into());
        evidence.extend(
            ["long_short", "long_300"]
                .into_iter()
                .filter_map(outcome_of),
        );
    }
    if r.cipher_count_intolerance {
        found.push("long cipher lists".into());
        evidence.extend(
            ["baseline_padded", "ciphers_many"]
                .into_iter()
                .filter_map(outcome_of),
        );
    }
    if r.extension_intolerance {
        found.push("unknown extensions".into());
        evidence.extend(
            ["baseline_padded", "extension_unknown"]
                .into_iter()
                .filter_map(outcome_of),
        );
    }
    evidence.dedup();
    let legacy_only = matches!(highest.as_deref(), Some("1.0" | "1.1"));

    let mut text = match &highest {
        None => format!(
            "No TLS version could be negotiated with {host} (every hello failed, see the tests): \
             check that the target speaks TLS on this port before blaming intolerance."
        ),
        Some(best) if !found.is_empty() => {
            let tolerated = r
                .supported
                .iter()
                .rev()
                .find(|v| r.version_intolerance.get(v.as_str()) != Some(&true))
                .unwrap_or(best);
            let action = if legacy_only {
                format!(
                    "meanwhile the tls-fallback connector can reach it only if legacy TLS is \
                     allowed for {host}, then walks its ladder down to TLS {best} (with \
                     TLS_FALLBACK_SCSV) and caches that rung"
                )
            } else if !bad_versions.is_empty() {
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
            "Allow legacy TLS for this host ({host} only speaks TLS {}), since the connector's \
             floor is TLS 1.2, and ask the vendor to enable TLS 1.2.",
            r.supported.join("/")
        ),
        Some(best) if best == "1.3" => format!(
            "Nothing needed: {host} negotiates TLS {} without any intolerance.",
            r.supported.join("/")
        ),
        Some(best) => format!(
            "Pin {host} to TLS {best}: it only supports TLS {} and negotiates down correctly, so \
             a pin just skips the TLS 1.3 offer.",
            r.supported.join("/")
        ),
    };
    if r.fallback_scsv == "not_supported" {
        text.push_str(
            " The server ignores TLS_FALLBACK_SCSV, so a forced downgrade would go unnoticed: \
             ask the vendor to enable it.",
        );
    }
    text
}

impl ProbeReport {
    /// A human-readable multi-line report, for a terminal or a mail to the vendor.
    pub fn to_table(&self) -> String {
        let yes_no = |b: bool| if b { "INTOLERANT" } else { "ok" };
        let mut out = String::new();
        out.push_str(&format!("TLS protocol details for {}\n", self.target));
        let supported = if self.supported.is_empty() {
            "none".to_string()
        } else {
            self.supported.join(", ")
        };
        out.push_str(&format!("  Supported versions        {supported}\n"));
        let versions: Vec<String> = self
            .version_intolerance
            .iter()
            .map(|(k, &v)| format!("{k}: {}", yes_no(v)))
            .collect();
        out.push_str(&format!(
            "  Version intolerance       {}\n",
            versions.join(", ")
        ));
        out.push_str(&format!(
            "  Long handshake (256..511) {}\n",
            yes_no(self.long_handshake_intolerance)
        ));
        out.push_str(&format!(
            "  Cipher count              {}\n",
            yes_no(self.cipher_count_intolerance)
        ));
        out.push_str(&format!(
            "  Unknown extension         {}\n",
            yes_no(self.extension_intolerance)
        ));
        out.push_str(&format!(
            "  TLS_FALLBACK_SCSV         {}\n",
            self.fallback_scsv
        ));
        out.push('\n');
        let w = self
            .tests
            .iter()
            .map(|t| t.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let wo = self
            .tests
            .iter()
            .map(|t| t.outcome.len())
            .max()
            .unwrap_or(7)
            .max(7);
        out.push_str(&format!(
            "  {:<w$}  {:>5}  {:<wo$}  {:>6}  description\n",
            "test", "bytes", "outcome", "ms"
        ));
        for t in &self.tests {
            out.push_str(&format!(
                "  {:<w$}  {:>5}  {:<wo$}  {:>6}  {}\n",
                t.name, t.hello_len, t.outcome, t.ms, t.description
            ));
        }
        out.push('\n');
        out.push_str(&format!("Recommendation: {}\n", self.recommendation));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_host_port_and_bracketed_v6() {
        assert_eq!(
            split_target("example.com:443"),
            Ok(("example.com".into(), 443))
        );
        assert_eq!(
            split_target("127.0.0.1:8443"),
            Ok(("127.0.0.1".into(), 8443))
        );
        assert_eq!(split_target("[::1]:443"), Ok(("::1".into(), 443)));
        for bad in [
            "example.com",
            "::1:443",
            "[::1]443",
            ":443",
            "a:0",
            "a:99999",
            "[x]:1",
        ] {
            assert!(split_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_sni_is_the_host_name_but_never_an_ip() {
        assert_eq!(
            ProbeConfig::new("Example.COM.:443").sni.as_deref(),
            Some("example.com")
        );
        assert_eq!(ProbeConfig::new("10.0.0.1:443").sni, None);
        assert_eq!(ProbeConfig::new("[::1]:443").sni, None);
        assert_eq!(
            ProbeConfig::new("localhost:1").timeout,
            Duration::from_secs(5)
        );
    }

    #[test]
    fn version_names_are_dotted_or_hex() {
        assert_eq!(version_name(0x0301), "1.0");
        assert_eq!(version_name(0x0304), "1.3");
        assert_eq!(version_name(0x0398), "0x0398");
        assert_eq!(version_name(0x0300), "0x0300");
    }

    /// The length category of every hello the plan sends, for a typical host name.
    #[test]
    fn hello_lengths_fall_in_the_planned_categories() {
        for host in ["localhost", "payments.gateway.example-bank.com"] {
            let sni = Some(host.to_string());
            for step in version_plan(&sni) {
                let len = step.spec.hello_len();
                assert!(len < 256, "{host}: {} is {len} bytes", step.name);
            }
            for best in [TLS10, TLS12, TLS13] {
                let base = HelloSpec::up_to(best, sni.clone());
                assert!(base.hello_len() < 256);
                let mut long = base.clone();
                long.pad_to = Some(LONG_LEN);
                assert_eq!(long.hello_len(), LONG_LEN);
                let mut past = base.clone();
                past.pad_to = Some(PAST_F5);
                assert_eq!(past.hello_len(), PAST_F5);
                let mut many = base.clone();
                many.cipher_suites = many_suites(&base.cipher_suites);
                assert_eq!(many.cipher_suites.len(), MANY_SUITES);
                many.pad_to = Some(PADDED_LEN);
                let mut unknown = base.clone();
                unknown.unknown_extension = Some(UNKNOWN_EXTENSION);
                unknown.pad_to = Some(PADDED_LEN);
                assert_eq!(many.hello_len(), PADDED_LEN);
                assert_eq!(unknown.hello_len(), PADDED_LEN);
            }
        }
        // A very long name pushes the bigger hellos past 255 bytes: they are padded to 512.
        let long_name = Some(format!("{}.example", "a".repeat(120)));
        let lens: Vec<usize> = version_plan(&long_name)
            .iter()
            .map(|s| s.spec.hello_len())
            .collect();
        assert!(lens.iter().all(|l| !(256..PAST_F5).contains(l)), "{lens:?}");
        assert!(lens.contains(&PAST_F5), "{lens:?}");
    }

    fn test(name: &str, outcome: &str, negotiated: Option<&str>) -> ProbeTest {
        ProbeTest {
            name: name.into(),
            description: String::new(),
            hello_len: 100,
            outcome: outcome.into(),
            negotiated: negotiated.map(Into::into),
            ms: 1,
        }
    }

    fn report(supported: &[&str], scsv: &str) -> ProbeReport {
        ProbeReport {
            target: "h:443".into(),
            supported: supported.iter().map(|s| s.to_string()).collect(),
            version_intolerance: ["1.0", "1.1", "1.2", "1.3", "future"]
                .into_iter()
                .map(|k| (k.to_string(), false))
                .collect(),
            long_handshake_intolerance: false,
            cipher_count_intolerance: false,
            extension_intolerance: false,
            fallback_scsv: scsv.into(),
            recommendation: String::new(),
            tests: vec![],
        }
    }

    #[test]
    fn recommendation_covers_each_case() {
        let r = report(&["1.2", "1.3"], "supported");
        assert!(recommend(&r, "h").starts_with("Nothing needed"));
        let r = report(&["1.2"], "unknown");
        assert!(recommend(&r, "h").starts_with("Pin h to TLS 1.2"));
        let r = report(&["1.0", "1.1"], "not_supported");
        let text = recommend(&r, "h");
        assert!(text.starts_with("Allow legacy TLS for this host"));
        assert!(text.contains("TLS_FALLBACK_SCSV"));
        let r = report(&[], "unknown");
        assert!(recommend(&r, "h").starts_with("No TLS version"));

        let mut r = report(&["1.2", "1.3"], "supported");
        r.version_intolerance.insert("1.3".into(), true);
        r.tests = vec![test("version_1.3", "alert:40", None)];
        let text = recommend(&r, "h");
        assert!(text.contains("(evidence: version_1.3=alert:40)"), "{text}");
        assert!(text.contains("pin h to TLS 1.2"), "{text}");

        let mut r = report(&["1.0"], "unknown");
        r.version_intolerance.insert("1.2".into(), true);
        r.long_handshake_intolerance = true;
        r.tests = vec![
            test("version_1.0", "server_hello:1.0", Some("1.0")),
            test("version_1.2", "reset", None),
            test("long_short", "server_hello:1.0", Some("1.0")),
            test("long_300", "timeout", None),
        ];
        let text = recommend(&r, "h");
        assert!(text.starts_with("Contact the vendor"), "{text}");
        assert!(text.contains("version_1.2=reset"), "{text}");
        assert!(text.contains("long_300=timeout"), "{text}");
        assert!(text.contains("legacy TLS is allowed"), "{text}");
    }

    #[test]
    fn report_serializes_with_the_documented_keys() {
        let mut r = report(&["1.3"], "unknown");
        r.tests
            .push(test("version_1.3_only", "server_hello:1.3", Some("1.3")));
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
        assert_eq!(v["version_intolerance"].as_object().unwrap().len(), 5);
        assert_eq!(v["tests"][0]["outcome"], "server_hello:1.3");
        assert!(r.to_table().contains("version_1.3_only"));
    }

    #[tokio::test]
    async fn bad_targets_and_refused_connections_are_errors() {
        let err = probe(&ProbeConfig::new("no-port")).await.unwrap_err();
        assert!(matches!(err, ProbeError::BadTarget(_)));
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
