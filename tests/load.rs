//! Load and soak: one client, twenty emulated hosts with different behaviours, two rounds of
//! 1,000 requests with 64 in flight. Every request must end as its host's behaviour predicts,
//! sockets must all be closed after the client is dropped, and resident memory must not grow
//! in the second round. This file holds one test so that the descriptor and memory counts are
//! its own.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::Request;
use tls_fallback::testkit::{Emulator, Identity, Rule, TestPki, TlsServer};
use tls_fallback::{ErrorKind, FallbackLayerBuilder, TlsVersion};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use TlsVersion::*;

const HOSTS: usize = 20;
const REQUESTS_PER_ROUND: usize = 1_000;
const IN_FLIGHT: usize = 64;
/// Resident memory the second round may add.
const RSS_GROWTH_LIMIT: u64 = 20 * 1024 * 1024;

/// What a host's requests must end in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Ok(TlsVersion),
    /// Success through a pin at this version.
    Pinned(TlsVersion),
    Err(ErrorKind),
}

/// How a host's policy is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gate {
    Default,
    AllowLegacy,
    Pin(TlsVersion),
}

struct HostSpec {
    name: &'static str,
    /// `None`: the test kit's default (TLS 1.2 and 1.3); `Some(v)`: only `v`.
    only: Option<TlsVersion>,
    identity: Option<fn(&TestPki) -> Identity>,
    rules: Vec<Rule>,
    gate: Gate,
    expect: Expect,
}

fn spec(
    name: &'static str,
    only: Option<TlsVersion>,
    rules: Vec<Rule>,
    gate: Gate,
    expect: Expect,
) -> HostSpec {
    HostSpec {
        name,
        only,
        identity: None,
        rules,
        gate,
        expect,
    }
}

fn hosts() -> Vec<HostSpec> {
    use Expect::*;
    use Gate::*;
    let untrusted: fn(&TestPki) -> Identity = |p| p.untrusted.clone();
    let expired: fn(&TestPki) -> Identity = |p| p.expired.clone();
    let wrong_name: fn(&TestPki) -> Identity = |p| p.wrong_name.clone();
    vec![
        spec("healthy modern a", None, vec![], Default, Ok(Tls1_3)),
        spec("healthy modern b", None, vec![], Default, Ok(Tls1_3)),
        spec(
            "tls12-only server",
            Some(Tls1_2),
            vec![],
            Default,
            Ok(Tls1_2),
        ),
        spec(
            "close above 1.0, legacy allowed",
            Some(Tls1_0),
            vec![Rule::close_above(Tls1_0)],
            AllowLegacy,
            Ok(Tls1_0),
        ),
        spec(
            "reset above 1.0, legacy not allowed",
            Some(Tls1_0),
            vec![Rule::reset_above(Tls1_0)],
            Default,
            Err(ErrorKind::BelowFloor),
        ),
        spec(
            "tls13 hang in front of tls12",
            Some(Tls1_2),
            vec![Rule::hang_above(Tls1_2)],
            Default,
            Ok(Tls1_2),
        ),
        spec(
            "f5 length hang",
            None,
            vec![Rule::f5_hang()],
            Default,
            Ok(Tls1_3),
        ),
        spec(
            "cipher-count intolerance",
            None,
            vec![Rule::close_if_ciphers_above(16)],
            Default,
            Ok(Tls1_3),
        ),
        spec(
            "pinned to tls12 behind close above 1.2",
            None,
            vec![Rule::close_above(Tls1_2)],
            Pin(Tls1_2),
            Pinned(Tls1_2),
        ),
        spec(
            "pinned to tls10 behind close above 1.0",
            Some(Tls1_0),
            vec![Rule::close_above(Tls1_0)],
            Pin(Tls1_0),
            Pinned(Tls1_0),
        ),
        HostSpec {
            identity: Some(untrusted),
            ..spec(
                "unknown CA",
                None,
                vec![],
                Default,
                Err(ErrorKind::Certificate),
            )
        },
        HostSpec {
            identity: Some(expired),
            ..spec(
                "expired certificate behind close above 1.2",
                Some(Tls1_2),
                vec![Rule::close_above(Tls1_2)],
                Default,
                Err(ErrorKind::Certificate),
            )
        },
        HostSpec {
            identity: Some(wrong_name),
            ..spec(
                "wrong host name behind cipher-count",
                None,
                vec![Rule::close_if_ciphers_above(16)],
                Default,
                Err(ErrorKind::Certificate),
            )
        },
        spec(
            "tls10 server, legacy not allowed",
            Some(Tls1_0),
            vec![],
            Default,
            Err(ErrorKind::LegacyNotAllowed),
        ),
        spec(
            "attacker resetting tls13 hellos",
            None,
            vec![Rule::reset_above(Tls1_2)],
            AllowLegacy,
            Err(ErrorKind::DowngradeDetected),
        ),
        spec(
            "alert 70 above 1.2",
            Some(Tls1_2),
            vec![Rule::alert_above(Tls1_2, 70)],
            Default,
            Ok(Tls1_2),
        ),
        spec(
            "close above 1.1, legacy allowed",
            Some(Tls1_1),
            vec![Rule::close_above(Tls1_1)],
            AllowLegacy,
            Ok(Tls1_1),
        ),
        spec(
            "garbage answer",
            None,
            vec![Rule::garbage()],
            AllowLegacy,
            Err(ErrorKind::Handshake),
        ),
        spec(
            "hello rewritten without supported_versions",
            None,
            vec![Rule::strip_tls13()],
            AllowLegacy,
            Err(ErrorKind::DowngradeDetected),
        ),
        spec(
            "reset above 1.2",
            Some(Tls1_2),
            vec![Rule::reset_above(Tls1_2)],
            Default,
            Ok(Tls1_2),
        ),
    ]
}

struct Host {
    spec: HostSpec,
    _server: TlsServer,
    emulator: Emulator,
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// What one request ended in.
fn outcome(
    res: &Result<(hyper::Response<()>, Bytes), hyper_util::client::legacy::Error>,
) -> Expect {
    match res {
        Ok((res, _)) => {
            let info = tls(res);
            if info.pinned {
                Expect::Pinned(info.version)
            } else {
                Expect::Ok(info.version)
            }
        }
        Err(e) => Expect::Err(tls_error(e).kind()),
    }
}

/// One round: `REQUESTS_PER_ROUND` GETs spread over the hosts in an interleaved order, at most
/// `IN_FLIGHT` at once, each checked against its host's expectation.
async fn round(client: &TestClient, hosts: &Arc<Vec<Host>>, n: usize) -> Duration {
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = JoinSet::new();
    for i in 0..REQUESTS_PER_ROUND {
        let permit = Arc::clone(&permits).acquire_owned().await.unwrap();
        let host = (i * 7 + n) % HOSTS;
        let url = hosts[host].emulator.url();
        let client = client.clone();
        tasks.spawn(async move {
            let req = Request::get(url).body(Full::new(Bytes::new())).unwrap();
            let res = tokio::time::timeout(Duration::from_secs(60), async {
                let res = client.request(req).await?;
                let (parts, body) = res.into_parts();
                let bytes = http_body_util::BodyExt::collect(body)
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                Ok((hyper::Response::from_parts(parts, ()), bytes))
            })
            .await
            .expect("every request ends within 60 s");
            drop(permit);
            (i, host, outcome(&res))
        });
    }
    let mut done = 0;
    while let Some(joined) = tasks.join_next().await {
        let (i, host, got) = joined.unwrap();
        let spec = &hosts[host].spec;
        assert_eq!(
            got, spec.expect,
            "round {n}, request {i} to host {host} ({})",
            spec.name
        );
        done += 1;
    }
    assert_eq!(done, REQUESTS_PER_ROUND);
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_to_twenty_mixed_hosts_end_as_predicted_without_leaks() {
    let fds_before = open_fds();
    let pki = TestPki::shared();
    let mut built = Vec::new();
    for spec in hosts() {
        let mut server = TlsServer::builder();
        if let Some(v) = spec.only {
            server = server.only(v);
        }
        if let Some(id) = spec.identity {
            server = server.identity(id(pki));
        }
        let server = server.start().await.unwrap();
        let emulator = Emulator::start(server.addr(), spec.rules.clone())
            .await
            .unwrap();
        built.push(Host {
            spec,
            _server: server,
            emulator,
        });
    }
    assert_eq!(built.len(), HOSTS);
    let hosts = Arc::new(built);
    let mut b: FallbackLayerBuilder = builder()
        .handshake_timeout(Duration::from_secs(2))
        // Hangs are waited out (one per learning walk), not raced: fewer moving parts.
        .stall_timeout(None);
    for h in hosts.iter() {
        let pattern = format!("localhost:{}", h.emulator.addr().port());
        match h.spec.gate {
            Gate::Default => {}
            Gate::AllowLegacy => b = b.allow_legacy(pattern),
            Gate::Pin(v) => b = b.pin(pattern, v),
        }
    }
    let layer = b.build().unwrap();
    let rss_start = rss_bytes();
    {
        // No pooling: every request is a new connection through the connector (the worst
        // case for it; a pooled client would reuse most of them).
        let client: TestClient =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build(tower_layer::Layer::layer(
                    &layer,
                    tls_fallback::FallbackLayer::http_connector(),
                ));
        let t1 = round(&client, &hosts, 1).await;
        let rss_1 = rss_bytes();
        let t2 = round(&client, &hosts, 2).await;
        let rss_2 = rss_bytes();
        let stats = layer.stats();
        let hellos: usize = hosts.iter().map(|h| h.emulator.count()).sum();
        let failed: usize = hosts.iter().map(|h| h.emulator.failed()).sum();
        eprintln!(
            "load: 2 x {REQUESTS_PER_ROUND} requests, {IN_FLIGHT} in flight, {HOSTS} hosts: \
             round 1 {t1:?}, round 2 {t2:?}; {} connections, {} handshakes, {hellos} hellos \
             seen ({failed} failed by the emulators), {} cache hits, {} single-flight waits, \
             {} downgrades",
            stats.connections,
            stats.handshakes,
            stats.cache_hits,
            stats.single_flight_waits,
            stats.downgrades
        );
        eprintln!(
            "load: RSS start {:.1} MiB, after round 1 {:.1} MiB, after round 2 {:.1} MiB \
             (round 2 growth {:+.1} MiB, limit {:.0} MiB)",
            mib(rss_start),
            mib(rss_1),
            mib(rss_2),
            mib(rss_2) - mib(rss_1),
            mib(RSS_GROWTH_LIMIT)
        );
        assert!(
            rss_2.saturating_sub(rss_1) < RSS_GROWTH_LIMIT,
            "RSS grew {} bytes in round 2",
            rss_2 - rss_1
        );
        // Learned once per host that needs a fallback, not once per request.
        let learned: Vec<&str> = stats.hosts.iter().map(|h| h.profile.as_str()).collect();
        assert_eq!(learned.len(), 6, "{:?}", stats.hosts);
        assert!(stats.downgrades >= 2, "{}", stats.downgrades);
    }
    drop(layer);
    drop(hosts);
    // Every socket (client, emulators, servers) must close; give them a bounded moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut fds_after = open_fds();
    while fds_after > fds_before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        fds_after = open_fds();
    }
    eprintln!("load: open fds before {fds_before}, after {fds_after}");
    assert!(
        fds_after <= fds_before + 2,
        "fds {fds_before} -> {fds_after}"
    );
}
