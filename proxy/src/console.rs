//! The operator's console on the admin listener: `GET /`, a status page (one self-contained
//! HTML file whose script reads `/decisions` and `/metrics` every few seconds: nothing is
//! loaded from elsewhere, and its Content-Security-Policy forbids it), and
//! `POST /decisions/forget?host=HOST:PORT`, which makes every layer forget a host (with
//! `--redis`, the fleet too).
//!
//! The admin listener has no authentication (it listens on loopback by default): what keeps a
//! web page the operator visits from forgetting hosts through their browser is the origin rule
//! of [`may_change`], a pure function of the request's headers and the listener's address.

use std::net::{IpAddr, SocketAddr};

use http::header::{HeaderMap, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, ORIGIN};
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::body::Bytes;
use serde_json::json;
use tls_fallback::HostKey;

use crate::runtime::Runtime;

/// The status page, as served.
pub const PAGE: &str = include_str!("console/page.html");

/// The page's Content-Security-Policy: its own inline style and script, requests to the admin
/// listener only, no frames, forms, or anything from elsewhere.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; \
    script-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// `GET /`: the page, with its policy headers.
pub fn page() -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
    let h = res.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// `POST /decisions/forget?host=HOST:PORT` on the connection's local address `local`: 403
/// from another origin (nothing changes), 400 on a bad host, else every layer forgets it and
/// the answer says which layers held a decision.
pub fn forget(
    headers: &HeaderMap,
    query: Option<&str>,
    local: SocketAddr,
    rt: &Runtime,
) -> Response<Full<Bytes>> {
    if let Err(why) = may_change(headers, local) {
        return reply(StatusCode::FORBIDDEN, &json!({ "error": why }));
    }
    let key = match host_param(query) {
        Ok(key) => key,
        Err(why) => return reply(StatusCode::BAD_REQUEST, &json!({ "error": why })),
    };
    let name = key.to_string();
    let mut held = 0;
    for built in rt.upstreams.all() {
        let layer = &built.layer;
        held += usize::from(layer.stats().hosts.iter().any(|h| h.host == name));
        // The store forgets (a Redis store publishes the forget), the TLS sessions go, and so
        // do idle connections on the old rung.
        layer.forget(key.host(), key.port());
        built
            .pool
            .close_to(&crate::route::authority(key.host(), key.port()));
    }
    tracing::info!(host = %name, layers = held, "forgotten on the admin listener's request");
    reply(
        StatusCode::OK,
        &json!({ "forgotten": name, "layers_that_held_it": held }),
    )
}

/// Whether a request may change state: refused when the browser says it comes from another
/// site (`Sec-Fetch-Site` other than `same-origin` or `none`) or its `Origin` is not this
/// listener's own. A request with neither header (curl, scripts) may: browsers send `Origin`
/// on every cross-origin POST, and a page elsewhere cannot remove it.
pub fn may_change(headers: &HeaderMap, local: SocketAddr) -> Result<(), String> {
    for site in headers.get_all("sec-fetch-site") {
        if !matches!(site.as_bytes(), b"same-origin" | b"none") {
            return Err(format!(
                "Sec-Fetch-Site {:?}: only this page may change state",
                String::from_utf8_lossy(site.as_bytes())
            ));
        }
    }
    let origins: Vec<&HeaderValue> = headers.get_all(ORIGIN).iter().collect();
    match origins[..] {
        [] => Ok(()),
        [origin]
            if own_origins(local)
                .iter()
                .any(|o| o.as_bytes() == origin.as_bytes()) =>
        {
            Ok(())
        }
        [origin] => Err(format!(
            "Origin {:?} is not this admin listener's ({})",
            String::from_utf8_lossy(origin.as_bytes()),
            own_origins(local).join(" or ")
        )),
        _ => Err("more than one Origin header".into()),
    }
}

/// The origins a page served by this listener has: `http://ADDR` as the browser connected to
/// it (an IPv4 client of a dual-stack listener as IPv4), and `http://localhost:PORT` on a
/// loopback address: only a page served on this port of this machine has that origin, and
/// that is this listener (browsers resolve `localhost` to loopback themselves).
fn own_origins(local: SocketAddr) -> Vec<String> {
    let ip = match local.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let local = SocketAddr::new(ip, local.port());
    let mut own = vec![format!("http://{local}")];
    if ip.is_loopback() {
        own.push(format!("http://localhost:{}", local.port()));
    }
    own
}

/// The `host` query parameter as a key: `HOST:PORT` (IPv6 in brackets), percent-encoded or
/// not; a host is a DNS name or an IP literal.
pub fn host_param(query: Option<&str>) -> Result<HostKey, String> {
    let raw = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("host="))
        .ok_or("missing ?host=HOST:PORT")?;
    let text = percent_decode(raw).ok_or("host: bad percent-encoding")?;
    let bad = || format!("host {text:?}: expected HOST:PORT, e.g. pay.example:443 or [::1]:443");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
    let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().ok().map(|_| v6),
        None => Some(host).filter(|h| is_dns_name(h)),
    }
    .ok_or_else(bad)?;
    Ok(HostKey::new(host, port))
}

/// A name of letters, digits, `-`, `_` and dots, 1 to 253 bytes (IPv4 literals included).
fn is_dns_name(h: &str) -> bool {
    (1..=253).contains(&h.len())
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `%XX` decoded (and `+` as a space, which no host has); `None` on a bad escape or non-UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?
            }
            b'+' => b' ',
            b => b,
        });
    }
    String::from_utf8(out).ok()
}

fn reply(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_the_listeners_own_origin_or_none_may_change_state() {
        let local: SocketAddr = "127.0.0.1:9090".parse().unwrap();
        let ok = |pairs| may_change(&headers(pairs), local).is_ok();
        assert!(ok(&[]), "curl: no Origin");
        assert!(ok(&[("origin", "http://127.0.0.1:9090")]));
        assert!(ok(&[("origin", "http://localhost:9090")]));
        assert!(ok(&[("sec-fetch-site", "same-origin")]));
        assert!(ok(&[("sec-fetch-site", "none")]));
        assert!(!ok(&[("origin", "http://evil.example")]));
        assert!(!ok(&[("origin", "http://127.0.0.1:9091")]), "another port");
        assert!(
            !ok(&[("origin", "https://127.0.0.1:9090")]),
            "another scheme"
        );
        assert!(!ok(&[("origin", "http://localhost:9091")]));
        assert!(!ok(&[("origin", "null")]), "a sandboxed frame, a file");
        assert!(!ok(&[("sec-fetch-site", "cross-site")]));
        assert!(!ok(&[("sec-fetch-site", "same-site")]), "another port");
        assert!(!ok(&[
            ("origin", "http://127.0.0.1:9090"),
            ("origin", "http://evil.example")
        ]));
        // Not on loopback: no localhost; a dual-stack listener's IPv4 client as IPv4.
        let public: SocketAddr = "192.0.2.7:9090".parse().unwrap();
        let h = headers(&[("origin", "http://localhost:9090")]);
        assert!(may_change(&h, public).is_err());
        let h = headers(&[("origin", "http://192.0.2.7:9090")]);
        assert!(may_change(&h, public).is_ok());
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:9090".parse().unwrap();
        let h = headers(&[("origin", "http://127.0.0.1:9090")]);
        assert!(may_change(&h, mapped).is_ok());
        let v6: SocketAddr = "[::1]:9090".parse().unwrap();
        let h = headers(&[("origin", "http://[::1]:9090")]);
        assert!(may_change(&h, v6).is_ok());
    }

    #[test]
    fn the_host_parameter_is_host_colon_port() {
        let key = |q: &str| host_param(Some(q)).map(|k| k.to_string());
        assert_eq!(key("host=Pay.Example:443").unwrap(), "pay.example:443");
        assert_eq!(
            key("x=1&host=pay.example%3A8443").unwrap(),
            "pay.example:8443"
        );
        assert_eq!(key("host=%5B::1%5D:443").unwrap(), "[::1]:443");
        assert_eq!(key("host=10.0.0.1:443").unwrap(), "10.0.0.1:443");
        for bad in [
            "",
            "host=",
            "host=pay.example",
            "host=pay.example:0",
            "host=pay.example:65536",
            "host=:443",
            "host=::1:443",
            "host=pay example:443",
            "host=<b>x</b>:443",
            "host=pay.example%3:443",
            "host=%FF:443",
            "other=pay.example:443",
        ] {
            assert!(key(bad).is_err(), "{bad:?} refused");
        }
        assert!(host_param(None).is_err());
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for needle in ["http://", "https://", "//cdn", "@import", "url("] {
            assert!(!PAGE.contains(needle), "the page mentions {needle:?}");
        }
        // Host names come from apps: the script sets them as text, never as markup.
        for markup in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(!PAGE.contains(markup), "the page uses {markup}");
        }
        let res = page();
        let csp = res.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
    }
}
