//! The admin listener (never the proxy port): `GET /healthz`, `GET /metrics` (Prometheus text
//! format from the `metrics` facade: the library's counters and the proxy's per-request ones)
//! and `GET /decisions` (the layers' stats as JSON); `GET /`, the status page, and
//! `POST /decisions/forget` are the [`crate::console`]'s.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::console;
use crate::observe::meters;
use crate::runtime::{Runtime, Shared};

/// Admin connections served at once; more wait in the listen queue (an fd each only once
/// accepted), so idle admin clients cannot take the descriptors the app port needs.
pub const MAX_CONNECTIONS: usize = 32;
/// How long an admin connection may be idle, or take to send a request head.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one admin connection may last.
pub const MAX_LIFETIME: Duration = Duration::from_secs(60);

/// Answers one admin request, received on `local` (the connection's local address).
pub fn answer(
    req: &Request<Incoming>,
    rt: &Shared,
    metrics: &PrometheusHandle,
    local: std::net::SocketAddr,
) -> Response<Full<Bytes>> {
    if req.uri().path() == "/decisions/forget" {
        if req.method() != Method::POST {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only POST\n", "text/plain");
        }
        return console::forget(req.headers(), req.uri().query(), local, &rt.load());
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n", "text/plain");
    }
    match req.uri().path() {
        "/" => console::page(),
        "/healthz" => text(StatusCode::OK, "ok\n", "text/plain"),
        "/metrics" => {
            let rt = rt.load();
            let learned: usize = rt
                .upstreams
                .all()
                .iter()
                .map(|b| {
                    b.layer
                        .stats()
                        .hosts
                        .iter()
                        .filter(|h| !h.provisional)
                        .count()
                })
                .sum();
            metrics::gauge!(meters::LEARNED_HOSTS).set(learned as f64);
            metrics.run_upkeep();
            text(
                StatusCode::OK,
                &metrics.render(),
                "text/plain; version=0.0.4",
            )
        }
        "/decisions" => {
            let rt = rt.load();
            text(
                StatusCode::OK,
                &decisions(&rt).to_string(),
                "application/json",
            )
        }
        "/decisions/export" => export(req.uri().query(), &rt.load()),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /, /healthz, /metrics or /decisions\n",
            "text/plain",
        ),
    }
}

/// `GET /decisions/export?format=F`: every layer's decisions as config ([`crate::export`]).
fn export(query: Option<&str>, rt: &Runtime) -> Response<Full<Bytes>> {
    let format = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("format="))
        .and_then(crate::export::Format::parse);
    let Some(format) = format else {
        let msg = format!("format must be one of: {}\n", crate::export::Format::NAMES);
        return text(StatusCode::BAD_REQUEST, &msg, "text/plain");
    };
    let entries: Vec<_> = rt
        .upstreams
        .all()
        .iter()
        .flat_map(|b| b.layer.stats().hosts)
        .filter_map(|h| crate::export::Entry::from_stats(&h))
        .collect();
    let body = crate::export::export(&entries, format, &Default::default());
    text(StatusCode::OK, &body, "text/plain; charset=utf-8")
}

/// The shared layer's stats, with the per-host layers' under `host_layers`.
fn decisions(rt: &Runtime) -> serde_json::Value {
    let mut v = layer_stats(&rt.upstreams.default.layer);
    let hosts: serde_json::Map<String, serde_json::Value> = rt
        .upstreams
        .hosts
        .iter()
        .map(|(p, b)| (p.to_string(), layer_stats(&b.layer)))
        .collect();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("host_layers".into(), json!(hosts));
    }
    v
}

/// One layer's stats as JSON; each decision gets `learned_at` (RFC 3339 UTC, `null` past the
/// year 9999) beside `learned_at_ms` (Unix milliseconds), for the humans reading it.
fn layer_stats(layer: &tls_fallback::FallbackLayer) -> serde_json::Value {
    let mut v = serde_json::to_value(layer.stats()).unwrap_or_default();
    let hosts = v.get_mut("hosts").and_then(|h| h.as_array_mut());
    for host in hosts.into_iter().flatten() {
        let ms = host.get("learned_at_ms").and_then(|m| m.as_u64());
        let at = ms.and_then(rfc3339_ms);
        if let Some(obj) = host.as_object_mut() {
            obj.insert("learned_at".into(), json!(at));
        }
    }
    v
}

/// Unix milliseconds as RFC 3339 UTC (`2026-12-07T23:10:05.123Z`); `None` where RFC 3339 ends
/// (humantime refuses years past 9999, and `to_string` would panic on its refusal).
fn rfc3339_ms(ms: u64) -> Option<String> {
    use std::fmt::Write;
    let at = std::time::UNIX_EPOCH.checked_add(Duration::from_millis(ms))?;
    let mut text = String::new();
    write!(text, "{}", humantime::format_rfc3339_millis(at)).ok()?;
    Some(text)
}

fn text(status: StatusCode, body: &str, ctype: &'static str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body.to_string())));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    res
}

/// Serves the admin listener until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, rt: Shared, metrics: PrometheusHandle) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        // A connection is accepted only with a free slot: the others wait in the listen queue,
        // where they cost the proxy no file descriptor.
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (rt, metrics) = (rt.clone(), metrics.clone());
        let Ok(local) = tcp.local_addr() else {
            continue;
        };
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let res = answer(&req, &rt, &metrics, local);
                async move { Ok::<_, Infallible>(res) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(IDLE_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), svc);
            // Whatever it does, a connection ends within its lifetime (a scraper reconnects).
            let _ = tokio::time::timeout(MAX_LIFETIME, conn).await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::rfc3339_ms;

    #[test]
    fn learned_at_is_rfc3339_and_never_panics() {
        assert_eq!(rfc3339_ms(0).as_deref(), Some("1970-01-01T00:00:00.000Z"));
        assert_eq!(
            rfc3339_ms(1_796_000_123_456).as_deref(),
            Some("2026-11-30T00:55:23.456Z")
        );
        assert_eq!(
            rfc3339_ms(253_402_300_799_999).as_deref(),
            Some("9999-12-31T23:59:59.999Z")
        );
        assert_eq!(rfc3339_ms(253_402_300_800_000), None);
        assert_eq!(rfc3339_ms(u64::MAX), None);
    }
}
