//! The fallback connector through an HTTP CONNECT proxy (a corporate egress proxy): hyper-util's
//! `Tunnel` is the inner connector, so each rung of a walk is one CONNECT and the fallback runs
//! inside the tunnel. A proxy that refuses the tunnel (407, 5xx) is a `connect` error, never a
//! reason to fall back.
//!
//! `cargo run --example connect_proxy -- http://proxy.corp:3128 https://gateway.example/`
//! (the proxy defaults to `HTTPS_PROXY`).

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tls_fallback::{FallbackLayer, TlsInfo};
use tower_layer::Layer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args = std::env::args().skip(1);
    let proxy = args
        .next()
        .or_else(|| std::env::var("HTTPS_PROXY").ok())
        .ok_or("give the proxy URL (http://HOST:PORT) or set HTTPS_PROXY")?;
    let url = args.next().unwrap_or_else(|| "https://example.com/".into());

    // The inner connector reaches the proxy; `Tunnel` asks it for a CONNECT to each target.
    let tunnel = Tunnel::new(proxy.parse()?, FallbackLayer::http_connector());
    let layer = FallbackLayer::builder().build()?;
    let client =
        Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(layer.layer(tunnel));

    match client.get(url.parse()?).await {
        Ok(res) => {
            let tls = res.extensions().get::<TlsInfo>();
            println!(
                "{} via {proxy}: {}",
                res.status(),
                tls.map_or("no TLS".to_string(), |t| format!(
                    "TLS {} ({}) after {} handshakes",
                    t.version,
                    t.profile,
                    t.handshakes()
                ))
            );
        }
        Err(e) => match tls_fallback::Error::find(&e) {
            Some(tls) => println!("{}: {tls}", tls.kind().as_str()),
            None => println!("failed: {e}"),
        },
    }
    Ok(())
}
