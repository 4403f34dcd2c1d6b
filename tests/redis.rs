//! Decisions shared through Redis, at the store level: each test runs its own `redis-server`
//! on a free loopback port (no persistence) and talks to it with real `RedisStore`s.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tls_fallback::testkit::RedisServer;
use tls_fallback::{
    Decision, DecisionStore, FallbackLayer, FleetFlight, HostKey, Ladder, Profile, RedisOptions,
    RedisStore,
};

const TTL: Duration = Duration::from_secs(3600);

/// Every log line of the process, to find the WARNs (the store logs from its own thread).
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || Sink(Arc::clone(&sink)))
            .try_init();
        buf
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);
impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn warned_about(needle: &str) -> bool {
    let logs = logs().lock().unwrap();
    String::from_utf8_lossy(&logs)
        .lines()
        .any(|l| l.contains("WARN") && l.contains(needle))
}

/// A store for this ladder, with `legacy` behind the legacy gate.
fn store_with(url: &str, ladder: Ladder, legacy: &[&str]) -> RedisStore {
    logs();
    let mut b = FallbackLayer::builder()
        .system_roots(false)
        .ladder(ladder.clone());
    for p in legacy {
        b = b.allow_legacy(*p);
    }
    let layer = b.build().expect("layer");
    RedisStore::open(RedisOptions::new(url), &ladder, layer.policy(), TTL, 1000).expect("store")
}

fn store(url: &str) -> RedisStore {
    store_with(url, Ladder::default(), &[])
}

fn raw(server: &RedisServer) -> redis::Connection {
    redis::Client::open(server.url())
        .and_then(|c| c.get_connection())
        .expect("raw connection")
}

fn tls12() -> Arc<Decision> {
    Arc::new(Decision::new(2, "tls12".into(), "modern: closed"))
}

/// Polls `f` every 10 ms for at most `within`; true as soon as it holds.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

async fn eventually_async(within: Duration, f: impl Fn() -> bool + Send + 'static) -> bool {
    tokio::task::spawn_blocking(move || eventually(within, f))
        .await
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_learned_on_one_instance_reaches_the_others_within_a_second() {
    let server = RedisServer::start().expect("redis-server");
    let (a, b) = (store(&server.url()), Arc::new(store(&server.url())));
    assert!(a.connected() && b.connected());
    let key = HostKey::new("pay.example", 443);
    a.put(key.clone(), tls12());
    let (b2, k2) = (Arc::clone(&b), key.clone());
    assert!(
        eventually_async(Duration::from_secs(1), move || b2.get(&k2).is_some()).await,
        "B applies A's decision within 1 s"
    );
    assert_eq!(b.get(&key).map(|d| d.rung), Some(2));

    // An instance started later reads it on its first miss, one bounded read.
    let c = store(&server.url());
    assert!(c.get(&key).is_none());
    let started = Instant::now();
    let got = c.fetch_remote(&key).await.expect("read from Redis");
    assert_eq!((got.rung, &*got.profile), (2, "tls12"));
    assert!(started.elapsed() < Duration::from_millis(50));
    assert!(
        c.get(&key).is_some(),
        "kept locally: the next lookup is local"
    );
    assert_eq!(c.shared_stats().map(|s| s.read), Some(1));

    // A forget (a downgrade signal) on B takes it away from A too.
    b.remove(&key);
    let k3 = key.clone();
    let a = Arc::new(a);
    let a2 = Arc::clone(&a);
    assert!(
        eventually_async(Duration::from_secs(1), move || a2.get(&k3).is_none()).await,
        "A forgets within 1 s"
    );
    assert!(
        c.fetch_remote(&key).await.is_none(),
        "and Redis no longer has it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_expiry_is_the_time_the_decision_has_left() {
    let server = RedisServer::start().expect("redis-server");
    let a = store(&server.url());
    let key = HostKey::new("aged.example", 443);
    let mut d = Decision::new(2, "tls12".into(), "modern: closed");
    d.learned_at_ms -= 10 * 60 * 1000;
    a.put(key.clone(), Arc::new(d));
    let mut con = raw(&server);
    let name = a.key_of(&key);
    let mut pttl = -2i64;
    assert!(eventually(Duration::from_secs(1), || {
        pttl = redis::cmd("PTTL").arg(&name).query(&mut con).unwrap_or(-2);
        pttl > 0
    }));
    let left = 50 * 60 * 1000;
    assert!(
        (left - 5_000..=left).contains(&pttl),
        "PTTL {pttl} ms, expected about 50 minutes (TTL 1 h, learned 10 min ago)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisional_decisions_never_reach_redis() {
    let server = RedisServer::start().expect("redis-server");
    let a = store(&server.url());
    let b = store(&server.url());
    let seen_once = HostKey::new("seen-once.example", 443);
    let learned = HostKey::new("learned.example", 443);
    let provisional = Decision::new(1, "modern-compact".into(), "modern: reset").into_provisional();
    a.put(seen_once.clone(), Arc::new(provisional));
    a.put(learned.clone(), tls12());
    // Writes go out in order: once the second is there, the first was handled.
    assert!(eventually(Duration::from_secs(1), || b
        .get(&learned)
        .is_some()));
    let mut con = raw(&server);
    let exists: u32 = redis::cmd("EXISTS")
        .arg(a.key_of(&seen_once))
        .query(&mut con)
        .unwrap();
    assert_eq!(exists, 0, "the provisional decision is not in Redis");
    assert!(b.get(&seen_once).is_none(), "nor sent to B");
    assert!(
        a.get(&seen_once).is_some_and(|d| d.provisional),
        "A keeps it locally"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poisoned_values_are_dropped_with_a_warn() {
    let server = RedisServer::start().expect("redis-server");
    let b = store_with(&server.url(), Ladder::default(), &["old.example"]);
    let mut con = raw(&server);
    let now = tls_fallback_now();
    let json = |rung: u8, profile: &str| {
        format!(r#"{{"rung":{rung},"profile":"{profile}","reason":"x","learned_at_ms":{now}}}"#)
            .into_bytes()
    };
    let rows: Vec<(&str, &str, Vec<u8>)> = vec![
        ("unknown rung", "unknown.example", json(9, "tls12")),
        ("garbage", "garbage.example", b"\x00\xffnot json{{".to_vec()),
        ("10 MB", "huge.example", vec![b'{'; 10 * 1024 * 1024]),
    ];
    for (i, (name, host, value)) in rows.iter().enumerate() {
        let key = HostKey::new(host, 443);
        let _: () = redis::cmd("SET")
            .arg(b.key_of(&key))
            .arg(value.as_slice())
            .query(&mut con)
            .unwrap();
        assert!(b.fetch_remote(&key).await.is_none(), "{name}: not used");
        assert!(b.get(&key).is_none(), "{name}: not kept");
        assert_eq!(
            b.shared_stats().map(|s| s.dropped_invalid),
            Some(i as u64 + 1),
            "{name}: counted"
        );
        assert!(
            eventually(Duration::from_secs(1), || warned_about(&b.key_of(&key))),
            "{name}: a WARN names the key"
        );
    }
    // A legacy rung for a host outside this gate: what an instance with a wider gate writes
    // under the same keys. Not used, not kept, and not counted as poison.
    let outside = HostKey::new("forbidden.example", 443);
    let _: () = redis::cmd("SET")
        .arg(b.key_of(&outside))
        .arg(json(5, "tls10-legacy"))
        .query(&mut con)
        .unwrap();
    assert!(
        b.fetch_remote(&outside).await.is_none(),
        "forbidden: not used"
    );
    assert!(b.get(&outside).is_none(), "forbidden: not kept");
    assert_eq!(b.shared_stats().map(|s| s.dropped_invalid), Some(3));
    // The control: a legacy rung for a host inside the gate is fine.
    let ok = HostKey::new("old.example", 443);
    let _: () = redis::cmd("SET")
        .arg(b.key_of(&ok))
        .arg(json(5, "tls10-legacy"))
        .query(&mut con)
        .unwrap();
    assert_eq!(b.fetch_remote(&ok).await.map(|d| d.rung), Some(5));

    // The same poison published on the channel is dropped too.
    let message = format!(
        r#"{{"from":"intruder","host":"pub.example","port":443,"op":"learn","decision":{}}}"#,
        String::from_utf8_lossy(&json(9, "tls12"))
    );
    let before = b.shared_stats().map(|s| s.dropped_invalid);
    for payload in [message.into_bytes(), b"garbage".to_vec()] {
        let _: () = redis::cmd("PUBLISH")
            .arg(b.channel())
            .arg(payload)
            .query(&mut con)
            .unwrap();
    }
    assert!(eventually(Duration::from_secs(1), || {
        b.shared_stats().map(|s| s.dropped_invalid) == before.map(|n| n + 2)
    }));
    assert!(b.get(&HostKey::new("pub.example", 443)).is_none());
}

fn tls_fallback_now() -> u64 {
    Decision::new(0, "modern".into(), "").learned_at_ms
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_then_restarted_sharing_resumes() {
    let mut server = RedisServer::start().expect("redis-server");
    let a = Arc::new(store(&server.url()));
    let b = Arc::new(store(&server.url()));
    let known = HostKey::new("known.example", 443);
    a.put(known.clone(), tls12());
    assert!(eventually(Duration::from_secs(1), || b
        .get(&known)
        .is_some()));

    server.kill();
    let a2 = Arc::clone(&a);
    assert!(eventually_async(Duration::from_secs(3), move || !a2.connected()).await);
    assert!(a.get(&known).is_some(), "local decisions keep answering");
    let started = Instant::now();
    assert!(b
        .fetch_remote(&HostKey::new("new.example", 443))
        .await
        .is_none());
    assert!(
        started.elapsed() < Duration::from_millis(60),
        "no wait beyond the bounded read: {:?}",
        started.elapsed()
    );
    a.put(HostKey::new("while-down.example", 443), tls12()); // dropped, no panic, no wait

    server.restart().expect("restart");
    let (a3, b3) = (Arc::clone(&a), Arc::clone(&b));
    assert!(
        eventually_async(Duration::from_secs(5), move || a3.connected()
            && b3.connected())
        .await,
        "both reconnect by themselves"
    );
    let after = HostKey::new("after.example", 443);
    a.put(after.clone(), tls12());
    let (b4, k4) = (Arc::clone(&b), after.clone());
    assert!(
        eventually_async(Duration::from_secs(1), move || b4.get(&k4).is_some()).await,
        "sharing resumed: B receives A's new decision"
    );
    assert!(a.shared_stats().is_some_and(|s| s.errors > 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ladders_never_read_each_others_decisions_two_legacy_gates_do() {
    let server = RedisServer::start().expect("redis-server");
    let a = store(&server.url());
    let same = store(&server.url());
    let short = Ladder::new(vec![
        Profile::modern(),
        Profile::tls12(),
        Profile::tls12_compact(),
    ]);
    let other = store_with(&server.url(), short, &[]);
    let gated = store_with(&server.url(), Ladder::default(), &["*.example"]);
    let key = HostKey::new("pay.example", 443);
    assert_ne!(a.key_of(&key), other.key_of(&key));
    // The legacy gate says which rungs an instance may use, not what a rung is: shared.
    assert_eq!(a.key_of(&key), gated.key_of(&key));
    assert_eq!(a.key_of(&key), same.key_of(&key));
    a.put(key.clone(), tls12());
    assert!(eventually(Duration::from_secs(1), || same
        .get(&key)
        .is_some()
        && gated.get(&key).is_some()));
    assert!(other.get(&key).is_none());
    assert!(other.fetch_remote(&key).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_the_layer_builds_and_learns_alone() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let url = format!("redis://127.0.0.1:{port}");
    let started = Instant::now();
    let s = store(&url);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(!s.connected());
    let key = HostKey::new("pay.example", 443);
    let started = Instant::now();
    assert!(s.fetch_remote(&key).await.is_none());
    assert!(matches!(
        s.fleet_flight(&key, Duration::from_secs(5)).await,
        FleetFlight::Alone
    ));
    assert!(started.elapsed() < Duration::from_millis(20));
    s.put(key.clone(), tls12());
    assert!(s.get(&key).is_some(), "learning alone still works");
    assert!(eventually(Duration::from_secs(1), || warned_about(
        &format!(":{port}")
    )));

    let layer = FallbackLayer::builder()
        .system_roots(false)
        .redis(&url)
        .build();
    assert!(layer.is_ok(), "the layer builds with Redis down");
}

#[test]
fn a_bad_redis_url_is_a_clear_config_error() {
    for url in [
        "http://127.0.0.1:6379",
        "redis://127.0.0.1:notaport",
        "redis://",
    ] {
        let err = FallbackLayer::builder()
            .system_roots(false)
            .redis(url)
            .build()
            .expect_err(url)
            .to_string();
        assert!(
            err.contains("bad Redis URL") && err.contains("expected redis://"),
            "{url}: {err}"
        );
    }
    let err = FallbackLayer::builder()
        .system_roots(false)
        .redis("redis://:s3cret@[::1")
        .build()
        .expect_err("bad")
        .to_string();
    assert!(!err.contains("s3cret"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_flight_one_instance_walks_the_others_wait_for_its_decision() {
    let server = RedisServer::start().expect("redis-server");
    let a = store(&server.url());
    let b = Arc::new(store(&server.url()));
    let key = HostKey::new("fresh.example", 443);
    let lease = match a.fleet_flight(&key, Duration::from_secs(2)).await {
        FleetFlight::Lead(lease) => lease,
        other => panic!("the first instance leads, got {other:?}"),
    };
    let (b2, k2) = (Arc::clone(&b), key.clone());
    let waiter = tokio::spawn(async move {
        let started = Instant::now();
        let flight = b2.fleet_flight(&k2, Duration::from_secs(2)).await;
        (flight, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.put(key.clone(), tls12());
    drop(lease);
    let (flight, waited) = waiter.await.unwrap();
    assert!(matches!(flight, FleetFlight::Concluded), "{flight:?}");
    assert!(
        waited < Duration::from_secs(1),
        "woken by the release: {waited:?}"
    );
    assert_eq!(b.get(&key).map(|d| d.rung), Some(2), "with A's decision");

    // A holder that concludes with nothing to share (a failed or provisional walk) still
    // wakes the waiters at once; a lock released is free for the next one.
    let other = HostKey::new("failing.example", 443);
    let lease = match a.fleet_flight(&other, Duration::from_secs(2)).await {
        FleetFlight::Lead(lease) => lease,
        f => panic!("{f:?}"),
    };
    let (b3, k3) = (Arc::clone(&b), other.clone());
    let waiter = tokio::spawn(async move { b3.fleet_flight(&k3, Duration::from_secs(2)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(lease);
    assert!(matches!(waiter.await.unwrap(), FleetFlight::Concluded));
    assert!(b.get(&other).is_none(), "nothing learned: B walks");
    assert!(matches!(
        b.fleet_flight(&other, Duration::from_secs(2)).await,
        FleetFlight::Lead(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lock_holder_costs_the_others_at_most_the_wait() {
    let server = RedisServer::start().expect("redis-server");
    let mut options = RedisOptions::new(server.url());
    options.lock_time = Duration::from_millis(400);
    let layer = FallbackLayer::builder()
        .system_roots(false)
        .build()
        .unwrap();
    let a = RedisStore::open(options, &Ladder::default(), layer.policy(), TTL, 100).unwrap();
    let b = store(&server.url());
    let key = HostKey::new("lost.example", 443);
    let lease = a.fleet_flight(&key, Duration::from_secs(1)).await;
    assert!(matches!(lease, FleetFlight::Lead(_)));
    std::mem::forget(lease); // the holder vanishes without a word
    let started = Instant::now();
    assert!(matches!(
        b.fleet_flight(&key, Duration::from_millis(300)).await,
        FleetFlight::Alone
    ));
    let waited = started.elapsed();
    assert!(
        (Duration::from_millis(280)..Duration::from_millis(800)).contains(&waited),
        "waited {waited:?}, the wait was 300 ms"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        matches!(
            b.fleet_flight(&key, Duration::from_millis(300)).await,
            FleetFlight::Lead(_)
        ),
        "after the lock time the host is free again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_the_url_is_used_and_a_wrong_one_means_learning_alone() {
    let server = RedisServer::start_with(&["--requirepass", "s3cret"]).expect("redis-server");
    let port = server.port();
    let good = format!("redis://:s3cret@127.0.0.1:{port}");
    let (a, b) = (store(&good), store(&good));
    assert!(a.connected() && b.connected(), "authenticated");
    let key = HostKey::new("auth.example", 443);
    a.put(key.clone(), tls12());
    assert!(eventually(Duration::from_secs(1), || b.get(&key).is_some()));

    let wrong = store(&format!("redis://:wrong@127.0.0.1:{port}"));
    assert!(!wrong.connected(), "a wrong password is not a connection");
    assert!(wrong.fetch_remote(&key).await.is_none());
    let logs = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    assert!(
        !logs.contains("s3cret") && !logs.contains(":wrong@"),
        "no password in the logs"
    );
}

/// A TCP relay in front of Redis that delays every answer by `delay` and keeps what clients
/// sent, to see on the wire which commands a first contact makes.
struct SlowRelay {
    url: String,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl SlowRelay {
    async fn start(server: &RedisServer, delay: Duration) -> SlowRelay {
        let upstream = server.url().trim_start_matches("redis://").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let sent = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&sent);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(redis) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut rr, mut rw) = redis.into_split();
                let keep = Arc::clone(&keep);
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 || rw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        keep.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                });
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = rr.read(&mut buf).await {
                        tokio::time::sleep(delay).await;
                        if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        SlowRelay { url, sent }
    }

    /// How many times the clients sent `needle` (a command and its key, as RESP bulk strings).
    fn count(&self, needle: &str) -> usize {
        let sent = String::from_utf8_lossy(&self.sent.lock().unwrap()).into_owned();
        sent.matches(needle).count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_costs_a_first_contact_one_read_timeout_not_one_per_request() {
    let server = RedisServer::start().expect("redis-server");
    // Answers 200 ms late: past the 50 ms read timeout, well within the heartbeat's.
    let relay = SlowRelay::start(&server, Duration::from_millis(200)).await;
    let store = store(&relay.url);
    assert!(
        eventually(Duration::from_secs(5), || store
            .shared_stats()
            .is_some_and(|s| s.connected)),
        "the heartbeat sees Redis up"
    );
    let key = HostKey::new("slow.example", 443);
    let started = Instant::now();
    // A request that runs out of the read timeout: the first contact walks alone.
    assert!(
        store.fetch_remote(&key).await.is_none(),
        "the read times out"
    );
    let flight = store.fleet_flight(&key, Duration::from_secs(2)).await;
    assert!(matches!(flight, FleetFlight::Alone), "{flight:?}");
    // The next first contact within the second does not ask either.
    let other = HostKey::new("slow2.example", 443);
    assert!(store.fetch_remote(&other).await.is_none());
    eprintln!("three requests in {:?}", started.elapsed());
    // On the wire: one read (the decision key), no lock request after it timed out (the lock
    // key names the host too), nothing for the second host.
    assert_eq!(
        relay.count("slow.example:443"),
        1,
        "one GETRANGE for the first host"
    );
    assert_eq!(relay.count("slow2.example"), 0, "nothing for the second");
    // After the second, Redis is asked again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(store.fetch_remote(&other).await.is_none(), "still too slow");
    assert_eq!(
        relay.count("slow2.example"),
        1,
        "asked again after the slow window"
    );
}
