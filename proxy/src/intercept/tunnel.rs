//! `--tunnel` hosts: `CONNECT` opens a plain byte tunnel (nothing intercepted, no fallback),
//! through `--via` when one is set, for the other hosts an app reaches through the same
//! `HTTPS_PROXY`. The upstream is connected before the 200, so an app is told when it cannot
//! be reached; a tunnel idle for the idle timeout is closed, and one open when the proxy stops
//! is closed once it has been idle for a second (an exchange in flight finishes).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tower_service::Service;

use super::{established, Pending, Then};
use crate::route::Dest;
use crate::runtime::Runtime;
use crate::service::answer::failure;
use crate::service::{Conn, ProxyBody};

/// `CONNECT` to a `--tunnel` host: connect (within the handshake timeout), then 200; 502 or
/// 504 with the reason when the host cannot be reached.
pub async fn open(
    conn: &Conn,
    rt: &Runtime,
    req: &mut Request<Incoming>,
    dest: &Arc<Dest>,
) -> Response<ProxyBody> {
    let layer = &rt.settings.layer;
    let none = serde_json::Value::Array(Vec::new());
    let fail = |status, kind, msg: String| failure(status, kind, &msg, &none);
    let mut tcp = match tls_fallback::outbound::connector(layer.via.as_ref()) {
        Ok(c) => c,
        Err(e) => return fail(StatusCode::BAD_GATEWAY, "connect", e),
    };
    let uri = match Uri::builder()
        .scheme("https")
        .authority(dest.authority.clone())
        .path_and_query("/")
        .build()
    {
        Ok(u) => u,
        Err(e) => return fail(StatusCode::BAD_REQUEST, "connect", e.to_string()),
    };
    let within = layer.handshake_timeout;
    let upstream = match tokio::time::timeout(within, tcp.call(uri)).await {
        Err(_) => {
            let msg = format!(
                "{} did not accept a connection within {} ms",
                dest.authority,
                within.as_millis()
            );
            return fail(StatusCode::GATEWAY_TIMEOUT, "timeout", msg);
        }
        Ok(Err(e)) => {
            let msg = format!("cannot connect to {}: {e}", dest.authority);
            return fail(StatusCode::BAD_GATEWAY, "connect", msg);
        }
        Ok(Ok(io)) => io.into_inner(),
    };
    conn.hand_over(Pending {
        on: hyper::upgrade::on(req),
        then: Then::Tunnel {
            dest: Arc::clone(dest),
            upstream,
        },
    });
    established()
}

/// How long a tunnel may stay idle once the proxy is stopping.
pub const IDLE_WHEN_STOPPING: Duration = Duration::from_secs(1);

/// Relays bytes both ways until either side closes, the tunnel has been idle for `idle`, or
/// (after `stop`) for [`IDLE_WHEN_STOPPING`]. Returns the bytes sent up and down.
pub async fn relay<A, U>(
    app: A,
    upstream: U,
    idle: Duration,
    stop: impl Future<Output = ()>,
) -> (u64, u64)
where
    A: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut app = Watched {
        io: app,
        start,
        last: Arc::clone(&last),
    };
    let mut up = Watched {
        io: upstream,
        start,
        last: Arc::clone(&last),
    };
    let copy = tokio::io::copy_bidirectional(&mut app, &mut up);
    let watch = async {
        let mut limit = idle;
        let mut stop = std::pin::pin!(stop);
        let mut stopping = false;
        loop {
            let since = start + Duration::from_millis(last.load(Ordering::Relaxed));
            if since.elapsed() >= limit {
                return;
            }
            let tick = tokio::time::sleep_until(since + limit);
            if stopping {
                tick.await;
            } else {
                tokio::select! {
                    () = tick => {}
                    () = &mut stop => {
                        stopping = true;
                        limit = IDLE_WHEN_STOPPING.min(idle);
                    }
                }
            }
        }
    };
    tokio::select! {
        r = copy => r.unwrap_or((0, 0)),
        () = watch => (0, 0),
    }
}

/// A stream that notes when bytes last moved.
struct Watched<T> {
    io: T,
    start: Instant,
    last: Arc<AtomicU64>,
}

impl<T> Watched<T> {
    fn moved(&self) {
        let ms = self.start.elapsed().as_millis();
        self.last
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.moved();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn an_idle_tunnel_closes_and_a_busy_one_does_not() {
        let (app, mut app_peer) = tokio::io::duplex(64);
        let (up, mut up_peer) = tokio::io::duplex(64);
        let idle = Duration::from_secs(10);
        let relay = tokio::spawn(relay(app, up, idle, std::future::pending()));
        // Busy: a byte every 6 s for 30 s keeps it open.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            app_peer.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            up_peer.read_exact(&mut b).await.unwrap();
            assert!(!relay.is_finished());
        }
        // Idle: closed 10 s after the last byte.
        tokio::time::sleep(Duration::from_millis(10_100)).await;
        assert!(relay.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_closes_a_tunnel_once_it_is_idle_for_a_second() {
        let (app, mut app_peer) = tokio::io::duplex(64);
        let (up, _up_peer) = tokio::io::duplex(64);
        let stop = tokio::time::sleep(Duration::from_secs(5));
        let relay = tokio::spawn(relay(app, up, Duration::from_secs(60), stop));
        tokio::time::sleep(Duration::from_millis(4_800)).await;
        app_peer.write_all(b"x").await.unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(
            !relay.is_finished(),
            "a byte at 4.8 s, stop at 5 s: closes at 5.8 s"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(relay.is_finished());
    }
}
