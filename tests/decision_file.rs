//! The decision file under attack by a local user who can create files in its directory:
//! symbolic links at the decision path and at temporary names, a FIFO, oversize files and
//! values, a truncated file. Real files, a real FIFO (`mkfifo`), real threads; every wait is
//! bounded.

use std::cell::RefCell;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{mpsc, Arc, Once};
use std::time::Duration;

use tls_fallback::{Decision, DecisionStore, FallbackLayer, FileStore, HostKey};

const TTL: Duration = Duration::from_secs(3600);
const VICTIM: &[u8] = b"the victim's own bytes\n";

thread_local! {
    /// The WARNs of this thread, while [`warnings`] collects them.
    static CAPTURED: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// Writes into this thread's capture buffer, if one is open.
struct ThreadWriter;

impl std::io::Write for ThreadWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        CAPTURED.with(|c| {
            if let Some(buf) = c.borrow_mut().as_mut() {
                buf.extend_from_slice(b);
            }
        });
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` and returns what it logged at WARN and above on this thread. One global
/// subscriber for the whole test binary (a scoped one per test races with the other tests'
/// threads over tracing's per-callsite interest cache), writing to per-thread buffers.
fn warnings<T>(f: impl FnOnce() -> T) -> (T, String) {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(|| ThreadWriter)
            .try_init()
            .expect("the only subscriber of this test binary");
    });
    CAPTURED.with(|c| *c.borrow_mut() = Some(Vec::new()));
    let out = f();
    let buf = CAPTURED.with(|c| c.borrow_mut().take()).unwrap_or_default();
    (out, String::from_utf8_lossy(&buf).into_owned())
}

/// A whole, valid decision file with one fallback for `host`, `reason` as given.
fn file_with(host: &str, reason: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!(
        r#"{{"version":1,"hosts":[{{"host":"{host}","port":443,"rung":2,"profile":"tls12","reason":"{reason}","learned_at_ms":{now}}}]}}"#
    )
}

fn learn(store: &FileStore, host: &str) {
    store.put(
        HostKey::new(host, 443),
        Arc::new(Decision::new(2, "tls12".into(), "modern: closed")),
    );
}

fn assert_victim_untouched(victim: &Path) {
    assert_eq!(
        std::fs::read(victim).unwrap(),
        VICTIM,
        "the victim file was written through a symbolic link"
    );
}

#[test]
fn symlinks_planted_at_the_old_predictable_temporary_names_cannot_clobber_a_victim() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.json");
    let victim = dir.path().join("victim");
    std::fs::write(&victim, VICTIM).unwrap();
    // The names the writer used to use: `<path>.tmp<pid>.<seq>`, seq counting from 0.
    for seq in 0..256 {
        let tmp = format!("{}.tmp{}.{seq}", path.display(), std::process::id());
        std::os::unix::fs::symlink(&victim, tmp).unwrap();
    }
    let store = FileStore::with_debounce(&path, 100, TTL, Duration::from_secs(60));
    learn(&store, "pay.example");
    store.flush().unwrap();
    drop(store);
    assert_victim_untouched(&victim);
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(
        meta.file_type().is_file(),
        "the decision path is a regular file"
    );
    let again = FileStore::open(&path, 100, TTL);
    assert!(again.get(&HostKey::new("pay.example", 443)).is_some());
}

#[test]
fn a_symlink_at_the_decision_path_is_refused_and_its_target_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.json");
    let target = dir.path().join("victim");
    // A target that is a valid decision file: only the link makes it unacceptable.
    let victim_body = file_with("planted.example", "x");
    std::fs::write(&target, &victim_body).unwrap();
    std::os::unix::fs::symlink(&target, &path).unwrap();
    let (store, warned) =
        warnings(|| FileStore::with_debounce(&path, 100, TTL, Duration::from_secs(60)));
    assert!(
        store.snapshot().is_empty(),
        "nothing is read through a link"
    );
    assert!(warned.contains("symbolic link"), "{warned}");
    learn(&store, "pay.example");
    store.flush().unwrap();
    drop(store);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), victim_body);
    // The rename replaced the link itself (a directory entry), never the file it named.
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(
        meta.file_type().is_file(),
        "the link was replaced by a file"
    );
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

/// `FallbackLayer::builder().cache_file(fifo).build()` on another thread, waited for at most
/// five seconds; on a timeout the FIFO is opened for writing to release the blocked reader.
#[test]
fn a_fifo_at_the_decision_path_does_not_hang_the_build() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.json");
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success());
    let (tx, rx) = mpsc::channel();
    let p = path.clone();
    let builder = std::thread::spawn(move || {
        let (built, warned) = warnings(|| FallbackLayer::builder().cache_file(&p).build());
        let _ = tx.send((built.map(|l| l.stats().hosts.len()), warned));
    });
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok((built, warned)) => {
            assert_eq!(built.unwrap(), 0, "starts empty");
            assert!(warned.contains("FIFO"), "{warned}");
        }
        Err(_) => {
            let _ = std::fs::OpenOptions::new().write(true).open(&path);
            panic!("build() blocked on the FIFO at the decision path for 5 s");
        }
    }
    builder.join().unwrap();
}

#[test]
fn an_oversize_file_is_refused_with_a_warning_and_the_store_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.json");
    // Valid JSON (trailing white space is allowed), only too big.
    let mut body = file_with("big.example", "x").into_bytes();
    body.resize(FileStore::MAX_FILE_BYTES as usize + 1, b' ');
    std::fs::write(&path, &body).unwrap();
    let (store, warned) = warnings(|| FileStore::open(&path, 100, TTL));
    assert!(store.snapshot().is_empty());
    assert!(
        warned.contains("WARN") && warned.contains("limit"),
        "{warned}"
    );
}

#[test]
fn an_oversize_value_is_refused_with_a_warning_and_the_store_starts_empty() {
    let long = "r".repeat(FileStore::MAX_VALUE_BYTES + 1);
    let long_host = format!("{}.example", "h".repeat(FileStore::MAX_VALUE_BYTES));
    for (what, body) in [
        ("reason", file_with("ok.example", &long)),
        ("host", file_with(&long_host, "x")),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.json");
        std::fs::write(&path, body).unwrap();
        let (store, warned) = warnings(|| FileStore::open(&path, 100, TTL));
        assert!(store.snapshot().is_empty(), "{what}");
        assert!(
            warned.contains("WARN") && warned.contains("longer"),
            "{what}: {warned}"
        );
    }
}

#[test]
fn a_truncated_file_starts_empty_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.json");
    let whole = file_with("cut.example", "modern: closed");
    for cut in [1, whole.len() / 2, whole.len() - 1] {
        std::fs::write(&path, &whole[..cut]).unwrap();
        let (store, warned) = warnings(|| FileStore::open(&path, 100, TTL));
        assert!(store.snapshot().is_empty(), "cut at {cut}");
        assert!(warned.contains("corrupt"), "cut at {cut}: {warned}");
    }
    std::fs::write(&path, &whole).unwrap();
    assert_eq!(FileStore::open(&path, 100, TTL).snapshot().len(), 1);
}

#[test]
fn the_decision_file_is_written_readable_by_its_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.json");
    // An older, world-readable file is replaced, not rewritten in place.
    std::fs::write(&path, file_with("old.example", "x")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = FileStore::with_debounce(&path, 100, TTL, Duration::from_secs(60));
    learn(&store, "pay.example");
    store.flush().unwrap();
    drop(store);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}

#[test]
fn a_decision_file_in_a_directory_other_users_can_write_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (_, warned) = warnings(|| FileStore::open(shared.join("d.json"), 100, TTL));
    assert!(warned.contains("other users"), "{warned}");
    let (_, quiet) = warnings(|| FileStore::open(dir.path().join("d.json"), 100, TTL));
    assert_eq!(
        quiet, "",
        "a private directory (tempdir: 0700) is not warned about"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Any cut of a valid file, and any bytes at all, on disk: `open` never panics, and starts
    /// empty unless the bytes are a whole decision file within the limits.
    #[test]
    fn a_cut_or_garbage_file_never_panics_and_loads_only_a_whole_file(
        cut in 0usize..400,
        garbage in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.json");
        let whole = file_with("cut.example", "modern: closed");
        let cut = cut.min(whole.len());
        std::fs::write(&path, &whole.as_bytes()[..cut]).unwrap();
        let loaded = FileStore::open(&path, 100, TTL).snapshot().len();
        proptest::prop_assert_eq!(loaded, usize::from(cut == whole.len()));
        std::fs::write(&path, &garbage).unwrap();
        let parsed = FileStore::parse(&garbage).map(|e| e.len());
        let loaded = FileStore::open(&path, 100, TTL).snapshot().len();
        proptest::prop_assert_eq!(loaded, parsed.unwrap_or(0));
    }
}
