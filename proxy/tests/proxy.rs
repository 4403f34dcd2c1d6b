//! `tls-fallback proxy` from the built binary, in front of test-kit gateways, driven by real
//! clients nobody here wrote: curl, Python `requests`, reqwest (`Proxy::http`/`Proxy::custom`)
//! and tinyproxy as an outbound CONNECT proxy.

mod proxy_support;

use std::time::{Duration, Instant};

use proxy_support::*;
use serde_json::Value;
use tls_fallback::testkit::{Emulator, Rule, TlsServer};
use tls_fallback::TlsVersion::*;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// A proxy for `localhost` with legacy TLS allowed.
async fn legacy_proxy() -> Proxy {
    legacy_proxy_with(&[]).await
}

/// A proxy allowed to reach `localhost` with legacy TLS, with these flags too.
async fn legacy_proxy_with(extra: &[&str]) -> Proxy {
    let mut args = vec!["--allow", "localhost", "--allow-legacy", "localhost"];
    args.extend_from_slice(extra);
    Proxy::start(&args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_reaches_a_gateway_closing_above_tls10_on_tls10_with_scsv_on_every_fallback() {
    let (_server, em) = legacy_gateway().await;
    let proxy = legacy_proxy().await;
    let url = format!("http://localhost:{}/pay", em.addr().port());
    let (status, headers, body) = curl_via(&proxy, &[], &url).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("GET over TLSv1"), "{body}");
    assert_eq!(headers["x-tls-fallback-version"], "1.0");
    assert_eq!(headers["x-tls-fallback-profile"], "tls10-legacy");
    assert_eq!(headers["x-tls-fallback-handshakes"], "6");
    assert_eq!(ladder_seen(&em), LEGACY_WALK);
    // The access log: one line with method, host, status, version, profile, handshakes.
    let line = wait_line(&proxy.stdout, "GET localhost:")
        .await
        .expect("access log line");
    for part in [
        "200",
        "tls=1.0",
        "profile=tls10-legacy",
        "handshakes=6",
        "ms=",
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_post_through_a_fallback_is_delivered_exactly_once() {
    let (server, em) = legacy_gateway().await;
    let proxy = legacy_proxy().await;
    let url = format!("http://localhost:{}/charge", em.addr().port());
    let r = python(
        "r = requests.post(url, data=b'amount=10', proxies=proxies, timeout=30)\n\
         print(r.status_code, r.headers['x-tls-fallback-version'], r.text.strip())",
        &proxy.url(),
        &url,
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("200 1.0 hello"), "{}", r.stdout);
    assert!(
        r.stdout.contains("POST over TLSv1, 9 body bytes"),
        "{}",
        r.stdout
    );
    assert_eq!(server.requests("POST"), 1);
    assert_eq!(em.failed(), LEGACY_WALK.len() - 1, "{:?}", ladder_seen(&em));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_connect_and_outside_allow_list_403_origin_form_400_and_nothing_connected() {
    let em = Emulator::start("127.0.0.1:9".parse().unwrap(), vec![])
        .await
        .unwrap();
    let port = em.addr().port();
    let proxy = Proxy::start(&["--allow", "gw.example"]).await;
    // curl -p sends CONNECT to a host outside the allow-list: 403 (the proxy is never an open
    // tunnel).
    let status = connect_status(&proxy, &format!("http://localhost:{port}/")).await;
    assert_eq!(status, "403");
    // (target, status, a word of the reason)
    let rows = [
        (format!("http://localhost:{port}/"), 403, "allow-list"),
        (format!("http://127.0.0.1:{port}/"), 403, "allow-list"),
        ("ftp://gw.example/".to_string(), 400, "scheme"),
    ];
    for (url, want, word) in rows {
        let (status, _, body) = curl_via(&proxy, &[], &url).await;
        assert_eq!(status, want, "{url}: {body}");
        assert!(body.contains(word), "{url}: {body}");
    }
    // An origin-form request (the app treats the proxy as a server) without --upstream: 400.
    let (status, _, body) = {
        let r = curl(&[
            "-sS",
            "-w",
            "\n%{http_code}",
            &format!("{}/pay", proxy.url()),
        ])
        .await;
        let (b, c) = r.stdout.rsplit_once('\n').unwrap();
        (c.parse::<u16>().unwrap(), (), b.to_string())
    };
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("--upstream"), "{body}");
    assert_eq!(em.count(), 0, "no connection to a refused host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downgrade_attacker_gets_502_downgrade_detected_with_the_attempts() {
    let (server, em) = downgrade_attack().await;
    let proxy = legacy_proxy().await;
    let (status, headers, body) = curl_via(
        &proxy,
        &[],
        &format!("http://localhost:{}/", em.addr().port()),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(headers["x-tls-fallback-error"], "downgrade_detected");
    assert_eq!(headers["content-type"], "application/json");
    let v = json(&body);
    assert_eq!(v["error"]["kind"], "downgrade_detected");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("localhost"),
        "{v}"
    );
    assert_eq!(v["attempts"].as_array().unwrap().len(), 6, "{v}");
    assert_eq!(server.requests("GET"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_the_upstream_is_502_and_the_proxy_keeps_serving() {
    let (_s, garbage) = gateway_with(Rule::garbage()).await;
    let echo = Echo::start().await;
    let proxy = legacy_proxy().await;
    let (status, headers, body) = curl_via(
        &proxy,
        &[],
        &format!("http://localhost:{}/", garbage.addr().port()),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    let kind = headers["x-tls-fallback-error"].clone();
    assert_eq!(json(&body)["error"]["kind"], kind.as_str());
    let (status, headers, _) = curl_via(&proxy, &[], &echo.http_url("/echo")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-tls-fallback-version"], "1.3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_and_proxy_headers_are_not_forwarded_either_way() {
    let echo = Echo::start().await;
    let proxy = Proxy::start(&["--allow", "localhost"]).await;
    let sent = [
        "Connection: x-secret, keep-alive",
        "X-Secret: 1",
        "Keep-Alive: timeout=5",
        "TE: trailers",
        "Trailer: x-t",
        "Upgrade: h2c",
        "Proxy-Connection: keep-alive",
        "Proxy-Authorization: Basic dXNlcjpwdw==",
        "X-Kept: yes",
        "Authorization: Bearer app-token",
    ];
    let mut args = Vec::new();
    for h in &sent {
        args.extend(["-H", h]);
    }
    let (status, headers, body) = curl_via(&proxy, &args, &echo.http_url("/echo?a=1")).await;
    assert_eq!(status, 200, "{body}");
    let v = json(&body);
    let seen = v["headers"].as_object().unwrap();
    for gone in [
        "connection",
        "x-secret",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "proxy-authorization",
    ] {
        assert!(!seen.contains_key(gone), "{gone} forwarded: {v}");
    }
    assert_eq!(seen["x-kept"][0], "yes");
    assert_eq!(seen["authorization"][0], "Bearer app-token");
    assert_eq!(seen["host"][0], format!("localhost:{}", echo.addr.port()));
    assert_eq!(v["uri"], "/echo?a=1");
    // Back to the app: the upstream's hop-by-hop headers are dropped, its spoofed
    // x-tls-fallback-version replaced by the proxy's.
    assert!(!headers.contains_key("x-up-hop"), "{headers:?}");
    assert!(!headers.contains_key("keep-alive"), "{headers:?}");
    assert_eq!(headers["x-up-kept"], "1");
    assert_eq!(headers["x-tls-fallback-version"], "1.3");
    assert_eq!(headers["x-tls-fallback-handshakes"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_passed_to_the_app_not_followed() {
    let echo = Echo::start().await;
    let proxy = Proxy::start(&["--allow", "localhost"]).await;
    let (status, headers, _) = curl_via(&proxy, &[], &echo.http_url("/redirect")).await;
    assert_eq!(status, 302);
    assert_eq!(headers["location"], "http://localhost/elsewhere");
    assert_eq!(
        echo.state
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_upstream_mode_sends_paths_to_the_upstream_and_rewrites_host() {
    let echo = Echo::start().await;
    let upstream = format!("https://localhost:{}", echo.addr.port());
    let proxy = Proxy::start(&["--upstream", &upstream]).await;
    let r = python(
        "s = requests.Session()\n\
         for i in range(3):\n    r = s.get(url + '/v1/pay?i=%d' % i, timeout=30)\n\
         print(r.status_code, json.dumps(r.json()), r.headers['x-tls-fallback-version'])",
        "unused",
        &proxy.url(),
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (status, rest) = r.stdout.trim().split_once(' ').unwrap();
    assert_eq!(status, "200");
    let (body, version) = rest.rsplit_once(' ').unwrap();
    assert_eq!(version, "1.3");
    let v = json(body);
    assert_eq!(v["uri"], "/v1/pay?i=2");
    assert_eq!(
        v["headers"]["host"][0],
        format!("localhost:{}", echo.addr.port())
    );
    // Keep-alive on both sides: three requests, one upstream connection.
    assert_eq!(
        echo.state
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_proxy_http_and_proxy_custom_reach_the_upstream() {
    let echo = Echo::start().await;
    let proxy = Proxy::start(&["--allow", "localhost"]).await;
    let by_http = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(proxy.url()).unwrap())
        .build()
        .unwrap();
    let target = proxy.url();
    let by_custom = reqwest::Client::builder()
        .proxy(reqwest::Proxy::custom(move |url| {
            (url.host_str() == Some("localhost")).then(|| target.clone())
        }))
        .build()
        .unwrap();
    for client in [by_http, by_custom] {
        let res = tokio::time::timeout(
            Duration::from_secs(30),
            client
                .post(echo.http_url("/echo"))
                .body("reqwest body")
                .send(),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-tls-fallback-version"], "1.3");
        let v = json(&res.text().await.unwrap());
        assert_eq!(v["body"], "reqwest body");
    }
    assert_eq!(
        echo.state.posts.load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_clients_to_a_fresh_intolerant_gateway_share_one_walk() {
    let (server, em) = legacy_gateway().await;
    let proxy = legacy_proxy().await;
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(proxy.url()).unwrap())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = format!("http://localhost:{}/", em.addr().port());
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let (client, url) = (client.clone(), url.clone());
        set.spawn(async move {
            let res = client.get(&url).send().await?;
            let v = res.headers().get("x-tls-fallback-version").cloned();
            Ok::<_, reqwest::Error>((res.status().as_u16(), v))
        });
    }
    let mut ok = 0;
    while let Some(r) = tokio::time::timeout(Duration::from_secs(60), set.join_next())
        .await
        .expect("bounded")
    {
        let (status, v) = r.unwrap().unwrap();
        assert_eq!(
            (status, v.as_ref().and_then(|v| v.to_str().ok())),
            (200, Some("1.0"))
        );
        ok += 1;
    }
    assert_eq!(ok, 200);
    assert_eq!(server.requests("GET"), 200);
    // One learning walk: its five failed hellos, and none from the 199 others.
    assert_eq!(
        em.failed(),
        LEGACY_WALK.len() - 1,
        "{:?}",
        &ladder_seen(&em)[..8]
    );
    eprintln!("200 concurrent through the proxy: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_body_streams_both_ways_with_bounded_proxy_memory() {
    const SIZE: u64 = 200 * 1024 * 1024;
    let echo = Echo::start().await;
    let proxy = Proxy::start(&["--allow", "localhost"]).await;
    // Warm up (first connection, allocator arenas), then take the baseline.
    let (status, _, _) = curl_via(&proxy, &[], &echo.http_url("/download/1048576")).await;
    assert_eq!(status, 200);
    let before = proxy.mem_kb("VmRSS:");
    let started = Instant::now();
    let r = curl(&[
        "-sS",
        "-x",
        &proxy.url(),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download}",
        &echo.http_url(&format!("/download/{SIZE}")),
    ])
    .await;
    assert_eq!(r.stdout, format!("200 {SIZE}"), "{}", r.stderr);
    let down = started.elapsed();
    // Upload: curl streams a sparse file of SIZE bytes (chunked is not needed: -T knows its size).
    let file = proxy.dir.path().join("upload.bin");
    std::fs::File::create(&file).unwrap().set_len(SIZE).unwrap();
    let started = Instant::now();
    let r = curl(&[
        "-sS",
        "-x",
        &proxy.url(),
        "-T",
        file.to_str().unwrap(),
        &echo.http_url("/upload"),
    ])
    .await;
    assert_eq!(r.stdout, SIZE.to_string(), "{}", r.stderr);
    let up = started.elapsed();
    let peak = proxy.mem_kb("VmHWM:");
    let growth_mb = peak.saturating_sub(before) / 1024;
    eprintln!("200 MB down {down:?}, up {up:?}; RSS {before} kB before, peak {peak} kB");
    assert!(growth_mb < 64, "the proxy grew by {growth_mb} MB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish_then_exits_0() {
    let echo = Echo::start().await;
    let mut proxy = Proxy::start(&["--allow", "localhost"]).await;
    let url = echo.http_url("/slow/1500");
    let proxy_url = proxy.url();
    let in_flight =
        tokio::spawn(
            async move { curl(&["-sS", "-x", &proxy_url, "-w", " %{http_code}", &url]).await },
        );
    // Wait until the request reached the upstream.
    for _ in 0..100 {
        if echo
            .state
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.signal("TERM");
    let r = in_flight.await.unwrap();
    assert_eq!(r.stdout, "slow done\n 200", "{}", r.stderr);
    assert_eq!(proxy.exit_code(10).await, Some(0));
    // And it no longer accepts.
    assert!(tokio::net::TcpStream::connect(proxy.addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rereads_the_config_and_a_bad_file_keeps_the_old_one() {
    let echo = Echo::start().await;
    let (proxy, cfg) = Proxy::with_config("allow = [\"localhost\"]\n").await;
    let url = echo.http_url("/echo");
    assert_eq!(curl_via(&proxy, &[], &url).await.0, 200);
    // A bad file: logged with file, line and key; the old allow-list stays.
    std::fs::write(
        &cfg,
        "allow = [\"gw.example\"]\nhandshake_timeout_ms = \"soon\"\n",
    )
    .unwrap();
    proxy.signal("HUP");
    let line = wait_line(&proxy.stderr, "keeping the running configuration").await;
    let line = line.expect("the bad file is logged");
    assert!(
        line.contains("proxy.toml:2: key `handshake_timeout_ms`"),
        "{line}"
    );
    assert_eq!(curl_via(&proxy, &[], &url).await.0, 200);
    // A good file applies.
    std::fs::write(&cfg, "allow = [\"gw.example\"]\n").unwrap();
    proxy.signal("HUP");
    assert!(wait_line(&proxy.stderr, "SIGHUP: reloaded").await.is_some());
    assert_eq!(curl_via(&proxy, &[], &url).await.0, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_serves_healthz_prometheus_metrics_and_decisions() {
    let (_s, em) = legacy_gateway().await;
    let proxy = legacy_proxy().await;
    let url = format!("http://localhost:{}/", em.addr().port());
    assert_eq!(curl_via(&proxy, &[], &url).await.0, 200);
    assert_eq!(curl_via(&proxy, &[], "http://other.example/").await.0, 403);
    assert_eq!(proxy.admin_get("/healthz").await, (200, "ok\n".to_string()));
    let (status, metrics) = proxy.admin_get("/metrics").await;
    assert_eq!(status, 200);
    let host = format!("localhost:{}", em.addr().port());
    for want in [
        "tls_fallback_handshakes_total 6".to_string(),
        "tls_fallback_fallbacks_total{".to_string(),
        "tls_fallback_learned_hosts 1".to_string(),
        "tls_fallback_downgrades_total".to_string(),
        format!("tls_fallback_proxy_requests_total{{host=\"{host}\",status=\"200\"}} 1"),
        "tls_fallback_proxy_requests_total{host=\"other.example\",status=\"403\"} 1".to_string(),
        format!(
            "tls_fallback_proxy_request_duration_seconds_count{{host=\"{host}\",status=\"200\"}} 1"
        ),
    ] {
        assert!(metrics.contains(&want), "{want} in\n{metrics}");
    }
    let (status, decisions) = proxy.admin_get("/decisions").await;
    assert_eq!(status, 200);
    let v = json(&decisions);
    assert_eq!(v["handshakes"], 6);
    assert_eq!(v["hosts"][0]["profile"], "tls10-legacy", "{v}");
    // When it was learned, for humans (RFC 3339) beside the Unix milliseconds: the same instant,
    // a moment ago.
    let at = v["hosts"][0]["learned_at"].as_str().expect("learned_at");
    let at = humantime::parse_rfc3339(at).unwrap_or_else(|e| panic!("{at}: {e}"));
    let ms = v["hosts"][0]["learned_at_ms"]
        .as_u64()
        .expect("learned_at_ms");
    let since_epoch = at.duration_since(std::time::UNIX_EPOCH).unwrap();
    assert_eq!(since_epoch.as_millis(), u128::from(ms), "{v}");
    let age = std::time::SystemTime::now()
        .duration_since(at)
        .unwrap_or_default();
    assert!(age < Duration::from_secs(60), "learned {age:?} ago: {v}");
    // The admin paths are not served on the proxy port.
    let (status, _, _) = curl_via(&proxy, &[], "http://localhost/healthz").await;
    assert_ne!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_startup_configurations_exit_2_with_a_clear_message() {
    // (args, message part)
    let rows: &[(&[&str], &str)] = &[
        (&[], "nothing to proxy to"),
        (
            &["--allow", "a", "--listen", "0.0.0.0:0"],
            "--listen-public",
        ),
        (&["--allow", "bad host"], "--allow: invalid host pattern"),
        (
            &["--allow", "https://gateway.example/"],
            "it looks like a URL; a pattern is a host with an optional port, without scheme or \
             path: \"gateway.example\" (every port) or \"gateway.example:443\" (port 443 only)",
        ),
        (&["--upstream", "http://a"], "must start with https://"),
        (
            &["--allow", "a", "--via", "socks4://p:1"],
            "--via: invalid proxy URL",
        ),
        (
            &["--config", "/nonexistent.toml"],
            "cannot read the config file /nonexistent.toml",
        ),
    ];
    for (args, want) in rows {
        let (program, prefix) = proxy_command();
        let mut all = prefix.to_vec();
        all.extend_from_slice(args);
        let r = run(program, &all, &[]).await;
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn via_a_connect_proxy_the_fallback_runs_inside_the_tunnel() {
    let tiny = Tinyproxy::start(false).await;
    let (server, em) = legacy_gateway().await;
    let proxy = legacy_proxy_with(&["--via", &tiny.url()]).await;
    let url = format!("http://localhost:{}/", em.addr().port());
    let (status, headers, body) = curl_via(&proxy, &[], &url).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-tls-fallback-version"], "1.0");
    // Each rung was one CONNECT through tinyproxy: the emulator saw the whole walk.
    assert_eq!(ladder_seen(&em), LEGACY_WALK);
    assert_eq!(server.requests("GET"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_407_from_the_via_proxy_is_a_connect_error_naming_it_never_a_fallback() {
    let tiny = Tinyproxy::start(true).await;
    let (_s, em) = legacy_gateway().await;
    let proxy = legacy_proxy_with(&["--via", &tiny.url()]).await;
    let url = format!("http://localhost:{}/", em.addr().port());
    let (status, headers, body) = curl_via(&proxy, &[], &url).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(headers["x-tls-fallback-error"], "connect");
    let msg = json(&body)["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains(&tiny.url()), "{msg}");
    assert!(msg.contains("authorization required"), "{msg}");
    assert_eq!(em.count(), 0, "no hello went through");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_are_504_a_handshake_one_and_a_slow_upstream_one() {
    let echo = Echo::start().await;
    let (_s, hang) = gateway_with(Rule::hang_above(Tls1_2)).await;
    let pin = format!("localhost:{}=1.3", hang.addr().port());
    let proxy = Proxy::start(&[
        "--allow",
        "localhost",
        "--pin",
        &pin,
        "--handshake-timeout-ms",
        "300",
        "--request-timeout-ms",
        "500",
    ])
    .await;
    // (url, error kind)
    let rows = [
        (
            format!("http://localhost:{}/", hang.addr().port()),
            "timeout",
        ),
        (echo.http_url("/slow/3000"), "timeout"),
    ];
    for (url, kind) in rows {
        let started = Instant::now();
        let (status, headers, body) = curl_via(&proxy, &[], &url).await;
        assert_eq!(status, 504, "{url}: {body}");
        assert_eq!(headers["x-tls-fallback-error"], kind, "{url}");
        assert_eq!(json(&body)["error"]["kind"], kind, "{url}");
        assert!(started.elapsed() < Duration::from_secs(3), "{url}");
    }
    assert_eq!(
        hang.count(),
        1,
        "a pinned host is not walked: {:?}",
        ladder_seen(&hang)
    );
    // On one app connection (one request timer, moved forward per request): a request after
    // the connection sat idle past the timeout still gets its whole time; the request after a
    // timed-out one does not wait behind the answer that never came (it goes on a new upstream
    // connection); and the timer, once fired, gives the next slow request its whole time again.
    let code = "import time\n\
                s = requests.Session()\n\
                r0 = s.get(url, proxies=proxies)\n\
                time.sleep(0.7)\n\
                t = time.monotonic(); r1 = s.get(url.replace('/echo', '/slow/3000'), proxies=proxies); d1 = time.monotonic() - t\n\
                t = time.monotonic(); r2 = s.get(url, proxies=proxies); d2 = time.monotonic() - t\n\
                r3 = s.get(url.replace('/echo', '/slow/250'), proxies=proxies)\n\
                print(json.dumps([r0.status_code, r1.status_code, r2.status_code, r3.status_code, d1, d2]))";
    let out = python(code, &proxy.url(), &echo.http_url("/echo")).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = json(&out.stdout);
    let codes: Vec<_> = (0..4).map(|i| v[i].as_u64()).collect();
    assert_eq!(codes, [Some(200), Some(504), Some(200), Some(200)], "{v}");
    let d1 = v[4].as_f64().unwrap_or(9.0);
    assert!(
        (0.45..1.5).contains(&d1),
        "the timeout took {d1} s, not 0.5: {v}"
    );
    assert!(
        v[5].as_f64().unwrap_or(9.0) < 1.0,
        "the request after the timeout waited: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_from_the_config_file_bound_header_size_and_idle_time() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("proxy.toml");
    std::fs::write(
        &cfg,
        "allow = [\"localhost\"]\n[limits]\nmax_header_bytes = 8192\nidle_timeout_ms = 300\n",
    )
    .unwrap();
    let proxy = Proxy::start_in(dir, &["--config", cfg.to_str().unwrap()]).await;
    let big = format!("X-Big: {}", "a".repeat(20_000));
    let (status, _, _) = curl_via(&proxy, &["-H", &big], &echo.http_url("/echo")).await;
    assert_eq!(status, 431);
    assert_eq!(curl_via(&proxy, &[], &echo.http_url("/echo")).await.0, 200);
    // An app connection that sends nothing is closed after the idle time.
    let mut tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("closed within 5 s")
        .unwrap_or(0);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    // hyper may answer 408 before closing; either way the connection ends.
    if n > 0 {
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"));
    }
    let _ = tcp.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_picks_h2_by_alpn_is_served_over_h2() {
    let server = TlsServer::builder().http2(true).start().await.unwrap();
    let upstream = format!("https://localhost:{}", server.addr().port());
    let proxy = Proxy::start(&["--upstream", &upstream]).await;
    for _ in 0..3 {
        let r = curl(&[
            "-sS",
            "-i",
            "-X",
            "POST",
            "-d",
            "a=1",
            &format!("{}/h2", proxy.url()),
        ])
        .await;
        assert!(
            r.stdout.starts_with("HTTP/1.1 200"),
            "{}{}",
            r.stdout,
            r.stderr
        );
        assert!(
            r.stdout.contains("POST over TLSv1.3, 3 body bytes"),
            "{}",
            r.stdout
        );
    }
    assert_eq!(server.requests("POST"), 3);
    assert_eq!(
        server.handshakes(),
        1,
        "one h2 connection carries the three requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_silent_on_every_rung_is_504_no_tls_answer() {
    use tls_fallback::testkit::{Action, Trigger};
    let silent = Rule {
        trigger: Trigger::Always,
        action: Action::Hang,
    };
    let (server, em) = gateway_with(silent).await;
    let proxy = Proxy::start(&["--allow", "localhost", "--handshake-timeout-ms", "300"]).await;
    let started = Instant::now();
    let url = format!("http://localhost:{}/", em.addr().port());
    let (status, headers, body) = curl_via(&proxy, &[], &url).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(headers["x-tls-fallback-error"], "no_tls_answer", "{body}");
    assert!(
        !json(&body)["attempts"].as_array().unwrap().is_empty(),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.requests("GET"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_connection_closed_while_idle_is_replaced_and_each_post_is_sent_once() {
    // The upstream drops idle connections after 200 ms, without a word. Python's two POSTs
    // share one app connection (its upstream connection dies between them); curl's two use
    // an app connection each, and each finds the upstream connection parked before it dead
    // (hyper hands the request back unsent: it goes on a new connection).
    let echo = Echo::start_idle_close(Duration::from_millis(200)).await;
    let upstream = format!("https://localhost:{}", echo.addr.port());
    let proxy = Proxy::start(&["--upstream", &upstream, "--workers", "1"]).await;
    let url = format!("{}/echo", proxy.url());
    let code = "import time\n\
                s = requests.Session()\n\
                r1 = s.post(url, data='1'); time.sleep(0.6); r2 = s.post(url, data='2')\n\
                print(json.dumps([[r.status_code, r.json()['body']] for r in (r1, r2)]))";
    let out = python(code, &proxy.url(), &url).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        json(&out.stdout),
        serde_json::json!([[200, "1"], [200, "2"]])
    );
    let post = |body: &'static str| {
        let url = url.clone();
        async move { curl(&["-sS", "-w", " %{http_code}", "-d", body, &url]).await }
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r3 = post("3").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r4 = post("4").await;
    for (r, body) in [(&r3, "3"), (&r4, "4")] {
        assert!(r.stdout.ends_with(" 200"), "{}: {}", r.stdout, r.stderr);
        assert_eq!(json(r.stdout.trim_end_matches(" 200"))["body"], body);
    }
    let seen = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        seen(&echo.state.posts),
        4,
        "each POST reached the upstream once"
    );
    assert_eq!(
        seen(&echo.state.connections),
        4,
        "a new upstream connection after each idle close"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_parked_connections_closed_while_idle_do_not_fail_a_post() {
    // Three app connections at once make three upstream connections; all three are parked
    // when the apps hang up, and the upstream drops them while idle. The next POST finds only
    // dead parked connections: it was never sent, so it must still reach the upstream, once.
    let echo = Echo::start_idle_close(Duration::from_millis(200)).await;
    let upstream = format!("https://localhost:{}", echo.addr.port());
    let proxy = Proxy::start(&["--upstream", &upstream, "--workers", "1"]).await;
    let url = format!("{}/slow/300", proxy.url());
    let code = "import threading\n\
                out = []\n\
                def one():\n    out.append(requests.get(url).status_code)\n\
                ts = [threading.Thread(target=one) for _ in range(3)]\n\
                [t.start() for t in ts]; [t.join() for t in ts]\n\
                print(json.dumps(out))";
    let out = python(code, &proxy.url(), &url).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(json(&out.stdout), serde_json::json!([200, 200, 200]));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let echo_url = format!("{}/echo", proxy.url());
    let r = curl(&["-sS", "-w", " %{http_code}", "-d", "x", &echo_url]).await;
    assert!(r.stdout.ends_with(" 200"), "{}: {}", r.stdout, r.stderr);
    let posts = echo.state.posts.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(posts, 1, "the POST reached the upstream once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_shared_h2_upstream_connection_is_closed_after_the_idle_timeout() {
    // Parked HTTP/1.1 connections are dropped after 30 s idle; the shared h2 one is too, else
    // forward mode would keep one per h2 host forever. (About 33 s.)
    let server = TlsServer::builder().http2(true).start().await.unwrap();
    let upstream = format!("https://localhost:{}", server.addr().port());
    let proxy = Proxy::start(&["--upstream", &upstream, "--workers", "1"]).await;
    let url = format!("{}/h2", proxy.url());
    let code = |url: String| async move {
        curl(&["-sS", "-o", "/dev/null", "-w", "%{http_code}", &url])
            .await
            .stdout
    };
    assert_eq!(code(url.clone()).await, "200");
    assert_eq!(code(url.clone()).await, "200");
    assert_eq!(
        server.handshakes(),
        1,
        "the h2 connection is shared while in use"
    );
    tokio::time::sleep(Duration::from_secs(33)).await;
    assert_eq!(code(url).await, "200");
    assert_eq!(
        server.handshakes(),
        2,
        "a new h2 connection after 33 s idle"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_whose_upstream_hangs_up_unanswered_is_502_says_so_and_is_not_sent_again() {
    let echo = Echo::start().await;
    let upstream = format!("https://localhost:{}", echo.addr.port());
    let proxy = Proxy::start(&["--upstream", &upstream]).await;
    let url = format!("{}/drop", proxy.url());
    // The first request leaves a parked upstream connection; the POST takes it up (a reused
    // connection, where a request handed back unsent would go out again) and the upstream
    // hangs up after reading it: sent, so never sent again.
    let r = curl(&[
        "-sS",
        "-w",
        " %{http_code}",
        &format!("{}/echo", proxy.url()),
    ])
    .await;
    assert!(r.stdout.ends_with(" 200"), "{}", r.stderr);
    let r = curl(&["-sS", "-w", " %{http_code}", "-d", "pay=1", &url]).await;
    assert!(r.stdout.ends_with(" 502"), "{}: {}", r.stdout, r.stderr);
    let v = json(r.stdout.trim_end_matches(" 502"));
    assert_eq!(v["error"]["kind"], "http", "{v}");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("after the request was sent") && msg.contains("did not send it again"),
        "{msg}"
    );
    let seen = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(seen(&echo.state.posts), 1, "the POST went out once");
}

/// An app that sends `GET path` to the proxy, reads at most the response's first line (with a
/// 4 KiB receive buffer, so a long body backs up into the proxy) for up to `secs`, and hangs
/// up. Prints the line it read (empty if none).
async fn hang_up(proxy: &Proxy, path: &str, secs: f64) -> String {
    let code = format!(
        "import socket, sys, urllib.parse\n\
         u = urllib.parse.urlsplit(sys.argv[1])\n\
         s = socket.socket()\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)\n\
         s.connect((u.hostname, u.port))\n\
         s.sendall(b'GET {path} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\n\
         s.settimeout({secs})\n\
         try:\n    head = s.recv(64)\nexcept socket.timeout:\n    head = b''\n\
         s.close()\n\
         print(head.split(b'\\r\\n')[0].decode())"
    );
    let r = run("python3", &["-c", &code, &proxy.url()], &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout.trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_hanging_up_mid_request_keeps_the_upstream_connection_within_the_drain_bounds() {
    // hyper closes an upstream connection whose response nobody reads; the proxy reads the
    // rest of the exchange itself (never sending the request again) and parks the
    // connection, unless the body is longer than it will drain (256 KiB).
    let echo = Echo::start().await;
    let upstream = format!("https://localhost:{}", echo.addr.port());
    let proxy = Proxy::start(&["--upstream", &upstream, "--workers", "1"]).await;
    let seen = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    // (path, how long the app waits, its first line, upstream connections after the next
    // request)
    let rows = [
        // Hung up while the response was still coming.
        ("/slow/400", 0.1, "", 1),
        // Hung up after the head, with most of the body unread.
        ("/download/240000", 2.0, "HTTP/1.1 200 OK", 1),
        // The same past the drain limit: that connection is closed.
        ("/download/4000000", 2.0, "HTTP/1.1 200 OK", 2),
    ];
    for (i, (path, secs, line, conns)) in rows.into_iter().enumerate() {
        assert_eq!(hang_up(&proxy, path, secs).await, line, "{path}");
        if line.is_empty() {
            // Unanswered: its access log line says the app closed it (nginx's 499).
            let logged = wait_line(
                &proxy.stdout,
                &format!("GET localhost:{} 499", echo.addr.port()),
            )
            .await;
            assert!(logged.is_some(), "{:?}", proxy.stdout.lock().unwrap());
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
        let r = curl(&[
            "-sS",
            "-w",
            " %{http_code}",
            &format!("{}/echo", proxy.url()),
        ])
        .await;
        assert!(r.stdout.ends_with(" 200"), "{}: {}", r.stdout, r.stderr);
        assert_eq!(seen(&echo.state.connections), conns, "{path}");
        let requests = 2 * (i as u64 + 1);
        assert_eq!(
            seen(&echo.state.requests),
            requests,
            "{path}: each sent once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_framed_by_chunks_and_a_shorter_length_reaches_the_app_whole_on_a_kept_connection() {
    // RFC 9112 section 6.3: Transfer-Encoding frames the message, and an intermediary removes
    // the Content-Length before passing it on. Passed on, the app was told 5 bytes of 15, and
    // the rest of the body was dropped while the app connection went on (its next request
    // then waited on an upstream connection nobody read).
    let raw = RawUpstream::start(|path| match path {
        "/cl-te" => {
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n\
                      5\r\nAAAAA\r\n5\r\nBBBBB\r\n5\r\nCCCCC\r\n0\r\n\r\n"
        }
        _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    })
    .await;
    let upstream = format!("https://localhost:{}", raw.port);
    let proxy = Proxy::start(&["--upstream", &upstream, "--workers", "1"]).await;
    let url = format!("{}/cl-te", proxy.url());
    let code = "import time\n\
                s = requests.Session()\n\
                r1 = s.get(url)\n\
                t = time.monotonic(); r2 = s.get(url.replace('/cl-te', '/ok')); d = time.monotonic() - t\n\
                print(json.dumps([r1.status_code, r1.text, r1.headers.get('content-length'), r2.text, d]))";
    let out = python(code, &proxy.url(), &url).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = json(&out.stdout);
    assert_eq!(v[0], 200, "{v}");
    assert_eq!(v[1], "AAAAABBBBBCCCCC", "{v}");
    assert_eq!(v[2], Value::Null, "no Content-Length passed on: {v}");
    assert_eq!(v[3], "ok", "{v}");
    assert!(v[4].as_f64().unwrap() < 2.0, "the next request waited: {v}");
    assert_eq!(
        raw.connections.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "one upstream connection for both"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cut_by_the_shutdown_deadline_is_logged_444_shutdown_not_499() {
    // The upstream answers after 45 s; SIGTERM waits 30 s for requests in flight, then the
    // proxy drops them: its doing, not the app's (about 31 s).
    let echo = Echo::start().await;
    let upstream = format!("https://localhost:{}", echo.addr.port());
    let mut proxy = Proxy::start(&["--upstream", &upstream, "--workers", "1"]).await;
    let url = format!("{}/slow/45000", proxy.url());
    let waiting = tokio::spawn(async move { curl(&["-sS", "-m", "60", &url]).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.signal("TERM");
    assert!(proxy.exit_code(40).await.is_some(), "the proxy exits");
    let r = waiting.await.unwrap();
    assert_ne!(r.code, 0, "curl got no answer: {}", r.stdout);
    let out = proxy.stdout.lock().unwrap().clone();
    let cut = out.iter().find(|l| l.contains("GET localhost:"));
    let cut = cut.unwrap_or_else(|| panic!("a line for the request: {out:?}"));
    assert!(
        cut.contains(" 444 ") && cut.contains("error=shutdown"),
        "{cut}"
    );
}
