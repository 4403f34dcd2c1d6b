//! The stream handed to hyper ([`MaybeHttpsStream`]) and what it tells about the TLS
//! connection ([`TlsInfo`], attached to every response through `Connected::extra`).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use atomic_waker::AtomicWaker;

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_openssl::SslStream;

use crate::error::Attempt;
use crate::profile::TlsVersion;

/// How a TLS connection was made; read it from `response.extensions().get::<TlsInfo>()`.
///
/// It describes the *connection*, not the request: hyper-util copies the same `TlsInfo` into
/// every response of a kept-alive connection, so the third request on a connection still shows
/// the handshakes and `from_cache` of its first. Whether this request reused a connection is
/// in [`ConnectionUse`], next to it in the same extensions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsInfo {
    /// The negotiated version.
    pub version: TlsVersion,
    /// The negotiated cipher suite (OpenSSL name).
    pub cipher: &'static str,
    /// The profile (rung) that worked.
    pub profile: Arc<str>,
    /// Every attempt this connection took, the successful one last.
    pub attempts: Arc<[Attempt]>,
    /// Whether the starting rung came from the decision cache.
    pub from_cache: bool,
    /// Whether the host is pinned in code.
    pub pinned: bool,
    /// Whether the TLS session was resumed.
    pub resumed: bool,
    /// The ALPN protocol the server chose, if any.
    pub alpn: Option<&'static str>,
}

impl TlsInfo {
    /// How many handshakes this connection took (1 when the first rung worked).
    pub fn handshakes(&self) -> usize {
        self.attempts.len()
    }
}

/// Wraps the TCP stream under TLS and remembers whether the server sent any byte, which tells
/// a silent hang (intolerance) from a slow handshake.
///
/// The flag is shared so the connector can see it while the handshake runs (to decide whether
/// to race a silent rung); it is written once, on the first byte.
#[derive(Debug)]
pub struct ReadWatch<S> {
    inner: S,
    seen: bool,
    answered: Arc<AtomicBool>,
    head: [u8; HEAD],
    head_len: usize,
    exchanges: Arc<Exchanges>,
    /// Whether the socket had nothing to read and has not woken since.
    ready: Arc<Readiness>,
    /// The waker handed to the socket: it clears `ready.blocked`, then wakes the task.
    ready_waker: Waker,
    /// Whether the last I/O through here was a read that found nothing.
    last_read_blocked: bool,
    /// Set by [`MaybeHttpsStream`] when the last TLS call on the stream was a read that ended
    /// waiting for the socket (`SSL_ERROR_WANT_READ`), cleared by any other TLS call.
    parked: bool,
}

/// Whether the last read from the socket found nothing and the socket has not woken since: until
/// it wakes, another `SSL_read` could only come back empty.
#[derive(Debug, Default)]
struct Readiness {
    blocked: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Readiness {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.blocked.store(false, Ordering::SeqCst);
        self.task.wake();
    }
}

/// Request/response turns on a connection, seen from the bytes under TLS: a write that follows
/// a read (or the arming after the handshake) starts a turn.
#[derive(Debug, Default)]
struct Exchanges {
    turns: AtomicU64,
    armed: AtomicBool,
}

/// Bytes kept from the start of the server's answer: a record header, a handshake header and
/// the ServerHello's version.
const HEAD: usize = 15;

impl<S> ReadWatch<S> {
    pub(crate) fn new(inner: S, answered: Arc<AtomicBool>) -> Self {
        let ready = Arc::new(Readiness::default());
        ReadWatch {
            inner,
            seen: false,
            answered,
            head: [0; HEAD],
            head_len: 0,
            exchanges: Arc::default(),
            ready_waker: Waker::from(Arc::clone(&ready)),
            ready,
            last_read_blocked: false,
            parked: false,
        }
    }
    /// Whether the server has sent at least one byte.
    pub fn answered(&self) -> bool {
        self.seen
    }
    /// The first bytes the server sent (at most 15: a record header, a handshake header, a
    /// ServerHello's version and the first bytes of its random).
    pub fn head(&self) -> &[u8] {
        &self.head[..self.head_len]
    }
}

impl<S> ReadWatch<S> {
    fn count_turn(&self, written: &Poll<io::Result<usize>>) {
        if matches!(written, Poll::Ready(Ok(n)) if *n > 0)
            && self.exchanges.armed.swap(false, Ordering::Relaxed)
        {
            self.exchanges.turns.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<S> ReadWatch<S> {
    /// Whether a TLS read would only find nothing again: the last TLS call was a read that
    /// waited for the socket, and the socket has not woken since. Registers `cx` to be woken
    /// when it does.
    fn read_would_wait(&self, cx: &Context<'_>) -> bool {
        if !self.parked || !self.ready.blocked.load(Ordering::SeqCst) {
            return false;
        }
        self.ready.task.register(cx.waker());
        // A wake between the load above and the registration cleared the flag.
        self.ready.blocked.load(Ordering::SeqCst)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadWatch<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        // The socket wakes `ready_waker`, which notes that it woke, then wakes the task. The
        // flag is set before the read so that a wake during it is not lost.
        self.ready.task.register(cx.waker());
        self.ready.blocked.store(true, Ordering::SeqCst);
        let this = &mut *self;
        let r =
            Pin::new(&mut this.inner).poll_read(&mut Context::from_waker(&this.ready_waker), buf);
        this.last_read_blocked = r.is_pending();
        if r.is_ready() {
            this.ready.blocked.store(false, Ordering::SeqCst);
        }
        if buf.filled().len() > before {
            self.exchanges.armed.store(true, Ordering::Relaxed);
        }
        if self.head_len < HEAD && buf.filled().len() > before {
            if !self.seen {
                self.seen = true;
                self.answered.store(true, Ordering::Relaxed);
            }
            let fresh = &buf.filled()[before..];
            let n = fresh.len().min(HEAD - self.head_len);
            let at = self.head_len;
            self.head[at..at + n].copy_from_slice(&fresh[..n]);
            self.head_len += n;
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadWatch<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.last_read_blocked = false;
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.count_turn(&r);
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.last_read_blocked = false;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.last_read_blocked = false;
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.count_turn(&r);
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The TLS stream inside [`MaybeHttpsStream::Https`].
pub type TlsStream<T> = SslStream<ReadWatch<TokioIo<T>>>;

/// A connection that is either plain (`http://`) or TLS (`https://`).
#[allow(clippy::large_enum_variant)]
pub enum MaybeHttpsStream<T> {
    /// A plain connection, passed through untouched.
    Http(T),
    /// A TLS connection and how it was made.
    Https(TokioIo<TlsStream<T>>, Arc<TlsInfo>),
}

impl<T> MaybeHttpsStream<T> {
    /// How the TLS connection was made (`None` for `http://`).
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        match self {
            MaybeHttpsStream::Http(_) => None,
            MaybeHttpsStream::Https(_, info) => Some(info),
        }
    }
}

impl<T> std::fmt::Debug for MaybeHttpsStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaybeHttpsStream::Http(_) => f.write_str("MaybeHttpsStream::Http"),
            MaybeHttpsStream::Https(_, info) => f
                .debug_tuple("MaybeHttpsStream::Https")
                .field(info)
                .finish(),
        }
    }
}

impl<T: Read + Write + Unpin> Read for MaybeHttpsStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeHttpsStream::Http(s) => Pin::new(s).poll_read(cx, buf),
            MaybeHttpsStream::Https(s, _) => {
                // hyper polls the connection for reading on every turn of its state machine
                // (several times per request): skip the `SSL_read` that could only come back
                // with WANT_READ, as an event loop would not read a socket that is not
                // readable.
                if s.inner().get_ref().read_would_wait(cx) {
                    #[cfg(test)]
                    SKIPS.fetch_add(1, Ordering::Relaxed);
                    return Poll::Pending;
                }
                let r = Pin::new(&mut *s).poll_read(cx, buf);
                let watch = s.inner_mut().get_mut();
                watch.parked = r.is_pending() && watch.last_read_blocked;
                r
            }
        }
    }
}

#[cfg(test)]
pub(crate) static SKIPS: AtomicU64 = AtomicU64::new(0);

/// Any TLS call but a read may change what a read would find (a renegotiation, a pending write).
fn unpark<T>(s: &mut TokioIo<TlsStream<T>>) {
    s.inner_mut().get_mut().parked = false;
}

impl<T: Read + Write + Unpin> Write for MaybeHttpsStream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeHttpsStream::Http(s) => Pin::new(s).poll_write(cx, buf),
            MaybeHttpsStream::Https(s, _) => {
                unpark(s);
                Pin::new(s).poll_write(cx, buf)
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeHttpsStream::Http(s) => Pin::new(s).poll_flush(cx),
            // A flush reaches the socket only (no TLS call): a read would still find nothing.
            MaybeHttpsStream::Https(s, _) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeHttpsStream::Http(s) => Pin::new(s).poll_shutdown(cx),
            MaybeHttpsStream::Https(s, _) => {
                unpark(s);
                Pin::new(s).poll_shutdown(cx)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeHttpsStream::Http(s) => s.is_write_vectored(),
            MaybeHttpsStream::Https(s, _) => s.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeHttpsStream::Http(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeHttpsStream::Https(s, _) => {
                unpark(s);
                Pin::new(s).poll_write_vectored(cx, bufs)
            }
        }
    }
}

impl<T: Connection + Read + Write + Unpin> Connection for MaybeHttpsStream<T> {
    fn connected(&self) -> Connected {
        match self {
            MaybeHttpsStream::Http(s) => s.connected(),
            MaybeHttpsStream::Https(s, info) => {
                let watch = s.inner().get_ref();
                let connected = watch.inner.inner().connected().extra((**info).clone());
                if info.alpn == Some("h2") {
                    connected.negotiated_h2()
                } else {
                    connected.extra(ConnectionUse::live(&watch.exchanges))
                }
            }
        }
    }
}

/// Which request on its TLS connection a response answered: read it from
/// `response.extensions().get::<ConnectionUse>()`, next to [`TlsInfo`].
///
/// Counted on HTTP/1.1 connections as request/response turns (a write after the server's
/// last answer starts the next request), so it holds however often hyper-util copies the
/// connection's information. HTTP/2 multiplexes requests on one connection: there is no
/// `ConnectionUse` on its responses.
#[derive(Debug)]
pub struct ConnectionUse {
    request: u64,
    live: Option<(Arc<Exchanges>, u64)>,
}

impl ConnectionUse {
    /// The live counter hyper-util keeps with the connection; every clone is a snapshot.
    fn live(exchanges: &Arc<Exchanges>) -> Self {
        // Called once, right after the handshake: the next write starts request 1.
        exchanges.armed.store(true, Ordering::Relaxed);
        let base = exchanges.turns.load(Ordering::Relaxed);
        ConnectionUse {
            request: 0,
            live: Some((Arc::clone(exchanges), base)),
        }
    }

    /// The number of this request on its connection: 1 for the request that opened it.
    pub fn request(&self) -> u64 {
        match &self.live {
            Some((x, base)) => x.turns.load(Ordering::Relaxed).saturating_sub(*base),
            None => self.request,
        }
    }

    /// Whether the request went over a connection an earlier request had opened (no new TLS
    /// handshake was made for it).
    pub fn reused(&self) -> bool {
        self.request() > 1
    }
}

impl Clone for ConnectionUse {
    /// A snapshot: hyper-util clones the connection's copy into each response when its head
    /// arrives, which freezes the number of that request.
    fn clone(&self) -> Self {
        ConnectionUse {
            request: self.request(),
            live: None,
        }
    }
}

impl PartialEq for ConnectionUse {
    fn eq(&self, other: &Self) -> bool {
        self.request() == other.request()
    }
}

impl Eq for ConnectionUse {}

impl Serialize for ConnectionUse {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ConnectionUse", 2)?;
        st.serialize_field("request", &self.request())?;
        st.serialize_field("reused", &self.reused())?;
        st.end()
    }
}

#[cfg(all(test, feature = "testkit"))]
mod tests;
