//! Counters and the serializable [`Stats`] snapshot of a connector.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use serde::Serialize;

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
}
