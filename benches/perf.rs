//! Performance of the fallback connector against its peer, hyper-openssl, in one run:
//! `cargo bench --bench perf` (about a minute on 2 cores). Prints one table; see
//! docs/BENCHMARKS.md for how to read it. Everything runs on 127.0.0.1 against the test kit's
//! real OpenSSL servers, in one process, so client and server share the two cores: compare the
//! ratios, not the absolute numbers.

#[path = "common/mod.rs"]
mod common;
use common::machine;

use std::future::Future;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_openssl::client::legacy::HttpsConnector;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use openssl::ssl::{SslConnector, SslMethod, SslOptions, SslVersion};
use tls_fallback::testkit::{Emulator, Rule, TestPki, TlsServer};
use tls_fallback::{
    FallbackConnector, FallbackLayer, FallbackLayerBuilder, MemoryStore, TlsVersion,
};
use tower_layer::Layer;

type Body = Empty<Bytes>;

fn ours(
    b: FallbackLayerBuilder,
    pool: bool,
) -> (
    FallbackLayer,
    Client<FallbackConnector<HttpConnector>, Body>,
) {
    let layer = b
        .system_roots(false)
        .add_root_certificate(TestPki::shared().ca.cert.clone())
        .build()
        .expect("layer");
    let mut builder = Client::builder(TokioExecutor::new());
    if !pool {
        builder.pool_max_idle_per_host(0);
    }
    let client = builder.build(layer.layer(FallbackLayer::http_connector()));
    (layer, client)
}

/// hyper-openssl's connector with the same roots; `legacy` pins it to TLS 1.0 at security
/// level 0 (what a user hard-codes today for an old gateway).
fn peer(pool: bool, legacy: bool) -> Client<HttpsConnector<HttpConnector>, Body> {
    let mut ssl = SslConnector::builder(SslMethod::tls()).expect("ssl");
    ssl.cert_store_mut()
        .add_cert(TestPki::shared().ca.cert.clone())
        .expect("root");
    ssl.set_alpn_protos(b"\x08http/1.1").expect("alpn");
    if legacy {
        ssl.set_cipher_list("DEFAULT:@SECLEVEL=0").expect("ciphers");
        ssl.set_security_level(0);
        ssl.set_max_proto_version(Some(SslVersion::TLS1))
            .expect("max");
        ssl.set_min_proto_version(Some(SslVersion::TLS1))
            .expect("min");
        ssl.set_options(SslOptions::from_bits_retain(
            openssl_sys::SSL_OP_LEGACY_SERVER_CONNECT as _,
        ));
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = HttpsConnector::with_connector(http, ssl).expect("https");
    let mut builder = Client::builder(TokioExecutor::new());
    if !pool {
        builder.pool_max_idle_per_host(0);
    }
    builder.build(https)
}

async fn one<C: Connect + Clone + Send + Sync + 'static>(
    client: &Client<C, Body>,
    url: &str,
) -> f64 {
    let started = Instant::now();
    let res = client
        .get(url.parse().expect("url"))
        .await
        .expect("request succeeds");
    let _ = res.into_body().collect().await;
    started.elapsed().as_secs_f64() * 1000.0
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

/// Alternating rounds of sequential requests (one each by default), so drift on a shared
/// machine hits both sides alike.
async fn alternate<A, B, FA, FB>(
    rounds: usize,
    per_round: usize,
    mut a: A,
    mut b: B,
) -> (Vec<f64>, Vec<f64>)
where
    A: FnMut() -> FA,
    B: FnMut() -> FB,
    FA: Future<Output = f64>,
    FB: Future<Output = f64>,
{
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for _ in 0..per_round {
            xs.push(a().await);
        }
        for _ in 0..per_round {
            ys.push(b().await);
        }
    }
    (xs, ys)
}

struct Row {
    name: String,
    ours: String,
    peer: String,
    ratio: String,
    target: String,
}

fn row(name: &str, ours: String, peer: String, ratio: String, target: &str) -> Row {
    Row {
        name: name.into(),
        ours,
        peer,
        ratio,
        target: target.into(),
    }
}

async fn healthy_new_connection(rows: &mut Vec<Row>) {
    let server = TlsServer::modern().await.expect("server");
    let url = server.url();
    let (layer, ours) = ours(FallbackLayer::builder(), false);
    let peer = peer(false, false);
    // Warm up both (and their session caches).
    for _ in 0..20 {
        one(&ours, &url).await;
        one(&peer, &url).await;
    }
    let (mut a, mut b) = alternate(400, 1, || one(&ours, &url), || one(&peer, &url)).await;
    let (ma, mb) = (pct(&mut a, 0.5), pct(&mut b, 0.5));
    let ok = ma / mb <= 1.03;
    let stats = layer.stats();
    rows.push(row(
        &format!(
            "healthy, new connection per request: median ms (ours resumed {} of {})",
            stats.resumed, stats.connections
        ),
        format!("{ma:.3}"),
        format!("{mb:.3}"),
        format!("{:.3}", ma / mb),
        if ok { "<= 1.03 MET" } else { "<= 1.03 MISSED" },
    ));
}

async fn keepalive_throughput(rows: &mut Vec<Row>) {
    let server = TlsServer::modern().await.expect("server");
    let url = server.url();
    let (_layer, ours) = ours(FallbackLayer::builder(), true);
    let peer = peer(true, false);
    async fn blast<C: Connect + Clone + Send + Sync + 'static>(
        client: &Client<C, Body>,
        url: &str,
        dur: Duration,
    ) -> f64 {
        let deadline = Instant::now() + dur;
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let client = client.clone();
            let url = url.to_string();
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    one(&client, &url).await;
                    n += 1;
                }
                n
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap_or(0);
        }
        total as f64 / dur.as_secs_f64()
    }
    // Both clients run at the same time, 16 in flight each, so the shared machine's noise
    // hits both alike; the ratio of their request counts is the comparison.
    let window = Duration::from_millis(1500);
    let _ = tokio::join!(
        blast(&ours, &url, window / 3),
        blast(&peer, &url, window / 3)
    );
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let (x, y) = tokio::join!(blast(&ours, &url, window), blast(&peer, &url, window));
        a.push(x);
        b.push(y);
    }
    let (ma, mb) = (pct(&mut a, 0.5), pct(&mut b, 0.5));
    let ok = ma / mb >= 0.98;
    rows.push(row(
        "healthy, keep-alive, 16 in flight each, run side by side: requests/s",
        format!("{ma:.0}"),
        format!("{mb:.0}"),
        format!("{:.3}", ma / mb),
        if ok { ">= 0.98 MET" } else { ">= 0.98 MISSED" },
    ));
}

async fn learned_host(rows: &mut Vec<Row>) {
    let server = TlsServer::only(TlsVersion::Tls1_0).await.expect("server");
    let em = Emulator::start(server.addr(), vec![Rule::close_above(TlsVersion::Tls1_0)])
        .await
        .expect("emulator");
    let url = em.url();
    let (layer, ours) = ours(FallbackLayer::builder().allow_legacy("localhost"), false);
    let peer = peer(false, true);
    one(&ours, &url).await; // learn
    for _ in 0..10 {
        one(&ours, &url).await;
        one(&peer, &url).await;
    }
    em.clear();
    let (rounds, per) = (400, 1);
    let (mut a, mut b) = alternate(rounds, per, || one(&ours, &url), || one(&peer, &url)).await;
    let hellos = em.count();
    let failed = em.failed();
    let connections = rounds * per * 2;
    assert_eq!(failed, 0, "no failed hello after learning");
    assert_eq!(hellos, connections, "exactly one hello per connection");
    assert!(layer.stats().hosts.len() == 1);
    let (ma, mb) = (pct(&mut a, 0.5), pct(&mut b, 0.5));
    let ok = ma / mb <= 1.05;
    rows.push(row(
        &format!(
            "learned close-above-1.0 host vs peer pinned to 1.0: median ms ({hellos} hellos for {connections} connections)"
        ),
        format!("{ma:.3}"),
        format!("{mb:.3}"),
        format!("{:.3}", ma / mb),
        if ok { "<= 1.05 MET" } else { "<= 1.05 MISSED" },
    ));
}

async fn first_contact(rows: &mut Vec<Row>) {
    use TlsVersion::*;
    let cases: Vec<(&str, TlsServer, Vec<Rule>, FallbackLayerBuilder)> = vec![
        (
            "healthy modern (rung 0)",
            TlsServer::modern().await.expect("s"),
            vec![],
            FallbackLayer::builder(),
        ),
        (
            "TLS 1.3 hang, racing (stall 1.5 s) -> rung 2",
            TlsServer::only(Tls1_2).await.expect("s"),
            vec![Rule::hang_above(Tls1_2)],
            FallbackLayer::builder(),
        ),
        (
            "TLS 1.3 hang, no racing (timeout 10 s) -> rung 2",
            TlsServer::only(Tls1_2).await.expect("s"),
            vec![Rule::hang_above(Tls1_2)],
            FallbackLayer::builder().stall_timeout(None),
        ),
        (
            "close above 1.2 -> rung 2",
            TlsServer::only(Tls1_2).await.expect("s"),
            vec![Rule::close_above(Tls1_2)],
            FallbackLayer::builder(),
        ),
        (
            "F5 256..511 hang (padding avoids it) -> rung 0",
            TlsServer::modern().await.expect("s"),
            vec![Rule::f5_hang()],
            FallbackLayer::builder(),
        ),
        (
            "> 16 suites closed -> rung 1",
            TlsServer::modern().await.expect("s"),
            vec![Rule::close_if_ciphers_above(16)],
            FallbackLayer::builder(),
        ),
        (
            "hello > 300 bytes closed, TLS 1.3 server -> rung 1",
            TlsServer::modern().await.expect("s"),
            vec![Rule::close_if_longer_than(300)],
            FallbackLayer::builder(),
        ),
        (
            "reset above 1.1 -> rung 4",
            TlsServer::only(Tls1_1).await.expect("s"),
            vec![Rule::reset_above(Tls1_1)],
            FallbackLayer::builder().allow_legacy("localhost"),
        ),
        (
            "alert 70 above 1.0 -> rung 5",
            TlsServer::only(Tls1_0).await.expect("s"),
            vec![Rule::alert_above(Tls1_0, 70)],
            FallbackLayer::builder().allow_legacy("localhost"),
        ),
        (
            "close above 1.0 -> rung 5",
            TlsServer::only(Tls1_0).await.expect("s"),
            vec![Rule::close_above(Tls1_0)],
            FallbackLayer::builder().allow_legacy("localhost"),
        ),
    ];
    for (name, server, rules, b) in cases {
        let em = Emulator::start(server.addr(), rules)
            .await
            .expect("emulator");
        let (_layer, client) = ours(b, false);
        let ms = one(&client, &em.url()).await;
        rows.push(row(
            &format!("first contact: {name}"),
            format!("{ms:.1} ms"),
            "-".into(),
            format!("{} hellos", em.count()),
            "",
        ));
    }
}

async fn concurrent_first_contact(rows: &mut Vec<Row>) {
    for c in [1usize, 10, 100] {
        let mut line = Vec::new();
        for single_flight in [true, false] {
            let server = TlsServer::only(TlsVersion::Tls1_0).await.expect("server");
            let em = Emulator::start(server.addr(), vec![Rule::close_above(TlsVersion::Tls1_0)])
                .await
                .expect("emulator");
            let (_layer, client) = ours(
                FallbackLayer::builder()
                    .allow_legacy("localhost")
                    .single_flight(single_flight),
                false,
            );
            let url = em.url();
            let tasks: Vec<_> = (0..c)
                .map(|_| {
                    let client = client.clone();
                    let url = url.clone();
                    tokio::spawn(async move { one(&client, &url).await })
                })
                .collect();
            let mut lat = Vec::new();
            for t in tasks {
                lat.push(t.await.expect("task"));
            }
            let p50 = pct(&mut lat, 0.5);
            let p99 = pct(&mut lat, 0.99);
            line.push(format!(
                "{} failed hellos, p50 {p50:.1} / p99 {p99:.1} ms",
                em.failed()
            ));
        }
        rows.push(row(
            &format!("concurrent first contact, C = {c} (ours vs naive, no single flight)"),
            line[0].clone(),
            line[1].clone(),
            "-".into(),
            "",
        ));
    }
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn cache_rows(rows: &mut Vec<Row>) {
    use std::sync::Arc;
    use tls_fallback::{Decision, DecisionStore, HostKey};
    const N: usize = 1_000_000;
    let keys: Vec<HostKey> = (0..N)
        .map(|i| HostKey::new(&format!("h{i}.gateway.example"), 443))
        .collect();
    let profile: Arc<str> = Arc::from("tls10-legacy");
    let before = rss_bytes();
    // 10 % headroom: the store's capacity is approximate (per shard).
    let store = MemoryStore::new((N + N / 10) as u64);
    for k in &keys {
        let d = Decision::new(5, Arc::clone(&profile), "modern: closed; tls12: closed");
        store.put(k.clone(), Arc::new(d));
    }
    assert!(!store.is_empty());
    let after = rss_bytes();
    let per_entry = (after.saturating_sub(before)) as f64 / N as f64;
    // Lookups as the connector makes them: a key built from the URI (its own allocation, so
    // the comparison reads the stored host name), then the decision itself is read.
    let probes: Vec<HostKey> = keys.iter().map(|k| HostKey::new(&k.host, k.port)).collect();
    let lookups = 1_000_000usize;
    let timed = |set: usize| {
        let started = Instant::now();
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let store = &store;
                let probes = &probes[..set];
                s.spawn(move || {
                    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ t;
                    let mut hits = 0usize;
                    for _ in 0..lookups {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        if store
                            .get(&probes[(x as usize) % probes.len()])
                            .is_some_and(|d| d.rung == 5)
                        {
                            hits += 1;
                        }
                    }
                    assert!(hits >= lookups * 99 / 100, "hits {hits}");
                });
            }
        });
        started.elapsed().as_nanos() as f64 / lookups as f64
    };
    let ns = timed(N);
    let hot = timed(1_000);
    rows.push(row(
        "decision cache, 1,000,000 hosts: bytes per entry (RSS delta, keys excluded)",
        format!("{per_entry:.0} B"),
        "-".into(),
        "-".into(),
        if per_entry < 256.0 {
            "< 256 B MET"
        } else {
            "< 256 B MISSED"
        },
    ));
    let met = |ns: f64| {
        if ns < 1000.0 {
            "< 1 us MET"
        } else {
            "< 1 us MISSED"
        }
    };
    rows.push(row(
        "decision cache: lookup, 2 threads, uniform over all 1,000,000 hosts (ns per lookup)",
        format!("{ns:.0} ns"),
        "-".into(),
        "-".into(),
        met(ns),
    ));
    rows.push(row(
        "decision cache: lookup, 2 threads, 1,000 hot hosts among the 1,000,000 (ns per lookup)",
        format!("{hot:.0} ns"),
        "-".into(),
        "-".into(),
        met(hot),
    ));
}

fn main() {
    // `cargo bench` passes --bench; `BENCH_ONLY=cache` (or keepalive, ...) runs one group.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let want = |name: &str| only.is_empty() || only.split(',').any(|o| o == name);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let mut rows = Vec::new();
    rt.block_on(async {
        if only == "profile" {
            // For `valgrind --tool=callgrind`: 200 new connections through our connector only.
            let server = TlsServer::modern().await.expect("server");
            let (_layer, client) = ours(FallbackLayer::builder(), false);
            for _ in 0..200 {
                one(&client, &server.url()).await;
            }
            return;
        }
        if want("new_connection") {
            healthy_new_connection(&mut rows).await;
        }
        if want("keepalive") {
            keepalive_throughput(&mut rows).await;
        }
        if want("learned") {
            learned_host(&mut rows).await;
        }
        if want("first_contact") {
            first_contact(&mut rows).await;
        }
        if want("concurrent") {
            concurrent_first_contact(&mut rows).await;
        }
    });
    if want("cache") {
        cache_rows(&mut rows);
    }
    println!("machine: {}", machine());
    println!(
        "{:<96} | {:>34} | {:>34} | {:>10} | target",
        "row", "tls-fallback", "peer", "ratio"
    );
    for r in &rows {
        println!(
            "{:<96} | {:>34} | {:>34} | {:>10} | {}",
            r.name, r.ours, r.peer, r.ratio, r.target
        );
    }
    println!("total {:.0} s", started.elapsed().as_secs_f64());
}
