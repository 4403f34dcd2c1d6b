//! A real OpenSSL HTTPS server (tokio-openssl + hyper) with configurable versions and security
//! level. It answers every request with `200 OK` and counts requests per method.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use openssl::ssl::{
    select_next_proto, AlpnError, Ssl, SslAcceptor, SslMethod, SslOptions, SslVerifyMode,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_openssl::SslStream;

use super::pki::{Identity, TestPki};
use crate::TlsVersion;

/// Configures a [`TlsServer`].
#[derive(Debug, Clone)]
pub struct TlsServerBuilder {
    min: Option<TlsVersion>,
    max: Option<TlsVersion>,
    security_level: Option<u32>,
    identity: Option<Identity>,
    http2: bool,
    client_auth: bool,
}

/// A running HTTPS test server on 127.0.0.1; stops when dropped.
#[derive(Debug)]
pub struct TlsServer {
    addr: SocketAddr,
    state: Arc<ServerState>,
    task: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct ServerState {
    requests: Mutex<HashMap<String, u64>>,
    handshakes: AtomicU64,
    failed_handshakes: AtomicU64,
    versions: Mutex<HashMap<&'static str, u64>>,
}

impl TlsServerBuilder {
    /// The lowest version the server accepts.
    pub fn min_version(mut self, v: TlsVersion) -> Self {
        self.min = Some(v);
        self
    }
    /// The highest version the server accepts.
    pub fn max_version(mut self, v: TlsVersion) -> Self {
        self.max = Some(v);
        self
    }
    /// Only this version.
    pub fn only(self, v: TlsVersion) -> Self {
        self.min_version(v).max_version(v)
    }
    /// OpenSSL security level (0 allows TLS 1.0/1.1 and SHA-1; default: OpenSSL's).
    /// Versions below TLS 1.2 set level 0 unless told otherwise.
    pub fn security_level(mut self, level: u32) -> Self {
        self.security_level = Some(level);
        self
    }
    /// Selects `h2` by ALPN when the client offers it, and then speaks HTTP/2 (default: no
    /// ALPN, HTTP/1.1 only).
    pub fn http2(mut self, on: bool) -> Self {
        self.http2 = on;
        self
    }

    /// Requires a client certificate signed by [`TestPki::shared`]'s CA (mutual TLS); a client
    /// without one fails the handshake (TLS 1.2: alert 40 after the ServerHello; TLS 1.3:
    /// alert 116 after the client's Finished).
    pub fn require_client_certificate(mut self, on: bool) -> Self {
        self.client_auth = on;
        self
    }

    /// The certificate to present (default: [`TestPki::shared`]'s `localhost`).
    pub fn identity(mut self, id: Identity) -> Self {
        self.identity = Some(id);
        self
    }

    /// Binds 127.0.0.1:0 and serves in a tokio task.
    pub async fn start(self) -> std::io::Result<TlsServer> {
        let acceptor = self.acceptor().map_err(std::io::Error::other)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(ServerState::default());
        let st = Arc::clone(&state);
        let task = tokio::spawn(async move {
            // Connection tasks live in the accept task's set: dropping the owner aborts the
            // accept task, and with it every connection still open.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                while conns.try_join_next().is_some() {}
                let Ok((tcp, _)) = listener.accept().await else {
                    // Out of descriptors or similar: do not spin.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                };
                let acceptor = acceptor.clone();
                let st = Arc::clone(&st);
                conns.spawn(async move { serve(acceptor, tcp, st).await });
            }
        });
        Ok(TlsServer { addr, state, task })
    }

    pub(super) fn acceptor(&self) -> Result<SslAcceptor, openssl::error::ErrorStack> {
        let id = self
            .identity
            .clone()
            .unwrap_or_else(|| TestPki::shared().localhost.clone());
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
        // The Mozilla profile switches old versions off with options; min/max decide here.
        b.clear_options(SslOptions::NO_TLSV1 | SslOptions::NO_TLSV1_1);
        let legacy = self.min.is_some_and(|v| v.is_legacy());
        let level = self.security_level.or(if legacy { Some(0) } else { None });
        if let Some(level) = level {
            b.set_cipher_list(&format!("DEFAULT:@SECLEVEL={level}"))?;
            b.set_security_level(level);
        }
        b.set_min_proto_version(self.min.map(TlsVersion::to_ssl))?;
        b.set_max_proto_version(self.max.map(TlsVersion::to_ssl))?;
        if self.http2 {
            b.set_alpn_select_callback(|_, client| {
                select_next_proto(b"\x02h2\x08http/1.1", client).ok_or(AlpnError::NOACK)
            });
        }
        if self.client_auth {
            let ca = TestPki::shared().ca.cert.clone();
            b.cert_store_mut().add_cert(ca.clone())?;
            b.add_client_ca(&ca)?;
            b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
        }
        b.set_certificate(&id.cert)?;
        b.set_private_key(&id.key)?;
        b.check_private_key()?;
        Ok(b.build())
    }
}

async fn serve(acceptor: SslAcceptor, tcp: tokio::net::TcpStream, st: Arc<ServerState>) {
    // Without it, Nagle holds the response behind the TLS 1.3 session tickets until the
    // client's delayed ACK (40 ms) on every full handshake.
    let _ = tcp.set_nodelay(true);
    let Ok(ssl) = Ssl::new(acceptor.context()) else {
        return;
    };
    let Ok(mut tls) = SslStream::new(ssl, tcp) else {
        return;
    };
    let accepted = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        Pin::new(&mut tls).accept(),
    )
    .await;
    if !matches!(accepted, Ok(Ok(()))) {
        st.failed_handshakes.fetch_add(1, Ordering::Relaxed);
        return;
    }
    st.handshakes.fetch_add(1, Ordering::Relaxed);
    let version = tls.ssl().version_str();
    if let Ok(mut v) = st.versions.lock() {
        *v.entry(version).or_insert(0) += 1;
    }
    let svc = service_fn(move |req: Request<Incoming>| {
        let st = Arc::clone(&st);
        async move {
            let method = req.method().to_string();
            // Read the whole body before counting: a request counts once it fully arrived.
            let body = req.into_body().collect().await.map(|b| b.to_bytes());
            let len = body.as_ref().map_or(0, |b| b.len());
            if let Ok(mut m) = st.requests.lock() {
                *m.entry(method.clone()).or_insert(0) += 1;
            }
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                "hello from the tls-fallback test kit: {method} over {version}, {len} body bytes\n"
            )))))
        }
    });
    if tls.ssl().selected_alpn_protocol() == Some(b"h2") {
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(tls), svc)
            .await;
    } else {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(tls), svc)
            .await;
    }
}

impl TlsServer {
    /// A builder: OpenSSL's default versions and security level, the `localhost` identity.
    pub fn builder() -> TlsServerBuilder {
        TlsServerBuilder {
            min: None,
            max: None,
            security_level: None,
            identity: None,
            http2: false,
            client_auth: false,
        }
    }

    /// A server speaking TLS 1.2 and 1.3 at OpenSSL's defaults.
    pub async fn modern() -> std::io::Result<TlsServer> {
        TlsServer::builder().start().await
    }

    /// A server speaking only `v` (security level 0 for TLS 1.0/1.1).
    pub async fn only(v: TlsVersion) -> std::io::Result<TlsServer> {
        TlsServer::builder().only(v).start().await
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://localhost:PORT/`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}/", self.addr.port())
    }

    /// Requests fully received with this method.
    pub fn requests(&self, method: &str) -> u64 {
        self.state
            .requests
            .lock()
            .map(|m| m.get(method).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Handshakes completed.
    pub fn handshakes(&self) -> u64 {
        self.state.handshakes.load(Ordering::Relaxed)
    }

    /// Handshakes that failed on the server side.
    pub fn failed_handshakes(&self) -> u64 {
        self.state.failed_handshakes.load(Ordering::Relaxed)
    }

    /// Completed handshakes per negotiated version (`"TLSv1.2"`...).
    pub fn versions(&self) -> HashMap<&'static str, u64> {
        self.state
            .versions
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
