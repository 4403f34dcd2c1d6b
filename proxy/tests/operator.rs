//! What an operator configures and reads (issue 21, part 3), through the built binary: every
//! library setting from the config file, decisions kept across a reload and shared by a fleet
//! whose legacy gates differ, an HTTP/1.0 upstream behind a kept-alive HTTP/1.1 app
//! connection, the host of a refused request in the access log and the metrics, and the TLS an
//! `http` failure had.

mod proxy_support;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proxy_support::*;
use tls_fallback::testkit::{Emulator, RedisServer, Rule, TestPki, TlsServer};
use tls_fallback::TlsVersion::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The access line (stdout) that contains `needle`, within 10 s.
async fn access_line(proxy: &Proxy, needle: &str) -> String {
    wait_line(&proxy.stdout, needle)
        .await
        .unwrap_or_else(|| panic!("no access line with {needle:?}: {:?}", proxy.stdout))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_time_of_300_ms_in_the_file_races_a_hanging_rung_after_300_ms_not_1500() {
    // TLS 1.2 behind a box that hangs on every hello offering TLS 1.3.
    let server = TlsServer::builder()
        .max_version(Tls1_2)
        .start()
        .await
        .unwrap();
    let em = Emulator::start(server.addr(), vec![Rule::hang_above(Tls1_2)])
        .await
        .unwrap();
    let (proxy, _) = Proxy::with_config("allow = [\"localhost\"]\nstall_timeout_ms = 300\n").await;
    let started = Instant::now();
    let url = format!("http://localhost:{}/", em.addr().port());
    let (status, headers, body) = curl_via(&proxy, &[], &url).await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-tls-fallback-version"], "1.2");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1200),
        "raced after the file's 300 ms, not the default 1500: {took:?}"
    );
    let seen = ladder_seen(&em);
    assert_eq!(seen[0], (Some(Tls1_3), false), "{seen:?}");
    assert!(seen.contains(&(Some(Tls1_2), true)), "{seen:?}");
}

/// The proxy with these flags and environment variables (no `--ca-file` of the harness).
async fn start_with_env(args: &[&str], env: &[(&str, &std::path::Path)]) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let (program, prefix) = proxy_command();
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(prefix)
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(args)
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the proxy starts");
    let lines = |r: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = Arc::clone(&lines);
        tokio::spawn(async move {
            let mut r = BufReader::new(r).lines();
            while let Ok(Some(line)) = r.next_line().await {
                l.lock().unwrap().push(line);
            }
        });
        lines
    };
    let stderr = lines(Box::new(child.stderr.take().unwrap()));
    let stdout = lines(Box::new(child.stdout.take().unwrap()));
    let addr = |needle: &str| {
        let stderr = Arc::clone(&stderr);
        let needle = needle.to_string();
        async move {
            let line = wait_line(&stderr, &needle).await;
            let line = line.unwrap_or_else(|| panic!("no {needle}: {:?}", stderr.lock()));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        }
    };
    Proxy {
        addr: addr("listening on").await,
        admin: addr("admin on").await,
        child,
        stderr,
        stdout,
        dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_roots_false_trusts_only_the_ca_file() {
    // The test CA as the system's store (OpenSSL reads SSL_CERT_FILE): trusted by default,
    // not with system_roots = false and no ca_file.
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&dir);
    let echo = Echo::start().await;
    let url = echo.http_url("/echo");
    let env = [("SSL_CERT_FILE", ca.as_path())];
    let trusting = start_with_env(&["--allow", "localhost"], &env).await;
    assert_eq!(curl_via(&trusting, &[], &url).await.0, 200);
    let args = ["--allow", "localhost", "--system-roots", "false"];
    let strict = start_with_env(&args, &env).await;
    let (status, headers, body) = curl_via(&strict, &[], &url).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(headers["x-tls-fallback-error"], "certificate", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_adding_an_unrelated_allow_legacy_pattern_keeps_what_was_learned() {
    let (_s, em) = legacy_gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("decisions.json");
    let config = |legacy: &str| {
        format!(
            "allow = [\"localhost\"]\nallow_legacy = [{legacy}]\ncache_file = \"{}\"\n",
            file.display()
        )
    };
    let (proxy, cfg) = Proxy::with_config(&config("\"localhost\"")).await;
    let url = format!("http://localhost:{}/pay", em.addr().port());
    let (status, headers, _) = curl_via(&proxy, &[], &url).await;
    assert_eq!(
        (status, headers["x-tls-fallback-handshakes"].as_str()),
        (200, "6")
    );
    em.clear();
    // At once, before the decision file is written (it waits 500 ms for more changes).
    std::fs::write(&cfg, config("\"localhost\", \"unrelated.example\"")).unwrap();
    proxy.signal("HUP");
    assert!(wait_line(&proxy.stderr, "SIGHUP: reloaded").await.is_some());
    // A new app connection and a new upstream connection (the old layer's are closed).
    let (status, headers, body) = curl_via(&proxy, &[], &url).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-tls-fallback-handshakes"], "1", "no new walk");
    assert_eq!(
        ladder_seen(&em),
        [(Some(Tls1_0), true)],
        "one hello, with SCSV"
    );
    let (_, decisions) = proxy.admin_get("/decisions").await;
    assert!(decisions.contains("tls10-legacy"), "{decisions}");
    // The one store both layers share wrote it.
    let port = format!("\"port\": {}", em.addr().port());
    let mut written = String::new();
    for _ in 0..40 {
        written = std::fs::read_to_string(&file).unwrap_or_default();
        if written.contains(&port) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        written.contains(&port) && written.contains("tls10-legacy"),
        "{written}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_whose_allow_legacy_lists_differ_share_the_decision_in_redis() {
    let redis = RedisServer::start().expect("redis-server");
    let (_s, em) = legacy_gateway().await;
    let url = redis.url();
    let a = Proxy::start(&[
        "--allow",
        "localhost",
        "--allow-legacy",
        "localhost",
        "--allow-legacy",
        "other.example",
        "--redis",
        &url,
    ])
    .await;
    let b_args = [
        "--allow",
        "localhost",
        "--allow-legacy",
        "localhost",
        "--redis",
        &url,
    ];
    let b = Proxy::start(&b_args).await;
    let target = format!("http://localhost:{}/pay", em.addr().port());
    let (status, headers, _) = curl_via(&a, &[], &target).await;
    assert_eq!(
        (status, headers["x-tls-fallback-handshakes"].as_str()),
        (200, "6")
    );
    em.clear();
    let (status, headers, body) = curl_via(&b, &[], &target).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        headers["x-tls-fallback-handshakes"], "1",
        "B starts on A's rung"
    );
    assert_eq!(ladder_seen(&em), [(Some(Tls1_0), true)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_namespace_from_the_file_names_the_shared_keys() {
    let redis = RedisServer::start().expect("redis-server");
    let (_s, em) = legacy_gateway().await;
    let (proxy, _) = Proxy::with_config(&format!(
        "allow = [\"localhost\"]\nallow_legacy = [\"localhost\"]\nredis = \"{}\"\n\
         redis_namespace = \"fleet-a\"\nredis_read_timeout_ms = 80\n",
        redis.url()
    ))
    .await;
    let target = format!("http://localhost:{}/pay", em.addr().port());
    assert_eq!(curl_via(&proxy, &[], &target).await.0, 200);
    let port = redis.port().to_string();
    let suffix = format!(":d:localhost:{}", em.addr().port());
    let mut keys = String::new();
    for _ in 0..40 {
        let r = run("redis-cli", &["-p", &port, "--scan", "--pattern", "*"], &[]).await;
        keys = r.stdout;
        if keys.contains(&suffix) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let key = keys.lines().find(|k| k.ends_with(&suffix));
    assert!(
        key.is_some_and(|k| k.starts_with("fleet-a:")),
        "keys: {keys}"
    );
}

/// A TLS server (the test kit's `localhost` certificate) that answers every request in
/// HTTP/1.0 and closes: `/length` with a `Content-Length`, any other path with a body that
/// ends where the connection does.
async fn http10_upstream() -> u16 {
    let pki = TestPki::shared();
    let mut b =
        openssl::ssl::SslAcceptor::mozilla_intermediate_v5(openssl::ssl::SslMethod::tls()).unwrap();
    b.set_certificate(&pki.localhost.cert).unwrap();
    b.set_private_key(&pki.localhost.key).unwrap();
    let acceptor = b.build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let ssl = openssl::ssl::Ssl::new(acceptor.context()).unwrap();
            tokio::spawn(async move {
                let mut tls = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
                if std::pin::Pin::new(&mut tls).accept().await.is_err() {
                    return;
                }
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if tls.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let answer: &[u8] = if head.starts_with(b"GET /length ") {
                    b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\
                      Content-Length: 11\r\n\r\nwith length"
                } else {
                    b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close"
                };
                let _ = tls.write_all(answer).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_0_upstream_is_answered_in_http_1_1_on_a_kept_alive_app_connection() {
    let port = http10_upstream().await;
    let proxy = Proxy::start(&["--allow", "localhost"]).await;
    let url = |path: &str| format!("http://localhost:{port}{path}");
    let dir = tempfile::tempdir().unwrap();
    let heads = dir.path().join("heads.txt");
    let (bodies, proxy_url) = (dir.path().join("b"), proxy.url());
    let (one, two) = (bodies.with_extension("1"), bodies.with_extension("2"));
    // curl, two requests on one connection: status, version, connections opened.
    let r = curl(&[
        "-sS",
        "-x",
        &proxy_url,
        "-D",
        heads.to_str().unwrap(),
        "-w",
        "%{http_code} %{http_version} %{num_connects}\n",
        "-o",
        one.to_str().unwrap(),
        &url("/close"),
        "-o",
        two.to_str().unwrap(),
        &url("/length"),
    ])
    .await;
    assert_eq!(r.stdout, "200 1.1 1\n200 1.1 0\n", "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&one).unwrap(), "until the close");
    assert_eq!(std::fs::read_to_string(&two).unwrap(), "with length");
    let heads = std::fs::read_to_string(&heads)
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        heads.contains("transfer-encoding: chunked") && heads.contains("content-length: 11"),
        "each body framed: {heads}"
    );
    assert!(!heads.contains("connection: close"), "{heads}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_logs_the_host_asked_for_escaped_and_its_label_stays_bounded() {
    let proxy = Proxy::start(&["--allow", "gw.example"]).await;
    let (status, _, _) = curl_via(&proxy, &[], "http://not-allowed.example:8443/x").await;
    assert_eq!(status, 403);
    let line = access_line(&proxy, " 403 ").await;
    assert_eq!(
        line.split(' ').nth(2),
        Some("not-allowed.example:8443"),
        "{line}"
    );
    // A Host header no DNS name has: spaces, a quote, bytes past ASCII; one field still.
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(b"GET /x HTTP/1.1\r\nHost: evil \"host\" \xff\r\n\r\n")
        .await
        .unwrap();
    let line = access_line(&proxy, " 400 ").await;
    assert_eq!(
        line.split(' ').nth(2),
        Some("evil\\x20\\x22host\\x22\\x20\\xff"),
        "{line}"
    );
    assert_eq!(line.split(' ').count(), 9, "{line}");
    // 130 refused hosts more: 100 labels of their own (these two hosts are among them), then
    // `other`.
    for i in 0..130 {
        let req = format!("GET http://junk{i}.example/ HTTP/1.1\r\nHost: junk{i}.example\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
    }
    wait_line(&proxy.stdout, " junk129.example ").await;
    let (_, metrics) = proxy.admin_get("/metrics").await;
    let refused: Vec<&str> = (metrics.lines())
        .filter(|l| l.starts_with("tls_fallback_proxy_requests_total{"))
        .filter(|l| l.contains("status=\"403\"") || l.contains("status=\"400\""))
        .filter_map(|l| l.split("host=\"").nth(1)?.split('"').next())
        .collect();
    let mut refused = refused;
    refused.sort_unstable();
    refused.dedup();
    assert!(refused.contains(&"not-allowed.example:8443"), "{refused:?}");
    assert!(refused.contains(&"other"), "{refused:?}");
    assert_eq!(refused.len(), 101, "100 hosts and `other`: {refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_failure_after_the_handshake_logs_the_tls_the_connection_used() {
    let up = RawUpstream::start(|_| b"garbage, not HTTP\r\n\r\n").await;
    let proxy = Proxy::start(&["--allow", "localhost"]).await;
    let url = format!("http://localhost:{}/", up.port);
    let (status, headers, body) = curl_via(&proxy, &[], &url).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(headers["x-tls-fallback-error"], "http", "{body}");
    assert_eq!(headers["x-tls-fallback-version"], "1.3", "{headers:?}");
    let line = access_line(&proxy, "error=http").await;
    assert!(
        line.contains(" 502 tls=1.3 profile=modern handshakes=1 error=http "),
        "{line}"
    );
}
