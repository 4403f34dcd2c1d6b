//! Hop-by-hop headers (RFC 9110 section 7.6.1): what a proxy must not pass on, in either
//! direction, and the `x-tls-fallback-*` headers the proxy adds to every response.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use tls_fallback::TlsInfo;

/// Headers that only concern one connection, removed whatever `Connection` says.
/// `Transfer-Encoding` is framing: hyper frames each side again.
static HOP_BY_HOP: [HeaderName; 9] = [
    http::header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
    http::header::PROXY_AUTHORIZATION,
    http::header::PROXY_AUTHENTICATE,
];

/// The prefix of the headers the proxy sets; an upstream's own are dropped so none is spoofed.
pub const PREFIX: &str = "x-tls-fallback-";

/// `x-tls-fallback-version`.
pub const VERSION: HeaderName = HeaderName::from_static("x-tls-fallback-version");
/// `x-tls-fallback-profile`.
pub const PROFILE: HeaderName = HeaderName::from_static("x-tls-fallback-profile");
/// `x-tls-fallback-handshakes`.
pub const HANDSHAKES: HeaderName = HeaderName::from_static("x-tls-fallback-handshakes");
/// `x-tls-fallback-error`.
pub const ERROR: HeaderName = HeaderName::from_static("x-tls-fallback-error");

/// Removes the hop-by-hop headers: the fixed list and every header `Connection` names; and a
/// `Content-Length` sent with `Transfer-Encoding` (RFC 9112 section 6.3: the message is framed
/// by the transfer coding, and an intermediary must remove the length before forwarding it;
/// passed on, a shorter one would cut the body, a mismatch is how messages are smuggled).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages have none: one pass over the names finds out without hashing nine times.
    if !headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    if headers.contains_key(http::header::TRANSFER_ENCODING) {
        headers.remove(http::header::CONTENT_LENGTH);
    }
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
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Removes any `x-tls-fallback-*` header (an upstream must not speak for the proxy).
pub fn strip_own(headers: &mut HeaderMap) {
    if !headers.keys().any(|k| k.as_str().starts_with(PREFIX)) {
        return;
    }
    let own: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with(PREFIX))
        .cloned()
        .collect();
    for name in own {
        headers.remove(name);
    }
}

/// `x-tls-fallback-version`, `-profile` and `-handshakes` for a TLS connection (made once per
/// connection, added to each of its responses).
pub fn tls_headers(tls: &TlsInfo) -> Vec<(HeaderName, HeaderValue)> {
    let mut v = vec![(VERSION, HeaderValue::from_static(tls.version.as_str()))];
    if let Ok(p) = HeaderValue::from_str(&tls.profile) {
        v.push((PROFILE, p));
    }
    v.push((HANDSHAKES, HeaderValue::from(tls.handshakes() as u64)));
    v
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
            // A length beside a transfer coding goes with it (RFC 9112 section 6.3).
            (
                &[
                    ("transfer-encoding", "chunked"),
                    ("content-length", "5"),
                    ("x-kept", "1"),
                ],
                &["x-kept"],
            ),
            (
                &[
                    ("content-length", "5"),
                    ("content-length", "7"),
                    ("transfer-encoding", "gzip, chunked"),
                ],
                &[],
            ),
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
