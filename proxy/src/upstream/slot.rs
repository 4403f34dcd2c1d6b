//! The HTTP/1.1 upstream connection an app connection holds (its [`Slot`]), polled inside the
//! app connection's task next to the app side, so a request and its response never cross tasks
//! or threads on their way out and back, as in an event-loop proxy.
//!
//! What becomes of the held connection is decided in one place, as a value: [`at_end`] when the
//! app connection ends (park it for the next app connection, read an abandoned answer first,
//! or close it), [`Slot::held_for`] before each request (keep it, or let it go).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use hyper::Request;

use super::conn::{ConnInfo, Connections, UpBody, H1};
use super::drain::{self, Handback, Sending, Waiting};
use crate::lock;

/// What becomes of the held connection when its app connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Idle: parked for the next app connection to the same upstream.
    Park,
    /// An exchange was abandoned on it: read its answer (bounded), then park it.
    Drain,
    /// Closed.
    Close,
}

/// The rule, row by row: `left`, an exchange was abandoned on it (the app hung up before the
/// answer was read); `stopping`, the proxy is shutting down (no time to read an answer nobody
/// wants); `idle`, it can take another request now.
pub fn at_end(left: bool, stopping: bool, idle: bool) -> End {
    match (left, stopping, idle) {
        (true, true, _) => End::Close,
        (true, false, _) => End::Drain,
        (false, _, true) => End::Park,
        (false, _, false) => End::Close,
    }
}

/// The upstream connection an app connection holds.
pub struct Slot {
    state: Mutex<SlotState>,
    /// What an exchange on the held connection left when it was dropped unfinished.
    back: Arc<Handback>,
    /// Wakes the held connection's future in the app connection's task (a new connection
    /// must be polled to get going).
    conn_waker: Waker,
    /// The worker whose event loop drives the app connection (and so the held one).
    worker: usize,
}

#[derive(Default)]
struct SlotState {
    held: Option<Held>,
    next_id: u64,
}

struct Held {
    id: u64,
    authority: String,
    pool: Arc<Connections>,
    h1: H1,
}

impl Held {
    /// Parked if it can take another request, else closed.
    fn release(self, worker: usize) {
        if self.h1.send.is_ready() {
            self.pool.park(self.authority, self.h1, worker);
        }
    }
}

impl Slot {
    /// An empty slot for an app connection served by `worker`, whose task polls the held
    /// connection when `conn_waker` is woken.
    pub fn new(worker: usize, conn_waker: Waker) -> Slot {
        Slot {
            state: Mutex::default(),
            back: Arc::default(),
            conn_waker,
            worker,
        }
    }

    /// The worker serving this app connection.
    pub fn worker(&self) -> usize {
        self.worker
    }

    fn lock(&self) -> MutexGuard<'_, SlotState> {
        lock(&self.state)
    }

    /// Puts a connection in (letting go of the one held before) and returns its id.
    pub fn hold(&self, authority: &str, pool: &Arc<Connections>, h1: H1) -> u64 {
        let mut st = self.lock();
        st.next_id += 1;
        let id = st.next_id;
        let old = st.held.replace(Held {
            id,
            authority: authority.to_string(),
            pool: Arc::clone(pool),
            h1,
        });
        drop(st);
        if let Some(old) = old {
            // Whatever its last exchange left is dropped with it (it is not idle: closed).
            drop(self.back.take(old.id));
            old.release(self.worker);
        }
        self.conn_waker.wake_by_ref();
        id
    }

    /// The held connection's id, if it can serve the next request to this upstream of this
    /// pool: it is open, and no exchange was abandoned on it while this app connection goes on
    /// (hyper's server dropped a response body it would not write, e.g. past a Content-Length
    /// shorter than the body: nobody reads the rest, so it would never be ready again).
    /// Otherwise it is let go (parked if idle, else closed).
    pub fn held_for(&self, authority: &str, pool: &Arc<Connections>) -> Option<u64> {
        let mut st = self.lock();
        let usable = st.held.as_ref().filter(|h| {
            h.authority == authority
                && Arc::ptr_eq(&h.pool, pool)
                && !h.h1.send.is_closed()
                && !self.back.holds(h.id)
        });
        if let Some(h) = usable {
            return Some(h.id);
        }
        let old = st.held.take();
        drop(st);
        if let Some(old) = old {
            drop(self.back.take(old.id));
            old.release(self.worker);
        }
        None
    }

    /// Waits until connection `id` can take a request; `false` when it closed first.
    pub async fn ready(&self, id: u64) -> bool {
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
    pub fn send(
        &self,
        id: u64,
        req: &mut Option<Request<UpBody>>,
    ) -> Option<(Sending<'_>, Option<Arc<ConnInfo>>)> {
        let mut st = self.lock();
        let h = st.held.as_mut().filter(|h| h.id == id)?;
        let req = req.take()?;
        let info = h.h1.info.clone();
        let waiting: Waiting = Box::pin(h.h1.send.try_send_request(req));
        let sending = Sending {
            back: &self.back,
            id,
            waiting: Some(waiting),
        };
        Some((sending, info))
    }

    /// Where a response body from connection `id` hands back what is left if dropped early.
    pub fn handback(&self) -> &Arc<Handback> {
        &self.back
    }

    /// Polls the held connection; drops it when it has ended.
    pub fn poll_held(&self, cx: &mut Context<'_>) {
        let mut st = self.lock();
        let ended = match st.held.as_mut() {
            Some(h) => h.h1.conn.as_mut().poll(cx).is_ready(),
            None => false,
        };
        if ended {
            st.held = None;
        }
    }

    /// Drops the held connection: after a request timed out, its exchange is in an unknown
    /// state (the next request must not wait behind a response that may never come; hyper
    /// closes such a connection too, this does not depend on it).
    pub fn discard(&self) {
        let gone = self.lock().held.take();
        if let Some(h) = &gone {
            drop(self.back.take(h.id));
        }
        drop(gone);
    }

    /// At the end of the app connection: does what [`at_end`] says with the held connection.
    /// It is polled once first, so that it has taken in the end of its last response. An
    /// abandoned answer is read until `until` (the request's deadline, at most
    /// [`drain::DRAIN_TIME`] away) unless `stop` fires.
    pub async fn finish<S: Future<Output = ()>>(
        &self,
        stopping: bool,
        stop: Pin<&mut S>,
        until: tokio::time::Instant,
    ) {
        self.poll_held(&mut Context::from_waker(Waker::noop()));
        let Some(mut h) = self.lock().held.take() else {
            return;
        };
        let left = self.back.take(h.id);
        match at_end(left.is_some(), stopping, h.h1.send.is_ready()) {
            End::Close => {}
            End::Park => h.release(self.worker),
            End::Drain => {
                let Some(left) = left else { return };
                let H1 { send, conn, .. } = &mut h.h1;
                let drained = drain::drain(
                    left,
                    |cx| conn.as_mut().poll(cx).is_ready(),
                    |cx| send.poll_ready(cx).map(|r| r.is_ok()),
                );
                let ok = tokio::select! {
                    ok = tokio::time::timeout_at(until, drained) => ok.unwrap_or(false),
                    () = stop => false,
                };
                if ok {
                    h.release(self.worker);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_end_an_idle_connection_is_parked_an_abandoned_one_drained_unless_stopping() {
        // (exchange left, stopping, idle) -> what becomes of the connection
        let rows = [
            ((false, false, true), End::Park),
            ((false, true, true), End::Park),
            ((false, false, false), End::Close),
            ((false, true, false), End::Close),
            ((true, false, false), End::Drain),
            ((true, false, true), End::Drain),
            ((true, true, false), End::Close),
            ((true, true, true), End::Close),
        ];
        for ((left, stopping, idle), want) in rows {
            assert_eq!(
                at_end(left, stopping, idle),
                want,
                "left {left} stopping {stopping} idle {idle}"
            );
        }
    }
}
