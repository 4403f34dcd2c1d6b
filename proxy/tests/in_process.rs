//! The proxy library in this process: `server::start` with settings from flags, real TCP on
//! 127.0.0.1, a test-kit gateway behind it, a reload, and the stop's drain. What the
//! emulator saw on the wire is the proof of the walk.

use std::time::Duration;

use tls_fallback::testkit::TestPki;
use tls_fallback_proxy::config::{self, ProxyArgs};
use tls_fallback_proxy::server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "../../tests/common/mod.rs"]
mod common;
use common::{ladder_seen, legacy_gateway, LEGACY_WALK};

/// Settings from these flags, on free ports, trusting the test CA (written to `dir`).
fn settings(dir: &tempfile::TempDir, flags: &[&str]) -> config::Settings {
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, TestPki::shared().ca_pem()).unwrap();
    let mut all = vec!["--listen", "127.0.0.1:0", "--workers", "2", "--ca-file"];
    all.push(ca.to_str().unwrap());
    all.extend_from_slice(flags);
    let args = ProxyArgs::from_flags(all).expect("flags");
    config::resolve(&args).expect("settings")
}

/// One forward-mode request on a new connection, bounded in time; the raw response.
async fn get(proxy: std::net::SocketAddr, url: &str) -> String {
    let exchange = async {
        let mut tcp = TcpStream::connect(proxy).await.unwrap();
        let host = url.trim_start_matches("http://").split('/').next().unwrap();
        let req = format!("GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        tcp.read_to_string(&mut out).await.unwrap();
        out
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .expect("an answer within 30 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_in_process_the_proxy_walks_a_legacy_gateway_reloads_and_drains() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, em) = legacy_gateway().await;
    let legacy = ["--allow", "localhost", "--allow-legacy", "localhost"];
    let running = server::start(settings(&dir, &legacy)).await.expect("start");
    let url = format!("http://localhost:{}/pay", em.addr().port());

    let res = get(running.local, &url).await;
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    assert!(res.contains("x-tls-fallback-version: 1.0"), "{res}");
    assert_eq!(ladder_seen(&em), LEGACY_WALK, "SCSV on every fallback");
    let learned = running.current().upstreams.default.layer.stats();
    assert_eq!(learned.hosts.len(), 1, "{learned:?}");

    // Reload without the legacy gate: the decision may no longer be used, and a new
    // connection does not get below TLS 1.2.
    running
        .reload(settings(&dir, &["--allow", "localhost"]))
        .expect("reload");
    let seen = em.hellos().len();
    let res = get(running.local, &url).await;
    assert!(res.starts_with("HTTP/1.1 502"), "{res}");
    let after: Vec<_> = ladder_seen(&em).split_off(seen);
    assert!(
        after
            .iter()
            .all(|(v, _)| *v >= Some(tls_fallback::TlsVersion::Tls1_2)),
        "nothing below the floor after the reload: {after:?}"
    );

    // A host outside the new allow-list is refused without a connection.
    running
        .reload(settings(&dir, &["--allow", "gw.example"]))
        .expect("reload");
    let seen = em.hellos().len();
    let res = get(running.local, &url).await;
    assert!(res.starts_with("HTTP/1.1 403"), "{res}");
    assert_eq!(em.hellos().len(), seen);

    assert!(
        running.stop(Duration::from_secs(5)).await,
        "drained in time"
    );
}
