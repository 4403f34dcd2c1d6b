//! What happens to an upstream exchange when its app connection ends first.
//!
//! hyper closes an HTTP/1.1 client connection whose response nobody waits for, or whose
//! response body is dropped before its end: it cannot know where the next response would
//! start. An app that hangs up mid-request (a client timeout, a load generator stopping) would
//! so cost the proxy its upstream connection, and the next request a new TCP connection and
//! TLS handshake (for a fragile gateway, that can be its slowest part).
//!
//! So the response future ([`Sending`]) and the response body ([`Relay`]) of a request on a
//! held connection hand what is left to the app connection's [`Handback`] when they are
//! dropped unfinished (their `Drop` only moves a resource: it starts no I/O), the slot decides
//! what becomes of the connection ([`super::slot::at_end`]), and [`drain`] reads the rest of
//! the exchange, discarding it, within [`DRAIN_TIME`] and [`DRAIN_BYTES`]; then the connection
//! is parked as an idle one is. The request is never sent again: only its answer is read.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::client::conn::TrySendError;
use hyper::{Request, Response};

use super::conn::UpBody;
use crate::lock;

/// How long an abandoned exchange may take to finish (never past its request's deadline).
pub const DRAIN_TIME: Duration = Duration::from_secs(5);

/// How much of an abandoned response body is read and discarded; a longer one closes the
/// connection instead (as much as a new handshake is worth).
pub const DRAIN_BYTES: usize = 256 * 1024;

/// The answer to a request handed to an HTTP/1.1 connection (boxed, so that it can outlive the
/// request's own future).
pub type Waiting =
    Pin<Box<dyn Future<Output = Result<Response<Incoming>, TrySendError<Request<UpBody>>>> + Send>>;

/// What an app connection that ended mid-exchange left on its upstream connection.
pub enum Abandoned {
    /// The request was sent; its response has not come.
    Response(Waiting),
    /// The response came; its body was not read to its end.
    Body(Incoming),
}

/// Where an exchange dropped unfinished leaves what is left of it, with the id of its
/// connection: one per app connection, read by its slot.
#[derive(Default)]
pub struct Handback(Mutex<Option<(u64, Abandoned)>>);

impl Handback {
    /// Keeps what connection `id`'s exchange left.
    pub fn put(&self, id: u64, left: Abandoned) {
        let old = lock(&self.0).replace((id, left));
        drop(old);
    }

    /// What connection `id`'s exchange left, if anything (something left by another
    /// connection is dropped).
    pub fn take(&self, id: u64) -> Option<Abandoned> {
        let left = lock(&self.0).take();
        match left {
            Some((of, left)) if of == id => Some(left),
            _ => None,
        }
    }

    /// Whether connection `id`'s exchange left something.
    pub fn holds(&self, id: u64) -> bool {
        lock(&self.0).as_ref().is_some_and(|(of, _)| *of == id)
    }
}

/// The wait for the response to a request on the held connection `id`; dropped before the
/// response came, it hands the wait back.
pub struct Sending<'a> {
    /// Where it goes if dropped.
    pub back: &'a Handback,
    /// The connection it was sent on.
    pub id: u64,
    /// The response future.
    pub waiting: Option<Waiting>,
}

impl Future for Sending<'_> {
    type Output = Result<Response<Incoming>, TrySendError<Request<UpBody>>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(w) = this.waiting.as_mut() else {
            return Poll::Pending;
        };
        let out = std::task::ready!(w.as_mut().poll(cx));
        this.waiting = None;
        Poll::Ready(out)
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.waiting.take() {
            self.back.put(self.id, Abandoned::Response(w));
        }
    }
}

/// A response body from the upstream on its way to the app. One from a held HTTP/1.1
/// connection, dropped before its end, hands the rest back. One from a shared h2 connection is
/// watched (a watchdog): an app that takes nothing of it for the idle timeout loses it.
pub struct Relay {
    body: Option<Incoming>,
    back: Option<(Arc<Handback>, u64)>,
    ended: bool,
    watch: Option<Arc<Watch>>,
}

/// A body from a shared h2 connection, and when its app last asked for more. An app that
/// stops reading stops hyper from polling the body; its stream keeps up to its window of the
/// connection's, and a few such streams would stall every other app's responses on that
/// connection. So a watchdog task resets the stream (drops the body: RST_STREAM, its window
/// comes back) once the app has asked for nothing for `idle`; the app's connection then ends
/// with the response cut.
struct Watch {
    body: Mutex<Option<Incoming>>,
    start: tokio::time::Instant,
    /// Milliseconds from `start` to the last poll of the body.
    polled: AtomicU64,
    /// Woken when the relay ends first.
    over: tokio::sync::Notify,
}

impl Watch {
    fn polled_now(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.polled.store(ms, Ordering::Relaxed);
    }

    /// Resets the stream when the body has not been polled for `idle` (or the relay ended).
    async fn guard(self: Arc<Self>, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.polled.load(Ordering::Relaxed));
            if last.elapsed() >= idle {
                break;
            }
            tokio::select! {
                () = self.over.notified() => return,
                () = tokio::time::sleep_until(last + idle) => {}
            }
        }
        if lock(&self.body).take().is_some() {
            tracing::info!(
                "an app read nothing of its response from a shared h2 connection for {} ms: \
                 its stream was reset",
                idle.as_millis()
            );
        }
    }
}

impl Relay {
    /// A body from the held connection `id`.
    pub fn held(body: Incoming, back: &Arc<Handback>, id: u64) -> Relay {
        Relay {
            body: Some(body),
            back: Some((Arc::clone(back), id)),
            ended: false,
            watch: None,
        }
    }

    /// A body from a shared h2 connection (dropping it resets only its stream), reset if its
    /// app asks for nothing of it for `idle` (its watchdog). Spawns the watchdog on the current
    /// runtime; an empty body needs none.
    pub fn shared(body: Incoming, idle: Duration) -> Relay {
        if body.is_end_stream() {
            return Relay {
                body: Some(body),
                back: None,
                ended: false,
                watch: None,
            };
        }
        let watch = Arc::new(Watch {
            body: Mutex::new(Some(body)),
            start: tokio::time::Instant::now(),
            polled: AtomicU64::new(0),
            over: tokio::sync::Notify::new(),
        });
        tokio::spawn(Arc::clone(&watch).guard(idle));
        Relay {
            body: None,
            back: None,
            ended: false,
            watch: Some(watch),
        }
    }
}

/// Why a shared body ended early: the app read nothing of it for the idle timeout.
#[derive(Debug)]
pub struct Unread;

impl std::fmt::Display for Unread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "the app read nothing of the response for the idle timeout: its stream was reset",
        )
    }
}

impl std::error::Error for Unread {}

/// A frame of a body, or how it ended.
type Polled = Poll<Option<Result<Frame<Bytes>, hyper::Error>>>;

fn poll_body(body: &mut Incoming, ended: &mut bool, cx: &mut Context<'_>) -> Polled {
    let out = std::task::ready!(Pin::new(body).poll_frame(cx));
    if !matches!(out, Some(Ok(_))) {
        // The end, or an error (the connection is broken then: nothing to hand back).
        *ended = true;
    }
    Poll::Ready(out)
}

impl Body for Relay {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let out = match (&this.watch, this.body.as_mut()) {
            (Some(w), _) => {
                w.polled_now();
                match lock(&w.body).as_mut() {
                    Some(body) => poll_body(body, &mut this.ended, cx),
                    None if this.ended => return Poll::Ready(None),
                    None => return Poll::Ready(Some(Err(Box::new(Unread)))),
                }
            }
            (None, Some(body)) => poll_body(body, &mut this.ended, cx),
            (None, None) => return Poll::Ready(None),
        };
        out.map(|o| o.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        match &self.watch {
            Some(w) => lock(&w.body).as_ref().is_some_and(Body::is_end_stream),
            None => self.body.as_ref().is_none_or(Body::is_end_stream),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let hint =
            |b: Option<&Incoming>| b.map_or_else(|| SizeHint::with_exact(0), Body::size_hint);
        match &self.watch {
            Some(w) => hint(lock(&w.body).as_ref()),
            None => hint(self.body.as_ref()),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(w) = self.watch.take() {
            // The stream is reset (or was over) here, not when the watchdog wakes.
            drop(lock(&w.body).take());
            w.over.notify_one();
            return;
        }
        if self.ended {
            return;
        }
        let Some(body) = self.body.take().filter(|b| !b.is_end_stream()) else {
            return;
        };
        if let Some((back, id)) = self.back.take() {
            back.put(id, Abandoned::Body(body));
        }
    }
}

/// Reads the rest of an abandoned exchange on `conn`'s connection, discarding it: the response
/// (if it has not come), then its body, up to [`DRAIN_BYTES`]. `conn` polls the connection
/// (`true` once it has ended) and `ready` tells when it can take another request; it is run
/// until then, or until it cannot be (an error, a body too long, the connection closed).
/// The caller bounds it in time.
pub async fn drain(
    left: Abandoned,
    mut conn: impl FnMut(&mut Context<'_>) -> bool,
    mut ready: impl FnMut(&mut Context<'_>) -> Poll<bool>,
) -> bool {
    let exchange = async move {
        let mut body = match left {
            Abandoned::Response(w) => match w.await {
                Ok(res) => res.into_body(),
                Err(_) => return false,
            },
            Abandoned::Body(b) => b,
        };
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return false;
            };
            seen = seen.saturating_add(frame.data_ref().map_or(0, Bytes::len));
            if seen > DRAIN_BYTES {
                return false;
            }
        }
        true
    };
    let mut exchange = std::pin::pin!(exchange);
    let mut read = None;
    std::future::poll_fn(|cx| {
        if read.is_none() {
            if let Poll::Ready(ok) = exchange.as_mut().poll(cx) {
                read = Some(ok);
            }
        }
        // Polled after the exchange: it may have asked for more of the body, or finished it.
        if conn(cx) {
            return Poll::Ready(false);
        }
        match read {
            None => Poll::Pending,
            Some(false) => Poll::Ready(false),
            Some(true) => ready(cx),
        }
    })
    .await
}
