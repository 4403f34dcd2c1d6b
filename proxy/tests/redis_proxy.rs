//! Two `tls-fallback proxy` processes sharing one `redis-server` (`--redis URL`): what one
//! learns, the other uses for its first request (one hello).

mod proxy_support;

use std::time::{Duration, Instant};

use proxy_support::{curl_via, free_port, Proxy};
use tls_fallback::metric_names::REDIS_CONNECTED;
use tls_fallback::testkit::{Emulator, RedisServer, Rule, TlsServer};
use tls_fallback::TlsVersion::*;

/// The value of `tls_fallback_redis_connected` on the proxy's `/metrics`, if it is there.
async fn connected_gauge(proxy: &Proxy) -> Option<f64> {
    let (status, metrics) = proxy.admin_get("/metrics").await;
    assert_eq!(status, 200, "{metrics}");
    let line = metrics
        .lines()
        .find(|l| l.split(' ').next() == Some(REDIS_CONNECTED))?;
    line.split(' ').nth(1)?.parse().ok()
}

/// Polls the gauge every 100 ms until it reads `want`, for at most `within`; how long it took.
async fn gauge_reaches(proxy: &Proxy, want: f64, within: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        let got = connected_gauge(proxy).await;
        if got == Some(want) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > within {
            return Err(format!(
                "{REDIS_CONNECTED} is {got:?}, not {want}, after {within:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_connected_gauge_follows_the_link_down_and_up() {
    let mut redis = RedisServer::start().expect("redis-server");
    let url = redis.url();
    let proxy = Proxy::start(&["--allow", "localhost", "--redis", &url]).await;
    gauge_reaches(&proxy, 1.0, Duration::from_secs(5))
        .await
        .unwrap();
    redis.kill();
    // The heartbeat (every 500 ms, one second to answer) notices within about 1.5 s.
    let took = gauge_reaches(&proxy, 0.0, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(took < Duration::from_secs(3), "down noticed after {took:?}");
    redis.restart().expect("redis-server again");
    gauge_reaches(&proxy, 1.0, Duration::from_secs(5))
        .await
        .unwrap();

    // Redis down from the start: the gauge is there (from the next heartbeat), at 0.
    let nowhere = format!("redis://127.0.0.1:{}", free_port());
    let alone = Proxy::start(&["--allow", "localhost", "--redis", &nowhere]).await;
    gauge_reaches(&alone, 0.0, Duration::from_secs(5))
        .await
        .unwrap();
    // And without Redis, the gauge says nothing.
    let plain = Proxy::start(&["--allow", "localhost"]).await;
    assert_eq!(connected_gauge(&plain).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_sharing_redis_learn_a_gateway_once() {
    let redis = RedisServer::start().expect("redis-server");
    let server = TlsServer::only(Tls1_0).await.expect("server");
    let em = Emulator::start(server.addr(), vec![Rule::close_above(Tls1_0)])
        .await
        .expect("emulator");
    let url = redis.url();
    let args = [
        "--allow",
        "localhost",
        "--allow-legacy",
        "localhost",
        "--redis",
        &url,
    ];
    let (a, b) = (Proxy::start(&args).await, Proxy::start(&args).await);
    let target = format!("http://localhost:{}/pay", em.addr().port());
    let (status, headers, body) = curl_via(&a, &[], &target).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-tls-fallback-handshakes"], "6", "A walks");
    em.clear();
    let (status, headers, body) = curl_via(&b, &[], &target).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        headers["x-tls-fallback-handshakes"], "1",
        "B starts on A's rung"
    );
    assert_eq!(headers["x-tls-fallback-version"], "1.0");
    let seen: Vec<_> = em
        .hellos()
        .iter()
        .map(|h| (h.offered(), h.scsv()))
        .collect();
    assert_eq!(seen, [(Some(Tls1_0), true)], "one hello, with SCSV");
}
