//! `get --cache-file PATH` attacked by a local user who can create files in the directory: a
//! symbolic link at PATH to another file (holding a planted decision), and a FIFO at PATH.
//! The CLI runs as a child process, each run bounded to 20 s.

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{ladder_seen, legacy_gateway, LEGACY_WALK};
use support::{ca_file, run, Run};

fn s(p: &std::path::Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

async fn bounded(args: &[&str]) -> Run {
    tokio::time::timeout(Duration::from_secs(20), run(args))
        .await
        .expect("the CLI finishes within 20 s (a FIFO must not block it)")
}

/// A decision file naming `port` on localhost at the TLS 1.0 rung (5 of the default ladder).
fn planted(port: u16) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!(
        r#"{{"version":1,"hosts":[{{"host":"localhost","port":{port},"rung":5,"profile":"tls10-legacy","reason":"planted","learned_at_ms":{now}}}]}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_or_a_fifo_at_the_cache_file_is_neither_read_nor_written_through() {
    let (_server, em) = legacy_gateway().await;
    let url = em.url();
    for kind in ["symlink", "fifo"] {
        em.clear();
        let dir = tempfile::tempdir().unwrap();
        let ca = ca_file(&dir);
        let cache = dir.path().join("decisions.json");
        let victim = dir.path().join("victim.json");
        let victim_body = planted(em.addr().port());
        std::fs::write(&victim, &victim_body).unwrap();
        match kind {
            "symlink" => std::os::unix::fs::symlink(&victim, &cache).unwrap(),
            _ => assert!(std::process::Command::new("mkfifo")
                .arg(&cache)
                .status()
                .unwrap()
                .success()),
        }
        let r = bounded(&[
            "get",
            &url,
            "--ca-file",
            s(&ca),
            "--allow-legacy",
            "--cache-file",
            s(&cache),
            "--json",
        ])
        .await;
        assert_eq!(r.code, 0, "{kind}: {}", r.stderr);
        let v = r.json();
        // The planted decision was not read: a full walk from the top, not a cache hit.
        assert_eq!(v["from_cache"], false, "{kind}: {v}");
        assert_eq!(ladder_seen(&em), LEGACY_WALK, "{kind}");
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            victim_body,
            "{kind}"
        );
        // The learned decision replaced the link or FIFO with a private regular file.
        let meta = std::fs::symlink_metadata(&cache).unwrap();
        assert!(meta.file_type().is_file(), "{kind}");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{kind}");
    }
}
