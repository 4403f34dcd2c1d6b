//! The Prometheus recorder behind `/metrics`: the library's counters (named in
//! [`tls_fallback::metric_names`]) and the proxy's own, per request.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tls_fallback::metric_names;

/// Requests answered, by upstream `host` and `status`.
pub const REQUESTS: &str = "tls_fallback_proxy_requests_total";
/// Time to the response head, by upstream `host` and `status`.
pub const DURATION: &str = "tls_fallback_proxy_request_duration_seconds";
/// Hosts with a confirmed decision, read from the layers when `/metrics` is scraped.
pub const LEARNED_HOSTS: &str = "tls_fallback_learned_hosts";

/// Latency buckets (seconds) for the request histogram.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Installs the Prometheus recorder as the global `metrics` recorder, once per process (a
/// program that starts the proxy twice gets the same handle back).
pub fn install_recorder() -> Result<PrometheusHandle, String> {
    static INSTALLED: std::sync::Mutex<Option<PrometheusHandle>> = std::sync::Mutex::new(None);
    let mut installed = crate::lock(&INSTALLED);
    if let Some(h) = installed.as_ref() {
        return Ok(h.clone());
    }
    let handle = install()?;
    *installed = Some(handle.clone());
    Ok(handle)
}

fn install() -> Result<PrometheusHandle, String> {
    let recorder = PrometheusBuilder::new()
        .set_buckets(&BUCKETS)
        .map_err(|e| format!("metrics: {e}"))?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    // The library's unlabelled counters, at zero until they move, so dashboards see them.
    for name in metric_names::UNLABELLED {
        metrics::counter!(name).increment(0);
    }
    Ok(handle)
}
