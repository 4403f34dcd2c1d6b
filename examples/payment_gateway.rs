//! A JSON POST to two payment gateways through [`tls_fallback::Client`]: one pinned to TLS 1.0
//! in code, one learned by the fallback connector. The gateways are the test kit's, on
//! 127.0.0.1, so it needs no network: `cargo run --example payment_gateway --features testkit`.
//! In your code, drop the test kit, trust your system roots (the default) and name your real
//! hosts in `pin` and `allow_legacy`; the part between the two rulers is the whole program.

use std::time::Duration;

use tls_fallback::testkit::{Emulator, Rule, TestPki, TlsServer};
use tls_fallback::{Client, FallbackLayer, TlsVersion};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Gateway A: a TLS 1.0 box we know about. Gateway B: resets hellos above TLS 1.1.
    let a_server = TlsServer::only(TlsVersion::Tls1_0).await?;
    let a = Emulator::start(a_server.addr(), vec![Rule::close_above(TlsVersion::Tls1_0)]).await?;
    let b_server = TlsServer::only(TlsVersion::Tls1_1).await?;
    let b = Emulator::start(b_server.addr(), vec![Rule::reset_above(TlsVersion::Tls1_1)]).await?;
    let (pinned, legacy) = (
        format!("localhost:{}", a.addr().port()),
        format!("localhost:{}", b.addr().port()),
    );

    // ---------------------------------------------------------------------------------------
    let layer = FallbackLayer::builder()
        .system_roots(false) // the test kit's CA instead of the system's: drop in your code
        .add_root_certificate(TestPki::shared().ca.cert.clone())
        .pin(pinned, TlsVersion::Tls1_0) // one hello, no fallback
        .allow_legacy(legacy) // may walk down to TLS 1.0, learns what works
        .build()?;
    let client = Client::builder()
        .layer(layer)
        .timeout(Duration::from_secs(20))
        .build()?;
    for gateway in [a.url(), b.url(), b.url()] {
        let res = client
            .post(&format!("{gateway}v1/payments"))
            .header("idempotency-key", "order-1234")
            .json(&serde_json::json!({ "amount": 4200, "currency": "EUR" }))
            .send()
            .await?; // on failure: the kind, every attempt and a remedy in the message
        let tls = res.tls().ok_or("not https")?;
        let how = format!("{} handshake(s), pinned: {}", tls.handshakes(), tls.pinned);
        println!(
            "{gateway}: {} over {} via {} ({how}, reused: {})",
            res.status(),
            tls.version,
            tls.profile,
            res.reused()
        );
    }
    // ---------------------------------------------------------------------------------------
    println!("learned: {:?}", client.layer().stats().hosts);
    Ok(())
}
