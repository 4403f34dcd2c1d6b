//! Where a request goes: the proxy's routing rule as a pure function from the request line to
//! an upstream `https://` URI or a refusal (400, 403, 405), tested row by row without sockets.

use std::sync::Arc;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Method, StatusCode, Uri};
use hyper::body::Bytes;
use tls_fallback::HostPattern;

/// An upstream requests are forwarded to, with what each request to it needs made once: the
/// one of upstream mode is parsed at start, so its requests allocate nothing for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dest {
    /// The host name or IP address (no brackets), lowercase.
    pub host: String,
    /// The port (443 when the URL has none).
    pub port: u16,
    /// `host[:port]` (IPv6 in brackets, no port when it is 443).
    pub authority: Authority,
    /// The `Host` header sent upstream: the authority.
    pub host_header: HeaderValue,
}

impl Dest {
    /// `host` (lowercase, no brackets) on `port`.
    pub fn new(host: String, port: u16) -> Result<Dest, String> {
        let text = authority(&host, port);
        let bad = |e: &dyn std::fmt::Display| format!("invalid host {host:?}: {e}");
        let host_header = HeaderValue::from_str(&text).map_err(|e| bad(&e))?;
        let authority = Authority::from_maybe_shared(Bytes::from(text)).map_err(|e| bad(&e))?;
        Ok(Dest {
            host,
            port,
            authority,
            host_header,
        })
    }

    /// Parses the upstream of upstream mode: `https://HOST[:PORT]` (an optional trailing `/`,
    /// nothing else after it).
    pub fn parse(s: &str) -> Result<Dest, String> {
        let uri: Uri = s
            .parse()
            .map_err(|e| format!("invalid upstream URL {s:?}: {e}"))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!(
                "invalid upstream URL {s:?}: it must start with https:// (the proxy originates TLS)"
            ));
        }
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(format!(
                "invalid upstream URL {s:?}: it must have no path or query (the app's path is kept)"
            ));
        }
        let auth = uri
            .authority()
            .ok_or_else(|| format!("invalid upstream URL {s:?}: it has no host"))?;
        if auth.as_str().contains('@') {
            return Err(format!(
                "invalid upstream URL {s:?}: user information is not supported"
            ));
        }
        let host = normalize_host(auth.host());
        if host.is_empty() {
            return Err(format!("invalid upstream URL {s:?}: it has no host"));
        }
        Dest::new(host, auth.port_u16().unwrap_or(443))
            .map_err(|e| format!("invalid upstream URL {s:?}: {e}"))
    }

    /// `https://` this upstream, with the request's path and query.
    pub fn uri(&self, pq: PathAndQuery) -> Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTPS);
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(pq);
        // Scheme, authority and path are all there: this cannot fail.
        Uri::from_parts(parts).unwrap_or_default()
    }
}

/// What the routing rule needs: the allow-list, the upstream, the tunnel list and whether
/// CONNECT is intercepted.
#[derive(Debug, Clone, Default)]
pub struct Routing {
    /// Hosts forward mode (and interception) may reach.
    pub allow: Vec<HostPattern>,
    /// Where origin-form requests go.
    pub upstream: Option<Arc<Dest>>,
    /// Hosts CONNECT may reach as a plain byte tunnel.
    pub tunnel: Vec<HostPattern>,
    /// CONNECT to an allowed host is intercepted (`--intercept-ca`).
    pub intercept: bool,
}

impl Routing {
    /// Whether requests may reach `host:port`: the upstream, or a host in the allow-list.
    fn permits(&self, host: &str, port: u16) -> bool {
        self.upstream
            .as_ref()
            .is_some_and(|u| u.host == host && u.port == port)
            || self.allow.iter().any(|p| p.matches(host, port))
    }

    /// The upstream for `host:port` if requests may reach it ([`Routing::permits`]).
    fn allows(&self, host: &str, port: u16) -> Option<Arc<Dest>> {
        if let Some(up) = self
            .upstream
            .as_ref()
            .filter(|u| u.host == host && u.port == port)
        {
            return Some(Arc::clone(up));
        }
        if !self.allow.iter().any(|p| p.matches(host, port)) {
            return None;
        }
        Dest::new(host.to_string(), port).ok().map(Arc::new)
    }
}

/// The routing decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Send it to this `https://` URI.
    Forward {
        /// The upstream URI (scheme `https`, the request's path and query).
        uri: Uri,
        /// The upstream.
        dest: Arc<Dest>,
    },
    /// `CONNECT` to an allowed host: answer 200, accept the app's TLS with a leaf from the
    /// local CA, and send the requests inside to this upstream as [`Route::Forward`] does.
    Intercept {
        /// The upstream.
        dest: Arc<Dest>,
    },
    /// `CONNECT` to a `--tunnel` host: answer 200 and relay bytes, nothing intercepted.
    Tunnel {
        /// Where the tunnel goes.
        dest: Arc<Dest>,
    },
    /// Answer it here with this status and explanation; nothing is connected.
    Refuse {
        /// 400, 403, 405 or 421.
        status: StatusCode,
        /// Why, in words for the app's developer.
        reason: String,
    },
}

fn refuse(status: StatusCode, reason: impl Into<String>) -> Route {
    Route::Refuse {
        status,
        reason: reason.into(),
    }
}

/// Lowercase, without IPv6 brackets or a trailing dot.
fn normalize_host(h: &str) -> String {
    h.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// `host[:port]` for a URI (IPv6 in brackets), the port left out when it is 443.
pub fn authority(host: &str, port: u16) -> String {
    let h = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    if port == 443 {
        h
    } else {
        format!("{h}:{port}")
    }
}

fn forward(dest: Arc<Dest>, pq: Option<&PathAndQuery>) -> Route {
    let pq = pq
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Route::Forward {
        uri: dest.uri(pq),
        dest,
    }
}

/// Decides where a request goes.
///
/// | request | decision |
/// |---|---|
/// | `CONNECT h:p`, `h:p` allowed, `--intercept-ca` given | intercept, then `https://h:p` |
/// | `CONNECT h:p`, `h:p` in `--tunnel` (and not intercepted) | a byte tunnel to `h:p` |
/// | `CONNECT h:p`, allowed, no `--intercept-ca` | 405: how to turn interception on |
/// | `CONNECT h:p`, neither allowed nor a tunnel | 403, nothing connected |
/// | `CONNECT h` (no port) | 400 |
/// | `http://h[:p]/x` or `https://h[:p]/x`, `h:p` allowed | `https://h:p/x` (port 443 by default) |
/// | the same, not allowed | 403, nothing connected |
/// | another scheme, or no host | 400 |
/// | `/x` with an upstream | `https://upstream/x` |
/// | `/x` without one, or `*` | 400 |
pub fn decide(routing: &Routing, method: &Method, uri: &Uri) -> Route {
    if method == Method::CONNECT {
        return connect(routing, uri);
    }
    match uri.scheme_str() {
        Some("http") | Some("https") => absolute(routing, uri),
        Some(other) => refuse(
            StatusCode::BAD_REQUEST,
            format!("unsupported scheme {other:?}: send http:// URLs through this proxy"),
        ),
        None => origin(routing, uri),
    }
}

/// The host (normalised) and port of a request target's authority, if it has a host.
fn host_port(auth: &Authority) -> Option<(String, Option<u16>)> {
    let host = normalize_host(auth.host());
    (!host.is_empty()).then(|| (host, auth.port_u16()))
}

fn connect(routing: &Routing, uri: &Uri) -> Route {
    let Some((host, port)) = uri.authority().and_then(host_port) else {
        return refuse(StatusCode::BAD_REQUEST, "CONNECT needs a target HOST:PORT");
    };
    let Some(port) = port else {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("CONNECT needs a port: {host}:443"),
        );
    };
    let allowed = routing.allows(&host, port);
    if let Some(dest) = allowed.clone().filter(|_| routing.intercept) {
        return Route::Intercept { dest };
    }
    if routing.tunnel.iter().any(|p| p.matches(&host, port)) {
        return match Dest::new(host, port) {
            Ok(dest) => Route::Tunnel {
                dest: Arc::new(dest),
            },
            Err(e) => refuse(StatusCode::BAD_REQUEST, e),
        };
    }
    let target = authority(&host, port);
    if allowed.is_some() {
        return refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "CONNECT to {target} is not intercepted: start the proxy with --intercept-ca DIR \
                 (made by `tls-fallback proxy ca init`) so that apps keep their https:// URLs, \
                 or send http:// URLs through it (curl -x ... http://{target}/path) and it \
                 connects with https://"
            ),
        );
    }
    refuse(
        StatusCode::FORBIDDEN,
        format!("{target} is in neither this proxy's allow-list (--allow) nor its --tunnel list"),
    )
}

fn absolute(routing: &Routing, uri: &Uri) -> Route {
    let Some((host, port)) = uri.authority().and_then(host_port) else {
        return refuse(StatusCode::BAD_REQUEST, "the request URI has no host");
    };
    let port = port.unwrap_or(443);
    match routing.allows(&host, port) {
        Some(dest) => forward(dest, uri.path_and_query()),
        None if Dest::new(host.clone(), port).is_err() => refuse(
            StatusCode::BAD_REQUEST,
            format!("invalid host {host:?} in the request URI"),
        ),
        None => refuse(
            StatusCode::FORBIDDEN,
            format!(
                "{} is not in this proxy's allow-list (--allow)",
                authority(&host, port)
            ),
        ),
    }
}

/// Decides where a request inside an intercepted `CONNECT` to `dest` goes: always to `dest`,
/// if the running configuration still allows it (a reload applies to open tunnels too).
///
/// | request inside the tunnel | decision |
/// |---|---|
/// | interception turned off, or `dest` no longer allowed, by a reload | 403 |
/// | `CONNECT` | 405 |
/// | `/x`, `Host` absent or naming `dest` (any port, or its own) | `https://dest/x` |
/// | `https://dest/x` (absolute form) | `https://dest/x` |
/// | a `Host` or an absolute URI naming another host or port | 421 Misdirected Request |
/// | `*`, another form | 400 |
pub fn inside(
    routing: &Routing,
    dest: &Arc<Dest>,
    method: &Method,
    uri: &Uri,
    host_header: Option<&HeaderValue>,
) -> Route {
    let here = authority(&dest.host, dest.port);
    if !routing.intercept {
        return refuse(
            StatusCode::FORBIDDEN,
            format!("interception was turned off by a reload: reconnect to reach {here}"),
        );
    }
    if !routing.permits(&dest.host, dest.port) {
        return refuse(
            StatusCode::FORBIDDEN,
            format!("{here} is no longer in this proxy's allow-list (--allow)"),
        );
    }
    if method == Method::CONNECT {
        return refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT inside an intercepted CONNECT is not supported",
        );
    }
    let names_dest = |auth: &Authority| {
        host_port(auth).is_some_and(|(h, p)| h == dest.host && p.is_none_or(|p| p == dest.port))
    };
    let misdirected = || {
        refuse(
            StatusCode::MISDIRECTED_REQUEST,
            format!("this connection was opened (CONNECT) to {here}; open another for other hosts"),
        )
    };
    let host = host_header.map(|v| v.to_str().ok().and_then(|s| s.parse::<Authority>().ok()));
    match host {
        Some(Some(auth)) if !names_dest(&auth) => return misdirected(),
        Some(None) => return refuse(StatusCode::BAD_REQUEST, "the Host header is not a host"),
        _ => {}
    }
    if let Some(auth) = uri.authority() {
        // An absolute URI without a port means its scheme's (443, 80), not the tunnel's.
        let default = if uri.scheme_str() == Some("http") {
            80
        } else {
            443
        };
        let port = auth.port_u16().unwrap_or(default);
        if !names_dest(auth) || port != dest.port {
            return misdirected();
        }
        if !matches!(uri.scheme_str(), Some("https") | Some("http")) {
            return refuse(StatusCode::BAD_REQUEST, "the request URI is not https://");
        }
        return forward(Arc::clone(dest), uri.path_and_query());
    }
    if !uri
        .path_and_query()
        .is_some_and(|p| p.as_str().starts_with('/'))
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the request target must be a path starting with /",
        );
    }
    forward(Arc::clone(dest), uri.path_and_query())
}

fn origin(routing: &Routing, uri: &Uri) -> Route {
    let pq = uri.path_and_query();
    if !pq.is_some_and(|p| p.as_str().starts_with('/')) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the request target must be an absolute http:// URL (forward mode) or a path \
             starting with / (upstream mode)",
        );
    }
    match &routing.upstream {
        Some(u) => forward(Arc::clone(u), pq),
        None => refuse(
            StatusCode::BAD_REQUEST,
            "this proxy has no --upstream: send absolute http:// URLs (use it as an HTTP \
             proxy), or start it with --upstream https://HOST[:PORT] to send paths there",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing(allow: &[&str], upstream: Option<&str>) -> Routing {
        Routing {
            allow: allow.iter().map(|p| p.parse().unwrap()).collect(),
            upstream: upstream.map(|u| Arc::new(Dest::parse(u).unwrap())),
            ..Routing::default()
        }
    }

    fn target(uri: &str) -> Uri {
        // The request target as hyper parses it from the request line.
        uri.parse().unwrap()
    }

    /// (routing, method, request target, Ok(upstream URI) or Err(status)); routings: `fwd`
    /// allows gw.example, *.bank.example, h:8443 and [::1]; `up` has the upstream
    /// https://up.example:9443 and no allow-list; `both` allows gw.example, upstream up.example.
    #[rustfmt::skip]
    const ROWS: &[(&str, &str, &str, Result<&str, u16>)] = &[
        ("fwd", "GET", "http://gw.example/pay?x=1", Ok("https://gw.example/pay?x=1")),
        ("fwd", "POST", "http://GW.Example./pay", Ok("https://gw.example/pay")),
        ("fwd", "GET", "http://gw.example", Ok("https://gw.example/")),
        ("fwd", "GET", "https://gw.example/a", Ok("https://gw.example/a")),
        ("fwd", "GET", "http://eu.bank.example/", Ok("https://eu.bank.example/")),
        ("fwd", "GET", "http://bank.example/", Err(403)),
        ("fwd", "GET", "http://h:8443/x", Ok("https://h:8443/x")),
        ("fwd", "GET", "http://h/x", Err(403)),
        ("fwd", "GET", "http://h:9443/x", Err(403)),
        ("fwd", "GET", "http://gw.example:8443/", Ok("https://gw.example:8443/")),
        ("fwd", "GET", "http://[::1]/", Ok("https://[::1]/")),
        ("fwd", "GET", "http://user@gw.example/", Ok("https://gw.example/")),
        ("fwd", "GET", "http://evil.example/", Err(403)),
        ("fwd", "GET", "ftp://gw.example/", Err(400)),
        ("fwd", "GET", "/pay", Err(400)),
        ("fwd", "OPTIONS", "*", Err(400)),
        ("fwd", "CONNECT", "gw.example:443", Err(405)),
        ("fwd", "CONNECT", "evil.example:443", Err(403)),
        ("fwd", "CONNECT", "gw.example", Err(400)),
        ("up", "GET", "/pay?a=b", Ok("https://up.example:9443/pay?a=b")),
        ("up", "GET", "/", Ok("https://up.example:9443/")),
        ("up", "GET", "http://up.example:9443/x", Ok("https://up.example:9443/x")),
        ("up", "GET", "http://up.example/x", Err(403)),
        ("up", "GET", "http://other.example/", Err(403)),
        ("up", "CONNECT", "up.example:9443", Err(405)),
        ("both", "GET", "/x", Ok("https://up.example/x")),
        ("both", "GET", "http://gw.example/y", Ok("https://gw.example/y")),
    ];

    #[test]
    fn decisions_by_request_line() {
        let fwd = routing(&["gw.example", "*.bank.example", "h:8443", "[::1]"], None);
        let up = routing(&[], Some("https://up.example:9443"));
        let both = routing(&["gw.example"], Some("https://up.example"));
        for (name, method, t, want) in ROWS {
            let r = match *name {
                "fwd" => &fwd,
                "up" => &up,
                _ => &both,
            };
            let got = decide(
                r,
                &Method::from_bytes(method.as_bytes()).unwrap(),
                &target(t),
            );
            match (&got, want) {
                (Route::Forward { uri, .. }, Ok(w)) => {
                    assert_eq!(uri.to_string(), *w, "{method} {t}")
                }
                (Route::Refuse { status, .. }, Err(w)) => {
                    assert_eq!(status.as_u16(), *w, "{method} {t}: {got:?}")
                }
                _ => panic!("{method} {t}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn forward_reports_host_and_port_used_for_the_allow_check() {
        let r = routing(&["gw.example"], None);
        let got = decide(&r, &Method::GET, &target("http://GW.example/"));
        let Route::Forward { uri, dest } = got else {
            panic!("{got:?}");
        };
        assert_eq!(uri, target("https://gw.example/"));
        assert_eq!((dest.host.as_str(), dest.port), ("gw.example", 443));
        assert_eq!(dest.authority.as_str(), "gw.example");
        assert_eq!(dest.host_header, "gw.example");
    }

    #[test]
    fn refusals_say_what_to_do() {
        let r = routing(&["gw.example"], None);
        let reason = |m: Method, t: &str| match decide(&r, &m, &target(t)) {
            Route::Refuse { reason, .. } => reason,
            other => panic!("{other:?}"),
        };
        assert!(reason(Method::CONNECT, "gw.example:443").contains("http://"));
        assert!(reason(Method::GET, "http://x.example/").contains("x.example"));
        assert!(reason(Method::GET, "/a").contains("--upstream"));
    }

    /// (allowed, tunnel, intercept, CONNECT target) -> the route's kind or refusal status.
    #[test]
    fn connect_by_allow_tunnel_and_interception() {
        #[rustfmt::skip]
        let rows: &[(bool, &str, Result<&str, u16>)] = &[
            (true, "gw.example:443", Ok("intercept gw.example")),
            (true, "gw.example:8443", Ok("intercept gw.example:8443")),
            (true, "up.example:9443", Ok("intercept up.example:9443")),
            (true, "cdn.example:443", Ok("tunnel cdn.example")),
            (true, "evil.example:443", Err(403)),
            (true, "gw.example", Err(400)),
            (true, "[::1]:443", Err(403)),
            (false, "gw.example:443", Err(405)),
            (false, "cdn.example:443", Ok("tunnel cdn.example")),
            (false, "evil.example:443", Err(403)),
        ];
        for (intercept, t, want) in rows {
            let mut r = routing(&["gw.example"], Some("https://up.example:9443"));
            r.tunnel = vec!["cdn.example".parse().unwrap()];
            r.intercept = *intercept;
            let got = decide(&r, &Method::CONNECT, &target(t));
            let got = match &got {
                Route::Intercept { dest } => Ok(format!("intercept {}", dest.authority)),
                Route::Tunnel { dest } => Ok(format!("tunnel {}", dest.authority)),
                Route::Refuse { status, .. } => Err(status.as_u16()),
                Route::Forward { .. } => panic!("{t}: {got:?}"),
            };
            assert_eq!(
                got,
                want.map(str::to_string),
                "intercept={intercept} CONNECT {t}"
            );
        }
        let r = routing(&["gw.example"], None);
        let Route::Refuse { reason, .. } = decide(&r, &Method::CONNECT, &target("gw.example:443"))
        else {
            panic!()
        };
        assert!(reason.contains("--intercept-ca"), "{reason}");
    }

    /// (method, target, Host header, the upstream URI or the refusal's status).
    type InsideRow<'a> = (&'a str, &'a str, Option<&'a str>, Result<&'a str, u16>);

    /// Requests inside an intercepted CONNECT to gw.example:8443.
    #[test]
    fn requests_inside_an_intercepted_connect_go_to_its_host_only() {
        #[rustfmt::skip]
        let rows: &[InsideRow] = &[
            ("GET", "/pay?a=1", Some("gw.example:8443"), Ok("https://gw.example:8443/pay?a=1")),
            ("POST", "/pay", Some("GW.example"), Ok("https://gw.example:8443/pay")),
            ("GET", "/pay", None, Ok("https://gw.example:8443/pay")),
            ("GET", "https://gw.example:8443/x", None, Ok("https://gw.example:8443/x")),
            ("GET", "https://gw.example/x", None, Err(421)),
            ("GET", "/pay", Some("bank.example"), Err(421)),
            ("GET", "/pay", Some("gw.example:443"), Err(421)),
            ("GET", "https://bank.example/x", None, Err(421)),
            ("GET", "/pay", Some("a b"), Err(400)),
            ("OPTIONS", "*", None, Err(400)),
            ("CONNECT", "gw.example:8443", None, Err(405)),
        ];
        let mut r = routing(&["gw.example"], None);
        r.intercept = true;
        let dest = Arc::new(Dest::new("gw.example".into(), 8443).unwrap());
        for (method, t, host, want) in rows {
            let host = host.map(|h| HeaderValue::from_str(h).unwrap());
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            let got = match inside(&r, &dest, &m, &target(t), host.as_ref()) {
                Route::Forward { uri, .. } => Ok(uri.to_string()),
                Route::Refuse { status, .. } => Err(status.as_u16()),
                other => panic!("{method} {t}: {other:?}"),
            };
            assert_eq!(got, want.map(str::to_string), "{method} {t} Host {host:?}");
        }
        // A reload that removes the host, or turns interception off, applies inside too.
        let gone = routing(&["other.example"], None);
        let off = routing(&["gw.example"], None);
        for r in [&gone, &off] {
            let mut r = r.clone();
            r.intercept = r.allow[0].to_string() != "gw.example";
            match inside(&r, &dest, &Method::GET, &target("/"), None) {
                Route::Refuse { status, .. } => assert_eq!(status, StatusCode::FORBIDDEN),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn upstream_urls() {
        type Want<'a> = Result<(&'a str, u16), &'a str>;
        let rows: &[(&str, Want)] = &[
            ("https://gw.example", Ok(("gw.example", 443))),
            ("https://gw.example/", Ok(("gw.example", 443))),
            ("https://GW.example:8443", Ok(("gw.example", 8443))),
            ("https://[::1]:8443", Ok(("::1", 8443))),
            ("http://gw.example", Err("https://")),
            ("https://gw.example/api", Err("no path")),
            ("https://u:p@gw.example", Err("user information")),
            ("gw.example", Err("https://")),
            ("https://", Err("invalid upstream URL")),
        ];
        for (s, want) in rows {
            match (Dest::parse(s), want) {
                (Ok(u), Ok((h, p))) => assert_eq!((u.host.as_str(), u.port), (*h, *p), "{s}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{s}: {e}"),
                (got, _) => panic!("{s}: {got:?}"),
            }
        }
    }
}
