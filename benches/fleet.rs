//! Decisions shared through Redis: `cargo bench --bench fleet --features testkit,redis` (needs
//! `redis-server` on the PATH; starts its own on a free loopback port). Prints one table; see
//! docs/BENCHMARKS.md and docs/FLEET.md. Everything runs on 127.0.0.1 in one process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tls_fallback::testkit::{Emulator, RedisServer, Rule, TestPki, TlsServer};
use tls_fallback::{
    Decision, DecisionStore, FallbackConnector, FallbackLayer, FallbackLayerBuilder, HostKey,
    Ladder, MemoryStore, RedisOptions, RedisStore, TlsInfo, TlsVersion,
};
use tower_layer::Layer;

type FleetClient = Client<FallbackConnector<HttpConnector>, Empty<Bytes>>;

fn builder() -> FallbackLayerBuilder {
    FallbackLayer::builder()
        .system_roots(false)
        .add_root_certificate(TestPki::shared().ca.cert.clone())
        .allow_legacy("localhost")
}

fn instance(redis: Option<&RedisServer>) -> (FallbackLayer, FleetClient) {
    let b = match redis {
        Some(r) => builder().redis(r.url()),
        None => builder(),
    };
    let layer = b.build().expect("layer");
    let mut c = Client::builder(TokioExecutor::new());
    c.pool_max_idle_per_host(0);
    let client = c.build(layer.layer(FallbackLayer::http_connector()));
    (layer, client)
}

/// One request; its latency in ms and its handshakes.
async fn one(client: &FleetClient, url: &str) -> (f64, usize) {
    let started = Instant::now();
    let res = client
        .get(url.parse().expect("url"))
        .await
        .expect("request succeeds");
    let hs = res
        .extensions()
        .get::<TlsInfo>()
        .map(|t| t.handshakes())
        .unwrap_or(0);
    let _ = res.into_body().collect().await;
    (started.elapsed().as_secs_f64() * 1000.0, hs)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

async fn gateway() -> (TlsServer, Emulator) {
    let server = TlsServer::only(TlsVersion::Tls1_0).await.expect("server");
    let em = Emulator::start(server.addr(), vec![Rule::close_above(TlsVersion::Tls1_0)])
        .await
        .expect("emulator");
    (server, em)
}

/// A local hit: the store lookup itself, memory against Redis (the same local store inside).
fn lookup_rows(redis: &RedisServer) {
    let layer = builder().build().expect("layer");
    let shared = RedisStore::open(
        RedisOptions::new(redis.url()),
        &Ladder::default(),
        layer.policy(),
        Duration::from_secs(3600),
        10_000,
    )
    .expect("store");
    let memory = MemoryStore::new(10_000);
    let key = HostKey::new("pay.example", 443);
    let d = Arc::new(Decision::new(2, "tls12".into(), "modern: closed"));
    memory.put(key.clone(), Arc::clone(&d));
    shared.put(key.clone(), d);
    let time = |s: &dyn DecisionStore| {
        let n = 2_000_000u32;
        let started = Instant::now();
        for _ in 0..n {
            std::hint::black_box(s.get(std::hint::black_box(&key)));
        }
        started.elapsed().as_nanos() as f64 / f64::from(n)
    };
    let (mut m, mut r) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        m.push(time(&memory));
        r.push(time(&shared));
    }
    let (m, r) = (median(m), median(r));
    println!(
        "| local hit, store lookup: ns (memory / redis) | {m:.1} | {r:.1} | {:.3} |",
        r / m
    );
}

/// A learned host, a new connection each time: memory-only layer against a Redis layer.
async fn learned_rows(redis: &RedisServer) {
    let (_server, em) = gateway().await;
    let url = em.url();
    let (_m, memory) = instance(None);
    let (_r, shared) = instance(Some(redis));
    one(&memory, &url).await;
    one(&shared, &url).await;
    em.clear();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..300 {
        a.push(one(&memory, &url).await.0);
        b.push(one(&shared, &url).await.0);
    }
    assert_eq!(em.count(), 600, "one hello per connection");
    let (a, b) = (median(a), median(b));
    println!(
        "| learned host, new connection: median ms (memory / redis), 600 hellos for 600 connections | {a:.3} | {b:.3} | {:.3} |",
        b / a
    );
}

/// Instance B's first contact with a host A learned: B started before A learned (it receives
/// the decision) and B started after (it reads it on its miss).
async fn first_contact_rows(redis: &RedisServer) {
    for started_after in [false, true] {
        let (_server, em) = gateway().await;
        let url = em.url();
        let (_a, a) = instance(Some(redis));
        let early = (!started_after).then(|| instance(Some(redis)));
        let (_, walk_hs) = one(&a, &url).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (b_layer, b) = early.unwrap_or_else(|| instance(Some(redis)));
        em.clear();
        let (ms, hs) = one(&b, &url).await;
        let s = b_layer.stats().shared.unwrap_or_default();
        println!(
            "| first contact on B after A learned ({}) | {ms:.2} ms | {hs} hello(s), {} read(s) | A: {walk_hs} hellos |",
            if started_after { "B started after: one Redis read" } else { "B running: received" },
            s.read
        );
    }
}

/// N instances meet one close-above-1.0 gateway cold: failed hellos in total.
async fn fleet_rows(redis: &RedisServer, n: usize, apart: Duration) {
    let (_server, em) = gateway().await;
    let url = em.url();
    let fleet: Vec<_> = (0..n).map(|_| instance(Some(redis))).collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, (_, c)) in fleet.iter().enumerate() {
        let (c, url) = (c.clone(), url.clone());
        let at = started + apart * i as u32;
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            one(&c, &url).await
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.push(t.await.expect("task").0);
    }
    let failed = em.count().saturating_sub(n);
    println!(
        "| {n} instances cold, {} apart: failed hellos in total (target 5: one walk) | {failed} | median {:.1} ms | max {:.1} ms |",
        if apart.is_zero() { "0 s".to_string() } else { format!("{:?}", apart) },
        median(lat.clone()),
        lat.iter().copied().fold(0.0, f64::max)
    );
    drop(fleet);
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let redis = RedisServer::start().expect("redis-server on the PATH");
    let started = Instant::now();
    println!("| row | value | detail | |");
    println!("|---|---|---|---|");
    lookup_rows(&redis);
    rt.block_on(async {
        learned_rows(&redis).await;
        first_contact_rows(&redis).await;
        fleet_rows(&redis, 20, Duration::ZERO).await;
        fleet_rows(&redis, 20, Duration::from_secs(1)).await;
    });
    println!("total {:.0} s", started.elapsed().as_secs_f64());
}
