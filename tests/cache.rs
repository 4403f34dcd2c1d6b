//! The per-host decision cache through a real client: learn once, single flight, expiry,
//! forgetting on downgrade, the file store, and the operator's signals.

mod common;

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tls_fallback::testkit::{Action, Emulator, Rule, TlsServer};
use tls_fallback::{ErrorKind, TlsVersion};
use TlsVersion::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_connection_to_a_learned_host_is_one_hello_at_the_learned_version_with_scsv() {
    let (_server, em) = legacy_gateway().await;
    let layer = builder().allow_legacy("localhost").build().unwrap();
    let client = client(&layer);
    let (first, _) = get(&client, &em.url()).await.unwrap();
    assert_eq!(tls(&first).handshakes(), 6);
    // A new client (no pooled connection) but the same layer: the decision is shared.
    em.clear();
    let (second, _) = get(&common::client(&layer), &em.url()).await.unwrap();
    assert_eq!(ladder_seen(&em), [(Some(Tls1_0), true)]);
    let info = tls(&second);
    assert!(info.from_cache);
    assert_eq!((info.version, info.handshakes()), (Tls1_0, 1));
    let stats = layer.stats();
    assert_eq!(stats.hosts.len(), 1);
    assert_eq!(stats.hosts[0].profile, "tls10-legacy");
    assert_eq!(stats.hosts[0].uses, 1);
    assert!(
        stats.hosts[0].reason.contains("modern: closed"),
        "{:?}",
        stats.hosts[0]
    );
    assert_eq!(stats.learned, 1);
    assert_eq!(stats.fallbacks.get("closed"), Some(&5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_gateway_is_reprobed_and_after_the_ttl_walks_from_the_top() {
    let (legacy, em) = legacy_gateway().await;
    let modern = TlsServer::modern().await.unwrap();
    let layer = builder()
        .allow_legacy("localhost")
        .cache_ttl(Duration::from_secs(1))
        .build()
        .unwrap();
    let (res, _) = get(&client(&layer), &em.url()).await.unwrap();
    assert_eq!(tls(&res).version, Tls1_0);

    // The vendor replaces the box. Within the TTL the learned TLS 1.0 hello (with SCSV) meets
    // a server that can do better and is refused as an inappropriate fallback: the decision is
    // forgotten and this same connection walks from the top.
    em.set_backend(modern.addr());
    em.set_rules(vec![]);
    em.clear();
    let (res, _) = get(&client(&layer), &em.url()).await.unwrap();
    let info = tls(&res);
    assert_eq!(info.version, Tls1_3);
    let outcomes: Vec<String> = info.attempts.iter().map(|a| a.outcome.short()).collect();
    // OpenSSL 3.0's server speaks TLS 1.0 at its default level and refuses the SCSV hello as a
    // fallback (86); 3.5+ no longer speaks 1.0 there and answers protocol_version (70), and the
    // walk from the learned rung runs out. Either way: forget, and walk from the top once.
    assert!(
        outcomes == ["alert:86", "ok"] || outcomes == ["alert:70", "ok"],
        "{outcomes:?}"
    );
    assert_eq!(
        ladder_seen(&em),
        [(Some(Tls1_0), true), (Some(Tls1_3), false)]
    );
    assert!(layer.stats().hosts.is_empty(), "no fallback remembered");

    // It breaks again: the healthy decision's rung fails and the walk goes on down.
    em.set_backend(legacy.addr());
    em.set_rules(vec![Rule::close_above(Tls1_0)]);
    em.clear();
    let (res, _) = get(&client(&layer), &em.url()).await.unwrap();
    assert_eq!(tls(&res).version, Tls1_0);
    assert_eq!(em.count(), 6);

    // Fixed again, and this time the decision expires first: the next connection starts at
    // the top (one hello, TLS 1.3), not at the learned rung.
    em.set_backend(modern.addr());
    em.set_rules(vec![]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    em.clear();
    let (res, _) = get(&client(&layer), &em.url()).await.unwrap();
    assert_eq!(
        tls(&res).version,
        Tls1_3,
        "re-probed from the top after expiry"
    );
    assert_eq!(ladder_seen(&em), [(Some(Tls1_3), false)]);
    assert!(layer.stats().expired >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_first_contacts_share_one_learning_walk() {
    let (server, em) = legacy_gateway().await;
    // The TLS 1.0 hellos that pass are held 200 ms: the leader's walk is still running when the
    // other 99 requests arrive, however fast it is (without this, a quiet machine let the
    // leader finish first and nobody waited: seen in CI).
    em.set_rules(vec![
        Rule::close_above(Tls1_0),
        Rule::delay(Duration::from_millis(200)),
    ]);
    let layer = builder().allow_legacy("localhost").build().unwrap();
    // No pooling: every request needs its own connection, the worst case for the cache.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build::<_, http_body_util::Full<hyper::body::Bytes>>(tower_layer::Layer::layer(
            &layer,
            tls_fallback::FallbackLayer::http_connector(),
        ));
    let url = em.url();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let req = hyper::Request::get(url)
                    .body(http_body_util::Full::default())
                    .unwrap();
                let res = tokio::time::timeout(Duration::from_secs(60), client.request(req))
                    .await
                    .expect("bounded");
                res.map(|r| tls(&hyper::Response::from_parts(r.into_parts().0, ())).version)
            })
        })
        .collect();
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap().expect("every request succeeds"));
    }
    assert!(versions.iter().all(|v| *v == Tls1_0));
    // Closed hellos (the delayed ones were passed on, late).
    let failed = (em.hellos().iter())
        .filter(|h| h.action == Action::Close)
        .count();
    assert!(
        failed <= 5,
        "failed hellos {failed}: at most one per rung above TLS 1.0"
    );
    assert_eq!(em.count() - failed, server.handshakes() as usize);
    let waits = layer.stats().single_flight_waits;
    assert!(waits > 0, "some requests waited for the leader");
    eprintln!("100 concurrent: {failed} failed hellos, {waits} single-flight waits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downgrade_signal_removes_the_learned_entry() {
    let server = TlsServer::modern().await.unwrap();
    let em = Emulator::start(server.addr(), vec![Rule::close_if_ciphers_above(16)])
        .await
        .unwrap();
    let layer = builder().build().unwrap();
    // Twice: a reshaped hello at the top version is learned when a second walk needs it too.
    for _ in 0..2 {
        let (res, _) = get(&client(&layer), &em.url()).await.unwrap();
        assert_eq!(&*tls(&res).profile, "modern-compact");
    }
    assert_eq!(layer.stats().hosts.len(), 1);
    assert!(!layer.stats().hosts[0].provisional);
    // An attacker now resets every TLS 1.3 hello: the learned rung fails, the next one offers
    // TLS 1.2 with SCSV and the real server answers inappropriate_fallback.
    em.set_rules(vec![Rule::reset_above(Tls1_2)]);
    em.clear();
    let err = tls_error(&get(&client(&layer), &em.url()).await.unwrap_err());
    assert_eq!(err.kind(), ErrorKind::DowngradeDetected);
    let outcomes: Vec<String> = err.attempts().iter().map(|a| a.outcome.short()).collect();
    assert_eq!(
        outcomes,
        ["reset", "alert:86"],
        "nothing after the downgrade signal"
    );
    assert_eq!(
        ladder_seen(&em),
        [(Some(Tls1_3), true), (Some(Tls1_2), true)]
    );
    assert!(layer.stats().hosts.is_empty(), "the entry is gone");
    assert_eq!(layer.stats().downgrades, 1);
    assert_eq!(server.versions().get("TLSv1.2"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reshaped_hello_at_the_top_version_is_learned_only_when_a_second_walk_needs_it() {
    // SCSV cannot vouch for a fallback that keeps the version: one reset must not choose the
    // hello of every later connection. The box here really is intolerant of long suite lists.
    let server = TlsServer::modern().await.unwrap();
    let em = Emulator::start(server.addr(), vec![Rule::close_if_ciphers_above(16)])
        .await
        .unwrap();
    let layer = builder().build().unwrap();
    let expect_walk = [(Some(Tls1_3), false), (Some(Tls1_3), true)];

    let (res, _) = get(&client(&layer), &em.url()).await.unwrap();
    assert_eq!(&*tls(&res).profile, "modern-compact");
    assert_eq!(ladder_seen(&em), expect_walk);
    let stats = layer.stats();
    assert_eq!(stats.learned, 0, "seen once: not learned yet");
    assert_eq!(stats.hosts.len(), 1);
    assert!(stats.hosts[0].provisional);

    // The second first contact walks from the top again and confirms it.
    em.clear();
    let (res, _) = get(&client(&layer), &em.url()).await.unwrap();
    assert!(!tls(&res).from_cache);
    assert_eq!(ladder_seen(&em), expect_walk);
    let stats = layer.stats();
    assert_eq!(stats.learned, 1);
    assert!(!stats.hosts[0].provisional);

    // From now on: one hello, the compact one, straight away.
    em.clear();
    let (res, _) = get(&client(&layer), &em.url()).await.unwrap();
    assert!(tls(&res).from_cache);
    assert_eq!(tls(&res).handshakes(), 1);
    assert_eq!(ladder_seen(&em), [(Some(Tls1_3), true)]);
    assert!(em.hellos()[0].hello.as_ref().unwrap().cipher_count <= 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reshaped_hello_below_the_top_version_is_provisional_too() {
    // A TLS 1.2 server behind a box that closes TLS 1.3 hellos and long suite lists: the walk
    // ends on tls12-compact after tls12 failed. SCSV vouches for the version cap, not for the
    // shape that tls12-compact trims, so this too waits for a second walk.
    let server = TlsServer::only(Tls1_2).await.unwrap();
    let em = Emulator::start(
        server.addr(),
        vec![Rule::close_above(Tls1_2), Rule::close_if_ciphers_above(16)],
    )
    .await
    .unwrap();
    let layer = builder().build().unwrap();
    for round in 0..2 {
        let (res, _) = get(&client(&layer), &em.url()).await.unwrap();
        assert_eq!(&*tls(&res).profile, "tls12-compact");
        assert_eq!(
            tls(&res).handshakes(),
            4,
            "round {round}: a walk from the top"
        );
        let stats = layer.stats();
        assert_eq!(stats.learned, round, "round {round}");
        assert_eq!(stats.hosts[0].provisional, round == 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_store_survives_a_restart() {
    let (_server, em) = legacy_gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.json");
    {
        let layer = builder()
            .allow_legacy("localhost")
            .cache_file(&path)
            .build()
            .unwrap();
        get(&client(&layer), &em.url()).await.unwrap();
        layer.flush().unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("tls10-legacy"), "{text}");
    em.clear();
    let layer = builder()
        .allow_legacy("localhost")
        .cache_file(&path)
        .build()
        .unwrap();
    let (res, _) = get(&client(&layer), &em.url()).await.unwrap();
    assert_eq!(
        ladder_seen(&em),
        [(Some(Tls1_0), true)],
        "one hello after restart"
    );
    assert!(tls(&res).from_cache);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_decision_naming_another_ladders_rung_is_ignored() {
    // A file written by another version or configuration: rung 1 was "tls12" there, here it
    // is "modern-compact". The rung number alone must not decide where to start.
    let server = TlsServer::modern().await.unwrap();
    let em = Emulator::start(server.addr(), vec![]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.json");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let body = format!(
        r#"{{"version":1,"hosts":[{{"host":"localhost","port":{},"rung":1,"profile":"tls12","reason":"old","learned_at_ms":{now}}}]}}"#,
        em.addr().port()
    );
    std::fs::write(&path, body).unwrap();
    let layer = builder().cache_file(&path).build().unwrap();
    let (res, _) = get(&client(&layer), &em.url()).await.unwrap();
    assert!(!tls(&res).from_cache);
    assert_eq!(&*tls(&res).profile, "modern");
    assert_eq!(ladder_seen(&em), [(Some(Tls1_3), false)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learned_rung_the_policy_no_longer_allows_is_not_used() {
    // Learned with legacy allowed, read back by a process that does not allow it.
    let (_server, em) = legacy_gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.json");
    {
        let layer = builder()
            .allow_legacy("localhost")
            .cache_file(&path)
            .build()
            .unwrap();
        get(&client(&layer), &em.url()).await.unwrap();
        layer.flush().unwrap();
    }
    em.clear();
    let strict = builder().cache_file(&path).build().unwrap();
    let err = tls_error(&get(&client(&strict), &em.url()).await.unwrap_err());
    assert_eq!(err.kind(), ErrorKind::BelowFloor, "{err}");
    assert!(
        em.hellos().iter().all(|h| h.offered() >= Some(Tls1_2)),
        "{:?}",
        ladder_seen(&em)
    );
}

/// Collects formatted tracing events (level + message + fields) for assertions.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);
impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let cap = Captured::default();
    let writer = cap.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    (cap, tracing::subscriber::set_default(subscriber))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_file_warns_and_starts_empty() {
    let (_server, em) = legacy_gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.json");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(b"\x89PNG\r\n\x1a\n\x00garbage{{{")
        .unwrap();
    let (cap, guard) = capture();
    let layer = builder()
        .allow_legacy("localhost")
        .cache_file(&path)
        .build()
        .unwrap();
    drop(guard);
    assert!(cap.text().contains("WARN"), "{}", cap.text());
    assert!(cap.text().contains("corrupt"), "{}", cap.text());
    assert!(layer.stats().hosts.is_empty());
    // It still works, learns, and rewrites the file as valid JSON.
    let (res, _) = get(&client(&layer), &em.url()).await.unwrap();
    assert_eq!(tls(&res).version, Tls1_0);
    layer.flush().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(v["hosts"][0]["profile"], "tls10-legacy");
}

#[tokio::test(flavor = "current_thread")]
async fn learning_is_announced_at_warn_and_stats_serialize() {
    let (_server, em) = legacy_gateway().await;
    let layer = builder().allow_legacy("localhost").build().unwrap();
    let (cap, guard) = capture();
    get(&client(&layer), &em.url()).await.unwrap();
    drop(guard);
    let log = cap.text();
    let warn = log.lines().find(|l| l.contains("WARN")).unwrap_or_default();
    assert!(warn.contains("TLS fallback learned"), "{log}");
    assert!(warn.contains("tls10-legacy"), "{warn}");
    assert!(warn.contains("probe"), "{warn}");
    let json = serde_json::to_value(layer.stats()).unwrap();
    for key in [
        "connections",
        "handshakes",
        "fallbacks",
        "cache_hits",
        "cache_misses",
        "single_flight_waits",
        "hosts",
    ] {
        assert!(json.get(key).is_some(), "stats lack {key}: {json}");
    }
    assert_eq!(json["handshakes"], 6);
    assert_eq!(json["hosts"][0]["profile"], "tls10-legacy");
    assert!(em.hellos().iter().all(|h| h.action != Action::Hang));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_rebuilt_with_another_legacy_gate_keeps_what_the_old_one_learned() {
    // A configuration reload: the gate gains an unrelated pattern, the layer is rebuilt.
    let (_server, em) = legacy_gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.json");
    let old = builder()
        .allow_legacy("localhost")
        .cache_file(&path)
        .build()
        .unwrap();
    let (res, _) = get(&client(&old), &em.url()).await.unwrap();
    assert_eq!(tls(&res).handshakes(), 6);
    em.clear();
    let new = builder()
        .allow_legacy("localhost")
        .allow_legacy("unrelated.example")
        .decisions_of(&old)
        .build()
        .unwrap();
    drop(old);
    let (res, _) = get(&client(&new), &em.url()).await.unwrap();
    assert_eq!(
        ladder_seen(&em),
        [(Some(Tls1_0), true)],
        "one hello, no walk"
    );
    assert!(tls(&res).from_cache);
    assert_eq!(new.stats().hosts.len(), 1);
    // The same file, written by the one store both layers share.
    new.flush().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("tls10-legacy"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_of_refuses_another_ladder_and_a_second_store() {
    let old = builder().build().unwrap();
    let short = tls_fallback::Ladder::new(vec![
        tls_fallback::Profile::modern(),
        tls_fallback::Profile::tls12(),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let rows = [
        ("another ladder", builder().ladder(short).decisions_of(&old)),
        (
            "a cache file too",
            builder()
                .cache_file(dir.path().join("d.json"))
                .decisions_of(&old),
        ),
    ];
    for (name, b) in rows {
        let err = b.build().expect_err(name);
        assert_eq!(err.kind(), ErrorKind::BadInput, "{name}: {err}");
        assert!(err.to_string().contains("decisions_of"), "{name}: {err}");
    }
}
