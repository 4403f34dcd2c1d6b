//! Counters and the serializable [`Stats`] snapshot of a connector.
//!
//! Every counter is kept twice: in the layer's own atomics (read by [`Stats`]) and through the
//! [`metrics`] facade, which costs nothing when the application installs no recorder. The
//! facade's names, all counters:
//!
//! | name | labels | counts |
//! |---|---|---|
//! | `tls_fallback_connections_total` | | `https://` connections requested |
//! | `tls_fallback_handshakes_total` | | handshakes sent (every rung of every connection) |
//! | `tls_fallback_fallbacks_total` | `reason` | fallbacks, by the outcome that caused them |
//! | `tls_fallback_downgrades_total` | | downgrade signals |
//! | `tls_fallback_failures_total` | `kind` | connections that failed, by [`crate::ErrorKind`] |
//! | `tls_fallback_learned_total` | | fallback decisions learned |
//! | `tls_fallback_expired_total` | | decisions that expired |
//! | `tls_fallback_races_total` | | stalled rungs raced by the next one |
//! | `tls_fallback_resumed_total` | | handshakes that resumed a session |
//! | `tls_fallback_cache_hits_total`, `tls_fallback_cache_misses_total` | | decision lookups |
//! | `tls_fallback_single_flight_waits_total` | | connections that waited for another's walk |
//! | `tls_fallback_redis_read_total`, `..._published_total`, `..._received_total`, `..._dropped_invalid_total`, `..._errors_total` | | decisions shared through Redis ([`crate::cache::SharedStats`]) |
//!
//! and one gauge: `tls_fallback_redis_connected` (feature `redis`), 1 while the store reaches
//! Redis (its heartbeat, every 500 ms, answered), 0 while it does not (0 from the start until
//! the first heartbeat answers); a process with several Redis stores counts those connected.
//!
//! The number of learned hosts is a property of the store, not an event: an exporter reads it
//! from [`Stats::hosts`] when it is scraped (the proxy exports it as the gauge
//! `tls_fallback_learned_hosts`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use crate::cache::DecisionStore;

/// The names the crate's counters have in the [`metrics`] facade (the table above), for
/// exporters and dashboards: one owner, so a renamed counter cannot leave a stale copy behind.
pub mod metric_names {
    /// `https://` connections requested.
    pub const CONNECTIONS: &str = "tls_fallback_connections_total";
    /// Handshakes sent.
    pub const HANDSHAKES: &str = "tls_fallback_handshakes_total";
    /// Fallbacks, label `reason`.
    pub const FALLBACKS: &str = "tls_fallback_fallbacks_total";
    /// Downgrade signals.
    pub const DOWNGRADES: &str = "tls_fallback_downgrades_total";
    /// Failed connections, label `kind`.
    pub const FAILURES: &str = "tls_fallback_failures_total";
    /// Decisions learned.
    pub const LEARNED: &str = "tls_fallback_learned_total";
    /// Decisions that expired.
    pub const EXPIRED: &str = "tls_fallback_expired_total";
    /// Stalled rungs raced by the next one.
    pub const RACES: &str = "tls_fallback_races_total";
    /// Resumed handshakes.
    pub const RESUMED: &str = "tls_fallback_resumed_total";
    /// Decision lookups that found one.
    pub const CACHE_HITS: &str = "tls_fallback_cache_hits_total";
    /// Decision lookups that found none.
    pub const CACHE_MISSES: &str = "tls_fallback_cache_misses_total";
    /// Connections that waited for another's walk.
    pub const SINGLE_FLIGHT_WAITS: &str = "tls_fallback_single_flight_waits_total";
    /// Decisions read from Redis.
    pub const REDIS_READ: &str = "tls_fallback_redis_read_total";
    /// Decisions published to Redis.
    pub const REDIS_PUBLISHED: &str = "tls_fallback_redis_published_total";
    /// Decisions received from other instances.
    pub const REDIS_RECEIVED: &str = "tls_fallback_redis_received_total";
    /// Shared values refused as invalid.
    pub const REDIS_DROPPED_INVALID: &str = "tls_fallback_redis_dropped_invalid_total";
    /// Redis errors.
    pub const REDIS_ERRORS: &str = "tls_fallback_redis_errors_total";
    /// A gauge, not a counter: 1 while the Redis store reaches Redis, 0 while it does not (the
    /// stores of a process connected, when it has several).
    pub const REDIS_CONNECTED: &str = "tls_fallback_redis_connected";

    /// The counters without labels, which an exporter can show at zero from the start.
    pub const UNLABELLED: [&str; 15] = [
        CONNECTIONS,
        HANDSHAKES,
        DOWNGRADES,
        LEARNED,
        EXPIRED,
        RACES,
        RESUMED,
        CACHE_HITS,
        CACHE_MISSES,
        SINGLE_FLIGHT_WAITS,
        REDIS_READ,
        REDIS_PUBLISHED,
        REDIS_RECEIVED,
        REDIS_DROPPED_INVALID,
        REDIS_ERRORS,
    ];
}

use metric_names as names;

/// Live counters, updated with relaxed atomics on the connection path.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) connections: AtomicU64,
    pub(crate) handshakes: AtomicU64,
    pub(crate) cache_hits: AtomicU64,
    pub(crate) cache_misses: AtomicU64,
    pub(crate) single_flight_waits: AtomicU64,
    pub(crate) downgrades: AtomicU64,
    pub(crate) learned: AtomicU64,
    pub(crate) expired: AtomicU64,
    pub(crate) fallbacks: Mutex<BTreeMap<String, u64>>,
    pub(crate) resumed: AtomicU64,
    pub(crate) races: AtomicU64,
}

/// One counter: bumps the layer's atomic and the facade's counter of the same meaning.
macro_rules! count {
    ($(#[$doc:meta])* $fn:ident, $field:ident, $name:expr) => {
        $(#[$doc])*
        pub(crate) fn $fn(&self) {
            self.$field.fetch_add(1, Ordering::Relaxed);
            metrics::counter!($name).increment(1);
        }
    };
}

impl Counters {
    count!(connection, connections, names::CONNECTIONS);
    count!(handshake, handshakes, names::HANDSHAKES);
    count!(cache_hit, cache_hits, names::CACHE_HITS);
    count!(cache_miss, cache_misses, names::CACHE_MISSES);
    count!(
        single_flight_wait,
        single_flight_waits,
        names::SINGLE_FLIGHT_WAITS
    );
    count!(downgrade, downgrades, names::DOWNGRADES);
    count!(learned, learned, names::LEARNED);
    count!(expired, expired, names::EXPIRED);
    count!(resumed, resumed, names::RESUMED);
    count!(race, races, names::RACES);

    /// A fallback to the next rung, by the outcome that caused it (`closed`, `alert:70`...).
    pub(crate) fn fallback(&self, reason: &str) {
        if let Ok(mut m) = self.fallbacks.lock() {
            *m.entry(reason.to_string()).or_insert(0) += 1;
        }
        metrics::counter!(names::FALLBACKS, "reason" => reason.to_string()).increment(1);
    }

    /// A connection that failed, by error kind (facade only: [`Stats`] has no such field).
    pub(crate) fn failure(&self, kind: crate::ErrorKind) {
        metrics::counter!(names::FAILURES, "kind" => kind.as_str()).increment(1);
    }
}

/// Counters and learned hosts of a connector; see [`crate::FallbackConnector::stats`].
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// `https://` connections requested.
    pub connections: u64,
    /// Handshakes attempted (every rung of every connection).
    pub handshakes: u64,
    /// Fallbacks, by the outcome that caused them (`closed`, `reset`, `alert:70`...).
    pub fallbacks: BTreeMap<String, u64>,
    /// Connections that started from a cached decision.
    pub cache_hits: u64,
    /// Connections with no (or an expired) decision.
    pub cache_misses: u64,
    /// Connections that waited for another connection's learning walk.
    pub single_flight_waits: u64,
    /// Downgrade signals seen.
    pub downgrades: u64,
    /// Decisions learned (fallbacks recorded).
    pub learned: u64,
    /// Decisions that expired and were re-probed.
    pub expired: u64,
    /// Handshakes that resumed a TLS session.
    pub resumed: u64,
    /// Times a stalled rung was raced by the next one.
    pub races: u64,
    /// Hosts that needed a fallback, with what was learned.
    pub hosts: Vec<HostStats>,
    /// Decisions shared with other instances (a shared store such as Redis only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared: Option<crate::cache::SharedStats>,
}

/// One learned host in [`Stats`].
#[derive(Debug, Clone, Serialize)]
pub struct HostStats {
    /// `host:port`.
    pub host: String,
    /// The rung that works.
    pub profile: String,
    /// Why the rungs above it failed.
    pub reason: String,
    /// When it was learned (ms since the Unix epoch).
    pub learned_at_ms: u64,
    /// Connections that started from it.
    pub uses: u64,
    /// Seen once, not yet a starting point: a reshaped hello (same version cap as a rung that
    /// failed above it), learned only when the next walk from the top needs it too
    /// ([`crate::Decision::provisional`]).
    pub provisional: bool,
    /// The highest TLS version the rung offers (`"1.0"`..`"1.3"`); the server may have chosen
    /// less, which is not recorded.
    pub max_version: Option<&'static str>,
    /// Where this process got it: `walk` (its own), `file` (the decision file) or `redis`.
    pub source: crate::cache::DecisionSource,
    /// When it expires (ms since the Unix epoch): `learned_at_ms` plus the layer's TTL; the
    /// next connection after it walks from the top.
    pub expires_at_ms: u64,
}

/// The snapshot of a layer: its counters and the fallbacks its store holds (unexpired).
///
/// `max_version` names the version cap of a rung by its index.
pub(crate) fn snapshot(
    c: &Counters,
    store: &dyn DecisionStore,
    ttl: std::time::Duration,
    max_version: &dyn Fn(u8) -> Option<crate::TlsVersion>,
) -> Stats {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let mut hosts: Vec<HostStats> = store
        .snapshot()
        .into_iter()
        .filter(|(_, d)| d.rung > 0 && !d.expired(ttl))
        .map(|(k, d)| HostStats {
            host: k.to_string(),
            profile: d.profile.to_string(),
            reason: d.reason.to_string(),
            learned_at_ms: d.learned_at_ms,
            uses: d.uses.load(Ordering::Relaxed),
            provisional: d.provisional,
            max_version: max_version(d.rung).map(|v| v.as_str()),
            source: d.source,
            expires_at_ms: d.learned_at_ms.saturating_add(ttl_ms),
        })
        .collect();
    hosts.sort_by(|a, b| a.host.cmp(&b.host));
    Stats {
        connections: c.connections.load(Ordering::Relaxed),
        handshakes: c.handshakes.load(Ordering::Relaxed),
        fallbacks: c.fallbacks.lock().map(|m| m.clone()).unwrap_or_default(),
        cache_hits: c.cache_hits.load(Ordering::Relaxed),
        cache_misses: c.cache_misses.load(Ordering::Relaxed),
        single_flight_waits: c.single_flight_waits.load(Ordering::Relaxed),
        downgrades: c.downgrades.load(Ordering::Relaxed),
        learned: c.learned.load(Ordering::Relaxed),
        expired: c.expired.load(Ordering::Relaxed),
        resumed: c.resumed.load(Ordering::Relaxed),
        races: c.races.load(Ordering::Relaxed),
        hosts,
        shared: store.shared_stats(),
    }
}
