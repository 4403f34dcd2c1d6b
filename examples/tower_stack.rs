//! The layer in a `tower::ServiceBuilder` stack: a connect timeout around the whole fallback
//! walk, over hyper-util's `HttpConnector`, used by a hyper-util client.
//! `cargo run --example tower_stack --features testkit` (127.0.0.1 only).

use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tls_fallback::testkit::{Emulator, Rule, TestPki, TlsServer};
use tls_fallback::{FallbackLayer, TlsInfo, TlsVersion};
use tower::ServiceBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let server = TlsServer::only(TlsVersion::Tls1_2).await?;
    // A box that hangs on TLS 1.3 hellos.
    let gateway =
        Emulator::start(server.addr(), vec![Rule::hang_above(TlsVersion::Tls1_2)]).await?;

    let fallback = FallbackLayer::builder()
        .system_roots(false)
        .add_root_certificate(TestPki::shared().ca.cert.clone())
        .handshake_timeout(Duration::from_millis(800))
        .build()?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    // Outer timeout bounds the whole walk (every rung); the layer's own timeout bounds each one.
    let connector = ServiceBuilder::new()
        // hyper-util's client wants an `Unpin` connect future; tower's timeout is not.
        .map_future(Box::pin)
        .timeout(Duration::from_secs(10))
        .layer(fallback.clone())
        .service(http);
    let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector);

    let res = client.get(gateway.url().parse()?).await?;
    let tls = res.extensions().get::<TlsInfo>().cloned();
    println!("status {}", res.status());
    if let Some(tls) = tls {
        println!(
            "{} via {} after {} handshakes: {:?}",
            tls.version,
            tls.profile,
            tls.handshakes(),
            tls.attempts
                .iter()
                .map(|a| a.outcome.short())
                .collect::<Vec<_>>()
        );
    }
    println!("stats: {}", serde_json::to_string(&fallback.stats())?);
    Ok(())
}
