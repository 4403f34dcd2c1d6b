//! `tls-fallback-proxy` (also `tls-fallback proxy`): an egress proxy that originates TLS through the fallback layer for apps
//! that send `http://` requests through it (forward mode) or point a base URL at it (upstream
//! mode). This module runs the listeners, the signals (SIGTERM/SIGINT drain, SIGHUP reload) and
//! the limits; the rules live in `route`, `headers` and `config`, the request path in `forward`.

pub mod admin;
pub mod config;
pub mod drive;
pub mod forward;
pub mod headers;
pub mod log;
pub mod pool;
pub mod relay;
pub mod route;
pub mod upstream;
pub mod workers;

use std::process::ExitCode;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

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

pub(crate) fn say(msg: &str) {
    eprintln!("tls-fallback proxy: {msg}");
}

/// Runs the proxy on this thread until SIGTERM/SIGINT (what both binaries call): the proxy
/// serves apps on worker threads of its own (`--workers`); this thread's runtime only keeps
/// the signals, the admin listener and the reloads (idle runtime threads next to the workers
/// cost them time). Exit codes as [`run`].
pub fn main(args: ProxyArgs) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run(args)),
        Err(e) => {
            say(&format!("error: cannot start the async runtime: {e}"));
            ExitCode::from(1)
        }
    }
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
    let listeners = workers::bind(rt.settings.listen, rt.settings.workers)?;
    if !rt.settings.listen.ip().is_loopback() {
        say(&format!(
            "warning: the proxy listener is on {}, reachable from the network",
            rt.settings.listen
        ));
    }
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
    let (max_connections, count) = (rt.settings.limits.max_connections, rt.settings.workers);
    let shared = Arc::new(RwLock::new(Arc::new(rt)));
    let upkeep = spawn_upkeep(metrics.clone(), Arc::clone(&shared));
    let admin_task =
        admin_listener.map(|l| tokio::spawn(admin::serve(l, Arc::clone(&shared), metrics)));
    let sig = |k: SignalKind| signal(k).map_err(|e| format!("cannot watch signals: {e}"));
    let (mut term, mut int, mut hup) = (
        sig(SignalKind::terminate())?,
        sig(SignalKind::interrupt())?,
        sig(SignalKind::hangup())?,
    );
    let workers = workers::Workers::start(listeners, Arc::clone(&shared), max_connections)?;
    say(&format!("{count} workers; listening on {}", workers.local));
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => reload(&args, &shared),
        }
    }
    say("stopping: no new connections; waiting for requests in flight");
    if !workers.stop(DRAIN).await {
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
/// exporter's own listener nothing else runs it), the access log's flush, and closing parked
/// upstream connections idle for too long.
fn spawn_upkeep(
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    shared: Arc<RwLock<Arc<Runtime>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            metrics.run_upkeep();
            log::flush();
            for b in current(&shared).upstreams.all() {
                b.pool.prune();
            }
        }
    })
}

/// The running configuration.
pub(crate) fn current(shared: &RwLock<Arc<Runtime>>) -> Arc<Runtime> {
    match shared.read() {
        Ok(g) => Arc::clone(&g),
        Err(p) => Arc::clone(&p.into_inner()),
    }
}

/// SIGHUP: re-read the configuration; a bad one is logged and the running one stays.
fn reload(args: &ProxyArgs, shared: &RwLock<Arc<Runtime>>) {
    let Some(path) = &args.config else {
        say("SIGHUP: no --config file to re-read; nothing changed");
        return;
    };
    let current = current(shared);
    let next = config::resolve(args)
        .map_err(|e| e.to_string())
        .and_then(|s| {
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
                || next.settings.workers != current.settings.workers
            {
                say("SIGHUP: listen and admin addresses and workers change only on restart");
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
    for b in current(shared).upstreams.all() {
        if let Err(e) = b.layer.flush() {
            say(&format!("cannot write the decision cache: {e}"));
        }
    }
}
