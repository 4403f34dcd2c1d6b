//! The decision file: [`FileStore`] keeps fallback decisions in a JSON file, read once at
//! start and written in the background through a temporary file and a rename.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::{Decision, DecisionStore, MemoryStore};
use crate::policy::HostKey;

mod disk;

use disk::{FileBody, FileEntry};

/// A store that keeps fallback decisions in a JSON file, so short-lived processes do not
/// re-learn on every start. Reads once at start; writes in a background thread, debounced,
/// through a synced temporary file and a rename (a crash never leaves half a file), and writes
/// what is still pending when dropped. Only fallback decisions (rung > 0) are written.
///
/// The file is treated as untrusted input. It is read only if it is a regular file (a symbolic
/// link, FIFO, device or directory at the path is refused, never followed or opened for long)
/// of at most [`FileStore::MAX_FILE_BYTES`] whose text values are at most
/// [`FileStore::MAX_VALUE_BYTES`] each; a missing file starts empty, and a refused, corrupt
/// or truncated one logs a warning and starts empty (it is replaced on the next write).
/// Writes create a new file with a random name, exclusively and without following links, with
/// mode 0600 (it lists which hosts fall back), and rename it over the path: a link planted at
/// the path is replaced, its target never written. Keep the file in a directory only this
/// user can write: whoever can write there can replace the file.
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
    /// The largest decision file read: 8 MiB (some 40,000 hosts; the writer keeps the newest
    /// entries that fit). A bigger file is refused whole.
    pub const MAX_FILE_BYTES: u64 = disk::MAX_FILE_BYTES;
    /// The longest text value (host, profile name, reason) read from the file: 4 KiB. A file
    /// with a longer one is refused whole; reasons are cut to this length when written.
    pub const MAX_VALUE_BYTES: usize = disk::MAX_VALUE_BYTES;

    /// The decisions in the bytes of a decision file, with the limits [`FileStore::open`]
    /// applies; the error says what is wrong. For tools that inspect a file, and for fuzzing.
    pub fn parse(bytes: &[u8]) -> Result<Vec<(HostKey, Decision)>, String> {
        let body = disk::parse(bytes).map_err(|e| e.to_string())?;
        Ok(body
            .hosts
            .into_iter()
            .map(|e| (HostKey::new(&e.host, e.port), e.decision))
            .collect())
    }

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
        load(&path, ttl, &memory);
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

/// Reads the decisions of the file at `path` into `memory`, skipping expired ones; on any
/// refusal a warning, and `memory` stays empty.
fn load(path: &Path, ttl: Duration, memory: &MemoryStore) {
    if let Some(warning) = disk::directory_warning(path) {
        tracing::warn!(path = %path.display(), "{warning}");
    }
    let body = match disk::read(path).and_then(|b| b.map(|b| disk::parse(&b)).transpose()) {
        Ok(Some(body)) => body,
        Ok(None) => return,
        Err(refused) => {
            tracing::warn!(
                path = %path.display(),
                "decision file refused: {refused}; starting with an empty cache (the file is \
                 replaced on the next write)"
            );
            return;
        }
    };
    let (mut loaded, now) = (0usize, super::unix_ms());
    for e in body.hosts {
        let key = HostKey::new(&e.host, e.port);
        // The same gate as a decision from Redis (the ladder is checked at lookup).
        match super::check::entry(&key, &e.decision, ttl, now) {
            Ok(()) => {
                let decision = Decision {
                    source: super::DecisionSource::File,
                    ..e.decision
                };
                memory.put(key, Arc::new(decision));
                loaded += 1;
            }
            Err(why) if why.is_suspicious() => tracing::warn!(path = %path.display(),
                host = %key, %why, "decision file entry ignored"),
            Err(_) => {}
        }
    }
    tracing::debug!(path = %path.display(), loaded, "decision file loaded");
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
        let _one_at_a_time = match self.writing.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut hosts: Vec<FileEntry> = self
            .memory
            .snapshot()
            .into_iter()
            // Not the provisional ones: "seen once" is not worth persisting, and a reader that
            // does not know the field would take them for decisions. Nothing a reader would
            // refuse either (reasons are cut to the limit).
            .filter(|(k, d)| {
                d.rung > 0
                    && !d.provisional
                    && k.host.len() <= disk::MAX_VALUE_BYTES
                    && d.profile.len() <= disk::MAX_VALUE_BYTES
            })
            .map(|(k, d)| FileEntry {
                host: k.host.to_string(),
                port: k.port,
                decision: Decision {
                    rung: d.rung,
                    profile: d.profile.clone(),
                    reason: disk::clip(&d.reason).into(),
                    learned_at_ms: d.learned_at_ms,
                    uses: AtomicU64::new(d.uses.load(Ordering::Relaxed)),
                    provisional: false,
                    source: d.source,
                },
            })
            .collect();
        // The newest first, so that a file over the size limit keeps the newest decisions.
        hosts.sort_by_key(|e| std::cmp::Reverse(e.decision.learned_at_ms));
        let mut body = FileBody { version: 1, hosts };
        let mut bytes = serde_json::to_vec_pretty(&body).map_err(std::io::Error::other)?;
        while bytes.len() as u64 > disk::MAX_FILE_BYTES && !body.hosts.is_empty() {
            // Each round drops at least one entry: bounded by the number of hosts.
            let keep = (body.hosts.len() as u64 * disk::MAX_FILE_BYTES / bytes.len() as u64)
                .saturating_sub(1) as usize;
            body.hosts.truncate(keep.min(body.hosts.len() - 1));
            bytes = serde_json::to_vec_pretty(&body).map_err(std::io::Error::other)?;
        }
        disk::replace(&self.path, &bytes)
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
    use crate::cache::unix_ms;

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
        assert_eq!(
            got.source,
            crate::cache::DecisionSource::File,
            "read back: from the file"
        );
        let learned = Decision::new(2, "tls12".into(), "x");
        assert_eq!(learned.source, crate::cache::DecisionSource::Walk);
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
