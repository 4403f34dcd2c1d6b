//! What we remember: per-host decisions (the rung that worked), their expiry, the pluggable
//! [`DecisionStore`] (in memory by default, optionally a JSON file), and the single-flight
//! table that makes concurrent first contacts to one host share one learning walk.
//!
//! Safety: a decision only ever says where to *start*; every rung still carries SCSV, checks
//! certificates and respects the policy. A decision expires after a TTL (the next connection
//! walks from the top again) and is forgotten at once on a downgrade signal.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::policy::HostKey;

pub(crate) mod check;
mod file;
mod shared;
pub use shared::{BoxFuture, FleetFlight, FleetLease, SharedStats};
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
pub use redis::{RedisOptions, RedisStore};
pub(crate) mod lookup;

pub use file::FileStore;

/// What was learned about one host.
#[derive(Debug, Serialize, Deserialize)]
pub struct Decision {
    /// Index of the rung that worked (0 = the top of the ladder).
    pub rung: u8,
    /// Name of that rung.
    pub profile: Arc<str>,
    /// Why the rungs above it failed, e.g. `"modern: closed; tls12: closed"`.
    pub reason: Box<str>,
    /// When it was learned (milliseconds since the Unix epoch).
    pub learned_at_ms: u64,
    /// How many connections started from it.
    #[serde(default)]
    pub uses: AtomicU64,
    /// Seen once, not yet learned: a rung that won after a rung above it with the same version
    /// cap failed, i.e. one that only reshapes the hello (`modern-compact` after `modern`).
    /// TLS_FALLBACK_SCSV cannot vouch for such a fallback (it guards versions, not hello
    /// shapes), so one reset must not decide the hello of every later connection: a
    /// provisional decision is not a starting point, and becomes a real one when the next walk
    /// from the top ends on the same rung.
    #[serde(default)]
    pub provisional: bool,
    /// Where this copy came from (this process's own walk, the decision file, Redis): for
    /// operators only, never stored or shared (a copy read back is dated by where it is read).
    #[serde(skip)]
    pub source: DecisionSource,
}

/// Where a decision in a store came from ([`Decision::source`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionSource {
    /// Learned by a walk of this process.
    #[default]
    Walk,
    /// Read from the decision file when the store opened.
    File,
    /// Learned by another instance, read from or announced through Redis.
    Redis,
}

impl DecisionSource {
    /// `walk`, `file` or `redis`.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionSource::Walk => "walk",
            DecisionSource::File => "file",
            DecisionSource::Redis => "redis",
        }
    }
}

impl Decision {
    /// A decision learned now.
    pub fn new(rung: u8, profile: Arc<str>, reason: impl Into<Box<str>>) -> Self {
        Decision {
            rung,
            profile,
            reason: reason.into(),
            learned_at_ms: unix_ms(),
            uses: AtomicU64::new(0),
            provisional: false,
            source: DecisionSource::Walk,
        }
    }

    /// The same decision, marked provisional (see [`Decision::provisional`]).
    pub fn into_provisional(mut self) -> Self {
        self.provisional = true;
        self
    }

    /// Whether the decision is older than `ttl`. A decision dated more than five minutes in
    /// the future (a clock that jumped back, a hand-edited file) counts as expired: it would
    /// otherwise never expire.
    pub fn expired(&self, ttl: Duration) -> bool {
        let now = unix_ms();
        self.learned_at_ms > now.saturating_add(check::FUTURE_SLACK_MS)
            || u128::from(now.saturating_sub(self.learned_at_ms)) >= ttl.as_millis()
    }
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Where decisions live. Implement it to share decisions between processes (a database, a
/// shared cache); the connector calls it from async code, so calls must not block for long.
pub trait DecisionStore: Send + Sync + std::fmt::Debug + 'static {
    /// The decision for a host, if any (expired ones included; the connector checks the TTL).
    fn get(&self, key: &HostKey) -> Option<Arc<Decision>>;
    /// Records a decision, replacing any previous one.
    fn put(&self, key: HostKey, decision: Arc<Decision>);
    /// Forgets a host.
    fn remove(&self, key: &HostKey);
    /// Forgets a host here only: its decision is not wrong, this layer's policy just does not
    /// allow its rung (a reload narrowed the legacy gate or raised the floor). A shared store
    /// drops its local copy and tells no other instance; the default is [`Self::remove`].
    fn discard(&self, key: &HostKey) {
        self.remove(key);
    }
    /// Every decision held, for stats and persistence.
    fn snapshot(&self) -> Vec<(HostKey, Arc<Decision>)>;
    /// Makes pending changes durable (a no-op for memory-only stores).
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
    /// On a local miss, before the first walk: one bounded read of a decision another instance
    /// learned (a shared store). A decision returned is already in the local store. The
    /// default (no remote) answers `None` at once.
    fn fetch_remote<'a>(&'a self, key: &'a HostKey) -> BoxFuture<'a, Option<Arc<Decision>>> {
        let _ = key;
        Box::pin(std::future::ready(None))
    }
    /// Fleet-wide single flight, asked by the local flight's leader before it walks: lead
    /// (hold the returned lease until the walk has concluded and its decision is stored),
    /// or wait at most `wait` for the instance that leads. The default (no remote) answers
    /// [`FleetFlight::Alone`] at once.
    fn fleet_flight<'a>(&'a self, key: &'a HostKey, wait: Duration) -> BoxFuture<'a, FleetFlight> {
        let _ = (key, wait);
        Box::pin(std::future::ready(FleetFlight::Alone))
    }
    /// Counters of the sharing (shared stores only).
    fn shared_stats(&self) -> Option<SharedStats> {
        None
    }
}

/// The default store: a bounded, concurrent in-memory cache (`quick_cache`: sharded, CLOCK-Pro
/// style eviction that keeps frequently used hosts, no global lock).
///
/// `quick_cache` rather than `moka`: at 1,000,000 hosts it takes about 200 bytes per entry
/// against moka's 450, and looks up two to three times faster (docs/BENCHMARKS.md).
#[derive(Clone)]
pub struct MemoryStore {
    cache: Arc<quick_cache::sync::Cache<HostKey, Arc<Decision>>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("len", &self.cache.len())
            .field("capacity", &self.cache.capacity())
            .finish()
    }
}

impl MemoryStore {
    /// A store holding at most about `capacity` hosts.
    ///
    /// Expiry is the connector's job (it checks each decision's age against its TTL at
    /// lookup), so the store keeps no per-entry timers.
    pub fn new(capacity: u64) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX).max(1);
        MemoryStore {
            cache: Arc::new(quick_cache::sync::Cache::new(capacity)),
        }
    }

    /// How many entries it holds.
    pub fn len(&self) -> u64 {
        self.cache.len() as u64
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl DecisionStore for MemoryStore {
    fn get(&self, key: &HostKey) -> Option<Arc<Decision>> {
        self.cache.get(key)
    }
    fn put(&self, key: HostKey, decision: Arc<Decision>) {
        self.cache.insert(key, decision);
    }
    fn remove(&self, key: &HostKey) {
        self.cache.remove(key);
    }
    fn snapshot(&self) -> Vec<(HostKey, Arc<Decision>)> {
        self.cache.iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_expiry_follows_the_ttl() {
        let mut d = Decision::new(2, "tls12-compact".into(), "modern: closed");
        assert!(!d.expired(Duration::from_secs(3600)));
        d.learned_at_ms -= 3_601_000;
        assert!(d.expired(Duration::from_secs(3600)));
    }

    #[test]
    fn a_decision_dated_in_the_future_counts_as_expired() {
        let mut d = Decision::new(2, "tls12".into(), "modern: closed");
        d.learned_at_ms += 60_000;
        assert!(
            !d.expired(Duration::from_secs(3600)),
            "a minute of clock skew is fine"
        );
        d.learned_at_ms += 3_600_000 * 24 * 365;
        assert!(
            d.expired(Duration::from_secs(3600)),
            "a year ahead never expires otherwise"
        );
    }
}
