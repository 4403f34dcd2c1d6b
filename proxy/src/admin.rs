//! The admin listener (never the proxy port): `GET /healthz`, `GET /metrics` (Prometheus text
//! format from the `metrics` facade: the library's counters and the proxy's per-request ones)
//! and `GET /decisions` (the layers' stats as JSON).

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

use crate::observe::meters;
use crate::runtime::{Runtime, Shared};

/// Admin connections served at once; more wait in the listen queue (an fd each only once
/// accepted), so idle admin clients cannot take the descriptors the app port needs.
pub const MAX_CONNECTIONS: usize = 32;
/// How long an admin connection may be idle, or take to send a request head.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one admin connection may last.
pub const MAX_LIFETIME: Duration = Duration::from_secs(60);

/// Answers one admin request.
pub fn answer(
    req: &Request<Incoming>,
    rt: &Shared,
    metrics: &PrometheusHandle,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n", "text/plain");
    }
    match req.uri().path() {
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
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /metrics or /decisions\n",
            "text/plain",
        ),
    }
}

/// The shared layer's stats, with the per-host layers' under `host_layers`.
fn decisions(rt: &Runtime) -> serde_json::Value {
    let mut v = serde_json::to_value(rt.upstreams.default.layer.stats()).unwrap_or_default();
    let hosts: serde_json::Map<String, serde_json::Value> = rt
        .upstreams
        .hosts
        .iter()
        .map(|(p, b)| {
            (
                p.to_string(),
                serde_json::to_value(b.layer.stats()).unwrap_or_default(),
            )
        })
        .collect();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("host_layers".into(), json!(hosts));
    }
    v
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
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let res = answer(&req, &rt, &metrics);
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
