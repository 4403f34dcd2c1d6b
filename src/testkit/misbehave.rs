//! HTTPS servers that misbehave at the request level, after a good TLS handshake: one never
//! answers, one trickles its body, one streams a body that never ends, one answers with a
//! canned reply. They record every request they fully received, so tests assert on what was
//! written. Real OpenSSL on 127.0.0.1, configured like [`TlsServer`](super::TlsServer)
//! (versions, identity); each stops, with every connection it holds, when dropped.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use openssl::ssl::{Ssl, SslAcceptor};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Sleep;
use tokio_openssl::SslStream;

use super::server::TlsServerBuilder;

/// What a [`MisbehavingServer`] does once it has read a request.
#[derive(Debug, Clone)]
pub enum Misbehaviour {
    /// Never answers: the connection stays open and silent until the server is dropped.
    NoAnswer,
    /// `200 OK` with `Content-Length: len` at once, then one byte (`.`) every `every`.
    Trickle {
        /// The pause before each byte.
        every: Duration,
        /// The announced (and eventually sent) body length.
        len: u64,
    },
    /// `200 OK` with a chunked body of 16 KiB chunks that never ends.
    EndlessBody,
    /// A canned answer (for redirects, error statuses, response headers).
    Reply {
        /// The status code.
        status: u16,
        /// Response headers (name, value); invalid ones are skipped.
        headers: Vec<(String, String)>,
        /// The body.
        body: Bytes,
    },
}

impl Misbehaviour {
    /// A canned `status` answer with a `Location` header: a redirect to `to`.
    pub fn redirect(status: u16, to: &str) -> Misbehaviour {
        Misbehaviour::Reply {
            status,
            headers: vec![("location".into(), to.into())],
            body: Bytes::new(),
        }
    }
}

/// A request a [`MisbehavingServer`] fully received.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// The method (`"POST"`...).
    pub method: String,
    /// The request target (`"/pay?x=1"`).
    pub uri: String,
    /// The request headers.
    pub headers: HeaderMap,
    /// The whole request body.
    pub body: Bytes,
    /// Which connection it came on: 1 for the server's first completed handshake, 2 for the
    /// next... (requests on one kept-alive connection share the number).
    pub connection: u64,
}

/// A running misbehaving HTTPS server on 127.0.0.1; stops when dropped.
#[derive(Debug)]
pub struct MisbehavingServer {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct State {
    seen: Mutex<Vec<SeenRequest>>,
    handshakes: AtomicU64,
}

/// One accepted connection's place in the server's order, and the server's state.
struct Conn {
    number: u64,
    state: Arc<State>,
}

impl MisbehavingServer {
    /// Starts a server with OpenSSL's default versions and the `localhost` identity.
    pub async fn start(how: Misbehaviour) -> std::io::Result<MisbehavingServer> {
        MisbehavingServer::with(super::TlsServer::builder(), how).await
    }

    /// Starts a server whose TLS side is configured by `tls` (versions, identity, client
    /// certificates); HTTP/1.1 only (the builder's `http2` is ignored).
    pub async fn with(
        tls: TlsServerBuilder,
        how: Misbehaviour,
    ) -> std::io::Result<MisbehavingServer> {
        let acceptor = tls.acceptor().map_err(std::io::Error::other)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let st = Arc::clone(&state);
        let how = Arc::new(how);
        let task = tokio::spawn(async move {
            // Connections live in the accept task's set: dropping the server aborts them all.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                while conns.try_join_next().is_some() {}
                let Ok((tcp, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let (acceptor, st, how) = (acceptor.clone(), Arc::clone(&st), Arc::clone(&how));
                conns.spawn(async move { serve(acceptor, tcp, st, how).await });
            }
        });
        Ok(MisbehavingServer { addr, state, task })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://localhost:PORT/`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}/", self.addr.port())
    }

    /// Every request fully received (head and body), in order of arrival.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.state
            .seen
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// TLS handshakes completed.
    pub fn handshakes(&self) -> u64 {
        self.state.handshakes.load(Ordering::Relaxed)
    }
}

impl Drop for MisbehavingServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    acceptor: SslAcceptor,
    tcp: tokio::net::TcpStream,
    st: Arc<State>,
    how: Arc<Misbehaviour>,
) {
    let _ = tcp.set_nodelay(true);
    let Ok(ssl) = Ssl::new(acceptor.context()) else {
        return;
    };
    let Ok(mut tls) = SslStream::new(ssl, tcp) else {
        return;
    };
    let accepted = tokio::time::timeout(Duration::from_secs(30), Pin::new(&mut tls).accept());
    if !matches!(accepted.await, Ok(Ok(()))) {
        return;
    }
    let number = st.handshakes.fetch_add(1, Ordering::Relaxed) + 1;
    let conn = Arc::new(Conn { number, state: st });
    let svc = service_fn(move |req: Request<Incoming>| {
        let (conn, how) = (Arc::clone(&conn), Arc::clone(&how));
        async move { Ok::<_, Infallible>(answer(req, &conn, &how).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), svc)
        .await;
}

async fn answer(req: Request<Incoming>, conn: &Conn, how: &Misbehaviour) -> Response<Drip> {
    let (head, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return Response::new(Drip::once(Bytes::new()));
    };
    if let Ok(mut seen) = conn.state.seen.lock() {
        seen.push(SeenRequest {
            method: head.method.to_string(),
            uri: head.uri.to_string(),
            headers: head.headers,
            body,
            connection: conn.number,
        });
    }
    match how {
        Misbehaviour::NoAnswer => std::future::pending().await,
        Misbehaviour::Trickle { every, len } => Response::new(Drip::trickle(*every, *len)),
        Misbehaviour::EndlessBody => Response::new(Drip::endless()),
        Misbehaviour::Reply {
            status,
            headers,
            body,
        } => {
            let mut res = Response::new(Drip::once(body.clone()));
            *res.status_mut() = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
            for (k, v) in headers {
                if let (Ok(k), Ok(v)) = (
                    hyper::header::HeaderName::try_from(k.as_str()),
                    hyper::header::HeaderValue::try_from(v.as_str()),
                ) {
                    res.headers_mut().append(k, v);
                }
            }
            res
        }
    }
}

/// A response body: `chunk` every `every` (no pause when zero), `remaining` bytes or forever.
struct Drip {
    chunk: Bytes,
    every: Duration,
    remaining: Option<u64>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Drip {
    fn once(body: Bytes) -> Drip {
        Drip {
            remaining: Some(body.len() as u64),
            chunk: body,
            every: Duration::ZERO,
            sleep: None,
        }
    }
    fn trickle(every: Duration, len: u64) -> Drip {
        Drip {
            chunk: Bytes::from_static(b"."),
            every,
            remaining: Some(len),
            sleep: None,
        }
    }
    fn endless() -> Drip {
        Drip {
            chunk: Bytes::from(vec![b'x'; 16 * 1024]),
            every: Duration::ZERO,
            remaining: None,
            sleep: None,
        }
    }
}

impl Body for Drip {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == Some(0) || self.chunk.is_empty() {
            return Poll::Ready(None);
        }
        if !self.every.is_zero() {
            let every = self.every;
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(every)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
        }
        let mut chunk = self.chunk.clone();
        if let Some(left) = self.remaining {
            chunk.truncate(usize::try_from(left).unwrap_or(usize::MAX));
            self.remaining = Some(left - chunk.len() as u64);
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == Some(0) || self.chunk.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
