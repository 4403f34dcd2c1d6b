//! The proxy process: it reads the configuration, installs the `tracing` subscriber and the
//! metrics recorder, binds the listeners, starts the [`workers`], and then waits for signals:
//! SIGHUP re-reads the configuration (a bad one is logged and the running one stays), SIGTERM
//! and SIGINT stop accepting and drain the requests in flight (up to [`DRAIN`]). An upkeep
//! task runs every second beside them.

pub mod fds;
pub mod hub;
pub mod workers;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinHandle;
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
    // Watched before anything starts: a reload or stop sent while the proxy starts (systemd's,
    // right after the listener is up) waits for it instead of killing it.
    let signals = match Signals::watch() {
        Ok(s) => s,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(1);
        }
    };
    let mut settings = settings;
    fds::fit_connections(&mut settings.limits.max_connections, settings.workers);
    let running = match start(settings).await {
        Ok(r) => r,
        Err(e) => {
            error!("{}", config::shown(&e));
            return ExitCode::from(e.exit_code());
        }
    };
    match wait_for_signals(&args, &running, signals).await {
        Ok(()) => {}
        Err(e) => {
            error!("{}", config::shown(&e));
            return ExitCode::from(1);
        }
    }
    info!("stopping: no new connections; waiting for requests in flight");
    if !running.stop(DRAIN).await {
        warn!("requests still in flight after 30 s: stopping anyway");
    }
    ExitCode::SUCCESS
}

/// Why the proxy could not start.
#[derive(Debug)]
pub enum StartError {
    /// The settings cannot be built into layers (a CA file that does not load...): exit 2.
    Config(String),
    /// A listener or a thread cannot start: exit 1.
    Start(String),
}

impl StartError {
    fn exit_code(&self) -> u8 {
        match self {
            StartError::Config(_) => 2,
            StartError::Start(_) => 1,
        }
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(e) | StartError::Start(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for StartError {}

/// A proxy started in this process: its listeners bound, its workers serving.
pub struct Running {
    /// Where apps connect (the port filled in when the settings asked for any).
    pub local: SocketAddr,
    /// Where the admin listener is, if there is one.
    pub admin: Option<SocketAddr>,
    shared: Shared,
    crew: Vec<Arc<Worker>>,
    workers: workers::Workers,
    admin_task: Option<JoinHandle<()>>,
    upkeep: JoinHandle<()>,
}

/// Starts the proxy with these settings: the listeners, the worker threads, the admin
/// listener and the upkeep task (those two in the calling tokio runtime). The caller installs
/// the `tracing` subscriber it wants; the Prometheus recorder is installed once per process.
pub async fn start(settings: config::Settings) -> Result<Running, StartError> {
    let mut settings = settings;
    let intercept = runtime::interceptor(&mut settings).map_err(StartError::Config)?;
    let upstreams = Upstreams::build(&settings, None).map_err(StartError::Config)?;
    let fail = StartError::Start;
    let metrics = meters::install_recorder().map_err(fail)?;
    let listeners = workers::bind(settings.listen, settings.workers).map_err(fail)?;
    if !settings.listen.ip().is_loopback() {
        warn!(
            "the proxy listener is on {}, reachable from the network",
            settings.listen
        );
    }
    let admin_listener = match settings.admin {
        Some(a) => Some(bind_admin(a).await.map_err(fail)?),
        None => None,
    };
    let admin = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
    let (max_connections, count) = (settings.limits.max_connections, settings.workers);
    let shared = runtime::share(Runtime {
        settings,
        upstreams,
        intercept,
    });
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
    let workers =
        workers::Workers::start(listeners, shared.clone(), &crew, max_connections).map_err(fail)?;
    info!("{count} workers; listening on {}", workers.local);
    Ok(Running {
        local: workers.local,
        admin,
        shared,
        crew,
        workers,
        admin_task,
        upkeep,
    })
}

impl Running {
    /// Runs with these settings from now on, keeping the layers whose settings did not change
    /// (and what they learned): every request after this, on new and open app connections
    /// alike (an open connection keeps only its own limits). The listen and admin addresses
    /// and the number of workers stay as they are.
    pub fn reload(&self, settings: config::Settings) -> Result<(), String> {
        let next = prepare(&self.shared, settings)?;
        install(&self.shared, next);
        Ok(())
    }

    /// The running configuration.
    pub fn current(&self) -> Arc<Runtime> {
        self.shared.load_full()
    }

    /// Stops accepting, lets the requests in flight finish (up to `drain`), then ends the
    /// workers, flushes the access log and writes the decision files; `false` when
    /// connections were still open at the deadline.
    pub async fn stop(self, drain: Duration) -> bool {
        let drained = self.workers.stop(drain).await;
        if let Some(t) = self.admin_task {
            t.abort();
        }
        self.upkeep.abort();
        for w in &self.crew {
            w.log.flush();
        }
        flush_decisions(&self.shared);
        drained
    }
}

/// The configuration that `settings` make, reusing the running layers whose settings did not
/// change (and what they learned); warns about what only a restart changes.
fn prepare(shared: &Shared, settings: config::Settings) -> Result<Runtime, String> {
    let current = shared.load_full();
    let mut settings = settings;
    let intercept = runtime::interceptor(&mut settings)?;
    let upstreams = Upstreams::build(&settings, Some(&current.upstreams))?;
    let was = &current.settings;
    if settings.listen != was.listen
        || settings.admin != was.admin
        || settings.workers != was.workers
    {
        warn!("reload: listen and admin addresses and workers change only on restart");
    }
    if settings.log_format != was.log_format {
        warn!("reload: the format of the events on stderr changes only on restart");
    }
    Ok(Runtime {
        settings,
        upstreams,
        intercept,
    })
}

/// Makes `next` the running configuration and retires the layers it did not keep.
fn install(shared: &Shared, next: Runtime) {
    let old = shared.swap(Arc::new(next));
    old.upstreams.retire_unkept(&shared.load().upstreams);
}

/// How long SIGHUP waits for the configuration (the file, the CA and certificate files it
/// names) to be read and built before it gives up and keeps the running one.
pub const RELOAD_TIME: Duration = Duration::from_secs(5);

/// Binds the admin listener, warning when it is reachable from the network.
async fn bind_admin(addr: SocketAddr) -> Result<TcpListener, String> {
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

/// Waits for SIGTERM or SIGINT, reloading on SIGHUP meanwhile.
/// SIGTERM, SIGINT and SIGHUP, watched (from then on they no longer end the process).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn watch() -> Result<Signals, String> {
        let sig = |k: SignalKind| signal(k).map_err(|e| format!("cannot watch signals: {e}"));
        Ok(Signals {
            term: sig(SignalKind::terminate())?,
            int: sig(SignalKind::interrupt())?,
            hup: sig(SignalKind::hangup())?,
        })
    }
}

async fn wait_for_signals(
    args: &ProxyArgs,
    running: &Running,
    signals: Signals,
) -> Result<(), String> {
    let Signals {
        mut term,
        mut int,
        mut hup,
    } = signals;
    // A reload runs beside the signals (SIGTERM is not held up by a slow one), one at a time.
    let mut reloading: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => {
                if reloading.as_ref().is_some_and(|r| !r.is_finished()) {
                    warn!("SIGHUP: the previous reload is still running; this one is ignored");
                    continue;
                }
                let (args, shared) = (args.clone(), running.shared.clone());
                reloading = Some(tokio::spawn(async move { reload(&args, &shared).await }));
            }
        }
    }
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

/// SIGHUP: re-read the configuration; a bad one is logged and the running one stays. The files
/// are read on a blocking thread, for at most [`RELOAD_TIME`]: a file that never answers (on a
/// hung network mount, a FIFO named as the CA file) costs that, not the signals and the admin
/// listener of this thread; what it yields after the deadline is dropped, never applied.
async fn reload(args: &ProxyArgs, shared: &Shared) {
    let Some(path) = &args.config else {
        warn!("SIGHUP: no --config file to re-read; nothing changed");
        return;
    };
    let (args, next_for) = (args.clone(), shared.clone());
    let job = tokio::task::spawn_blocking(move || {
        let shared = next_for;
        let settings = config::resolve(&args).map_err(|e| e.to_string())?;
        prepare(&shared, settings)
    });
    match tokio::time::timeout(RELOAD_TIME, job).await {
        Err(_) => error!(
            "SIGHUP: reading {} (and the files it names) took more than {} s; keeping the \
             running configuration",
            path.display(),
            RELOAD_TIME.as_secs()
        ),
        Ok(Err(e)) => error!("SIGHUP: the reload failed ({e}); keeping the running configuration"),
        Ok(Ok(Err(e))) => error!(
            "SIGHUP: {}; keeping the running configuration",
            config::shown(&e)
        ),
        Ok(Ok(Ok(next))) => {
            install(shared, next);
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
