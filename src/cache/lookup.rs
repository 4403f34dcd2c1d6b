//! The cache's rules for one connection: whether a stored decision is a starting point
//! ([`judge`], pure), and what a won walk stores ([`record_win`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{Decision, DecisionStore};
use crate::policy::HostKey;
use crate::stats::Counters;

/// What a won walk teaches (the walk's planner decides it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Learn {
    /// Nothing: the walk started from this very rung.
    Nothing,
    /// The top rung works: remembered so later first contacts skip the single flight.
    Healthy,
    /// A fallback that SCSV vouches for: learned.
    Fallback,
    /// A reshaped hello at the version of a rung that failed: seen once, not a start yet.
    Provisional,
    /// A reshaped hello seen provisionally before this walk and needed again: learned.
    Confirm,
}

/// What a stored decision is worth to a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Judgement {
    /// A starting rung.
    Start(usize),
    /// Older than the TTL (or dated in the future): drop it; `announce` when something
    /// anyone relied on expired (a confirmed fallback).
    Expired { counted: bool, announce: bool },
    /// Names a rung this ladder does not have at that index: learned with another ladder.
    Foreign,
    /// Seen once, not a starting point.
    Provisional,
}

/// The rule table. `name_at_rung`: the name of this ladder's rung at the decision's index.
pub(crate) fn judge(d: &Decision, expired: bool, name_at_rung: Option<&str>) -> Judgement {
    if expired {
        return Judgement::Expired {
            counted: !d.provisional,
            announce: !d.provisional && d.rung > 0,
        };
    }
    if name_at_rung != Some(&*d.profile) {
        return Judgement::Foreign;
    }
    if d.provisional {
        return Judgement::Provisional;
    }
    Judgement::Start(usize::from(d.rung))
}

/// The host's starting decision, if any: applies [`judge`] (drops what it rejects, counts and
/// announces it).
pub(crate) fn lookup<'n>(
    store: &dyn DecisionStore,
    ttl: Duration,
    name_of: impl Fn(usize) -> Option<&'n str>,
    stats: &Counters,
    key: &HostKey,
) -> Option<Arc<Decision>> {
    let Some(d) = store.get(key) else {
        stats.cache_miss();
        return None;
    };
    match judge(&d, d.expired(ttl), name_of(usize::from(d.rung))) {
        Judgement::Start(_) => {
            stats.cache_hit();
            d.uses.fetch_add(1, Ordering::Relaxed);
            return Some(d);
        }
        Judgement::Expired { counted, announce } => {
            store.remove(key);
            if counted {
                stats.expired();
            }
            if announce {
                tracing::info!(host = %key, was = %d.profile,
                    "TLS fallback decision expired; re-probing from the top of the ladder");
            }
        }
        Judgement::Foreign => {
            // Learned with another ladder (a cache file from another version or
            // configuration): the rung number means nothing here.
            store.remove(key);
            tracing::info!(host = %key, was = %d.profile,
                "the cached TLS fallback names a rung this ladder does not have there; \
                 re-probing from the top");
        }
        Judgement::Provisional => {}
    }
    stats.cache_miss();
    None
}

/// The host's provisional decision, when it is a valid one: a reshape won again on its rung
/// confirms it.
pub(crate) fn prior_provisional<'n>(
    store: &dyn DecisionStore,
    ttl: Duration,
    name_of: impl Fn(usize) -> Option<&'n str>,
    key: &HostKey,
) -> Option<Arc<Decision>> {
    store.get(key).filter(|d| {
        d.provisional && !d.expired(ttl) && name_of(usize::from(d.rung)) == Some(&*d.profile)
    })
}

/// What one won walk teaches, as the planner judged it.
pub(crate) struct Win<'a> {
    pub(crate) rung: usize,
    pub(crate) name: &'a Arc<str>,
    pub(crate) learn: Learn,
    /// Why the rungs above failed (`"modern: closed; tls12: closed"`).
    pub(crate) reason: String,
    /// The provisional entry the walk started with (see [`prior_provisional`]).
    pub(crate) prior: Option<&'a Arc<Decision>>,
}

/// Stores what a win teaches; returns whether it was stored only provisionally. A confirmation
/// counts only if the provisional entry is still the stored one (not forgotten or replaced by
/// a concurrent walk).
pub(crate) fn record_win(
    store: &dyn DecisionStore,
    stats: &Counters,
    key: &HostKey,
    win: Win<'_>,
) -> bool {
    let still_stored = |p: &Arc<Decision>| store.get(key).is_some_and(|now| Arc::ptr_eq(&now, p));
    let provisional = match win.learn {
        Learn::Nothing => return false,
        Learn::Provisional => true,
        Learn::Confirm => !win.prior.is_some_and(still_stored),
        Learn::Healthy | Learn::Fallback => false,
    };
    let Ok(rung) = u8::try_from(win.rung) else {
        return provisional;
    };
    let mut decision = Decision::new(rung, Arc::clone(win.name), win.reason);
    if provisional {
        tracing::info!(host = %key, failed = %decision.reason, working = %win.name,
            "a reshaped hello at the same TLS version worked; used for this connection \
             only, and learned if the next first contact needs it too");
        decision = decision.into_provisional();
    } else if rung > 0 {
        stats.learned();
        tracing::warn!(host = %key, failed = %decision.reason, working = %win.name,
            "TLS fallback learned: this host is intolerant to modern ClientHellos; later \
             connections start at the working rung. Send the vendor the report of \
             `tls-fallback probe {key}`");
    }
    store.put(key.clone(), Arc::new(decision));
    provisional
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(rung: u8, name: &str, provisional: bool) -> Decision {
        let d = Decision::new(rung, Arc::from(name), "x");
        if provisional {
            d.into_provisional()
        } else {
            d
        }
    }

    #[test]
    fn the_judgement_table() {
        use Judgement::*;
        // (rung, stored name, provisional, expired, this ladder's name at that rung) -> judgement
        type Row = (
            u8,
            &'static str,
            bool,
            bool,
            Option<&'static str>,
            Judgement,
        );
        let rows: &[Row] = &[
            (2, "tls12", false, false, Some("tls12"), Start(2)),
            (0, "modern", false, false, Some("modern"), Start(0)),
            (2, "tls12", true, false, Some("tls12"), Provisional),
            (2, "tls12", false, false, Some("tls12-compact"), Foreign),
            (9, "tls12", false, false, None, Foreign),
            (2, "tls12", true, false, Some("other"), Foreign),
            (
                2,
                "tls12",
                false,
                true,
                Some("tls12"),
                Expired {
                    counted: true,
                    announce: true,
                },
            ),
            (
                0,
                "modern",
                false,
                true,
                Some("modern"),
                Expired {
                    counted: true,
                    announce: false,
                },
            ),
            (
                1,
                "modern-compact",
                true,
                true,
                None,
                Expired {
                    counted: false,
                    announce: false,
                },
            ),
        ];
        for (i, (rung, name, prov, expired, here, want)) in rows.iter().enumerate() {
            let d = decision(*rung, name, *prov);
            assert_eq!(judge(&d, *expired, *here), *want, "row {i}");
        }
    }
}
