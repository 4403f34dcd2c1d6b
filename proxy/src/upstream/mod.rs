//! The upstream side: one fallback layer and its connections per distinct layer settings (the
//! shared one, and hosts with their own trust or client certificate), kept across reloads when
//! their settings did not change.
//!
//! | module | holds |
//! |---|---|
//! | [`exchange`] | one request: which connection, send once, resend only what never left |
//! | [`slot`] | the HTTP/1.1 connection an app connection holds; what becomes of it at the end |
//! | [`conn`] | making a connection (HTTP/1.1 or h2), the parked and shared ones per layer |
//! | [`pool`] | parked connections by key, generic and tested with plain values |
//! | [`drain`] | what an app that hangs up mid-exchange leaves, and reading it to its end |
//!
//! The proxy keeps its own pool rather than hyper-util's pooled client: an HTTP/1.1
//! connection is driven inside the task of the app connection that holds it, on that app
//! connection's worker thread, so a request and its response never cross tasks or threads.
//! With hyper-util's client (a task per pooled connection) the proxy spent about 38 µs of CPU
//! per request against 33 µs (docs/BENCHMARKS.md), and measured 0.41x-0.66x nginx's
//! requests/s where this design reaches nginx's.

pub mod conn;
pub mod drain;
pub mod exchange;
pub mod pool;
pub mod slot;

use std::sync::Arc;
use std::time::Duration;

use tls_fallback::{FallbackLayer, HostPattern};
use tower_layer::Layer;

use tls_fallback::outbound as via;

use crate::config::{LayerSettings, RedisTuning, Settings};
use conn::Connections;

/// How long a parked upstream connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(30);
/// Parked upstream connections kept per upstream.
const POOL_MAX_PER_HOST: usize = 256;

/// A layer, its connection pool, and what it was built from.
pub struct Built {
    /// The settings it was built from.
    pub settings: LayerSettings,
    /// The layer (stats, flush).
    pub layer: FallbackLayer,
    /// The upstream connections made through it.
    pub pool: Arc<Connections>,
}

/// Every layer of the running configuration.
pub struct Upstreams {
    /// The shared layer.
    pub default: Arc<Built>,
    /// Hosts with a layer of their own, first match wins.
    pub hosts: Vec<(HostPattern, Arc<Built>)>,
}

impl Upstreams {
    /// Builds the layers, reusing those of `old` whose settings are unchanged (they keep what
    /// they learned and their pooled connections). A layer whose settings changed is built
    /// anew but keeps the decisions of the one it replaces (the shared layer's, or the
    /// `[[host]]` section's of the same pattern) when [`keeps_store`] says so: a new
    /// `allow_legacy` pattern, pin or timeout forgets nothing learned.
    pub fn build(s: &Settings, old: Option<&Upstreams>) -> Result<Upstreams, String> {
        let reuse = |ls: &LayerSettings| -> Option<Arc<Built>> {
            let old = old?;
            std::iter::once(&old.default)
                .chain(old.hosts.iter().map(|(_, b)| b))
                .find(|b| b.settings == *ls)
                .cloned()
        };
        let make = |ls: &LayerSettings, was: Option<&Built>| -> Result<Arc<Built>, String> {
            if let Some(b) = reuse(ls) {
                return Ok(b);
            }
            let keep = was
                .filter(|w| keeps_store(&w.settings, ls))
                .map(|w| &w.layer);
            build_one(ls, s.limits.max_connections, keep).map(Arc::new)
        };
        let default = make(&s.layer, old.map(|o| &*o.default))?;
        let mut hosts = Vec::new();
        for h in &s.host_layers {
            let was = old
                .and_then(|o| o.hosts.iter().find(|(p, _)| *p == h.pattern))
                .map(|(_, b)| &**b);
            hosts.push((h.pattern.clone(), make(&h.layer, was)?));
        }
        Ok(Upstreams { default, hosts })
    }

    /// The layer for this upstream host.
    pub fn pick(&self, host: &str, port: u16) -> &Built {
        self.hosts
            .iter()
            .find(|(p, _)| p.matches(host, port))
            .map_or(&*self.default, |(_, b)| &**b)
    }

    /// Retires the layers of this configuration that `next` does not keep (their parked
    /// connections are closed).
    pub fn retire_unkept(&self, next: &Upstreams) {
        for old in self.all() {
            if !next.all().iter().any(|n| std::ptr::eq(*n, old)) {
                old.pool.retire();
            }
        }
    }

    /// Every layer once.
    pub fn all(&self) -> Vec<&Built> {
        let mut v: Vec<&Built> = vec![&self.default];
        for (_, b) in &self.hosts {
            if !v.iter().any(|x| std::ptr::eq(*x, &**b)) {
                v.push(b);
            }
        }
        v
    }
}

/// Whether a layer built from `new` keeps the decision store of the one built from `old`: the
/// store's own settings are the same (the cache file, the Redis and its options, the
/// capacity). What else changes (the legacy gate, pins, floor, timeouts, trust, the TTL, the
/// outbound proxy) does not change what a decision says: the new layer judges each one
/// against its own policy when it uses it.
pub fn keeps_store(old: &LayerSettings, new: &LayerSettings) -> bool {
    old.cache_file == new.cache_file
        && old.redis == new.redis
        && old.redis_tuning == new.redis_tuning
        && old.cache_capacity == new.cache_capacity
}

/// One layer; its pool parks at most `max_idle` connections in all (as many as app
/// connections may be open: the descriptor budget counts one parked connection for each).
/// With `keep`, the layer uses that layer's decision store (what it learned, its file, its
/// Redis link) instead of opening one.
fn build_one(
    ls: &LayerSettings,
    max_idle: usize,
    keep: Option<&FallbackLayer>,
) -> Result<Built, String> {
    let mut b = FallbackLayer::builder()
        .handshake_timeout(ls.handshake_timeout)
        .enable_http2(true);
    if let Some(on) = ls.system_roots {
        b = b.system_roots(on);
    }
    if let Some(n) = ls.cache_capacity {
        b = b.cache_capacity(n);
    }
    if let Some(n) = ls.session_cache_capacity {
        b = b.session_cache_capacity(n);
    }
    if let Some(ca) = &ls.ca_file {
        b = b.ca_file(ca);
    }
    if let Some(der) = &ls.distrust {
        let cert = openssl::x509::X509::from_der(der)
            .map_err(|e| format!("the interception CA's certificate: {e}"))?;
        b = b.distrust(cert);
    }
    if let Some((cert, key)) = &ls.client_identity {
        let read = |what: &str, p: &std::path::Path| {
            crate::config::read_bytes(p)
                .map_err(|e| format!("cannot read the {what} {}: {e}", p.display()))
        };
        b = b.client_identity_pem(read("client certificate", cert)?, read("client key", key)?);
    }
    for p in &ls.allow_legacy {
        b = b.allow_legacy(p.clone());
    }
    for (p, v) in &ls.pins {
        b = b.pin(p.clone(), *v);
    }
    if let Some(old) = keep {
        b = b.decisions_of(old);
    } else {
        if let Some(f) = &ls.cache_file {
            b = b.cache_file(f);
        }
        if let Some(url) = &ls.redis {
            b = b.redis_options(redis_options(&url.0, &ls.redis_tuning));
        }
    }
    if let Some(stall) = ls.stall_timeout {
        b = b.stall_timeout(Some(stall));
    }
    if let Some(ttl) = ls.decision_ttl {
        b = b.cache_ttl(ttl);
    }
    if let Some(floor) = ls.floor {
        b = b.floor(floor);
    }
    let layer = b.build().map_err(|e| e.to_string())?;
    let tcp = via::connector(ls.via.as_ref())?;
    let pool = Connections::new(layer.layer(tcp), POOL_IDLE, POOL_MAX_PER_HOST, max_idle);
    Ok(Built {
        settings: ls.clone(),
        layer,
        pool: Arc::new(pool),
    })
}

/// The Redis store's options: the URL, and the library's defaults where `tuning` has none.
fn redis_options(url: &str, tuning: &RedisTuning) -> tls_fallback::RedisOptions {
    let mut o = tls_fallback::RedisOptions::new(url);
    if let Some(t) = tuning.read_timeout {
        o.read_timeout = t;
    }
    if let Some(t) = tuning.lock_time {
        o.lock_time = t;
    }
    if let Some(n) = &tuning.namespace {
        o.namespace = n.clone();
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretUrl;
    use tls_fallback::TlsVersion;

    #[test]
    fn a_rebuilt_layer_keeps_the_store_unless_the_stores_own_settings_change() {
        let old = LayerSettings {
            allow_legacy: vec!["old.example".into()],
            cache_file: Some("/var/lib/d.json".into()),
            ..LayerSettings::default()
        };
        type Change = fn(&mut LayerSettings);
        // (what changed, keeps the store)
        let rows: [(&str, Change, bool); 13] = [
            ("nothing", |_| {}, true),
            (
                "an allow_legacy pattern",
                |l| l.allow_legacy.push("new.example".into()),
                true,
            ),
            (
                "a pin",
                |l| l.pins.push(("p.example".into(), TlsVersion::Tls1_2)),
                true,
            ),
            ("the floor", |l| l.floor = Some(TlsVersion::Tls1_3), true),
            (
                "the TTL",
                |l| l.decision_ttl = Some(Duration::from_secs(60)),
                true,
            ),
            (
                "the stall time",
                |l| l.stall_timeout = Some(Duration::from_millis(300)),
                true,
            ),
            (
                "the trust",
                |l| l.ca_file = Some("/etc/ca.pem".into()),
                true,
            ),
            ("the system roots", |l| l.system_roots = Some(false), true),
            (
                "the cache file",
                |l| l.cache_file = Some("/tmp/other.json".into()),
                false,
            ),
            ("no cache file", |l| l.cache_file = None, false),
            (
                "Redis",
                |l| l.redis = Some(SecretUrl("redis://r".into())),
                false,
            ),
            (
                "the namespace",
                |l| l.redis_tuning.namespace = Some("b".into()),
                false,
            ),
            ("the capacity", |l| l.cache_capacity = Some(5), false),
        ];
        for (what, change, keeps) in rows {
            let mut new = old.clone();
            change(&mut new);
            assert_eq!(keeps_store(&old, &new), keeps, "{what}");
        }
    }
}
