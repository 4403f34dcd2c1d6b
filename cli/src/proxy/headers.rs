//! Hop-by-hop headers (RFC 9110 section 7.6.1): what a proxy must not pass on, in either
//! direction, and the `x-tls-fallback-*` headers the proxy adds to every response.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use tls_fallback::TlsInfo;

/// Headers that only concern one connection, removed whatever `Connection` says.
/// `Transfer-Encoding` is framing: hyper frames each side again.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// The prefix of the headers the proxy sets; an upstream's own are dropped so none is spoofed.
pub const PREFIX: &str = "x-tls-fallback-";

/// Removes the hop-by-hop headers: the fixed list and every header `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Removes any `x-tls-fallback-*` header (an upstream must not speak for the proxy).
pub fn strip_own(headers: &mut HeaderMap) {
    let own: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with(PREFIX))
        .cloned()
        .collect();
    for name in own {
        headers.remove(name);
    }
}

/// Adds `x-tls-fallback-version`, `-profile` and `-handshakes` for a TLS connection.
pub fn add_tls_info(headers: &mut HeaderMap, tls: &TlsInfo) {
    headers.insert(
        "x-tls-fallback-version",
        HeaderValue::from_static(tls.version.as_str()),
    );
    if let Ok(v) = HeaderValue::from_str(&tls.profile) {
        headers.insert("x-tls-fallback-profile", v);
    }
    headers.insert(
        "x-tls-fallback-handshakes",
        HeaderValue::from(tls.handshakes() as u64),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    fn names(m: &HeaderMap) -> Vec<String> {
        let mut v: Vec<String> = m.keys().map(|k| k.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        // (headers in, names kept)
        type Row<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
        let rows: &[Row] = &[
            (&[("accept", "*/*"), ("host", "h")], &["accept", "host"]),
            (
                &[("connection", "keep-alive"), ("keep-alive", "timeout=5")],
                &[],
            ),
            (
                &[
                    ("connection", "close, X-Secret ,x-other"),
                    ("x-secret", "1"),
                    ("x-other", "2"),
                    ("x-kept", "3"),
                ],
                &["x-kept"],
            ),
            (
                &[
                    ("connection", "x-a"),
                    ("connection", "x-b"),
                    ("x-a", "1"),
                    ("x-b", "1"),
                ],
                &[],
            ),
            (
                &[
                    ("proxy-connection", "keep-alive"),
                    ("proxy-authorization", "Basic eA=="),
                    ("te", "trailers"),
                    ("trailer", "x"),
                    ("upgrade", "websocket"),
                    ("transfer-encoding", "chunked"),
                    ("proxy-authenticate", "Basic"),
                ],
                &[],
            ),
            (
                &[
                    ("connection", "bad header name!, content-type"),
                    ("content-type", "a/b"),
                    ("content-length", "3"),
                ],
                &["content-length"],
            ),
            (&[("authorization", "Bearer t")], &["authorization"]),
        ];
        for (input, kept) in rows {
            let mut m = map(input);
            strip_hop_by_hop(&mut m);
            assert_eq!(names(&m), kept.to_vec(), "{input:?}");
        }
    }

    #[test]
    fn an_upstream_cannot_set_the_proxy_headers() {
        let mut m = map(&[
            ("x-tls-fallback-version", "1.3"),
            ("X-TLS-Fallback-Profile", "fake"),
            ("x-tls-fallbackish", "kept"),
        ]);
        strip_own(&mut m);
        assert_eq!(names(&m), vec!["x-tls-fallbackish"]);
    }
}
