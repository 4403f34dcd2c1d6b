//! A gateway that flaps: intolerant, then fixed, then intolerant again, under a steady trickle
//! of concurrent requests and a one-second decision TTL. Each phase must converge to its best
//! version within one TTL, and no request may fail on the way.

mod common;

use std::time::{Duration, Instant};

use common::*;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tls_fallback::testkit::{Emulator, Rule, TlsServer};
use tls_fallback::{FallbackLayer, TlsInfo, TlsVersion};
use tower_layer::Layer;
use TlsVersion::*;

const TTL: Duration = Duration::from_secs(1);
/// Each phase lasts one and a half TTLs.
const PHASE: Duration = Duration::from_millis(1500);
const TICK: Duration = Duration::from_millis(100);
/// Concurrent requests per tick.
const PER_TICK: usize = 4;

struct Done {
    started: Instant,
    info: TlsInfo,
}

/// Sends `PER_TICK` concurrent requests every `TICK` for `PHASE` (bounded: at most
/// PHASE / TICK + 1 ticks); every request must succeed.
async fn phase(client: &TestClient, url: &str, name: &str) -> Vec<Done> {
    let begin = Instant::now();
    let mut done = Vec::new();
    let max_ticks = PHASE.as_millis() / TICK.as_millis() + 1;
    for _ in 0..max_ticks {
        if begin.elapsed() >= PHASE {
            break;
        }
        let tick = Instant::now();
        let batch: Vec<_> = (0..PER_TICK)
            .map(|_| {
                let client = client.clone();
                let url = url.to_string();
                tokio::spawn(async move {
                    let started = Instant::now();
                    let res = get(&client, &url).await;
                    (started, res.map(|(r, _)| tls(&r)))
                })
            })
            .collect();
        for t in batch {
            let (started, res) = t.await.unwrap();
            match res {
                Ok(info) => done.push(Done { started, info }),
                Err(e) => panic!("{name}: a request failed outright: {}", tls_error(&e)),
            }
        }
        tokio::time::sleep(TICK.saturating_sub(tick.elapsed())).await;
    }
    done
}

/// Every request that started one TTL or more after the phase began negotiated `best`.
/// Returns how long after the phase's start the first request at `best` started.
fn converged(done: &[Done], phase_start: Instant, best: TlsVersion, name: &str) -> Duration {
    assert!(!done.is_empty(), "{name}: no request");
    for d in done {
        if d.started >= phase_start + TTL {
            assert_eq!(d.info.version, best, "{name}: {:?}", d.info);
        }
    }
    let first = done
        .iter()
        .find(|d| d.info.version == best)
        .unwrap_or_else(|| panic!("{name}: never reached {best}"));
    first.started.saturating_duration_since(phase_start)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_gateway_converges_within_one_ttl_in_every_phase_without_failed_requests() {
    // The intolerant gateway sits in front of the old TLS 1.0 box. When it is fixed, the box
    // behind it is replaced by one speaking TLS 1.0 to 1.3 (security level 0). (An intolerant
    // gateway in front of a server that can do better looks exactly like an attacker: its TLS
    // 1.0 hello with SCSV would be refused, and the request must fail; see tests/security.rs.)
    let old = TlsServer::only(Tls1_0).await.unwrap();
    let new = TlsServer::builder()
        .min_version(Tls1_0)
        .security_level(0)
        .start()
        .await
        .unwrap();
    let em = Emulator::start(old.addr(), vec![Rule::close_above(Tls1_0)])
        .await
        .unwrap();
    let layer = builder()
        .allow_legacy("localhost")
        .cache_ttl(TTL)
        .build()
        .unwrap();
    // New connections for every request, so each one goes through the connector.
    let client: TestClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build::<_, Full<Bytes>>(layer.layer(FallbackLayer::http_connector()));
    let url = em.url();

    // Phase 1: intolerant. The first walk learns TLS 1.0; everyone else starts there.
    let start1 = Instant::now();
    let p1 = phase(&client, &url, "intolerant").await;
    let c1 = converged(&p1, start1, Tls1_0, "intolerant");
    let walks = p1.iter().filter(|d| !d.info.from_cache).count();
    assert!(
        walks <= PER_TICK,
        "{walks} learning walks: single flight shares one"
    );
    assert!(p1.iter().all(|d| d.info.version == Tls1_0));
    let hellos1 = em.count();

    // Phase 2: fixed. The learned TLS 1.0 hello (SCSV) meets a server that can do better,
    // which refuses it; the connector forgets and re-probes from the top at once.
    em.set_backend(new.addr());
    em.set_rules(vec![]);
    em.clear();
    let start2 = Instant::now();
    let p2 = phase(&client, &url, "fixed").await;
    let c2 = converged(&p2, start2, Tls1_3, "fixed");
    let reprobes = p2
        .iter()
        .filter(|d| {
            d.info
                .attempts
                .iter()
                .any(|a| a.outcome.short() == "alert:86")
        })
        .count();
    assert!(reprobes >= 1, "the learned rung was tried and refused");
    let below: Vec<&TlsInfo> = p2
        .iter()
        .map(|d| &d.info)
        .filter(|i| i.version != Tls1_3)
        .collect();
    assert!(below.is_empty(), "fixed: below TLS 1.3: {below:?}");
    assert!(layer.stats().hosts.is_empty(), "{:?}", layer.stats().hosts);

    // Phase 3: intolerant again, in front of the old box. The cached decision is "healthy,
    // rung 0"; connections start there, fail, and walk down from the cached rung.
    em.set_backend(old.addr());
    em.set_rules(vec![Rule::close_above(Tls1_0)]);
    em.clear();
    let start3 = Instant::now();
    let p3 = phase(&client, &url, "intolerant again").await;
    let c3 = converged(&p3, start3, Tls1_0, "intolerant again");
    let first = &p3[0].info;
    assert_eq!(first.version, Tls1_0);
    assert_eq!(first.handshakes(), 6, "walked down from rung 0: {first:?}");
    assert_eq!(layer.stats().hosts.len(), 1);
    assert_eq!(layer.stats().hosts[0].profile, "tls10-legacy");

    eprintln!(
        "flapping: {} + {} + {} requests, converged after {c1:?} / {c2:?} / {c3:?} (TTL {TTL:?}); \
         {hellos1} hellos in phase 1, {reprobes} re-probes in phase 2, {} expiries",
        p1.len(),
        p2.len(),
        p3.len(),
        layer.stats().expired
    );
    for c in [c1, c2, c3] {
        assert!(c <= TTL, "converged after {c:?}");
    }
}
