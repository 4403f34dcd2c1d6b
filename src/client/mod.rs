//! [`Client`]: a small HTTPS client over hyper-util's legacy `Client` and the fallback
//! connector (feature `client`, on by default). It adds what a payment integration needs on
//! top and nothing else: one timeout for the whole request (connect, every handshake, the
//! request and the body), a response-body cap, JSON and form bodies, redirects only when asked,
//! and errors that tell the whole story. For streaming bodies or your own tower stack, wrap
//! [`FallbackLayer`] around a connector yourself.
//!
//! ```no_run
//! use std::time::Duration;
//! use tls_fallback::{Client, FallbackLayer, TlsVersion};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let layer = FallbackLayer::builder()
//!     .pin("api.old-bank.example:8443", TlsVersion::Tls1_0)
//!     .allow_legacy("*.legacy-gateway.example")
//!     .build()?;
//! let client = Client::builder().layer(layer).timeout(Duration::from_secs(20)).build()?;
//! let res = client
//!     .post("https://api.old-bank.example:8443/v1/payments")
//!     .header("idempotency-key", "order-1234")
//!     .json(&serde_json::json!({ "amount": 4200, "currency": "EUR" }))
//!     .send()
//!     .await?;
//! println!("{} {}", res.status(), res.text());
//! # Ok(()) }
//! ```

mod error;
mod form;
mod redirect;
mod request;
mod response;

use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue, USER_AGENT};
use http::HeaderMap;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_layer::Layer;

pub use error::RequestError;
pub use request::RequestBuilder;
pub use response::Response;

use crate::connector::{FallbackConnector, FallbackLayer};
use crate::error::Error;

type Http = hyper_util::client::legacy::Client<FallbackConnector<HttpConnector>, Full<Bytes>>;

/// A small HTTPS client with safe per-host TLS fallback; cheap to clone (clones share the
/// connection pool and what the layer learned).
#[derive(Clone, Debug)]
pub struct Client {
    http: Http,
    layer: FallbackLayer,
    cfg: Arc<Config>,
}

#[derive(Debug)]
struct Config {
    timeout: Duration,
    max_body: usize,
    redirects: usize,
    headers: HeaderMap,
}

/// Configures a [`Client`].
#[derive(Debug)]
pub struct ClientBuilder {
    layer: Option<FallbackLayer>,
    timeout: Duration,
    max_body: usize,
    redirects: usize,
    headers: HeaderMap,
    pool_idle: Duration,
    bad_header: Option<String>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        let mut headers = HeaderMap::new();
        let agent = concat!("tls-fallback/", env!("CARGO_PKG_VERSION"));
        headers.insert(USER_AGENT, HeaderValue::from_static(agent));
        ClientBuilder {
            layer: None,
            timeout: Duration::from_secs(30),
            max_body: 10 << 20,
            redirects: 0,
            headers,
            pool_idle: Duration::from_secs(60),
            bad_header: None,
        }
    }
}

impl ClientBuilder {
    /// The fallback layer (its policy, pins, cache and timeouts); default:
    /// [`FallbackLayer::new`].
    pub fn layer(mut self, layer: FallbackLayer) -> Self {
        self.layer = Some(layer);
        self
    }

    /// The whole-request timeout: TCP connect, every handshake of a fallback walk, sending the
    /// request, the answer and its whole body, and redirects (default 30 s). The layer's
    /// handshake timeout still bounds each single handshake.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest response body accepted, in bytes (default 10 MiB); a larger one ends the
    /// request with [`crate::ErrorKind::BodyTooLarge`].
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Follow up to `n` redirects (301, 302, 303, 307, 308; default 0: a redirect is returned
    /// as the response). Never from `https` to `http`; credentials (`Authorization`, `Cookie`,
    /// `Proxy-Authorization`) are dropped when the origin changes.
    pub fn follow_redirects(mut self, n: usize) -> Self {
        self.redirects = n;
        self
    }

    /// A header sent with every request (a request's own header of the same name wins). The
    /// default set is `User-Agent: tls-fallback/VERSION`.
    pub fn default_header(mut self, name: &str, value: &str) -> Self {
        match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            (Ok(n), Ok(v)) => {
                self.headers.insert(n, v);
            }
            _ => self.bad_header = Some(format!("invalid default header {name:?}: {value:?}")),
        }
        self
    }

    /// How long an idle kept-alive connection stays in the pool (default 60 s).
    pub fn pool_idle_timeout(mut self, idle: Duration) -> Self {
        self.pool_idle = idle;
        self
    }

    /// The client; fails on a bad default header, or when the default layer cannot be built.
    pub fn build(self) -> Result<Client, Error> {
        if let Some(bad) = &self.bad_header {
            return Err(Error::Config(bad.clone()));
        }
        let layer = match &self.layer {
            Some(layer) => layer.clone(),
            None => FallbackLayer::new()?,
        };
        Ok(self.assemble(layer))
    }

    fn assemble(self, layer: FallbackLayer) -> Client {
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(self.pool_idle)
            .build(layer.layer(FallbackLayer::http_connector()));
        let cfg = Config {
            timeout: self.timeout,
            max_body: self.max_body,
            redirects: self.redirects,
            headers: self.headers,
        };
        Client {
            http,
            layer,
            cfg: Arc::new(cfg),
        }
    }
}

impl Client {
    /// A client over `layer` with the defaults (30 s per request, 10 MiB bodies, no
    /// redirects followed).
    pub fn new(layer: FallbackLayer) -> Client {
        ClientBuilder::default().assemble(layer)
    }

    /// A builder with the defaults.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A `GET` request.
    pub fn get(&self, url: &str) -> RequestBuilder {
        self.request(http::Method::GET, url)
    }

    /// A `POST` request.
    pub fn post(&self, url: &str) -> RequestBuilder {
        self.request(http::Method::POST, url)
    }

    /// A request with any method.
    pub fn request(&self, method: http::Method, url: &str) -> RequestBuilder {
        RequestBuilder::new(self.clone(), method, url)
    }

    /// The fallback layer: [`FallbackLayer::stats`], [`FallbackLayer::forget`],
    /// [`FallbackLayer::flush`].
    pub fn layer(&self) -> &FallbackLayer {
        &self.layer
    }
}
