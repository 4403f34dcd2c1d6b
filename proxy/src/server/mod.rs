//! The proxy process: it reads the configuration, installs the `tracing` subscriber and the
//! metrics recorder, binds the listeners, starts the [`workers`], and then waits for signals:
//! SIGHUP re-reads the configuration (a bad one is logged and the running one stays), SIGTERM
//! and SIGINT stop accepting and drain the requests in flight (up to [`DRAIN`]). An upkeep
//! task runs every second beside them.

pub mod hub;
pub mod workers;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

use crate::config::{self, ProxyArgs};
use crate::observe::{self, meters};
use crate::runtime::{self, Runtime, Shared};
use crate::service::Worker;
use crate::upstream::Upstreams;

/// How long requests in flight may take to finish after SIGTERM/SIGINT.
pub const DRAIN: Duration = Duration::from_secs(30);

/// Runs the proxy until SIGTERM/SIGINT; exit 0 after a clean drain, 2 on bad configuration,
/// 1 when a listener cannot start.
pub async fn run(args: ProxyArgs) -> ExitCode {
    // The subscriber takes the configured format, so a configuration error comes first, on
    // stderr as it is.
    let settings = match config::resolve(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tls-fallback proxy: error: {e}");
            return ExitCode::from(2);
        }
    };
    observe::init_tracing(settings.log_format, "info");
    let upstreams = match Upstreams::build(&settings, None) {
        Ok(u) => u,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(2);
        }
    };
    let rt = Runtime {
        settings,
        upstreams,
    };
    match serve(args, rt).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::from(1)
        }
    }
}

/// Binds the admin listener, warning when it is reachable from the network.
async fn bind_admin(addr: std::net::SocketAddr) -> Result<TcpListener, String> {
    let l = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} (admin): {e}"))?;
    if !addr.ip().is_loopback() {
        warn!("the admin listener is on {addr}, reachable from the network");
    }
    if let Ok(local) = l.local_addr() {
        info!("admin on {local}");
    }
    Ok(l)
}

async fn serve(args: ProxyArgs, rt: Runtime) -> Result<(), String> {
    let metrics = meters::install_recorder()?;
    let listeners = workers::bind(rt.settings.listen, rt.settings.workers)?;
    if !rt.settings.listen.ip().is_loopback() {
        warn!(
            "the proxy listener is on {}, reachable from the network",
            rt.settings.listen
        );
    }
    let admin_listener = match rt.settings.admin {
        Some(a) => Some(bind_admin(a).await?),
        None => None,
    };
    let (max_connections, count) = (rt.settings.limits.max_connections, rt.settings.workers);
    let shared = runtime::share(rt);
    let crew: Vec<Arc<Worker>> = (0..count)
        .map(|index| {
            Arc::new(Worker {
                index,
                ..Worker::default()
            })
        })
        .collect();
    let upkeep = spawn_upkeep(metrics.clone(), shared.clone(), crew.clone());
    let admin_task =
        admin_listener.map(|l| tokio::spawn(crate::admin::serve(l, shared.clone(), metrics)));
    let sig = |k: SignalKind| signal(k).map_err(|e| format!("cannot watch signals: {e}"));
    let (mut term, mut int, mut hup) = (
        sig(SignalKind::terminate())?,
        sig(SignalKind::interrupt())?,
        sig(SignalKind::hangup())?,
    );
    let workers = workers::Workers::start(listeners, shared.clone(), &crew, max_connections)?;
    info!("{count} workers; listening on {}", workers.local);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => reload(&args, &shared),
        }
    }
    info!("stopping: no new connections; waiting for requests in flight");
    if !workers.stop(DRAIN).await {
        warn!("requests still in flight after 30 s: stopping anyway");
    }
    if let Some(t) = admin_task {
        t.abort();
    }
    upkeep.abort();
    for w in &crew {
        w.log.flush();
    }
    flush_decisions(&shared);
    Ok(())
}

/// Every second: the histograms' upkeep (they keep samples until it runs; without the
/// exporter's own listener nothing else runs it), the access log's flush, and closing parked
/// upstream connections idle for too long.
fn spawn_upkeep(
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    shared: Shared,
    crew: Vec<Arc<Worker>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            metrics.run_upkeep();
            for w in &crew {
                w.log.flush();
            }
            for b in shared.load().upstreams.all() {
                b.pool.prune();
            }
        }
    })
}

/// SIGHUP: re-read the configuration; a bad one is logged and the running one stays.
fn reload(args: &ProxyArgs, shared: &Shared) {
    let Some(path) = &args.config else {
        warn!("SIGHUP: no --config file to re-read; nothing changed");
        return;
    };
    let current = shared.load_full();
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
        Err(e) => error!("SIGHUP: {e}; keeping the running configuration"),
        Ok(next) => {
            let (now, was) = (&next.settings, &current.settings);
            if now.listen != was.listen || now.admin != was.admin || now.workers != was.workers {
                warn!("SIGHUP: listen and admin addresses and workers change only on restart");
            }
            if now.log_format != was.log_format {
                warn!("SIGHUP: the format of the events on stderr changes only on restart");
            }
            shared.store(Arc::new(next));
            info!("SIGHUP: reloaded {}", path.display());
        }
    }
}

/// Writes every layer's learned decisions to its decision file, if it has one.
fn flush_decisions(shared: &Shared) {
    for b in shared.load().upstreams.all() {
        if let Err(e) = b.layer.flush() {
            error!("cannot write the decision cache: {e}");
        }
    }
}
