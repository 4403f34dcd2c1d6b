//! Decisions shared through Redis (feature `redis`): a fleet learns a fragile gateway once.
//!
//! Lookups stay local: a bounded in-memory store answers every lookup, and Redis is never on
//! the path of a connection to a host this instance already knows. Redis is asked only on a
//! local miss (one read bounded by [`RedisOptions::read_timeout`]) and, for fleet-wide single
//! flight, for a short per-host lock. Confirmed decisions are written with a Redis expiry equal
//! to the time they have left and published on a channel with forgets and lock releases; every
//! instance applies what it receives to its local store. Provisional decisions never leave the
//! process. Every value read or received passes the same gate as the cache file
//! ([`super::check`]) and is dropped with a WARN otherwise.
//!
//! One background thread owns the Redis link (its own small runtime, so the store works the
//! same from any runtime or none): a heartbeat that notices an outage and reconnects, the
//! subscription, and the queue of writes. While Redis is unreachable every hook answers at
//! once ("walk alone") and writes are dropped: nothing waits on a dead server.

mod link;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::check::Rules;
use super::{
    BoxFuture, Decision, DecisionStore, FleetFlight, FleetLease, MemoryStore, SharedStats,
};
use crate::error::Error;
use crate::policy::{HostKey, Policy};
use crate::profile::Ladder;
use link::{Link, Op};

/// How a [`RedisStore`] reaches Redis and how long it may wait for it.
#[derive(Clone)]
pub struct RedisOptions {
    /// `redis://[user][:password@]host[:port][/db]`, or `rediss://` for TLS. Redis 6 or later
    /// (the store subscribes over RESP3).
    pub url: String,
    /// The bound on the one read made on a local miss, and on taking the fleet lock
    /// (default 50 ms). Past it, the walk goes ahead alone.
    pub read_timeout: Duration,
    /// How long the fleet lock on a host lasts if its holder never releases it (a crashed
    /// instance), default 5 s: a lost holder costs the others at most this.
    pub lock_time: Duration,
    /// The first part of every key and of the channel (default `tls-fallback`).
    pub namespace: String,
}

impl RedisOptions {
    /// The defaults for this URL.
    pub fn new(url: impl Into<String>) -> Self {
        RedisOptions {
            url: url.into(),
            read_timeout: Duration::from_millis(50),
            lock_time: Duration::from_secs(5),
            namespace: "tls-fallback".into(),
        }
    }
}

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOptions")
            .field("url", &crate::redact::url(&self.url))
            .field("read_timeout", &self.read_timeout)
            .field("lock_time", &self.lock_time)
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// A [`DecisionStore`] shared by every instance that uses the same Redis, ladder and policy.
/// Built by [`crate::FallbackLayerBuilder::redis`]; see the module docs and docs/FLEET.md.
///
/// ```no_run
/// use tls_fallback::FallbackLayer;
/// # fn run() -> Result<(), tls_fallback::Error> {
/// let layer = FallbackLayer::builder()
///     .redis("redis://:secret@redis.internal:6379/0")
///     .build()?; // builds even when Redis is down (one WARN, reconnects in the background)
/// # Ok(()) }
/// ```
pub struct RedisStore {
    link: Arc<Link>,
    ops: mpsc::Sender<Op>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.link.shown)
            .field("prefix", &self.link.keys.prefix)
            .field("connected", &self.connected())
            .finish()
    }
}

impl RedisStore {
    /// Opens the store for this ladder, policy and TTL (the key prefix holds a fingerprint of
    /// the ladder alone: instances whose policies differ share decisions, and each checks a
    /// value against its own policy when it reads it) with a local store of about `capacity`
    /// hosts. Fails only on a bad URL; an unreachable Redis logs one WARN and is retried in
    /// the background. Waits at most about a second for the first contact, so that a
    /// reachable Redis is in use at once.
    pub fn open(
        options: RedisOptions,
        ladder: &Ladder,
        policy: &Policy,
        ttl: Duration,
        capacity: u64,
    ) -> Result<Self, Error> {
        let rules = Rules::new(ladder, policy, ttl);
        let (link, ops) = link::start(options, rules, MemoryStore::new(capacity))?;
        Ok(RedisStore { link, ops })
    }

    /// Checks what it reads and receives against this policy and TTL from now on: for a layer
    /// rebuilt around this store ([`crate::FallbackLayerBuilder::decisions_of`]). The ladder
    /// must be the one the store was opened with (the builder checks it).
    pub(crate) fn adopt(&self, ladder: &Ladder, policy: &Policy, ttl: Duration) {
        self.link.set_rules(Rules::new(ladder, policy, ttl));
    }

    /// Whether the last contact with Redis worked.
    pub fn connected(&self) -> bool {
        self.link.up.load(Ordering::Acquire)
    }

    /// The Redis key holding a host's decision (`<namespace>:<fingerprint>:d:<host>:<port>`).
    pub fn key_of(&self, key: &HostKey) -> String {
        self.link.keys.decision(key)
    }

    /// The channel on which decisions, forgets and lock releases are published.
    pub fn channel(&self) -> &str {
        &self.link.keys.channel
    }

    fn send(&self, op: Op) {
        if !self.connected() {
            return; // Nothing waits on a dead server; the other instances learn alone too.
        }
        if self.ops.try_send(op).is_err() {
            self.link.count(link::Counter::Errors);
            tracing::debug!("the Redis write queue is full; a shared write was dropped");
        }
    }
}

impl DecisionStore for RedisStore {
    fn get(&self, key: &HostKey) -> Option<Arc<Decision>> {
        self.link.memory.get(key)
    }

    fn put(&self, key: HostKey, decision: Arc<Decision>) {
        self.link.memory.put(key.clone(), Arc::clone(&decision));
        // A reshaped hello seen once is not knowledge: it stays here.
        if !decision.provisional {
            self.send(Op::Learn(key, decision));
        }
    }

    fn remove(&self, key: &HostKey) {
        let old = self.link.memory.get(key);
        self.link.memory.remove(key);
        match old {
            // An expiry: every copy carries the same date, and Redis expires its own.
            Some(d) if d.expired(self.link.rules().ttl) => {}
            // Seen once, never shared: nothing to take back.
            Some(d) if d.provisional => {}
            // A downgrade signal, a forget: take back everything learned up to now.
            _ => self.send(Op::Forget(key.clone(), super::unix_ms())),
        }
    }

    /// Drops the local copy only: another instance may be allowed what this one is not.
    fn discard(&self, key: &HostKey) {
        self.link.memory.remove(key);
    }

    fn snapshot(&self) -> Vec<(HostKey, Arc<Decision>)> {
        self.link.memory.snapshot()
    }

    /// Waits (at most a second, blocking) until the writes queued so far are done: for a
    /// short-lived process that learned something and is about to exit.
    fn flush(&self) -> std::io::Result<()> {
        let (tx, rx) = std::sync::mpsc::channel();
        if !self.connected() || self.ops.try_send(Op::Flush(tx)).is_err() {
            return Ok(()); // Nothing will be written: Redis is down or the queue is full.
        }
        rx.recv_timeout(Duration::from_secs(1)).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "Redis {}: shared writes not done within 1 s",
                    self.link.shown
                ),
            )
        })
    }

    fn fetch_remote<'a>(&'a self, key: &'a HostKey) -> BoxFuture<'a, Option<Arc<Decision>>> {
        Box::pin(self.link.fetch(key))
    }

    fn fleet_flight<'a>(&'a self, key: &'a HostKey, wait: Duration) -> BoxFuture<'a, FleetFlight> {
        Box::pin(async move {
            match self.link.flight(key, wait).await {
                Some(true) => FleetFlight::Lead(FleetLease {
                    _held: Box::new(Lease {
                        key: Some(key.clone()),
                        ops: self.ops.clone(),
                    }),
                }),
                Some(false) => FleetFlight::Concluded,
                None => FleetFlight::Alone,
            }
        })
    }

    fn shared_stats(&self) -> Option<SharedStats> {
        Some(self.link.stats())
    }
}

/// The fleet lock on one host; dropping it releases the lock and tells the waiters.
struct Lease {
    key: Option<HostKey>,
    ops: mpsc::Sender<Op>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            // If the queue is full the lock simply runs out (lock_time).
            let _ = self.ops.try_send(Op::Release(key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_debug_output() {
        let dbg = format!("{:?}", RedisOptions::new("redis://:s3cret@r"));
        assert!(!dbg.contains("s3cret"), "{dbg}");
    }
}
