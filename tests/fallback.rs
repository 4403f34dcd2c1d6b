//! The fallback connector through a real hyper-util client, real OpenSSL servers and the
//! intolerance emulator: what was offered on the wire, in which order, and the outcome.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hyper::body::Bytes;
use tls_fallback::testkit::{Action, Emulator, Rule, TestPki, TlsServer};
use tls_fallback::{ErrorKind, TlsVersion};
use TlsVersion::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_above_tls10_with_legacy_allowed_walks_the_ladder_to_tls10_with_scsv() {
    let (server, em) = gateway_with(Rule::close_above(Tls1_0)).await;
    let layer = builder().allow_legacy("localhost").build().unwrap();
    let (res, body) = get(&client(&layer), &em.url()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(body.starts_with(b"hello from the tls-fallback test kit"));
    assert_eq!(ladder_seen(&em), LEGACY_WALK);
    let info = tls(&res);
    assert_eq!(info.version, Tls1_0);
    assert_eq!(&*info.profile, "tls10-legacy");
    assert_eq!(info.handshakes(), 6);
    assert!(!info.from_cache);
    let outcomes: Vec<String> = info.attempts.iter().map(|a| a.outcome.short()).collect();
    assert_eq!(
        outcomes,
        ["closed", "closed", "closed", "closed", "closed", "ok"]
    );
    assert_eq!(server.versions().get("TLSv1"), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_above_tls10_without_legacy_stops_at_the_floor_with_a_remedy() {
    let (_server, em) = gateway_with(Rule::close_above(Tls1_0)).await;
    let layer = builder().build().unwrap();
    let err = get(&client(&layer), &em.url()).await.unwrap_err();
    let err = tls_error(&err);
    assert_eq!(err.kind(), ErrorKind::BelowFloor);
    let text = err.to_string();
    assert!(text.contains("floor is TLS 1.2"), "{text}");
    assert!(text.contains("allow legacy TLS"), "{text}");
    assert!(text.contains("was closed"), "{text}");
    assert_eq!(err.attempts().len(), 4);
    // Nothing below TLS 1.2 ever left the client.
    assert_eq!(ladder_seen(&em), LEGACY_WALK[..4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_above_tls10_falls_back_to_tls10() {
    let (_server, em) = gateway_with(Rule::reset_above(Tls1_0)).await;
    let layer = builder().allow_legacy("localhost").build().unwrap();
    let (res, _) = get(&client(&layer), &em.url()).await.unwrap();
    assert_eq!(tls(&res).version, Tls1_0);
    assert_eq!(ladder_seen(&em), LEGACY_WALK);
    let outcomes: Vec<String> = tls(&res)
        .attempts
        .iter()
        .map(|a| a.outcome.short())
        .collect();
    assert_eq!(
        outcomes,
        ["reset", "reset", "reset", "reset", "reset", "ok"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_version_alert_above_tls10_falls_back_to_tls10() {
    let (_server, em) = gateway_with(Rule::alert_above(Tls1_0, 70)).await;
    let layer = builder().allow_legacy("*").build().unwrap();
    let (res, _) = get(&client(&layer), &em.url()).await.unwrap();
    assert_eq!(tls(&res).version, Tls1_0);
    assert_eq!(ladder_seen(&em), LEGACY_WALK);
    assert_eq!(tls(&res).attempts[0].outcome.short(), "alert:70");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_hang_in_front_of_tls12_server_ends_on_tls12_within_two_timeouts_plus_one_handshake()
{
    let server = TlsServer::only(Tls1_2).await.unwrap();
    let em = Emulator::start(server.addr(), vec![Rule::hang_above(Tls1_2)])
        .await
        .unwrap();
    let timeout = Duration::from_secs(1);
    let layer = builder().handshake_timeout(timeout).build().unwrap();
    let started = Instant::now();
    let (res, _) = get(&client(&layer), &em.url()).await.unwrap();
    let took = started.elapsed();
    assert_eq!(tls(&res).version, Tls1_2);
    assert_eq!(&*tls(&res).profile, "tls12");
    assert_tls13_silent_then_tls12(&em);
    // The stall time (1.5 s by default) is above this timeout, so nothing is raced: the top
    // rung times out, then the compact TLS 1.3 rung and the TLS 1.2 rung start together (a
    // box silent on TLS 1.3 is silent on a reshaped TLS 1.3 hello too), and TLS 1.2 wins.
    let outcomes: Vec<String> = tls(&res)
        .attempts
        .iter()
        .map(|a| a.outcome.short())
        .collect();
    assert_eq!(outcomes, ["timeout", "stalled", "ok"]);
    // One timeout plus one handshake (a handshake on loopback is milliseconds; allow 1 s slack
    // for a loaded 2-core machine).
    assert!(took < timeout * 2, "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f5_length_hang_in_front_of_modern_server_succeeds_without_going_below_tls12() {
    let server = TlsServer::modern().await.unwrap();
    let em = Emulator::start(server.addr(), vec![Rule::f5_hang()])
        .await
        .unwrap();
    let layer = builder()
        .handshake_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let (res, _) = get(&client(&layer), &em.url()).await.unwrap();
    assert!(tls(&res).version >= Tls1_2);
    for h in em.hellos() {
        assert!(h.offered() >= Some(Tls1_2), "{h:?}");
        if h.action == Action::Pass {
            assert!(
                !(256..=511).contains(&h.len()),
                "passed hello of {} bytes",
                h.len()
            );
        }
    }
    // The modern rung pads its hello out of the F5 window, so the first hello goes through.
    assert_eq!(em.hellos()[0].action, Action::Pass, "{:?}", em.hellos());
    assert_eq!(tls(&res).version, Tls1_3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f5_hang_without_padding_falls_to_the_compact_hello() {
    use tls_fallback::{Ladder, Profile};
    let server = TlsServer::modern().await.unwrap();
    let em = Emulator::start(server.addr(), vec![Rule::f5_hang()])
        .await
        .unwrap();
    // A ladder whose top rungs do not pad (as many clients): only the compact rung fits.
    let ladder = Ladder::new(vec![
        // Two classic groups keep the hello at ~300 bytes on OpenSSL 3.0 and 3.5+ alike
        // (3.5+ would otherwise send a 1.5 KB ML-KEM key share).
        Profile::new("modern-unpadded", Tls1_3)
            .padding(false)
            .groups("X25519:P-256"),
        Profile::modern_compact(),
    ]);
    let layer = builder()
        .ladder(ladder)
        .handshake_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let (res, _) = get(&client(&layer), &em.url()).await.unwrap();
    let seen = em.hellos();
    assert!(
        (256..=511).contains(&seen[0].len()),
        "unpadded modern hello: {}",
        seen[0].len()
    );
    assert_eq!(seen.last().unwrap().action, Action::Pass);
    assert!(
        seen.last().unwrap().len() < 256,
        "compact hello: {}",
        seen.last().unwrap().len()
    );
    // The compact rung still offers TLS 1.3, so the modern server is reached at its best.
    assert_eq!(tls(&res).version, Tls1_3);
    assert_eq!(&*tls(&res).profile, "modern-compact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cipher_count_intolerance_ends_on_the_compact_rung_not_below_tls12() {
    let server = TlsServer::modern().await.unwrap();
    let em = Emulator::start(server.addr(), vec![Rule::close_if_ciphers_above(16)])
        .await
        .unwrap();
    let layer = builder().allow_legacy("localhost").build().unwrap();
    let (res, _) = get(&client(&layer), &em.url()).await.unwrap();
    let info = tls(&res);
    assert_eq!(info.version, Tls1_3);
    assert_eq!(&*info.profile, "modern-compact");
    let seen = em.hellos();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].hello.as_ref().unwrap().cipher_count > 16);
    assert!(seen[1].hello.as_ref().unwrap().cipher_count <= 16);
    assert!(seen.iter().all(|h| h.offered() >= Some(Tls1_2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacker_resetting_the_first_hello_gets_at_most_a_compact_tls13_hello() {
    let server = TlsServer::modern().await.unwrap();
    let em = Emulator::start(server.addr(), vec![Rule::reset_first(1)])
        .await
        .unwrap();
    let layer = builder().allow_legacy("*").build().unwrap();
    let (res, _) = get(&client(&layer), &em.url()).await.unwrap();
    // The shape is trimmed before the version is capped: the next hello still offers TLS 1.3
    // (with SCSV), and the server is reached at its best version.
    assert_eq!(tls(&res).version, Tls1_3);
    assert_eq!(&*tls(&res).profile, "modern-compact");
    assert_eq!(
        ladder_seen(&em),
        [(Some(Tls1_3), false), (Some(Tls1_3), true)]
    );
    assert_eq!(server.versions().get("TLSv1.2"), None);
    // One reset does not choose the hello of later connections: the compact rung was used
    // once, not learned, and the next connection sends the full modern hello again.
    assert_eq!(layer.stats().learned, 0);
    em.clear();
    let (res, _) = get(&client(&layer), &em.url()).await.unwrap();
    assert_eq!(&*tls(&res).profile, "modern");
    assert_eq!(tls(&res).handshakes(), 1);
    assert_eq!(ladder_seen(&em), [(Some(Tls1_3), false)]);
    assert!(
        layer.stats().hosts.is_empty(),
        "nothing remembered as a fallback"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacker_resetting_both_tls13_hellos_meets_inappropriate_fallback() {
    let server = TlsServer::modern().await.unwrap();
    let em = Emulator::start(server.addr(), vec![Rule::reset_first(2)])
        .await
        .unwrap();
    let layer = builder().allow_legacy("*").build().unwrap();
    let e = tls_error(&get(&client(&layer), &em.url()).await.unwrap_err());
    assert_eq!(e.kind(), ErrorKind::DowngradeDetected, "{e}");
    assert!(e.to_string().contains("downgrade detected"));
    assert_eq!(e.attempts().last().unwrap().outcome.short(), "alert:86");
    // The TLS 1.2 hello carried SCSV, which is what let the server refuse it.
    assert_eq!(
        ladder_seen(&em),
        [
            (Some(Tls1_3), false),
            (Some(Tls1_3), true),
            (Some(Tls1_2), true)
        ]
    );
    assert_eq!(server.versions().get("TLSv1.2"), None);
    assert!(layer.stats().hosts.is_empty(), "nothing learned");
}

/// A healthy modern server presenting `identity`, behind a pass-through emulator: the
/// certificate error, the attempts and how many hellos the emulator saw.
async fn certificate_failure(
    identity: tls_fallback::testkit::Identity,
) -> (tls_fallback::Error, usize) {
    let server = TlsServer::builder()
        .identity(identity)
        .start()
        .await
        .unwrap();
    let em = Emulator::start(server.addr(), vec![]).await.unwrap();
    let layer = builder().allow_legacy("*").build().unwrap();
    let err = tls_error(&get(&client(&layer), &em.url()).await.unwrap_err());
    assert!(layer.stats().hosts.is_empty());
    (err, em.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_certificate_costs_one_hello_and_never_falls_back() {
    let (err, hellos) = certificate_failure(TestPki::shared().untrusted.clone()).await;
    assert_eq!(err.kind(), ErrorKind::Certificate);
    assert_eq!(hellos, 1);
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_hostname_costs_one_hello_and_never_falls_back() {
    let (err, hellos) = certificate_failure(TestPki::shared().wrong_name.clone()).await;
    assert_eq!(err.kind(), ErrorKind::Certificate);
    assert_eq!(hellos, 1);
    let detail = format!("{:?}", err.attempts()[0].outcome);
    assert!(detail.contains("hostname mismatch"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_host_gets_one_hello_at_the_pinned_version_without_scsv() {
    let (_server, em) = gateway_with(Rule::close_above(Tls1_0)).await;
    let pattern = format!("localhost:{}", em.addr().port());
    let layer = builder().pin(pattern, Tls1_0).build().unwrap();
    let (res, _) = get(&client(&layer), &em.url()).await.unwrap();
    assert_eq!(ladder_seen(&em), [(Some(Tls1_0), false)]);
    let info = tls(&res);
    assert_eq!(info.version, Tls1_0);
    assert!(info.pinned);
    assert_eq!(info.handshakes(), 1);
    assert!(layer.stats().hosts.is_empty(), "a pin teaches nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_through_a_fallback_reaches_the_server_exactly_once() {
    let (server, em) = gateway_with(Rule::reset_above(Tls1_0)).await;
    let layer = builder().allow_legacy("localhost").build().unwrap();
    let (res, body) = send(
        &client(&layer),
        "POST",
        &em.url(),
        Bytes::from_static(b"amount=100&currency=EUR"),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    assert!(body.ends_with(b"23 body bytes\n"), "{body:?}");
    assert_eq!(em.count(), 6);
    assert_eq!(server.requests("POST"), 1);
    assert_eq!(server.handshakes(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls10_only_server_needs_legacy_permission_even_without_intolerance() {
    let server = TlsServer::only(Tls1_0).await.unwrap();
    let em = Emulator::start(server.addr(), vec![]).await.unwrap();

    let strict = builder().build().unwrap();
    let err = tls_error(&get(&client(&strict), &em.url()).await.unwrap_err());
    assert_eq!(err.kind(), ErrorKind::LegacyNotAllowed, "{err}");
    assert!(err.to_string().contains("allow_legacy"), "{err}");
    // OpenSSL's TLS 1.0 server answers a hello offering only 1.3/1.2 in supported_versions
    // with protocol_version; the TLS 1.2 hello then gets a TLS 1.0 ServerHello, which
    // OpenSSL 3 refuses (reason 258): the walk stops there instead of trying more shapes.
    let outcomes: Vec<String> = err.attempts().iter().map(|a| a.outcome.short()).collect();
    assert_eq!(outcomes, ["alert:70", "alert:70", "refused:258"]);
    assert_eq!(em.count(), 3);

    em.clear();
    let allowed = builder().allow_legacy("localhost").build().unwrap();
    let (res, _) = get(&client(&allowed), &em.url()).await.unwrap();
    let info = tls(&res);
    assert_eq!(info.version, Tls1_0);
    assert!(info.profile.ends_with("-legacy"));
    // Then straight to the first legacy rung, which accepts down to 1.0. (OpenSSL 3.0's modern
    // hello for a legacy-allowed host already lists TLS 1.0 and is refused locally with 258;
    // OpenSSL 3.5+ leaves 1.0/1.1 out at security level 2 and gets alert 70 first.)
    let seen = ladder_seen(&em);
    let expected_30 = vec![(Some(Tls1_3), false), (Some(Tls1_1), true)];
    let expected_35 = vec![
        (Some(Tls1_3), false),
        (Some(Tls1_3), true),
        (Some(Tls1_2), true),
        (Some(Tls1_1), true),
    ];
    assert!(seen == expected_30 || seen == expected_35, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_info_reports_version_cipher_profile_and_alpn_on_a_healthy_host() {
    let server = TlsServer::modern().await.unwrap();
    let layer = builder().build().unwrap();
    let (res, _) = get(&client(&layer), &server.url()).await.unwrap();
    let info = tls(&res);
    assert_eq!(info.version, Tls1_3);
    assert_eq!(&*info.profile, "modern");
    assert!(info.cipher.starts_with("TLS_"), "{}", info.cipher);
    assert_eq!(info.handshakes(), 1);
    assert!(!info.attempts[0].scsv);
    assert_eq!(info.alpn, None, "the test server does not do ALPN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_passes_through_untouched() {
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        if let Ok((tcp, _)) = listener.accept().await {
            let svc = service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                    Bytes::from_static(b"plain"),
                )))
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        }
    });
    let layer = builder().build().unwrap();
    let (res, body) = get(
        &client(&layer),
        &format!("http://127.0.0.1:{}/", addr.port()),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(&body[..], b"plain");
    assert!(res.extensions().get::<tls_fallback::TlsInfo>().is_none());
    assert_eq!(layer.stats().connections, 0, "no TLS walk for http://");
}

#[test]
fn invalid_pins_and_patterns_are_rejected_when_building() {
    let cases = [
        builder().pin("exa mple.com", Tls1_0).build(),
        builder().pin("*x.example", Tls1_0).build(),
        builder().allow_legacy("host:99999").build(),
        builder().allow_legacy("").build(),
    ];
    for result in cases {
        let err = result.expect_err("must be rejected");
        assert_eq!(err.kind(), ErrorKind::BadInput);
        assert!(err.to_string().contains("invalid host pattern"), "{err}");
    }
    // A URL where a pattern belongs: say so, and show the pattern.
    let cases = [
        builder().allow_legacy("https://pay.example/").build(),
        builder().pin("https://pay.example/v1", Tls1_0).build(),
    ];
    for result in cases {
        let err = result.expect_err("a URL is not a pattern");
        assert_eq!(err.kind(), ErrorKind::BadInput);
        assert!(
            err.to_string().contains(
                "it looks like a URL; a pattern is a host with an optional port, without scheme \
                 or path: \"pay.example\" (every port) or \"pay.example:443\" (port 443 only)"
            ),
            "{err}"
        );
    }
    let err = builder()
        .ca_file("/nonexistent/roots.pem")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("cannot read CA file"), "{err}");
    let err = builder()
        .ladder(tls_fallback::Ladder::new(vec![]))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("no rung"), "{err}");
    let err = builder().cache_ttl(Duration::ZERO).build().unwrap_err();
    assert!(err.to_string().contains("TTL"), "{err}");
    let err = builder()
        .decision_store(std::sync::Arc::new(tls_fallback::MemoryStore::new(10)))
        .cache_file("/tmp/unused-decisions.json")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("choose one"), "{err}");
    // Only legacy profiles may lower OpenSSL's security level.
    // However the cipher string spells it: OpenSSL takes `@SECLEVEL=n` glued to a keyword too.
    for list in [
        "DEFAULT:@SECLEVEL=0",
        "ALL@SECLEVEL=0",
        "DEFAULT:@SECLEVEL=0:!RC4",
    ] {
        let err = builder()
            .ladder(tls_fallback::Ladder::new(vec![
                tls_fallback::Profile::tls12().cipher_list(list),
            ]))
            .build()
            .unwrap_err();
        assert!(
            err.to_string().contains("lowers the security level"),
            "{list}: {err}"
        );
    }
    // Raising it is fine.
    let ok = builder()
        .ladder(tls_fallback::Ladder::new(vec![
            tls_fallback::Profile::tls12().cipher_list("DEFAULT:@SECLEVEL=3"),
        ]))
        .build();
    assert!(ok.is_ok(), "{:?}", ok.err());
    let ok = builder()
        .ladder(tls_fallback::Ladder::new(vec![
            tls_fallback::Profile::tls12(),
            tls_fallback::Profile::new("old", Tls1_0).cipher_list("DEFAULT:@SECLEVEL=0"),
        ]))
        .build();
    assert!(ok.is_ok(), "{:?}", ok.err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_is_offered_by_alpn_only_when_enabled_and_then_used() {
    let server = TlsServer::builder().http2(true).start().await.unwrap();
    let h2 = builder().enable_http2(true).build().unwrap();
    let (res, body) = get(&client(&h2), &server.url()).await.unwrap();
    assert_eq!(res.version(), hyper::Version::HTTP_2);
    assert_eq!(tls(&res).alpn, Some("h2"));
    assert!(body.starts_with(b"hello from the tls-fallback test kit"));

    let h1 = builder().build().unwrap();
    let (res, _) = get(&client(&h1), &server.url()).await.unwrap();
    assert_eq!(res.version(), hyper::Version::HTTP_11);
    assert_eq!(tls(&res).alpn, Some("http/1.1"));
}
