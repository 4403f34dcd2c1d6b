//! The proxy's workers: threads, each with a single-threaded runtime and its own handle on the
//! proxy's listening socket (whichever worker is free accepts a new app connection), as
//! nginx's worker processes. An app connection, its requests and the upstream connection it
//! uses stay on one thread from accept to close. The main runtime keeps the signals, the admin
//! listener and the reloads.
//!
//! Whichever worker accepts a connection, the one with the fewest open connections serves it
//! ([`least_loaded`]): the accepting worker hands it over otherwise. Who wins the race to
//! accept is chance (a burst of new connections can all land on one worker), and keep-alive
//! connections stay where they land, so without this one worker could serve 40 of 64 busy
//! connections for their whole life, and its queue set the tail latency.
//!
//! Stopping: [`Workers::stop`] closes the listeners, asks every connection to finish its
//! request in flight and close, and waits (up to a deadline) until every connection slot is
//! free again.
//!
//! Why threads of their own rather than one multi-threaded runtime: an app connection, the
//! upstream connection it holds and their wakes then stay on one thread and in one task
//! ([`hub`]), as in nginx's event loop: with two workers the proxy went from 0.52x to 0.89x
//! of nginx's requests/s (docs/BENCHMARKS.md), and to nginx's with the rest of the design.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Context;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, error, warn};

use super::hub::{self, Hub};
use crate::intercept::{self, Pending, Then};
use crate::route::Dest;
use crate::runtime::Shared;
use crate::service::{self, Conn, Worker as WorkerCtx};
use crate::upstream::drain::DRAIN_TIME;
use crate::upstream::slot::Slot;

/// The running workers.
pub struct Workers {
    threads: Vec<std::thread::JoinHandle<()>>,
    stop: watch::Sender<bool>,
    done: watch::Sender<bool>,
    conns: Arc<Semaphore>,
    slots: u32,
    /// Where they listen (the port filled in when the address asked for any).
    pub local: SocketAddr,
}

/// App connections that may wait to be accepted (nginx listens with 511).
pub const ACCEPT_QUEUE: i32 = 1024;

/// Binds the proxy address once; every worker gets its own handle on the socket (the first
/// worker free to accept takes a new connection, so a busy worker takes fewer).
pub fn bind(addr: SocketAddr, n: usize) -> Result<Vec<std::net::TcpListener>, String> {
    let fail = |e: std::io::Error| format!("cannot listen on {addr} (proxy): {e}");
    let first = std::net::TcpListener::bind(addr).map_err(fail)?;
    first.set_nonblocking(true).map_err(fail)?;
    // The standard library listens with a queue of 128; apps past `max_connections` wait in
    // it, and past it their connects are dropped and retried by their kernel (1 s, 3 s, ...).
    // Listening again sets the queue's length (Linux; the kernel caps it at somaxconn).
    // SAFETY: `listen` on a socket this function owns, with plain integer arguments.
    if unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&first), ACCEPT_QUEUE) } != 0 {
        return Err(fail(std::io::Error::last_os_error()));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 1..n {
        out.push(first.try_clone().map_err(fail)?);
    }
    out.insert(0, first);
    Ok(out)
}

impl Workers {
    /// Starts one worker per listener.
    pub fn start(
        listeners: Vec<std::net::TcpListener>,
        shared: Shared,
        crew: &[Arc<WorkerCtx>],
        max_connections: usize,
    ) -> Result<Workers, String> {
        let local = listeners
            .first()
            .and_then(|l| l.local_addr().ok())
            .ok_or("no listener")?;
        let slots = u32::try_from(max_connections).unwrap_or(u32::MAX >> 3);
        let conns = Arc::new(Semaphore::new(slots as usize));
        let (stop, _) = watch::channel(false);
        let (done, _) = watch::channel(false);
        let (inboxes, receivers): (Vec<_>, Vec<_>) =
            listeners.iter().map(|_| mpsc::unbounded_channel()).unzip();
        let balance = Arc::new(Balance {
            live: inboxes.iter().map(|_| AtomicUsize::new(0)).collect(),
            inboxes,
        });
        let mut threads = Vec::new();
        for (i, (l, inbox)) in listeners.into_iter().zip(receivers).enumerate() {
            let ctx = crew.get(i).cloned().ok_or("a worker without its context")?;
            let w = Worker {
                index: i,
                ctx,
                shared: shared.clone(),
                conns: Arc::clone(&conns),
                balance: Arc::clone(&balance),
                stop: stop.subscribe(),
                done: done.subscribe(),
            };
            let t = std::thread::Builder::new()
                .name(format!("proxy-worker-{i}"))
                .spawn(move || w.run(l, inbox))
                .map_err(|e| format!("cannot start a worker thread: {e}"))?;
            threads.push(t);
        }
        Ok(Workers {
            threads,
            stop,
            done,
            conns,
            slots,
            local,
        })
    }

    /// Stops accepting, lets requests in flight finish (up to `drain`), then ends the threads;
    /// `false` when connections were still open at the deadline.
    pub async fn stop(self, drain: Duration) -> bool {
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(drain, self.conns.acquire_many(self.slots))
            .await
            .is_ok();
        let _ = self.done.send(true);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        drained
    }
}

/// The worker that should serve a connection accepted by worker `me`, given how many each
/// serves: the one with the fewest, `me` on a tie (no hand-over for nothing).
pub fn least_loaded(live: &[usize], me: usize) -> usize {
    let mine = live.get(me).copied().unwrap_or(usize::MAX);
    let (best, fewest) = live
        .iter()
        .copied()
        .enumerate()
        .min_by_key(|&(_, n)| n)
        .unwrap_or((me, mine));
    if fewest < mine {
        best
    } else {
        me
    }
}

/// An accepted app connection on its way to the worker that serves it.
type Handover = (std::net::TcpStream, OwnedSemaphorePermit, Live);

/// The open connections of each worker, and the way to hand one a connection.
struct Balance {
    live: Vec<AtomicUsize>,
    inboxes: Vec<mpsc::UnboundedSender<Handover>>,
}

impl Balance {
    /// Picks the worker for a connection accepted by `me` and counts the connection there.
    fn pick(self: &Arc<Self>, me: usize) -> Live {
        let live: Vec<usize> = self
            .live
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect();
        self.count(least_loaded(&live, me))
    }

    /// Counts one more connection on `worker`.
    fn count(self: &Arc<Self>, worker: usize) -> Live {
        self.live[worker].fetch_add(1, Ordering::Relaxed);
        Live {
            balance: Arc::clone(self),
            worker,
        }
    }
}

/// One connection counted as open on `worker`, until this is dropped.
struct Live {
    balance: Arc<Balance>,
    worker: usize,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.balance.live[self.worker].fetch_sub(1, Ordering::Relaxed);
    }
}

/// What one worker thread needs.
struct Worker {
    index: usize,
    ctx: Arc<WorkerCtx>,
    shared: Shared,
    conns: Arc<Semaphore>,
    balance: Arc<Balance>,
    stop: watch::Receiver<bool>,
    done: watch::Receiver<bool>,
}

impl Worker {
    fn run(self, listener: std::net::TcpListener, inbox: mpsc::UnboundedReceiver<Handover>) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                error!("worker {}: cannot start its runtime: {e}", self.index);
                return;
            }
        };
        rt.block_on(async {
            let serving = async {
                match TcpListener::from_std(listener) {
                    Ok(l) => self.accept(l).await,
                    Err(e) => error!("worker {}: cannot listen: {e}", self.index),
                }
                // Keep serving the connections in flight until the drain is over.
                let mut done = self.done.clone();
                stopped(&mut done).await;
            };
            tokio::select! {
                () = serving => {}
                () = self.take_over(inbox) => {}
            }
        });
        // The connections still open are dropped with the runtime: the proxy cut them.
        self.ctx.cut_off.store(true, Ordering::Relaxed);
        drop(rt);
    }

    /// Serves the connections other workers accepted and handed to this one (it ends with
    /// the worker: the other workers keep their senders until then).
    async fn take_over(&self, mut inbox: mpsc::UnboundedReceiver<Handover>) {
        while let Some((tcp, permit, live)) = inbox.recv().await {
            match tokio::net::TcpStream::from_std(tcp) {
                Ok(tcp) => self.serve(tcp, permit, live),
                Err(e) => error!("worker {}: cannot take a connection: {e}", self.index),
            }
        }
    }

    /// Serves a connection this worker accepted here, or hands it to a worker with fewer.
    fn place(&self, tcp: tokio::net::TcpStream, permit: OwnedSemaphorePermit) {
        let live = self.balance.pick(self.index);
        if live.worker == self.index {
            return self.serve(tcp, permit, live);
        }
        // Off this worker's event loop, to be registered with the other one's.
        let std = match tcp.into_std() {
            Ok(s) => s,
            Err(e) => return error!("cannot hand a connection over: {e}"),
        };
        let to = live.worker;
        if let Err(mpsc::error::SendError((std, permit, live))) =
            self.balance.inboxes[to].send((std, permit, live))
        {
            // That worker has ended (its runtime failed to start): serve it here after all.
            drop(live);
            let live = self.balance.count(self.index);
            match tokio::net::TcpStream::from_std(std) {
                Ok(tcp) => self.serve(tcp, permit, live),
                Err(e) => error!("cannot take a connection back: {e}"),
            }
        }
    }

    async fn accept(&self, listener: TcpListener) {
        let mut stop = self.stop.clone();
        loop {
            let permit = tokio::select! {
                p = Arc::clone(&self.conns).acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
                _ = stopped(&mut stop) => return,
            };
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stopped(&mut stop) => return,
            };
            match accepted {
                Ok((tcp, _)) => self.place(tcp, permit),
                Err(e) => {
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Serves one app connection (HTTP/1.1, keep-alive, bounded head and idle time) in a task
    /// of this worker; its slot is freed when it ends. On stop, it finishes the request in
    /// flight and closes. A `CONNECT` answered 200 goes on in the same task and slot: the
    /// requests inside an intercepted one, or a byte tunnel.
    fn serve(&self, tcp: tokio::net::TcpStream, permit: OwnedSemaphorePermit, live: Live) {
        let _ = tcp.set_nodelay(true);
        let app = AppConn {
            index: self.index,
            worker: Arc::clone(&self.ctx),
            shared: self.shared.clone(),
            stop: self.stop.clone(),
        };
        tokio::spawn(async move {
            if let Some(next) = app.http(TokioIo::new(tcp), None).await {
                app.after_connect(next).await;
            }
            drop((permit, live));
        });
    }
}

/// What serving one app connection needs from its worker.
struct AppConn {
    index: usize,
    worker: Arc<WorkerCtx>,
    shared: Shared,
    stop: watch::Receiver<bool>,
}

impl AppConn {
    /// Serves HTTP/1.1 on `io` until it closes (`inside`: the requests of an intercepted
    /// `CONNECT` to that upstream); what a `CONNECT` answered 200 handed over, if one did.
    async fn http<I>(&self, io: I, inside: Option<Arc<Dest>>) -> Option<Pending>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let hub = Hub::new();
        // What the connection's requests share: cloned per request, this Arc's count is this
        // connection's alone (the configuration's own count is shared by every thread).
        let slot = Slot::new(self.index, hub.waker(hub::CONN));
        let ctx = Arc::new(Conn::new(
            &self.shared,
            Arc::clone(&self.worker),
            slot,
            inside,
        ));
        let limits = ctx.rt.settings.limits.clone();
        let per_request = Arc::clone(&ctx);
        let svc = hyper::service::service_fn(move |req| {
            let c = Arc::clone(&per_request);
            async move { Ok::<_, std::convert::Infallible>(service::handle(&c, req).await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.idle_timeout)
            .max_buf_size(limits.max_header_bytes)
            // The head's exact size as the parser read it, however it arrived: 431 past it.
            .max_header_size(limits.max_header_bytes)
            .keep_alive(true)
            .serve_connection(io, svc)
            .with_upgrades();
        let mut stop = self.stop.clone();
        let stop = async move { stopped(&mut stop).await };
        let _ = run_connection(&hub, conn, &ctx, stop, |c| c.graceful_shutdown()).await;
        ctx.take_pending()
    }

    /// Runs what a `CONNECT` handed over once hyper gives the socket back: the app's TLS and
    /// its requests (intercepted), or the byte relay (tunnel).
    async fn after_connect(&self, next: Pending) {
        let upgraded = match next.on.await {
            Ok(u) => TokioIo::new(u),
            // The app went away before the 200 was sent.
            Err(e) => return debug!("CONNECT: no tunnel: {e}"),
        };
        let idle = self.shared.load().settings.limits.idle_timeout;
        match next.then {
            Then::Intercept { dest, leaf } => {
                match intercept::accept(&leaf, upgraded, idle).await {
                    Ok(tls) => {
                        self.http(TokioIo::new(tls), Some(dest)).await;
                    }
                    Err(e) if warn_now() => warn!(
                        "CONNECT {}: the app's TLS handshake failed: {e} (does the app trust the \
                         interception CA?)",
                        dest.authority
                    ),
                    Err(e) => debug!(
                        "CONNECT {}: the app's TLS handshake failed: {e}",
                        dest.authority
                    ),
                }
            }
            Then::Tunnel { upstream, .. } => {
                let mut stop = self.stop.clone();
                let stop = async move { stopped(&mut stop).await };
                intercept::tunnel::relay(upgraded, upstream, idle, stop).await;
            }
        }
    }
}

/// Runs an app connection's future and the upstream connection its slot holds in one task,
/// each polled only when it was woken (an idle upstream connection is not read again for every
/// app request), and `stop` beside them (see [`hub::drive`]); at the end, the slot decides
/// what becomes of the upstream connection ([`Slot::finish`]).
async fn run_connection<F, S>(
    hub: &Arc<Hub>,
    app: F,
    conn: &Conn,
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
    let side = |cx: &mut Context<'_>| conn.slot.poll_held(cx);
    let out = hub::drive(hub, app, side, stop.as_mut(), on_stop).await;
    // `stop` is polled again only if it has not fired.
    let until = conn.timer.deadline_within(DRAIN_TIME);
    conn.slot
        .finish(stopped.load(Ordering::Relaxed), stop, until)
        .await;
    out
}

/// Whether a warning about apps' failed TLS handshakes may be logged now: at most one every
/// [`WARN_EVERY`] in the process (the rest at DEBUG): an app that does not trust the CA fails
/// on every connection, and each line would be the same.
fn warn_now() -> bool {
    static LAST: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    let mut last = crate::lock(&LAST);
    if last.is_some_and(|t| t.elapsed() < WARN_EVERY) {
        return false;
    }
    *last = Some(std::time::Instant::now());
    true
}

/// The least time between two warnings about apps' failed TLS handshakes.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Waits until the flag is set (or its sender is gone).
async fn stopped(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|s| *s).await.map(|_| ());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_goes_to_the_worker_with_the_fewest_and_stays_on_a_tie() {
        // (open connections per worker, the accepting worker) -> the serving worker
        let rows: [(&[usize], usize, usize); 9] = [
            (&[0], 0, 0),
            (&[0, 0], 1, 1),
            (&[3, 3], 0, 0),
            (&[4, 3], 0, 1),
            (&[3, 4], 0, 0),
            (&[40, 24], 0, 1),
            (&[5, 2, 2], 0, 1),
            (&[5, 2, 2], 2, 2),
            // An index past the end (not a worker) serves nowhere else but where it is.
            (&[1, 1], 7, 0),
        ];
        for (live, me, want) in rows {
            assert_eq!(least_loaded(live, me), want, "{live:?} accepted by {me}");
        }
    }
}
