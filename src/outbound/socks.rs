//! One connection through a SOCKS5 proxy with hyper-util's `SocksV5` (the proxy's address and
//! credentials as hyper-util's Matcher gave them): `socks5://` resolves the
//! name here (curl's convention), `socks5h://` hands it to the proxy. The TCP connection to the
//! proxy is made first, so that failing to reach the proxy and the proxy refusing are told
//! apart; every refusal is a message naming the proxy (never its password).

use std::future::{ready, Ready};
use std::io;
use std::net::IpAddr;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::proxy::SocksV5;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Intercept;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use super::{ProxyUrl, Scheme};

/// Connects to `dst` (shown as `target`) through the SOCKS5 proxy at `url` (as Matcher read
/// it: `proxy`).
pub(super) async fn connect(
    mut tcp: HttpConnector,
    url: &ProxyUrl,
    proxy: &Intercept,
    dst: Uri,
    target: &str,
) -> Result<TokioIo<TcpStream>, String> {
    let head = format!("the SOCKS5 proxy {url} did not open a connection to {target}");
    let dst = match url.scheme() {
        Scheme::Socks5 => resolve(dst)
            .await
            .map_err(|e| format!("{head}: {e} (socks5:// resolves names here; socks5h:// lets the proxy resolve them)"))?,
        _ => dst,
    };
    let stream = tcp
        .call(proxy.uri().clone())
        .await
        .map_err(|e| format!("{head}: cannot reach the proxy: {}", crate::error_chain(&e)))?;
    let mut socks = SocksV5::new(proxy.uri().clone(), Handover(Some(stream)));
    if let Some((user, password)) = proxy.raw_auth() {
        socks = socks.with_auth(user.to_string(), password.to_string());
    }
    socks.call(dst).await.map_err(|e| {
        // hyper-util's `SocksError` is not nameable: its Debug names the variant.
        let reason = refusal(
            &format!("{e:?}"),
            &e.to_string(),
            proxy.raw_auth().is_some(),
        );
        format!("{head}: {reason}")
    })
}

/// `dst` with its name resolved here: the first address, as an IP literal.
async fn resolve(dst: Uri) -> Result<Uri, String> {
    let host = dst.host().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        return Ok(dst);
    }
    let port = dst.port_u16().unwrap_or(443);
    let addr = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| format!("cannot resolve {bare}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {bare}: no address"))?;
    let ip = match addr.ip() {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    format!("http://{ip}:{port}")
        .parse()
        .map_err(|e| format!("cannot use the address {ip}: {e}"))
}

/// Why the proxy did not connect, from hyper-util's error (its Debug and Display).
fn refusal(debug: &str, display: &str, sent_credentials: bool) -> String {
    let said = display.trim_start_matches("SOCKS error: ");
    if debug.contains("Auth(Failed)") {
        "it refused the credentials".to_string()
    } else if debug.contains("Auth(Unsupported)") && sent_credentials {
        "it does not accept user/password authentication".to_string()
    } else if debug.contains("Auth(Unsupported)") {
        "it requires credentials; give them in the URL: socks5h://USER:PASSWORD@HOST:PORT"
            .to_string()
    } else if debug.contains("Command(") {
        format!("it refused the connection ({said})")
    } else if debug.starts_with("Io(") {
        format!("the SOCKS5 handshake failed ({said}; is it a SOCKS5 proxy?)")
    } else {
        format!("the SOCKS5 handshake failed ({said})")
    }
}

/// Hands `SocksV5` the connection already made to the proxy, once.
struct Handover(Option<TokioIo<TcpStream>>);

impl Service<Uri> for Handover {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Ready<Result<TokioIo<TcpStream>, io::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _proxy: Uri) -> Self::Future {
        ready(
            self.0
                .take()
                .ok_or_else(|| io::Error::other("the connection to the proxy was already used")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_say_what_the_proxy_refused() {
        // (Debug, Display, credentials sent, message part)
        let rows = [
            (
                "V5(Auth(Failed))",
                "SOCKS error: credentials not accepted",
                true,
                "refused the credentials",
            ),
            (
                "V5(Auth(Unsupported))",
                "SOCKS error: x",
                true,
                "does not accept user/password",
            ),
            (
                "V5(Auth(Unsupported))",
                "SOCKS error: x",
                false,
                "requires credentials",
            ),
            (
                "V5(Command(ConnectionNotAllowed))",
                "SOCKS error: connection not allowed",
                false,
                "refused the connection (connection not allowed)",
            ),
            (
                "Io(Kind(UnexpectedEof))",
                "SOCKS error: io error during SOCKS handshake",
                false,
                "is it a SOCKS5 proxy?",
            ),
            (
                "Parsing(Other)",
                "SOCKS error: failed parsing server response",
                false,
                "handshake failed (failed parsing",
            ),
        ];
        for (debug, display, sent, want) in rows {
            let got = refusal(debug, display, sent);
            assert!(got.contains(want), "{debug}: {got}");
        }
    }

    #[tokio::test]
    async fn socks5_resolves_names_here_and_keeps_ip_literals() {
        let rows = [
            ("http://127.0.0.1:8443", "http://127.0.0.1:8443/"),
            ("http://[::1]:8443", "http://[::1]:8443/"),
        ];
        for (dst, want) in rows {
            let got = resolve(dst.parse().unwrap()).await.unwrap();
            assert_eq!(got.to_string(), want);
        }
        let local = resolve("http://localhost:8443".parse().unwrap())
            .await
            .unwrap();
        let ip = local
            .host()
            .unwrap()
            .trim_start_matches('[')
            .trim_end_matches(']');
        assert!(ip.parse::<IpAddr>().unwrap().is_loopback(), "{local}");
        assert_eq!(local.port_u16(), Some(8443));
        let bad = resolve("http://no-such-host.invalid:1".parse().unwrap()).await;
        assert!(bad
            .unwrap_err()
            .contains("cannot resolve no-such-host.invalid"));
    }
}
