//! Single flight: concurrent first contacts to one host share one learning walk. The first
//! connection leads (walks the ladder), the others wait for its outcome and then start where
//! it ended, or share its error when the error is about TLS. What a waiter does with each
//! outcome is the pure table [`after_wait`]; the rest is a map of watch channels.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use crate::cache::lookup::Learn;
use crate::error::Error;
use crate::policy::HostKey;

/// How a learning walk ended, as told to the connections that waited for it.
#[derive(Debug, Clone)]
pub(crate) enum FlightOutcome {
    /// This rung worked.
    Rung(usize),
    /// A rung worked that is only provisionally learned (a reshaped hello, see
    /// [`Decision::provisional`]): not a starting point for the waiters either.
    Provisional,
    /// The walk failed with this error.
    Failed(Error),
}

/// Concurrent first contacts to one host: one leads the walk, the others wait for its outcome.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<HostKey, watch::Receiver<Option<FlightOutcome>>>>,
}

/// The leader's handle; dropping it without [`Leader::finish`] wakes the waiters with no
/// outcome (they then try again themselves).
pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    key: HostKey,
    tx: watch::Sender<Option<FlightOutcome>>,
    /// The entry is already out of the table (`finish` took it out).
    removed: bool,
}

pub(crate) enum Join<'a> {
    Lead(Leader<'a>),
    Wait(watch::Receiver<Option<FlightOutcome>>),
}

impl Flights {
    pub(crate) fn join(&self, key: &HostKey) -> Join<'_> {
        let mut map = match self.map.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(rx) = map.get(key) {
            if rx.has_changed().is_ok() {
                return Join::Wait(rx.clone());
            }
        }
        let (tx, rx) = watch::channel(None);
        map.insert(key.clone(), rx);
        Join::Lead(Leader {
            flights: self,
            key: key.clone(),
            tx,
            removed: false,
        })
    }

    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
}

impl Leader<'_> {
    /// Hands the outcome to the waiters. The flight leaves the table first, under its lock: a
    /// connection that arrives later never joins a finished flight (it finds the learned rung
    /// in the cache, or leads a new walk).
    pub(crate) fn finish(mut self, outcome: FlightOutcome) {
        self.remove();
        let _ = self.tx.send(Some(outcome));
    }

    fn remove(&mut self) {
        if self.removed {
            return;
        }
        self.removed = true;
        let mut map = match self.flights.map.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.remove(&self.key);
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        // Without `finish` (a cancelled walk): waiters see the channel close with no outcome.
        self.remove();
    }
}

/// Waits for a leader's outcome; `None` when the leader gave up without one.
pub(crate) async fn wait_flight(
    mut rx: watch::Receiver<Option<FlightOutcome>>,
) -> Option<FlightOutcome> {
    loop {
        if let Some(o) = rx.borrow_and_update().clone() {
            return Some(o);
        }
        if rx.changed().await.is_err() {
            return rx.borrow().clone();
        }
    }
}

/// What a waiter does with its leader's outcome.
#[derive(Debug)]
pub(crate) enum AfterWait {
    /// Connect starting at the rung the leader found.
    StartAt(usize),
    /// Look again: the cache, then a new flight (one of the waiters leads it).
    Again,
    /// The same, after a leader's TCP connect failure (only once per connection).
    RetryConnect,
    /// Share the leader's error.
    Fail(Error),
}

/// The waiter's rules, as a table. `connect_retried`: this connection already looked again
/// after a leader's connect failure.
pub(crate) fn after_wait(outcome: Option<FlightOutcome>, connect_retried: bool) -> AfterWait {
    match outcome {
        Some(FlightOutcome::Rung(rung)) => AfterWait::StartAt(rung),
        // A reshaped hello that is not learned yet: one reset must not choose the hello of a
        // whole burst. Walk again (one waiter leads and confirms it or not).
        Some(FlightOutcome::Provisional) => AfterWait::Again,
        // The leader was cancelled (its request was dropped).
        None => AfterWait::Again,
        // The leader's TCP connect failed: that says nothing about TLS and may not hold for
        // this connection (another address, a transient refusal). Try once more; a second
        // failure is shared, so no chain of leaders each waits out a connect timeout.
        Some(FlightOutcome::Failed(e @ Error::Connect { .. })) if connect_retried => {
            AfterWait::Fail(e)
        }
        Some(FlightOutcome::Failed(Error::Connect { .. })) => AfterWait::RetryConnect,
        // A TLS verdict (certificate, downgrade, every rung failed, timeouts) holds for the
        // host: share it rather than walk the ladder again.
        Some(FlightOutcome::Failed(e)) => AfterWait::Fail(e),
    }
}

/// Whether the connections that waited for a won walk may start at its rung: only where the
/// win is a decision, one stored now (not provisionally) or the one the walk started from. A
/// win that taught nothing (a walk that saw a downgrade signal) or only a provisional reshape
/// is no starting point for a burst: they walk again.
pub(crate) fn waiters_may_start(
    learn: Learn,
    from_cache: bool,
    stored_provisionally: bool,
) -> bool {
    match learn {
        Learn::Nothing => from_cache,
        Learn::Provisional => false,
        Learn::Healthy | Learn::Fallback | Learn::Confirm => !stored_provisionally,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect_error() -> Error {
        Error::Connect {
            host: "h:1".into(),
            source: std::sync::Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(
                "refused",
            )),
            attempts: crate::error::Attempts(Vec::new()),
        }
    }

    #[test]
    fn what_a_waiter_does_with_each_outcome() {
        let tls = || Error::Handshake {
            host: "h:1".into(),
            attempts: crate::error::Attempts(Vec::new()),
        };
        // (outcome, already retried a connect failure) -> what the waiter does
        let rows: Vec<(Option<FlightOutcome>, bool, &str)> = vec![
            (Some(FlightOutcome::Rung(3)), false, "start at 3"),
            (Some(FlightOutcome::Rung(0)), true, "start at 0"),
            (Some(FlightOutcome::Provisional), false, "again"),
            (None, false, "again"),
            (None, true, "again"),
            (
                Some(FlightOutcome::Failed(connect_error())),
                false,
                "retry connect",
            ),
            (
                Some(FlightOutcome::Failed(connect_error())),
                true,
                "fail connect",
            ),
            (Some(FlightOutcome::Failed(tls())), false, "fail handshake"),
        ];
        for (outcome, retried, want) in rows {
            let got = match after_wait(outcome, retried) {
                AfterWait::StartAt(r) => format!("start at {r}"),
                AfterWait::Again => "again".into(),
                AfterWait::RetryConnect => "retry connect".into(),
                AfterWait::Fail(e) => format!("fail {}", e.kind().as_str()),
            };
            assert_eq!(got, want);
        }
    }

    #[test]
    fn waiters_start_only_from_a_decision() {
        use Learn::*;
        // (what the walk learned, it started from a cached decision, stored provisionally)
        let rows = [
            (Healthy, false, false, true),
            (Fallback, false, false, true),
            (Confirm, false, false, true),
            // A confirmation that found its provisional entry replaced is stored provisionally.
            (Confirm, false, true, false),
            (Provisional, false, true, false),
            // Started from a decision (a fleet read): that decision holds.
            (Nothing, true, false, true),
            // A walk that saw a downgrade signal learned nothing: no start for the burst.
            (Nothing, false, false, false),
        ];
        for (learn, cached, provisional, want) in rows {
            assert_eq!(
                waiters_may_start(learn, cached, provisional),
                want,
                "{learn:?} {cached}"
            );
        }
    }

    #[test]
    fn single_flight_has_one_leader_per_host() {
        let f = Flights::default();
        let k = HostKey::new("a", 1);
        let lead = match f.join(&k) {
            Join::Lead(l) => l,
            Join::Wait(_) => panic!("first joiner must lead"),
        };
        let rx = match f.join(&k) {
            Join::Wait(rx) => rx,
            Join::Lead(_) => panic!("second joiner must wait"),
        };
        assert!(matches!(f.join(&HostKey::new("b", 1)), Join::Lead(_)));
        lead.finish(FlightOutcome::Rung(3));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        match rt.block_on(wait_flight(rx)) {
            Some(FlightOutcome::Rung(3)) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(f.in_flight(), 0);
    }
}
