//! The intolerance emulator: a TCP front that reads each ClientHello, records what it offered,
//! and then closes, resets, hangs, alerts, answers garbage, or passes the connection through to
//! a real server, by rules on the offered version, the hello's length, its suite count, its key
//! shares, whether it arrived in one read, or the connection's number. Each emulator listens on
//! its own address, so two of them on one port of two loopback addresses make a name whose
//! addresses behave differently.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::wire::{self, ClientHelloInfo, HelloError, Reader};
use crate::TlsVersion;

/// How long a hanging connection is held at most.
const HANG_LIMIT: Duration = Duration::from_secs(120);
/// How long the emulator waits for a whole ClientHello.
const READ_LIMIT: Duration = Duration::from_secs(10);
/// Room made for each read: a whole 16 KiB record and its header, so a hello of one record that
/// arrived in one segment is read at once.
const READ_ROOM: usize = wire::MAX_RECORD + 5;

/// What the emulator does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Forward it to the real server.
    Pass,
    /// Close it (FIN).
    Close,
    /// Reset it (RST).
    Reset,
    /// Read and never answer, until the client gives up.
    Hang,
    /// Send a fatal alert with this number, then close.
    Alert(u8),
    /// Send bytes that are not TLS, then close.
    Garbage,
    /// Rewrite the ClientHello without its `supported_versions` extension (lengths fixed up)
    /// and forward it: a TLS 1.3 server then negotiates TLS 1.2 and puts the RFC 8446
    /// downgrade sentinel in its random, which a TLS 1.3 client must refuse. An attacker who
    /// can rewrite the hello; the client and server transcripts then differ, so nothing but
    /// the sentinel check can be learned from it.
    StripTls13,
    /// Rewrite the ClientHello without TLS_FALLBACK_SCSV in its suite list (lengths fixed up)
    /// and forward it: the server behind then acts as one that ignores SCSV (as rustls-based
    /// servers do). The transcripts differ, so no handshake can finish; what the client can
    /// still catch is the RFC 8446 downgrade sentinel in a TLS 1.3 server's random.
    StripScsv,
    /// Wait this many milliseconds, then forward (a slow but healthy server).
    DelayMs(u64),
}

/// When a rule applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Every connection.
    Always,
    /// The hello offers a version above this one (supported_versions aware, GREASE ignored).
    VersionAbove(TlsVersion),
    /// The hello's handshake message is within this length range (bytes, header included).
    LengthIn(usize, usize),
    /// The hello lists more than this many cipher suites.
    CiphersAbove(usize),
    /// The hello is longer than this many bytes (handshake message, header included).
    LongerThan(usize),
    /// The first this-many connections (an attacker injecting failures).
    FirstConnections(usize),
    /// The hello did not arrive whole in the emulator's first read: it came in two or more TCP
    /// segments (a box that cannot reassemble a ClientHello). The first read returns whatever
    /// the first segment brought, so a client that writes the hello in two writes with
    /// TCP_NODELAY and a pause between them fires it; one write fires it only if the kernel
    /// split it (on loopback, not below 64 KiB).
    Fragmented,
    /// The hello carries a key share of this group (0x11ec X25519MLKEM768, 0x001d x25519).
    KeyShareGroup(u16),
}

/// A trigger and what to do when it fires; the first matching rule wins, else `Pass`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// When.
    pub trigger: Trigger,
    /// What.
    pub action: Action,
}

/// One connection as the emulator saw it.
#[derive(Debug, Clone, Serialize)]
pub struct SeenHello {
    /// The connection's number, from 0.
    pub conn: usize,
    /// The parsed hello (`None` when the client sent something else or nothing).
    pub hello: Option<ClientHelloInfo>,
    /// How many reads the emulator made before it decided: 1 when the hello arrived in one TCP
    /// segment, 2 or more when it spanned several (each read returns what has arrived).
    pub reads: usize,
    /// What the emulator did.
    pub action: Action,
}

impl SeenHello {
    /// The highest version offered, if it is one of TLS 1.0..1.3.
    pub fn offered(&self) -> Option<TlsVersion> {
        self.hello
            .as_ref()
            .and_then(|h| TlsVersion::from_wire(h.offered_max))
    }
    /// Whether the hello carried TLS_FALLBACK_SCSV.
    pub fn scsv(&self) -> bool {
        self.hello.as_ref().is_some_and(|h| h.scsv)
    }
    /// The hello's length (handshake message, header included), 0 if none.
    pub fn len(&self) -> usize {
        self.hello.as_ref().map_or(0, |h| h.hello_len)
    }
    /// Whether no hello was parsed.
    pub fn is_empty(&self) -> bool {
        self.hello.is_none()
    }
    /// Whether the hello arrived in more than one read ([`Trigger::Fragmented`]).
    pub fn fragmented(&self) -> bool {
        self.reads > 1
    }
}

/// A running emulator on a loopback address (127.0.0.1 unless started with
/// [`Emulator::start_on`] or [`Emulator::start_at`]); stops accepting when dropped.
#[derive(Debug)]
pub struct Emulator {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<SeenHello>>>,
    rules: Arc<Mutex<Arc<Vec<Rule>>>>,
    backend: Arc<Mutex<SocketAddr>>,
    task: JoinHandle<()>,
}

impl Emulator {
    /// Starts an emulator in front of `backend` with these rules (first match wins).
    pub async fn start(backend: SocketAddr, rules: Vec<Rule>) -> std::io::Result<Emulator> {
        Emulator::start_on([127, 0, 0, 1].into(), backend, rules).await
    }

    /// As [`Emulator::start`], listening on `ip` (e.g. `::1`, for IPv6 literals in URLs).
    pub async fn start_on(
        ip: std::net::IpAddr,
        backend: SocketAddr,
        rules: Vec<Rule>,
    ) -> std::io::Result<Emulator> {
        Emulator::start_at(SocketAddr::new(ip, 0), backend, rules).await
    }

    /// As [`Emulator::start`], listening on exactly `addr`, port included (port 0 picks one).
    /// Two emulators with different rules on 127.0.0.1:P and 127.0.0.2:P (Linux routes all of
    /// 127/8 to loopback) in front of one server are a name with two addresses, one broken.
    ///
    /// ```no_run
    /// use tls_fallback::testkit::{Emulator, Rule, TlsServer};
    /// # async fn run() -> std::io::Result<()> {
    /// let server = TlsServer::modern().await?;
    /// let healthy = Emulator::start(server.addr(), vec![]).await?;
    /// let port = healthy.addr().port();
    /// let broken = Emulator::start_at(
    ///     ([127, 0, 0, 2], port).into(),
    ///     server.addr(),
    ///     vec![Rule::hang_if_longer_than(1000)],
    /// )
    /// .await?;
    /// assert_eq!(broken.addr().port(), healthy.addr().port());
    /// # Ok(()) }
    /// ```
    pub async fn start_at(
        addr: SocketAddr,
        backend: SocketAddr,
        rules: Vec<Rule>,
    ) -> std::io::Result<Emulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rules = Arc::new(Mutex::new(Arc::new(rules)));
        let count = Arc::new(AtomicUsize::new(0));
        let seen2 = Arc::clone(&seen);
        let rules2 = Arc::clone(&rules);
        let backend = Arc::new(Mutex::new(backend));
        let backend2 = Arc::clone(&backend);
        let task = tokio::spawn(async move {
            // Connection tasks live in the accept task's set: dropping the owner aborts the
            // accept task, and with it every connection still open.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                while conns.try_join_next().is_some() {}
                let Ok((tcp, _)) = listener.accept().await else {
                    // Out of descriptors or similar: do not spin.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                };
                let conn = count.fetch_add(1, Ordering::SeqCst);
                let rules = rules2.lock().map(|r| Arc::clone(&r)).unwrap_or_default();
                let Ok(backend) = backend2.lock().map(|b| *b) else {
                    continue;
                };
                let seen = Arc::clone(&seen2);
                conns.spawn(async move { handle(tcp, conn, backend, &rules, &seen).await });
            }
        });
        Ok(Emulator {
            addr,
            seen,
            rules,
            backend,
            task,
        })
    }

    /// Points connections accepted from now on at another server (the vendor replaced the box).
    pub fn set_backend(&self, backend: SocketAddr) {
        if let Ok(mut b) = self.backend.lock() {
            *b = backend;
        }
    }

    /// Replaces the rules for connections accepted from now on (a gateway that gets fixed, or
    /// breaks again).
    pub fn set_rules(&self, rules: Vec<Rule>) {
        if let Ok(mut r) = self.rules.lock() {
            *r = Arc::new(rules);
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://localhost:PORT/`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}/", self.addr.port())
    }

    /// Every connection seen so far, in arrival order.
    pub fn hellos(&self) -> Vec<SeenHello> {
        let mut v = self.seen.lock().map(|s| s.clone()).unwrap_or_default();
        v.sort_by_key(|s| s.conn);
        v
    }

    /// How many connections were seen.
    pub fn count(&self) -> usize {
        self.seen.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// How many were not passed through (failed hellos).
    pub fn failed(&self) -> usize {
        self.hellos()
            .iter()
            .filter(|s| s.action != Action::Pass)
            .count()
    }

    /// Forgets what was seen.
    pub fn clear(&self) {
        if let Ok(mut s) = self.seen.lock() {
            s.clear();
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads until `buf` holds a whole ClientHello (or cannot become one). Returns the hello, if
/// any, and how many reads it took. Each read takes what has arrived (up to [`READ_ROOM`]
/// bytes) without waiting for more, so the count is the number of TCP segments, or of groups
/// of segments that arrived together.
async fn read_hello(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> (Option<ClientHelloInfo>, usize) {
    let mut reads = 0;
    let read = async {
        loop {
            match wire::parse_client_hello(buf) {
                Ok(h) => return Some(h),
                Err(HelloError::Invalid(_)) => return None,
                Err(HelloError::Incomplete) => {}
            }
            if buf.len() > wire::MAX_HELLO + 1024 {
                return None;
            }
            buf.reserve(READ_ROOM);
            match tcp.read_buf(buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => reads += 1,
            }
        }
    };
    let hello = tokio::time::timeout(READ_LIMIT, read).await.ok().flatten();
    (hello, reads)
}

async fn handle(
    mut tcp: TcpStream,
    conn: usize,
    backend: SocketAddr,
    rules: &[Rule],
    seen: &Mutex<Vec<SeenHello>>,
) {
    let mut buf = Vec::new();
    let (hello, reads) = read_hello(&mut tcp, &mut buf).await;
    let action = match &hello {
        None => Action::Close,
        Some(h) => rules
            .iter()
            .find(|r| r.fires(h, conn, reads))
            .map_or(Action::Pass, |r| r.action),
    };
    if let Ok(mut s) = seen.lock() {
        s.push(SeenHello {
            conn,
            hello,
            reads,
            action,
        });
    }
    match action {
        Action::Pass => forward(tcp, backend, &buf).await,
        Action::DelayMs(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            forward(tcp, backend, &buf).await
        }
        Action::StripScsv => match rewrite_hello(&buf, Strip::Scsv) {
            Some(rewritten) => forward(tcp, backend, &rewritten).await,
            None => {
                let _ = tcp.shutdown().await;
            }
        },
        Action::StripTls13 => match strip_supported_versions(&buf) {
            Some(rewritten) => forward(tcp, backend, &rewritten).await,
            None => {
                let _ = tcp.shutdown().await;
            }
        },
        Action::Close => {
            let _ = tcp.shutdown().await;
        }
        Action::Reset => {
            let _ = tcp.set_zero_linger();
            drop(tcp);
        }
        Action::Hang => {
            let mut sink = [0u8; 1024];
            let hold = async {
                while let Ok(n) = tcp.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(HANG_LIMIT, hold).await;
        }
        Action::Alert(n) => {
            let _ = tcp.write_all(&wire::fatal_alert_record(n)).await;
            let _ = tcp.shutdown().await;
        }
        Action::Garbage => {
            let _ = tcp
                .write_all(b"HTTP/1.0 400 Bad Request\r\nServer: not-tls\r\n\r\n\x00\xff\x13\x37")
                .await;
            let _ = tcp.shutdown().await;
        }
    }
}

/// Connects to `backend`, sends `first` (the hello as read, or rewritten), then relays both ways.
async fn forward(mut tcp: TcpStream, backend: SocketAddr, first: &[u8]) {
    let Ok(mut up) = TcpStream::connect(backend).await else {
        return;
    };
    let _ = up.set_nodelay(true);
    let _ = tcp.set_nodelay(true);
    if up.write_all(first).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut up).await;
}

/// `buf` (the client's first bytes: a ClientHello in one or more records, maybe more) with the
/// `supported_versions` extension removed from the hello and every length fixed up; `None` if
/// the hello cannot be parsed.
fn strip_supported_versions(buf: &[u8]) -> Option<Vec<u8>> {
    rewrite_hello(buf, Strip::SupportedVersions)
}

/// What a rewrite takes out of a hello.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Strip {
    /// The `supported_versions` extension.
    SupportedVersions,
    /// TLS_FALLBACK_SCSV from the suite list.
    Scsv,
}

/// `buf` with `what` removed from the hello and every length fixed up; `None` if the hello
/// cannot be parsed.
fn rewrite_hello(buf: &[u8], what: Strip) -> Option<Vec<u8>> {
    let (msg, record_version, used) = wire::reassemble_handshake(buf).ok()?;
    let mut r = Reader::new(msg.get(4..)?);
    let version = r.take(2)?;
    let random = r.take(32)?;
    let session_id = r.vec8()?;
    let suites = r.vec16()?;
    let compression = r.vec8()?;
    let mut exts = Reader::new(r.vec16()?);
    let mut kept = Vec::new();
    while !exts.is_empty() {
        let ty = exts.u16()?;
        let data = exts.vec16()?;
        if what == Strip::SupportedVersions && ty == wire::EXT_SUPPORTED_VERSIONS {
            continue;
        }
        kept.extend_from_slice(&ty.to_be_bytes());
        kept.extend_from_slice(&u16::try_from(data.len()).ok()?.to_be_bytes());
        kept.extend_from_slice(data);
    }
    let scsv = wire::FALLBACK_SCSV.to_be_bytes();
    let suites: Vec<u8> = suites
        .chunks(2)
        .filter(|s| what != Strip::Scsv || *s != scsv)
        .flatten()
        .copied()
        .collect();
    let mut body = Vec::with_capacity(msg.len());
    body.extend_from_slice(version);
    body.extend_from_slice(random);
    body.push(u8::try_from(session_id.len()).ok()?);
    body.extend_from_slice(session_id);
    body.extend_from_slice(&u16::try_from(suites.len()).ok()?.to_be_bytes());
    body.extend_from_slice(&suites);
    body.push(u8::try_from(compression.len()).ok()?);
    body.extend_from_slice(compression);
    body.extend_from_slice(&u16::try_from(kept.len()).ok()?.to_be_bytes());
    body.extend_from_slice(&kept);
    let body_len = u32::try_from(body.len()).ok()?.to_be_bytes();
    let mut hello = vec![wire::HS_CLIENT_HELLO, body_len[1], body_len[2], body_len[3]];
    hello.extend_from_slice(&body);
    let mut out = Vec::with_capacity(hello.len() + 16);
    for chunk in hello.chunks(16_384) {
        out.push(wire::CT_HANDSHAKE);
        out.extend_from_slice(&record_version.to_be_bytes());
        out.extend_from_slice(&u16::try_from(chunk.len()).ok()?.to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(buf.get(used..)?);
    Some(out)
}

mod rules;
#[cfg(test)]
mod tests;
