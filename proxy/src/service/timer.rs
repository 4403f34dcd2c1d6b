//! The request timeout of one app connection: one timer, moved forward for each request (its
//! requests come one at a time). tokio moves a registered deadline later with one atomic
//! operation, where a timer per request is put in and taken out of the timer wheel every time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::lock;

/// The app connection's request timer.
#[derive(Default)]
pub struct RequestTimer(Mutex<Option<Pin<Box<Sleep>>>>);

impl RequestTimer {
    /// Runs `fut` (pinned by the caller: a request's future is large, and is not copied into
    /// this one) for at most `limit`; `None` when the time ran out first.
    pub async fn timed<F: Future>(
        &self,
        limit: Duration,
        mut fut: Pin<&mut F>,
    ) -> Option<F::Output> {
        let deadline = Instant::now() + limit;
        {
            let mut timer = lock(&self.0);
            match timer.as_mut() {
                Some(t) => t.as_mut().reset(deadline),
                None => *timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            let expired = lock(&self.0)
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

    /// The last request's deadline, or `cap` from now if that is sooner (or there was none).
    pub fn deadline_within(&self, cap: Duration) -> Instant {
        let cap = Instant::now() + cap;
        lock(&self.0)
            .as_ref()
            .map_or(cap, |t| t.deadline().min(cap))
    }
}
