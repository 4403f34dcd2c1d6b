//! What we remember: per-host decisions (the rung that worked), their expiry, the pluggable
//! [`DecisionStore`] (in memory by default, optionally a JSON file), and the single-flight
//! table that makes concurrent first contacts to one host share one learning walk.
//!
//! Safety: a decision only ever says where to *start*; every rung still carries SCSV, checks
//! certificates and respects the policy. A decision expires after a TTL (the next connection
//! walks from the top again) and is forgotten at once on a downgrade signal.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::policy::HostKey;

pub(crate) mod check;
mod shared;
pub use shared::{BoxFuture, FleetFlight, FleetLease, SharedStats};
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
pub use redis::{RedisOptions, RedisStore};
pub(crate) mod lookup;

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
        const FUTURE_SLACK_MS: u64 = 5 * 60 * 1000;
        let now = unix_ms();
        self.learned_at_ms > now.saturating_add(FUTURE_SLACK_MS)
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

#[derive(Serialize, Deserialize)]
struct FileEntry {
    host: String,
    port: u16,
    #[serde(flatten)]
    decision: Decision,
}

#[derive(Serialize, Deserialize)]
struct FileBody {
    version: u32,
    hosts: Vec<FileEntry>,
}

/// A store that keeps fallback decisions in a JSON file, so short-lived processes do not
/// re-learn on every start. Reads once at start; writes in a background thread, debounced,
/// through a synced temporary file and a rename (a crash never leaves half a file), and writes
/// what is still pending when dropped. A missing or corrupt file logs a warning and starts
/// empty. Only fallback decisions (rung > 0) are written.
///
/// Dropping the last handle (the store, or the [`crate::FallbackLayer`] and connectors that
/// share it) blocks the dropping thread until the pending write is on disk: a file write and
/// an fsync, usually milliseconds. In async code, call [`crate::FallbackLayer::flush`] from
/// `spawn_blocking` before shutdown, or drop the layer outside the runtime, if that matters.
#[derive(Debug)]
pub struct FileStore {
    memory: MemoryStore,
    shared: Arc<FileShared>,
    writer: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug)]
struct FileShared {
    path: PathBuf,
    dirty: Mutex<bool>,
    wake: Condvar,
    closed: AtomicBool,
    /// The last background write failed: the drop tries again.
    failed: AtomicBool,
    /// One write at a time (the background thread and `flush`).
    writing: Mutex<()>,
    memory: MemoryStore,
    debounce: Duration,
}

impl FileStore {
    /// Opens (or starts) the store at `path`; see the type docs for failure handling.
    /// Decisions older than `ttl` in the file are skipped.
    pub fn open(path: impl AsRef<Path>, capacity: u64, ttl: Duration) -> Self {
        FileStore::with_debounce(path, capacity, ttl, Duration::from_millis(500))
    }

    /// As [`FileStore::open`], with the delay between a change and its write.
    pub fn with_debounce(
        path: impl AsRef<Path>,
        capacity: u64,
        ttl: Duration,
        debounce: Duration,
    ) -> Self {
        let path = path.as_ref().to_path_buf();
        let memory = MemoryStore::new(capacity);
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<FileBody>(&bytes) {
                Ok(body) => {
                    let mut loaded = 0usize;
                    let now = unix_ms();
                    for e in body.hosts {
                        let key = HostKey::new(&e.host, e.port);
                        match check::entry(&key, &e.decision, ttl, now) {
                            Ok(()) => {
                                memory.put(key, Arc::new(e.decision));
                                loaded += 1;
                            }
                            Err(why) if why.is_suspicious() => tracing::warn!(
                                path = %path.display(), host = %key, %why,
                                "decision file entry ignored"
                            ),
                            Err(_) => {}
                        }
                    }
                    tracing::debug!(path = %path.display(), loaded, "decision file loaded");
                }
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "decision file is corrupt; starting with an empty cache (it will be rewritten)"
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = %e,
                "decision file cannot be read; starting with an empty cache"
            ),
        }
        let shared = Arc::new(FileShared {
            path,
            dirty: Mutex::new(false),
            wake: Condvar::new(),
            closed: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            writing: Mutex::new(()),
            memory: memory.clone(),
            debounce,
        });
        let bg = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("tls-fallback-store".into())
            .spawn(move || bg.writer_loop())
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot start the decision file writer; decisions \
                    are written on flush and drop only");
            })
            .ok();
        FileStore {
            memory,
            shared,
            writer,
        }
    }

    fn mark_dirty(&self) {
        if let Ok(mut d) = self.shared.dirty.lock() {
            *d = true;
            self.shared.wake.notify_one();
        }
    }
}

impl FileShared {
    /// Waits for a change, lets the changes of the next `debounce` gather, clears the flag
    /// and writes. A change made during the write sets the flag again: the next round (or
    /// the drop) writes it. On close it returns at once; the drop writes what is pending.
    fn writer_loop(&self) {
        let closed = || self.closed.load(Ordering::Acquire);
        loop {
            let Ok(mut dirty) = self.dirty.lock() else {
                return;
            };
            while !*dirty && !closed() {
                dirty = match self.wake.wait(dirty) {
                    Ok(d) => d,
                    Err(_) => return,
                };
            }
            let deadline = std::time::Instant::now() + self.debounce;
            while !closed() {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                dirty = match self.wake.wait_timeout(dirty, left) {
                    Ok((d, _)) => d,
                    Err(_) => return,
                };
            }
            if closed() {
                return;
            }
            *dirty = false;
            drop(dirty);
            match self.write_file() {
                Ok(()) => self.failed.store(false, Ordering::Release),
                Err(e) => {
                    self.failed.store(true, Ordering::Release);
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot write the decision file");
                }
            }
        }
    }

    fn write_file(&self) -> std::io::Result<()> {
        static TMP_SEQ: AtomicU64 = AtomicU64::new(0);
        let _one_at_a_time = match self.writing.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let hosts = self
            .memory
            .snapshot()
            .into_iter()
            // Not the provisional ones: "seen once" is not worth persisting, and a reader that
            // does not know the field would take them for decisions.
            .filter(|(_, d)| d.rung > 0 && !d.provisional)
            .map(|(k, d)| FileEntry {
                host: k.host.to_string(),
                port: k.port,
                decision: Decision {
                    rung: d.rung,
                    profile: d.profile.clone(),
                    reason: d.reason.clone(),
                    learned_at_ms: d.learned_at_ms,
                    uses: AtomicU64::new(d.uses.load(Ordering::Relaxed)),
                    provisional: false,
                },
            })
            .collect();
        let body = serde_json::to_vec_pretty(&FileBody { version: 1, hosts })
            .map_err(std::io::Error::other)?;
        // A name no other writer uses (another process, another store on the same path).
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(format!(
            ".tmp{}.{}",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let tmp = PathBuf::from(tmp);
        let written = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut file, &body)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

impl Drop for FileStore {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        if let Ok(_guard) = self.shared.dirty.lock() {
            // Under the lock: the writer is either waiting (and wakes) or will see `closed`.
            self.shared.wake.notify_all();
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        let pending = self
            .shared
            .dirty
            .lock()
            .map(|mut d| std::mem::replace(&mut *d, false))
            .unwrap_or(true);
        if pending || self.shared.failed.load(Ordering::Acquire) {
            if let Err(e) = self.shared.write_file() {
                tracing::warn!(path = %self.shared.path.display(), error = %e,
                    "cannot write the decision file on close");
            }
        }
    }
}

impl DecisionStore for FileStore {
    fn get(&self, key: &HostKey) -> Option<Arc<Decision>> {
        self.memory.get(key)
    }
    fn put(&self, key: HostKey, decision: Arc<Decision>) {
        // Persist fallbacks, and a host whose persisted fallback is replaced by a healthy one.
        let persist = decision.rung > 0 || self.memory.get(&key).is_some_and(|d| d.rung > 0);
        self.memory.put(key, decision);
        if persist {
            self.mark_dirty();
        }
    }
    fn remove(&self, key: &HostKey) {
        self.memory.remove(key);
        self.mark_dirty();
    }
    fn snapshot(&self) -> Vec<(HostKey, Arc<Decision>)> {
        self.memory.snapshot()
    }
    /// Writes the file now (also done in the background after each change, and on drop).
    fn flush(&self) -> std::io::Result<()> {
        if let Ok(mut d) = self.shared.dirty.lock() {
            *d = false;
        }
        let written = self.shared.write_file();
        self.shared
            .failed
            .store(written.is_err(), Ordering::Release);
        written
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

    #[test]
    fn a_file_decision_from_the_future_is_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.json");
        let far = unix_ms() + 10 * 365 * 24 * 3_600_000;
        let body = format!(
            r#"{{"version":1,"hosts":[
            {{"host":"future.example","port":443,"rung":2,"profile":"tls12","reason":"x","learned_at_ms":{far}}},
            {{"host":"now.example","port":443,"rung":2,"profile":"tls12","reason":"x","learned_at_ms":{}}}]}}"#,
            unix_ms()
        );
        std::fs::write(&path, body).unwrap();
        let store = FileStore::open(&path, 100, Duration::from_secs(3600));
        assert!(store.get(&HostKey::new("future.example", 443)).is_none());
        assert!(store.get(&HostKey::new("now.example", 443)).is_some());
    }

    #[test]
    fn the_last_change_is_written_when_the_store_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.json");
        // A long debounce: the writer has taken the change and waits when the store goes.
        let store =
            FileStore::with_debounce(&path, 100, Duration::from_secs(60), Duration::from_secs(30));
        store.put(
            HostKey::new("pay.example", 443),
            Arc::new(Decision::new(3, "tls12-compact".into(), "x")),
        );
        std::thread::sleep(Duration::from_millis(100));
        let started = std::time::Instant::now();
        drop(store);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "drop does not wait out the debounce"
        );
        let again = FileStore::open(&path, 100, Duration::from_secs(60));
        let got = again
            .get(&HostKey::new("pay.example", 443))
            .expect("written on drop");
        assert_eq!(got.rung, 3);
    }

    #[test]
    fn provisional_decisions_stay_in_memory_and_out_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.json");
        let store = FileStore::with_debounce(&path, 100, Duration::from_secs(60), Duration::ZERO);
        store.put(
            HostKey::new("seen-once.example", 443),
            Arc::new(Decision::new(1, "modern-compact".into(), "modern: reset").into_provisional()),
        );
        store.put(
            HostKey::new("learned.example", 443),
            Arc::new(Decision::new(2, "tls12".into(), "modern: closed")),
        );
        assert!(store
            .get(&HostKey::new("seen-once.example", 443))
            .is_some_and(|d| d.provisional));
        store.flush().unwrap();
        let body: FileBody = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let hosts: Vec<_> = body.hosts.iter().map(|e| e.host.as_str()).collect();
        assert_eq!(hosts, ["learned.example"]);
        assert!(!body.hosts[0].decision.provisional);
    }

    #[test]
    fn concurrent_flushes_of_two_stores_on_one_path_leave_a_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.json");
        let a = FileStore::with_debounce(&path, 100, Duration::from_secs(60), Duration::ZERO);
        let b = FileStore::with_debounce(&path, 100, Duration::from_secs(60), Duration::ZERO);
        for (i, s) in [&a, &b].into_iter().enumerate() {
            s.put(
                HostKey::new(&format!("h{i}.example"), 443),
                Arc::new(Decision::new(2, "tls12".into(), "x")),
            );
        }
        std::thread::scope(|scope| {
            for s in [&a, &b] {
                scope.spawn(move || {
                    for _ in 0..50 {
                        s.flush().unwrap();
                    }
                });
            }
        });
        drop((a, b));
        let body: FileBody = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            body.hosts.len(),
            1,
            "one store's whole view, never a mix or half a file"
        );
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
    }

    #[test]
    fn corrupt_file_starts_empty_and_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.json");
        std::fs::write(&path, b"\x00\xffnot json{{{").unwrap();
        let store = FileStore::with_debounce(&path, 100, Duration::from_secs(60), Duration::ZERO);
        assert!(store.snapshot().is_empty());
        store.put(
            HostKey::new("pay.example", 443),
            Arc::new(Decision::new(4, "tls10-legacy".into(), "x")),
        );
        store.flush().unwrap();
        drop(store);
        let again = FileStore::open(&path, 100, Duration::from_secs(60));
        let got = again.get(&HostKey::new("pay.example", 443)).unwrap();
        assert_eq!((got.rung, &*got.profile), (4, "tls10-legacy"));
    }
}
