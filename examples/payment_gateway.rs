//! Two payment gateways through one hyper-util client: one pinned to TLS 1.0 in code, one
//! learned by the fallback connector. Runs against the test kit's gateways on 127.0.0.1, so it
//! needs no network: `cargo run --example payment_gateway --features testkit`.
//!
//! In your code, drop the test kit: trust your system roots (the default), and name your real
//! hosts in `pin` and `allow_legacy`.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tls_fallback::testkit::{Emulator, Rule, TestPki, TlsServer};
use tls_fallback::{FallbackLayer, TlsInfo, TlsVersion};
use tower_layer::Layer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Gateway A: a TLS 1.0 box we know about; pinned in code (one hello, no fallback).
    let a_server = TlsServer::only(TlsVersion::Tls1_0).await?;
    let a = Emulator::start(a_server.addr(), vec![Rule::close_above(TlsVersion::Tls1_0)]).await?;
    // Gateway B: resets any hello above TLS 1.1; the connector learns that by itself.
    let b_server = TlsServer::only(TlsVersion::Tls1_1).await?;
    let b = Emulator::start(b_server.addr(), vec![Rule::reset_above(TlsVersion::Tls1_1)]).await?;

    let layer = FallbackLayer::builder()
        .system_roots(false)
        .add_root_certificate(TestPki::shared().ca.cert.clone())
        .pin(format!("localhost:{}", a.addr().port()), TlsVersion::Tls1_0)
        .allow_legacy(format!("localhost:{}", b.addr().port()))
        .handshake_timeout(Duration::from_secs(5))
        .build()?;
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build::<_, Full<Bytes>>(layer.layer(FallbackLayer::http_connector()));

    for (name, url) in [
        ("A (pinned)", a.url()),
        ("B (learned)", b.url()),
        ("B again", b.url()),
    ] {
        let req = hyper::Request::post(&url).body(Full::new(Bytes::from_static(b"amount=42")))?;
        let res = client.request(req).await?;
        let tls = res.extensions().get::<TlsInfo>().cloned();
        let body = res.into_body().collect().await?.to_bytes();
        if let Some(tls) = tls {
            println!(
                "{name:<12} {} {:<28} profile {:<14} handshakes {} (cache: {}, pinned: {})",
                tls.version,
                tls.cipher,
                tls.profile,
                tls.handshakes(),
                tls.from_cache,
                tls.pinned
            );
        }
        print!("             {}", String::from_utf8_lossy(&body));
    }
    println!("learned: {:?}", layer.stats().hosts);
    Ok(())
}
