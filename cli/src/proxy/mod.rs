//! `tls-fallback proxy`: an egress proxy that originates TLS through the fallback layer for apps
//! that send `http://` requests through it (forward mode) or point a base URL at it (upstream
//! mode). This module runs the listeners, the signals (SIGTERM/SIGINT drain, SIGHUP reload) and
//! the limits; the rules live in `route`, `headers` and `config`, the request path in `forward`.

pub mod admin;
pub mod config;
pub mod forward;
pub mod headers;
pub mod log;
pub mod route;
pub mod upstream;
pub mod via;

use std::process::ExitCode;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Semaphore;

pub use config::ProxyArgs;
use config::Settings;
use upstream::Upstreams;

/// How long requests in flight may take to finish after SIGTERM/SIGINT.
const DRAIN: Duration = Duration::from_secs(30);

/// The running configuration; replaced whole on SIGHUP.
pub struct Runtime {
    /// The settings.
    pub settings: Settings,
    /// The layers and clients.
    pub upstreams: Upstreams,
}

/// An error and its sources on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn say(msg: &str) {
    eprintln!("tls-fallback proxy: {msg}");
}

/// Runs the proxy until SIGTERM/SIGINT; exit 0 after a clean drain, 2 on bad configuration,
/// 1 when a listener cannot start.
pub async fn run(args: ProxyArgs) -> ExitCode {
    let settings = match config::resolve(&args) {
        Ok(s) => s,
        Err(e) => {
            say(&format!("error: {e}"));
            return ExitCode::from(2);
        }
    };
    let upstreams = match Upstreams::build(&settings, None) {
        Ok(u) => u,
        Err(e) => {
            say(&format!("error: {e}"));
            return ExitCode::from(2);
        }
    };
    match serve(
        args,
        Runtime {
            settings,
            upstreams,
        },
    )
    .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(&format!("error: {e}"));
            ExitCode::from(1)
        }
    }
}

async fn bind(what: &str, addr: std::net::SocketAddr) -> Result<TcpListener, String> {
    let l = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))?;
    if !addr.ip().is_loopback() {
        say(&format!(
            "warning: the {what} listener is on {addr}, reachable from the network"
        ));
    }
    Ok(l)
}

async fn serve(args: ProxyArgs, rt: Runtime) -> Result<(), String> {
    let metrics = admin::install_recorder()?;
    let listener = bind("proxy", rt.settings.listen).await?;
    let admin_listener = match rt.settings.admin {
        Some(a) => {
            let l = bind("admin", a).await?;
            if let Ok(local) = l.local_addr() {
                say(&format!("admin on {local}"));
            }
            Some(l)
        }
        None => None,
    };
    let limits = rt.settings.limits.clone();
    let shared = Arc::new(RwLock::new(Arc::new(rt)));
    let upkeep = spawn_upkeep(metrics.clone());
    let admin_task =
        admin_listener.map(|l| tokio::spawn(admin::serve(l, Arc::clone(&shared), metrics)));
    let sig = |k: SignalKind| signal(k).map_err(|e| format!("cannot watch signals: {e}"));
    let (mut term, mut int, mut hup) = (
        sig(SignalKind::terminate())?,
        sig(SignalKind::interrupt())?,
        sig(SignalKind::hangup())?,
    );
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    say(&format!("listening on {local}"));
    let graceful = GracefulShutdown::new();
    let conns = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&conns).acquire_owned() => p.map_err(|e| e.to_string())?,
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => { reload(&args, &shared); continue; }
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => { reload(&args, &shared); continue; }
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                say(&format!("accept failed: {e}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let rt = match shared.read() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        };
        spawn_connection(&graceful, tcp, rt, permit);
    }
    drop(listener);
    say("stopping: no new connections; waiting for requests in flight");
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        say("requests still in flight after 30 s: stopping anyway");
    }
    if let Some(t) = admin_task {
        t.abort();
    }
    upkeep.abort();
    log::flush();
    flush(&shared);
    Ok(())
}

/// Every second: the histograms' upkeep (they keep samples until it runs; without the
/// exporter's own listener nothing else runs it) and the access log's flush.
fn spawn_upkeep(
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            metrics.run_upkeep();
            log::flush();
        }
    })
}

/// Serves one app connection (HTTP/1.1, keep-alive, bounded head and idle time) in a task
/// the drain waits for; the connection slot is freed when it ends.
fn spawn_connection(
    graceful: &GracefulShutdown,
    tcp: tokio::net::TcpStream,
    rt: Arc<Runtime>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let _ = tcp.set_nodelay(true);
    let limits = rt.settings.limits.clone();
    let svc = hyper::service::service_fn(move |req| {
        let rt = Arc::clone(&rt);
        async move { Ok::<_, std::convert::Infallible>(forward::handle(rt, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(true)
        .serve_connection(TokioIo::new(tcp), svc);
    let watched = graceful.watch(conn);
    tokio::spawn(async move {
        let _ = watched.await;
        drop(permit);
    });
}

/// SIGHUP: re-read the configuration; a bad one is logged and the running one stays.
fn reload(args: &ProxyArgs, shared: &RwLock<Arc<Runtime>>) {
    let Some(path) = &args.config else {
        say("SIGHUP: no --config file to re-read; nothing changed");
        return;
    };
    let current = match shared.read() {
        Ok(g) => Arc::clone(&g),
        Err(p) => Arc::clone(&p.into_inner()),
    };
    let next = config::resolve(args).and_then(|s| {
        let u = Upstreams::build(&s, Some(&current.upstreams))?;
        Ok(Runtime {
            settings: s,
            upstreams: u,
        })
    });
    match next {
        Err(e) => say(&format!("SIGHUP: {e}; keeping the running configuration")),
        Ok(next) => {
            if next.settings.listen != current.settings.listen
                || next.settings.admin != current.settings.admin
            {
                say("SIGHUP: listen and admin addresses change only on restart");
            }
            match shared.write() {
                Ok(mut g) => *g = Arc::new(next),
                Err(p) => *p.into_inner() = Arc::new(next),
            }
            say(&format!("SIGHUP: reloaded {}", path.display()));
        }
    }
}

fn flush(shared: &RwLock<Arc<Runtime>>) {
    let rt = match shared.read() {
        Ok(g) => Arc::clone(&g),
        Err(p) => Arc::clone(&p.into_inner()),
    };
    for b in rt.upstreams.all() {
        if let Err(e) = b.layer.flush() {
            say(&format!("cannot write the decision cache: {e}"));
        }
    }
}
