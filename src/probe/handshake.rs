//! The probe's last test: one real handshake through the fallback connector (legacy allowed:
//! this is a diagnosis), with certificate checks against the SNI name, to the address the raw
//! tests reached, whatever the name resolves to.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_layer::Layer;

use super::findings::{TestId, TestOutcome, WireVersion};
use super::report::ProbeTest;
use super::runner::elapsed_ms;
use super::ProbeConfig;
use crate::classify::Outcome;
use crate::{Error, FallbackLayer, TlsVersion};

/// The connector test's row: `ok:PROFILE` with the negotiated version, or `error:KIND` with
/// the error's message (the certificate verification message when that is what failed).
pub(super) async fn full_handshake(cfg: &ProbeConfig, addr: SocketAddr) -> ProbeTest {
    let started = Instant::now();
    let mut test = ProbeTest::skipped(
        TestId::FallbackConnector,
        "a full handshake through the fallback connector, certificates checked",
    );
    let result = connector_handshake(cfg, addr).await;
    test.ms = elapsed_ms(started);
    match result {
        Ok(Some((version, profile))) => {
            test.how = Some(format!(
                "handshake completed on rung {profile} with TLS {} after {} ms",
                version.as_str(),
                test.ms
            ));
            test.outcome = TestOutcome::Connected(profile);
            test.negotiated = Some(WireVersion(version.wire()));
        }
        Ok(None) => test.outcome = TestOutcome::ConnectedPlain,
        Err(e) => {
            test.outcome = TestOutcome::Failed(e.kind());
            test.detail = Some(certificate_detail(&e).unwrap_or_else(|| e.to_string()));
            test.how = test.detail.clone();
        }
    }
    test
}

/// Connects through a fallback layer whose TCP connector always dials `addr`: the URI (and so
/// the SNI and the name the certificate is checked against) carries the SNI name, the socket
/// goes to the target. Returns the negotiated version and profile.
async fn connector_handshake(
    cfg: &ProbeConfig,
    addr: SocketAddr,
) -> Result<Option<(TlsVersion, String)>, Error> {
    let host = match &cfg.sni {
        Some(name) => name.clone(),
        None if addr.is_ipv6() => format!("[{}]", addr.ip()),
        None => addr.ip().to_string(),
    };
    let uri: Uri = format!("https://{host}:{}/", addr.port()).parse().map_err(
        |e: http::uri::InvalidUri| Error::InvalidUri {
            uri: host.clone(),
            reason: e.to_string(),
        },
    )?;
    let mut b = FallbackLayer::builder()
        .handshake_timeout(cfg.timeout)
        .allow_legacy("*");
    if let Some(ca) = &cfg.ca_file {
        b = b.ca_file(ca);
    }
    let mut connector = b.build()?.layer(DialAddr(addr));
    let stream = tower_service::Service::call(&mut connector, uri).await?;
    Ok(stream
        .tls_info()
        .map(|info| (info.version, info.profile.to_string())))
}

/// The certificate verification message of the first attempt that failed on it.
fn certificate_detail(e: &Error) -> Option<String> {
    e.attempts().iter().find_map(|a| match &a.outcome {
        Outcome::Certificate { detail } => Some(detail.clone()),
        _ => None,
    })
}

/// A TCP connector that dials one address whatever the URI says.
#[derive(Debug, Clone, Copy)]
struct DialAddr(SocketAddr);

impl tower_service::Service<Uri> for DialAddr {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let addr = self.0;
        Box::pin(async move {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            Ok(TokioIo::new(tcp))
        })
    }
}
