//! The parts of the [`DecisionStore`](super::DecisionStore) contract that only shared stores
//! (Redis) fill in: the hooks' result types and the sharing counters. Every other store keeps
//! the defaults (no remote, answered at once).

use serde::Serialize;

/// A boxed future, as the [`DecisionStore`](super::DecisionStore) hooks return them.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What [`DecisionStore::fleet_flight`](super::DecisionStore::fleet_flight) tells the local
/// leader.
#[derive(Debug)]
pub enum FleetFlight {
    /// No other instance to ask (no shared store, or it is unreachable), or the wait ran
    /// out: walk.
    Alone,
    /// This instance leads for the fleet: walk, store the decision, then drop the lease.
    Lead(FleetLease),
    /// Another instance concluded while we waited: look the host up again (its decision, if
    /// it learned one, is in the local store now; else walk).
    Concluded,
}

/// Held by the instance that walks for the fleet; dropping it releases the host for the
/// others and tells the waiters the walk is over.
pub struct FleetLease {
    /// Whatever releases the lock when dropped.
    pub(crate) _held: Box<dyn Send + Sync>,
}

impl std::fmt::Debug for FleetLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FleetLease")
    }
}

/// Counters of a shared store
/// (see [`DecisionStore::shared_stats`](super::DecisionStore::shared_stats)).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SharedStats {
    /// Decisions read from the shared store on a local miss.
    pub read: u64,
    /// Decisions and forgets published to the other instances.
    pub published: u64,
    /// Decisions and forgets received from the other instances and applied.
    pub received: u64,
    /// Values refused by the validation (unknown rung, forbidden rung, garbage, oversize).
    pub dropped_invalid: u64,
    /// Errors and timeouts talking to the shared store.
    pub errors: u64,
    /// Whether the last contact with the shared store worked.
    pub connected: bool,
}
