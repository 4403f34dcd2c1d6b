//! `--redis URL`: separate `tls-fallback` processes sharing one `redis-server` (its own, on a
//! free loopback port) learn a gateway once; a bad URL is bad input.

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use common::{ladder_seen, legacy_gateway};
use support::{ca_file, run};
use tls_fallback::testkit::RedisServer;
use tls_fallback::TlsVersion::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_get_process_sharing_redis_needs_one_hello() {
    let redis = RedisServer::start().expect("redis-server");
    let (_s, em) = legacy_gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&dir);
    let args = |url: &str| {
        vec![
            "get".to_string(),
            em.url(),
            "--ca-file".into(),
            ca.to_str().unwrap().into(),
            "--allow-legacy".into(),
            "--redis".into(),
            url.to_string(),
            "--json".into(),
        ]
    };
    let first = args(&redis.url());
    let r = run(&first.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        (r.json()["from_cache"].clone(), em.count()),
        (false.into(), 6)
    );
    em.clear();
    let r = run(&first.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["from_cache"], true, "{}", r.stdout);
    assert_eq!(
        ladder_seen(&em),
        [(Some(Tls1_0), true)],
        "one hello, with SCSV"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_get_still_succeeds_and_a_bad_url_is_bad_input() {
    let (_s, em) = legacy_gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let down = format!("redis://127.0.0.1:{port}");
    let url = em.url();
    let base = [
        "get",
        &url,
        "--ca-file",
        ca.to_str().unwrap(),
        "--allow-legacy",
    ];
    let r = run(&[&base[..], &["--redis", &down]].concat()).await;
    assert_eq!(r.code, 0, "Redis down: learn alone. {}", r.stderr);
    assert!(
        r.stderr.contains("Redis unreachable") || r.stderr.is_empty(),
        "{}",
        r.stderr
    );

    let r = run(&[&base[..], &["--redis", "http://:s3cret@127.0.0.1"]].concat()).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("bad Redis URL"), "{}", r.stderr);
    assert!(!r.stderr.contains("s3cret"), "{}", r.stderr);
}

/// `rediss://`: Redis behind TLS with the test CA's localhost certificate, trusted through
/// OpenSSL's `SSL_CERT_FILE` (the Redis connection verifies against the system roots).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_password_shares_decisions_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = tls_fallback::testkit::TestPki::shared();
    let write = |name: &str, pem: Vec<u8>| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path.to_str().unwrap().to_string()
    };
    let cert = write("redis.pem", pki.localhost.cert.to_pem().unwrap());
    let key = write(
        "redis.key",
        pki.localhost.key.private_key_to_pem_pkcs8().unwrap(),
    );
    let ca = ca_file(&dir);
    let ca = ca.to_str().unwrap();
    let redis = RedisServer::start_with(&[
        "--port",
        "0",
        "--tls-port",
        "{port}",
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        ca,
        "--tls-auth-clients",
        "no",
        "--requirepass",
        "s3cret",
    ])
    .expect("redis-server with TLS");
    let url = format!("rediss://:s3cret@localhost:{}", redis.port());
    let (_s, em) = legacy_gateway().await;
    let gateway = em.url();
    let args = [
        "get",
        &gateway,
        "--ca-file",
        ca,
        "--allow-legacy",
        "--redis",
        &url,
        "--json",
    ];
    let run_tls = || async {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tls-fallback"))
            .args(args)
            .env("SSL_CERT_FILE", ca)
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(std::time::Duration::from_secs(60), out)
            .await
            .expect("bounded")
            .expect("starts");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
        (v["from_cache"].clone(), stderr)
    };
    let (from_cache, stderr) = run_tls().await;
    assert_eq!((from_cache, em.count()), (false.into(), 6), "{stderr}");
    em.clear();
    let (from_cache, stderr) = run_tls().await;
    assert_eq!(from_cache, true, "shared over TLS: {stderr}");
    assert_eq!(ladder_seen(&em), [(Some(Tls1_0), true)]);
}
