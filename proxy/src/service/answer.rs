//! The proxy's own answers: a refusal (400, 403, 405) with a text body for the app's developer,
//! and an upstream failure as a status with a JSON body that says what happened on every
//! attempt and whether the request may have reached the upstream.

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Bytes;
use serde_json::json;
use tls_fallback::ErrorKind;

use super::ProxyBody;
use crate::headers;
use crate::upstream::conn::SendError;

/// Maps a send error: the library's errors by kind (a handshake timeout, or no answer on any
/// rung, is 504); a failure after the connection is `http`, and says whether the request may
/// have reached the upstream (it is never sent twice, so the app must know).
pub fn upstream_error(e: &SendError, authority: &str) -> Response<ProxyBody> {
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

pub fn failure(
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

pub fn refusal(status: StatusCode, reason: &str) -> Response<ProxyBody> {
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
