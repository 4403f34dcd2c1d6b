//! The probe's I/O: resolves the target (A and AAAA, or the addresses given by hand), and for
//! each address sends each planned hello on its own TCP connection and reads only the server's
//! first answer, recording what the socket wrote and read ([`Exchange`]), then runs one full
//! handshake through the fallback connector against that same address. The decisions (which
//! hellos, what they show) are in the plan, analysis and findings modules.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::analysis::VersionFindings;
use super::capture::{now_us, utc_millis, EventKind, Exchange};
use super::findings::{NoTlsAnswer, TestId, TestOutcome, WireVersion};
use super::hello::{self, HelloSpec};
use super::plan::{self, Step, VersionStep};
use super::report::{ProbeReport, ProbeTest};
use super::{handshake, ProbeConfig, ProbeError, Target};
use crate::wire::{parse_server_answer, ServerAnswer};

/// Most addresses of one name probed (each takes a full run of tests); the others are counted
/// in the report, and `--resolve` chooses which to probe.
const MAX_ADDRESSES: usize = 16;
/// Most bytes read from the server for one test before giving up on deciding.
const MAX_READ: usize = 16 * 1024;
/// Reads recorded one event each; later reads extend the last one, so a server trickling
/// its bytes one at a time cannot make a test's capture (and the pcap) grow per byte.
const MAX_READ_EVENTS: usize = 64;
/// The pause between the two writes of the split hello, so that they leave as two segments
/// and a box that reads the first one alone sees half a hello.
const SPLIT_PAUSE: Duration = Duration::from_millis(40);

/// Runs every test against every address of `cfg.target`, one address after the other, one
/// TCP connection per test. Fails only when the target is invalid, does not resolve, or no
/// address accepts a TCP connection.
pub async fn probe(cfg: &ProbeConfig) -> Result<ProbeReport, ProbeError> {
    let target = Target::parse(&cfg.target).map_err(|e| ProbeError::BadTarget(e.to_string()))?;
    let mut addrs = addresses(cfg, &target).await?;
    let not_probed = addrs.len().saturating_sub(MAX_ADDRESSES);
    addrs.truncate(MAX_ADDRESSES);
    let started_us = now_us();
    let mut reports = Vec::with_capacity(addrs.len());
    let mut first_error = None;
    for addr in addrs {
        match probe_address(cfg, &target, addr).await {
            Ok(r) => reports.push(r),
            Err(e) => {
                let report = ProbeReport::unreachable(cfg, &target, addr, &e);
                first_error.get_or_insert(e);
                reports.push(report);
            }
        }
    }
    let reached = reports.iter().any(|r| r.unreachable.is_none());
    match (ProbeReport::combine(reports, started_us), first_error) {
        (Some(mut report), _) if reached => {
            report.note_not_probed(not_probed);
            Ok(report)
        }
        (_, source) => Err(ProbeError::Connect {
            target: cfg.target.clone(),
            source: source.unwrap_or_else(|| timed_out("connect")),
        }),
    }
}

/// The addresses to probe: `cfg.resolve` when given, else every address the name resolves to
/// (A and AAAA), in the resolver's order, each once.
async fn addresses(cfg: &ProbeConfig, target: &Target) -> Result<Vec<SocketAddr>, ProbeError> {
    let connect_err = |source| ProbeError::Connect {
        target: cfg.target.clone(),
        source,
    };
    let found: Vec<SocketAddr> = if cfg.resolve.is_empty() {
        let lookup = tokio::net::lookup_host((target.host(), target.port()));
        match tokio::time::timeout(cfg.timeout, lookup).await {
            Ok(Ok(a)) => a.collect(),
            Ok(Err(e)) => return Err(connect_err(e)),
            Err(_) => return Err(connect_err(timed_out("name resolution"))),
        }
    } else {
        cfg.resolve
            .iter()
            .map(|ip| SocketAddr::new(*ip, target.port()))
            .collect()
    };
    let mut addrs: Vec<SocketAddr> = Vec::with_capacity(found.len());
    for a in found {
        if !addrs.contains(&a) {
            addrs.push(a);
        }
    }
    if addrs.is_empty() {
        let e = std::io::Error::new(std::io::ErrorKind::NotFound, "no address for host");
        return Err(connect_err(e));
    }
    Ok(addrs)
}

/// Every test against one address. Fails only if the first connection to it fails.
async fn probe_address(
    cfg: &ProbeConfig,
    target: &Target,
    addr: SocketAddr,
) -> Result<ProbeReport, std::io::Error> {
    let mut runner = Runner::new(cfg, addr);
    let sni = cfg.sni.clone();
    if let Some(only) = cfg.only {
        let tests = runner.only(only, cfg).await?;
        return Ok(ProbeReport::of_address(
            cfg,
            target,
            addr,
            runner.source,
            tests,
        ));
    }
    let plan = plan::version_plan(&sni);
    let mut tests = runner.version_tests(&plan).await?;
    let versions = VersionFindings::of(&plan, &tests);
    let answered = NoTlsAnswer::of(&tests).is_none();
    for steps in [
        plan::long_plan(versions.best, &sni).to_vec(),
        plan::shape_plan(versions.best, &sni).to_vec(),
        plan::size_plan(versions.best, &sni).to_vec(),
    ] {
        tests.extend(runner.steps(&steps, answered).await);
    }
    let scsv = plan::scsv_plan(&versions, answered, &sni);
    tests.extend(runner.steps(&[scsv], true).await);
    if cfg.full_handshake {
        tests.push(match answered {
            true => runner.full_handshake(cfg).await,
            false => ProbeTest::skipped(
                TestId::FallbackConnector,
                "a full handshake through the fallback connector: skipped, nothing answered in TLS",
            ),
        });
    }
    Ok(ProbeReport::of_address(
        cfg,
        target,
        addr,
        runner.source,
        tests,
    ))
}

/// Sends hellos to one address and records what came back.
pub(super) struct Runner {
    addr: SocketAddr,
    /// The probe's own address of the last connection (the source the vendor looks for).
    pub(super) source: Option<SocketAddr>,
    /// Whether a connection to `addr` was ever made.
    connected: bool,
    /// Why the first connection failed.
    first_error: Option<std::io::Error>,
    timeout: Duration,
    seed: u64,
    progress: Option<super::Progress>,
}

impl Runner {
    fn new(cfg: &ProbeConfig, addr: SocketAddr) -> Runner {
        Runner {
            addr,
            source: None,
            connected: false,
            first_error: None,
            timeout: cfg.timeout,
            seed: seed() ^ u64::from(addr.port()),
            progress: cfg.progress.clone(),
        }
    }

    /// The error to return if the first connection to this address failed.
    fn take_first_error(&mut self) -> Option<std::io::Error> {
        if self.connected {
            return None;
        }
        self.first_error.take()
    }

    /// The version hellos, in plan order. The support hellos come first; when none of them got
    /// a TLS answer, the others cannot show intolerance (no version is known to be supported),
    /// so they are skipped rather than waited for. Fails if the first connection fails.
    async fn version_tests(&mut self, plan: &[VersionStep]) -> std::io::Result<Vec<ProbeTest>> {
        let mut tests = Vec::with_capacity(plan.len());
        for step in plan {
            if step.support.is_none() && NoTlsAnswer::of(&tests).is_some() {
                let why = format!("{}: skipped, nothing answered in TLS", step.description);
                tests.push(ProbeTest::skipped(step.id, why));
                continue;
            }
            let done = self.run(step.id, step.description, &step.spec, false).await;
            tests.push(done);
            if let Some(e) = self.take_first_error() {
                return Err(e);
            }
        }
        Ok(tests)
    }

    /// `--only`: the one test, built on `cfg.baseline` (TLS 1.3 unless given).
    async fn only(&mut self, id: TestId, cfg: &ProbeConfig) -> std::io::Result<Vec<ProbeTest>> {
        let test = match plan::single(id, cfg.baseline, &cfg.sni) {
            Some(step) => match &step.spec {
                Some(spec) => {
                    let split = id == TestId::SplitHello;
                    self.run(id, &step.description, spec, split).await
                }
                None => ProbeTest::skipped(id, step.description),
            },
            None if id == TestId::FallbackConnector => self.full_handshake(cfg).await,
            None => ProbeTest::skipped(id, "not a test of this probe"),
        };
        match self.take_first_error() {
            Some(e) => Err(e),
            None => Ok(vec![test]),
        }
    }

    /// Runs planned steps in order; when `go` is false (nothing answered in TLS) or a step
    /// cannot run, its row says it was skipped and why.
    async fn steps(&mut self, steps: &[Step], go: bool) -> Vec<ProbeTest> {
        let mut out = Vec::with_capacity(steps.len());
        for step in steps {
            out.push(match (&step.spec, go) {
                (Some(spec), true) => {
                    let split = step.id == TestId::SplitHello;
                    self.run(step.id, &step.description, spec, split).await
                }
                (None, _) => ProbeTest::skipped(step.id, step.description.clone()),
                (Some(_), false) => ProbeTest::skipped(
                    step.id,
                    format!("{}: skipped, nothing answered in TLS", step.description),
                ),
            });
        }
        out
    }

    /// One hello on a new connection; `split` writes it in two segments.
    async fn run(
        &mut self,
        id: TestId,
        description: &str,
        spec: &HelloSpec,
        split: bool,
    ) -> ProbeTest {
        if let Some(progress) = &self.progress {
            progress(self.addr, id);
        }
        let mut spec = spec.clone();
        spec.random = self.next_random();
        let record = hello::build_client_hello(&spec);
        let started_us = now_us();
        let start = Instant::now();
        let (outcome, exchange) = self.exchange(&record, split).await;
        let ms = elapsed_ms(start);
        let negotiated = match outcome {
            TestOutcome::ServerHello(v) => Some(v),
            _ => None,
        };
        let mut test = ProbeTest::skipped(id, description);
        test.hello_len = record.len().saturating_sub(5);
        test.outcome = outcome;
        test.negotiated = negotiated;
        test.ms = ms;
        test.started = Some(utc_millis(started_us));
        test.how = Some(how(&test.outcome, ms, self.timeout));
        test.offer = super::report::HelloOffer::of(&record);
        test.segments = exchange
            .as_ref()
            .map(Exchange::segments)
            .unwrap_or_default();
        test.hello_hex = hex(&record);
        test.record = record;
        test.exchange = exchange;
        test
    }

    /// Connects, writes `record` (in two segments if `split`), reads until the first answer can
    /// be decided; records every write and read.
    async fn exchange(&mut self, record: &[u8], split: bool) -> (TestOutcome, Option<Exchange>) {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let started_us = now_us();
        let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(self.addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return self.connect_failed(e),
            Err(_) => return self.connect_failed(timed_out("connect")),
        };
        self.connected = true;
        let local = stream.local_addr().unwrap_or(self.addr);
        self.source = Some(local);
        let mut x = Exchange::new(local, self.addr, started_us);
        x.push(EventKind::Connected);
        let outcome = talk(stream, record, split, deadline, &mut x).await;
        (outcome, Some(x))
    }

    fn connect_failed(&mut self, e: std::io::Error) -> (TestOutcome, Option<Exchange>) {
        if !self.connected && self.first_error.is_none() {
            self.first_error = Some(e);
        }
        (TestOutcome::ConnectError, None)
    }

    /// One real handshake through the connector, to this address.
    async fn full_handshake(&self, cfg: &ProbeConfig) -> ProbeTest {
        if let Some(progress) = &self.progress {
            progress(self.addr, TestId::FallbackConnector);
        }
        let started_us = now_us();
        let mut test = handshake::full_handshake(cfg, self.addr).await;
        test.started = Some(utc_millis(started_us));
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

/// Writes the hello and reads the first answer, recording both; the outcome is decided on the
/// bytes read (a ServerHello, an alert, garbage) or on how the connection ended.
async fn talk(
    mut stream: TcpStream,
    record: &[u8],
    split: bool,
    deadline: tokio::time::Instant,
    x: &mut Exchange,
) -> TestOutcome {
    let _ = stream.set_nodelay(true);
    let conversation = async {
        let cut = if split {
            record.len() / 2
        } else {
            record.len()
        };
        let (first, second) = record.split_at(cut.min(record.len()));
        for (i, part) in [first, second].into_iter().enumerate() {
            if part.is_empty() {
                continue;
            }
            if i == 1 {
                tokio::time::sleep(SPLIT_PAUSE).await;
            }
            if let Err(e) = stream.write_all(part).await {
                return from_io(&e, x);
            }
            x.push(EventKind::Sent(part.to_vec()));
        }
        read_answer(&mut stream, x).await
    };
    let outcome = match tokio::time::timeout_at(deadline, conversation).await {
        Ok(o) => o,
        Err(_) => {
            x.push(EventKind::TimedOut);
            TestOutcome::Timeout
        }
    };
    if matches!(
        outcome,
        TestOutcome::ServerHello(_) | TestOutcome::Alert(_) | TestOutcome::Garbage
    ) && !x.events.iter().any(|e| e.kind == EventKind::PeerClosed)
    {
        x.push(EventKind::ClientClosed);
    }
    outcome
}

/// Reads until the first answer can be decided.
async fn read_answer(stream: &mut TcpStream, x: &mut Exchange) -> TestOutcome {
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    let mut reads = 0usize;
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) => {
                x.push(EventKind::PeerClosed);
                return match parse_server_answer(&buf) {
                    ServerAnswer::Garbage => TestOutcome::Garbage,
                    _ => TestOutcome::Closed,
                };
            }
            Ok(n) => {
                let got = chunk.get(..n).unwrap_or(&[]);
                buf.extend_from_slice(got);
                reads += 1;
                match x.events.last_mut().map(|e| &mut e.kind) {
                    Some(EventKind::Received(last)) if reads > MAX_READ_EVENTS => {
                        last.extend_from_slice(got)
                    }
                    _ => x.push(EventKind::Received(got.to_vec())),
                }
            }
            Err(e) => return from_io(&e, x),
        }
        match parse_server_answer(&buf) {
            ServerAnswer::Incomplete if buf.len() < MAX_READ => {}
            answer => return from_answer(answer),
        }
    }
}

/// How a test ended, in words a network team can match with its device's log.
fn how(outcome: &TestOutcome, ms: u64, timeout: Duration) -> String {
    use crate::wire::alert;
    match outcome {
        TestOutcome::ServerHello(v) => format!("ServerHello for TLS {v} after {ms} ms"),
        TestOutcome::Alert(n) => format!("fatal alert {n} ({}) after {ms} ms", alert::name(*n)),
        TestOutcome::Closed => format!("closed (FIN) without an answer after {ms} ms"),
        TestOutcome::Reset => format!("reset (RST) after {ms} ms"),
        TestOutcome::Timeout => format!("no answer: timed out after {} ms", timeout.as_millis()),
        TestOutcome::Garbage => format!("answered with bytes that are not TLS after {ms} ms"),
        TestOutcome::ConnectError => "the TCP connection could not be made".into(),
        TestOutcome::IoError => format!("I/O error after {ms} ms"),
        other => other.to_string(),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn from_answer(answer: ServerAnswer) -> TestOutcome {
    match answer {
        ServerAnswer::ServerHello { version, .. } => TestOutcome::ServerHello(WireVersion(version)),
        ServerAnswer::Alert { description, .. } => TestOutcome::Alert(description),
        ServerAnswer::Garbage | ServerAnswer::Incomplete => TestOutcome::Garbage,
    }
}

fn from_io(e: &std::io::Error, x: &mut Exchange) -> TestOutcome {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionReset | ConnectionAborted | BrokenPipe => {
            x.push(EventKind::PeerReset);
            TestOutcome::Reset
        }
        _ => TestOutcome::IoError,
    }
}

pub(super) fn elapsed_ms(start: Instant) -> u64 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that declares a 16 KiB ServerHello and trickles it a byte at a time: the
    /// capture keeps every byte but at most `MAX_READ_EVENTS` read events.
    #[tokio::test]
    async fn a_trickling_server_cannot_grow_the_capture_per_byte() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut hello = [0u8; 512];
            let _ = s.read(&mut hello).await;
            s.write_all(&[22, 3, 3, 0x40, 0, 2, 0, 0x3f, 0xf0])
                .await
                .unwrap();
            for _ in 0..300 {
                s.write_all(&[3]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut x = Exchange::new(stream.local_addr().unwrap(), addr, now_us());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let record = hello::build_client_hello(&HelloSpec::up_to(crate::wire::TLS13, None));
        let outcome = talk(stream, &record, false, deadline, &mut x).await;
        server.await.unwrap();
        assert_eq!(outcome, TestOutcome::Closed);
        let reads = x
            .events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Received(_)))
            .count();
        assert!(
            (2..=MAX_READ_EVENTS).contains(&reads),
            "{reads} read events"
        );
        assert_eq!(x.received().len(), 9 + 300);
    }
}
