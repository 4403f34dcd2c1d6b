//! `tls-fallback decisions list | export | forget` on each source: a decision file, a real
//! `redis-server` holding what the library wrote, and a running proxy's admin listener.

#[path = "../../proxy/tests/proxy_support/mod.rs"]
mod proxy_support;

use std::sync::Arc;
use std::time::Duration;

use proxy_support::*;
use tls_fallback::testkit::RedisServer;
use tls_fallback::{Decision, DecisionStore, HostKey, Ladder, RedisOptions, RedisStore};

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn cli(args: &[&str]) -> Out {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_tls-fallback"))
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the CLI finishes within 60 s")
    .expect("the CLI starts");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_file_lists_exports_and_forgets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("decisions.json");
    let now = now_ms();
    std::fs::write(
        &file,
        format!(
            r#"{{"version":1,"hosts":[
      {{"host":"old.example","port":443,"rung":5,"profile":"tls10-legacy","reason":"modern: closed","learned_at_ms":{now}}},
      {{"host":"mid.example","port":443,"rung":2,"profile":"tls12","reason":"modern: closed","learned_at_ms":{now}}},
      {{"host":"new.example","port":8443,"rung":1,"profile":"modern-compact","reason":"modern: reset","learned_at_ms":{now},"provisional":true}}
    ]}}"#
        ),
    )
    .unwrap();
    let path = file.to_str().unwrap();

    let list = cli(&["decisions", "list", "--cache-file", path]).await;
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert!(list.stdout.contains("old.example:443"), "{}", list.stdout);
    assert!(list.stdout.contains("provisional"), "{}", list.stdout);

    let nginx = cli(&[
        "decisions",
        "export",
        "--format",
        "nginx",
        "--cache-file",
        path,
    ])
    .await;
    assert_eq!(nginx.code, 0, "{}", nginx.stderr);
    assert!(nginx.stdout.contains("proxy_pass https://old.example:443;"));
    assert!(nginx.stdout.contains("proxy_ssl_protocols TLSv1;"));
    assert!(nginx
        .stdout
        .contains("left out (provisional, not yet confirmed): new.example:8443"));

    let bad = cli(&[
        "decisions",
        "export",
        "--format",
        "apache",
        "--cache-file",
        path,
    ])
    .await;
    assert_ne!(bad.code, 0);
    assert!(
        bad.stderr.contains("nginx, haproxy, envoy, json"),
        "{}",
        bad.stderr
    );

    let two = cli(&[
        "decisions",
        "export",
        "--format",
        "json",
        "--cache-file",
        path,
        "--redis",
        "redis://127.0.0.1:1",
    ])
    .await;
    assert_ne!(two.code, 0, "exactly one source");

    let forget = cli(&["decisions", "forget", "old.example", "--cache-file", path]).await;
    assert_eq!(forget.code, 0, "{}", forget.stderr);
    let after = cli(&["decisions", "list", "--cache-file", path]).await;
    assert!(!after.stdout.contains("old.example"), "{}", after.stdout);
    assert!(after.stdout.contains("mid.example:443"), "{}", after.stdout);
    let again = cli(&[
        "decisions",
        "forget",
        "old.example:443",
        "--cache-file",
        path,
    ])
    .await;
    assert_ne!(again.code, 0, "a host not in the file is an error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_source_reads_what_the_library_wrote_and_forgets() {
    let redis = RedisServer::start().expect("redis-server");
    let url = redis.url();
    let store = RedisStore::open(
        RedisOptions::new(url.clone()),
        &Ladder::default(),
        &tls_fallback::policy::Policy::default(),
        Duration::from_secs(3600),
        16,
    )
    .unwrap();
    for _ in 0..100 {
        if store.connected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(store.connected());
    store.put(
        HostKey::new("old.example", 443),
        Arc::new(Decision::new(5, "tls10-legacy".into(), "modern: closed")),
    );
    store.put(
        HostKey::new("mid.example", 443),
        Arc::new(Decision::new(2, "tls12".into(), "modern: closed")),
    );
    tokio::task::spawn_blocking(move || store.flush())
        .await
        .unwrap()
        .unwrap();

    let haproxy = cli(&[
        "decisions",
        "export",
        "--format",
        "haproxy",
        "--redis",
        &url,
    ])
    .await;
    assert_eq!(haproxy.code, 0, "{}", haproxy.stderr);
    assert!(
        haproxy.stdout.contains("backend tlsfb_old_example_443"),
        "{}",
        haproxy.stdout
    );
    assert!(
        haproxy.stdout.contains("ssl-max-ver TLSv1.0"),
        "{}",
        haproxy.stdout
    );
    assert!(
        haproxy.stdout.contains("backend tlsfb_mid_example_443"),
        "{}",
        haproxy.stdout
    );

    let forget = cli(&["decisions", "forget", "old.example:443", "--redis", &url]).await;
    assert_eq!(forget.code, 0, "{}", forget.stderr);
    let list = cli(&["decisions", "list", "--redis", &url]).await;
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert!(!list.stdout.contains("old.example"), "{}", list.stdout);
    assert!(list.stdout.contains("mid.example:443"), "{}", list.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_source_exports_what_a_running_proxy_learned() {
    let (_server, em) = legacy_gateway().await;
    let proxy = Proxy::start(&["--allow", "localhost", "--allow-legacy", "localhost"]).await;
    let url = format!("http://localhost:{}/pay", em.addr().port());
    let (status, _, body) = curl_via(&proxy, &[], &url).await;
    assert_eq!(status, 200, "{body}");
    let admin = format!("http://{}", proxy.admin);

    let (code, text) = proxy.admin_get("/decisions/export?format=xml").await;
    assert_eq!(code, 400);
    assert!(text.contains("nginx, haproxy, envoy, json"), "{text}");

    let nginx = cli(&[
        "decisions",
        "export",
        "--format",
        "nginx",
        "--admin",
        &admin,
    ])
    .await;
    assert_eq!(nginx.code, 0, "{}", nginx.stderr);
    let target = format!("proxy_pass https://localhost:{};", em.addr().port());
    assert!(nginx.stdout.contains(&target), "{}", nginx.stdout);
    assert!(
        nginx.stdout.contains("proxy_ssl_protocols TLSv1;"),
        "{}",
        nginx.stdout
    );

    let list = cli(&["decisions", "list", "--admin", &admin]).await;
    assert!(list.stdout.contains("tls10-legacy"), "{}", list.stdout);

    let host = format!("localhost:{}", em.addr().port());
    let forget = cli(&["decisions", "forget", &host, "--admin", &admin]).await;
    assert_eq!(forget.code, 0, "{}", forget.stderr);
    let after = cli(&["decisions", "list", "--admin", &admin]).await;
    assert!(!after.stdout.contains("tls10-legacy"), "{}", after.stdout);

    let remote = cli(&["decisions", "list", "--admin", "http://192.0.2.1:9"]).await;
    assert_ne!(remote.code, 0, "only a loopback admin listener");
}
