//! One connection through an HTTP CONNECT proxy with hyper-util's `Tunnel` (the proxy's address
//! and `Proxy-Authorization: Basic` as hyper-util's Matcher gave them, through
//! `Tunnel::with_auth`). hyper-util only tells a 407 from
//! "unsuccessful", so the stream keeps the proxy's first bytes until the tunnel is open: a
//! refusal then says what the proxy answered (`401`, `407`, `502 Bad Gateway`...).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Intercept;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tower_service::Service;

use super::ProxyUrl;

/// How much of the proxy's answer is kept: enough for a status line.
const HEAD_BYTES: usize = 128;

/// Connects to `dst` (shown as `target`) through the CONNECT proxy at `url` (as Matcher read
/// it: `proxy`).
pub(super) async fn connect(
    tcp: HttpConnector,
    url: &ProxyUrl,
    proxy: &Intercept,
    dst: Uri,
    target: &str,
) -> Result<TokioIo<TcpStream>, String> {
    let head = Arc::new(Mutex::new(Vec::new()));
    let recording = Recording {
        tcp,
        head: Arc::clone(&head),
    };
    let tunnel = Tunnel::new(proxy.uri().clone(), recording);
    let mut tunnel = match proxy.basic_auth() {
        Some(auth) => tunnel.with_auth(auth.clone()),
        None => tunnel,
    };
    match tunnel.call(dst).await {
        Ok(io) => Ok(TokioIo::new(io.into_inner().inner)),
        Err(e) => {
            let answer = head.lock().map(|h| status_line(&h)).unwrap_or_default();
            let chain = crate::error_chain(&e);
            Err(refusal(url, target, answer, &chain))
        }
    }
}

/// The proxy's status code and reason, from the start of its answer.
fn status_line(head: &[u8]) -> Option<(u16, String)> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = parts
        .next()?
        .parse()
        .ok()
        .filter(|c| (100..600).contains(c))?;
    // The reason shown is the status code's own, never the proxy's text: a proxy that echoes
    // what it was sent (`Proxy-Authorization` included) there would put the credentials in
    // the app's error message.
    let reason = http::StatusCode::from_u16(code)
        .ok()
        .and_then(|c| c.canonical_reason())
        .unwrap_or_default()
        .to_string();
    Some((code, reason))
}

/// The message for a CONNECT that did not open a tunnel.
fn refusal(url: &ProxyUrl, target: &str, answer: Option<(u16, String)>, chain: &str) -> String {
    let head = format!("the proxy {url} did not open a tunnel to {target}");
    let said = match &answer {
        Some((code, reason)) if reason.is_empty() => format!("{code}"),
        Some((code, reason)) => format!("{code} {reason}"),
        None => String::new(),
    };
    match (answer.map(|(code, _)| code), url.credentials()) {
        // tinyproxy answers wrong credentials with 401, others with 407.
        // A user name without a password may be a key: not repeated.
        (Some(401 | 407), Some(c)) if c.password.is_empty() => {
            format!("{head}: it refused the credentials (it answered {said})")
        }
        (Some(401 | 407), Some(c)) => format!(
            "{head}: it refused the credentials of user {:?} (it answered {said})",
            c.user
        ),
        (Some(401 | 407), None) => format!(
            "{head}: proxy authorization required (it answered {said}); give credentials in \
             the URL: http://USER:PASSWORD@HOST:PORT"
        ),
        (Some(_), _) => format!("{head}: it answered {said}"),
        (None, _) => format!("{head} ({chain})"),
    }
}

/// The TCP connector to the proxy, handing out streams that record the proxy's answer.
#[derive(Clone)]
struct Recording {
    tcp: HttpConnector,
    head: Arc<Mutex<Vec<u8>>>,
}

type Connecting = Pin<
    Box<
        dyn Future<Output = Result<TokioIo<Recorder>, Box<dyn std::error::Error + Send + Sync>>>
            + Send,
    >,
>;

impl Service<Uri> for Recording {
    type Response = TokioIo<Recorder>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, proxy: Uri) -> Connecting {
        let (mut tcp, head) = (self.tcp.clone(), Arc::clone(&self.head));
        Box::pin(async move {
            let io = tcp.call(proxy).await?;
            Ok(TokioIo::new(Recorder {
                inner: io.into_inner(),
                head,
            }))
        })
    }
}

/// A TCP stream to the proxy that keeps the first [`HEAD_BYTES`] it reads; unwrapped as soon
/// as the tunnel is open.
struct Recorder {
    inner: TcpStream,
    head: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Recorder {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Ok(mut head)) = (&polled, self.head.lock()) {
            let room = HEAD_BYTES.saturating_sub(head.len());
            head.extend(buf.filled()[before..].iter().take(room));
        }
        polled
    }
}

impl AsyncWrite for Recorder {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The proxy's answer: status code and reason.
    type Answer = Option<(u16, String)>;

    #[test]
    fn status_lines_are_read_from_the_proxys_first_bytes() {
        type Row = (&'static [u8], Option<(u16, &'static str)>);
        let rows: &[Row] = &[
            (
                b"HTTP/1.0 401 Unauthorized\r\nServer: x\r\n",
                Some((401, "Unauthorized")),
            ),
            (
                b"HTTP/1.1 407 Proxy Authentication Required\r\n",
                Some((407, "Proxy Authentication Required")),
            ),
            (b"HTTP/1.1 502\r\n", Some((502, "Bad Gateway"))),
            (
                b"HTTP/1.1 503 Busy\x1b[31m\r\n",
                Some((503, "Service Unavailable")),
            ),
            // A reason that echoes the credentials is not repeated.
            (
                b"HTTP/1.1 407 Basic YW5uOmh1bnRlcjI= refused\r\n",
                Some((407, "Proxy Authentication Required")),
            ),
            (b"HTTP/1.1 499 Whatever\r\n", Some((499, ""))),
            (b"HTTP/1.1 999 No\r\n", None),
            (b"SSH-2.0-OpenSSH\r\n", None),
            (b"", None),
        ];
        for (head, want) in rows {
            let got = status_line(head);
            let got = got.as_ref().map(|(c, r)| (*c, r.as_str()));
            assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn a_refusal_says_what_the_proxy_answered_and_whether_credentials_were_refused() {
        let with = ProxyUrl::parse("http://ann:hunter2@p:3128").unwrap();
        let without = ProxyUrl::parse("http://p:3128").unwrap();
        let key_only = ProxyUrl::parse("http://hunter2@p:3128").unwrap();
        let answer = |code: u16, reason: &str| Some((code, reason.to_string()));
        // (proxy, answer, message parts)
        let rows: [(&ProxyUrl, Answer, &[&str]); 6] = [
            (
                &with,
                answer(407, "Proxy Authentication Required"),
                &[
                    "http://ann:***@p:3128",
                    "refused the credentials of user \"ann\" (it answered 407 Proxy",
                ],
            ),
            (
                &with,
                answer(401, "Unauthorized"),
                &["refused the credentials", "401 Unauthorized"],
            ),
            // A user name without a password may be an API key: never shown.
            (
                &key_only,
                answer(407, ""),
                &[
                    "http://***@p:3128",
                    "refused the credentials (it answered 407)",
                ],
            ),
            (
                &without,
                answer(407, ""),
                &[
                    "http://p:3128",
                    "authorization required (it answered 407)",
                    "USER:PASSWORD@",
                ],
            ),
            (
                &with,
                answer(502, "Bad Gateway"),
                &["did not open a tunnel to gw:443: it answered 502 Bad Gateway"],
            ),
            (
                &with,
                None,
                &["did not open a tunnel to gw:443 (tunnel error: unexpected end of file)"],
            ),
        ];
        for (url, answer, parts) in rows {
            let msg = refusal(
                url,
                "gw:443",
                answer,
                "tunnel error: unexpected end of file",
            );
            for part in parts {
                assert!(msg.contains(part), "{msg}");
            }
            assert!(!msg.contains("hunter2"), "{msg}");
        }
    }
}
