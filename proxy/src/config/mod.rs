//! The proxy's configuration: the command-line flags, the `--config` TOML file (everything the
//! flags hold plus per-host sections), merged and checked into [`Settings`]. Errors name the
//! file, the line and the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tls_fallback::{policy, HostPattern, TlsVersion};
use toml::Spanned;

use crate::route::{Dest, Routing};

/// `tls-fallback proxy` flags. Every one can also be set in `--config`; a flag wins over the
/// file, and list flags add to the file's lists.
#[derive(clap::Args, Debug, Clone, Default)]
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
    pub redis: Option<String>,
    /// Handshake (and TCP connect) timeout per attempt, in ms (default 10000).
    #[arg(long, value_name = "N")]
    pub handshake_timeout_ms: Option<u64>,
    /// Time for the upstream to answer a request (its head), in ms (default 60000).
    #[arg(long, value_name = "N")]
    pub request_timeout_ms: Option<u64>,
    /// Reach upstreams through this proxy: http://[USER:PASS@]HOST:PORT (CONNECT),
    /// socks5://... (SOCKS5, names resolved here) or socks5h://... (by the proxy). Default:
    /// HTTPS_PROXY, minus NO_PROXY.
    #[arg(long, value_name = "URL")]
    pub via: Option<String>,
    /// A TOML file with these settings and per-host sections; re-read on SIGHUP.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// Access log format: text or json (default text).
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Worker threads, each with its own listening socket (default: one per core).
    #[arg(long, value_name = "N")]
    pub workers: Option<u64>,
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
    pub redis: Option<String>,
    /// Handshake timeout per attempt.
    pub handshake_timeout: Duration,
    /// The outbound proxy (HTTP CONNECT or SOCKS5), if any; its Debug hides the password.
    pub via: Option<tls_fallback::outbound::ProxyUrl>,
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
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<Spanned<String>>,
    admin: Option<Spanned<String>>,
    listen_public: Option<bool>,
    allow: Option<Vec<Spanned<String>>>,
    upstream: Option<Spanned<String>>,
    allow_legacy: Option<Vec<Spanned<String>>>,
    pin: Option<Vec<Spanned<String>>>,
    ca_file: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    cache_file: Option<PathBuf>,
    redis: Option<String>,
    handshake_timeout_ms: Option<Spanned<u64>>,
    request_timeout_ms: Option<Spanned<u64>>,
    via: Option<Spanned<String>>,
    log_format: Option<Spanned<String>>,
    workers: Option<Spanned<u64>>,
    limits: Option<FileLimits>,
    host: Option<Vec<FileHost>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_header_bytes: Option<Spanned<u64>>,
    max_connections: Option<Spanned<u64>>,
    idle_timeout_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHost {
    #[serde(rename = "match")]
    pattern: Spanned<String>,
    pin: Option<Spanned<String>>,
    #[serde(default)]
    allow_legacy: bool,
    ca_file: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
}

/// Locates errors in the file: `FILE:LINE: key \`k\`: message`.
struct Src<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Src<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text
            .get(..offset)
            .map_or(1, |t| t.bytes().filter(|&b| b == b'\n').count() + 1)
    }

    fn at<T>(&self, key: &str, v: &Spanned<T>, msg: impl std::fmt::Display) -> String {
        format!(
            "{}:{}: key `{key}`: {msg}",
            self.path.display(),
            self.line(v.span().start)
        )
    }

    fn parse_error(&self, e: &toml::de::Error) -> String {
        let Some(span) = e.span() else {
            return format!("{}: {}", self.path.display(), e.message());
        };
        let line = self.line(span.start);
        let key = self
            .text
            .lines()
            .nth(line - 1)
            .and_then(|l| l.split_once('='))
            .map(|(k, _)| k.trim())
            .filter(|k| !k.is_empty() && !k.starts_with('['));
        match key {
            Some(k) => format!("{}:{line}: key `{k}`: {}", self.path.display(), e.message()),
            None => format!("{}:{line}: {}", self.path.display(), e.message()),
        }
    }
}

/// Reads the flags and, with `--config`, the file, into checked settings.
pub fn resolve(args: &ProxyArgs) -> Result<Settings, String> {
    let (file, text) = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the config file {}: {e}", path.display()))?;
            let src = Src { path, text: &text };
            let file: FileConfig = toml::from_str(&text).map_err(|e| src.parse_error(&e))?;
            (file, text)
        }
        None => (FileConfig::default(), String::new()),
    };
    let path = args.config.clone().unwrap_or_default();
    let src = Src {
        path: &path,
        text: &text,
    };
    merge(args, file, &src)
}

fn flag_or<T: Clone>(
    flag: &Option<T>,
    file: Option<Spanned<T>>,
) -> Option<(T, Option<Spanned<T>>)> {
    match (flag, file) {
        (Some(v), _) => Some((v.clone(), None)),
        (None, Some(s)) => Some((s.get_ref().clone(), Some(s))),
        (None, None) => None,
    }
}

/// Reports an error on a flag (no span) or on the file's key (with its line).
fn err_at<T>(
    src: &Src,
    key: &str,
    span: &Option<Spanned<T>>,
    msg: impl std::fmt::Display,
) -> String {
    match span {
        Some(s) => src.at(key, s, msg),
        None => format!("--{}: {msg}", key.replace('_', "-")),
    }
}

fn addr(
    src: &Src,
    key: &str,
    v: Option<(String, Option<Spanned<String>>)>,
) -> Result<Option<SocketAddr>, String> {
    let Some((s, span)) = v else { return Ok(None) };
    s.parse::<SocketAddr>().map(Some).map_err(|e| {
        err_at(
            src,
            key,
            &span,
            format!("invalid address {s:?} ({e}); expected IP:PORT such as 127.0.0.1:8080"),
        )
    })
}

fn millis(
    src: &Src,
    key: &str,
    flag: Option<u64>,
    file: Option<Spanned<u64>>,
    default: u64,
) -> Result<Duration, String> {
    let Some((ms, span)) = flag_or(&flag, file) else {
        return Ok(Duration::from_millis(default));
    };
    if ms == 0 {
        return Err(err_at(src, key, &span, "must be above 0 (milliseconds)"));
    }
    Ok(Duration::from_millis(ms))
}

fn patterns(
    src: &Src,
    key: &str,
    flags: &[String],
    file: Option<Vec<Spanned<String>>>,
) -> Result<Vec<HostPattern>, String> {
    let mut out = Vec::new();
    for s in file.unwrap_or_default() {
        out.push(s.get_ref().parse().map_err(|e| src.at(key, &s, e))?);
    }
    for f in flags {
        out.push(
            f.parse()
                .map_err(|e| format!("--{}: {e}", key.replace('_', "-")))?,
        );
    }
    Ok(out)
}

fn pins(
    src: &Src,
    flags: &[String],
    file: Option<Vec<Spanned<String>>>,
) -> Result<Vec<(String, TlsVersion)>, String> {
    let mut out = Vec::new();
    for s in file.unwrap_or_default() {
        let (p, v) = policy::parse_pin(s.get_ref()).map_err(|e| src.at("pin", &s, e))?;
        out.push((p.to_string(), v));
    }
    for f in flags {
        let (p, v) = policy::parse_pin(f).map_err(|e| format!("--pin: {e}"))?;
        out.push((p.to_string(), v));
    }
    Ok(out)
}

fn listeners(
    args: &ProxyArgs,
    file: &mut FileConfig,
    src: &Src,
) -> Result<(SocketAddr, Option<SocketAddr>), String> {
    let listen = addr(src, "listen", flag_or(&args.listen, file.listen.take()))?
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let admin = addr(src, "admin", flag_or(&args.admin, file.admin.take()))?;
    let public = args.listen_public || file.listen_public.unwrap_or(false);
    for (what, a) in [("listen", Some(listen)), ("admin", admin)] {
        if let Some(a) = a.filter(|a| !a.ip().is_loopback() && !public) {
            return Err(format!(
                "--{what} {a} is not a loopback address: a TLS-originating proxy on the network \
                 lets anyone reach your upstreams; add --listen-public (listen_public = true) \
                 if that is what you want"
            ));
        }
    }
    Ok((listen, admin))
}

fn routing(args: &ProxyArgs, file: &mut FileConfig, src: &Src) -> Result<Routing, String> {
    let allow = patterns(src, "allow", &args.allow, file.allow.take())?;
    let upstream = match flag_or(&args.upstream, file.upstream.take()) {
        Some((s, span)) => Some(std::sync::Arc::new(
            Dest::parse(&s).map_err(|e| err_at(src, "upstream", &span, e))?,
        )),
        None => None,
    };
    if allow.is_empty() && upstream.is_none() {
        return Err(
            "nothing to proxy to: give --allow PATTERN (forward mode: hosts apps may \
                    reach) or --upstream https://HOST[:PORT] (upstream mode); this proxy is \
                    never open by default"
                .to_string(),
        );
    }
    Ok(Routing { allow, upstream })
}

/// The shared layer's settings, before the `[[host]]` sections add their pins and legacy gate.
fn base_layer(args: &ProxyArgs, file: &mut FileConfig, src: &Src) -> Result<LayerSettings, String> {
    let identity = match (
        args.client_cert.clone().or(file.client_cert.take()),
        args.client_key.clone().or(file.client_key.take()),
    ) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err("client_cert and client_key go together".to_string()),
    };
    let via = match flag_or(&args.via, file.via.take()) {
        Some((s, span)) => Some(
            tls_fallback::outbound::ProxyUrl::parse(&s)
                .map_err(|e| err_at(src, "via", &span, e))?,
        ),
        None => None,
    };
    Ok(LayerSettings {
        allow_legacy: patterns(
            src,
            "allow_legacy",
            &args.allow_legacy,
            file.allow_legacy.take(),
        )?
        .iter()
        .map(ToString::to_string)
        .collect(),
        pins: pins(src, &args.pin, file.pin.take())?,
        ca_file: args.ca_file.clone().or(file.ca_file.take()),
        client_identity: identity,
        cache_file: args.cache_file.clone().or(file.cache_file.take()),
        redis: args.redis.clone().or(file.redis.take()),
        handshake_timeout: millis(
            src,
            "handshake_timeout_ms",
            args.handshake_timeout_ms,
            file.handshake_timeout_ms.take(),
            10_000,
        )?,
        via,
    })
}

fn merge(args: &ProxyArgs, mut file: FileConfig, src: &Src) -> Result<Settings, String> {
    let (listen, admin) = listeners(args, &mut file, src)?;
    let routing = routing(args, &mut file, src)?;
    let mut layer = base_layer(args, &mut file, src)?;
    let (mut legacy, mut pin_list) = (
        std::mem::take(&mut layer.allow_legacy),
        std::mem::take(&mut layer.pins),
    );
    let mut host_layers = hosts(
        src,
        file.host.take().unwrap_or_default(),
        &layer,
        &mut legacy,
        &mut pin_list,
    )?;
    layer.allow_legacy = legacy;
    layer.pins = pin_list;
    for h in &mut host_layers {
        h.layer.allow_legacy = layer.allow_legacy.clone();
        h.layer.pins = layer.pins.clone();
    }
    Ok(Settings {
        listen,
        admin,
        routing,
        layer,
        host_layers,
        request_timeout: millis(
            src,
            "request_timeout_ms",
            args.request_timeout_ms,
            file.request_timeout_ms.take(),
            60_000,
        )?,
        log_format: log_format(src, flag_or(&args.log_format, file.log_format.take()))?,
        limits: limits(src, file.limits.take().unwrap_or_default())?,
        workers: workers(src, args.workers, file.workers.take())?,
    })
}

fn workers(src: &Src, flag: Option<u64>, file: Option<Spanned<u64>>) -> Result<usize, String> {
    let Some((n, span)) = flag_or(&flag, file) else {
        return Ok(default_workers());
    };
    let max = MAX_WORKERS;
    match usize::try_from(n) {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(err_at(src, "workers", &span, format!("must be 1 to {max}"))),
    }
}

/// Per-host sections: their pin and legacy gate join the shared lists; a CA file or client
/// certificate makes a layer of its own (without the cache file, which one layer owns).
fn hosts(
    src: &Src,
    sections: Vec<FileHost>,
    base: &LayerSettings,
    legacy: &mut Vec<String>,
    pins: &mut Vec<(String, TlsVersion)>,
) -> Result<Vec<HostLayer>, String> {
    let mut out = Vec::new();
    for h in sections {
        let pattern: HostPattern = h
            .pattern
            .get_ref()
            .parse()
            .map_err(|e| src.at("match", &h.pattern, e))?;
        if h.allow_legacy {
            legacy.push(pattern.to_string());
        }
        if let Some(p) = &h.pin {
            let v: TlsVersion = p
                .get_ref()
                .parse()
                .map_err(|e| src.at("pin", p, format!("{e}; expected 1.0, 1.1, 1.2 or 1.3")))?;
            pins.push((pattern.to_string(), v));
        }
        let identity = match (h.client_cert, h.client_key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(src.at(
                    "match",
                    &h.pattern,
                    "client_cert and client_key go together in a [[host]] section",
                ))
            }
        };
        if h.ca_file.is_some() || identity.is_some() {
            out.push(HostLayer {
                pattern,
                layer: LayerSettings {
                    ca_file: h.ca_file.or_else(|| base.ca_file.clone()),
                    client_identity: identity.or_else(|| base.client_identity.clone()),
                    cache_file: None,
                    ..base.clone()
                },
            });
        }
    }
    Ok(out)
}

fn log_format(
    src: &Src,
    v: Option<(String, Option<Spanned<String>>)>,
) -> Result<LogFormat, String> {
    match v {
        None => Ok(LogFormat::Text),
        Some((s, span)) => match s.as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(err_at(
                src,
                "log_format",
                &span,
                format!("unknown format {other:?}; expected text or json"),
            )),
        },
    }
}

fn limits(src: &Src, f: FileLimits) -> Result<Limits, String> {
    let d = Limits::default();
    let positive = |key: &str, v: &Spanned<u64>| -> Result<u64, String> {
        match *v.get_ref() {
            0 => Err(src.at(key, v, "must be above 0")),
            n => Ok(n),
        }
    };
    Ok(Limits {
        max_header_bytes: match &f.max_header_bytes {
            Some(v) if *v.get_ref() < 8192 => {
                return Err(src.at("max_header_bytes", v, "must be at least 8192"))
            }
            Some(v) => usize::try_from(*v.get_ref()).unwrap_or(usize::MAX),
            None => d.max_header_bytes,
        },
        max_connections: match &f.max_connections {
            Some(v) => usize::try_from(positive("max_connections", v)?).unwrap_or(usize::MAX),
            None => d.max_connections,
        },
        idle_timeout: match &f.idle_timeout_ms {
            Some(v) => Duration::from_millis(positive("idle_timeout_ms", v)?),
            None => d.idle_timeout,
        },
    })
}

#[cfg(test)]
mod tests;
