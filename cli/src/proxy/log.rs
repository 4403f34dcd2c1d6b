//! The access log (one line per request on stdout, text or JSON) and the per-request metrics
//! (`tls_fallback_proxy_requests_total` and `tls_fallback_proxy_request_duration_seconds`, by
//! upstream host and status).

use std::io::{BufWriter, Stdout, Write};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tls_fallback::TlsInfo;

use super::config::LogFormat;

/// One request, as logged.
pub struct Entry<'a> {
    /// The method.
    pub method: &'a str,
    /// The upstream `host[:port]` (empty when the proxy refused the request).
    pub host: &'a str,
    /// The status sent to the app.
    pub status: u16,
    /// How the upstream connection was made, if it was.
    pub tls: Option<&'a TlsInfo>,
    /// The error kind, for a failure.
    pub error: Option<&'a str>,
    /// Time to the response head.
    pub duration: Duration,
}

/// Writes the access log line and counts the request.
pub fn record(format: LogFormat, e: &Entry) {
    let host = if e.host.is_empty() { "-" } else { e.host };
    let status = e.status.to_string();
    metrics::counter!("tls_fallback_proxy_requests_total", "host" => host.to_string(), "status" => status.clone())
        .increment(1);
    metrics::histogram!("tls_fallback_proxy_request_duration_seconds", "host" => host.to_string(), "status" => status)
        .record(e.duration.as_secs_f64());
    let line = format_line(format, e, &timestamp(SystemTime::now()));
    if let Ok(mut out) = sink().lock() {
        let _ = writeln!(out, "{line}");
    }
}

/// The access log's buffer: lines reach stdout in batches, on [`flush`] (every second, and on
/// shutdown) or when 64 KiB are waiting, not one write per request.
fn sink() -> &'static Mutex<BufWriter<Stdout>> {
    static SINK: OnceLock<Mutex<BufWriter<Stdout>>> = OnceLock::new();
    SINK.get_or_init(|| Mutex::new(BufWriter::with_capacity(64 * 1024, std::io::stdout())))
}

/// Writes the buffered access log lines out.
pub fn flush() {
    if let Ok(mut out) = sink().lock() {
        let _ = out.flush();
    }
}

/// The access log line.
pub fn format_line(format: LogFormat, e: &Entry, time: &str) -> String {
    let host = if e.host.is_empty() { "-" } else { e.host };
    let ms = (e.duration.as_secs_f64() * 10_000.0).round() / 10.0;
    let version = e.tls.map(|t| t.version.as_str());
    let profile = e.tls.map(|t| t.profile.to_string());
    let handshakes = e.tls.map(|t| t.handshakes());
    match format {
        LogFormat::Json => json!({
            "time": time,
            "method": e.method,
            "host": host,
            "status": e.status,
            "tls_version": version,
            "profile": profile,
            "handshakes": handshakes,
            "error": e.error,
            "duration_ms": ms,
        })
        .to_string(),
        LogFormat::Text => format!(
            "{time} {} {host} {} tls={} profile={} handshakes={} error={} ms={ms}",
            e.method,
            e.status,
            version.unwrap_or("-"),
            profile.as_deref().unwrap_or("-"),
            handshakes.map_or("-".to_string(), |h| h.to_string()),
            e.error.unwrap_or("-"),
        ),
    }
}

/// RFC 3339 UTC time with milliseconds.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let rows = [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, "2000-02-29T00:00:00.000Z"),
            (1_796_083_199, "2026-11-30T23:59:59.000Z"),
            (4_102_444_800, "2100-01-01T00:00:00.000Z"),
        ];
        for (secs, want) in rows {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(timestamp(t), want);
        }
    }

    #[test]
    fn lines_without_tls() {
        let e = Entry {
            method: "GET",
            host: "",
            status: 403,
            tls: None,
            error: None,
            duration: Duration::from_micros(1500),
        };
        assert_eq!(
            format_line(LogFormat::Text, &e, "T"),
            "T GET - 403 tls=- profile=- handshakes=- error=- ms=1.5"
        );
        let v: serde_json::Value =
            serde_json::from_str(&format_line(LogFormat::Json, &e, "T")).unwrap();
        assert_eq!(v["status"], 403);
        assert_eq!(v["host"], "-");
        assert_eq!(v["tls_version"], serde_json::Value::Null);
        assert_eq!(v["duration_ms"], 1.5);
    }
}
