//! Decisions shared through Redis, through real layers and the wire: each test runs its own
//! `redis-server` on a free loopback port, the test kit's intolerant gateway, and two or more
//! layers that share the Redis (each as a separate instance of a fleet would).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tls_fallback::testkit::{RedisServer, Rule, TlsServer};
use tls_fallback::{FallbackLayer, TlsVersion};
use TlsVersion::*;

/// An instance: a layer trusting the test CA, legacy allowed for localhost, sharing this Redis.
fn instance(redis: &RedisServer) -> FallbackLayer {
    builder()
        .allow_legacy("localhost")
        .redis(redis.url())
        .build()
        .expect("layer")
}

/// Polls `f` every 10 ms for at most `within`.
async fn eventually(within: Duration, f: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_first_contact_with_a_host_a_learned_is_one_hello() {
    let redis = RedisServer::start().expect("redis-server");
    let (_server, em) = legacy_gateway().await;
    let (a, b) = (instance(&redis), instance(&redis));
    let (res, _) = get(&client(&a), &em.url()).await.unwrap();
    assert_eq!(tls(&res).handshakes(), 6, "A walks the ladder");
    // A publishes after its handshake, off the request path: B's first contact comes once the
    // decision is in Redis (without this wait, a loaded machine let B read before A wrote).
    assert!(
        eventually(Duration::from_secs(2), || a
            .stats()
            .shared
            .is_some_and(|s| s.published >= 1))
        .await,
        "A published its decision"
    );
    em.clear();
    let (res, _) = get(&client(&b), &em.url()).await.unwrap();
    assert_eq!(
        ladder_seen(&em),
        [(Some(Tls1_0), true)],
        "B: one hello, with SCSV"
    );
    let info = tls(&res);
    assert!(info.from_cache);
    assert_eq!((info.version, info.handshakes()), (Tls1_0, 1));
    let shared = b.stats().shared.expect("shared counters");
    assert!(shared.read + shared.received >= 1, "{shared:?}");
    assert!(a.stats().shared.is_some_and(|s| s.published >= 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downgrade_signal_on_b_makes_a_forget_within_a_second() {
    let redis = RedisServer::start().expect("redis-server");
    let (_legacy, em) = legacy_gateway().await;
    let modern = TlsServer::modern().await.unwrap();
    let (a, b) = (instance(&redis), instance(&redis));
    get(&client(&a), &em.url()).await.unwrap();
    assert!(
        eventually(Duration::from_secs(1), || b.stats().hosts.len() == 1).await,
        "B received A's decision"
    );
    // The box is replaced: B's learned TLS 1.0 hello (with SCSV) is refused as an
    // inappropriate fallback (or the old rung no longer answers); B forgets and re-probes.
    em.set_backend(modern.addr());
    em.set_rules(vec![]);
    let (res, _) = get(&client(&b), &em.url()).await.unwrap();
    assert_eq!(tls(&res).version, Tls1_3);
    assert!(
        eventually(Duration::from_secs(1), || a.stats().hosts.is_empty()).await,
        "A forgot within 1 s: {:?}",
        a.stats().hosts
    );
    em.clear();
    let (res, _) = get(&client(&a), &em.url()).await.unwrap();
    assert_eq!(
        ladder_seen(&em),
        [(Some(Tls1_3), false)],
        "A starts at the top again"
    );
    assert_eq!(tls(&res).version, Tls1_3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_instances_meeting_a_gateway_at_the_same_instant_walk_once() {
    let redis = RedisServer::start().expect("redis-server");
    let (_server, em) = legacy_gateway().await;
    let fleet: Vec<FallbackLayer> = (0..20).map(|_| instance(&redis)).collect();
    let clients: Vec<_> = fleet.iter().map(client).collect();
    let url = em.url();
    let barrier = Arc::new(tokio::sync::Barrier::new(clients.len()));
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|c| {
            let (url, barrier) = (url.clone(), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                get(&c, &url).await.map(|(res, _)| tls(&res).version)
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), Tls1_0);
    }
    let failed = em.count() - 20;
    assert_eq!(
        failed,
        5,
        "one walk for the whole fleet: {:?}",
        ladder_seen(&em)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_keep_succeeding_while_redis_is_down_and_sharing_resumes() {
    let mut redis = RedisServer::start().expect("redis-server");
    let (_server, em) = legacy_gateway().await;
    let (_other_server, other) = gateway_with(Rule::close_above(Tls1_0)).await;
    let (a, b) = (instance(&redis), instance(&redis));
    get(&client(&a), &em.url()).await.unwrap();
    redis.kill();
    let connected = |l: &FallbackLayer| l.stats().shared.is_some_and(|s| s.connected);
    assert!(
        eventually(Duration::from_secs(5), || !connected(&a) && !connected(&b)).await,
        "the heartbeat notices"
    );
    em.clear();
    let started = Instant::now();
    let (res, _) = get(&client(&a), &em.url()).await.unwrap();
    assert_eq!(
        ladder_seen(&em),
        [(Some(Tls1_0), true)],
        "A's local decision"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    let (res_b, _) = get(&client(&b), &other.url()).await.unwrap();
    assert_eq!((tls(&res).version, tls(&res_b).version), (Tls1_0, Tls1_0));
    assert_eq!(other.count(), 6, "B learns alone while Redis is down");

    redis.restart().expect("restart");
    assert!(a.stats().shared.is_some_and(|s| s.errors > 0));
    let (_third_server, third) = legacy_gateway().await;
    assert!(
        eventually(Duration::from_secs(10), || connected(&a) && connected(&b)).await,
        "both reconnect by themselves"
    );
    get(&client(&b), &third.url()).await.unwrap();
    third.clear();
    let (res, _) = get(&client(&a), &third.url()).await.unwrap();
    assert_eq!(
        tls(&res).handshakes(),
        1,
        "sharing resumed after the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compact_decision_from_redis_is_verified_before_a_healthy_host_loses_its_full_hello() {
    use tls_fallback::testkit::Emulator;
    use tls_fallback::{Decision, DecisionStore, HostKey, Ladder, RedisOptions, RedisStore};
    let redis = RedisServer::start().expect("redis-server");
    let server = TlsServer::builder()
        .start()
        .await
        .expect("a healthy TLS 1.3 server");
    let em = Emulator::start(server.addr(), vec![])
        .await
        .expect("emulator");
    let b = instance(&redis);
    // A Redis writer (here a store of the same fleet) says the healthy host needs the compact
    // hello: HTTP/1.1 only, no padding, two groups.
    let ttl = Duration::from_secs(3600);
    let writer = RedisStore::open(
        RedisOptions::new(redis.url()),
        &Ladder::default(),
        b.policy(),
        ttl,
        100,
    )
    .expect("writer");
    let key = HostKey::new("localhost", em.addr().port());
    writer.put(
        key,
        Arc::new(Decision::new(1, "modern-compact".into(), "modern: reset")),
    );
    let received = eventually(Duration::from_secs(3), || {
        b.stats().shared.is_some_and(|s| s.received >= 1)
    });
    assert!(received.await, "B received the forged decision");
    // C starts after the message: its first contact reads the decision from Redis (the read on
    // a miss), and walks from the top all the same.
    let c = instance(&redis);
    let (res, _) = get(&client(&c), &em.url()).await.unwrap();
    assert_eq!(&*tls(&res).profile, "modern");
    assert!(
        c.stats().shared.is_some_and(|s| s.read >= 1),
        "C read it from Redis"
    );
    assert_eq!(
        ladder_seen(&em),
        [(Some(Tls1_3), false)],
        "one full hello, no SCSV"
    );
    em.clear();
    // B's first contact walks from the top: the full hello works, and is what it uses.
    let (res, _) = get(&client(&b), &em.url()).await.unwrap();
    let info = tls(&res);
    assert_eq!(&*info.profile, "modern", "{info:?}");
    assert_eq!(info.handshakes(), 1);
    assert_eq!(
        ladder_seen(&em),
        [(Some(Tls1_3), false)],
        "one full hello, no SCSV"
    );
    // And so does the next connection.
    em.clear();
    let (res, _) = get(&client(&b), &em.url()).await.unwrap();
    assert_eq!(&*tls(&res).profile, "modern");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_narrows_the_gate_drops_a_decision_here_and_not_in_the_fleet() {
    let redis = RedisServer::start().expect("redis-server");
    let (_server, em) = legacy_gateway().await;
    let (a, b) = (instance(&redis), instance(&redis));
    get(&client(&a), &em.url()).await.unwrap();
    assert!(
        eventually(Duration::from_secs(1), || b.stats().hosts.len() == 1).await,
        "B received A's decision"
    );
    // B is rebuilt without the legacy gate, keeping its store: the decision is not used.
    let narrowed = builder().decisions_of(&b).build().expect("layer");
    let err = tls_error(&get(&client(&narrowed), &em.url()).await.unwrap_err());
    assert_eq!(err.kind(), tls_fallback::ErrorKind::BelowFloor, "{err}");
    assert!(narrowed.stats().hosts.is_empty(), "dropped here");
    // No forget went to the fleet: A keeps what it learned.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.stats().hosts.len(), 1, "A keeps it");
    em.clear();
    let (res, _) = get(&client(&a), &em.url()).await.unwrap();
    assert_eq!(ladder_seen(&em), [(Some(Tls1_0), true)]);
    assert!(tls(&res).from_cache);
}
