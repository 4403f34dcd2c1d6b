//! Several futures in one task, each polled only when it asked to be: an app connection, the
//! upstream connection it holds, and the wait for the stop signal.
//!
//! Each future gets its own waker (a bit in the [`Hub`]). A poll of the task polls the futures
//! whose bit is set, in turns, until none is set. A future that wakes another one while the
//! task is being polled (the app side hands a request to the upstream connection, which hands
//! the response back) only sets its bit: the loop sees it, and the task is not scheduled again
//! for nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use atomic_waker::AtomicWaker;

/// The app connection's future.
pub const APP: u8 = 1;
/// The held upstream connection.
pub const CONN: u8 = 2;
/// The stop signal.
pub const STOP: u8 = 4;

/// Turns of the loop in one poll before the task yields to the others of its thread.
const TURNS: usize = 16;

/// What the futures of one task share: which asked to be polled, and the task.
pub struct Hub {
    woken: AtomicU8,
    /// Set while [`drive`] polls: a wake then is seen by its loop.
    polling: AtomicBool,
    task: AtomicWaker,
}

impl Hub {
    /// A hub with every future due for its first poll.
    pub fn new() -> Arc<Hub> {
        Arc::new(Hub {
            woken: AtomicU8::new(APP | CONN | STOP),
            polling: AtomicBool::new(false),
            task: AtomicWaker::new(),
        })
    }

    /// The waker of the future `bit`.
    pub fn waker(self: &Arc<Self>, bit: u8) -> Waker {
        Waker::from(Arc::new(Sub {
            hub: Arc::clone(self),
            bit,
        }))
    }

    /// Marks the future `bit` due; wakes the task unless it is being polled.
    pub fn wake(&self, bit: u8) {
        // SeqCst on both sides: either `drive` sees the bit before it returns, or this sees
        // that it is no longer polling and wakes the task.
        self.woken.fetch_or(bit, SeqCst);
        if !self.polling.load(SeqCst) {
            self.task.wake();
        }
    }
}

struct Sub {
    hub: Arc<Hub>,
    bit: u8,
}

impl Wake for Sub {
    fn wake(self: Arc<Self>) {
        self.hub.wake(self.bit);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.hub.wake(self.bit);
    }
}

/// Runs `app` to its end, polling `side` (with the [`CONN`] waker) when it was woken, and
/// `stop` until it is over: then `on_stop` is called once on `app` (to begin a graceful
/// shutdown) and `app` is still run to its end.
pub async fn drive<F, S>(
    hub: &Arc<Hub>,
    app: F,
    mut side: impl FnMut(&mut Context<'_>),
    stop: S,
    on_stop: impl FnOnce(Pin<&mut F>),
) -> F::Output
where
    F: Future,
    S: Future<Output = ()>,
{
    let mut app = std::pin::pin!(app);
    let mut stop = std::pin::pin!(stop);
    let mut on_stop = Some(on_stop);
    let (app_waker, conn_waker, stop_waker) = (hub.waker(APP), hub.waker(CONN), hub.waker(STOP));
    std::future::poll_fn(|cx| {
        hub.task.register(cx.waker());
        hub.polling.store(true, SeqCst);
        for _ in 0..TURNS {
            let mut woken = hub.woken.swap(0, SeqCst);
            if woken & STOP != 0 && on_stop.is_some() {
                let mut scx = Context::from_waker(&stop_waker);
                if stop.as_mut().poll(&mut scx).is_ready() {
                    if let Some(f) = on_stop.take() {
                        f(app.as_mut());
                    }
                    woken |= APP;
                }
            }
            if woken & APP != 0 {
                if let Poll::Ready(out) = app.as_mut().poll(&mut Context::from_waker(&app_waker)) {
                    hub.polling.store(false, SeqCst);
                    return Poll::Ready(out);
                }
            }
            if woken & CONN != 0 {
                side(&mut Context::from_waker(&conn_waker));
            }
            if hub.woken.load(SeqCst) == 0 {
                hub.polling.store(false, SeqCst);
                // A wake between the load and the store above found `polling` still set.
                if hub.woken.load(SeqCst) == 0 {
                    return Poll::Pending;
                }
                hub.polling.store(true, SeqCst);
            }
        }
        hub.polling.store(false, SeqCst);
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::sync::atomic::AtomicUsize;

    /// A task waker that counts its wakes.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    fn task() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (Arc::clone(&c), Waker::from(c))
    }

    /// A future that is pending `n` times and keeps the waker it was given.
    fn pending_times<'a>(
        n: usize,
        polls: &'a Cell<usize>,
        keep: &'a Cell<Option<Waker>>,
    ) -> impl Future<Output = ()> + 'a {
        std::future::poll_fn(move |cx| {
            polls.set(polls.get() + 1);
            keep.set(Some(cx.waker().clone()));
            if polls.get() > n {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    #[test]
    fn futures_are_polled_only_when_woken_and_wakes_during_a_poll_do_not_wake_the_task() {
        let hub = Hub::new();
        let (count, waker) = task();
        let mut cx = Context::from_waker(&waker);
        let (app_polls, side_polls) = (Cell::new(0), Cell::new(0));
        let app_w = Cell::new(None);
        let side_w = Cell::new(None::<Waker>);
        let app = pending_times(2, &app_polls, &app_w);
        let side = |cx: &mut Context<'_>| {
            side_polls.set(side_polls.get() + 1);
            // The side wakes the app while the task is being polled, once.
            if side_polls.get() == 2 {
                if let Some(w) = app_w.take() {
                    w.wake();
                }
            }
            side_w.set(Some(cx.waker().clone()));
        };
        let d = drive(&hub, app, side, std::future::pending(), |_| {});
        let mut d = std::pin::pin!(d);
        // First poll: every future once; nothing woken after that.
        assert!(d.as_mut().poll(&mut cx).is_pending());
        assert_eq!((app_polls.get(), side_polls.get()), (1, 1));
        // Nothing woke: a spurious poll polls nothing.
        assert!(d.as_mut().poll(&mut cx).is_pending());
        assert_eq!((app_polls.get(), side_polls.get()), (1, 1));
        assert_eq!(count.0.load(SeqCst), 0);
        // The side wakes from outside (its socket): the task is woken once; the side, polled,
        // wakes the app, which is polled in the same poll without another task wake.
        side_w.take().unwrap().wake();
        assert_eq!(count.0.load(SeqCst), 1);
        assert!(d.as_mut().poll(&mut cx).is_pending());
        assert_eq!((app_polls.get(), side_polls.get()), (2, 2));
        assert_eq!(count.0.load(SeqCst), 1);
        // The app wakes from outside and ends.
        app_w.take().unwrap().wake();
        assert_eq!(count.0.load(SeqCst), 2);
        assert!(d.as_mut().poll(&mut cx).is_ready());
        assert_eq!((app_polls.get(), side_polls.get()), (3, 2));
    }

    #[test]
    fn the_stop_is_polled_until_over_then_on_stop_runs_once_and_the_app_runs_to_its_end() {
        let hub = Hub::new();
        let (_count, waker) = task();
        let mut cx = Context::from_waker(&waker);
        let (app_polls, stop_polls, stopped) = (Cell::new(0), Cell::new(0), Cell::new(0));
        let app_w = Cell::new(None);
        let stop_w = Cell::new(None::<Waker>);
        let app = pending_times(2, &app_polls, &app_w);
        let stop = std::future::poll_fn(|cx| {
            stop_polls.set(stop_polls.get() + 1);
            stop_w.set(Some(cx.waker().clone()));
            if stop_polls.get() >= 2 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        let d = drive(&hub, app, |_| {}, stop, |_| stopped.set(stopped.get() + 1));
        let mut d = std::pin::pin!(d);
        assert!(d.as_mut().poll(&mut cx).is_pending());
        // The app woke itself: the stop is not polled again.
        app_w.take().unwrap().wake();
        assert!(d.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            (app_polls.get(), stop_polls.get(), stopped.get()),
            (2, 1, 0)
        );
        // The stop fires: on_stop runs and the app is polled (it ends).
        stop_w.take().unwrap().wake();
        assert!(d.as_mut().poll(&mut cx).is_ready());
        assert_eq!(
            (app_polls.get(), stop_polls.get(), stopped.get()),
            (3, 2, 1)
        );
    }

    #[test]
    fn a_busy_future_yields_after_a_bounded_number_of_turns() {
        let hub = Hub::new();
        let (count, waker) = task();
        let mut cx = Context::from_waker(&waker);
        let polls = Cell::new(0);
        // Wakes itself on every poll, never ends.
        let app = std::future::poll_fn(|cx: &mut Context<'_>| {
            polls.set(polls.get() + 1);
            cx.waker().wake_by_ref();
            Poll::<()>::Pending
        });
        let d = drive(&hub, app, |_| {}, std::future::pending(), |_| {});
        let mut d = std::pin::pin!(d);
        assert!(d.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polls.get(), TURNS);
        // It yielded with the task woken, so the others of the thread get their turn.
        assert_eq!(count.0.load(SeqCst), 1);
    }
}
