//! `tls-fallback-proxy` (also `tls-fallback proxy`): an egress proxy that originates TLS
//! through the fallback layer for apps that cannot take its connector: they send `http://`
//! requests through it (forward mode) or point a base URL at it (upstream mode).
//!
//! Organised by role (docs/ARCHITECTURE.md walks one request through them):
//!
//! | module | role |
//! |---|---|
//! | [`server`] | listeners, worker threads, signals (SIGHUP reload, SIGTERM drain), upkeep |
//! | [`service`] | one request: route, headers, upstream under the timeout, answer, access log |
//! | [`route`] | where a request may go: a pure rule from the request line to a URI or a refusal |
//! | [`headers`] | hop-by-hop headers and the `x-tls-fallback-*` ones |
//! | [`intercept`] | `CONNECT`: the local CA, its leaves, the TLS accept, `--tunnel` |
//! | [`upstream`] | the fallback layers, their connections, one exchange, the drain |
//! | [`config`] | flags and the TOML file into one checked [`config::Settings`] |
//! | [`runtime`] | the running configuration, swapped whole on reload |
//! | [`observe`] | the `tracing` subscriber, the access log, the metrics |
//! | [`admin`] | `/healthz`, `/metrics`, `/decisions` on the admin listener |
//! | [`console`] | the admin listener's status page (`/`) and `POST /decisions/forget` |

pub mod admin;
pub mod config;
pub mod console;
pub mod export;
pub mod headers;
pub mod intercept;
pub mod observe;
pub mod route;
pub mod runtime;
pub mod server;
pub mod service;
pub mod upstream;

use std::process::ExitCode;
use std::sync::{Mutex, MutexGuard};

pub use config::ProxyArgs;

/// Runs the proxy on this thread until SIGTERM/SIGINT (what both binaries call): exit 0 after
/// a clean drain, 2 on bad configuration, 1 when a listener cannot start. The proxy serves apps
/// on worker threads of its own (`--workers`); this thread's runtime only keeps the signals,
/// the admin listener and the reloads (idle runtime threads next to the workers cost them time).
pub fn main(args: ProxyArgs) -> ExitCode {
    if let Some(cmd) = &args.command {
        return intercept::init::run(cmd);
    }
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => {
            let code = rt.block_on(server::run(args));
            // A reload abandoned after its deadline may still be blocked in a read (a file on
            // a hung mount): dropping the runtime would wait for it forever.
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
            code
        }
        Err(e) => {
            eprintln!("tls-fallback proxy: error: cannot start the async runtime: {e}");
            ExitCode::from(1)
        }
    }
}

/// Locks a mutex whatever a panicking holder left: every value behind the proxy's mutexes is
/// whole between two statements (a buffer, a list, a timer), so a poisoned one is still sound.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
