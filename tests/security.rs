//! Downgrade attacks through a real client: an on-path attacker who closes, resets or rewrites
//! hellos in front of servers that can do better. The guarantees under test: never a connection
//! below what the server can do, TLS_FALLBACK_SCSV on every fallback hello, a downgrade signal is
//! final and forgets what was learned, and the RFC 8446 sentinel is not mistaken for intolerance.

mod common;

use common::*;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tls_fallback::testkit::{Action, Emulator, Rule, TlsServer};
use tls_fallback::{ErrorKind, FallbackLayer, TlsVersion};
use tower_layer::Layer;
use TlsVersion::*;

/// A client that opens a new connection for every request (no pooling), so every request is
/// one walk the emulator can see.
fn fresh_client(layer: &FallbackLayer) -> TestClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build::<_, Full<Bytes>>(layer.layer(FallbackLayer::http_connector()))
}

fn outcomes(attempts: &[tls_fallback::Attempt]) -> Vec<String> {
    attempts.iter().map(|a| a.outcome.short()).collect()
}

/// The handshakes a server completed, all versions together.
fn completed(server: &TlsServer) -> u64 {
    server.versions().values().sum()
}

/// An attacker kills every hello that offers TLS 1.3 in front of a TLS 1.2 + 1.3 server, with
/// the most permissive policy (legacy allowed for every host): each request must end in
/// `DowngradeDetected` after exactly three hellos (the two TLS 1.3 rungs, then TLS 1.2 with
/// SCSV), nothing may connect, nothing may be learned.
async fn attacker_killing_tls13_hellos(rule: Rule, killed: &str) {
    let server = TlsServer::modern().await.unwrap();
    let em = Emulator::start(server.addr(), vec![rule]).await.unwrap();
    let layer = builder().allow_legacy("*").build().unwrap();
    let client = fresh_client(&layer);
    for round in 1..=3u64 {
        em.clear();
        let err = tls_error(&get(&client, &em.url()).await.unwrap_err());
        assert_eq!(err.kind(), ErrorKind::DowngradeDetected, "{err}");
        assert_eq!(outcomes(err.attempts()), [killed, killed, "alert:86"]);
        // The first capped fallback (TLS 1.2, with SCSV) reached the real server, which
        // refused it.
        assert_eq!(
            ladder_seen(&em),
            [
                (Some(Tls1_3), false),
                (Some(Tls1_3), true),
                (Some(Tls1_2), true)
            ]
        );
        assert!(err.to_string().contains("Investigate the path"), "{err}");
        let stats = layer.stats();
        assert!(stats.hosts.is_empty(), "learned {:?}", stats.hosts);
        assert_eq!(stats.downgrades, round);
    }
    assert_eq!(completed(&server), 0, "{:?}", server.versions());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacker_resetting_every_tls13_hello_gets_downgrade_detected_and_no_connection() {
    attacker_killing_tls13_hellos(Rule::reset_above(Tls1_2), "reset").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacker_closing_every_tls13_hello_gets_downgrade_detected_and_no_connection() {
    attacker_killing_tls13_hellos(Rule::close_above(Tls1_2), "closed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacker_alerting_every_tls13_hello_gets_downgrade_detected_and_no_connection() {
    attacker_killing_tls13_hellos(Rule::alert_above(Tls1_2, 70), "alert:70").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacker_closing_everything_above_tls10_cannot_push_a_tls13_server_to_tls10() {
    // The server would speak TLS 1.0 (security level 0) and the host may use legacy TLS: only
    // SCSV on the TLS 1.0 hello stops the attacker.
    let (server, em) = downgrade_attack().await;
    let layer = builder().allow_legacy("localhost").build().unwrap();
    let err = tls_error(&get(&fresh_client(&layer), &em.url()).await.unwrap_err());
    assert_eq!(err.kind(), ErrorKind::DowngradeDetected, "{err}");
    assert_eq!(
        outcomes(err.attempts()),
        ["closed", "closed", "closed", "closed", "closed", "alert:86"]
    );
    let seen = ladder_seen(&em);
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert_eq!(seen[0], (Some(Tls1_3), false));
    assert!(seen[1..].iter().all(|(_, scsv)| *scsv), "{seen:?}");
    assert_eq!(seen[5], (Some(Tls1_0), true));
    assert_eq!(completed(&server), 0);
    assert!(layer.stats().hosts.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacker_resetting_the_first_three_connections_cannot_lower_later_connections() {
    let server = TlsServer::modern().await.unwrap();
    let em = Emulator::start(server.addr(), vec![Rule::reset_first(3)])
        .await
        .unwrap();
    let layer = builder().allow_legacy("*").build().unwrap();
    let client = fresh_client(&layer);
    // The attack: three resets walk the first request down to the fourth rung (compact TLS 1.2
    // with SCSV), which the real server refuses. The request fails; it does not connect low.
    let err = tls_error(&get(&client, &em.url()).await.unwrap_err());
    assert_eq!(err.kind(), ErrorKind::DowngradeDetected, "{err}");
    assert_eq!(
        outcomes(err.attempts()),
        ["reset", "reset", "reset", "alert:86"]
    );
    assert_eq!(
        ladder_seen(&em),
        [
            (Some(Tls1_3), false),
            (Some(Tls1_3), true),
            (Some(Tls1_2), true),
            (Some(Tls1_2), true),
        ]
    );
    assert!(layer.stats().hosts.is_empty());
    // The attacker stops: every later connection is one hello, TLS 1.3, no SCSV.
    em.clear();
    for i in 0..20 {
        let (res, _) = get(&client, &em.url()).await.unwrap();
        let info = tls(&res);
        assert_eq!(
            (info.version, &*info.profile, info.handshakes()),
            (Tls1_3, "modern", 1),
            "request {i}"
        );
    }
    let seen = ladder_seen(&em);
    assert_eq!(seen, vec![(Some(Tls1_3), false); 20]);
    assert_eq!(server.versions().get("TLSv1.3"), Some(&20));
    assert_eq!(completed(&server), 20, "{:?}", server.versions());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fallback_hello_carries_scsv_and_only_the_first_of_a_walk_does_not() {
    // Intolerance modes in front of a server that really is limited to what the last rung
    // offers, so each walk ends in success; the wire shows SCSV on every hello after the first.
    struct Case {
        name: &'static str,
        server: TlsVersion,
        rule: Rule,
        legacy: bool,
        hellos: usize,
    }
    let cases = [
        Case {
            name: "close above 1.0",
            server: Tls1_0,
            rule: Rule::close_above(Tls1_0),
            legacy: true,
            hellos: 6,
        },
        Case {
            name: "reset above 1.0",
            server: Tls1_0,
            rule: Rule::reset_above(Tls1_0),
            legacy: true,
            hellos: 6,
        },
        Case {
            name: "alert 40 above 1.1",
            server: Tls1_1,
            rule: Rule::alert_above(Tls1_1, 40),
            legacy: true,
            hellos: 5,
        },
        Case {
            name: "reset above 1.2",
            server: Tls1_2,
            rule: Rule::reset_above(Tls1_2),
            legacy: false,
            hellos: 3,
        },
        Case {
            name: "alert 70 above 1.2",
            server: Tls1_2,
            rule: Rule::alert_above(Tls1_2, 70),
            legacy: false,
            hellos: 3,
        },
    ];
    for case in cases {
        let server = TlsServer::only(case.server).await.unwrap();
        let em = Emulator::start(server.addr(), vec![case.rule])
            .await
            .unwrap();
        let mut b = builder();
        if case.legacy {
            b = b.allow_legacy("localhost");
        }
        let layer = b.build().unwrap();
        let client = fresh_client(&layer);
        let (res, _) = get(&client, &em.url()).await.unwrap();
        assert_eq!(tls(&res).version, case.server, "{}", case.name);
        let seen = ladder_seen(&em);
        assert_eq!(seen.len(), case.hellos, "{}: {seen:?}", case.name);
        assert!(
            !seen[0].1,
            "{}: the first hello is not a fallback",
            case.name
        );
        assert!(
            seen[1..].iter().all(|(_, scsv)| *scsv),
            "{}: {seen:?}",
            case.name
        );
        assert_eq!(seen.last().unwrap().0, Some(case.server), "{}", case.name);
        // A connection that starts from the learned (fallback) rung carries SCSV too.
        em.clear();
        let (res, _) = get(&client, &em.url()).await.unwrap();
        assert!(tls(&res).from_cache, "{}", case.name);
        assert_eq!(
            ladder_seen(&em),
            [(Some(case.server), true)],
            "{}",
            case.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downgrade_sentinel_from_a_tls13_server_is_detected_and_ends_the_walk() {
    let server = TlsServer::modern().await.unwrap();
    let em = Emulator::start(server.addr(), vec![Rule::strip_tls13()])
        .await
        .unwrap();
    let layer = builder().allow_legacy("*").build().unwrap();
    let err = tls_error(&get(&fresh_client(&layer), &em.url()).await.unwrap_err());
    assert_eq!(err.kind(), ErrorKind::DowngradeDetected, "{err}");
    // OpenSSL's reason 373 (SSL_R_INAPPROPRIATE_FALLBACK) raised by the sentinel check, on
    // the first hello, and no further rung: a sentinel is not intolerance.
    assert_eq!(outcomes(err.attempts()), ["refused:373"]);
    assert!(
        err.attempts()[0]
            .outcome
            .to_string()
            .contains("downgrade sentinel"),
        "{:?}",
        err.attempts()
    );
    let seen = em.hellos();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].action, Action::StripTls13);
    assert_eq!((seen[0].offered(), seen[0].scsv()), (Some(Tls1_3), false));
    // The server did answer the stripped hello with TLS 1.2 (and its sentinel) but never
    // finished a handshake: the client stopped at the ServerHello.
    assert_eq!(completed(&server), 0);
    assert_eq!(layer.stats().downgrades, 1);
    assert!(layer.stats().hosts.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downgrade_sentinel_after_a_healthy_visit_is_final_and_never_tries_a_lower_rung() {
    let server = TlsServer::modern().await.unwrap();
    let em = Emulator::start(server.addr(), vec![]).await.unwrap();
    let layer = builder().build().unwrap();
    let client = fresh_client(&layer);
    let (res, _) = get(&client, &em.url()).await.unwrap();
    assert_eq!(tls(&res).version, Tls1_3);
    // The host is now known healthy (rung 0). The attacker starts rewriting hellos.
    em.set_rules(vec![Rule::strip_tls13()]);
    em.clear();
    let err = tls_error(&get(&client, &em.url()).await.unwrap_err());
    assert_eq!(err.kind(), ErrorKind::DowngradeDetected, "{err}");
    // Never a lower rung: only TLS 1.3 hellos without SCSV, each refused on the sentinel. The
    // connector currently takes a sentinel at the learned rung 0 for "the learned rung is
    // obsolete" and re-probes from the top once, so the same hello goes out twice; the second
    // sentinel is final.
    let seen = ladder_seen(&em);
    assert!((1..=2).contains(&seen.len()), "{seen:?}");
    assert!(seen.iter().all(|h| *h == (Some(Tls1_3), false)), "{seen:?}");
    assert!(
        outcomes(err.attempts()).iter().all(|o| o == "refused:373"),
        "{:?}",
        err.attempts()
    );
    assert_eq!(completed(&server), 1, "only the healthy visit");
    assert!(layer.stats().hosts.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_pool_never_connects_to_its_modern_box_below_tls13() {
    // One gateway name, two boxes behind it: a TLS 1.0-only box behind an intolerant front
    // and a modern box with nothing in front. Requests alternate between them. The legacy box's learned TLS 1.0 rung
    // (with SCSV) is refused by the modern box, which makes the client re-probe from the top;
    // the modern box is never used below TLS 1.3 and no request fails.
    let legacy = TlsServer::only(Tls1_0).await.unwrap();
    // The modern box could still speak TLS 1.0 (as boxes in a pool with legacy clients do),
    // so it answers a TLS 1.0 hello with SCSV by inappropriate_fallback on every OpenSSL.
    let modern = TlsServer::builder()
        .min_version(Tls1_0)
        .security_level(0)
        .start()
        .await
        .unwrap();
    let em = Emulator::start(legacy.addr(), vec![Rule::close_above(Tls1_0)])
        .await
        .unwrap();
    let layer = builder().allow_legacy("localhost").build().unwrap();
    let client = fresh_client(&layer);
    for i in 0..6 {
        let to_modern = i % 2 == 1;
        if to_modern {
            em.set_backend(modern.addr());
            em.set_rules(vec![]);
        } else {
            em.set_backend(legacy.addr());
            em.set_rules(vec![Rule::close_above(Tls1_0)]);
        }
        let (res, _) = get(&client, &em.url()).await.unwrap();
        let info = tls(&res);
        if to_modern {
            assert_eq!(info.version, Tls1_3, "request {i}");
            assert_eq!(
                outcomes(&info.attempts),
                ["alert:86", "ok"],
                "request {i}: the learned TLS 1.0 rung was refused, then the top rung worked"
            );
        } else {
            assert_eq!(info.version, Tls1_0, "request {i}");
        }
    }
    assert_eq!(
        modern.versions().into_iter().collect::<Vec<_>>(),
        [("TLSv1.3", 3)]
    );
    assert_eq!(legacy.versions().get("TLSv1"), Some(&3));
    let hellos_to_modern_below_13 = em
        .hellos()
        .iter()
        .filter(|h| h.action == Action::Pass && h.offered() < Some(Tls1_3))
        .count();
    // Every TLS 1.0 hello that passed went to a box; those to the modern box were refused.
    assert_eq!(
        hellos_to_modern_below_13,
        3 + 3,
        "3 to legacy, 3 refused by modern"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learned_tls10_rung_meeting_a_server_upgraded_to_tls12_only_reprobes_from_the_top() {
    let legacy = TlsServer::only(Tls1_0).await.unwrap();
    let upgraded = TlsServer::only(Tls1_2).await.unwrap();
    let em = Emulator::start(legacy.addr(), vec![Rule::close_above(Tls1_0)])
        .await
        .unwrap();
    let layer = builder().allow_legacy("localhost").build().unwrap();
    let client = fresh_client(&layer);
    let (res, _) = get(&client, &em.url()).await.unwrap();
    assert_eq!(tls(&res).version, Tls1_0);
    // The vendor replaces the box with one that speaks TLS 1.2 only: the learned TLS 1.0
    // hello gets protocol_version (not inappropriate_fallback: 1.0 is not spoken at all).
    em.set_backend(upgraded.addr());
    em.set_rules(vec![]);
    em.clear();
    let (res, _) = get(&client, &em.url()).await.unwrap();
    assert_eq!(tls(&res).version, Tls1_2);
    assert_eq!(
        ladder_seen(&em),
        [(Some(Tls1_0), true), (Some(Tls1_3), false)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downgrade_on_a_pinned_host_is_counted_and_its_sessions_forgotten() {
    // A pin to a whole profile that offers TLS 1.3 and accepts 1.2; a box strips TLS 1.3 from
    // the hello, and the TLS 1.3 server's TLS 1.2 answer carries the RFC 8446 sentinel.
    let server = TlsServer::modern().await.unwrap();
    let em = Emulator::start(server.addr(), vec![Rule::strip_tls13()])
        .await
        .unwrap();
    let pattern = format!("localhost:{}", em.addr().port());
    let layer = builder()
        .pin(pattern, tls_fallback::Profile::modern())
        .build()
        .unwrap();
    let err = tls_error(&get(&fresh_client(&layer), &em.url()).await.unwrap_err());
    assert_eq!(err.kind(), ErrorKind::DowngradeDetected, "{err}");
    assert_eq!(em.count(), 1);
    assert_eq!(layer.stats().downgrades, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rung_below_the_floor_is_skipped_not_the_end_of_the_walk() {
    // Floor TLS 1.3 with a ladder that has a TLS 1.2 rung in the middle: it is passed over,
    // and the compact TLS 1.3 rung after it is still tried.
    use tls_fallback::{Ladder, Profile};
    let server = TlsServer::modern().await.unwrap();
    let em = Emulator::start(server.addr(), vec![Rule::reset_first(1)])
        .await
        .unwrap();
    let layer = builder()
        .floor(Tls1_3)
        .ladder(Ladder::new(vec![
            Profile::modern(),
            Profile::tls12(),
            Profile::modern_compact(),
        ]))
        .build()
        .unwrap();
    let (res, _) = get(&fresh_client(&layer), &em.url()).await.unwrap();
    assert_eq!(&*tls(&res).profile, "modern-compact");
    assert_eq!(
        ladder_seen(&em),
        [(Some(Tls1_3), false), (Some(Tls1_3), true)],
        "no TLS 1.2 hello under a TLS 1.3 floor"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_floor_of_tls11_never_accepts_tls10() {
    // A TLS 1.0-only server. A floor of TLS 1.1 opens the TLS 1.1 rung for every host, but
    // the server's TLS 1.0 answer is refused, and no TLS 1.0 hello is sent: only the legacy
    // gate opens TLS 1.0.
    let server = TlsServer::only(Tls1_0).await.unwrap();
    let em = Emulator::start(server.addr(), vec![]).await.unwrap();
    let layer = builder().floor(Tls1_1).build().unwrap();
    let err = tls_error(&get(&fresh_client(&layer), &em.url()).await.unwrap_err());
    assert_eq!(err.kind(), ErrorKind::LegacyNotAllowed, "{err}");
    assert!(err.to_string().contains("TLS 1.1"), "{err}");
    let seen = ladder_seen(&em);
    assert_eq!(seen.last(), Some(&(Some(Tls1_1), true)), "{seen:?}");
    assert!(seen.iter().all(|(v, _)| *v >= Some(Tls1_1)), "{seen:?}");
    assert_eq!(server.handshakes(), 0);
    assert_eq!(
        err.attempts().last().unwrap().outcome.short(),
        "refused:258"
    );
}

/// A server that ignores SCSV (the emulator strips it from every hello, as a rustls-based
/// server would not look at it) behind an attacker who kills every hello above `killed_above`:
/// SCSV cannot help, but the first hello capped below the server's best version still meets
/// the RFC 8446 sentinel in the server's random, which OpenSSL checks on every hello capped
/// below TLS 1.3, not only on the top rung. The walk ends as a downgrade on reason 373, with
/// nothing connected or learned.
async fn scsv_ignoring_server_behind_an_attacker(
    server: TlsServer,
    killed_above: TlsVersion,
    ladder: &[(Option<TlsVersion>, bool)],
) {
    let em = Emulator::start(
        server.addr(),
        vec![Rule::reset_above(killed_above), Rule::strip_scsv()],
    )
    .await
    .unwrap();
    let layer = builder().allow_legacy("*").build().unwrap();
    let err = tls_error(&get(&fresh_client(&layer), &em.url()).await.unwrap_err());
    assert_eq!(err.kind(), ErrorKind::DowngradeDetected, "{err}");
    let mut expected = vec!["reset"; ladder.len() - 1];
    expected.push("refused:373");
    assert_eq!(outcomes(err.attempts()), expected);
    let last = err.attempts().last().unwrap();
    assert!(
        last.outcome.to_string().contains("downgrade sentinel"),
        "{:?}",
        err.attempts()
    );
    // The client did send SCSV on every fallback; the server never saw it.
    assert_eq!(ladder_seen(&em), ladder);
    assert_eq!(em.hellos().last().unwrap().action, Action::StripScsv);
    assert_eq!(completed(&server), 0);
    assert_eq!(layer.stats().downgrades, 1);
    assert!(layer.stats().hosts.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls13_server_that_ignores_scsv_is_still_protected_by_the_sentinel_on_capped_hellos() {
    scsv_ignoring_server_behind_an_attacker(
        TlsServer::modern().await.unwrap(),
        Tls1_2,
        &[
            (Some(Tls1_3), false),
            (Some(Tls1_3), true),
            (Some(Tls1_2), true),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls12_server_that_ignores_scsv_is_still_protected_by_the_sentinel_on_legacy_hellos() {
    let server = TlsServer::builder()
        .min_version(Tls1_0)
        .max_version(Tls1_2)
        .security_level(0)
        .start()
        .await
        .unwrap();
    scsv_ignoring_server_behind_an_attacker(
        server,
        Tls1_1,
        &[
            (Some(Tls1_3), false),
            (Some(Tls1_3), true),
            (Some(Tls1_2), true),
            (Some(Tls1_2), true),
            (Some(Tls1_1), true),
        ],
    )
    .await;
}
