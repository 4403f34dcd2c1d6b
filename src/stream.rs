//! The stream handed to hyper ([`MaybeHttpsStream`]) and what it tells about the TLS
//! connection ([`TlsInfo`], attached to every response through `Connected::extra`).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_openssl::SslStream;

use crate::error::Attempt;
use crate::profile::TlsVersion;

/// How a TLS connection was made; read it from `response.extensions().get::<TlsInfo>()`.
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
}

/// Bytes kept from the start of the server's answer: a record header, a handshake header and
/// the ServerHello's version.
const HEAD: usize = 15;

impl<S> ReadWatch<S> {
    pub(crate) fn new(inner: S, answered: Arc<AtomicBool>) -> Self {
        ReadWatch {
            inner,
            seen: false,
            answered,
            head: [0; HEAD],
            head_len: 0,
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

impl<S: AsyncRead + Unpin> AsyncRead for ReadWatch<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
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
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
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
            MaybeHttpsStream::Https(s, _) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl<T: Read + Write + Unpin> Write for MaybeHttpsStream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeHttpsStream::Http(s) => Pin::new(s).poll_write(cx, buf),
            MaybeHttpsStream::Https(s, _) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeHttpsStream::Http(s) => Pin::new(s).poll_flush(cx),
            MaybeHttpsStream::Https(s, _) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeHttpsStream::Http(s) => Pin::new(s).poll_shutdown(cx),
            MaybeHttpsStream::Https(s, _) => Pin::new(s).poll_shutdown(cx),
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
            MaybeHttpsStream::Https(s, _) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }
}

impl<T: Connection + Read + Write + Unpin> Connection for MaybeHttpsStream<T> {
    fn connected(&self) -> Connected {
        match self {
            MaybeHttpsStream::Http(s) => s.connected(),
            MaybeHttpsStream::Https(s, info) => {
                let tcp = s.inner().get_ref().inner.inner();
                let connected = tcp.connected().extra((**info).clone());
                if info.alpn == Some("h2") {
                    connected.negotiated_h2()
                } else {
                    connected
                }
            }
        }
    }
}
