//! The walk down the ladder for one `https://` connection, split the way the rest of the crate
//! is: decisions pure, I/O thin.
//!
//! * [`planner`]: the rules, as a pure state machine (events in, actions out; no socket, no
//!   clock, no store);
//! * [`driver`]: runs the planner's actions (attempts, stall timers, counters, learning);
//! * [`attempt`]: one TCP connect and one handshake, classified;
//! * [`flight`]: single flight, so concurrent first contacts share one walk.
//!
//! [`connect`] ties them together: the pin, else where to start (the cache, another
//! connection's walk, or the top), then the driver's loop.

pub(crate) mod attempt;
pub(crate) mod driver;
pub(crate) mod flight;
pub(crate) mod planner;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use http::Uri;
use hyper::rt::{Read, Write};
use tower_service::Service;

use self::attempt::BoxError;
use self::driver::{Driver, Ended};
use self::flight::{after_wait, wait_flight, AfterWait, FlightOutcome, Flights, Join, Leader};
use self::planner::{Planner, Start};
use crate::cache::lookup;
use crate::cache::{Decision, FleetFlight, FleetLease};
use crate::config::{BuiltRung, Config};
use crate::error::Error;
use crate::policy::HostKey;
use crate::stats::{self, Counters, Stats};
use crate::stream::MaybeHttpsStream;

/// What the walk needs of the wrapped TCP connector (any `Service<Uri>` whose streams hyper
/// can use); implemented for every such connector.
pub(crate) trait TcpConnect:
    Service<
        Uri,
        Response: Read + Write + Unpin + Send + 'static,
        Future: Send,
        Error: Into<BoxError>,
    > + Clone
    + Send
{
}

impl<S> TcpConnect for S
where
    S: Service<Uri> + Clone + Send,
    S::Response: Read + Write + Unpin + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
{
}

/// Rounds of waiting for another connection's walk before walking alone.
const WAIT_ROUNDS: usize = 3;

/// What a layer and its connectors share: the configuration, built once, and the state that
/// connections update (single flights, counters; decisions live in the configured store).
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) flights: Flights,
    pub(crate) stats: Counters,
}

impl Shared {
    pub(crate) fn new(config: Config) -> Self {
        Shared {
            config,
            flights: Flights::default(),
            stats: Counters::default(),
        }
    }

    /// Forgets a host's decision and TLS sessions.
    pub(crate) fn forget(&self, key: &HostKey) {
        self.config.store.remove(key);
        if let Some(sessions) = &self.config.sessions {
            sessions.forget_host(key);
        }
    }

    /// Counters and learned hosts.
    pub(crate) fn stats(&self) -> Stats {
        let rungs = &self.config.rungs;
        let max_version = |i: u8| rungs.get(usize::from(i)).map(|r| r.profile.max_version());
        stats::snapshot(
            &self.stats,
            &*self.config.store,
            self.config.ttl,
            &max_version,
        )
    }

    /// What the walk's planner needs to know about the ladder, for this host.
    fn facts(&self, key: &HostKey) -> planner::Facts {
        let config = &self.config;
        planner::Facts {
            rungs: (config.rungs.iter())
                .map(|r| planner::RungFacts {
                    cap: r.profile.max_version(),
                    legacy: r.profile.is_legacy(),
                    allowed: config.policy.rung_allowed(key, &r.profile),
                })
                .collect(),
            racing: config.stall.is_some(),
            legacy_allowed: config.policy.legacy_allowed(key),
        }
    }

    fn rung_name(&self, i: usize) -> Option<&str> {
        self.config.rungs.get(i).map(|r| &*r.name)
    }

    fn lookup(&self, key: &HostKey) -> Option<Arc<Decision>> {
        let name = |i| self.rung_name(i);
        lookup::lookup(&*self.config.store, self.config.ttl, name, &self.stats, key)
    }
}

/// One `https://` connection: pinned, or a walk from where [`start`] says.
pub(crate) async fn connect<S>(
    shared: &Shared,
    inner: S,
    uri: &Uri,
    key: &HostKey,
) -> Result<MaybeHttpsStream<S::Response>, Error>
where
    S: TcpConnect,
{
    shared.stats.connection();
    if let Some(pin) = shared.config.pin_for(key) {
        return pinned(shared, inner, uri, key, &pin.rung).await;
    }
    let (start, leader, fleet_lease) = start(shared, key).await?;
    let ended = walk(shared, inner, uri, key, start).await;
    // The decision is stored (and published): the other instances may go.
    drop(fleet_lease);
    if let Some(leader) = leader {
        leader.finish(match (&ended.result, ended.rung) {
            (Ok(_), _) if ended.provisional => FlightOutcome::Provisional,
            (Ok(_), Some(rung)) => FlightOutcome::Rung(rung),
            (Err(e), _) => FlightOutcome::Failed(e.clone()),
            (Ok(_), None) => FlightOutcome::Provisional,
        });
    }
    ended.result
}

/// Where the walk starts, and the flight this connection leads, if any: a cached decision;
/// else the outcome of another connection's walk to the host (at most [`WAIT_ROUNDS`] rounds
/// of waiting); else the top.
async fn start<'s>(
    shared: &'s Shared,
    key: &HostKey,
) -> Result<(Start, Option<Leader<'s>>, Option<FleetLease>), Error> {
    let mut connect_retried = false;
    for round in 0..=WAIT_ROUNDS {
        if let Some(d) = shared.lookup(key) {
            return Ok((Start::Cached(usize::from(d.rung)), None, None));
        }
        if !shared.config.single_flight || round == WAIT_ROUNDS {
            break;
        }
        let rx = match shared.flights.join(key) {
            Join::Lead(leader) => {
                let (start, lease) = fleet_start(shared, key).await;
                return Ok((start, Some(leader), lease));
            }
            Join::Wait(rx) => rx,
        };
        shared.stats.single_flight_wait();
        match after_wait(wait_flight(rx).await, connect_retried) {
            AfterWait::StartAt(rung) => return Ok((Start::Cached(rung), None, None)),
            AfterWait::Again => {}
            AfterWait::RetryConnect => connect_retried = true,
            AfterWait::Fail(e) => return Err(e),
        }
    }
    Ok((Start::Top, None, None))
}

/// The local leader asks the other instances before it walks (a shared store; any other
/// store answers at once): a decision one of them learned (one bounded read), else the
/// fleet-wide single flight, waiting at most one handshake timeout for another instance.
async fn fleet_start(shared: &Shared, key: &HostKey) -> (Start, Option<FleetLease>) {
    let store = &*shared.config.store;
    let look_again = |lease| match shared.lookup(key) {
        Some(d) => (Start::Cached(usize::from(d.rung)), None),
        None => (Start::Top, lease),
    };
    if store.fetch_remote(key).await.is_some() {
        return look_again(None);
    }
    let wait = shared.config.policy.handshake_timeout();
    match store.fleet_flight(key, wait).await {
        FleetFlight::Lead(lease) => (Start::Top, Some(lease)),
        FleetFlight::Concluded => look_again(None),
        FleetFlight::Alone => (Start::Top, None),
    }
}

/// The walk: the planner decides, the driver runs.
async fn walk<S>(
    shared: &Shared,
    inner: S,
    uri: &Uri,
    key: &HostKey,
    start: Start,
) -> Ended<S::Response>
where
    S: TcpConnect,
{
    let config = &shared.config;
    let mut d = Driver::new(shared, inner, uri, key, &config.rungs);
    d.prior = lookup::prior_provisional(&*config.store, config.ttl, |i| shared.rung_name(i), key);
    d.cached = match start {
        Start::Cached(rung) => Some(rung),
        Start::Top => None,
    };
    let prior_rung = d.prior.as_ref().map(|p| usize::from(p.rung));
    let mut planner = Planner::new(shared.facts(key), start, prior_rung);
    let mut actions = planner.begin();
    let mut pending = None;
    loop {
        if let Some(ended) = d.apply(actions, pending.take()) {
            return ended;
        }
        let (event, tried) = d.next_event().await;
        if let (planner::Event::Finished(id, _), Some(tried)) = (event, tried) {
            pending = Some(d.take(id, tried));
        }
        actions = planner.on(event);
    }
}

/// A pinned host: one attempt with its profile, no SCSV, no learning.
async fn pinned<S>(
    shared: &Shared,
    inner: S,
    uri: &Uri,
    key: &HostKey,
    rung: &BuiltRung,
) -> Result<MaybeHttpsStream<S::Response>, Error>
where
    S: TcpConnect,
{
    let mut d = Driver::new(shared, inner, uri, key, std::slice::from_ref(rung));
    d.pinned = true;
    let id = planner::AttemptId(0);
    let launch = planner::Action::Launch {
        id,
        rung: 0,
        fallback: false,
    };
    let mut pending = None;
    let mut actions = vec![launch];
    loop {
        if let Some(ended) = d.apply(actions, pending.take()) {
            return ended.result;
        }
        let (event, tried) = d.next_event().await;
        actions = match (event, tried) {
            (planner::Event::Finished(id, finish), Some(tried)) => {
                pending = Some(d.take(id, tried));
                planner::pinned(id, finish)
            }
            _ => Vec::new(),
        };
    }
}
