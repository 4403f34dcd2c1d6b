//! Upstream connections through one fallback layer: how one is made (HTTP/1.1, or h2 when ALPN
//! says so), what it says about itself ([`ConnInfo`]), and where the ones no app connection
//! holds wait ([`Connections`]): parked HTTP/1.1 ones, and the shared h2 one per upstream.
//!
//! An HTTP/1.1 connection belongs to one app connection at a time (its slot); an h2 connection
//! runs in a task of its own and is shared by everyone, as h2 is meant to be.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use http::header::{HeaderName, HeaderValue};
use http_body_util::{Either, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tls_fallback::outbound::ViaConnector;
use tls_fallback::{FallbackConnector, MaybeHttpsStream, TlsInfo};
use tokio::net::TcpStream;
use tower_service::Service;

use super::pool::Parked;
use crate::lock;

/// The stream the fallback connector hands out.
type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;
/// An HTTP/1.1 client connection future over it.
type H1Conn = http1::Connection<Stream, UpBody>;

/// A request body on its way upstream: the app's, streamed, or one read whole to be sent again
/// if an h2 upstream refuses its stream unprocessed (`exchange`).
pub type UpBody = Either<Incoming, Full<Bytes>>;

/// How an upstream connection was made, and the response headers that say so (made once per
/// connection).
#[derive(Debug)]
pub struct ConnInfo {
    /// The connection's TLS details.
    pub tls: TlsInfo,
    /// `x-tls-fallback-version`, `-profile`, `-handshakes`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ConnInfo {
    fn new(tls: &TlsInfo) -> ConnInfo {
        ConnInfo {
            tls: tls.clone(),
            headers: crate::headers::tls_headers(tls),
        }
    }
}

/// What sending a request can fail with.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made (the fallback layer's error: TLS, connect, timeout).
    Connect(tls_fallback::Error),
    /// The connection ended before the request was written: nothing reached the upstream.
    NotSent(Option<hyper::Error>),
    /// The connection failed after the request was written: it may have reached the upstream.
    Lost(hyper::Error),
}

/// An HTTP/1.1 connection and what it was made with.
pub struct H1 {
    /// Where requests go in.
    pub send: http1::SendRequest<UpBody>,
    /// The connection's future (polled by the task of the app connection holding it).
    pub conn: Pin<Box<H1Conn>>,
    /// How it was made.
    pub info: Option<Arc<ConnInfo>>,
}

impl H1 {
    /// Whether a parked connection can take a request: polled once (nobody polls it while it
    /// is parked), it reads what came meanwhile, so one the upstream closed (or sent bytes
    /// on) while idle ends here instead of failing the request it is taken for.
    pub fn alive(&mut self) -> bool {
        let cx = &mut Context::from_waker(Waker::noop());
        self.conn.as_mut().poll(cx).is_pending() && self.send.is_ready()
    }
}

/// An h2 connection (its future runs in its own task).
#[derive(Clone)]
pub struct H2 {
    /// Where requests go in.
    pub send: http2::SendRequest<UpBody>,
    /// How it was made.
    pub info: Option<Arc<ConnInfo>>,
    /// Tells this connection from a later one to the same upstream.
    pub id: u64,
}

/// A shared h2 connection and when a request last took it.
struct SharedH2 {
    h2: H2,
    used: Instant,
}

/// What one stream of a shared h2 connection may hold unread: an app that stops reading holds
/// at most this much of the connection's window (hyper's default, 2 MiB of a 5 MiB connection
/// window, let three such apps stall every other response on the connection).
pub const H2_STREAM_WINDOW: u32 = 256 * 1024;

/// What a shared h2 connection may hold unread in all: 64 stalled streams' worth, until the
/// idle timeout resets them (`drain::Relay::shared`).
pub const H2_CONNECTION_WINDOW: u32 = 64 * H2_STREAM_WINDOW;

/// Ids for h2 connections.
static H2_IDS: AtomicU64 = AtomicU64::new(0);

/// A new connection.
pub enum Fresh {
    /// HTTP/1.1: for the app connection that asked.
    H1(H1),
    /// h2: shared from here on.
    H2(H2),
}

/// The upstream connections of one fallback layer that no app connection holds: parked
/// HTTP/1.1 ones (checked once a second by [`Connections::prune`] and once when taken, so one
/// the upstream closed while idle is dropped, not used) and the shared h2 ones, by `host:port`.
pub struct Connections {
    connector: FallbackConnector<ViaConnector>,
    idle_timeout: Duration,
    parked: Parked<String, H1>,
    h2: Mutex<HashMap<String, SharedH2>>,
    /// Set when a reload replaced this layer: nothing is parked here any more (nobody would
    /// take it, or prune it).
    retired: std::sync::atomic::AtomicBool,
}

impl Connections {
    /// Connections through this connector.
    pub fn new(
        connector: FallbackConnector<ViaConnector>,
        idle_timeout: Duration,
        max_idle_per_host: usize,
        max_idle: usize,
    ) -> Connections {
        Connections {
            connector,
            idle_timeout,
            parked: Parked::new(idle_timeout, max_idle_per_host, max_idle),
            h2: Mutex::default(),
            retired: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Drops parked connections idle for longer than the idle timeout or closed meanwhile, and
    /// h2 ones closed or unused for as long.
    pub fn prune(&self) {
        let now = Instant::now();
        self.parked.prune(now, H1::alive);
        lock(&self.h2).retain(|_, h| {
            now.duration_since(h.used) < self.idle_timeout && !h.h2.send.is_closed()
        });
    }

    /// A parked connection to `authority` that still works, for an app connection on
    /// `worker`.
    pub fn take_parked(&self, authority: &str, worker: usize) -> Option<H1> {
        self.parked
            .take(authority, worker, Instant::now(), H1::alive)
    }

    /// Parks an idle connection made on `worker`'s event loop (closed if the upstream has
    /// enough parked, or this layer was retired).
    pub fn park(&self, authority: String, h1: H1, worker: usize) {
        if !self.retired.load(Ordering::Relaxed) {
            self.parked.put(authority, h1, worker, Instant::now());
        }
    }

    /// A reload replaced this layer: closes what is parked, and parks nothing from now on.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
        self.parked.prune(Instant::now(), |_| false);
        lock(&self.h2).clear();
    }

    /// Closes what waits for `authority` (parked, or a shared h2 connection): after a forget,
    /// the next request makes a connection, and walks the ladder, again. A connection an app
    /// holds now stays until that app is done with it.
    pub fn close_to(&self, authority: &str) {
        // Nothing is alive: `take` drops every one on its way, and finds none.
        let _ = self.parked.take(authority, 0, Instant::now(), |_| false);
        lock(&self.h2).remove(authority);
    }

    /// The shared h2 connection to `authority`, if one is open.
    pub fn shared_h2(&self, authority: &str) -> Option<H2> {
        let mut map = lock(&self.h2);
        match map.get_mut(authority) {
            Some(h) if !h.h2.send.is_closed() => {
                h.used = Instant::now();
                Some(h.h2.clone())
            }
            Some(_) => {
                map.remove(authority);
                None
            }
            None => None,
        }
    }

    /// Drops the shared h2 connection `id` (it handed a request back or failed).
    pub fn forget_h2(&self, authority: &str, id: u64) {
        let mut map = lock(&self.h2);
        if map.get(authority).is_some_and(|h| h.h2.id == id) {
            map.remove(authority);
        }
    }

    /// A new connection through the fallback layer: HTTP/1.1, or h2 when ALPN says so (then
    /// it is shared from here on).
    pub async fn connect(&self, uri: http::Uri, authority: &str) -> Result<Fresh, SendError> {
        let mut connector = self.connector.clone();
        let stream = connector.call(uri).await.map_err(SendError::Connect)?;
        let info = stream.tls_info().map(|t| Arc::new(ConnInfo::new(t)));
        if info.as_ref().and_then(|i| i.tls.alpn) == Some("h2") {
            let (send, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .initial_stream_window_size(H2_STREAM_WINDOW)
                .initial_connection_window_size(H2_CONNECTION_WINDOW)
                .handshake(stream)
                .await
                .map_err(|e| SendError::NotSent(Some(e)))?;
            tokio::spawn(conn);
            let id = H2_IDS.fetch_add(1, Ordering::Relaxed);
            let h2 = H2 { send, info, id };
            let shared = SharedH2 {
                h2: h2.clone(),
                used: Instant::now(),
            };
            lock(&self.h2).insert(authority.to_string(), shared);
            return Ok(Fresh::H2(h2));
        }
        let (send, conn) = http1::Builder::new()
            .handshake(stream)
            .await
            .map_err(|e| SendError::NotSent(Some(e)))?;
        Ok(Fresh::H1(H1 {
            send,
            conn: Box::pin(conn),
            info,
        }))
    }
}
