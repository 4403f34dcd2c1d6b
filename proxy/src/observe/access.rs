//! The access log: one line per request on stdout, text or JSON, and the per-request metrics
//! (`tls_fallback_proxy_requests_total` and `tls_fallback_proxy_request_duration_seconds`, by
//! upstream host and status).
//!
//! Each worker owns a [`Writer`]: its lines wait in the writer's buffer and go to stdout in
//! batches (on [`Writer::flush`], every second and on shutdown, or once 64 KiB wait), not one
//! write per request, and without workers queueing on one lock; the writer also keeps the
//! metric handles of the (upstream, status) pairs it has seen, so a request does not build its
//! labels and look them up in the registry again. Lines from different workers may reach
//! stdout a second apart.

use std::io::Write;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tls_fallback::TlsInfo;

use super::LogFormat;
use crate::lock;

/// One request, as logged.
pub struct Entry<'a> {
    /// The method.
    pub method: &'a str,
    /// The upstream `host[:port]`; for a refused request, the host its app asked for as
    /// [`asked_host`] shows it (empty if it named none).
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

/// The request counter and duration histogram of each (upstream, status) this thread has seen,
/// so that a request does not build its labels and look them up in the registry again.
struct Handles {
    host: Box<str>,
    status: u16,
    refused: bool,
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

/// How many (upstream, status) pairs each thread keeps handles for; beyond that, requests are
/// counted through the registry as usual.
const HANDLES_KEPT: usize = 256;

/// The metric handles a writer keeps.
#[derive(Default)]
struct Meters(Vec<Handles>);

/// How many upstream hosts get a `host` label of their own in the metrics; the requests of
/// any later one are counted under `other`. A pattern such as `*.suffix`, or a host without a
/// port (every port), would otherwise let apps make label sets without end. The hosts of
/// refused requests have a budget of their own, as large: an app asking for junk cannot take
/// the upstreams' labels.
pub const MAX_HOST_LABELS: usize = 100;

/// The label for a host: its own among the first [`MAX_HOST_LABELS`] of its kind (upstream,
/// or asked for by a refused request) seen by the process (the metrics registry is the
/// process's too), else `other`.
fn host_label(host: &str, refused: bool) -> &str {
    type Seen = std::sync::OnceLock<Mutex<std::collections::HashSet<String>>>;
    static SEEN: [Seen; 2] = [Seen::new(), Seen::new()];
    let mut seen = lock(SEEN[usize::from(refused)].get_or_init(Mutex::default));
    if seen.contains(host) {
        return host;
    }
    if seen.len() < MAX_HOST_LABELS {
        seen.insert(host.to_string());
        return host;
    }
    "other"
}

/// The `status` label: a status HTTP defines, or the proxy's own 499 and 444, as itself; any
/// other (an upstream may send 100 to 999) as its class, `2xx`...: a bounded set.
fn status_label(status: u16) -> String {
    let known = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .is_some();
    if known || matches!(status, 444 | 499) {
        status.to_string()
    } else {
        format!("{}xx", status / 100)
    }
}

impl Meters {
    fn count(&mut self, e: &Entry, refused: bool) {
        let host = if e.host.is_empty() { "-" } else { e.host };
        let seconds = e.duration.as_secs_f64();
        if let Some(h) = (self.0.iter())
            .find(|h| h.status == e.status && h.refused == refused && *h.host == *host)
        {
            h.requests.increment(1);
            h.duration.record(seconds);
            return;
        }
        let status = status_label(e.status);
        let label = host_label(host, refused);
        let h = Handles {
            host: host.into(),
            status: e.status,
            refused,
            requests: metrics::counter!(super::meters::REQUESTS, "host" => label.to_string(), "status" => status.clone()),
            duration: metrics::histogram!(super::meters::DURATION, "host" => label.to_string(), "status" => status),
        };
        h.requests.increment(1);
        h.duration.record(seconds);
        if self.0.len() < HANDLES_KEPT {
            self.0.push(h);
        }
    }
}

/// The current time as text, its date and seconds formatted once per second.
struct Clock {
    second: u64,
    prefix: String,
    text: String,
}

impl Clock {
    fn at(&mut self, now: SystemTime) -> &str {
        let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        if d.as_secs() != self.second {
            self.second = d.as_secs();
            let full = timestamp(UNIX_EPOCH + Duration::from_secs(d.as_secs()));
            // "...T12:34:56." without the "000Z" of a whole second.
            self.prefix = full[..full.len() - 4].to_string();
        }
        let ms = d.subsec_millis();
        self.text.clear();
        self.text.push_str(&self.prefix);
        for digit in [ms / 100, ms / 10 % 10, ms % 10] {
            self.text.push(char::from(b'0' + digit as u8));
        }
        self.text.push('Z');
        &self.text
    }
}

/// A writer flushes its buffer itself once this many bytes wait.
const BATCH: usize = 64 * 1024;

/// One worker's access log: its buffered lines, its clock and its metric handles.
pub struct Writer {
    buf: Mutex<Vec<u8>>,
    clock: Mutex<Clock>,
    meters: Mutex<Meters>,
}

impl Default for Writer {
    fn default() -> Self {
        Writer {
            buf: Mutex::default(),
            clock: Mutex::new(Clock {
                second: u64::MAX,
                prefix: String::new(),
                text: String::new(),
            }),
            meters: Mutex::default(),
        }
    }
}

impl Writer {
    /// Writes the access log line of a request and counts it.
    pub fn record(&self, format: LogFormat, e: &Entry) {
        self.record_as(format, e, false);
    }

    /// As [`Writer::record`], for a request the proxy refused: `e.host` is what its app asked
    /// for ([`asked_host`]), counted within the refused hosts' own label budget.
    pub fn record_refused(&self, format: LogFormat, e: &Entry) {
        self.record_as(format, e, true);
    }

    fn record_as(&self, format: LogFormat, e: &Entry, refused: bool) {
        lock(&self.meters).count(e, refused);
        let now = SystemTime::now();
        let mut out = lock(&self.buf);
        write_line(&mut out, format, e, lock(&self.clock).at(now));
        if out.len() >= BATCH {
            write_out(&mut out);
        }
    }

    /// Writes the buffered lines out.
    pub fn flush(&self) {
        write_out(&mut lock(&self.buf));
        let _ = std::io::stdout().flush();
    }
}

fn write_out(buf: &mut MutexGuard<'_, Vec<u8>>) {
    if !buf.is_empty() {
        let _ = std::io::stdout().lock().write_all(buf);
        buf.clear();
    }
}

/// One JSON access log line.
#[derive(Serialize)]
struct JsonLine<'a> {
    time: &'a str,
    method: &'a str,
    host: &'a str,
    status: u16,
    tls_version: Option<&'a str>,
    profile: Option<&'a str>,
    handshakes: Option<usize>,
    error: Option<&'a str>,
    duration_ms: f64,
}

/// Writes the access log line and its newline.
fn write_line(out: &mut Vec<u8>, format: LogFormat, e: &Entry, time: &str) {
    let host = if e.host.is_empty() { "-" } else { e.host };
    // Tenths of a millisecond, rounded.
    let tenths = (e.duration.as_micros() + 50) / 100;
    let version = e.tls.map(|t| t.version.as_str());
    let profile = e.tls.map(|t| &*t.profile);
    let handshakes = e.tls.map(|t| t.handshakes());
    match format {
        LogFormat::Json => {
            let line = JsonLine {
                time,
                method: e.method,
                host,
                status: e.status,
                tls_version: version,
                profile,
                handshakes,
                error: e.error,
                duration_ms: tenths as f64 / 10.0,
            };
            if serde_json::to_writer(&mut *out, &line).is_err() {
                return;
            }
        }
        LogFormat::Text => {
            // Pieces pushed one by one: this runs for every request, and `write!` costs more
            // than the line.
            for piece in [time, " ", e.method, " ", host, " "] {
                out.extend_from_slice(piece.as_bytes());
            }
            push_number(out, u128::from(e.status));
            out.extend_from_slice(b" tls=");
            out.extend_from_slice(version.unwrap_or("-").as_bytes());
            out.extend_from_slice(b" profile=");
            out.extend_from_slice(profile.unwrap_or("-").as_bytes());
            out.extend_from_slice(b" handshakes=");
            match handshakes {
                Some(h) => push_number(out, h as u128),
                None => out.push(b'-'),
            }
            out.extend_from_slice(b" error=");
            out.extend_from_slice(e.error.unwrap_or("-").as_bytes());
            out.extend_from_slice(b" ms=");
            push_number(out, tenths / 10);
            if tenths % 10 != 0 {
                out.push(b'.');
                push_number(out, tenths % 10);
            }
        }
    }
    out.push(b'\n');
}

/// `n` in decimal.
fn push_number(out: &mut Vec<u8>, mut n: u128) {
    let mut digits = [0u8; 39];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The longest part of an asked-for host that is logged (a DNS name and a port fit).
pub const MAX_ASKED_BYTES: usize = 260;

/// The host an app asked for in a request the proxy refused, as the access log and the
/// metrics show it: the request URI's authority (absolute or `CONNECT` form), else the `Host`
/// header, else empty. An app can send any bytes there: each byte that is not printable
/// ASCII, and a space, `"` or `\`, is written `\xHH`, so a host stays one field of the
/// text line and cannot forge another line or field; at most [`MAX_ASKED_BYTES`] of it
/// are shown, then `...`.
pub fn asked_host(uri: &http::Uri, host_header: Option<&http::HeaderValue>) -> String {
    let raw = match (uri.authority(), host_header) {
        (Some(a), _) => a.as_str().as_bytes(),
        (None, Some(h)) => h.as_bytes(),
        (None, None) => b"",
    };
    escape_host(raw)
}

/// `raw` escaped and cut as [`asked_host`] says.
fn escape_host(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len().min(MAX_ASKED_BYTES));
    for &b in raw.iter().take(MAX_ASKED_BYTES) {
        if b.is_ascii_graphic() && b != b'"' && b != b'\\' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    if raw.len() > MAX_ASKED_BYTES {
        out.push_str("...");
    }
    out
}

/// The access log line (without its newline).
#[cfg(test)]
pub fn format_line(format: LogFormat, e: &Entry, time: &str) -> String {
    let mut v = Vec::new();
    write_line(&mut v, format, e, time);
    v.pop();
    String::from_utf8_lossy(&v).into_owned()
}

/// RFC 3339 UTC time with milliseconds (`2026-12-07T23:10:05.123Z`).
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
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
    fn an_asked_host_is_escaped_to_one_printable_field_and_cut() {
        // (raw host, as logged)
        let long = "a".repeat(MAX_ASKED_BYTES + 1);
        let cut = format!("{}...", &long[..MAX_ASKED_BYTES]);
        let rows: [(&[u8], &str); 8] = [
            (b"gw.example:8443", "gw.example:8443"),
            (b"[::1]:443", "[::1]:443"),
            (b"", ""),
            (b"evil host", "evil\\x20host"),
            (b"a\"b\\c", "a\\x22b\\x5cc"),
            (
                b"\x1b[2J\r\nGET x 200",
                "\\x1b[2J\\x0d\\x0aGET\\x20x\\x20200",
            ),
            (b"caf\xc3\xa9\xff", "caf\\xc3\\xa9\\xff"),
            (long.as_bytes(), &cut),
        ];
        for (raw, want) in rows {
            assert_eq!(escape_host(raw), want, "{raw:?}");
        }
        let header = http::HeaderValue::from_bytes(b"h\xff st").unwrap();
        let origin: http::Uri = "/x".parse().unwrap();
        assert_eq!(asked_host(&origin, Some(&header)), "h\\xff\\x20st");
        let absolute: http::Uri = "http://gw.example:81/x".parse().unwrap();
        assert_eq!(asked_host(&absolute, Some(&header)), "gw.example:81");
        let connect: http::Uri = "gw.example:443".parse().unwrap();
        assert_eq!(asked_host(&connect, None), "gw.example:443");
        assert_eq!(asked_host(&origin, None), "");
        // One field of the text line, and a JSON string.
        let e = Entry {
            method: "GET",
            host: &escape_host(b"a b\nc"),
            status: 400,
            tls: None,
            error: None,
            duration: Duration::ZERO,
        };
        let line = format_line(LogFormat::Text, &e, "T");
        assert_eq!(line.split(' ').nth(2), Some("a\\x20b\\x0ac"), "{line}");
        let v: serde_json::Value =
            serde_json::from_str(&format_line(LogFormat::Json, &e, "T")).unwrap();
        assert_eq!(v["host"], "a\\x20b\\x0ac");
    }

    #[test]
    fn refused_hosts_have_their_own_label_budget() {
        // Fills the refused budget with hosts of its own; upstream labels are untouched.
        for i in 0..MAX_HOST_LABELS {
            assert_eq!(host_label(&format!("junk{i}"), true), format!("junk{i}"));
        }
        assert_eq!(host_label("junk-late", true), "other");
        assert_eq!(
            host_label("junk0", true),
            "junk0",
            "a host seen keeps its label"
        );
        assert_eq!(host_label("gw.example", false), "gw.example");
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

    #[test]
    fn durations_in_tenths_of_a_millisecond() {
        // (duration in µs, text, JSON)
        let rows = [
            (0, "ms=0", 0.0),
            (49, "ms=0", 0.0),
            (50, "ms=0.1", 0.1),
            (2_000, "ms=2", 2.0),
            (12_345, "ms=12.3", 12.3),
            (30_000_000, "ms=30000", 30_000.0),
        ];
        for (us, text, json) in rows {
            let e = Entry {
                method: "POST",
                host: "gw.example:8443",
                status: 200,
                tls: None,
                error: Some("timeout"),
                duration: Duration::from_micros(us),
            };
            let line = format_line(LogFormat::Text, &e, "T");
            assert_eq!(
                line,
                format!(
                    "T POST gw.example:8443 200 tls=- profile=- handshakes=- error=timeout {text}"
                )
            );
            let v: serde_json::Value =
                serde_json::from_str(&format_line(LogFormat::Json, &e, "T")).unwrap();
            assert_eq!(v["duration_ms"], json, "{us} µs");
        }
        let mut v = Vec::new();
        push_number(&mut v, u128::MAX);
        assert_eq!(String::from_utf8(v).unwrap(), u128::MAX.to_string());
    }
}
