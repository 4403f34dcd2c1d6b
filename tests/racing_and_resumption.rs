//! Racing a silent rung instead of waiting for the full timeout, and TLS session resumption
//! keyed by host and rung.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tls_fallback::testkit::{Emulator, Rule, TlsServer};
use tls_fallback::TlsVersion::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_rung_costs_the_stall_time_not_the_handshake_timeout() {
    let server = TlsServer::only(Tls1_2).await.unwrap();
    let em = Emulator::start(server.addr(), vec![Rule::hang_above(Tls1_2)])
        .await
        .unwrap();
    let stall = Duration::from_millis(300);
    let layer = builder()
        .handshake_timeout(Duration::from_secs(10))
        .stall_timeout(Some(stall))
        .build()
        .unwrap();
    let started = Instant::now();
    let (res, _) = get(&client(&layer), &em.url()).await.unwrap();
    let took = started.elapsed();
    let info = tls(&res);
    assert_eq!(info.version, Tls1_2);
    let outcomes: Vec<String> = info.attempts.iter().map(|a| a.outcome.short()).collect();
    assert_eq!(outcomes, ["stalled", "stalled", "ok"]);
    // At the stall, the compact TLS 1.3 hello and the TLS 1.2 hello race the silent one
    // together (a reshaped hello of the same version is likely silenced the same way).
    assert_tls13_silent_then_tls12(&em);
    // One stall plus one handshake, far from the 10 s timeout (bound generous for a busy
    // machine).
    assert!(took >= stall, "{took:?}");
    assert!(took < stall * 2 + Duration::from_secs(3), "{took:?}");
    let stats = layer.stats();
    assert_eq!(stats.races, 1);
    assert_eq!(stats.fallbacks.get("stalled"), Some(&1));
    // Learned like any fallback: the next connection goes straight to TLS 1.2.
    em.clear();
    let (res, _) = get(&common::client(&layer), &em.url()).await.unwrap();
    assert_eq!(tls(&res).handshakes(), 1);
    assert_eq!(ladder_seen(&em), [(Some(Tls1_2), true)]);
}

/// An emulator that holds every hello for 1 s before passing it to `server`, and a layer that
/// races a rung silent for 400 ms.
async fn delayed_by_a_second(server: &TlsServer) -> (Emulator, tls_fallback::FallbackLayer) {
    let em = Emulator::start(
        server.addr(),
        vec![Rule::delay(Duration::from_millis(1000))],
    )
    .await
    .unwrap();
    let layer = builder()
        .stall_timeout(Some(Duration::from_millis(400)))
        .build()
        .unwrap();
    (em, layer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_healthy_server_still_wins_on_its_best_version() {
    let server = TlsServer::modern().await.unwrap();
    // Every hello waits 1 s before reaching the server: the top rung is silent past the
    // 400 ms stall, so the next rungs race it; the TLS 1.2 one gets inappropriate_fallback
    // (SCSV), and the connector keeps waiting for the top rung, which answers first.
    let (em, layer) = delayed_by_a_second(&server).await;
    let (res, _) = get(&client(&layer), &em.url()).await.unwrap();
    let info = tls(&res);
    assert_eq!(info.version, Tls1_3);
    assert_eq!(&*info.profile, "modern");
    assert!(layer.stats().hosts.is_empty(), "nothing learned");
    assert_eq!(
        layer.stats().downgrades,
        0,
        "a racer's refusal is not a downgrade"
    );
    let seen = ladder_seen(&em);
    assert_eq!(seen[0], (Some(Tls1_3), false));
    assert!(seen[1..].iter().all(|(_, scsv)| *scsv), "{seen:?}");
    // Remembered as healthy (not as a provisional reshape because of the abandoned compact
    // racer below it): the next connection is a cache hit on the top rung.
    let hits = layer.stats().cache_hits;
    em.clear();
    let (res, _) = get(&client(&layer), &em.url()).await.unwrap();
    assert_eq!(&*tls(&res).profile, "modern");
    assert_eq!(layer.stats().cache_hits, hits + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_racing_a_hang_costs_the_full_timeout() {
    let server = TlsServer::only(Tls1_2).await.unwrap();
    let em = Emulator::start(server.addr(), vec![Rule::hang_above(Tls1_2)])
        .await
        .unwrap();
    let timeout = Duration::from_millis(1200);
    let layer = builder()
        .handshake_timeout(timeout)
        .stall_timeout(None)
        .build()
        .unwrap();
    let started = Instant::now();
    let (res, _) = get(&client(&layer), &em.url()).await.unwrap();
    assert!(started.elapsed() >= timeout);
    let outcomes: Vec<String> = tls(&res)
        .attempts
        .iter()
        .map(|a| a.outcome.short())
        .collect();
    // After the timeout, the compact TLS 1.3 rung and the TLS 1.2 rung start together.
    assert_eq!(outcomes, ["timeout", "stalled", "ok"]);
    assert_tls13_silent_then_tls12(&em);
    assert_eq!(layer.stats().races, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeat_connections_resume_their_tls_session() {
    let server = TlsServer::modern().await.unwrap();
    let layer = builder().build().unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(tower_layer::Layer::layer(
            &layer,
            tls_fallback::FallbackLayer::http_connector(),
        ));
    let (first, _) = get(&client, &server.url()).await.unwrap();
    assert!(!tls(&first).resumed);
    let (second, _) = get(&client, &server.url()).await.unwrap();
    assert!(tls(&second).resumed, "second connection resumed");
    assert_eq!(layer.stats().resumed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_session_resumes_on_its_rung_and_is_never_offered_on_a_modern_one() {
    let legacy = TlsServer::only(Tls1_0).await.unwrap();
    let modern = TlsServer::modern().await.unwrap();
    let em = Emulator::start(legacy.addr(), vec![Rule::close_above(Tls1_0)])
        .await
        .unwrap();
    let layer = builder().allow_legacy("localhost").build().unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(tower_layer::Layer::layer(
            &layer,
            tls_fallback::FallbackLayer::http_connector(),
        ));
    get(&client, &em.url()).await.unwrap();
    let (again, _) = get(&client, &em.url()).await.unwrap();
    assert!(tls(&again).resumed, "the learned TLS 1.0 rung resumes");
    assert_eq!(tls(&again).version, Tls1_0);
    // The gateway is replaced by a modern one: the TLS 1.0 hello (with its session) is refused
    // as a fallback and the walk restarts at the top, which must not offer that session.
    em.set_backend(modern.addr());
    em.set_rules(vec![]);
    em.clear();
    let (fixed, _) = get(&client, &em.url()).await.unwrap();
    assert_eq!(tls(&fixed).version, Tls1_3);
    assert!(!tls(&fixed).resumed);
    let seen = em.hellos();
    let modern_hello = seen.last().and_then(|h| h.hello.clone()).unwrap();
    assert_eq!(modern_hello.offered_max, 0x0304);
    // 41 = pre_shared_key: a TLS 1.3 resumption offer.
    assert!(
        !modern_hello.extensions.contains(&41),
        "{:?}",
        modern_hello.extensions
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_racer_refused_as_inappropriate_fallback_makes_a_later_failure_of_the_higher_rungs_a_downgrade(
) {
    // A TLS 1.3 server whose every TLS 1.3 hello is swallowed (an attacker, or a broken box):
    // the TLS 1.2 racer gets inappropriate_fallback while the TLS 1.3 rungs are still silent.
    // When they time out, the walk must stop there, not carry on to lower rungs.
    let server = TlsServer::modern().await.unwrap();
    let em = Emulator::start(server.addr(), vec![Rule::hang_above(Tls1_2)])
        .await
        .unwrap();
    let layer = builder()
        .allow_legacy("*")
        .handshake_timeout(Duration::from_millis(1000))
        .stall_timeout(Some(Duration::from_millis(200)))
        .build()
        .unwrap();
    let err = tls_error(&get(&client(&layer), &em.url()).await.unwrap_err());
    assert_eq!(
        err.kind(),
        tls_fallback::ErrorKind::DowngradeDetected,
        "{err}"
    );
    let mut outcomes: Vec<(String, String)> = err
        .attempts()
        .iter()
        .map(|a| (a.profile.to_string(), a.outcome.short()))
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            ("modern".into(), "timeout".into()),
            ("modern-compact".into(), "timeout".into()),
            ("tls12".into(), "alert:86".into()),
        ]
    );
    // The two racers start together, so they may reach the emulator in either order.
    let mut seen = ladder_seen(&em);
    seen[1..].sort_by_key(|(v, _)| std::cmp::Reverse(*v));
    assert_eq!(
        seen,
        [
            (Some(Tls1_3), false),
            (Some(Tls1_3), true),
            (Some(Tls1_2), true)
        ],
        "no hello after the refused one"
    );
    let stats = layer.stats();
    assert_eq!(stats.downgrades, 1);
    assert!(stats.hosts.is_empty());
}

/// A TCP connector that waits before connecting and refuses the calls `refuse` picks (by
/// call number, from 0); `calls` counts them.
#[derive(Clone)]
struct SlowConnect {
    inner: hyper_util::client::legacy::connect::HttpConnector,
    delay: Duration,
    refuse: fn(usize) -> bool,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<http::Uri> for SlowConnect {
    type Response = hyper_util::rt::TokioIo<tokio::net::TcpStream>;
    type Error = BoxError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, BoxError>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        use std::sync::atomic::Ordering::SeqCst;
        let mut inner = self.inner.clone();
        let delay = self.delay;
        let n = self.calls.fetch_add(1, SeqCst);
        let refused = (self.refuse)(n);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            if refused {
                return Err("connection refused (by the test)".into());
            }
            inner.call(uri).await.map_err(Into::into)
        })
    }
}

type SlowClient = hyper_util::client::legacy::Client<
    tls_fallback::FallbackConnector<SlowConnect>,
    http_body_util::Full<hyper::body::Bytes>,
>;

fn slow_client(
    layer: &tls_fallback::FallbackLayer,
    delay: Duration,
    refuse: fn(usize) -> bool,
) -> (SlowClient, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let calls = std::sync::Arc::default();
    let tcp = SlowConnect {
        inner: tls_fallback::FallbackLayer::http_connector(),
        delay,
        refuse,
        calls: std::sync::Arc::clone(&calls),
    };
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(tower_layer::Layer::layer(layer, tcp));
    (client, calls)
}

async fn slow_get(
    client: &SlowClient,
    url: &str,
) -> Result<hyper::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
    let req = hyper::Request::get(url)
        .body(http_body_util::Full::default())
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .expect("bounded")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_tcp_connect_does_not_count_against_the_stall_time() {
    // The stall clock starts when the hello is sent: a connect slower than the stall time to
    // a healthy server is not a silent rung, and nothing is raced.
    let server = TlsServer::modern().await.unwrap();
    let layer = builder()
        .stall_timeout(Some(Duration::from_millis(500)))
        .build()
        .unwrap();
    let (client, _) = slow_client(&layer, Duration::from_millis(900), |_| false);
    let res = slow_get(&client, &server.url()).await.unwrap();
    let info = res.extensions().get::<tls_fallback::TlsInfo>().unwrap();
    assert_eq!(&*info.profile, "modern");
    assert_eq!(info.handshakes(), 1);
    assert_eq!(layer.stats().races, 0);
    assert_eq!(server.handshakes(), 1);
}

/// Ten GETs of `url` started together, one task each.
fn ten_at_once(
    client: &SlowClient,
    url: &str,
) -> Vec<tokio::task::JoinHandle<Result<(), hyper_util::client::legacy::Error>>> {
    (0..10)
        .map(|_| {
            let client = client.clone();
            let url = url.to_string();
            tokio::spawn(async move { slow_get(&client, &url).await.map(|_| ()) })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_do_not_inherit_the_leaders_tcp_connect_failure() {
    let server = TlsServer::modern().await.unwrap();
    let layer = builder().build().unwrap();
    // Every connect takes 200 ms, so all ten requests join the first one's walk; that first
    // connect is refused.
    let (client, calls) = slow_client(&layer, Duration::from_millis(200), |n| n == 0);
    let mut failed = Vec::new();
    for t in ten_at_once(&client, &server.url()) {
        if let Err(e) = t.await.unwrap() {
            failed.push(tls_error(&e).kind());
        }
    }
    assert_eq!(failed, [tls_fallback::ErrorKind::Connect]);
    assert!(layer.stats().single_flight_waits > 0);
    assert_eq!(server.handshakes(), 9);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_share_a_second_tcp_connect_failure_instead_of_queueing_behind_more_leaders() {
    let server = TlsServer::modern().await.unwrap();
    let layer = builder().build().unwrap();
    // Every connect is refused after 200 ms. The waiters retry once behind a new leader, then
    // take its failure: two connects in all, not one leader after another.
    let (client, calls) = slow_client(&layer, Duration::from_millis(200), |_| true);
    let started = Instant::now();
    for t in ten_at_once(&client, &server.url()) {
        let err = t.await.unwrap().expect_err("every connect is refused");
        assert_eq!(tls_error(&err).kind(), tls_fallback::ErrorKind::Connect);
    }
    let calls = calls.load(std::sync::atomic::Ordering::SeqCst);
    // Two when every request joined the first walk; a request the runtime started late may
    // lead one more round of its own.
    assert!(calls <= 3, "{calls} TCP connects");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.handshakes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_racer_that_cannot_connect_does_not_end_the_walk() {
    let server = TlsServer::modern().await.unwrap();
    // The server answers only after 1 s: the top rung looks silent at the 400 ms stall, its
    // racers are launched, and their TCP connects are refused. The top rung still wins.
    let (em, layer) = delayed_by_a_second(&server).await;
    let (client, calls) = slow_client(&layer, Duration::ZERO, |n| n > 0);
    let res = slow_get(&client, &em.url()).await.unwrap();
    let info = res.extensions().get::<tls_fallback::TlsInfo>().unwrap();
    assert_eq!(info.version, Tls1_3);
    assert_eq!(&*info.profile, "modern");
    let outcomes: Vec<String> = info.attempts.iter().map(|a| a.outcome.short()).collect();
    assert_eq!(
        outcomes.last().map(String::as_str),
        Some("ok"),
        "{outcomes:?}"
    );
    assert!(
        outcomes[..outcomes.len() - 1]
            .iter()
            .all(|o| o == "connect"),
        "{outcomes:?}"
    );
    assert!(
        calls.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "a racer was launched"
    );
    assert_eq!(
        em.hellos().len(),
        1,
        "only the top rung's hello reached the box"
    );
    assert!(layer.stats().hosts.is_empty(), "nothing learned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_only_a_racer_could_not_connect_the_error_is_the_connect_failure() {
    let server = TlsServer::only(Tls1_2).await.unwrap();
    let em = Emulator::start(server.addr(), vec![Rule::hang_above(Tls1_2)])
        .await
        .unwrap();
    let layer = builder()
        .handshake_timeout(Duration::from_millis(1000))
        .stall_timeout(Some(Duration::from_millis(200)))
        .build()
        .unwrap();
    let (client, _) = slow_client(&layer, Duration::ZERO, |n| n > 0);
    let err = slow_get(&client, &em.url()).await.unwrap_err();
    let err = tls_error(&err);
    assert_eq!(err.kind(), tls_fallback::ErrorKind::Connect, "{err}");
    // The message says what kind of problem it is, what to check, and every attempt.
    let text = err.to_string();
    assert!(
        text.contains("not a TLS problem: check the address"),
        "{text}"
    );
    assert!(text.contains("modern"), "{text}");
    let outcomes: Vec<String> = err.attempts().iter().map(|a| a.outcome.short()).collect();
    assert!(outcomes.contains(&"timeout".to_string()), "{outcomes:?}");
    assert!(outcomes.contains(&"connect".to_string()), "{outcomes:?}");
    assert!(
        layer.stats().hosts.is_empty(),
        "a connect failure teaches nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_racer_that_could_not_connect_is_retried_before_anything_below_it_is_called_a_downgrade()
{
    // At the stall, the compact TLS 1.3 rung and the TLS 1.2 rung race the silent top rung.
    compact_refused_once_then_retried(Some(Duration::from_millis(300))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rung_started_with_its_next_version_partner_is_retried_if_it_could_not_connect() {
    // Without racing: after the top rung times out, the compact TLS 1.3 rung and the TLS 1.2
    // rung start together (the silent-rung pair), the first from the loop, the second beside it.
    compact_refused_once_then_retried(None).await;
}

/// A TLS 1.3 server behind an F5-style box (it hangs on 256..511-byte hellos), and a ladder
/// whose top rung does not pad: the top rung hangs, and the compact TLS 1.3 rung and the TLS
/// 1.2 rung run together after it. The compact rung's TCP connect is refused, so it never sends
/// a hello; the TLS 1.2 rung is refused as an inappropriate fallback. That is no proof of an
/// attack: the compact rung is retried, alone, and wins.
async fn compact_refused_once_then_retried(stall: Option<Duration>) {
    let server = TlsServer::modern().await.unwrap();
    let em = Emulator::start(server.addr(), vec![Rule::f5_hang()])
        .await
        .unwrap();
    let ladder = tls_fallback::Ladder::new(vec![
        tls_fallback::Profile::new("modern-unpadded", Tls1_3)
            .padding(false)
            .groups("X25519:P-256"),
        tls_fallback::Profile::modern_compact(),
        tls_fallback::Profile::tls12(),
    ]);
    let layer = builder()
        .ladder(ladder)
        .handshake_timeout(Duration::from_millis(1500))
        .stall_timeout(stall)
        .build()
        .unwrap();
    // Connect #1 is the compact rung's (rungs started together are polled, and so connect, in
    // rung order).
    let (client, calls) = slow_client(&layer, Duration::ZERO, |n| n == 1);
    let res = slow_get(&client, &em.url()).await.unwrap();
    let info = res.extensions().get::<tls_fallback::TlsInfo>().unwrap();
    assert_eq!(info.version, Tls1_3);
    assert_eq!(&*info.profile, "modern-compact");
    let outcomes: Vec<String> = info.attempts.iter().map(|a| a.outcome.short()).collect();
    assert!(outcomes.contains(&"connect".to_string()), "{outcomes:?}");
    assert!(outcomes.contains(&"alert:86".to_string()), "{outcomes:?}");
    assert_eq!(layer.stats().downgrades, 0);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 4);
    let seen = em.hellos();
    let last = seen.last().unwrap();
    assert!(
        last.len() < 256,
        "the retried compact hello: {}",
        last.len()
    );
    assert_eq!(server.versions().get("TLSv1.3"), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_do_not_take_up_a_reshaped_hello_the_leader_won_after_one_reset() {
    // One reset during a burst of first contacts: the leader ends on the compact TLS 1.3 hello,
    // which is only provisionally learned. The waiters must not all send it: one of them walks
    // from the top again (and the full modern hello now works), the rest follow that.
    let server = TlsServer::modern().await.unwrap();
    let em = Emulator::start(server.addr(), vec![Rule::reset_first(1)])
        .await
        .unwrap();
    let layer = builder().build().unwrap();
    let (client, _) = slow_client(&layer, Duration::from_millis(200), |_| false);
    for t in ten_at_once(&client, &em.url()) {
        t.await.unwrap().expect("every request succeeds");
    }
    let seen = em.hellos();
    let compact = seen.iter().filter(|h| h.scsv()).count();
    assert_eq!(compact, 1, "only the leader's fallback hello");
    assert_eq!(seen.len(), 11, "one reset, then one hello per request");
    assert_eq!(server.versions().get("TLSv1.3"), Some(&10));
    assert_eq!(layer.stats().learned, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_retrying_a_racer_that_could_not_connect_the_walk_goes_on_down() {
    // A TLS 1.2 server behind a box that hangs on TLS 1.3 hellos and closes long suite lists.
    // The top rung hangs; at the stall the compact TLS 1.3 rung (hangs too) and the TLS 1.2
    // rung race it, and the TLS 1.2 rung's TCP connect is refused. It is retried alone (and
    // closed for its suite list), and the walk must still go on to tls12-compact.
    let server = TlsServer::only(Tls1_2).await.unwrap();
    let em = Emulator::start(
        server.addr(),
        vec![Rule::hang_above(Tls1_2), Rule::close_if_ciphers_above(16)],
    )
    .await
    .unwrap();
    let layer = builder()
        .handshake_timeout(Duration::from_millis(1500))
        .stall_timeout(Some(Duration::from_millis(300)))
        .build()
        .unwrap();
    // Connects: #0 modern, #1 modern-compact, #2 tls12 (refused), #3 tls12 again, #4
    // tls12-compact.
    let (client, calls) = slow_client(&layer, Duration::ZERO, |n| n == 2);
    let res = slow_get(&client, &em.url()).await.unwrap();
    let info = res.extensions().get::<tls_fallback::TlsInfo>().unwrap();
    assert_eq!(info.version, Tls1_2);
    assert_eq!(&*info.profile, "tls12-compact");
    let outcomes: Vec<String> = info.attempts.iter().map(|a| a.outcome.short()).collect();
    assert_eq!(
        outcomes,
        ["connect", "timeout", "timeout", "closed", "ok"],
        "{outcomes:?}"
    );
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 5);
}
