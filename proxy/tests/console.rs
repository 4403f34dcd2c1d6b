//! The operator's console on the admin listener: the status page in a real browser (headless
//! Chromium driven by `console_browser.py`), `POST /decisions/forget` and its origin rule, and a
//! forget reaching a second proxy through Redis. Each proxy first learns a legacy gateway (the
//! walk down to TLS 1.0), so forgetting shows on the wire: the next request walks again.

mod proxy_support;

use std::time::{Duration, Instant};

use proxy_support::*;
use tls_fallback::testkit::{Emulator, RedisServer};

/// The proxy's flags for the legacy gateway on `localhost`.
const LEGACY: [&str; 4] = ["--allow", "localhost", "--allow-legacy", "localhost"];

/// One request through the proxy to the gateway: how many handshakes it took.
async fn handshakes(proxy: &Proxy, em: &Emulator) -> String {
    let url = format!("http://localhost:{}/pay", em.addr().port());
    let (status, headers, body) = curl_via(proxy, &[], &url).await;
    assert_eq!(status, 200, "{body}");
    headers["x-tls-fallback-handshakes"].clone()
}

/// Whether the proxy's `/decisions` lists `host` (on any layer).
async fn listed(proxy: &Proxy, host: &str) -> bool {
    let (status, body) = proxy.admin_get("/decisions").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let on = |layer: &serde_json::Value| {
        (layer["hosts"].as_array().into_iter().flatten()).any(|h| h["host"] == host)
    };
    on(&v) || (v["host_layers"].as_object().into_iter().flatten()).any(|(_, layer)| on(layer))
}

/// The `source` of `host`'s decision on the proxy's shared layer.
async fn source(proxy: &Proxy, host: &str) -> String {
    let (_, body) = proxy.admin_get("/decisions").await;
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let hosts = v["hosts"].as_array().cloned().unwrap_or_default();
    let h = hosts.iter().find(|h| h["host"] == host);
    h.and_then(|h| h["source"].as_str())
        .unwrap_or("none")
        .to_string()
}

/// `curl -X METHOD` on the admin listener with these headers: (status, body).
async fn admin(proxy: &Proxy, method: &str, path: &str, headers: &[&str]) -> (u16, String) {
    let url = format!("http://{}{path}", proxy.admin);
    let mut args = vec![
        "-sS",
        "--max-time",
        "10",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
    ];
    for h in headers {
        args.extend(["-H", h]);
    }
    args.push(&url);
    let r = curl(&args).await;
    let (body, code) = r.stdout.rsplit_once('\n').expect("curl's status line");
    (code.parse().unwrap_or(0), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_is_refused_to_other_origins_and_done_for_the_page_and_for_scripts() {
    let (_server, em) = legacy_gateway().await;
    let proxy = Proxy::start(&LEGACY).await;
    let host = format!("localhost:{}", em.addr().port());
    let forget = format!("/decisions/forget?host={host}");
    assert_eq!(
        handshakes(&proxy, &em).await,
        "6",
        "the first request walks"
    );
    assert!(listed(&proxy, &host).await);

    // Another site's page, through the operator's browser: 403, and the decision stays.
    for refused in [
        vec!["Origin: http://evil.example"],
        vec![&*format!("Origin: http://localhost:{}", proxy.addr.port())],
        vec!["Origin: null"],
        vec!["Sec-Fetch-Site: cross-site"],
        vec![
            "Sec-Fetch-Site: same-site",
            &*format!("Origin: http://{}", proxy.admin),
        ],
    ] {
        let (status, body) = admin(&proxy, "POST", &forget, &refused).await;
        assert_eq!(status, 403, "{refused:?}: {body}");
        assert!(listed(&proxy, &host).await, "{refused:?} changed nothing");
    }
    em.clear();
    handshakes(&proxy, &em).await;
    assert!(
        ladder_seen(&em).len() <= 1,
        "still learned: a parked connection or one hello, not a walk: {:?}",
        ladder_seen(&em)
    );

    // The page itself (its origin, as the browser sends it): forgotten, the next request walks.
    let own = format!("Origin: http://{}", proxy.admin);
    let (status, body) = admin(
        &proxy,
        "POST",
        &forget,
        &[&own, "Sec-Fetch-Site: same-origin"],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!("\"forgotten\":\"{host}\"")),
        "{body}"
    );
    assert!(!listed(&proxy, &host).await, "gone from /decisions");
    em.clear();
    assert_eq!(handshakes(&proxy, &em).await, "6", "walks again");
    assert_eq!(ladder_seen(&em), LEGACY_WALK, "from the top, SCSV below it");

    // localhost:PORT is the same listener on loopback.
    let localhost = format!("Origin: http://localhost:{}", proxy.admin.port());
    let (status, body) = admin(&proxy, "POST", &forget, &[&localhost]).await;
    assert_eq!(status, 200, "{body}");
    assert!(!listed(&proxy, &host).await);

    // curl, a script: no Origin, works.
    assert_eq!(handshakes(&proxy, &em).await, "6");
    let (status, body) = admin(&proxy, "POST", &forget, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(!listed(&proxy, &host).await);

    // Percent-encoded, as the page sends it.
    assert_eq!(handshakes(&proxy, &em).await, "6");
    let encoded = format!("/decisions/forget?host=localhost%3A{}", em.addr().port());
    assert_eq!(admin(&proxy, "POST", &encoded, &[]).await.0, 200);
    assert!(!listed(&proxy, &host).await);

    // The method and the parameter.
    assert_eq!(admin(&proxy, "GET", &forget, &[]).await.0, 405);
    assert_eq!(admin(&proxy, "POST", "/decisions", &[]).await.0, 405);
    assert_eq!(admin(&proxy, "POST", "/", &[]).await.0, 405);
    for bad in [
        "",
        "?host=",
        "?host=localhost",
        "?host=localhost:0",
        "?host=a%20b:443",
    ] {
        let (status, body) = admin(&proxy, "POST", &format!("/decisions/forget{bad}"), &[]).await;
        assert_eq!(status, 400, "{bad:?}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_html_under_a_policy_that_allows_nothing_from_elsewhere() {
    let proxy = Proxy::start(&LEGACY).await;
    let url = format!("http://{}/", proxy.admin);
    let r = curl(&["-sS", "-D", "/dev/stderr", &url]).await;
    let head = r.stderr.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(
        head.contains("content-security-policy: default-src 'none';"),
        "{head}"
    );
    assert!(head.contains("connect-src 'self'"), "{head}");
    assert!(r.stdout.starts_with("<!doctype html>"), "{}", r.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forget_on_one_proxy_reaches_another_sharing_redis() {
    let redis = RedisServer::start().expect("redis-server");
    let (_server, em) = legacy_gateway().await;
    let url = redis.url();
    let mut args = LEGACY.to_vec();
    args.extend(["--redis", &url]);
    let (a, b) = (Proxy::start(&args).await, Proxy::start(&args).await);
    let host = format!("localhost:{}", em.addr().port());
    assert_eq!(handshakes(&a, &em).await, "6", "A walks");
    // B hears of it (a request to B would start on A's rung: tests/redis_proxy.rs), and
    // makes no connection of its own, which would outlive the forget in B's pool.
    let started = Instant::now();
    while !listed(&b, &host).await {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "B never heard of A's decision"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(source(&a, &host).await, "walk", "A learned it");
    assert_eq!(source(&b, &host).await, "redis", "B got it from A");

    let (status, body) = admin(&a, "POST", &format!("/decisions/forget?host={host}"), &[]).await;
    assert_eq!(status, 200, "{body}");
    let started = Instant::now();
    while listed(&b, &host).await {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "B still holds the decision 3 s after A forgot it"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    em.clear();
    assert_eq!(
        handshakes(&b, &em).await,
        "6",
        "B walks again: nothing left in Redis either"
    );
    assert_eq!(ladder_seen(&em), LEGACY_WALK);
}

/// The browser run's report (see `console_browser.py`).
fn browse(admin: std::net::SocketAddr, host: &str, shot: &std::path::Path) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console_browser.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(format!("http://{admin}/"))
        .arg(host)
        .arg(shot)
        .output()
        .expect("python3 runs (.ci/run installs it)");
    assert!(
        out.status.success(),
        "the browser run failed (Chromium is required: apt-get install chromium): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_the_page_shows_the_legacy_host_fits_a_phone_loads_nothing_else_and_forgets() {
    let (_server, em) = legacy_gateway().await;
    let proxy = Proxy::start(&LEGACY).await;
    let host = format!("localhost:{}", em.addr().port());
    assert_eq!(handshakes(&proxy, &em).await, "6");
    let shot = proxy.dir.path().join("status-page.png");
    let admin = proxy.admin;
    let (h, s) = (host.clone(), shot.clone());
    let report = tokio::task::spawn_blocking(move || browse(admin, &h, &s))
        .await
        .expect("the browser run");
    let text = |k: &str| report[k].as_str().unwrap_or_default().to_string();

    // The host, its rung and version, marked legacy.
    assert_eq!(report["found"], true, "no card for {host}: {report}");
    let card = text("card_text");
    for want in [
        &*host,
        "tls10-legacy",
        "TLS 1.0",
        "legacy",
        "confirmed",
        "this instance",
    ] {
        assert!(card.contains(want), "{want:?} not in the card: {card}");
    }
    assert_eq!(report["card_legacy"], true, "the legacy card stands out");
    let page = text("page_text");
    assert!(page.contains("1 on legacy TLS"), "{page}");
    for counter in [
        "handshakes",
        "Requests by status",
        "Fallbacks by reason",
        "Failures by kind",
    ] {
        assert!(
            page.contains(counter),
            "{counter:?} not on the page: {page}"
        );
    }

    // Nothing from elsewhere: every request went to the admin listener, and the log would
    // have caught one that did not (the script's probe, a fetch to 192.0.2.1, is in it).
    let requests: Vec<&str> = (report["requests"].as_array().into_iter().flatten())
        .filter_map(|u| u.as_str())
        .collect();
    let own = format!("http://{admin}/");
    assert!(
        requests.iter().any(|u| u.ends_with("/decisions"))
            && requests.iter().any(|u| u.ends_with("/metrics")),
        "the page's own requests are logged: {requests:?}"
    );
    assert!(requests.iter().all(|u| u.starts_with(&own)), "{requests:?}");
    assert_eq!(
        report["probe_seen"], true,
        "the log sees an outside request: {report}"
    );
    let console = report["console"].to_string();
    assert!(!console.contains("Content Security Policy"), "{console}");

    // A phone: no horizontal scroll at 390 px.
    let w = &report["width_390"];
    assert_eq!(w["inner"], 390, "{w}");
    assert!(w["scroll"].as_u64().unwrap_or(u64::MAX) <= 390, "{w}");
    assert!(w["body_scroll"].as_u64().unwrap_or(u64::MAX) <= 390, "{w}");

    // The button: the card goes, /decisions forgets, the next request walks from the top.
    assert_eq!(report["gone"], true, "{report}");
    assert!(!listed(&proxy, &host).await);
    em.clear();
    assert_eq!(handshakes(&proxy, &em).await, "6");
    assert_eq!(ladder_seen(&em), LEGACY_WALK);

    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    if let Ok(keep) = std::env::var("STATUS_PAGE_SCREENSHOT") {
        std::fs::copy(&shot, &keep).expect("copy the screenshot");
        let phone = proxy.dir.path().join("status-page-390.png");
        std::fs::copy(phone, keep.replace(".png", "-390.png")).expect("copy the phone's");
    }
}
