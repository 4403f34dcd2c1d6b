//! Reaching upstreams through an outbound proxy (`proxy --via URL`, `get --proxy URL`, or
//! `HTTPS_PROXY` minus `NO_PROXY`): hyper-util's `Tunnel` (HTTP CONNECT) or `SocksV5` under the
//! fallback layer, so every rung of a walk is one CONNECT (or one SOCKS connection) and the TLS
//! fallback runs inside it. A proxy that refuses (407, 5xx, a SOCKS refusal) is a connect error
//! that names the proxy, never a reason to fall back; credentials never appear in a message.

mod connect;
mod socks;
mod url;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

pub use url::{ProxyUrl, Scheme};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `NO_PROXY`: hosts reached directly (`*`, `host`, `.suffix` or `suffix`, matching
/// subdomains too; an optional `:port` is ignored).
#[derive(Debug, Clone, Default)]
pub struct NoProxy {
    all: bool,
    domains: Vec<String>,
}

impl NoProxy {
    /// Parses a `NO_PROXY` value.
    pub fn parse(s: &str) -> NoProxy {
        let mut np = NoProxy::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if item == "*" {
                np.all = true;
                continue;
            }
            let host = match item.rsplit_once(':') {
                Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
                _ => item,
            };
            let host = host.trim_start_matches('.').trim_start_matches('[');
            let host = host.trim_end_matches(']').trim_end_matches('.');
            np.domains.push(host.to_ascii_lowercase());
        }
        np
    }

    /// Whether this host goes directly.
    pub fn matches(&self, host: &str) -> bool {
        // `gw.corp.example.` (a fully qualified name) is the same host as `gw.corp.example`.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        self.all
            || self.domains.iter().any(|d| {
                host == *d
                    || (host.len() > d.len()
                        && host.ends_with(d.as_str())
                        && host.as_bytes()[host.len() - d.len() - 1] == b'.')
            })
    }
}

/// The outbound proxy to use: the flag, else `HTTPS_PROXY` / `https_proxy` from the
/// environment (with `NO_PROXY` / `no_proxy`), else none.
pub fn from_flag_or_env(flag: Option<&ProxyUrl>) -> Result<Option<(ProxyUrl, NoProxy)>, String> {
    if let Some(f) = flag {
        return Ok(Some((f.clone(), NoProxy::default())));
    }
    let env = |a: &str, b: &str| {
        std::env::var(a)
            .ok()
            .or_else(|| std::env::var(b).ok())
            .filter(|v| !v.trim().is_empty())
    };
    let Some(url) = env("HTTPS_PROXY", "https_proxy") else {
        return Ok(None);
    };
    let url = ProxyUrl::parse(url.trim()).map_err(|e| format!("HTTPS_PROXY: {e}"))?;
    let np = NoProxy::parse(&env("NO_PROXY", "no_proxy").unwrap_or_default());
    Ok(Some((url, np)))
}

/// The connector for `--proxy` / `--via` (or the environment): through the proxy or direct.
pub fn connector(flag: Option<&ProxyUrl>) -> Result<ViaConnector, String> {
    Ok(match from_flag_or_env(flag)? {
        Some((proxy, np)) => ViaConnector::through(proxy, np),
        None => ViaConnector::direct(),
    })
}

/// [`connector`] for a flag not parsed yet (`get --proxy URL`).
pub fn connector_from_flag(flag: Option<&str>) -> Result<ViaConnector, String> {
    let url = flag.map(ProxyUrl::parse).transpose()?;
    connector(url.as_ref())
}

/// A TCP connector that goes directly, or through a CONNECT tunnel or a SOCKS5 proxy; wrap it
/// in the fallback layer. Its connections are plain TCP streams either way.
#[derive(Clone)]
pub struct ViaConnector {
    direct: HttpConnector,
    via: Option<Via>,
}

#[derive(Clone)]
struct Via {
    url: ProxyUrl,
    no_proxy: NoProxy,
    /// The TCP connector to the proxy.
    tcp: HttpConnector,
}

impl fmt::Debug for ViaConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ViaConnector");
        match &self.via {
            // `ProxyUrl`'s Debug shows `user:***`: the password stays out.
            Some(v) => d.field("proxy", &v.url).field("no_proxy", &v.no_proxy),
            None => d.field("proxy", &"direct"),
        }
        .finish()
    }
}

impl ViaConnector {
    /// Direct connections (the fallback layer's `http_connector`).
    pub fn direct() -> ViaConnector {
        ViaConnector {
            direct: crate::FallbackLayer::http_connector(),
            via: None,
        }
    }

    /// Through this proxy, except for the `NO_PROXY` hosts.
    pub fn through(url: ProxyUrl, no_proxy: NoProxy) -> ViaConnector {
        let mut tcp = crate::FallbackLayer::http_connector();
        tcp.enforce_http(false);
        ViaConnector {
            direct: crate::FallbackLayer::http_connector(),
            via: Some(Via { url, no_proxy, tcp }),
        }
    }
}

impl Service<Uri> for ViaConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let host = dst.host().unwrap_or_default();
        match &self.via {
            Some(via) if !via.no_proxy.matches(host) => {
                let (url, tcp) = (via.url.clone(), via.tcp.clone());
                Box::pin(async move { through(url, tcp, dst).await.map_err(BoxError::from) })
            }
            _ => {
                let mut direct = self.direct.clone();
                Box::pin(async move { direct.call(dst).await.map_err(BoxError::from) })
            }
        }
    }
}

/// One connection to `dst` through the proxy; a refusal is a message naming the proxy.
async fn through(
    url: ProxyUrl,
    tcp: HttpConnector,
    dst: Uri,
) -> Result<TokioIo<TcpStream>, String> {
    let target = format!(
        "{}:{}",
        dst.host().unwrap_or_default(),
        dst.port_u16().unwrap_or(443)
    );
    match url.scheme() {
        Scheme::Http => connect::connect(tcp, &url, dst, &target).await,
        Scheme::Socks5 | Scheme::Socks5h => socks::connect(tcp, &url, dst, &target).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_matching() {
        let np = NoProxy::parse("localhost, .corp.example,10.0.0.1:8080, [::1]");
        let rows = [
            ("localhost", true),
            ("LOCALHOST", true),
            ("corp.example", true),
            ("gw.corp.example", true),
            ("gw.corp.example.", true),
            ("localhost.", true),
            ("xcorp.example", false),
            ("10.0.0.1", true),
            ("::1", true),
            ("[::1]", true),
            ("gw.example", false),
        ];
        for (host, want) in rows {
            assert_eq!(np.matches(host), want, "{host}");
        }
        assert!(NoProxy::parse("*").matches("anything"));
        assert!(!NoProxy::parse("").matches("anything"));
    }

    #[test]
    fn debug_output_hides_the_password() {
        let url = ProxyUrl::parse("socks5h://ann:hunter2@p:1080").unwrap();
        let debug = format!("{:?}", ViaConnector::through(url, NoProxy::default()));
        assert!(
            debug.contains("ann:***@p:1080") && !debug.contains("hunter2"),
            "{debug}"
        );
    }
}
