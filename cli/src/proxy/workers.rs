//! The proxy's workers: threads, each with a single-threaded runtime and its own handle on the
//! proxy's listening socket (whichever worker is free accepts a new app connection), as
//! nginx's worker processes. An app connection, its requests and the upstream connection it
//! uses stay on one thread from accept to close. The main runtime keeps the signals, the admin
//! listener and the reloads.
//!
//! Stopping: [`Workers::stop`] closes the listeners, asks every connection to finish its
//! request in flight and close, and waits (up to a deadline) until every connection slot is
//! free again.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::{current, forward, pool, say, Runtime};

/// The most workers `--workers` takes.
pub const MAX_WORKERS: usize = 256;

/// The default number of workers: one per core.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_WORKERS))
}

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

/// Binds the proxy address once; every worker gets its own handle on the socket (the first
/// worker free to accept takes a new connection, so a busy worker takes fewer).
pub fn bind(addr: SocketAddr, n: usize) -> Result<Vec<std::net::TcpListener>, String> {
    let fail = |e: std::io::Error| format!("cannot listen on {addr} (proxy): {e}");
    let first = std::net::TcpListener::bind(addr).map_err(fail)?;
    first.set_nonblocking(true).map_err(fail)?;
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
        shared: Arc<RwLock<Arc<Runtime>>>,
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
        let mut threads = Vec::new();
        for (i, l) in listeners.into_iter().enumerate() {
            let w = Worker {
                index: i,
                shared: Arc::clone(&shared),
                conns: Arc::clone(&conns),
                stop: stop.subscribe(),
                done: done.subscribe(),
            };
            let t = std::thread::Builder::new()
                .name(format!("proxy-worker-{i}"))
                .spawn(move || w.run(l))
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

/// What an app connection's requests share.
struct Conn {
    rt: Arc<Runtime>,
    slot: Arc<pool::Slot>,
}

/// What one worker thread needs.
struct Worker {
    index: usize,
    shared: Arc<RwLock<Arc<Runtime>>>,
    conns: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    done: watch::Receiver<bool>,
}

impl Worker {
    fn run(self, listener: std::net::TcpListener) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                say(&format!(
                    "worker {}: cannot start its runtime: {e}",
                    self.index
                ));
                return;
            }
        };
        pool::set_worker(self.index);
        rt.block_on(async move {
            match TcpListener::from_std(listener) {
                Ok(l) => self.accept(l).await,
                Err(e) => say(&format!("worker {}: cannot listen: {e}", self.index)),
            }
            // Keep serving the connections in flight until the drain is over.
            let mut done = self.done.clone();
            stopped(&mut done).await;
        });
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
                Ok((tcp, _)) => self.serve(tcp, permit),
                Err(e) => {
                    say(&format!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Serves one app connection (HTTP/1.1, keep-alive, bounded head and idle time) in a task
    /// of this worker; its slot is freed when it ends. On stop, it finishes the request in
    /// flight and closes.
    fn serve(&self, tcp: tokio::net::TcpStream, permit: OwnedSemaphorePermit) {
        let _ = tcp.set_nodelay(true);
        // What the connection's requests share: cloned per request, this Arc's count is this
        // connection's alone (the configuration's own count is shared by every thread).
        let ctx = Arc::new(Conn {
            rt: current(&self.shared),
            slot: Arc::default(),
        });
        let limits = ctx.rt.settings.limits.clone();
        let per_request = Arc::clone(&ctx);
        let svc = hyper::service::service_fn(move |req| {
            let c = Arc::clone(&per_request);
            async move { Ok::<_, std::convert::Infallible>(forward::handle(&c.rt, &c.slot, req).await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.idle_timeout)
            .max_buf_size(limits.max_header_bytes)
            .keep_alive(true)
            .serve_connection(TokioIo::new(tcp), svc);
        let mut stop = self.stop.clone();
        tokio::spawn(async move {
            let stop = async move { stopped(&mut stop).await };
            let _ = pool::drive(conn, &ctx.slot, stop, |c| c.graceful_shutdown()).await;
            drop(permit);
        });
    }
}

/// Waits until the flag is set (or its sender is gone).
async fn stopped(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|s| *s).await.map(|_| ());
}
