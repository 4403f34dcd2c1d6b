//! The outbound proxy's URL: `http://`, `socks5://` or `socks5h://`, with optional
//! percent-encoded credentials. hyper-util's `Matcher` reads the URL (percent-decoding, the Basic
//! header, SOCKS credentials), but it silently ignores a URL it cannot use and takes what it can
//! of one it half understands (`http://u:p@ss@host` gives the password `p`, a path is dropped,
//! socks4 and https are proxies to it): this module checks a flag's URL first, so that a mistake
//! is an error that says what is wrong, and hands Matcher one spelling it reads as meant. The
//! password never leaves except to be sent to the proxy (`Display`, `Debug` and every error go
//! through `crate::redact::url`: `user:***`).

use std::fmt;

use http::uri::{Authority, Uri};
use hyper_util::client::proxy::matcher::{Intercept, Matcher};

use crate::redact::url as redact;

/// The kind of outbound proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `http://`: an HTTP CONNECT proxy.
    Http,
    /// `socks5://`: SOCKS5, names resolved here (curl's convention).
    Socks5,
    /// `socks5h://`: SOCKS5, names resolved by the proxy.
    Socks5h,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Socks5 => "socks5",
            Scheme::Socks5h => "socks5h",
        }
    }

    /// The port when the URL gives none: 80 for HTTP, 1080 (SOCKS's own) for SOCKS5. Written
    /// out for Matcher, whose proxy URI would otherwise be dialled on 80 for SOCKS too.
    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Socks5 | Scheme::Socks5h => 1080,
        }
    }
}

/// A user name and password, percent-decoded (by hyper-util's Matcher). `Debug` hides the
/// password, and the user name too when there is no password (it may be a key).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password (possibly empty).
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user: &dyn fmt::Debug = if self.password.is_empty() {
            &"***"
        } else {
            &self.user
        };
        f.debug_struct("Credentials")
            .field("user", user)
            .field("password", &"***")
            .finish()
    }
}

/// A checked proxy URL, one hyper-util's Matcher reads as written. `Display` and `Debug` show
/// `scheme://user:***@host:port` (`scheme://***@host:port` when there is a user name but no
/// password), the user name as written in the URL.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    scheme: Scheme,
    /// `scheme://[USERINFO@]HOST:PORT`, what Matcher is given: it holds the password, so it
    /// is only ever shown through `redact`.
    text: String,
    credentials: Option<Credentials>,
}

/// What a refused URL should have looked like.
const EXPECTED: &str = "expected http://HOST:PORT (an HTTP CONNECT proxy), socks5://HOST:PORT \
                        or socks5h://HOST:PORT (SOCKS5), optionally with USER:PASSWORD@";

impl ProxyUrl {
    /// Parses `SCHEME://[USER[:PASSWORD]@]HOST[:PORT][/]`, SCHEME one of `http`, `socks5`,
    /// `socks5h`. `/ ? # @ : %` in a user name or password are percent-encoded.
    pub fn parse(s: &str) -> Result<ProxyUrl, String> {
        let bad = |why: &str| format!("invalid proxy URL {:?}: {why}", redact(s));
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(bad(EXPECTED));
        };
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "socks5" => Scheme::Socks5,
            "socks5h" => Scheme::Socks5h,
            _ => return Err(bad(EXPECTED)),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if !tail.is_empty() && tail != "/" {
            return Err(bad(
                "it must have no path (percent-encode / ? # in a password)",
            ));
        }
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some(("", _)) => return Err(bad("nothing before '@' (expected USER:PASSWORD@)")),
            // The last '@' ends the credentials; Matcher splits at the first: an '@' left in
            // a password is spelled out for it.
            Some((userinfo, hp)) => (Some(userinfo.replace('@', "%40")), hp),
            None => (None, authority),
        };
        let (host, port) = host_port_of(host_port, scheme).map_err(&bad)?;
        let text = match &userinfo {
            Some(u) => format!("{}://{u}@{host}:{port}", scheme.as_str()),
            None => format!("{}://{host}:{port}", scheme.as_str()),
        };
        let unread = "hyper-util cannot read it: percent-encode the characters of the user name \
                      or password that a URL does not allow";
        if matched(&text).is_none() {
            return Err(bad(unread));
        }
        let credentials = match &userinfo {
            Some(u) => Some(credentials(u, &host, port, scheme).map_err(|e| bad(&e))?),
            None => None,
        };
        Ok(ProxyUrl {
            scheme,
            text,
            credentials,
        })
    }

    /// The kind of proxy.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The credentials, if the URL had some.
    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// The URL for hyper-util's Matcher (it holds the password: never to be shown).
    pub(super) fn matcher_input(&self) -> &str {
        &self.text
    }
}

/// `HOST[:PORT]`, checked: a host, and a port from 1 to 65535 (the scheme's when none).
fn host_port_of(host_port: &str, scheme: Scheme) -> Result<(String, u16), &'static str> {
    let auth: Authority = host_port
        .parse()
        .map_err(|_| "expected HOST or HOST:PORT after the scheme (and credentials)")?;
    if auth.host().is_empty() {
        return Err("it has no host");
    }
    // `Authority` takes `:99999` and then has no port: read the text after the host.
    let port_text = host_port
        .get(auth.host().len()..)
        .and_then(|rest| rest.strip_prefix(':'));
    let port = match port_text.filter(|p| !p.is_empty()) {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or("the port must be a number from 1 to 65535")?,
        None => scheme.default_port(),
    };
    Ok((auth.host().to_string(), port))
}

/// What Matcher makes of a proxy URL for an HTTPS destination (no `NO_PROXY`).
fn matched(proxy: &str) -> Option<Intercept> {
    let probe = Uri::from_static("https://probe.invalid/");
    Matcher::builder().https(proxy).build().intercept(&probe)
}

/// `USER[:PASSWORD]`, percent-decoded by Matcher. It hands an HTTP proxy's credentials over
/// only as the Basic header, a SOCKS proxy's as they are: read through a `socks5h://` URL.
fn credentials(
    userinfo: &str,
    host: &str,
    port: u16,
    scheme: Scheme,
) -> Result<Credentials, String> {
    let read = matched(&format!("socks5h://{userinfo}@{host}:{port}"));
    let Some((user, password)) = read.as_ref().and_then(Intercept::raw_auth) else {
        return Err("hyper-util cannot read the credentials".to_string());
    };
    let (raw_user, raw_password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    // Matcher decodes lossily (bytes that are not UTF-8 become U+FFFD, and would be sent as
    // such): each part must decode whole.
    let utf8 = |raw: &str| {
        percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .is_ok()
    };
    if !utf8(raw_user) {
        return Err("the user name is not UTF-8 once percent-decoded".to_string());
    }
    if !utf8(raw_password) {
        return Err("the password is not UTF-8 once percent-decoded".to_string());
    }
    // A SOCKS5 user/password request carries each in one length byte (RFC 1929).
    if scheme != Scheme::Http && (user.len() > 255 || password.len() > 255) {
        return Err("a SOCKS5 user name or password is at most 255 bytes".to_string());
    }
    Ok(Credentials {
        user: user.to_string(),
        password: password.to_string(),
    })
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A user name alone is how some providers pass an API key: `redact` hides it too.
        f.write_str(&redact(&self.text))
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

#[cfg(test)]
mod tests;
