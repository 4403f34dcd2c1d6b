//! `get`'s input checks, pure: each turns one flag's text into a value or a message that says
//! what is wrong and what is expected.

use http::header::{HeaderName, HeaderValue};
use http::Uri;
use tls_fallback::TlsVersion;

/// What a TLS version flag accepts.
const VERSIONS: &str = "expected 1.0, 1.1, 1.2 or 1.3";

/// A URL to fetch: the URI, its host (IPv6 without brackets) and its port.
#[derive(Debug, Clone, PartialEq)]
pub struct Url {
    /// The whole URL.
    pub uri: Uri,
    /// The host, without the brackets of an IPv6 literal.
    pub host: String,
    /// The port, 443 or 80 unless given.
    pub port: u16,
}

/// Parses an `https://` or `http://` URL; without a scheme, suggests the `https://` spelling.
pub fn url(s: &str) -> Result<Url, String> {
    if !s.contains("://") {
        let suggestion = format!("https://{s}");
        if s.is_empty() {
            return Err("invalid URL \"\": expected https://HOST[:PORT]/PATH".into());
        }
        if suggestion.parse::<Uri>().is_ok_and(|u| u.host().is_some()) {
            return Err(format!(
                "invalid URL {s:?}: it has no scheme; expected https:// or http:// before the \
                 host, e.g. {suggestion}"
            ));
        }
    }
    let uri: Uri = s.parse().map_err(|e| {
        format!("invalid URL {s:?}: {e}; expected https://HOST[:PORT]/PATH (no spaces)")
    })?;
    let scheme = uri.scheme_str().unwrap_or("");
    if scheme != "https" && scheme != "http" {
        return Err(format!(
            "invalid URL {s:?}: it must start with https:// or http://"
        ));
    }
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("invalid URL {s:?}: it has no host; expected {scheme}://HOST/"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    Ok(Url { uri, host, port })
}

/// Parses `-H 'Name: value'`.
pub fn header(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    let Some((name, value)) = s.split_once(':') else {
        return Err(format!(
            "-H {s:?}: no colon; expected 'Name: value', e.g. -H 'Content-Type: application/json'"
        ));
    };
    let name = name.trim();
    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        format!(
            "-H {s:?}: {name:?} is not a header name; expected letters, digits and \
             !#$%&'*+-.^_`|~ before the colon, e.g. -H 'X-Request-Id: 42'"
        )
    })?;
    let value = HeaderValue::from_str(value.trim()).map_err(|_| {
        format!(
            "-H {s:?}: the value has a character a header cannot carry (a control character or \
             a line break); expected printable text after the colon"
        )
    })?;
    Ok((name, value))
}

/// Parses a byte count: `N`, or `N` with `K`, `M` or `G` (KiB, MiB, GiB; `KiB`, `MB`... too).
pub fn size(flag: &str, s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = t.split_at(digits);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => u32::MAX,
    };
    let n: Option<u64> = n.parse().ok();
    match (n, shift) {
        (Some(n), shift) if shift != u32::MAX => n.checked_mul(1 << shift).ok_or_else(|| {
            format!(
                "{flag} {s:?} is too large; expected at most {} bytes",
                u64::MAX
            )
        }),
        _ => Err(format!(
            "{flag} {s:?}: expected a number of bytes, optionally with K, M or G \
             (KiB, MiB, GiB), e.g. 64M"
        )),
    }
}

/// Parses a TLS version flag (`--floor`, a pin's version).
pub fn version(s: &str) -> Result<TlsVersion, String> {
    s.parse::<TlsVersion>()
        .map_err(|_| format!("{s} is not a TLS version; {VERSIONS}"))
}

/// Checks the version half of `--pin HOST[:PORT]=VERSION` before the library parses the pin,
/// so a bad version is blamed on the version, not on the host pattern.
pub fn pin_version(s: &str) -> Result<(), String> {
    let Some((_, v)) = s.rsplit_once('=') else {
        return Ok(()); // The library's message names the HOST[:PORT]=VERSION form.
    };
    version(v)
        .map(|_| ())
        .map_err(|e| format!("--pin {s}: unknown TLS version after \"=\": {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_or_say_what_is_expected() {
        let ok = [
            ("https://pay.example/x", "pay.example", 443),
            ("http://pay.example/x", "pay.example", 80),
            ("https://[::1]:8443/", "::1", 8443),
            ("https://localhost:8443/health", "localhost", 8443),
        ];
        for (s, host, port) in ok {
            let u = url(s).unwrap();
            assert_eq!((u.host.as_str(), u.port), (host, port), "{s}");
        }
        let bad = [
            (
                "localhost:8443/health",
                "e.g. https://localhost:8443/health",
            ),
            ("pay.example", "e.g. https://pay.example"),
            ("not a url", "invalid URL"),
            ("ftp://pay.example/", "https:// or http://"),
            ("", "expected https://HOST"),
        ];
        for (s, needle) in bad {
            let e = url(s).unwrap_err();
            assert!(e.contains(needle), "{s}: {e}");
        }
    }

    #[test]
    fn headers_parse_or_say_what_is_expected() {
        let (n, v) = header("Content-Type: application/json").unwrap();
        assert_eq!(
            (n.as_str(), v.to_str().unwrap()),
            ("content-type", "application/json")
        );
        let (n, v) = header("X-Empty:").unwrap();
        assert_eq!((n.as_str(), v.as_bytes()), ("x-empty", &b""[..]));
        let bad = [
            ("Content-Type application/json", "no colon"),
            ("Bad Name: x", "is not a header name"),
            (": x", "is not a header name"),
            ("X-A: a\u{7f}b", "cannot carry"),
        ];
        for (s, needle) in bad {
            let e = header(s).unwrap_err();
            assert!(e.contains(needle), "{s}: {e}");
        }
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        let rows = [
            ("0", Some(0)),
            ("1024", Some(1024)),
            ("64M", Some(64 << 20)),
            ("64MiB", Some(64 << 20)),
            ("2k", Some(2048)),
            ("1G", Some(1 << 30)),
            ("", None),
            ("M", None),
            ("12 apples", None),
            ("-1", None),
            ("99999999999999999999G", None),
        ];
        for (s, want) in rows {
            assert_eq!(size("--max-body", s).ok(), want, "{s}");
        }
        assert!(size("--max-body", "x").unwrap_err().contains("e.g. 64M"));
    }

    #[test]
    fn versions_and_pins_blame_the_version() {
        assert_eq!(version("1.0"), Ok(TlsVersion::Tls1_0));
        assert_eq!(
            version("1.5").unwrap_err(),
            "1.5 is not a TLS version; expected 1.0, 1.1, 1.2 or 1.3"
        );
        let e = pin_version("localhost=1.5").unwrap_err();
        assert!(e.contains("1.5 is not a TLS version"), "{e}");
        assert!(!e.contains("host pattern"), "{e}");
        assert_eq!(pin_version("localhost:8443=1.0"), Ok(()));
        assert_eq!(pin_version("no-equals-sign"), Ok(()));
    }
}
