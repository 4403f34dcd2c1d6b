//! One request through the proxy: route it, strip hop-by-hop headers, send it once upstream
//! under the request timeout, and stream the answer back with the `x-tls-fallback-*` headers;
//! a refusal or an upstream failure becomes a status with a body that says why ([`answer`]).
//! Every request gets its access log line and metrics, including one whose app hung up first.

pub mod answer;
pub mod timer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::header::HOST;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::{Bytes, Incoming};

use crate::headers;
use crate::intercept::{self, Pending};
use crate::observe::access::{self, Entry};
use crate::route::{self, Dest, Route};
use crate::runtime::{Runtime, Shared};
use crate::upstream::conn::ConnInfo;
use crate::upstream::drain::Relay;
use crate::upstream::exchange;
use crate::upstream::slot::Slot;
use answer::{failure, refusal, upstream_error};
use timer::RequestTimer;

/// What the proxy answers with: the upstream's streamed body or its own small one.
pub type ProxyBody = Either<Relay, Full<Bytes>>;

/// What the connections of one worker share.
#[derive(Default)]
pub struct Worker {
    /// Its index (parked upstream connections go back preferably to their worker).
    pub index: usize,
    /// Set once the worker's runtime is being dropped at the end of the shutdown drain: a
    /// request dropped then was cut by the proxy, not by its app.
    pub cut_off: AtomicBool,
    /// Its access log.
    pub log: access::Writer,
}

/// What the requests of one app connection share.
pub struct Conn {
    /// The configuration it started with.
    pub rt: Arc<Runtime>,
    /// The running configuration: a request after a reload follows the new one (its allow-list,
    /// legacy gate, pins, layers), whenever its connection was opened. The connection's own
    /// limits (head size, idle time) stay those it was accepted with.
    pub shared: Shared,
    /// Its worker.
    pub worker: Arc<Worker>,
    /// The upstream connection it holds.
    pub slot: Slot,
    /// Its request timer.
    pub timer: RequestTimer,
    /// The upstream of the intercepted `CONNECT` this connection runs inside, if it does.
    pub inside: Option<Arc<Dest>>,
    /// What a `CONNECT` answered 200 hands to the worker when the connection ends.
    pub pending: Mutex<Option<Pending>>,
}

impl Conn {
    /// A connection's context: `inside` an intercepted `CONNECT` to that upstream, or not.
    pub fn new(
        shared: &Shared,
        worker: Arc<Worker>,
        slot: Slot,
        inside: Option<Arc<Dest>>,
    ) -> Conn {
        Conn {
            rt: shared.load_full(),
            shared: shared.clone(),
            worker,
            slot,
            timer: RequestTimer::default(),
            inside,
            pending: Mutex::new(None),
        }
    }

    /// Keeps what a `CONNECT` hands over, for the worker to run once the 200 is sent.
    pub fn hand_over(&self, p: Pending) {
        *crate::lock(&self.pending) = Some(p);
    }

    /// What a `CONNECT` handed over, if one did.
    pub fn take_pending(&self) -> Option<Pending> {
        crate::lock(&self.pending).take()
    }

    /// The configuration for the next request: the connection's own while no reload happened
    /// since it was opened (a pointer comparison, no shared reference count touched per
    /// request), else the running one.
    fn current(&self) -> Current<'_> {
        if std::ptr::eq(&**self.shared.load(), &*self.rt) {
            Current::Same(&self.rt)
        } else {
            Current::Reloaded(self.shared.load_full())
        }
    }
}

/// The configuration a request runs with.
enum Current<'a> {
    Same(&'a Runtime),
    Reloaded(Arc<Runtime>),
}

impl std::ops::Deref for Current<'_> {
    type Target = Runtime;

    fn deref(&self) -> &Runtime {
        match self {
            Current::Same(rt) => rt,
            Current::Reloaded(rt) => rt,
        }
    }
}

/// Handles one app request.
pub async fn handle(conn: &Conn, mut req: Request<Incoming>) -> Response<ProxyBody> {
    let current = conn.current();
    let rt = &*current;
    let started = Instant::now();
    let method = req.method().clone();
    let routing = &rt.settings.routing;
    let route = match &conn.inside {
        Some(dest) => route::inside(routing, dest, &method, req.uri(), req.headers().get(HOST)),
        None => route::decide(routing, &method, req.uri()),
    };
    let (res, dest, info) = match route {
        Route::Refuse { status, reason } => {
            let asked = access::asked_host(req.uri(), req.headers().get(HOST));
            return refused(conn, rt, &method, &asked, refusal(status, &reason), started);
        }
        Route::Intercept { dest } => (intercept::open(conn, rt, &mut req, &dest), Some(dest), None),
        Route::Tunnel { dest } => {
            let res = intercept::tunnel::open(conn, rt, &mut req, &dest).await;
            (res, Some(dest), None)
        }
        Route::Forward { uri, dest } => {
            let mut unanswered = Unanswered {
                conn,
                rt,
                method: method.as_str(),
                host: dest.authority.as_str(),
                started,
                armed: true,
            };
            let (res, info) = send(conn, rt, req, uri, &dest).await;
            unanswered.armed = false;
            drop(unanswered);
            (res, Some(dest), info)
        }
    };
    conn.worker.log.record(
        rt.settings.log_format,
        &Entry {
            method: method.as_str(),
            host: dest.as_ref().map_or("", |d| d.authority.as_str()),
            status: res.status().as_u16(),
            tls: info.as_deref().map(|i| &i.tls),
            error: res
                .headers()
                .get(headers::ERROR)
                .and_then(|v| v.to_str().ok()),
            duration: started.elapsed(),
        },
    );
    res
}

/// Logs and counts a refused request under the host its app asked for, and returns the answer.
fn refused(
    conn: &Conn,
    rt: &Runtime,
    method: &http::Method,
    asked: &str,
    res: Response<ProxyBody>,
    started: Instant,
) -> Response<ProxyBody> {
    let entry = Entry {
        method: method.as_str(),
        host: asked,
        status: res.status().as_u16(),
        tls: None,
        error: None,
        duration: started.elapsed(),
    };
    conn.worker
        .log
        .record_refused(rt.settings.log_format, &entry);
    res
}

/// The access log line of a request whose app hung up before its answer was ready: status 499,
/// as nginx logs a client that closed the request; 444 if the proxy dropped it at the end of
/// its shutdown drain. Written when this is dropped armed, with the request's future: hyper
/// drops the future of a request whose app went away, and `Drop` is the only hook there is.
struct Unanswered<'a> {
    conn: &'a Conn,
    rt: &'a Runtime,
    method: &'a str,
    host: &'a str,
    started: Instant,
    armed: bool,
}

/// The status logged for a request whose app hung up first (nginx's).
pub const CLIENT_CLOSED: u16 = 499;

/// The status logged for a request the proxy itself dropped unanswered, at the end of the
/// shutdown drain (nginx's "closed without a response"), with `error=shutdown`.
pub const CLOSED_UNANSWERED: u16 = 444;

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (status, error) = if self.conn.worker.cut_off.load(Ordering::Relaxed) {
            (CLOSED_UNANSWERED, Some("shutdown"))
        } else {
            (CLIENT_CLOSED, None)
        };
        let entry = Entry {
            method: self.method,
            host: self.host,
            status,
            tls: None,
            error,
            duration: self.started.elapsed(),
        };
        let format = self.rt.settings.log_format;
        self.conn.worker.log.record(format, &entry);
    }
}

async fn send(
    conn: &Conn,
    rt: &Runtime,
    req: Request<Incoming>,
    uri: http::Uri,
    dest: &Dest,
) -> (Response<ProxyBody>, Option<Arc<ConnInfo>>) {
    let (mut parts, body) = req.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    parts.headers.insert(HOST, dest.host_header.clone());
    parts.version = http::Version::HTTP_11;
    let pool = &rt.upstreams.pick(&dest.host, dest.port).pool;
    let req = Request::from_parts(parts, body);
    let unread = conn.rt.settings.limits.idle_timeout;
    let sending = std::pin::pin!(exchange::send(pool, &conn.slot, uri, dest, req, unread));
    let sent = conn.timer.timed(rt.settings.request_timeout, sending).await;
    let (res, info) = match sent {
        None => {
            conn.slot.discard();
            let msg = format!(
                "{} did not answer within the request timeout ({} ms)",
                dest.authority,
                rt.settings.request_timeout.as_millis()
            );
            let none = serde_json::Value::Array(Vec::new());
            return (
                failure(StatusCode::GATEWAY_TIMEOUT, "timeout", &msg, &none),
                None,
            );
        }
        Some(Err((e, info))) => {
            let mut res = upstream_error(&e, dest.authority.as_str());
            // A connection was made: how, as on every answer through it.
            for (k, v) in info.iter().flat_map(|i| &i.headers) {
                res.headers_mut().insert(k, v.clone());
            }
            return (res, info);
        }
        Some(Ok(answer)) => answer,
    };
    let (mut parts, body) = res.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::strip_own(&mut parts.headers);
    // The proxy speaks its own version to the app (RFC 9110 7.6.3), whatever the upstream's:
    // an HTTP/1.0 answer stays on a kept-alive HTTP/1.1 connection, its body framed again.
    parts.version = http::Version::HTTP_11;
    if let Some(info) = &info {
        for (k, v) in &info.headers {
            parts.headers.insert(k, v.clone());
        }
    }
    (Response::from_parts(parts, Either::Left(body)), info)
}
