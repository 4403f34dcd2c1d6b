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
use tls_fallback::{Error, ErrorKind, TlsInfo};

use super::headers;
use super::log::{self, Entry};
use super::route::{self, Route};
use super::Runtime;

/// What the proxy answers with: the upstream's streamed body or its own small one.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// Handles one app request.
pub async fn handle(rt: Arc<Runtime>, req: Request<Incoming>) -> Response<ProxyBody> {
    let started = Instant::now();
    let method = req.method().clone();
    let route = route::decide(&rt.settings.routing, req.method(), req.uri());
    let (res, host) = match route {
        Route::Refuse { status, reason } => (refusal(status, &reason), String::new()),
        Route::Forward { uri, host, port } => {
            let authority = route::authority(&host, port);
            (send(&rt, req, uri, &host, port).await, authority)
        }
    };
    let tls = res.extensions().get::<TlsInfo>();
    log::record(
        rt.settings.log_format,
        &Entry {
            method: method.as_str(),
            host: &host,
            status: res.status().as_u16(),
            tls,
            error: res
                .headers()
                .get("x-tls-fallback-error")
                .and_then(|v| v.to_str().ok()),
            duration: started.elapsed(),
        },
    );
    res
}

async fn send(
    rt: &Runtime,
    req: Request<Incoming>,
    uri: http::Uri,
    host: &str,
    port: u16,
) -> Response<ProxyBody> {
    let (mut parts, body) = req.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    if let Ok(v) = HeaderValue::from_str(&route::authority(host, port)) {
        parts.headers.insert(HOST, v);
    }
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    let client = &rt.upstreams.pick(host, port).client;
    let sent = tokio::time::timeout(
        rt.settings.request_timeout,
        client.request(Request::from_parts(parts, body)),
    )
    .await;
    let res = match sent {
        Err(_) => {
            return failure(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                &format!(
                    "{host}:{port} did not answer within the request timeout ({} ms)",
                    rt.settings.request_timeout.as_millis()
                ),
                &serde_json::Value::Array(Vec::new()),
            )
        }
        Ok(Err(e)) => return upstream_error(&e),
        Ok(Ok(res)) => res,
    };
    let (mut parts, body) = res.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::strip_own(&mut parts.headers);
    if let Some(tls) = parts.extensions.get::<TlsInfo>() {
        headers::add_tls_info(&mut parts.headers, tls);
    }
    Response::from_parts(parts, Either::Left(body))
}

/// Maps a client error: the library's TLS errors by kind (a handshake timeout, or no answer on
/// any rung, is 504), other
/// connect failures `connect`, anything after the connection `http`.
fn upstream_error(e: &hyper_util::client::legacy::Error) -> Response<ProxyBody> {
    match Error::find(e) {
        Some(tls) => {
            // Silence on every rung ends in a timeout too: both are the upstream not answering.
            let status = if matches!(tls.kind(), ErrorKind::Timeout | ErrorKind::NoTlsAnswer) {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::BAD_GATEWAY
            };
            let attempts = serde_json::to_value(tls.attempts()).unwrap_or_default();
            failure(status, tls.kind().as_str(), &tls.to_string(), &attempts)
        }
        None => {
            let kind = if e.is_connect() { "connect" } else { "http" };
            let msg = format!("the upstream failed: {}", super::error_chain(e));
            failure(
                StatusCode::BAD_GATEWAY,
                kind,
                &msg,
                &serde_json::Value::Array(Vec::new()),
            )
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
        h.insert("x-tls-fallback-error", v);
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
