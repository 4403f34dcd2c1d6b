//! The admin listener (never the proxy port): `GET /healthz`, `GET /metrics` (Prometheus text
//! format from the `metrics` facade: the library's counters and the proxy's per-request ones)
//! and `GET /decisions` (the layers' stats as JSON).

use std::convert::Infallible;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::observe::meters;
use crate::runtime::{Runtime, Shared};

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
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let (rt, metrics) = (rt.clone(), metrics.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let res = answer(&req, &rt, &metrics);
                async move { Ok::<_, Infallible>(res) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                .await;
        });
    }
}
