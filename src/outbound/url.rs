//! The outbound proxy's URL: `http://`, `socks5://` or `socks5h://`, with optional
//! percent-encoded credentials. Pure parsing and display; the password never leaves this
//! module except to be sent to the proxy (`Display`, `Debug` and every error show `user:***`).

use std::fmt;

use base64::Engine as _;
use http::header::HeaderValue;
use http::uri::{Authority, Uri};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

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

    /// The port when the URL gives none: 80 for HTTP, 1080 (SOCKS's own) for SOCKS5.
    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Socks5 | Scheme::Socks5h => 1080,
        }
    }
}

/// A user name and password, percent-decoded. `Debug` hides the password.
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

/// A checked proxy URL. `Display` and `Debug` show `scheme://user:***@host:port`
/// (`scheme://***@host:port` when there is a user name but no password).
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    scheme: Scheme,
    /// As in a URI: an IPv6 address keeps its brackets.
    host: String,
    port: u16,
    credentials: Option<Credentials>,
}

/// What `Display` percent-encodes in a user name (so a shown name is one token on one line).
const SHOWN_USER: &AsciiSet = &CONTROLS.add(b' ').add(b':').add(b'@').add(b'/').add(b'%');

impl ProxyUrl {
    /// Parses `SCHEME://[USER[:PASSWORD]@]HOST[:PORT][/]`, SCHEME one of `http`, `socks5`,
    /// `socks5h`. `/ ? # @ : %` in a user name or password are percent-encoded.
    pub fn parse(s: &str) -> Result<ProxyUrl, String> {
        let bad = |why: &str| format!("invalid proxy URL {:?}: {why}", redact(s));
        let expected = "expected http://HOST:PORT (an HTTP CONNECT proxy), socks5://HOST:PORT \
                        or socks5h://HOST:PORT (SOCKS5), optionally with USER:PASSWORD@";
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(bad(expected));
        };
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "socks5" => Scheme::Socks5,
            "socks5h" => Scheme::Socks5h,
            _ => return Err(bad(expected)),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if !tail.is_empty() && tail != "/" {
            return Err(bad(
                "it must have no path (percent-encode / ? # in a password)",
            ));
        }
        let (credentials, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, hp)) => (
                Some(credentials(userinfo, scheme).map_err(|e| bad(&e))?),
                hp,
            ),
            None => (None, authority),
        };
        let auth: Authority = host_port
            .parse()
            .map_err(|_| bad("expected HOST or HOST:PORT after the scheme (and credentials)"))?;
        if auth.host().is_empty() {
            return Err(bad("it has no host"));
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
                .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?,
            None => scheme.default_port(),
        };
        Ok(ProxyUrl {
            scheme,
            host: auth.host().to_string(),
            port,
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

    /// Where the TCP connection to the proxy goes: `http://HOST:PORT`.
    pub fn connect_uri(&self) -> Uri {
        // Host and port were checked by `parse`: this cannot fail; the fallback only keeps
        // the type total.
        format!("http://{}:{}", self.host, self.port)
            .parse()
            .unwrap_or_default()
    }

    /// `Proxy-Authorization: Basic ...` for a CONNECT, if the URL had credentials.
    pub fn basic_auth(&self) -> Option<HeaderValue> {
        let c = self.credentials.as_ref()?;
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.user, c.password));
        let mut value = HeaderValue::from_str(&format!("Basic {token}")).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

/// `USER[:PASSWORD]`, percent-decoded.
fn credentials(userinfo: &str, scheme: Scheme) -> Result<Credentials, String> {
    if userinfo.is_empty() {
        return Err("nothing before '@' (expected USER:PASSWORD@)".to_string());
    }
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let decode = |part: &str, what: &str| {
        percent_decode_str(part)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| format!("the {what} is not UTF-8 once percent-decoded"))
    };
    let c = Credentials {
        user: decode(user, "user name")?,
        password: decode(password, "password")?,
    };
    // A SOCKS5 user/password request carries each in one length byte (RFC 1929).
    if scheme != Scheme::Http && (c.user.len() > 255 || c.password.len() > 255) {
        return Err("a SOCKS5 user name or password is at most 255 bytes".to_string());
    }
    Ok(c)
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.as_str())?;
        match &self.credentials {
            // A user name alone is how some providers pass an API key: hidden too.
            Some(c) if c.password.is_empty() => f.write_str("***@")?,
            Some(c) => write!(f, "{}:***@", utf8_percent_encode(&c.user, SHOWN_USER))?,
            None => {}
        }
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

use crate::redact::url as redact;

#[cfg(test)]
mod tests;
