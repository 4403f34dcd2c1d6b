//! `tls_fallback::Client` against real OpenSSL servers on 127.0.0.1: the whole-request
//! timeout, the body cap, writing a request once through a fallback walk, connection reuse,
//! redirects and its error messages.

mod common;

use std::time::{Duration, Instant};

use common::{builder, ladder_seen, LEGACY_WALK};
use hyper::body::Bytes;
use tls_fallback::testkit::{
    Emulator, MisbehavingServer, Misbehaviour, Rule, SeenRequest, TlsServer,
};
use tls_fallback::{Client, ErrorKind, FallbackLayer, TlsVersion};
use TlsVersion::*;

fn client_with(layer: FallbackLayer, timeout: Duration, max_body: usize) -> Client {
    Client::builder()
        .layer(layer)
        .timeout(timeout)
        .max_body(max_body)
        .build()
        .expect("client")
}

/// The number a request should carry on its connection: how many requests the server had
/// seen on that connection up to and including it (requests are sent one after another).
fn number_on_connection(seen: &[SeenRequest], k: usize) -> u64 {
    let conn = seen[k].connection;
    seen[..=k].iter().filter(|r| r.connection == conn).count() as u64
}

fn json_reply(body: &'static str) -> Misbehaviour {
    Misbehaviour::Reply {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: Bytes::from_static(body.as_bytes()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_and_body_cap_hold_against_servers_that_misbehave_after_the_handshake() {
    let ms = Duration::from_millis;
    // (name, server, timeout, body cap, kind, words of the message, most time it may take)
    let rows = [
        (
            "silent after the handshake",
            Misbehaviour::NoAnswer,
            ms(700),
            1 << 20,
            Some(ErrorKind::RequestTimeout),
            "the request was sent and no answer came within 700ms",
            ms(3000),
        ),
        (
            "trickling body",
            Misbehaviour::Trickle {
                every: ms(50),
                len: 100_000,
            },
            ms(700),
            1 << 20,
            Some(ErrorKind::RequestTimeout),
            "the answer (status 200) began but its body did not finish within 700ms",
            ms(3000),
        ),
        (
            "endless body",
            Misbehaviour::EndlessBody,
            Duration::from_secs(20),
            64 * 1024,
            Some(ErrorKind::BodyTooLarge),
            "larger than the cap of 65536 bytes (more than 65536 bytes arrived)",
            ms(10_000),
        ),
        (
            "announced body over the cap",
            json_reply(r#"{"padding":"0123456789012345678901234567890123456789"}"#),
            Duration::from_secs(20),
            16,
            Some(ErrorKind::BodyTooLarge),
            "the server announced 54 bytes",
            ms(10_000),
        ),
        (
            "short trickle within the time",
            Misbehaviour::Trickle {
                every: ms(20),
                len: 5,
            },
            Duration::from_secs(20),
            1 << 20,
            None,
            ".....",
            ms(10_000),
        ),
    ];
    for (name, how, timeout, cap, kind, words, most) in rows {
        let server = MisbehavingServer::start(how).await.unwrap();
        let client = client_with(builder().build().unwrap(), timeout, cap);
        let start = Instant::now();
        let result = client.get(&server.url()).send().await;
        let took = start.elapsed();
        assert!(took < most, "{name}: took {took:?}");
        match (result, kind) {
            (Ok(res), None) => assert_eq!(res.text(), words, "{name}"),
            (Err(e), Some(kind)) => {
                assert_eq!(e.kind(), kind, "{name}: {e}");
                let text = e.to_string();
                assert!(text.contains(words), "{name}: {text}");
                assert!(text.starts_with(kind.as_str()), "{name}: {text}");
                let tls = e
                    .tls()
                    .unwrap_or_else(|| panic!("{name}: no TlsInfo in {e:?}"));
                assert_eq!(tls.handshakes(), 1, "{name}");
                assert!(
                    text.contains("the TLS connection was made")
                        || kind != ErrorKind::RequestTimeout,
                    "{name}: {text}"
                );
                if kind == ErrorKind::RequestTimeout {
                    assert!(took >= timeout, "{name}: {took:?}");
                }
            }
            (got, _) => panic!("{name}: {got:?}"),
        }
        assert_eq!(server.requests().len(), 1, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_port_ends_at_the_request_timeout_or_as_no_tls_answer_whichever_comes_first() {
    let ms = Duration::from_millis;
    // (handshake timeout, request timeout, kind, words, most time it may take)
    let rows = [
        (
            ms(5000),
            ms(600),
            ErrorKind::RequestTimeout,
            "no TLS connection within 600ms",
            ms(3000),
        ),
        (
            ms(800),
            ms(20_000),
            ErrorKind::NoTlsAnswer,
            "no TLS answer from localhost:",
            ms(8000),
        ),
    ];
    for (handshake, request, kind, words, most) in rows {
        // A TCP port that accepts (in the kernel's backlog) and never says a word.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://localhost:{}/", silent.local_addr().unwrap().port());
        let layer = builder()
            .handshake_timeout(handshake)
            .stall_timeout(Some(ms(300)))
            .build()
            .unwrap();
        let client = client_with(layer, request, 1 << 20);
        let start = Instant::now();
        let err = client.get(&url).send().await.unwrap_err();
        let took = start.elapsed();
        assert!(took < most, "{kind:?}: {took:?}");
        assert_eq!(err.kind(), kind, "{err}");
        assert!(err.tls().is_none());
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("{} (GET {url})", kind.as_str())),
            "{text}"
        );
        assert!(text.contains(words), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_to_a_learned_legacy_gateway_is_written_once() {
    let tls10 = TlsServer::builder().only(Tls1_0);
    let server = MisbehavingServer::with(tls10, json_reply(r#"{"status":"accepted"}"#))
        .await
        .unwrap();
    let em = Emulator::start(server.addr(), vec![Rule::close_above(Tls1_0)])
        .await
        .unwrap();
    let layer = builder().allow_legacy("localhost").build().unwrap();
    let client = client_with(layer, Duration::from_secs(30), 1 << 20);
    let payment = serde_json::json!({ "amount": 4200, "currency": "EUR" });

    let res = client
        .post(&em.url())
        .header("idempotency-key", "order-1")
        .json(&payment)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let answer: serde_json::Value = res.json().unwrap();
    assert_eq!(answer["status"], "accepted");
    let tls = res.tls().unwrap();
    assert_eq!(
        (tls.version, tls.handshakes(), tls.from_cache),
        (Tls1_0, 6, false)
    );
    assert!(!res.reused());
    // The walk took six hellos; the request went out once, whole.
    assert_eq!(ladder_seen(&em), LEGACY_WALK);
    let seen = server.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].uri.as_str()),
        ("POST", "/")
    );
    assert_eq!(seen[0].headers["content-type"], "application/json");
    assert_eq!(seen[0].headers["idempotency-key"], "order-1");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&seen[0].body).unwrap(),
        payment
    );
    assert_eq!(server.handshakes(), 1);

    // The next one is numbered on its connection as the server saw it: request 2 on the first
    // connection, or request 1 on a spare one hyper-util opened while the first went back to
    // its pool (that one starts from the cache: one hello).
    let res = client.post(&em.url()).json(&payment).send().await.unwrap();
    let seen = server.requests();
    let n = number_on_connection(&seen, 1);
    assert_eq!(res.connection().map(|c| c.request()), Some(n));
    assert_eq!(res.reused(), n > 1);
    let want = if n > 1 { (6, false) } else { (1, true) };
    let tls = res.tls().unwrap();
    assert_eq!((tls.handshakes(), tls.from_cache), want);
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_use_counts_requests_on_a_kept_alive_connection() {
    for version in [Tls1_3, Tls1_2, Tls1_0] {
        let tls = TlsServer::builder().only(version);
        let server = MisbehavingServer::with(tls, json_reply("{}"))
            .await
            .unwrap();
        let layer = builder().allow_legacy("localhost").build().unwrap();
        let client = client_with(layer, Duration::from_secs(30), 1 << 20);
        let mut got = Vec::new();
        for i in 0..3 {
            let req = if i == 1 {
                client.post(&server.url()).body("x".repeat(50_000))
            } else {
                client.get(&server.url())
            };
            let res = req.send().await.unwrap();
            assert_eq!(res.tls().map(|t| t.version), Some(version));
            got.push((res.connection().map(|c| c.request()), res.reused()));
        }
        // Numbered as the server saw them, connection by connection (hyper-util may open a
        // spare connection while one goes back to its pool).
        let seen = server.requests();
        let want: Vec<_> = (0..3)
            .map(|k| number_on_connection(&seen, k))
            .map(|n| (Some(n), n > 1))
            .collect();
        assert_eq!(got, want, "{version}");
        let reused = got.iter().any(|(_, reused)| *reused);
        assert!(reused, "{version}: no request reused a connection: {got:?}");
        assert_eq!(server.requests().len(), 3, "{version}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_returned_unless_asked_and_credentials_stay_with_their_origin() {
    let target = MisbehavingServer::start(json_reply("{}")).await.unwrap();
    let to = format!("{}landed", target.url());
    // (status, follow, want status, want method at the target, want its body)
    let rows = [
        (302, 0, 302, None, ""),
        (302, 3, 200, Some("GET"), ""),
        (303, 3, 200, Some("GET"), ""),
        (307, 3, 200, Some("POST"), "amount=42"),
        (308, 3, 200, Some("POST"), "amount=42"),
    ];
    for (status, follow, want_status, want_method, want_body) in rows {
        let from = MisbehavingServer::start(Misbehaviour::redirect(status, &to))
            .await
            .unwrap();
        let before = target.requests().len();
        let client = Client::builder()
            .layer(builder().build().unwrap())
            .follow_redirects(follow)
            .build()
            .unwrap();
        let res = client
            .post(&from.url())
            .header("authorization", "Bearer secret")
            .form(&[("amount", 42)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), want_status, "{status}/{follow}");
        let at_target = target.requests()[before..].to_vec();
        match want_method {
            None => assert!(at_target.is_empty(), "{status}"),
            Some(m) => {
                assert_eq!(at_target.len(), 1, "{status}");
                assert_eq!(at_target[0].method, m, "{status}");
                assert_eq!(at_target[0].uri, "/landed", "{status}");
                assert_eq!(&at_target[0].body[..], want_body.as_bytes(), "{status}");
                // Another port is another origin: the credential stayed behind.
                assert!(
                    at_target[0].headers.get("authorization").is_none(),
                    "{status}"
                );
                assert_eq!(res.url().path(), "/landed");
            }
        }
        assert_eq!(from.requests()[0].headers["authorization"], "Bearer secret");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_loop_stops_at_the_limit_with_a_clear_error() {
    let looping = MisbehavingServer::start(Misbehaviour::redirect(302, "/again"))
        .await
        .unwrap();
    let client = Client::builder()
        .layer(builder().build().unwrap())
        .follow_redirects(2)
        .build()
        .unwrap();
    let err = client.get(&looping.url()).send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Http);
    assert!(
        err.to_string().contains("stopped after 2 redirect(s)"),
        "{err}"
    );
    assert_eq!(looping.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_failures_carry_the_connection_message_and_are_found_by_error_find() {
    let (_server, em) = common::legacy_gateway().await;
    let client = client_with(builder().build().unwrap(), Duration::from_secs(30), 1 << 20);
    let err = client.get(&em.url()).send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BelowFloor);
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("below_floor (GET {})", em.url())),
        "{text}"
    );
    assert!(
        text.contains("allow legacy TLS") && text.contains("\n  4. "),
        "{text}"
    );
    assert_eq!(err.attempts().len(), 4);
    let inner = tls_fallback::Error::find(&err).expect("the connection error inside");
    assert_eq!(inner.kind(), ErrorKind::BelowFloor);
    assert_eq!(
        err.connection_error().map(|e| e.kind()),
        Some(ErrorKind::BelowFloor)
    );
}

/// The README's Quick start returns `Result<(), Box<dyn Error + Send + Sync>>` from `main`, and
/// std prints a failure as `Error: {:?}`: that must be the story, not the struct.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_request_in_debug_form_is_the_story_main_prints() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (_server, em) = common::legacy_gateway().await;
    let client = client_with(builder().build().unwrap(), Duration::from_secs(30), 1 << 20);
    let refused = format!("https://127.0.0.1:{port}/pay");
    // (url, how the story starts, words in it, the connection error's variant)
    let rows = [
        (
            refused.clone(),
            format!("connect (GET {refused}): could not connect to 127.0.0.1:{port}: "),
            "Connection refused",
            "Connect {",
        ),
        (
            em.url(),
            format!("below_floor (GET {}): every hello to ", em.url()),
            "allow legacy TLS",
            "BelowFloor {",
        ),
    ];
    for (url, start, words, variant) in rows {
        let err = client.get(&url).send().await.unwrap_err();
        let inner = err.connection_error().cloned().expect("a connection error");
        let boxed: Box<dyn std::error::Error + Send + Sync> = err.into();
        let printed = format!("Error: {boxed:?}");
        assert!(printed.starts_with(&format!("Error: {start}")), "{printed}");
        assert!(printed.contains(words), "{printed}");
        assert!(
            printed.contains("\n  1. modern (up to TLS 1.3): "),
            "{printed}"
        );
        assert!(
            !printed.contains("RequestError") && !printed.contains("kind:"),
            "{printed}"
        );
        assert_eq!(format!("{boxed:?}"), boxed.to_string());
        // The README's own-hyper-stack snippet returns the connector's error: the same.
        assert_eq!(format!("{inner:?}"), inner.to_string());
        // The fields stay reachable with {:#?}.
        let fields = format!("{boxed:#?}");
        assert!(
            fields.starts_with("RequestError {") && fields.contains(variant),
            "{fields}"
        );
        assert!(format!("{inner:#?}").starts_with(variant), "{inner:#?}");
    }
}

#[tokio::test]
async fn bad_input_says_what_is_wrong_and_what_is_expected() {
    let client = Client::new(builder().build().unwrap());
    let nested = serde_json::json!({ "card": { "number": "4111" } });
    // (request, words of the message)
    let rows = [
        (client.get("localhost:8443/health"), "expected https://"),
        (client.get("ftp://localhost/"), "unsupported scheme \"ftp\""),
        (client.get("https://"), "expected https://host[:port]/path"),
        (
            client.get("https://localhost/").header("bad header", "x"),
            "invalid header name",
        ),
        (
            client.get("https://localhost/").header("x", "a\nb"),
            "invalid value for header x",
        ),
        (
            client.post("https://localhost/").form(&nested),
            "field \"card\": expected a string",
        ),
    ];
    for (req, words) in rows {
        let err = req.send().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput, "{err}");
        assert!(err.to_string().contains(words), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_hyper_client_sees_which_request_reused_a_learned_legacy_connection() {
    // The issue's case: a later request on a kept-alive connection still shows the
    // connection's six handshakes, and ConnectionUse gives its number on the connection.
    let tls10 = TlsServer::builder().only(Tls1_0);
    let server = MisbehavingServer::with(tls10, json_reply("{}"))
        .await
        .unwrap();
    let em = Emulator::start(server.addr(), vec![Rule::close_above(Tls1_0)])
        .await
        .unwrap();
    let layer = builder().allow_legacy("localhost").build().unwrap();
    let client = common::client(&layer);
    let mut got = Vec::new();
    for _ in 0..3 {
        let (res, _) = common::get(&client, &em.url()).await.unwrap();
        let used = res
            .extensions()
            .get::<tls_fallback::ConnectionUse>()
            .cloned();
        let n = used.map_or(0, |u| u.request());
        got.push((n, common::tls(&res).handshakes()));
    }
    let seen = server.requests();
    // The first connection took the six-hello walk; a spare one (if any) starts from the cache.
    let want: Vec<_> = (0..3)
        .map(|k| {
            let n = number_on_connection(&seen, k);
            (n, if seen[k].connection == 1 { 6 } else { 1 })
        })
        .collect();
    assert_eq!(got, want);
    assert!(
        got.iter().any(|(n, _)| *n >= 2),
        "no request reused a connection: {got:?}"
    );
}
