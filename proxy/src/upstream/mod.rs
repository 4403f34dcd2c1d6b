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

use crate::config::{LayerSettings, Settings};
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
    /// they learned and their pooled connections).
    pub fn build(s: &Settings, old: Option<&Upstreams>) -> Result<Upstreams, String> {
        let reuse = |ls: &LayerSettings| -> Option<Arc<Built>> {
            let old = old?;
            std::iter::once(&old.default)
                .chain(old.hosts.iter().map(|(_, b)| b))
                .find(|b| b.settings == *ls)
                .cloned()
        };
        let make = |ls: &LayerSettings| -> Result<Arc<Built>, String> {
            match reuse(ls) {
                Some(b) => Ok(b),
                None => build_one(ls, s.limits.max_connections).map(Arc::new),
            }
        };
        let default = make(&s.layer)?;
        let mut hosts = Vec::new();
        for h in &s.host_layers {
            hosts.push((h.pattern.clone(), make(&h.layer)?));
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

/// One layer; its pool parks at most `max_idle` connections in all (as many as app
/// connections may be open: the descriptor budget counts one parked connection for each).
fn build_one(ls: &LayerSettings, max_idle: usize) -> Result<Built, String> {
    let mut b = FallbackLayer::builder()
        .handshake_timeout(ls.handshake_timeout)
        .enable_http2(true);
    if let Some(ca) = &ls.ca_file {
        b = b.ca_file(ca);
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
    if let Some(f) = &ls.cache_file {
        b = b.cache_file(f);
    }
    if let Some(url) = &ls.redis {
        b = b.redis(&url.0);
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
