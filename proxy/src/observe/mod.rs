//! What operators see of the proxy: the process's `tracing` subscriber (the library's events,
//! a detected downgrade is an ERROR, and the proxy's own, on stderr), the access log (one line
//! per request on stdout, [`access`]) and the Prometheus metrics ([`meters`]).
//!
//! The access log is not written through `tracing`: it is the proxy's hottest output (one line
//! per request, 10-20 % of a request's CPU time when it was written per line), so each worker
//! batches its lines in a buffer of its own, and the upkeep task writes them out every second.

pub mod access;
pub mod meters;

use tracing_subscriber::EnvFilter;

/// The format of the access log and of the events on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One `key=value` line.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the process's `tracing` subscriber: events on stderr, in `format`, filtered by
/// `RUST_LOG` (as `env_logger` reads it: `warn`, `tls_fallback=debug,info`...) or, without it,
/// by `default_filter`. A `RUST_LOG` that does not parse is reported and the default used. A
/// second call (a test that installs its own) changes nothing.
pub fn init_tracing(format: LogFormat, default_filter: &str) {
    let (filter, bad) = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => match EnvFilter::try_new(&v) {
            Ok(f) => (f, None),
            Err(e) => (EnvFilter::new(default_filter), Some(format!("{v:?}: {e}"))),
        },
        _ => (EnvFilter::new(default_filter), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let (Ok(()), Some(bad)) = (installed, bad) {
        tracing::warn!("RUST_LOG {bad}; using {default_filter:?}");
    }
}
