//! What the probe is pointed at: `HOST`, `HOST:PORT`, `[v6]:PORT` or an `https://` URL, parsed
//! into a host and a port, with errors that say what is wrong and what is expected.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

/// What every target error ends with.
const EXPECTED: &str = "expected HOST[:PORT] or https://HOST[:PORT]/";

/// A probe target: a host name or IP address and a port (443 unless given).
///
/// ```
/// use tls_fallback::probe::Target;
///
/// let t: Target = "https://pay.example:8443/health".parse()?;
/// assert_eq!((t.host(), t.port()), ("pay.example", 8443));
/// assert_eq!(Target::parse("[::1]")?.to_string(), "[::1]:443");
/// let err = Target::parse("localhost:99999").unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "port 99999 is out of range 1-65535; expected HOST[:PORT] or https://HOST[:PORT]/"
/// );
/// # Ok::<(), tls_fallback::probe::TargetError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    host: String,
    port: u16,
}

/// Why a string is not a probe target; `Display` says what is wrong and what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}; {EXPECTED}")]
pub struct TargetError {
    problem: String,
}

impl TargetError {
    fn new(problem: impl Into<String>) -> Self {
        TargetError {
            problem: problem.into(),
        }
    }

    /// What is wrong, without the "expected ..." part.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

impl Target {
    /// Parses `HOST`, `HOST:PORT`, `[v6]`, `[v6]:PORT` or `https://HOST[:PORT][/path]` (the path,
    /// query and fragment are ignored).
    pub fn parse(input: &str) -> Result<Target, TargetError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(TargetError::new("the target is empty"));
        }
        let authority = strip_scheme(s)?;
        let (host, port) = split_host_port(authority)?;
        check_host(host)?;
        let port = match port {
            None => 443,
            Some(p) => parse_port(p)?,
        };
        Ok(Target {
            host: host.to_string(),
            port,
        })
    }

    /// The host name or IP address, without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host for a URI or an address: IPv6 literals in brackets.
    pub fn host_for_uri(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// The SNI for this host: the name, lower-cased, without a trailing dot; `None` for an IP
    /// literal (SNI carries names only).
    pub fn default_sni(&self) -> Option<String> {
        if self.host.parse::<IpAddr>().is_ok() {
            return None;
        }
        let name = self.host.strip_suffix('.').unwrap_or(&self.host);
        (!name.is_empty()).then(|| name.to_ascii_lowercase())
    }
}

impl FromStr for Target {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Target::parse(s)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host_for_uri(), self.port)
    }
}

/// The authority part: after `https://` and before any path, query or fragment.
fn strip_scheme(s: &str) -> Result<&str, TargetError> {
    let Some((scheme, rest)) = s.split_once("://") else {
        if s.contains('/') {
            return Err(TargetError::new(format!(
                "{s:?} has a path but no scheme (write https://{s})"
            )));
        }
        return Ok(s);
    };
    if !scheme.eq_ignore_ascii_case("https") {
        return Err(TargetError::new(format!(
            "scheme {scheme:?} is not probed (the probe speaks TLS: use https://)"
        )));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.contains('@') {
        return Err(TargetError::new(
            "a user name in the URL is not supported (remove the part before '@')",
        ));
    }
    Ok(authority)
}

/// Splits `host[:port]` / `[v6][:port]`; the port is returned unparsed.
fn split_host_port(s: &str) -> Result<(&str, Option<&str>), TargetError> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| TargetError::new(format!("{s:?} has '[' but no closing ']'")))?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(TargetError::new(format!(
                "{host:?} in brackets is not an IPv6 address"
            )));
        }
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(TargetError::new(format!(
                    "{after:?} after ']' should be ':PORT'"
                ))),
            },
        };
    }
    match s.split_once(':') {
        None => Ok((s, None)),
        Some((_, rest)) if rest.contains(':') => {
            let hint = if s.parse::<Ipv6Addr>().is_ok() {
                format!("[{s}]")
            } else {
                "[ADDRESS]:PORT".to_string()
            };
            Err(TargetError::new(format!(
                "{s:?} has more than one ':' (an IPv6 address goes in brackets: {hint})"
            )))
        }
        Some((host, port)) => Ok((host, Some(port))),
    }
}

fn check_host(host: &str) -> Result<(), TargetError> {
    if host.is_empty() {
        return Err(TargetError::new("the host is missing"));
    }
    if let Some(c) = host
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "/\\?#@[]<>\"'`".contains(*c))
    {
        return Err(TargetError::new(format!(
            "the host {host:?} contains {c:?}, which no host name does"
        )));
    }
    Ok(())
}

fn parse_port(p: &str) -> Result<u16, TargetError> {
    if p.is_empty() {
        return Err(TargetError::new("the port is missing after ':'"));
    }
    if !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TargetError::new(format!("port {p:?} is not a number")));
    }
    match p.parse::<u32>() {
        Ok(n @ 1..=65535) => Ok(n as u16),
        _ => Err(TargetError::new(format!(
            "port {p} is out of range 1-65535"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_targets_give_host_port_and_sni() {
        let rows: [(&str, &str, u16, Option<&str>); 11] = [
            ("example.com", "example.com", 443, Some("example.com")),
            ("example.com:8443", "example.com", 8443, Some("example.com")),
            ("Example.COM.:443", "Example.COM.", 443, Some("example.com")),
            ("127.0.0.1:8443", "127.0.0.1", 8443, None),
            ("[::1]:443", "::1", 443, None),
            ("[::1]", "::1", 443, None),
            ("https://h:8443/path", "h", 8443, Some("h")),
            ("https://h", "h", 443, Some("h")),
            ("HTTPS://h/?q=1#x", "h", 443, Some("h")),
            ("https://[2001:db8::1]:9443/", "2001:db8::1", 9443, None),
            ("  localhost:1  ", "localhost", 1, Some("localhost")),
        ];
        for (input, host, port, sni) in rows {
            let t = Target::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!((t.host(), t.port()), (host, port), "{input}");
            assert_eq!(t.default_sni().as_deref(), sni, "{input}");
        }
        assert_eq!(
            Target::parse("[::1]:8443").unwrap().to_string(),
            "[::1]:8443"
        );
    }

    #[test]
    fn bad_targets_say_what_is_wrong_and_what_is_expected() {
        let rows = [
            ("localhost:99999", "port 99999 is out of range 1-65535"),
            ("a:0", "port 0 is out of range 1-65535"),
            ("a:https", "port \"https\" is not a number"),
            ("a:-1", "port \"-1\" is not a number"),
            ("a:", "the port is missing after ':'"),
            (":443", "the host is missing"),
            ("", "the target is empty"),
            ("https://", "the host is missing"),
            ("https://:443/", "the host is missing"),
            (
                "::1",
                "\"::1\" has more than one ':' (an IPv6 address goes in brackets: [::1])",
            ),
            ("::::", "\"::::\" has more than one ':'"),
            ("::1:443", "has more than one ':'"),
            ("[::1]443", "\"443\" after ']' should be ':PORT'"),
            ("[::1:443", "has '[' but no closing ']'"),
            ("[x]:1", "\"x\" in brackets is not an IPv6 address"),
            ("http://h/", "scheme \"http\" is not probed"),
            ("ftp://h/", "scheme \"ftp\" is not probed"),
            (
                "localhost:8443/health",
                "has a path but no scheme (write https://localhost:8443/health)",
            ),
            ("https://user@h/", "a user name in the URL is not supported"),
            ("a b:443", "the host \"a b\" contains ' '"),
        ];
        for (input, problem) in rows {
            let err = Target::parse(input).expect_err(input);
            let text = err.to_string();
            assert!(text.contains(problem), "{input}: {text}");
            assert!(text.ends_with(EXPECTED), "{input}: {text}");
        }
        assert_eq!(
            Target::parse("localhost:99999").unwrap_err().to_string(),
            "port 99999 is out of range 1-65535; expected HOST[:PORT] or https://HOST[:PORT]/"
        );
    }
}
