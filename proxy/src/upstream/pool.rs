//! Parked upstream connections by key (`host:port`), as the proxy's own pool keeps them: an
//! HTTP/1.1 connection that no app connection holds waits here for the next app connection to
//! the same upstream, preferably one on the worker whose event loop drives its socket.
//!
//! Generic over the key and what is parked, so that its rules are tested with plain values
//! (as hyper-util's legacy pool and pingora-pool are): newest first, this worker's before
//! another's, nothing past the idle timeout, nothing that fails its liveness check, at most so
//! many per key.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::lock;

/// The parked items of every key.
pub struct Parked<K, T> {
    idle_timeout: Duration,
    max_per_key: usize,
    max_total: usize,
    map: Mutex<HashMap<K, Vec<Entry<T>>>>,
}

struct Entry<T> {
    item: T,
    since: Instant,
    /// The worker whose runtime drives it.
    worker: usize,
}

impl<K: Eq + Hash, T> Parked<K, T> {
    /// An empty pool: items idle for `idle_timeout` are dropped, and at most `max_per_key`
    /// wait per key, `max_total` in all (each holds a file descriptor).
    pub fn new(idle_timeout: Duration, max_per_key: usize, max_total: usize) -> Self {
        Parked {
            idle_timeout,
            max_per_key,
            max_total,
            map: Mutex::default(),
        }
    }

    /// Parks `item` under `key`, made on `worker`, at `now`; `false` (and the item dropped)
    /// when the key, or the pool, has as many as it may keep.
    pub fn put(&self, key: K, item: T, worker: usize, now: Instant) -> bool {
        let mut map = lock(&self.map);
        if map.values().map(Vec::len).sum::<usize>() >= self.max_total {
            return false;
        }
        let list = map.entry(key).or_default();
        if list.len() >= self.max_per_key {
            return false;
        }
        list.push(Entry {
            item,
            since: now,
            worker,
        });
        true
    }

    /// The item to use for `key` on `worker` at `now`: this worker's newest first (the most
    /// recently used connection is the least likely to have been closed), else another
    /// worker's newest. Items past the idle timeout, and those `alive` says are not, are
    /// dropped on the way.
    pub fn take<Q>(
        &self,
        key: &Q,
        worker: usize,
        now: Instant,
        mut alive: impl FnMut(&mut T) -> bool,
    ) -> Option<T>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut map = lock(&self.map);
        let list = map.get_mut(key)?;
        list.retain(|e| now.duration_since(e.since) < self.idle_timeout);
        let mut found = None;
        while found.is_none() {
            let mine = list.iter().rposition(|e| e.worker == worker);
            let Some(mut e) = (match mine {
                // `remove`, not `swap_remove`: the list stays oldest to newest.
                Some(i) => Some(list.remove(i)),
                None => list.pop(),
            }) else {
                break;
            };
            if alive(&mut e.item) {
                found = Some(e.item);
            }
        }
        if list.is_empty() {
            map.remove(key);
        }
        found
    }

    /// Drops the items idle for too long at `now`, and those `alive` says are not.
    pub fn prune(&self, now: Instant, mut alive: impl FnMut(&mut T) -> bool) {
        lock(&self.map).retain(|_, list| {
            list.retain_mut(|e| {
                now.duration_since(e.since) < self.idle_timeout && alive(&mut e.item)
            });
            !list.is_empty()
        });
    }

    /// How many items wait, over every key.
    pub fn len(&self) -> usize {
        lock(&self.map).values().map(Vec::len).sum()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(30);

    /// A pool of (name, alive) under "gw", each parked at t0 + its second, on its worker.
    fn pool(
        items: &[(&'static str, usize, u64)],
    ) -> (Parked<String, (&'static str, bool)>, Instant) {
        let p = Parked::new(IDLE, 4, 100);
        let t0 = Instant::now();
        for &(name, worker, at) in items {
            let now = t0 + Duration::from_secs(at);
            assert!(p.put("gw".to_string(), (name, true), worker, now));
        }
        (p, t0)
    }

    #[test]
    fn a_take_prefers_this_workers_newest_then_any_workers_newest() {
        // (parked: name, worker, second), the taking worker -> names in the order taken
        type Row = (
            &'static [(&'static str, usize, u64)],
            usize,
            &'static [&'static str],
        );
        let rows: &[Row] = &[
            (&[("a", 0, 0), ("b", 0, 1)], 0, &["b", "a"]),
            (
                &[("a", 0, 0), ("b", 1, 1), ("c", 0, 2)],
                1,
                &["b", "c", "a"],
            ),
            (&[("a", 0, 0), ("b", 1, 1)], 0, &["a", "b"]),
            (&[("a", 1, 0)], 7, &["a"]),
            // Another worker's entry between two of the taker's does not change their order.
            (
                &[("a", 1, 0), ("b", 0, 1), ("c", 1, 2), ("d", 1, 3)],
                1,
                &["d", "c", "a", "b"],
            ),
            (&[], 0, &[]),
        ];
        for (parked, worker, want) in rows {
            let (p, t0) = pool(parked);
            let now = t0 + Duration::from_secs(5);
            let mut got = Vec::new();
            while let Some((name, _)) = p.take("gw", *worker, now, |_| true) {
                got.push(name);
            }
            assert_eq!(&got, want, "{parked:?} taken by {worker}");
            assert!(p.is_empty());
        }
    }

    #[test]
    fn after_another_workers_take_this_worker_still_gets_its_newest() {
        let (p, t0) = pool(&[("a", 1, 0), ("b", 0, 1), ("c", 1, 2), ("d", 1, 3)]);
        let now = t0 + Duration::from_secs(5);
        assert_eq!(p.take("gw", 0, now, |_| true).map(|(n, _)| n), Some("b"));
        assert_eq!(p.take("gw", 1, now, |_| true).map(|(n, _)| n), Some("d"));
    }

    #[test]
    fn nothing_idle_too_long_or_dead_is_handed_out_and_both_are_dropped() {
        let (p, t0) = pool(&[("old", 0, 0), ("good", 0, 10), ("dead", 0, 20)]);
        let now = t0 + IDLE + Duration::from_secs(1);
        let mut checked = Vec::new();
        let got = p.take("gw", 0, now, |(name, _)| {
            checked.push(*name);
            *name != "dead"
        });
        assert_eq!(got.map(|(n, _)| n), Some("good"));
        // "old" was past the idle timeout: never even checked; "dead" was checked and dropped.
        assert_eq!(checked, ["dead", "good"]);
        assert!(p.is_empty());
        assert!(p.take("other", 0, now, |_| true).is_none());
    }

    #[test]
    fn a_key_keeps_at_most_its_share_and_prune_drops_the_idle_and_the_dead() {
        let p = Parked::new(IDLE, 2, 4);
        let t0 = Instant::now();
        assert!(p.put("a", 1, 0, t0));
        assert!(p.put("a", 2, 0, t0 + Duration::from_secs(10)));
        assert!(!p.put("a", 3, 0, t0), "a third for the same key is refused");
        assert!(p.put("b", 4, 1, t0 + Duration::from_secs(10)));
        assert!(p.put("b", 5, 1, t0 + Duration::from_secs(10)));
        assert_eq!(p.len(), 4);
        assert!(!p.put("c", 6, 0, t0), "the pool's total is reached");
        // At t0 + 35 s item 1 is past the idle timeout; item 5 is dead.
        p.prune(t0 + Duration::from_secs(35), |n| *n != 5);
        assert_eq!(p.len(), 2);
        let now = t0 + Duration::from_secs(36);
        assert_eq!(p.take("a", 0, now, |_| true), Some(2));
        assert_eq!(p.take("b", 0, now, |_| true), Some(4));
    }
}
