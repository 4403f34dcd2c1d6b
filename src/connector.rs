//! The layer and the connector: [`FallbackLayer`] wraps any TCP connector (`Service<Uri>`) into
//! a [`FallbackConnector`] that hyper-util's legacy `Client` can use. `http://` passes through;
//! an `https://` connection is handed to the walk (`crate::walk`), which chooses the starting
//! rung, runs the attempts and learns.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::uri::Scheme;
use http::Uri;
use hyper::rt::{Read, Write};
use hyper_util::client::legacy::connect::HttpConnector;
use tower_layer::Layer;
use tower_service::Service;

use crate::builder::FallbackLayerBuilder;
use crate::error::{Attempts, Error};
use crate::policy::{HostKey, Policy};
use crate::stats::Stats;
use crate::stream::MaybeHttpsStream;
use crate::walk::{self, Shared};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A `tower::Layer` that adds safe, per-host TLS fallback to a TCP connector.
///
/// ```no_run
/// use http_body_util::Empty;
/// use hyper::body::Bytes;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use tls_fallback::{FallbackLayer, TlsVersion};
/// use tower_layer::Layer;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let layer = FallbackLayer::builder()
///     .allow_legacy("legacy-gateway.example")
///     .pin("api.old-bank.example", TlsVersion::Tls1_0)
///     .build()?;
/// let connector = layer.layer(FallbackLayer::http_connector());
/// let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector);
/// let res = client.get("https://legacy-gateway.example/".parse()?).await?;
/// if let Some(tls) = res.extensions().get::<tls_fallback::TlsInfo>() {
///     println!("{} via {} after {} handshakes", tls.version, tls.profile, tls.handshakes());
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FallbackLayer {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for FallbackLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackLayer")
            .field(
                "rungs",
                &self
                    .shared
                    .config
                    .rungs
                    .iter()
                    .map(|r| &r.name)
                    .collect::<Vec<_>>(),
            )
            .field("policy", &self.shared.config.policy)
            .finish()
    }
}

impl FallbackLayer {
    /// A builder with the defaults: system roots, the default ladder, floor TLS 1.2, no legacy
    /// host, no pin, 10 s handshake timeout, 1 h / 10,000-host decision cache in memory.
    pub fn builder() -> FallbackLayerBuilder {
        FallbackLayerBuilder::default()
    }

    /// The layer with every default.
    pub fn new() -> Result<Self, Error> {
        FallbackLayer::builder().build()
    }

    /// hyper-util's `HttpConnector`, set up to be wrapped: it accepts `https://` URIs
    /// (`enforce_http(false)`) and sets `TCP_NODELAY`.
    pub fn http_connector() -> HttpConnector {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http
    }

    /// Counters and learned hosts so far (shared by every connector from this layer).
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Forgets everything learned about a host: its decision and its TLS sessions.
    pub fn forget(&self, host: &str, port: u16) {
        self.shared.forget(&HostKey::new(host, port));
    }

    /// The policy this layer applies: the floor, the legacy gate and the pins, per host
    /// ([`Policy::floor_for`], [`Policy::legacy_allowed`]).
    pub fn policy(&self) -> &Policy {
        &self.shared.config.policy
    }

    /// Makes learned decisions durable now (writes the cache file, if any).
    pub fn flush(&self) -> std::io::Result<()> {
        self.shared.config.store.flush()
    }
}

impl<S> Layer<S> for FallbackLayer {
    type Service = FallbackConnector<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FallbackConnector {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The connector: a `Service<Uri>` yielding [`MaybeHttpsStream`]s, for
/// `hyper_util::client::legacy::Client::builder(..).build(connector)`.
#[derive(Clone)]
pub struct FallbackConnector<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for FallbackConnector<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackConnector").finish_non_exhaustive()
    }
}

impl FallbackConnector<HttpConnector> {
    /// A connector over hyper-util's `HttpConnector` with every default.
    pub fn new() -> Result<Self, Error> {
        Ok(FallbackLayer::new()?.layer(FallbackLayer::http_connector()))
    }
}

impl<S> FallbackConnector<S> {
    /// Counters and learned hosts so far (shared with every clone and with the layer).
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Forgets everything learned about a host: its decision and its TLS sessions.
    pub fn forget(&self, host: &str, port: u16) {
        self.shared.forget(&HostKey::new(host, port));
    }
}

impl<S> Service<Uri> for FallbackConnector<S>
where
    S: Service<Uri> + Clone + Send + 'static,
    S::Response: Read + Write + Unpin + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = MaybeHttpsStream<S::Response>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx).map_err(|e| {
            connect_error(
                "any host (the wrapped connector failed poll_ready)",
                e.into(),
            )
        })
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        // The ready clone goes into the future; `self.inner` gets a fresh clone (tower's rule).
        let inner = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, inner);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let scheme = uri.scheme().cloned();
            if scheme == Some(Scheme::HTTP) {
                let mut inner = inner;
                let tcp = inner
                    .call(uri.clone())
                    .await
                    .map_err(|e| connect_error(&uri.to_string(), e.into()))?;
                return Ok(MaybeHttpsStream::Http(tcp));
            }
            if scheme != Some(Scheme::HTTPS) {
                return Err(Error::InvalidUri {
                    uri: uri.to_string(),
                    reason: "the scheme must be http or https".into(),
                });
            }
            let key = HostKey::from_uri(&uri)?;
            let result = walk::connect(&shared, inner, &uri, &key).await;
            if let Err(e) = &result {
                shared.stats.failure(e.kind());
            }
            result
        })
    }
}

fn connect_error(host: &str, e: BoxError) -> Error {
    Error::Connect {
        host: host.to_string(),
        source: Arc::from(e),
        attempts: Attempts(Vec::new()),
    }
}
