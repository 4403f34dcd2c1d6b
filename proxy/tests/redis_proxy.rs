//! Two `tls-fallback proxy` processes sharing one `redis-server` (`--redis URL`): what one
//! learns, the other uses for its first request (one hello).

mod proxy_support;

use proxy_support::{curl_via, Proxy};
use tls_fallback::testkit::{Emulator, RedisServer, Rule, TlsServer};
use tls_fallback::TlsVersion::*;

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
