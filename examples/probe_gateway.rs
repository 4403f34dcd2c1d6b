//! Probe a broken gateway the way `tls-fallback probe` does, from code: starts a TLS 1.0 box that
//! closes any newer hello (test kit, 127.0.0.1) and prints the report you would send the vendor.
//! `cargo run --example probe_gateway --features testkit`

use tls_fallback::probe::{probe, ProbeConfig};
use tls_fallback::testkit::{Emulator, Rule, TestPki, TlsServer};
use tls_fallback::TlsVersion;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let server = TlsServer::only(TlsVersion::Tls1_0).await?;
    let gateway =
        Emulator::start(server.addr(), vec![Rule::close_above(TlsVersion::Tls1_0)]).await?;
    let mut cfg = ProbeConfig::new(format!("127.0.0.1:{}", gateway.addr().port()));
    cfg.sni = Some("localhost".into());
    cfg.timeout = std::time::Duration::from_secs(2);
    // The test kit's servers use a private CA: trust it for the last test, the full handshake.
    let ca = std::env::temp_dir().join(format!("probe-gateway-ca-{}.pem", std::process::id()));
    std::fs::write(&ca, TestPki::shared().ca_pem())?;
    cfg.ca_file = Some(ca.clone());
    let report = probe(&cfg).await;
    let _ = std::fs::remove_file(&ca);
    let report = report?;
    println!("{}", report.to_table());
    Ok(())
}
