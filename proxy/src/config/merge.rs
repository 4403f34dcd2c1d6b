//! The one merge of the flags over the file ([`Layered`]: a single value is the flag's if given,
//! else the file's; a list is the file's items, then the flags'), and the checks that turn the
//! merged values into [`Settings`], each error naming the flag or the file's line and key.

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tls_fallback::outbound::ProxyUrl;
use tls_fallback::{policy, HostPattern, TlsVersion};

use super::doc::{Doc, Seg};
use super::{
    ConfigError, Dest, HostLayer, HostSection, LayerSettings, Limits, LogFormat, ProxyArgs,
    RedisTuning, Routing, Settings, MAX_WORKERS,
};

/// Where a merged value was given.
#[derive(Clone, Copy)]
enum Source {
    Flag,
    /// A single value in the file.
    File,
    /// This item of a list in the file.
    FileItem(usize),
}

/// A merged value, its key (the file's; the flag is the same with `-` for `_`) and where it was
/// given.
struct Given<'a, T: ?Sized> {
    value: &'a T,
    key: &'static str,
    from: Source,
}

/// The flags over the file.
pub(super) struct Layered<'a> {
    flags: &'a ProxyArgs,
    file: &'a ProxyArgs,
    doc: &'a Doc<'a>,
}

impl<'a> Layered<'a> {
    /// `file` was read from `doc` (`Doc::empty()` and defaults without a file).
    pub(super) fn new(flags: &'a ProxyArgs, file: &'a ProxyArgs, doc: &'a Doc<'a>) -> Self {
        Layered { flags, file, doc }
    }

    /// A single value: the flag's if given, else the file's.
    fn one<T>(&self, key: &'static str, get: fn(&ProxyArgs) -> &Option<T>) -> Option<Given<'a, T>> {
        let (from, value) = match (get(self.flags), get(self.file)) {
            (Some(v), _) => (Source::Flag, v),
            (None, Some(v)) => (Source::File, v),
            (None, None) => return None,
        };
        Some(Given { value, key, from })
    }

    /// A list: the file's items, then the flags'.
    fn list(
        &self,
        key: &'static str,
        get: fn(&ProxyArgs) -> &Vec<String>,
    ) -> impl Iterator<Item = Given<'a, String>> {
        let file = get(self.file)
            .iter()
            .enumerate()
            .map(move |(i, value)| Given {
                value,
                key,
                from: Source::FileItem(i),
            });
        let flags = get(self.flags).iter().map(move |value| Given {
            value,
            key,
            from: Source::Flag,
        });
        file.chain(flags)
    }

    /// The error for a bad merged value: `--flag-name: message` or `FILE:LINE: key \`k\`: message`.
    fn fail<T: ?Sized>(&self, g: &Given<T>, message: impl Display) -> ConfigError {
        match g.from {
            Source::Flag => ConfigError::Flag {
                flag: g.key.replace('_', "-"),
                message: message.to_string(),
            },
            Source::File => self.doc.at(&[Seg::Key(g.key)], message),
            Source::FileItem(i) => self.doc.at(&[Seg::Key(g.key), Seg::Index(i)], message),
        }
    }

    /// Everything, checked.
    pub(super) fn settings(&self) -> Result<Settings, ConfigError> {
        let (listen, admin) = self.listeners()?;
        let routing = self.routing()?;
        let mut layer = self.base_layer()?;
        let host_layers = self.hosts(&mut layer)?;
        Ok(Settings {
            listen,
            admin,
            routing,
            layer,
            host_layers,
            request_timeout: self
                .millis("request_timeout_ms", |a| &a.request_timeout_ms)?
                .unwrap_or(Duration::from_millis(60_000)),
            log_format: self.log_format()?,
            limits: self.limits()?,
            workers: self.workers()?,
            intercept_ca: self
                .one("intercept_ca", |a| &a.intercept_ca)
                .map(|g| g.value.clone()),
        })
    }

    fn addr(&self, g: Option<Given<String>>) -> Result<Option<SocketAddr>, ConfigError> {
        let Some(g) = g else { return Ok(None) };
        let s = g.value;
        s.parse::<SocketAddr>().map(Some).map_err(|e| {
            self.fail(
                &g,
                format!("invalid address {s:?} ({e}); expected IP:PORT such as 127.0.0.1:8080"),
            )
        })
    }

    fn listeners(&self) -> Result<(SocketAddr, Option<SocketAddr>), ConfigError> {
        let listen = self
            .addr(self.one("listen", |a| &a.listen))?
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        let admin = self.addr(self.one("admin", |a| &a.admin))?;
        let public = self.flags.listen_public || self.file.listen_public;
        for (what, a) in [("listen", Some(listen)), ("admin", admin)] {
            if let Some(addr) = a.filter(|a| !a.ip().is_loopback() && !public) {
                return Err(ConfigError::NotLoopback { what, addr });
            }
        }
        Ok((listen, admin))
    }

    /// A duration in milliseconds, above 0.
    fn millis(
        &self,
        key: &'static str,
        get: fn(&ProxyArgs) -> &Option<u64>,
    ) -> Result<Option<Duration>, ConfigError> {
        match self.one(key, get) {
            None => Ok(None),
            Some(g) if *g.value == 0 => Err(self.fail(&g, "must be above 0 (milliseconds)")),
            Some(g) => Ok(Some(Duration::from_millis(*g.value))),
        }
    }

    fn patterns(
        &self,
        key: &'static str,
        get: fn(&ProxyArgs) -> &Vec<String>,
    ) -> Result<Vec<HostPattern>, ConfigError> {
        self.list(key, get)
            .map(|g| g.value.parse().map_err(|e| self.fail(&g, e)))
            .collect()
    }

    fn pins(&self) -> Result<Vec<(String, TlsVersion)>, ConfigError> {
        self.list("pin", |a| &a.pin)
            .map(|g| {
                let (p, v) = policy::parse_pin(g.value).map_err(|e| self.fail(&g, e))?;
                Ok((p.to_string(), v))
            })
            .collect()
    }

    fn routing(&self) -> Result<Routing, ConfigError> {
        let allow = self.patterns("allow", |a| &a.allow)?;
        let upstream = match self.one("upstream", |a| &a.upstream) {
            Some(g) => Some(Arc::new(
                Dest::parse(g.value).map_err(|e| self.fail(&g, e))?,
            )),
            None => None,
        };
        let tunnel = self.tunnels()?;
        if allow.is_empty() && upstream.is_none() && tunnel.is_empty() {
            return Err(ConfigError::NothingToProxy);
        }
        let intercept = self.one("intercept_ca", |a| &a.intercept_ca).is_some();
        Ok(Routing {
            allow,
            upstream,
            tunnel,
            intercept,
        })
    }

    /// `--tunnel` patterns: a byte tunnel reaches any TCP service, so each names its port, and
    /// `*` (an open tunnel) is refused.
    fn tunnels(&self) -> Result<Vec<HostPattern>, ConfigError> {
        self.list("tunnel", |a| &a.tunnel)
            .map(|g| {
                let p: HostPattern = g.value.parse().map_err(|e| self.fail(&g, e))?;
                if matches!(p.host(), tls_fallback::PatternHost::Any) {
                    return Err(self.fail(
                        &g,
                        "a tunnel to every host is an open proxy; name the hosts (host:443)",
                    ));
                }
                if p.port().is_none() {
                    return Err(self.fail(
                        &g,
                        format!(
                            "a tunnel reaches any TCP service of its host: name the port \
                             ({}:443)",
                            g.value
                        ),
                    ));
                }
                Ok(p)
            })
            .collect()
    }

    /// The client certificate and key: both or neither.
    fn identity(&self) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
        let cert = self.one("client_cert", |a| &a.client_cert);
        let key = self.one("client_key", |a| &a.client_key);
        match (cert, key) {
            (Some(c), Some(k)) => Ok(Some((c.value.clone(), k.value.clone()))),
            (None, None) => Ok(None),
            (Some(g), None) | (None, Some(g)) => {
                Err(self.fail(&g, "client_cert and client_key go together"))
            }
        }
    }

    /// The shared layer's settings, before the `[[host]]` sections add their pins and legacy
    /// gate.
    fn base_layer(&self) -> Result<LayerSettings, ConfigError> {
        let via = match self.one("via", |a| &a.via) {
            Some(g) => Some(ProxyUrl::parse(&g.value.0).map_err(|e| self.fail(&g, e))?),
            None => None,
        };
        let floor = match self.one("floor", |a| &a.floor) {
            Some(g) => Some(g.value.parse().map_err(|e| self.fail(&g, e))?),
            None => None,
        };
        let path = |g: Given<PathBuf>| g.value.clone();
        Ok(LayerSettings {
            allow_legacy: (self.patterns("allow_legacy", |a| &a.allow_legacy)?.iter())
                .map(ToString::to_string)
                .collect(),
            pins: self.pins()?,
            ca_file: self.one("ca_file", |a| &a.ca_file).map(path),
            client_identity: self.identity()?,
            cache_file: self.one("cache_file", |a| &a.cache_file).map(path),
            redis: self.one("redis", |a| &a.redis).map(|g| g.value.clone()),
            handshake_timeout: self
                .millis("handshake_timeout_ms", |a| &a.handshake_timeout_ms)?
                .unwrap_or(Duration::from_millis(10_000)),
            stall_timeout: self.millis("stall_timeout_ms", |a| &a.stall_timeout_ms)?,
            decision_ttl: self.millis("decision_ttl_ms", |a| &a.decision_ttl_ms)?,
            floor,
            system_roots: self
                .one("system_roots", |a| &a.system_roots)
                .map(|g| *g.value),
            cache_capacity: match self.one("cache_capacity", |a| &a.cache_capacity) {
                Some(g) if *g.value == 0 => return Err(self.fail(&g, "must be above 0")),
                g => g.map(|g| *g.value),
            },
            session_cache_capacity: (self
                .one("session_cache_capacity", |a| &a.session_cache_capacity))
            .map(|g| *g.value),
            redis_tuning: self.redis_tuning()?,
            via,
            distrust: None,
        })
    }

    /// The Redis store's options: only with `redis`; a namespace is a short key prefix.
    fn redis_tuning(&self) -> Result<RedisTuning, ConfigError> {
        let tuning = RedisTuning {
            read_timeout: self.millis("redis_read_timeout_ms", |a| &a.redis_read_timeout_ms)?,
            lock_time: self.millis("redis_lock_time_ms", |a| &a.redis_lock_time_ms)?,
            namespace: None,
        };
        let namespace = self.one("redis_namespace", |a| &a.redis_namespace);
        if let Some(g) = &namespace {
            let ok = |c: char| c.is_ascii_alphanumeric() || "-_.:".contains(c);
            if g.value.is_empty() || g.value.len() > 64 || !g.value.chars().all(ok) {
                return Err(self.fail(
                    g,
                    format!(
                        "invalid namespace {:?}: 1 to 64 letters, digits, '-', '_', '.' or ':'",
                        g.value
                    ),
                ));
            }
        }
        let redis = self.one("redis", |a| &a.redis).is_some();
        let given = [
            self.one("redis_read_timeout_ms", |a| &a.redis_read_timeout_ms)
                .map(|g| self.fail(&g, "needs redis")),
            self.one("redis_lock_time_ms", |a| &a.redis_lock_time_ms)
                .map(|g| self.fail(&g, "needs redis")),
            namespace.as_ref().map(|g| self.fail(g, "needs redis")),
        ];
        if let (false, Some(e)) = (redis, given.into_iter().flatten().next()) {
            return Err(e);
        }
        Ok(RedisTuning {
            namespace: namespace.map(|g| g.value.clone()),
            ..tuning
        })
    }

    fn workers(&self) -> Result<usize, ConfigError> {
        let Some(g) = self.one("workers", |a| &a.workers) else {
            return Ok(super::default_workers());
        };
        match usize::try_from(*g.value) {
            Ok(n) if (1..=MAX_WORKERS).contains(&n) => Ok(n),
            _ => Err(self.fail(&g, format!("must be 1 to {MAX_WORKERS}"))),
        }
    }

    fn log_format(&self) -> Result<LogFormat, ConfigError> {
        let Some(g) = self.one("log_format", |a| &a.log_format) else {
            return Ok(LogFormat::Text);
        };
        match g.value.as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(self.fail(
                &g,
                format!("unknown format {other:?}; expected text or json"),
            )),
        }
    }

    /// The file's `[[host]]` sections: their pin and legacy gate join the shared lists (of
    /// `base` and every host layer); a CA file or client certificate makes a layer of its own
    /// (without the cache file, which one layer owns).
    fn hosts(&self, base: &mut LayerSettings) -> Result<Vec<HostLayer>, ConfigError> {
        let mut out = Vec::new();
        for (i, h) in self.file.host.iter().enumerate() {
            let at = |key, message: &dyn Display| {
                self.doc
                    .at(&[Seg::Key("host"), Seg::Index(i), Seg::Key(key)], message)
            };
            out.extend(host(h, base, at)?);
        }
        for h in &mut out {
            h.layer.allow_legacy = base.allow_legacy.clone();
            h.layer.pins = base.pins.clone();
        }
        Ok(out)
    }

    /// The file's `[limits]` table.
    fn limits(&self) -> Result<Limits, ConfigError> {
        let (f, d) = (&self.file.limits, Limits::default());
        let at = |key, message: &str| self.doc.at(&[Seg::Key("limits"), Seg::Key(key)], message);
        let positive = |key, v: u64| {
            if v == 0 {
                Err(at(key, "must be above 0"))
            } else {
                Ok(v)
            }
        };
        let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        Ok(Limits {
            max_header_bytes: match f.max_header_bytes {
                Some(v) if v < 8192 => return Err(at("max_header_bytes", "must be at least 8192")),
                Some(v) => size(v),
                None => d.max_header_bytes,
            },
            max_connections: match f.max_connections {
                Some(v) => size(positive("max_connections", v)?),
                None => d.max_connections,
            },
            idle_timeout: match f.idle_timeout_ms {
                Some(v) => Duration::from_millis(positive("idle_timeout_ms", v)?),
                None => d.idle_timeout,
            },
        })
    }
}

/// One `[[host]]` section: adds its legacy gate and pin to `base`, and returns its own layer if
/// it has a CA file or client certificate. `at(key, message)` locates an error in the section.
fn host(
    h: &HostSection,
    base: &mut LayerSettings,
    at: impl Fn(&'static str, &dyn Display) -> ConfigError,
) -> Result<Option<HostLayer>, ConfigError> {
    let pattern: HostPattern = h.pattern.parse().map_err(|e| at("match", &e))?;
    if h.allow_legacy {
        base.allow_legacy.push(pattern.to_string());
    }
    if let Some(p) = &h.pin {
        let v: TlsVersion = p
            .parse()
            .map_err(|e| at("pin", &format!("{e}; expected 1.0, 1.1, 1.2 or 1.3")))?;
        base.pins.push((pattern.to_string(), v));
    }
    let identity = match (&h.client_cert, &h.client_key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        (None, None) => None,
        _ => {
            return Err(at(
                "match",
                &"client_cert and client_key go together in a [[host]] section",
            ))
        }
    };
    if h.ca_file.is_none() && identity.is_none() {
        return Ok(None);
    }
    Ok(Some(HostLayer {
        pattern,
        layer: LayerSettings {
            ca_file: h.ca_file.clone().or_else(|| base.ca_file.clone()),
            client_identity: identity.or_else(|| base.client_identity.clone()),
            cache_file: None,
            ..base.clone()
        },
    }))
}
