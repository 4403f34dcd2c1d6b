//! The probe's I/O: resolves the target once, sends each planned hello on its own TCP
//! connection to the same address and reads only the server's first answer, then runs one full
//! handshake through the fallback connector against that same address. The decisions (which
//! hellos, what they show) are in the plan and findings modules.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_layer::Layer;

use super::analysis::{ShapeFindings, VersionFindings};
use super::findings::{
    scsv_verdict, NoTlsAnswer, ScsvSupport, ScsvUnknown, TestId, TestOutcome, WireVersion,
};
use super::hello::{self, HelloSpec};
use super::plan::{self, Step, VersionStep};
use super::report::{recommend, ProbeReport, ProbeTest};
use super::{ProbeConfig, ProbeError, Target};
use crate::classify::Outcome;
use crate::wire::{parse_server_answer, ServerAnswer};
use crate::{Error, FallbackLayer, TlsVersion};

/// Most bytes read from the server for one test before giving up on deciding.
const MAX_READ: usize = 16 * 1024;

/// Runs every test against `cfg.target`, sequentially, one TCP connection each.
pub async fn probe(cfg: &ProbeConfig) -> Result<ProbeReport, ProbeError> {
    let target = Target::parse(&cfg.target).map_err(|e| ProbeError::BadTarget(e.to_string()))?;
    let mut runner = Runner::resolve(cfg, &target).await?;
    let sni = cfg.sni.clone();
    let plan = plan::version_plan(&sni);
    let mut tests = runner.version_tests(&plan).await?;
    let versions = VersionFindings::of(&plan, &tests);
    let no_tls_answer = NoTlsAnswer::of(&tests);
    let answered = no_tls_answer.is_none();
    for steps in [
        plan::long_plan(versions.best, &sni),
        plan::shape_plan(versions.best, &sni),
    ] {
        tests.extend(runner.steps(&steps, answered).await);
    }
    let shapes = ShapeFindings::of(&tests);

    let (fallback_scsv, fallback_scsv_unknown) =
        scsv_test(&mut runner, &versions, no_tls_answer, &sni, &mut tests).await;
    if cfg.full_handshake {
        tests.push(match no_tls_answer {
            None => runner.full_handshake(cfg).await,
            Some(_) => ProbeTest::skipped(
                TestId::FallbackConnector,
                "a full handshake through the fallback connector: skipped, nothing answered in TLS",
            ),
        });
    }
    let mut report = ProbeReport {
        target: cfg.target.clone(),
        supported: versions
            .supported
            .iter()
            .filter_map(|&v| TlsVersion::from_wire(v))
            .collect(),
        version_intolerance: versions.intolerance,
        long_handshake_intolerance: shapes.long_handshake,
        cipher_count_intolerance: shapes.cipher_count,
        extension_intolerance: shapes.extension,
        fallback_scsv,
        recommendation: String::new(),
        tests,
        fallback_scsv_unknown,
        no_tls_answer,
    };
    report.recommendation = recommend(&report, target.host());
    Ok(report)
}

/// The TLS_FALLBACK_SCSV test, when the server negotiates two versions or more (one below its
/// best must exist); its verdict, and why it is unknown when it is.
async fn scsv_test(
    runner: &mut Runner,
    versions: &VersionFindings,
    no_tls_answer: Option<NoTlsAnswer>,
    sni: &Option<String>,
    tests: &mut Vec<ProbeTest>,
) -> (ScsvSupport, Option<ScsvUnknown>) {
    let why = match (no_tls_answer, versions.supported.as_slice()) {
        (Some(_), _) => ScsvUnknown::NoTlsAnswer,
        (None, []) => ScsvUnknown::NoVersion,
        (None, [_]) => ScsvUnknown::SingleVersion,
        (None, [.., highest]) => {
            let tests_before = tests.len();
            tests.extend(runner.steps(&[plan::scsv_step(*highest, sni)], true).await);
            let verdict = scsv_verdict(tests.get(tests_before).map(|t| &t.outcome));
            if verdict != ScsvSupport::Unknown {
                return (verdict, None);
            }
            ScsvUnknown::Inconclusive
        }
    };
    (ScsvSupport::Unknown, Some(why))
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
    async fn resolve(cfg: &ProbeConfig, target: &Target) -> Result<Runner, ProbeError> {
        let connect_err = |source| ProbeError::Connect {
            target: cfg.target.clone(),
            source,
        };
        let lookup = tokio::net::lookup_host((target.host(), target.port()));
        let addrs: Vec<SocketAddr> = match tokio::time::timeout(cfg.timeout, lookup).await {
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

    /// The version hellos, in plan order. The support hellos come first; when none of them got
    /// a TLS answer, the others cannot show intolerance (no version is known to be supported),
    /// so they are skipped rather than waited for. Fails if the first connection fails.
    async fn version_tests(&mut self, plan: &[VersionStep]) -> Result<Vec<ProbeTest>, ProbeError> {
        let mut tests = Vec::with_capacity(plan.len());
        for step in plan {
            if step.support.is_none() && NoTlsAnswer::of(&tests).is_some() {
                let why = format!("{}: skipped, nothing answered in TLS", step.description);
                tests.push(ProbeTest::skipped(step.id, why));
                continue;
            }
            tests.push(self.run(step.id, step.description, &step.spec).await);
            if let Some(e) = self.take_first_error() {
                return Err(e);
            }
        }
        Ok(tests)
    }

    /// Runs planned steps in order; when `go` is false (nothing answered in TLS) or a step
    /// cannot run, its row says it was skipped and why.
    async fn steps(&mut self, steps: &[Step], go: bool) -> Vec<ProbeTest> {
        let mut out = Vec::with_capacity(steps.len());
        for step in steps {
            out.push(match (&step.spec, go) {
                (Some(spec), true) => self.run(step.id, &step.description, spec).await,
                (None, _) => ProbeTest::skipped(step.id, step.description.clone()),
                (Some(_), false) => ProbeTest::skipped(
                    step.id,
                    format!("{}: skipped, nothing answered in TLS", step.description),
                ),
            });
        }
        out
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

    async fn run(&mut self, id: TestId, description: &str, spec: &HelloSpec) -> ProbeTest {
        let mut spec = spec.clone();
        spec.random = self.next_random();
        let record = hello::build_client_hello(&spec);
        let start = Instant::now();
        let outcome = self.exchange(&record).await;
        let negotiated = match outcome {
            TestOutcome::ServerHello(v) => Some(v),
            _ => None,
        };
        ProbeTest {
            name: id,
            description: description.to_string(),
            hello_len: record.len().saturating_sub(5),
            outcome,
            negotiated,
            ms: elapsed_ms(start),
            detail: None,
        }
    }

    /// Connects, writes `record`, reads until the first answer can be decided.
    async fn exchange(&mut self, record: &[u8]) -> TestOutcome {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let Some(mut stream) = self.open(deadline).await else {
            return TestOutcome::ConnectError;
        };
        let _ = stream.set_nodelay(true);
        let talk = async {
            if let Err(e) = stream.write_all(record).await {
                return from_io(&e);
            }
            let mut buf: Vec<u8> = Vec::with_capacity(2048);
            let mut chunk = [0u8; 4096];
            loop {
                match stream.read(&mut chunk).await {
                    Ok(0) => {
                        return match parse_server_answer(&buf) {
                            ServerAnswer::Garbage => TestOutcome::Garbage,
                            _ => TestOutcome::Closed,
                        }
                    }
                    Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
                    Err(e) => return from_io(&e),
                }
                match parse_server_answer(&buf) {
                    ServerAnswer::Incomplete if buf.len() < MAX_READ => {}
                    answer => return from_answer(answer),
                }
            }
        };
        tokio::time::timeout_at(deadline, talk)
            .await
            .unwrap_or(TestOutcome::Timeout)
    }

    /// One real handshake through the connector (legacy allowed: this is a diagnosis), with
    /// certificate checks against the SNI name, to the address the raw tests reached.
    async fn full_handshake(&self, cfg: &ProbeConfig) -> ProbeTest {
        let started = Instant::now();
        let mut test = ProbeTest::skipped(
            TestId::FallbackConnector,
            "a full handshake through the fallback connector, certificates checked",
        );
        let Some(addr) = self.chosen else {
            test.outcome = TestOutcome::ConnectError;
            return test;
        };
        let result = connector_handshake(cfg, addr).await;
        test.ms = elapsed_ms(started);
        match result {
            Ok(Some((version, profile))) => {
                test.outcome = TestOutcome::Connected(profile);
                test.negotiated = Some(WireVersion(version.wire()));
            }
            Ok(None) => test.outcome = TestOutcome::ConnectedPlain,
            Err(e) => {
                test.outcome = TestOutcome::Failed(e.kind());
                test.detail = Some(certificate_detail(&e).unwrap_or_else(|| e.to_string()));
            }
        }
        test
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

/// Connects through a fallback layer whose TCP connector always dials `addr`: the URI (and so
/// the SNI and the name the certificate is checked against) carries the SNI name, the socket
/// goes to the target. Returns the negotiated version and profile.
async fn connector_handshake(
    cfg: &ProbeConfig,
    addr: SocketAddr,
) -> Result<Option<(TlsVersion, String)>, Error> {
    let host = match &cfg.sni {
        Some(name) => name.clone(),
        None if addr.is_ipv6() => format!("[{}]", addr.ip()),
        None => addr.ip().to_string(),
    };
    let uri: Uri = format!("https://{host}:{}/", addr.port()).parse().map_err(
        |e: http::uri::InvalidUri| Error::InvalidUri {
            uri: host.clone(),
            reason: e.to_string(),
        },
    )?;
    let mut b = FallbackLayer::builder()
        .handshake_timeout(cfg.timeout)
        .allow_legacy("*");
    if let Some(ca) = &cfg.ca_file {
        b = b.ca_file(ca);
    }
    let mut connector = b.build()?.layer(DialAddr(addr));
    let stream = tower_service::Service::call(&mut connector, uri).await?;
    Ok(stream
        .tls_info()
        .map(|info| (info.version, info.profile.to_string())))
}

/// The certificate verification message of the first attempt that failed on it.
fn certificate_detail(e: &Error) -> Option<String> {
    e.attempts().iter().find_map(|a| match &a.outcome {
        Outcome::Certificate { detail } => Some(detail.clone()),
        _ => None,
    })
}

/// A TCP connector that dials one address whatever the URI says.
#[derive(Debug, Clone, Copy)]
struct DialAddr(SocketAddr);

impl tower_service::Service<Uri> for DialAddr {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let addr = self.0;
        Box::pin(async move {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            Ok(TokioIo::new(tcp))
        })
    }
}

fn from_answer(answer: ServerAnswer) -> TestOutcome {
    match answer {
        ServerAnswer::ServerHello { version, .. } => TestOutcome::ServerHello(WireVersion(version)),
        ServerAnswer::Alert { description, .. } => TestOutcome::Alert(description),
        ServerAnswer::Garbage | ServerAnswer::Incomplete => TestOutcome::Garbage,
    }
}

fn from_io(e: &std::io::Error) -> TestOutcome {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionReset | ConnectionAborted | BrokenPipe => TestOutcome::Reset,
        _ => TestOutcome::IoError,
    }
}

fn elapsed_ms(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
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
