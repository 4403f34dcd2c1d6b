//! Reaching upstreams through an outbound proxy (`proxy --via URL`, `get --proxy URL`, or
//! `HTTPS_PROXY` minus `NO_PROXY`): hyper-util's `Tunnel` (HTTP CONNECT) or `SocksV5` under the
//! fallback layer, so every rung of a walk is one CONNECT (or one SOCKS connection) and the TLS
//! fallback runs inside it. A proxy that refuses (407, 5xx, a SOCKS refusal) is a connect error
//! that names the proxy, never a reason to fall back; credentials never appear in a message.
//! Which hosts go through, the proxy's address and the credentials to send (percent-decoded, as
//! a sensitive Basic header or raw for SOCKS) are hyper-util's `Matcher`'s, built from the flag
//! or `HTTPS_PROXY` and `NO_PROXY` read here; this module only checks and normalises what
//! Matcher would take silently or read otherwise.

mod connect;
mod socks;
mod url;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

pub use url::{ProxyUrl, Scheme};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `NO_PROXY`: hosts reached directly, matched by hyper-util's Matcher (`*`, `host`, `.suffix`
/// or `suffix` with their subdomains, IP addresses and ranges such as `10.0.0.0/8`). What
/// Matcher would not match as people write it is normalised first: a `:port` (ignored), the
/// brackets of `[::1]` and the trailing dot of a fully qualified name are dropped, and `*` covers
/// IP addresses too (Matcher's `*` matches names only).
#[derive(Debug, Clone, Default)]
pub struct NoProxy(String);

impl NoProxy {
    /// Parses a `NO_PROXY` value.
    pub fn parse(s: &str) -> NoProxy {
        let mut entries = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if item == "*" {
                entries.extend(["*", "0.0.0.0/0", "::/0"]);
                continue;
            }
            let host = match item.strip_prefix('[') {
                // `[::1]` or `[::1]:8080`.
                Some(v6) => v6.split(']').next().unwrap_or(v6),
                // A name or an IPv4 address with a port; a bare IPv6 address has several ':'.
                None => match item.split_once(':') {
                    Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => h,
                    _ => item,
                },
            };
            entries.push(host.trim_end_matches('.'));
        }
        NoProxy(entries.join(","))
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
    /// hyper-util's reading of the URL and `NO_PROXY`: whether a host goes through, the
    /// proxy's address and the credentials to send.
    matcher: Arc<Matcher>,
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
        // Built here, never `from_env`: `ALL_PROXY` and `HTTP_PROXY` stay out, and a CGI
        // environment (`REQUEST_METHOD`) does not silently turn the proxy off.
        let matcher = Matcher::builder()
            .https(url.matcher_input())
            .http(url.matcher_input())
            .no(no_proxy.0.as_str())
            .build();
        let mut tcp = crate::FallbackLayer::http_connector();
        tcp.enforce_http(false);
        ViaConnector {
            direct: crate::FallbackLayer::http_connector(),
            via: Some(Via {
                url,
                no_proxy,
                matcher: Arc::new(matcher),
                tcp,
            }),
        }
    }

    /// The proxy to go through for `dst`, or `None` to go directly.
    fn route(&self, dst: &Uri) -> Route<'_> {
        let Some(via) = self.via.as_ref() else {
            return Route::Direct;
        };
        // Every destination goes through alike: asked as `https://HOST/`, the host without
        // the trailing dot of a fully qualified name (`gw.corp.example.` is `gw.corp.example`).
        let Some(host) = dst.host() else {
            return Route::Refused(format!("{dst}: no host to reach through the proxy"));
        };
        let probe = Uri::builder()
            .scheme("https")
            .authority(host.strip_suffix('.').unwrap_or(host))
            .path_and_query("/")
            .build();
        match probe {
            // `None` only when NO_PROXY names the host.
            Ok(probe) => match via.matcher.intercept(&probe) {
                Some(proxy) => Route::Through(via, proxy),
                None => Route::Direct,
            },
            // Never direct because the host could not be asked about: that would bypass the
            // proxy the operator configured.
            Err(e) => Route::Refused(format!("cannot reach {host:?} through the proxy: {e}")),
        }
    }
}

/// How one connection goes.
enum Route<'a> {
    /// No proxy, or `NO_PROXY` names the host.
    Direct,
    /// Through the proxy.
    Through(&'a Via, Intercept),
    /// Neither: the destination cannot be matched.
    Refused(String),
}

impl Service<Uri> for ViaConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        match self.route(&dst) {
            Route::Through(via, proxy) => {
                let (url, tcp) = (via.url.clone(), via.tcp.clone());
                Box::pin(async move { through(url, proxy, tcp, dst).await.map_err(BoxError::from) })
            }
            Route::Direct => {
                let mut direct = self.direct.clone();
                Box::pin(async move { direct.call(dst).await.map_err(BoxError::from) })
            }
            Route::Refused(why) => Box::pin(std::future::ready(Err(BoxError::from(why)))),
        }
    }
}

/// One connection to `dst` through the proxy; a refusal is a message naming the proxy.
async fn through(
    url: ProxyUrl,
    proxy: Intercept,
    tcp: HttpConnector,
    dst: Uri,
) -> Result<TokioIo<TcpStream>, String> {
    let target = format!(
        "{}:{}",
        dst.host().unwrap_or_default(),
        dst.port_u16().unwrap_or(443)
    );
    match url.scheme() {
        Scheme::Http => connect::connect(tcp, &url, &proxy, dst, &target).await,
        Scheme::Socks5 | Scheme::Socks5h => socks::connect(tcp, &url, &proxy, dst, &target).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `host` goes directly under this `NO_PROXY`.
    fn direct(no_proxy: &str, host: &str) -> bool {
        let url = ProxyUrl::parse("http://p:3128").unwrap();
        let via = ViaConnector::through(url, NoProxy::parse(no_proxy));
        let dst: Uri = format!("https://{host}:443/").parse().unwrap();
        matches!(via.route(&dst), Route::Direct)
    }

    #[test]
    fn no_proxy_matching() {
        let np = "localhost, .corp.example,10.0.0.1:8080, [::1], gw.fqdn.example., [fd00::2]:8443";
        let rows = [
            ("localhost", true),
            ("LOCALHOST", true),
            ("corp.example", true),
            ("gw.corp.example", true),
            ("gw.corp.example.", true),
            ("localhost.", true),
            ("xcorp.example", false),
            ("10.0.0.1", true),
            ("10.0.0.2", false),
            ("[::1]", true),
            ("[fd00::2]", true),
            ("gw.fqdn.example", true),
            ("gw.example", false),
        ];
        for (host, want) in rows {
            assert_eq!(direct(np, host), want, "{host}");
        }
        // A bare IPv6 address is one entry, its last group no port.
        assert!(direct("::1", "[::1]"));
        assert!(direct("fe80::1:2", "[fe80::1:2]"));
        assert!(!direct("fe80::1:2", "[fe80::1]"));
        for host in ["anything", "10.0.0.1", "[::1]"] {
            assert!(direct("*", host), "{host}");
            assert!(direct("example.com, *", host), "{host}");
            assert!(!direct("", host), "{host}");
        }
    }

    #[test]
    fn no_proxy_takes_cidr_ranges() {
        let np = "10.0.0.0/8, 192.168.1.0/24, fd00::/8";
        let rows = [
            ("10.1.2.3", true),
            ("11.0.0.1", false),
            ("192.168.1.77", true),
            ("192.168.2.1", false),
            ("[fd00::1]", true),
            ("[fe80::1]", false),
            ("ten.example", false),
        ];
        for (host, want) in rows {
            assert_eq!(direct(np, host), want, "{host}");
        }
    }

    #[test]
    fn matcher_gives_the_proxy_address_and_the_credentials_to_send() {
        let proxy = |url: &str| {
            let via = ViaConnector::through(ProxyUrl::parse(url).unwrap(), NoProxy::default());
            match via.route(&Uri::from_static("https://gw:443/")) {
                Route::Through(_, intercept) => intercept,
                _ => panic!("{url}: not through the proxy"),
            }
        };
        let http = proxy("http://Aladdin:open%20sesame@proxy:3128");
        assert_eq!(http.uri(), "http://proxy:3128/");
        let basic = http.basic_auth().unwrap();
        // RFC 7617's example.
        assert_eq!(basic, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert!(basic.is_sensitive());
        assert_eq!(http.raw_auth(), None);
        // The last '@' ends the credentials.
        let at = proxy("http://Aladdin:open@sesame@proxy");
        assert_eq!(at.uri(), "http://proxy:80/");
        assert_eq!(
            at.basic_auth().unwrap(),
            "Basic QWxhZGRpbjpvcGVuQHNlc2FtZQ=="
        );
        assert_eq!(proxy("http://proxy:3128").basic_auth(), None);
        let socks = proxy("socks5h://j%40corp:p%40ss%3Aw%2Frd%25@127.0.0.1:1081");
        assert_eq!(socks.uri(), "socks5h://127.0.0.1:1081/");
        assert_eq!(socks.raw_auth(), Some(("j@corp", "p@ss:w/rd%")));
        assert_eq!(socks.basic_auth(), None);
        let bare = proxy("SOCKS5://[::1]");
        assert_eq!(bare.uri(), "socks5://[::1]:1080/");
        assert_eq!(bare.raw_auth(), None);
        // Whatever the destination's scheme, it goes through.
        let via = ViaConnector::through(ProxyUrl::parse("http://p:1").unwrap(), NoProxy::default());
        assert!(matches!(
            via.route(&Uri::from_static("http://gw/")),
            Route::Through(..)
        ));
        assert!(matches!(
            ViaConnector::direct().route(&Uri::from_static("https://gw/")),
            Route::Direct
        ));
        // A destination that cannot be asked about is refused, never sent around the proxy.
        for dst in ["/path-only", "https://./"] {
            let dst: Uri = dst.parse().unwrap();
            assert!(matches!(via.route(&dst), Route::Refused(_)), "{dst}");
        }
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
