//! The redirect rule of [`crate::Client`], a pure function: which status codes are followed,
//! with which method and body, and which headers are dropped when the origin changes.

use http::{Method, StatusCode, Uri};

/// What to send after a redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hop {
    /// The next method (a 301/302/303 turns anything but HEAD into GET).
    pub method: Method,
    /// The absolute next URI.
    pub uri: Uri,
    /// Whether the body is sent again (307 and 308 only).
    pub keep_body: bool,
    /// Whether the origin (scheme, host, port) changed: credentials are then dropped.
    pub cross_origin: bool,
}

/// Headers never carried to another origin.
pub(crate) const CREDENTIALS: [http::header::HeaderName; 3] = [
    http::header::AUTHORIZATION,
    http::header::COOKIE,
    http::header::PROXY_AUTHORIZATION,
];

/// `Ok(None)`: not a redirect, return the response; `Ok(Some(hop))`: follow it;
/// `Err(why)`: a redirect that must not be followed.
pub(crate) fn next(
    status: StatusCode,
    method: &Method,
    from: &Uri,
    location: Option<&str>,
) -> Result<Option<Hop>, String> {
    let keep_body = match status.as_u16() {
        301..=303 => false,
        307 | 308 => true,
        _ => return Ok(None),
    };
    let location = location.ok_or_else(|| format!("a {status} redirect without a Location"))?;
    let uri = resolve(from, location)?;
    if from.scheme() == Some(&http::uri::Scheme::HTTPS)
        && uri.scheme() != Some(&http::uri::Scheme::HTTPS)
    {
        return Err(format!("refusing a redirect from https to {uri}"));
    }
    let method = if keep_body || *method == Method::HEAD {
        method.clone()
    } else {
        Method::GET
    };
    let origin = |u: &Uri| {
        (
            u.scheme().cloned(),
            u.host().map(str::to_ascii_lowercase),
            u.port_u16(),
        )
    };
    Ok(Some(Hop {
        cross_origin: origin(from) != origin(&uri),
        method,
        uri,
        keep_body,
    }))
}

/// `Location` resolved against the request URI: absolute, `//host/path` or `/path`.
/// Relative paths without a leading `/` resolve against the request's directory.
fn resolve(from: &Uri, location: &str) -> Result<Uri, String> {
    let bad = |e: http::uri::InvalidUri| format!("bad Location {location:?}: {e}");
    let loc: Uri = location.parse().map_err(bad)?;
    if loc.scheme().is_some() {
        return Ok(loc);
    }
    let scheme = from.scheme_str().unwrap_or("https");
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{scheme}://{rest}").parse().map_err(bad);
    }
    let authority = from.authority().map(|a| a.as_str()).unwrap_or_default();
    let path = if location.starts_with('/') {
        location.to_string()
    } else {
        let dir = from.path().rsplit_once('/').map_or("", |(d, _)| d);
        format!("{dir}/{location}")
    };
    format!("{scheme}://{authority}{path}").parse().map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (method, uri, keep_body, cross_origin) of a hop, or the words of the refusal.
    type Want = Result<Option<(&'static str, &'static str, bool, bool)>, &'static str>;
    type Row = (u16, Method, Option<&'static str>, Want);

    const GW: &str = "https://gw.example:8443";

    fn rows() -> Vec<Row> {
        let (get, post, head) = (Method::GET, Method::POST, Method::HEAD);
        let follow = |m, u, keep, cross| Ok(Some((m, u, keep, cross)));
        vec![
            (200, post.clone(), None, Ok(None)),
            (304, post.clone(), Some("/x"), Ok(None)),
            (
                302,
                post.clone(),
                Some("/done"),
                follow("GET", "/done", false, false),
            ),
            (
                303,
                post.clone(),
                Some("done"),
                follow("GET", "/pay/done", false, false),
            ),
            (301, head, Some("/h"), follow("HEAD", "/h", false, false)),
            (
                307,
                post.clone(),
                Some("/again"),
                follow("POST", "/again", true, false),
            ),
            (
                308,
                post,
                Some("https://other.example/p"),
                follow("POST", "https://other.example/p", true, true),
            ),
            (
                302,
                get.clone(),
                Some("//GW.example:8443/case"),
                follow("GET", "https://GW.example:8443/case", false, false),
            ),
            (
                302,
                get.clone(),
                Some("https://gw.example/"),
                follow("GET", "https://gw.example/", false, true),
            ),
            (
                302,
                get.clone(),
                Some("http://gw.example:8443/"),
                Err("refusing a redirect from https"),
            ),
            (302, get.clone(), None, Err("without a Location")),
            (302, get, Some("/bad path"), Err("bad Location")),
        ]
    }

    #[test]
    fn follows_what_it_should_and_nothing_else() {
        let from: Uri = format!("{GW}/pay/now?x=1").parse().unwrap();
        for (i, (status, method, loc, want)) in rows().into_iter().enumerate() {
            let got = next(StatusCode::from_u16(status).unwrap(), &method, &from, loc);
            match (got, want) {
                (Ok(None), Ok(None)) => {}
                (Ok(Some(hop)), Ok(Some((m, u, keep, cross)))) => {
                    let u = if u.starts_with('/') {
                        format!("{GW}{u}")
                    } else {
                        u.to_string()
                    };
                    let got = (
                        hop.method.as_str(),
                        hop.uri.to_string(),
                        hop.keep_body,
                        hop.cross_origin,
                    );
                    assert_eq!(got, (m, u, keep, cross), "row {i}");
                }
                (Err(e), Err(w)) => assert!(e.contains(w), "row {i}: {e}"),
                (g, w) => panic!("row {i}: got {g:?}, want {w:?}"),
            }
        }
    }
}
