//! The proxy's configuration: one typed set of settings ([`ProxyArgs`]) that both the
//! command-line flags and the `--config` TOML file fill, merged once (flags over the file) and
//! checked into [`Settings`]. It exists so that a setting is declared once, with its flag, its
//! file key and its check, and so that every error says where the bad value was given
//! ([`ConfigError`]: the file, line and key, or the flag).

mod doc;
mod error;
mod merge;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tls_fallback::{HostPattern, TlsVersion};

use crate::route::{Dest, Routing};

pub use error::{shown, ConfigError};

/// `tls-fallback proxy` flags, and the top level of the `--config` file (the same names with
/// `_` for `-`). A flag wins over the file, and list flags add to the file's lists. The file
/// also holds a `[limits]` table and `[[host]]` sections, which have no flags.
// The fields' docs are the flags' `--help` text, written for a terminal (`HOST[:PORT]`), not
// rustdoc links.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(clap::Args, Deserialize, Debug, Clone, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyArgs {
    /// Address for the apps (default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Admin address for /healthz, /metrics and /decisions (default: none).
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
    /// Allow listening on a non-loopback address.
    #[arg(long)]
    pub listen_public: bool,
    /// Hosts forward mode may reach: host, *.suffix, host:port or *. Repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub allow: Vec<String>,
    /// Intercept CONNECT to the --allow hosts, so that apps keep their https:// URLs: the
    /// directory of the local CA that `ca init` made (ca.pem, ca-key.pem), which apps trust.
    #[arg(long, value_name = "DIR")]
    pub intercept_ca: Option<PathBuf>,
    /// Hosts CONNECT may reach as a plain byte tunnel (no interception, no fallback), for the
    /// other hosts apps reach through the same HTTPS_PROXY: host, *.suffix, host:port. Repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub tunnel: Vec<String>,
    /// Send origin-form requests (a path) to this upstream: https://HOST[:PORT].
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// Hosts allowed TLS below 1.2 with legacy crypto. Repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub allow_legacy: Vec<String>,
    /// Pin a host to a version: HOST[:PORT]=VERSION. Repeatable.
    #[arg(long, value_name = "HOST[:PORT]=VERSION")]
    pub pin: Vec<String>,
    /// Also trust the roots in this PEM file.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM chain) for upstreams that require one.
    #[arg(long, value_name = "PEM", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM, unencrypted).
    #[arg(long, value_name = "PEM", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Keep learned decisions in this file across restarts.
    #[arg(long, value_name = "PATH")]
    pub cache_file: Option<PathBuf>,
    /// Share learned decisions with other instances through this Redis (redis:// or
    /// rediss://, with user and password).
    #[arg(long, value_name = "URL")]
    pub redis: Option<SecretUrl>,
    /// Handshake (and TCP connect) timeout per attempt, in ms (default 10000).
    #[arg(long, value_name = "N")]
    pub handshake_timeout_ms: Option<u64>,
    /// Start the next rung in parallel when a handshake has had no byte back for this long,
    /// in ms (default 1500; above --handshake-timeout-ms, rungs are never raced).
    #[arg(long, value_name = "N")]
    pub stall_timeout_ms: Option<u64>,
    /// How long a learned decision lives before the host is probed again, in ms (default
    /// 3600000, one hour).
    #[arg(long, value_name = "N")]
    pub decision_ttl_ms: Option<u64>,
    /// The lowest TLS version for hosts outside --allow-legacy: 1.0 to 1.3 (default 1.2;
    /// below 1.2 lets every host use legacy crypto down to that version).
    #[arg(long, value_name = "VERSION")]
    pub floor: Option<String>,
    /// Trust the system's root certificates: true or false (default true; false trusts only
    /// --ca-file).
    #[arg(long, value_name = "BOOL")]
    pub system_roots: Option<bool>,
    /// Hosts whose decisions are kept, at most (default 10000).
    #[arg(long, value_name = "N")]
    pub cache_capacity: Option<u64>,
    /// TLS sessions kept for resumption (default 1024; 0 turns resumption off).
    #[arg(long, value_name = "N")]
    pub session_cache_capacity: Option<u64>,
    /// With --redis: the bound on the one read of a local miss and on taking the fleet lock,
    /// in ms (default 50).
    #[arg(long, value_name = "N")]
    pub redis_read_timeout_ms: Option<u64>,
    /// With --redis: how long the fleet lock on a host lasts if its holder never releases it,
    /// in ms (default 5000).
    #[arg(long, value_name = "N")]
    pub redis_lock_time_ms: Option<u64>,
    /// With --redis: the first part of every key and of the channel (default tls-fallback).
    #[arg(long, value_name = "NAME")]
    pub redis_namespace: Option<String>,
    /// Time for the upstream to answer a request (its head), in ms (default 60000).
    #[arg(long, value_name = "N")]
    pub request_timeout_ms: Option<u64>,
    /// Reach upstreams through this proxy: http://[USER:PASS@]HOST:PORT (CONNECT),
    /// socks5://... (SOCKS5, names resolved here) or socks5h://... (by the proxy). Default:
    /// HTTPS_PROXY, minus NO_PROXY.
    #[arg(long, value_name = "URL")]
    pub via: Option<SecretUrl>,
    /// A TOML file with these settings and per-host sections; re-read on SIGHUP.
    #[arg(long, value_name = "FILE.toml")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Access log format: text or json (default text).
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Worker threads, each with its own listening socket (default: one per core).
    #[arg(long, value_name = "N")]
    pub workers: Option<u64>,
    /// The file's `[limits]` table (no flags).
    #[arg(skip)]
    limits: LimitsSection,
    /// The file's `[[host]]` sections (no flags).
    #[arg(skip)]
    host: Vec<HostSection>,
    /// A command instead of running the proxy (`ca init`).
    #[command(subcommand)]
    #[serde(skip)]
    pub command: Option<crate::intercept::init::Command>,
}

/// The file's `[limits]` table; see [`Limits`] for the defaults.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(default, deny_unknown_fields)]
struct LimitsSection {
    max_header_bytes: Option<u64>,
    max_connections: Option<u64>,
    idle_timeout_ms: Option<u64>,
}

/// One `[[host]]` section: its pin and legacy gate join the shared lists, and a CA file or
/// client certificate of its own gives its hosts a layer of their own.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct HostSection {
    #[serde(rename = "match")]
    pattern: String,
    pin: Option<String>,
    #[serde(default)]
    allow_legacy: bool,
    ca_file: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
}

pub use crate::observe::LogFormat;

/// The most workers `--workers` takes.
pub const MAX_WORKERS: usize = 256;

/// The default number of workers: one per core (as nginx's `worker_processes auto`).
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_WORKERS))
}

/// Limits on what apps may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (request line and headers), in bytes.
    pub max_header_bytes: usize,
    /// App connections open at once; more wait in the accept queue.
    pub max_connections: usize,
    /// How long an app connection may stay idle (or take to send a request head).
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 64 * 1024,
            max_connections: 1024,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// What one fallback layer is built from; equal settings keep the same layer across a reload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LayerSettings {
    /// `allow_legacy` patterns.
    pub allow_legacy: Vec<String>,
    /// Pins: pattern and version.
    pub pins: Vec<(String, TlsVersion)>,
    /// Extra trusted roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// The decision cache file.
    pub cache_file: Option<PathBuf>,
    /// The Redis shared by a fleet, if any.
    pub redis: Option<SecretUrl>,
    /// Handshake timeout per attempt.
    pub handshake_timeout: Duration,
    /// How long a silent rung waits before the next one races it (`None`: the library's
    /// default).
    pub stall_timeout: Option<Duration>,
    /// How long a learned decision lives (`None`: the library's default).
    pub decision_ttl: Option<Duration>,
    /// The lowest version for hosts outside the legacy gate (`None`: the library's default).
    pub floor: Option<TlsVersion>,
    /// Whether the system's roots are trusted (`None`: the library's default, yes).
    pub system_roots: Option<bool>,
    /// Hosts whose decisions are kept, at most (`None`: the library's default).
    pub cache_capacity: Option<u64>,
    /// TLS sessions kept for resumption (`None`: the library's default; 0: none).
    pub session_cache_capacity: Option<u64>,
    /// How the Redis store waits for Redis and names its keys (`None`s: the library's
    /// defaults); only with `redis`.
    pub redis_tuning: RedisTuning,
    /// The outbound proxy (HTTP CONNECT or SOCKS5), if any; its Debug hides the password.
    pub via: Option<tls_fallback::outbound::ProxyUrl>,
    /// A certificate (DER) that vouches for no upstream, whatever the roots hold: the
    /// interception CA's root, set when it is loaded (`runtime::interceptor`).
    pub distrust: Option<Vec<u8>>,
}

/// The Redis store's options besides its URL (`None`: the library's default).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RedisTuning {
    /// The bound on the read of a local miss and on taking the fleet lock.
    pub read_timeout: Option<Duration>,
    /// How long a fleet lock lasts if its holder never releases it.
    pub lock_time: Option<Duration>,
    /// The first part of every key and of the channel.
    pub namespace: Option<String>,
}

/// Hosts with their own trust or client certificate get their own layer.
#[derive(Debug, Clone)]
pub struct HostLayer {
    /// The hosts it serves.
    pub pattern: HostPattern,
    /// Its layer.
    pub layer: LayerSettings,
}

/// Everything the proxy runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where apps connect.
    pub listen: SocketAddr,
    /// The admin listener.
    pub admin: Option<SocketAddr>,
    /// Forward/upstream routing.
    pub routing: Routing,
    /// The layer for every host without a section of its own.
    pub layer: LayerSettings,
    /// Hosts with their own CA file or client certificate.
    pub host_layers: Vec<HostLayer>,
    /// Time for the upstream's response head.
    pub request_timeout: Duration,
    /// Access log format.
    pub log_format: LogFormat,
    /// Limits.
    pub limits: Limits,
    /// Worker threads.
    pub workers: usize,
    /// The interception CA's directory (CONNECT to allowed hosts is intercepted).
    pub intercept_ca: Option<PathBuf>,
}

/// A URL that may carry credentials (a Redis URL, an outbound proxy's): its `Debug` hides
/// them with the library's rule, so settings logged with `{:?}` show no password.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(pub String);

impl std::str::FromStr for SecretUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SecretUrl(s.to_string()))
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", tls_fallback::redact_url(&self.0))
    }
}

impl ProxyArgs {
    /// The flags as a command line gives them (without the program name), for a program that
    /// embeds the proxy: `ProxyArgs::from_flags(["--allow", "gw.example"])`.
    pub fn from_flags<I, T>(flags: I) -> Result<ProxyArgs, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{Args, FromArgMatches};
        let cmd = ProxyArgs::augment_args(clap::Command::new("tls-fallback-proxy"));
        let argv = std::iter::once(std::ffi::OsString::from("tls-fallback-proxy"))
            .chain(flags.into_iter().map(Into::into));
        ProxyArgs::from_arg_matches(&cmd.try_get_matches_from(argv)?)
    }
}

/// Reads the flags and, with `--config`, the file, into checked settings.
pub fn resolve(args: &ProxyArgs) -> Result<Settings, ConfigError> {
    let Some(path) = &args.config else {
        return merge::Layered::new(args, &ProxyArgs::default(), &doc::Doc::empty()).settings();
    };
    let text = read_file(path).map_err(|error| ConfigError::Read {
        path: path.clone(),
        error,
    })?;
    let doc = doc::Doc::parse(path, &text)?;
    let file = doc.settings()?;
    merge::Layered::new(args, &file, &doc).settings()
}

/// The largest configuration file read.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Reads the configuration file as text (see [`read_bytes`]).
fn read_file(path: &std::path::Path) -> std::io::Result<String> {
    String::from_utf8(read_bytes(path)?).map_err(|_| std::io::Error::other("not UTF-8 text"))
}

/// Reads a file the configuration names (the file itself, a client certificate or key): a
/// regular file of at most [`MAX_FILE_BYTES`], never blocking (a FIFO put in its place would
/// otherwise hold the reader until someone writes to it); see
/// [`tls_fallback::read_bounded_file`].
pub fn read_bytes(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    tls_fallback::read_bounded_file(path, MAX_FILE_BYTES)
}

#[cfg(test)]
mod tests;
