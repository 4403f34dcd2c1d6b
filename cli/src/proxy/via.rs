//! Reaching upstreams through an HTTP CONNECT proxy (`proxy --via URL`, `get --proxy URL`, or
//! `HTTPS_PROXY` minus `NO_PROXY`): hyper-util's `Tunnel` under the fallback layer, so every
//! rung of a walk is one CONNECT and the TLS fallback runs inside the tunnel. A proxy that
//! refuses (407, 5xx) is a connect error that names the proxy: never a reason to fall back.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Checks a proxy URL: `http://HOST:PORT` (no credentials, no path).
pub fn parse_proxy_url(s: &str) -> Result<Uri, String> {
    let uri: Uri = s
        .parse()
        .map_err(|e| format!("invalid proxy URL {s:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "invalid proxy URL {s:?}: expected http://HOST:PORT (an HTTP CONNECT proxy)"
        ));
    }
    let Some(auth) = uri.authority().filter(|a| !a.host().is_empty()) else {
        return Err(format!("invalid proxy URL {s:?}: it has no host"));
    };
    if auth.as_str().contains('@') {
        return Err(format!(
            "invalid proxy URL {s:?}: proxy credentials are not supported"
        ));
    }
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err(format!("invalid proxy URL {s:?}: it must have no path"));
    }
    Ok(uri)
}

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
pub fn from_flag_or_env(flag: Option<&str>) -> Result<Option<(Uri, NoProxy)>, String> {
    if let Some(f) = flag {
        return Ok(Some((parse_proxy_url(f)?, NoProxy::default())));
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
    let uri = parse_proxy_url(url.trim()).map_err(|e| format!("HTTPS_PROXY: {e}"))?;
    let np = NoProxy::parse(&env("NO_PROXY", "no_proxy").unwrap_or_default());
    Ok(Some((uri, np)))
}

/// The connector for `--proxy` / `--via` (or the environment): tunneled or direct.
pub fn connector(flag: Option<&str>) -> Result<ViaConnector, String> {
    Ok(match from_flag_or_env(flag)? {
        Some((proxy, np)) => ViaConnector::through(proxy, np),
        None => ViaConnector::direct(),
    })
}

/// A TCP connector that goes directly, or through a CONNECT tunnel; wrap it in the fallback
/// layer. Its connections are plain TCP streams either way.
#[derive(Clone)]
pub struct ViaConnector {
    direct: HttpConnector,
    tunnel: Option<(Uri, Tunnel<HttpConnector>, NoProxy)>,
}

impl ViaConnector {
    /// Direct connections (the fallback layer's `http_connector`).
    pub fn direct() -> ViaConnector {
        ViaConnector {
            direct: tls_fallback::FallbackLayer::http_connector(),
            tunnel: None,
        }
    }

    /// Through this CONNECT proxy, except for the `NO_PROXY` hosts.
    pub fn through(proxy: Uri, no_proxy: NoProxy) -> ViaConnector {
        let mut tcp = tls_fallback::FallbackLayer::http_connector();
        tcp.enforce_http(false);
        ViaConnector {
            direct: tls_fallback::FallbackLayer::http_connector(),
            tunnel: Some((proxy.clone(), Tunnel::new(proxy, tcp), no_proxy)),
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
        let host = dst.host().unwrap_or_default().to_string();
        match &self.tunnel {
            Some((proxy, tunnel, np)) if !np.matches(&host) => {
                let (proxy, mut tunnel) = (proxy.clone(), tunnel.clone());
                let target = dst
                    .authority()
                    .map_or_else(String::new, ToString::to_string);
                Box::pin(async move {
                    tunnel.call(dst).await.map_err(|e| {
                        let chain = super::error_chain(&e);
                        BoxError::from(format!(
                            "the proxy {proxy} did not open a tunnel to {target} ({chain})"
                        ))
                    })
                })
            }
            _ => {
                let mut direct = self.direct.clone();
                Box::pin(async move { direct.call(dst).await.map_err(BoxError::from) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls() {
        let rows: &[(&str, Result<&str, &str>)] = &[
            ("http://127.0.0.1:3128", Ok("http://127.0.0.1:3128/")),
            ("http://proxy.corp:8080/", Ok("http://proxy.corp:8080/")),
            ("https://proxy.corp", Err("expected http://HOST:PORT")),
            ("socks5://proxy.corp", Err("expected http://HOST:PORT")),
            ("http://u:p@proxy.corp", Err("credentials")),
            ("http://proxy.corp/x", Err("no path")),
            ("proxy.corp:3128", Err("expected http://HOST:PORT")),
            ("", Err("invalid proxy URL")),
        ];
        for (s, want) in rows {
            match (parse_proxy_url(s), want) {
                (Ok(u), Ok(w)) => assert_eq!(u.to_string(), *w),
                (Err(e), Err(w)) => assert!(e.contains(w), "{s}: {e}"),
                (got, _) => panic!("{s}: {got:?}"),
            }
        }
    }

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
}
