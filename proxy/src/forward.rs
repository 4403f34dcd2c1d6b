//! One request through the proxy: route it, strip hop-by-hop headers, send it once through the
//! fallback client, and stream the answer back with the `x-tls-fallback-*` headers; a refusal or
//! an upstream failure becomes a status with a JSON (or text) body that says why.

use std::sync::Arc;
use std::time::Instant;

use http::header::{HeaderValue, CONTENT_TYPE, HOST};
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::{Bytes, Incoming};
use serde_json::json;
use tls_fallback::ErrorKind;

use super::headers;
use super::log::{self, Entry};
use super::pool::{self, ConnInfo, SendError, Slot};
use super::relay::Relay;
use super::route::{self, Dest, Route};
use super::Runtime;

/// What the proxy answers with: the upstream's streamed body or its own small one.
pub type ProxyBody = Either<Relay, Full<Bytes>>;

/// Handles one app request; `slot` holds the app connection's upstream connection.
pub async fn handle(rt: &Runtime, slot: &Arc<Slot>, req: Request<Incoming>) -> Response<ProxyBody> {
    let started = Instant::now();
    let method = req.method().clone();
    let route = route::decide(&rt.settings.routing, req.method(), req.uri());
    let (res, dest, info) = match route {
        Route::Refuse { status, reason } => (refusal(status, &reason), None, None),
        Route::Forward { uri, dest } => {
            let mut unanswered = Unanswered {
                rt,
                method: method.as_str(),
                host: dest.authority.as_str(),
                started,
                armed: true,
            };
            let (res, info) = send(rt, slot, req, uri, &dest).await;
            unanswered.armed = false;
            drop(unanswered);
            (res, Some(dest), info)
        }
    };
    log::record(
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

/// The access log line of a request whose app hung up before its answer was ready (written
/// when this is dropped armed, with the request's future): status 499, as nginx logs a client
/// that closed the request; 444 if the proxy dropped it at the end of its shutdown drain.
struct Unanswered<'a> {
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

thread_local! {
    /// Set on a worker thread once its runtime is being dropped at the end of the shutdown
    /// drain: a request dropped then was cut by the proxy, not by its app.
    static CUT_OFF: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks this worker thread's remaining requests as cut off by the shutdown.
pub fn cut_off() {
    CUT_OFF.set(true);
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (status, error) = if CUT_OFF.get() {
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
        log::record(self.rt.settings.log_format, &entry);
    }
}

async fn send(
    rt: &Runtime,
    slot: &Arc<Slot>,
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
    let sending = std::pin::pin!(pool::send(pool, slot, uri, dest, req));
    let sent = slot.timed(rt.settings.request_timeout, sending).await;
    let (res, info) = match sent {
        None => {
            slot.discard();
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
        Some(Err(e)) => return (upstream_error(&e, dest.authority.as_str()), None),
        Some(Ok(answer)) => answer,
    };
    let (mut parts, body) = res.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::strip_own(&mut parts.headers);
    if let Some(info) = &info {
        for (k, v) in &info.headers {
            parts.headers.insert(k, v.clone());
        }
    }
    (Response::from_parts(parts, Either::Left(body)), info)
}

/// Maps a send error: the library's errors by kind (a handshake timeout, or no answer on any
/// rung, is 504); a failure after the connection is `http`, and says whether the request may
/// have reached the upstream (it is never sent twice, so the app must know).
fn upstream_error(e: &SendError, authority: &str) -> Response<ProxyBody> {
    let none = serde_json::Value::Array(Vec::new());
    match e {
        SendError::Connect(tls) => {
            // Silence on every rung ends in a timeout too: both are the upstream not answering.
            let status = if matches!(tls.kind(), ErrorKind::Timeout | ErrorKind::NoTlsAnswer) {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::BAD_GATEWAY
            };
            let attempts = serde_json::to_value(tls.attempts()).unwrap_or_default();
            failure(status, tls.kind().as_str(), &tls.to_string(), &attempts)
        }
        SendError::Lost(e) => failure(
            StatusCode::BAD_GATEWAY,
            "http",
            &format!(
                "the connection to {authority} failed after the request was sent ({}); the \
                 upstream may have received it, so the proxy did not send it again: check its \
                 outcome before you retry",
                tls_fallback::error_chain(e)
            ),
            &none,
        ),
        SendError::NotSent(e) => {
            let why = e.as_ref().map_or_else(String::new, |e| {
                format!(" ({})", tls_fallback::error_chain(e))
            });
            let msg = format!(
                "the connection to {authority} closed before the request was sent{why}; \
                 nothing reached the upstream, so retrying is safe"
            );
            failure(StatusCode::BAD_GATEWAY, "http", &msg, &none)
        }
    }
}

fn failure(
    status: StatusCode,
    kind: &str,
    message: &str,
    attempts: &(impl serde::Serialize + ?Sized),
) -> Response<ProxyBody> {
    let body = json!({
        "error": { "kind": kind, "message": message },
        "attempts": attempts,
    });
    let mut res = Response::new(Either::Right(Full::new(Bytes::from(format!("{body}\n")))));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(kind) {
        h.insert(headers::ERROR, v);
    }
    res
}

fn refusal(status: StatusCode, reason: &str) -> Response<ProxyBody> {
    let mut res = Response::new(Either::Right(Full::new(Bytes::from(format!("{reason}\n")))));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status == StatusCode::METHOD_NOT_ALLOWED {
        res.headers_mut().insert(
            http::header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
    }
    res
}
