//! Upstream connections, driven inside the task of the app connection that uses them.
//!
//! An HTTP/1.1 upstream connection belongs to one app connection at a time (its [`Slot`]): the
//! app connection's task polls it next to the app side ([`drive`]), so a request and its
//! response never cross tasks or threads on their way out and back, as in an event-loop proxy.
//! When the app connection ends, an upstream connection that is idle is parked in the layer's
//! [`Pool`] for the next app connection to the same upstream. An h2 upstream connection (ALPN
//! decides) runs in a task of its own and is shared by everyone, as h2 is meant to be.
//!
//! A request is sent at most once: it is retried on another connection only when hyper hands
//! it back unsent (a parked connection that the upstream had closed), see [`after_failure`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use http::header::{HeaderName, HeaderValue};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tls_fallback::{FallbackConnector, MaybeHttpsStream, TlsInfo};
use tokio::net::TcpStream;
use tower_service::Service;

use super::drive::{self, Hub};
use super::relay::{self, Abandoned, Relay, Sending};
use super::route::Dest;
use tls_fallback::outbound::ViaConnector;

/// The stream the fallback connector hands out.
type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;
/// An HTTP/1.1 client connection future over it.
type H1Conn = http1::Connection<Stream, Incoming>;

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
            headers: super::headers::tls_headers(tls),
        }
    }
}

/// A response and the connection it came on.
pub type Answer = (Response<Relay>, Option<Arc<ConnInfo>>);

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
struct H1 {
    send: http1::SendRequest<Incoming>,
    conn: Pin<Box<H1Conn>>,
    info: Option<Arc<ConnInfo>>,
}

impl H1 {
    /// Whether a parked connection can take a request: polled once (nobody polls it while it
    /// is parked), it reads what came meanwhile, so one the upstream closed (or sent bytes
    /// on) while idle ends here instead of failing the request it is taken for.
    fn alive(&mut self) -> bool {
        let cx = &mut Context::from_waker(Waker::noop());
        self.conn.as_mut().poll(cx).is_pending() && self.send.is_ready()
    }
}

/// An h2 connection (its future runs in its own task).
#[derive(Clone)]
struct H2 {
    send: http2::SendRequest<Incoming>,
    info: Option<Arc<ConnInfo>>,
    /// Tells this connection from a later one to the same upstream.
    id: u64,
}

/// A shared h2 connection and when a request last took it.
struct SharedH2 {
    h2: H2,
    used: Instant,
}

/// Ids for h2 connections.
static H2_IDS: AtomicU64 = AtomicU64::new(0);

/// A parked HTTP/1.1 connection.
struct Parked {
    h1: H1,
    since: Instant,
    /// The worker thread whose runtime its socket is registered with.
    worker: usize,
}

thread_local! {
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Tells the pool which worker this thread is (a parked connection goes back preferably to
/// the worker whose runtime drives its socket).
pub fn set_worker(index: usize) {
    WORKER.set(index);
}

/// The upstream connections of one fallback layer that no app connection holds: parked
/// HTTP/1.1 ones (polled once a second by [`Pool::prune`] and once when taken, so one the
/// upstream closed while idle is dropped, not used) and the shared h2 ones, by `host:port`.
pub struct Pool {
    connector: FallbackConnector<ViaConnector>,
    idle_timeout: Duration,
    max_idle_per_host: usize,
    inner: Mutex<PoolInner>,
}

#[derive(Default)]
struct PoolInner {
    parked: HashMap<String, Vec<Parked>>,
    h2: HashMap<String, SharedH2>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Pool {
    /// A pool over this connector.
    pub fn new(
        connector: FallbackConnector<ViaConnector>,
        idle_timeout: Duration,
        max_idle_per_host: usize,
    ) -> Pool {
        Pool {
            connector,
            idle_timeout,
            max_idle_per_host,
            inner: Mutex::default(),
        }
    }

    /// Drops parked connections idle for longer than the idle timeout or closed meanwhile, and
    /// h2 ones closed or unused for as long.
    pub fn prune(&self) {
        let now = Instant::now();
        let mut inner = lock(&self.inner);
        inner.parked.retain(|_, v| {
            v.retain_mut(|p| now.duration_since(p.since) < self.idle_timeout && p.h1.alive());
            !v.is_empty()
        });
        inner.h2.retain(|_, h| {
            now.duration_since(h.used) < self.idle_timeout && !h.h2.send.is_closed()
        });
    }

    fn take_parked(&self, authority: &str) -> Option<H1> {
        let now = Instant::now();
        let mut inner = lock(&self.inner);
        let list = inner.parked.get_mut(authority)?;
        list.retain(|p| now.duration_since(p.since) < self.idle_timeout);
        // This worker's newest first (the most recently used connection is the least likely
        // to have been closed), else another worker's: its socket still works from here.
        let me = WORKER.get();
        let mut found = None;
        while found.is_none() {
            let at = list.iter().rposition(|p| p.worker == me);
            let Some(mut p) = (match at {
                Some(i) => Some(list.swap_remove(i)),
                None => list.pop(),
            }) else {
                break;
            };
            if p.h1.alive() {
                found = Some(p.h1);
            }
        }
        if list.is_empty() {
            inner.parked.remove(authority);
        }
        found
    }

    fn park(&self, authority: String, h1: H1) {
        let mut inner = lock(&self.inner);
        let list = inner.parked.entry(authority).or_default();
        if list.len() < self.max_idle_per_host {
            list.push(Parked {
                h1,
                since: Instant::now(),
                worker: WORKER.get(),
            });
        }
    }

    fn shared_h2(&self, authority: &str) -> Option<H2> {
        let mut inner = lock(&self.inner);
        match inner.h2.get_mut(authority) {
            Some(h) if !h.h2.send.is_closed() => {
                h.used = Instant::now();
                Some(h.h2.clone())
            }
            Some(_) => {
                inner.h2.remove(authority);
                None
            }
            None => None,
        }
    }

    /// Drops the shared h2 connection `id` (it handed a request back or failed).
    fn forget_h2(&self, authority: &str, id: u64) {
        let mut inner = lock(&self.inner);
        if inner.h2.get(authority).is_some_and(|h| h.h2.id == id) {
            inner.h2.remove(authority);
        }
    }

    /// A new connection through the fallback layer: HTTP/1.1, or h2 when ALPN says so (then
    /// it is shared from here on).
    async fn connect(&self, uri: http::Uri, authority: &str) -> Result<Fresh, SendError> {
        let mut connector = self.connector.clone();
        let stream = connector.call(uri).await.map_err(SendError::Connect)?;
        let info = stream.tls_info().map(|t| Arc::new(ConnInfo::new(t)));
        if info.as_ref().and_then(|i| i.tls.alpn) == Some("h2") {
            let (send, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
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
            lock(&self.inner).h2.insert(authority.to_string(), shared);
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

enum Fresh {
    H1(H1),
    H2(H2),
}

/// The HTTP/1.1 upstream connection an app connection holds, polled by [`drive`].
pub struct Slot {
    state: Mutex<SlotState>,
    /// The wakes of the task that drives the app connection and the held one.
    hub: Arc<Hub>,
    /// The request timer of the app connection (its requests come one at a time).
    timer: Mutex<Option<Pin<Box<tokio::time::Sleep>>>>,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            state: Mutex::default(),
            hub: Hub::new(),
            timer: Mutex::default(),
        }
    }
}

#[derive(Default)]
struct SlotState {
    held: Option<Held>,
    next_id: u64,
    /// What a request on the held connection left when its app connection ended.
    abandoned: Option<Abandoned>,
}

struct Held {
    id: u64,
    authority: String,
    pool: Arc<Pool>,
    h1: H1,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        lock(&self.state)
    }

    /// Puts a connection in (parking the one held before, if idle) and returns its id.
    fn hold(&self, authority: &str, pool: &Arc<Pool>, h1: H1) -> u64 {
        let mut st = self.lock();
        st.next_id += 1;
        let id = st.next_id;
        if let Some(old) = st.held.take() {
            release(old);
        }
        st.abandoned = None;
        st.held = Some(Held {
            id,
            authority: authority.to_string(),
            pool: Arc::clone(pool),
            h1,
        });
        drop(st);
        // A new connection must be polled to get going.
        self.hub.wake(drive::CONN);
        id
    }

    /// The held connection's id, if it is for this upstream of this pool and not closed.
    fn held_for(&self, authority: &str, pool: &Arc<Pool>) -> Option<u64> {
        let mut st = self.lock();
        // An exchange abandoned while this app connection goes on (hyper's server dropped a
        // response body it would not write, e.g. past a Content-Length shorter than the body):
        // nobody reads the rest of it, so the connection would never be ready again.
        let usable = st.abandoned.is_none()
            && st.held.as_ref().is_some_and(|h| {
                h.authority == authority && Arc::ptr_eq(&h.pool, pool) && !h.h1.send.is_closed()
            });
        if usable {
            return st.held.as_ref().map(|h| h.id);
        }
        let gone = (st.held.take(), st.abandoned.take());
        drop(st);
        // `release` parks it only if it is idle; one with an unread body is closed.
        if let (Some(old), left) = gone {
            drop(left);
            release(old);
        }
        None
    }

    /// Waits until connection `id` can take a request; `false` when it closed first.
    async fn ready(&self, id: u64) -> bool {
        std::future::poll_fn(|cx| {
            let mut st = self.lock();
            let Some(h) = st.held.as_mut().filter(|h| h.id == id) else {
                return Poll::Ready(false);
            };
            match h.h1.send.poll_ready(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(true),
                Poll::Ready(Err(_)) => {
                    st.held = None;
                    Poll::Ready(false)
                }
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Hands the request to connection `id` (ready) if it is still held (else `req` stays);
    /// the future resolves with its response, and the connection's info.
    fn send(
        &self,
        id: u64,
        req: &mut Option<Request<Incoming>>,
    ) -> Option<(Sending<'_>, Option<Arc<ConnInfo>>)> {
        let mut st = self.lock();
        let h = st.held.as_mut().filter(|h| h.id == id)?;
        let req = req.take()?;
        let info = h.h1.info.clone();
        let waiting: relay::Waiting = Box::pin(h.h1.send.try_send_request(req));
        let sending = Sending {
            slot: self,
            id,
            waiting: Some(waiting),
        };
        Some((sending, info))
    }

    /// Keeps what a request on connection `id` left when its app connection ended, if that
    /// connection is still held (see [`relay`]).
    pub fn abandon(&self, id: u64, left: Abandoned) {
        let mut st = self.lock();
        if st.held.as_ref().is_some_and(|h| h.id == id) {
            st.abandoned = Some(left);
        } else {
            drop(st);
            drop(left);
        }
    }

    /// Polls the held connection; drops it when it has ended.
    fn poll_held(&self, cx: &mut Context<'_>) {
        let mut st = self.lock();
        let ended = match st.held.as_mut() {
            Some(h) => h.h1.conn.as_mut().poll(cx).is_ready(),
            None => false,
        };
        if ended {
            st.held = None;
        }
    }

    /// Runs `fut` (pinned by the caller: a request's future is large, and is not copied into
    /// this one) for at most `limit`; `None` when the time ran out first. The app
    /// connection's one timer is moved forward for each request: tokio moves a registered
    /// deadline later with one atomic operation, where a timer per request is put in and taken
    /// out of the timer wheel every time.
    pub async fn timed<F: Future>(
        &self,
        limit: Duration,
        mut fut: Pin<&mut F>,
    ) -> Option<F::Output> {
        let deadline = tokio::time::Instant::now() + limit;
        {
            let mut timer = lock(&self.timer);
            match timer.as_mut() {
                Some(t) => t.as_mut().reset(deadline),
                None => *timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            let expired = lock(&self.timer)
                .as_mut()
                .is_some_and(|t| t.as_mut().poll(cx).is_ready());
            if expired {
                Poll::Ready(None)
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Drops the held connection: after a request timed out, its exchange is in an unknown
    /// state (the next request must not wait behind a response that may never come; hyper
    /// closes such a connection too, this does not depend on it).
    pub fn discard(&self) {
        let mut st = self.lock();
        let gone = (st.held.take(), st.abandoned.take());
        drop(st);
        drop(gone);
    }

    /// At the end of the app connection: parks the held connection if it is idle. It is
    /// polled once first, so that it has taken in the end of its last response. A request
    /// the app left unanswered is read to its end first, unless `stop` fires (or has fired:
    /// `stopped`), within [`relay::DRAIN_TIME`] and the request's own deadline.
    async fn finish<S: Future<Output = ()>>(&self, stopped: bool, stop: Pin<&mut S>) {
        self.poll_held(&mut Context::from_waker(Waker::noop()));
        let (held, left) = {
            let mut st = self.lock();
            (st.held.take(), st.abandoned.take())
        };
        let Some(mut h) = held else {
            return;
        };
        if let Some(left) = left {
            if stopped {
                return;
            }
            let until = self.drain_deadline();
            let H1 { send, conn, .. } = &mut h.h1;
            let drained = relay::drain(
                left,
                |cx| conn.as_mut().poll(cx).is_ready(),
                |cx| send.poll_ready(cx).map(|r| r.is_ok()),
            );
            let ok = tokio::select! {
                ok = tokio::time::timeout_at(until, drained) => ok.unwrap_or(false),
                () = stop => false,
            };
            if !ok {
                return;
            }
        }
        release(h);
    }

    /// When the drain of an abandoned request must end: its request's deadline, or
    /// [`relay::DRAIN_TIME`] from now if that is sooner.
    fn drain_deadline(&self) -> tokio::time::Instant {
        let cap = tokio::time::Instant::now() + relay::DRAIN_TIME;
        lock(&self.timer)
            .as_ref()
            .map_or(cap, |t| t.deadline().min(cap))
    }
}

/// A connection let go: parked when it can take another request, else closed.
fn release(h: Held) {
    if h.h1.send.is_ready() {
        let pool = Arc::clone(&h.pool);
        pool.park(h.authority, h.h1);
    }
}

/// What to do after a send failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send it again on another connection: it never left.
    Retry,
    /// Answer with the error.
    Fail,
}

/// How many times one request may be handed back unsent and tried on another connection (each
/// try takes a parked or shared connection the upstream may have closed, or a new one).
pub const MAX_RESENDS: u32 = 4;

/// The retry rule: only a request hyper handed back unsent, from a connection that was parked,
/// shared or used before (one the upstream may have closed while idle), at most
/// [`MAX_RESENDS`] times. A new connection that fails is the answer.
pub fn after_failure(unsent: bool, reused: bool, resends: u32) -> Next {
    if unsent && reused && resends < MAX_RESENDS {
        Next::Retry
    } else {
        Next::Fail
    }
}

/// How one try went.
enum Outcome {
    Done(Response<Relay>),
    /// Handed back unsent, with the error to answer if it is not sent again.
    Unsent(Request<Incoming>, SendError),
    /// Failed after the request may have left.
    Failed(SendError),
}

/// Sends one request to `authority` through this pool, holding the HTTP/1.1 connection in the
/// app connection's `slot`; the answer says how the connection was made.
pub async fn send(
    pool: &Arc<Pool>,
    slot: &Arc<Slot>,
    uri: http::Uri,
    dest: &Dest,
    mut req: Request<Incoming>,
) -> Result<Answer, SendError> {
    let authority = dest.authority.as_str();
    let mut resends = 0;
    let origin = uri.path_and_query().map_or_else(
        || http::Uri::from_static("/"),
        |pq| http::Uri::from(pq.clone()),
    );
    loop {
        let (outcome, reused, info) = match checkout(pool, slot, uri.clone(), authority).await? {
            Checkout::H2(h2) => {
                let info = h2.info.clone();
                (send_h2(pool, h2, &uri, authority, req).await, true, info)
            }
            Checkout::H1(id, reused) => {
                *req.uri_mut() = origin.clone();
                let (outcome, info) = send_h1(slot, id, req).await;
                (outcome, reused, info)
            }
        };
        match outcome {
            Outcome::Done(res) => return Ok((res, info)),
            Outcome::Failed(e) => return Err(e),
            Outcome::Unsent(back, e) => {
                if after_failure(true, reused, resends) == Next::Fail {
                    return Err(e);
                }
                resends += 1;
                req = back;
                // Back to an HTTP/1.1 request with its Host, whichever try it came from.
                *req.version_mut() = http::Version::HTTP_11;
                req.headers_mut()
                    .insert(http::header::HOST, dest.host_header.clone());
            }
        }
    }
}

/// One try on the held HTTP/1.1 connection `id`.
async fn send_h1(
    slot: &Arc<Slot>,
    id: u64,
    req: Request<Incoming>,
) -> (Outcome, Option<Arc<ConnInfo>>) {
    if !slot.ready(id).await {
        // Closed before it took the request: nothing was sent.
        return (Outcome::Unsent(req, SendError::NotSent(None)), None);
    }
    let mut pending = Some(req);
    let (result, info) = match slot.send(id, &mut pending) {
        Some((sending, info)) => (sending.await, info),
        // The connection went away between `ready` and now: the request is still here.
        None => {
            return match pending {
                Some(back) => (Outcome::Unsent(back, SendError::NotSent(None)), None),
                None => (Outcome::Failed(SendError::NotSent(None)), None),
            };
        }
    };
    let outcome = match result {
        Ok(res) => Outcome::Done(res.map(|b| Relay::held(b, slot, id))),
        Err(mut e) => match e.take_message() {
            Some(back) => Outcome::Unsent(back, SendError::NotSent(Some(e.into_error()))),
            None => Outcome::Failed(SendError::Lost(e.into_error())),
        },
    };
    (outcome, info)
}

enum Checkout {
    H1(u64, bool),
    H2(H2),
}

/// The connection for the next request: the one held if it is for this upstream, else a
/// shared h2 one, else a parked one, else a new one.
async fn checkout(
    pool: &Arc<Pool>,
    slot: &Slot,
    uri: http::Uri,
    authority: &str,
) -> Result<Checkout, SendError> {
    if let Some(id) = slot.held_for(authority, pool) {
        return Ok(Checkout::H1(id, true));
    }
    if let Some(h2) = pool.shared_h2(authority) {
        return Ok(Checkout::H2(h2));
    }
    if let Some(h1) = pool.take_parked(authority) {
        return Ok(Checkout::H1(slot.hold(authority, pool, h1), true));
    }
    match pool.connect(uri, authority).await? {
        Fresh::H2(h2) => Ok(Checkout::H2(h2)),
        Fresh::H1(h1) => Ok(Checkout::H1(slot.hold(authority, pool, h1), false)),
    }
}

/// One try on a shared h2 connection. A request it hands back unsent (the connection ended,
/// say after a GOAWAY) can go on another one; the dead connection leaves the pool.
async fn send_h2(
    pool: &Pool,
    mut h2: H2,
    uri: &http::Uri,
    authority: &str,
    mut req: Request<Incoming>,
) -> Outcome {
    *req.uri_mut() = uri.clone();
    *req.version_mut() = http::Version::HTTP_2;
    req.headers_mut().remove(http::header::HOST);
    if let Err(e) = h2.send.ready().await {
        pool.forget_h2(authority, h2.id);
        return Outcome::Unsent(req, SendError::NotSent(Some(e)));
    }
    match h2.send.try_send_request(req).await {
        Ok(res) => Outcome::Done(res.map(Relay::shared)),
        Err(mut e) => {
            pool.forget_h2(authority, h2.id);
            match e.take_message() {
                Some(back) => Outcome::Unsent(back, SendError::NotSent(Some(e.into_error()))),
                None => Outcome::Failed(SendError::Lost(e.into_error())),
            }
        }
    }
}

/// Runs an app connection's future and the upstream connection its slot holds in one task,
/// each polled only when it was woken (an idle upstream connection is not read again for every
/// app request), and `stop` beside them (see [`drive::drive`]); at the end, the upstream
/// connection is parked for the next app connection, once idle (see [`Slot::finish`]).
pub async fn drive<F, S>(
    app: F,
    slot: &Slot,
    stop: S,
    on_stop: impl FnOnce(Pin<&mut F>),
) -> F::Output
where
    F: Future,
    S: Future<Output = ()>,
{
    let stopped = AtomicBool::new(false);
    let mut stop = std::pin::pin!(async {
        stop.await;
        stopped.store(true, Ordering::Relaxed);
    });
    let side = |cx: &mut Context<'_>| slot.poll_held(cx);
    let out = drive::drive(&slot.hub, app, side, stop.as_mut(), on_stop).await;
    // `stop` is polled again only if it has not fired.
    slot.finish(stopped.load(Ordering::Relaxed), stop).await;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_sent_again_only_when_it_never_left_a_reused_connection_a_few_times() {
        // (unsent, reused, resends so far) -> next
        let rows = [
            ((true, true, 0), Next::Retry),
            ((true, true, MAX_RESENDS - 1), Next::Retry),
            ((true, true, MAX_RESENDS), Next::Fail),
            ((true, false, 0), Next::Fail),
            ((false, true, 0), Next::Fail),
            ((false, false, 0), Next::Fail),
        ];
        for ((unsent, reused, resends), want) in rows {
            assert_eq!(
                after_failure(unsent, reused, resends),
                want,
                "unsent {unsent} reused {reused} resends {resends}"
            );
        }
    }
}
