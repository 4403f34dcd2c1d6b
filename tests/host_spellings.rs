//! One host, many spellings: a trailing dot, upper case, the forms of an IPv6 literal. Every
//! spelling must get the same SNI on the wire, the same certificate name check, the same
//! session and decision key, and the same pins and legacy gate. Real servers, the emulator on
//! 127.0.0.1 or ::1.

mod common;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::task::{Context, Poll};

use common::*;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tls_fallback::testkit::{Emulator, TlsServer};
use tls_fallback::{FallbackConnector, FallbackLayer, TlsInfo, TlsVersion};
use tower_layer::Layer;
use TlsVersion::*;

/// Spellings of `::1` in a URL.
const LOOPBACK_V6: [&str; 5] = [
    "[::1]",
    "[0:0::1]",
    "[0000::0001]",
    "[0:0:0:0:0:0:0:1]",
    "[0000:0000:0000:0000:0000:0000:0000:0001]",
];

/// A client that opens a new connection for every request: every request is one walk.
fn fresh_client(layer: &FallbackLayer) -> TestClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build::<_, Full<Bytes>>(layer.layer(FallbackLayer::http_connector()))
}

/// A client whose resolver sends every name to 127.0.0.1 (the system resolver may not know
/// `localhost.`; name resolution is not what is under test), one connection per request.
fn loopback_client(
    layer: &FallbackLayer,
) -> Client<FallbackConnector<HttpConnector<Loopback>>, Full<Bytes>> {
    let mut http = HttpConnector::new_with_resolver(Loopback);
    http.enforce_http(false);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(layer.layer(http))
}

/// A resolver that answers 127.0.0.1 for every name.
#[derive(Clone)]
struct Loopback;

impl tower_service::Service<Name> for Loopback {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: Name) -> Self::Future {
        std::future::ready(Ok(vec![SocketAddr::from(([127, 0, 0, 1], 0))].into_iter()))
    }
}

/// A GET through `client`, bounded to 30 s.
async fn get_via(
    client: &Client<FallbackConnector<HttpConnector<Loopback>>, Full<Bytes>>,
    url: &str,
) -> Result<TlsInfo, tls_fallback::Error> {
    let req = hyper::Request::get(url)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = tokio::time::timeout(std::time::Duration::from_secs(30), client.request(req))
        .await
        .expect("request bounded by 30 s")
        .map_err(|e| tls_error(&e))?;
    Ok(res.extensions().get::<TlsInfo>().cloned().expect("TlsInfo"))
}

/// The SNI of every hello the emulator saw.
fn snis(em: &Emulator) -> Vec<Option<String>> {
    em.hellos()
        .iter()
        .map(|h| h.hello.as_ref().and_then(|h| h.sni.clone()))
        .collect()
}

/// An emulator on ::1 (no rules) in front of `server`.
async fn on_ipv6_loopback(server: &TlsServer) -> Emulator {
    Emulator::start_on(IpAddr::V6(Ipv6Addr::LOCALHOST), server.addr(), vec![])
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trailing_dot_spelling_ends_as_a_fresh_layer_would_with_the_same_sni() {
    let server = TlsServer::modern().await.unwrap();
    let em = Emulator::start(server.addr(), vec![]).await.unwrap();
    let port = em.addr().port();
    let plain = format!("https://localhost:{port}/");
    let dotted = format!("https://LocalHost.:{port}/");
    let layer = builder().build().unwrap();
    let client = loopback_client(&layer);
    let first = get_via(&client, &plain).await.unwrap();
    assert!(!first.resumed);
    // The same host: its session may resume, because the name checked is the same.
    let second = get_via(&client, &dotted)
        .await
        .unwrap_or_else(|e| panic!("{dotted}: {e}"));
    assert_eq!(second.version, Tls1_3);
    // A fresh layer (nothing to resume) ends the same way on the dotted spelling.
    let fresh = builder().build().unwrap();
    let third = get_via(&loopback_client(&fresh), &dotted)
        .await
        .unwrap_or_else(|e| panic!("a fresh layer refused {dotted}: {e}"));
    assert!(!third.resumed);
    assert_eq!(third.version, Tls1_3);
    let one = Some("localhost".to_string());
    assert_eq!(
        snis(&em),
        [one.clone(), one.clone(), one],
        "same SNI on the wire"
    );
    assert_eq!(layer.stats().hosts.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_matches_every_spelling_of_an_ipv6_address() {
    let server = TlsServer::modern().await.unwrap();
    let em = on_ipv6_loopback(&server).await;
    let port = em.addr().port();
    for pinned in ["[::1]", "[0:0::1]", "[0000::0001]"] {
        let layer = builder()
            .pin(format!("{pinned}:{port}"), Tls1_2)
            .build()
            .unwrap();
        for spelling in LOOPBACK_V6 {
            em.clear();
            let url = format!("https://{spelling}:{port}/");
            let (res, _) = get(&fresh_client(&layer), &url)
                .await
                .unwrap_or_else(|e| panic!("{url}: {}", tls_error(&e)));
            let info = tls(&res);
            assert!(info.pinned, "pin {pinned}, {url}");
            assert_eq!(info.version, Tls1_2, "pin {pinned}, {url}");
            // One hello at the pinned version, without SCSV, and no SNI for an address.
            assert_eq!(ladder_seen(&em), [(Some(Tls1_2), false)], "{url}");
            assert_eq!(snis(&em), [None], "{url}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_gate_matches_every_spelling_of_an_ipv6_address() {
    let server = TlsServer::only(Tls1_0).await.unwrap();
    let em = on_ipv6_loopback(&server).await;
    let port = em.addr().port();
    let layer = builder().allow_legacy("[0:0::1]").build().unwrap();
    let pattern_without_port = builder().allow_legacy("0000::1").build().unwrap();
    for l in [&layer, &pattern_without_port] {
        for spelling in LOOPBACK_V6 {
            let url = format!("https://{spelling}:{port}/");
            let (res, _) = get(&fresh_client(l), &url)
                .await
                .unwrap_or_else(|e| panic!("{url}: {}", tls_error(&e)));
            assert_eq!(tls(&res).version, Tls1_0, "{url}");
        }
        // One decision for every spelling: learned once, then every spelling starts from it.
        let hosts = l.stats().hosts;
        assert_eq!(hosts.len(), 1, "{hosts:?}");
        assert_eq!(hosts[0].host, format!("[::1]:{port}"));
    }
    // The IPv4-mapped form is another host: not let through.
    let mapped = format!("https://[::ffff:127.0.0.1]:{}/", server.addr().port());
    let err = tls_error(&get(&fresh_client(&layer), &mapped).await.unwrap_err());
    assert_eq!(
        err.kind(),
        tls_fallback::ErrorKind::LegacyNotAllowed,
        "{err}"
    );
}
