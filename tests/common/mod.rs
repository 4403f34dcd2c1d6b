//! Shared helpers for the integration tests: a client through the fallback layer that trusts
//! the test kit's CA, small assertions on what the emulator saw, and (`servers`) nginx and
//! gnutls-serv as child processes.
#![allow(dead_code)]

pub mod servers;

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tls_fallback::testkit::{Emulator, Rule, SeenHello, TestPki, TlsServer};
use tls_fallback::{FallbackConnector, FallbackLayer, FallbackLayerBuilder, TlsInfo, TlsVersion};
use tower_layer::Layer;

pub type TestClient = Client<FallbackConnector<HttpConnector>, Full<Bytes>>;

/// A builder trusting only the test CA, with a short handshake timeout.
pub fn builder() -> FallbackLayerBuilder {
    FallbackLayer::builder()
        .system_roots(false)
        .add_root_certificate(TestPki::shared().ca.cert.clone())
        .handshake_timeout(Duration::from_secs(2))
}

pub fn client(layer: &FallbackLayer) -> TestClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(5))
        .build(layer.layer(FallbackLayer::http_connector()))
}

/// A GET bounded to 30 s; returns the response with its body read.
pub async fn get(
    client: &TestClient,
    url: &str,
) -> Result<(Response<()>, Bytes), hyper_util::client::legacy::Error> {
    send(client, "GET", url, Bytes::new()).await
}

pub async fn send(
    client: &TestClient,
    method: &str,
    url: &str,
    body: Bytes,
) -> Result<(Response<()>, Bytes), hyper_util::client::legacy::Error> {
    let req = Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(body))
        .expect("valid request");
    let res = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .expect("request bounded by 30 s")?;
    let (parts, body) = res.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Ok((Response::from_parts(parts, ()), bytes))
}

pub fn tls(res: &Response<()>) -> TlsInfo {
    res.extensions()
        .get::<TlsInfo>()
        .cloned()
        .expect("TlsInfo on every https response")
}

pub fn tls_error(e: &hyper_util::client::legacy::Error) -> tls_fallback::Error {
    tls_fallback::Error::find(e)
        .cloned()
        .unwrap_or_else(|| panic!("not a tls-fallback error: {e:?}"))
}

/// (offered max version, SCSV) of every hello the emulator saw, in order.
pub fn ladder_seen(em: &Emulator) -> Vec<(Option<TlsVersion>, bool)> {
    em.hellos()
        .iter()
        .map(|h: &SeenHello| (h.offered(), h.scsv()))
        .collect()
}

/// A TLS 1.0-only server behind a box that closes any hello above TLS 1.0: the classic gateway.
pub async fn legacy_gateway() -> (TlsServer, Emulator) {
    gateway_with(Rule::close_above(TlsVersion::Tls1_0)).await
}

/// A TLS 1.0-1.3 server (security level 0) behind a box that closes every hello above TLS
/// 1.0: only the SCSV on the TLS 1.0 hello stops the walk (the server refuses it with
/// inappropriate_fallback), a downgrade attack as the walk sees it.
pub async fn downgrade_attack() -> (TlsServer, Emulator) {
    let server = TlsServer::builder()
        .min_version(TlsVersion::Tls1_0)
        .security_level(0)
        .start()
        .await
        .expect("server");
    let em = Emulator::start(server.addr(), vec![Rule::close_above(TlsVersion::Tls1_0)])
        .await
        .expect("emulator");
    (server, em)
}

/// A TLS 1.0-only server behind an emulator with this rule.
pub async fn gateway_with(rule: Rule) -> (TlsServer, Emulator) {
    let server = TlsServer::only(TlsVersion::Tls1_0).await.expect("server");
    let em = Emulator::start(server.addr(), vec![rule])
        .await
        .expect("emulator");
    (server, em)
}

/// What the emulator sees when the default ladder walks all the way down to TLS 1.0:
/// (offered max version, SCSV) per hello.
pub const LEGACY_WALK: [(Option<TlsVersion>, bool); 6] = [
    (Some(TlsVersion::Tls1_3), false),
    (Some(TlsVersion::Tls1_3), true),
    (Some(TlsVersion::Tls1_2), true),
    (Some(TlsVersion::Tls1_2), true),
    (Some(TlsVersion::Tls1_1), true),
    (Some(TlsVersion::Tls1_0), true),
];

/// Asserts what the emulator saw when a silent TLS 1.3 rung was followed by the compact TLS 1.3
/// rung and the TLS 1.2 rung started together, and TLS 1.2 won: the top hello, the TLS 1.2
/// hello with SCSV, and the compact one with SCSV unless it was abandoned before it was sent.
pub fn assert_tls13_silent_then_tls12(em: &Emulator) {
    let seen = ladder_seen(em);
    let full = [
        (Some(TlsVersion::Tls1_3), false),
        (Some(TlsVersion::Tls1_3), true),
        (Some(TlsVersion::Tls1_2), true),
    ];
    let mut sorted = seen.clone();
    sorted.sort_by_key(|(v, scsv)| (std::cmp::Reverse(*v), *scsv));
    // An abandoned compact attempt may have had its TCP connection accepted (the kernel
    // completes the handshake) and closed before its hello went out: a connection with no hello.
    let no_hello = (None, false);
    assert!(
        sorted == full || sorted == [full[0], full[2]] || sorted == [full[0], full[2], no_hello],
        "{seen:?}"
    );
    assert_eq!(seen[0], full[0], "{seen:?}");
}
