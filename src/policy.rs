//! What the policy allows: host keys, host patterns, pins, the floor and the legacy gate.
//!
//! The policy never changes after the connector is built. It answers three questions per host:
//! is it pinned (one attempt, that profile), may it go below TLS 1.2 (legacy gate), and which
//! rungs of the ladder are therefore usable.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::profile::{Profile, TlsVersion};

/// A host and port: the key of pins, of the legacy gate, of the decision cache and of the
/// session cache, and the name the handshake sends (SNI) and checks the certificate against.
///
/// Every spelling of one host gives one key: names are lower-cased and lose a trailing dot,
/// IP literals are parsed and printed canonically (IPv6 per RFC 5952, without brackets), so
/// `[::1]`, `[0:0::1]` and `[0000::0001]` are one host, and `Api.Example.com.` is
/// `api.example.com`. An IPv4-mapped IPv6 address (`[::ffff:127.0.0.1]`) is an IPv6 host, not
/// the IPv4 one: pins and legacy patterns name it as such.
///
/// ```
/// use tls_fallback::HostKey;
/// assert_eq!(HostKey::new("[0000::0001]", 443), HostKey::new("::1", 443));
/// assert_eq!(HostKey::new("Localhost.", 443).host(), "localhost");
/// assert!(HostKey::new("[::1]", 443).ip().is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "HostKeyParts")]
pub struct HostKey {
    /// The normalised host: a lower-case name without a trailing dot, or a canonical IP literal
    /// (IPv6 without brackets). Build keys with [`HostKey::new`] or [`HostKey::from_uri`],
    /// which normalise; read it with [`HostKey::host`].
    pub host: Arc<str>,
    /// TCP port.
    pub port: u16,
}

/// A key as stored (a decision file, another store): normalised again when read.
#[derive(Deserialize)]
struct HostKeyParts {
    host: String,
    port: u16,
}

impl From<HostKeyParts> for HostKey {
    fn from(p: HostKeyParts) -> Self {
        HostKey::new(&p.host, p.port)
    }
}

/// One spelling of a host: brackets around an IPv6 literal and one trailing dot dropped,
/// lower-cased, an IP literal printed canonically.
fn normalise_host(host: &str) -> String {
    let h = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let h = h.strip_suffix('.').unwrap_or(h);
    match h.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => h.to_ascii_lowercase(),
    }
}

impl HostKey {
    /// A key from a host and a port, normalised (see the type docs).
    pub fn new(host: &str, port: u16) -> Self {
        HostKey {
            host: normalise_host(host).into(),
            port,
        }
    }

    /// The normalised host: what the handshake sends as SNI (for a name) and checks the
    /// certificate against.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The host's address, when it is an IP literal (then no SNI is sent and the certificate
    /// must name the address).
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The key of an `https://` URI (port 443 unless given).
    pub fn from_uri(uri: &Uri) -> Result<Self, Error> {
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Error::InvalidUri {
                uri: uri.to_string(),
                reason: "it has no host".into(),
            })?;
        let port = uri.port_u16().unwrap_or(443);
        Ok(HostKey::new(host, port))
    }
}

impl fmt::Display for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Any,
    Exact(String),
    /// An IP literal: compared as an address, whatever its spelling.
    Ip(IpAddr),
    /// `*.example.com`: any name ending in `.example.com` (not `example.com` itself).
    Suffix(String),
}

/// The host part of a [`HostPattern`] ([`HostPattern::host`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternHost<'a> {
    /// `*`: every host.
    Any,
    /// One name (lowercase).
    Exact(&'a str),
    /// One IP address, whatever its spelling.
    Ip(IpAddr),
    /// `*.example.com`: every name ending in `.example.com` (this holds `example.com`), not
    /// `example.com` itself.
    Suffix(&'a str),
}

/// A host pattern: `api.example.com`, `*.example.com`, either with `:port`, an IP literal
/// (`127.0.0.1`, `[::1]:8443`), or `*` for every host.
///
/// ```
/// use tls_fallback::HostPattern;
/// let p: HostPattern = "*.gateway.example:8443".parse().unwrap();
/// assert!(p.matches("eu.gateway.example", 8443));
/// assert!(!p.matches("eu.gateway.example", 443));
/// assert!("exa mple.com".parse::<HostPattern>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: HostMatch,
    port: Option<u16>,
    text: String,
}

impl HostPattern {
    /// Whether the pattern covers this host and port (any spelling of the host: case, a
    /// trailing dot, brackets, an IP literal's form; see [`HostKey`]).
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let host = host.strip_suffix('.').unwrap_or(host);
        match &self.host {
            HostMatch::Any => true,
            HostMatch::Ip(ip) => host.parse::<IpAddr>().is_ok_and(|h| h == *ip),
            HostMatch::Exact(h) => h.eq_ignore_ascii_case(host),
            HostMatch::Suffix(s) => {
                host.len() > s.len() + 1
                    && host.as_bytes()[host.len() - s.len() - 1] == b'.'
                    && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
            }
        }
    }

    /// The host part of the pattern, for code that must express the same set of hosts in
    /// another form (the proxy's interception CA writes it as X.509 name constraints).
    pub fn host(&self) -> PatternHost<'_> {
        match &self.host {
            HostMatch::Any => PatternHost::Any,
            HostMatch::Exact(h) => PatternHost::Exact(h),
            HostMatch::Ip(ip) => PatternHost::Ip(*ip),
            HostMatch::Suffix(s) => PatternHost::Suffix(s),
        }
    }

    /// The port the pattern is limited to, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    pub(crate) fn matches_key(&self, key: &HostKey) -> bool {
        self.matches(&key.host, key.port)
    }

    /// How specific the pattern is: an exact host with a port beats an exact host, which beats
    /// the longest suffix, which beats `*`.
    pub(crate) fn specificity(&self) -> (u8, usize, bool) {
        let (rank, len) = match &self.host {
            HostMatch::Any => (0, 0),
            HostMatch::Suffix(s) => (1, s.len()),
            HostMatch::Exact(h) => (2, h.len()),
            HostMatch::Ip(_) => (2, 0),
        };
        (rank, len, self.port.is_some())
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a host pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid host pattern {pattern:?}: {reason}")]
pub struct PatternError {
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// Why a URL is not a pattern, with the patterns it probably meant (`https://pay.example/v1`:
/// `"pay.example"` or `"pay.example:443"`); `None` if `t` does not look like a URL.
fn url_given(t: &str) -> Option<String> {
    let (scheme, _) = t.split_once("://")?;
    let what = "it looks like a URL; a pattern is a host with an optional port, without scheme \
                or path";
    let uri = t.parse::<Uri>().ok();
    let Some(host) = uri.as_ref().and_then(Uri::host) else {
        return Some(format!("{what}: \"host\" or \"host:443\""));
    };
    let host = host.to_ascii_lowercase();
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => 80,
        _ => 443,
    };
    let port = uri.and_then(|u| u.port_u16()).unwrap_or(default_port);
    Some(format!(
        "{what}: \"{host}\" (every port) or \"{host}:{port}\" (port {port} only)"
    ))
}

impl FromStr for HostPattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| PatternError {
            pattern: s.to_string(),
            reason: reason.to_string(),
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(err("it is empty"));
        }
        if let Some(reason) = url_given(t) {
            return Err(err(&reason));
        }
        if let Some((host, _)) = t.split_once('/') {
            return Err(err(&format!(
                "a pattern is a host with an optional port, without a path: \"{host}\""
            )));
        }
        // Split off the port: `[v6]:port`, `host:port`; a bare IPv6 literal has several colons.
        let (host, port) = if let Some(rest) = t.strip_prefix('[') {
            let (h, after) = rest
                .split_once(']')
                .ok_or_else(|| err("an IPv6 literal opened with [ must close with ]"))?;
            if h.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(err("not an IPv6 address inside [ ]"));
            }
            match after {
                "" => (h.to_string(), None),
                p => (
                    h.to_string(),
                    Some(p.strip_prefix(':').ok_or_else(|| err("junk after ]"))?),
                ),
            }
        } else if t.matches(':').count() > 1 {
            if t.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(err(
                    "too many ':': a pattern is \"host\" or \"host:443\" (an IPv6 address \
                     with a port is \"[addr]:443\")",
                ));
            }
            (t.to_string(), None)
        } else if let Some((h, p)) = t.rsplit_once(':') {
            (h.to_string(), Some(p))
        } else {
            (t.to_string(), None)
        };
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(err("the port must be a number from 1 to 65535")),
                Ok(n) => Some(n),
            },
        };
        let host = host_match(&host.to_ascii_lowercase()).map_err(err)?;
        Ok(HostPattern {
            host,
            port,
            text: t.to_string(),
        })
    }
}

/// The host part of a pattern (lowercase): `*`, `*.suffix`, an IP address or a name.
fn host_match(host: &str) -> Result<HostMatch, &'static str> {
    let host = if host == "*" {
        HostMatch::Any
    } else if let Some(suffix) = host.strip_prefix("*.") {
        let suffix = suffix.strip_suffix('.').unwrap_or(suffix);
        if suffix.is_empty() || !suffix.split('.').all(valid_label) {
            return Err("the part after *. must be a valid domain name");
        }
        HostMatch::Suffix(suffix.to_string())
    } else if host.contains('*') {
        return Err("a wildcard is only allowed as a whole leading label (*.example.com)");
    } else if let Ok(ip) = host.strip_suffix('.').unwrap_or(host).parse::<IpAddr>() {
        HostMatch::Ip(ip)
    } else {
        let host = host.strip_suffix('.').unwrap_or(host).to_string();
        if host.len() > 253 || !host.split('.').all(valid_label) {
            return Err(
                "not a valid host name (letters, digits, '-', '_' and dots; no spaces or schemes)",
            );
        }
        HostMatch::Exact(host)
    };
    Ok(host)
}

/// What a pin fixes a host to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// Exactly this version, with the legacy settings it needs ([`Profile::exactly`]).
    Version(TlsVersion),
    /// A whole custom profile.
    Profile(Profile),
}

impl Pin {
    pub(crate) fn profile(&self) -> Profile {
        match self {
            Pin::Version(v) => Profile::exactly(*v),
            Pin::Profile(p) => p.clone(),
        }
    }
}

impl From<TlsVersion> for Pin {
    fn from(v: TlsVersion) -> Self {
        Pin::Version(v)
    }
}

impl From<Profile> for Pin {
    fn from(p: Profile) -> Self {
        Pin::Profile(p)
    }
}

/// Parses the CLI form `HOST[:PORT]=VERSION` (e.g. `api.example.com=1.0`).
///
/// ```
/// let (pattern, version) = tls_fallback::policy::parse_pin("pay.example:8443=1.0").unwrap();
/// assert!(pattern.matches("pay.example", 8443));
/// assert_eq!(version, tls_fallback::TlsVersion::Tls1_0);
/// ```
pub fn parse_pin(s: &str) -> Result<(HostPattern, TlsVersion), PatternError> {
    let (pat, ver) = s.rsplit_once('=').ok_or_else(|| PatternError {
        pattern: s.to_string(),
        reason: "a pin is HOST[:PORT]=VERSION, e.g. api.example.com=1.0".into(),
    })?;
    let pattern = pat.parse::<HostPattern>()?;
    let version = ver.parse::<TlsVersion>().map_err(|e| PatternError {
        pattern: s.to_string(),
        reason: e.to_string(),
    })?;
    Ok((pattern, version))
}

/// The item of the most specific pattern matching `key`; among equally specific patterns, the
/// first one given.
pub(crate) fn most_specific<'a, T>(
    candidates: impl IntoIterator<Item = (&'a HostPattern, T)>,
    key: &HostKey,
) -> Option<T> {
    candidates
        .into_iter()
        .enumerate()
        .filter(|(_, (p, _))| p.matches_key(key))
        .max_by_key(|(i, (p, _))| (p.specificity(), std::cmp::Reverse(*i)))
        .map(|(_, (_, t))| t)
}

/// The policy the connector applies; built by [`crate::FallbackLayerBuilder`].
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) floor: TlsVersion,
    pub(crate) legacy_hosts: Vec<HostPattern>,
    pub(crate) handshake_timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            floor: TlsVersion::Tls1_2,
            legacy_hosts: Vec::new(),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl Policy {
    /// The lowest version any host may use unless the legacy gate lets it lower.
    pub fn floor(&self) -> TlsVersion {
        self.floor
    }

    /// The handshake timeout per attempt.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// Whether this host may go below TLS 1.2 and use legacy settings (down to
    /// [`Policy::floor_for`]).
    pub fn legacy_allowed(&self, key: &HostKey) -> bool {
        self.floor.is_legacy() || self.legacy_hosts.iter().any(|p| p.matches_key(key))
    }

    /// The lowest version this host may negotiate: TLS 1.0 for a host the legacy gate lets
    /// through, the floor for every other host (a floor of TLS 1.1 does not open TLS 1.0).
    pub fn floor_for(&self, key: &HostKey) -> TlsVersion {
        if self.legacy_hosts.iter().any(|p| p.matches_key(key)) {
            TlsVersion::Tls1_0
        } else {
            self.floor
        }
    }

    /// Whether a rung may be used for this host.
    pub(crate) fn rung_allowed(&self, key: &HostKey, profile: &Profile) -> bool {
        let floor = self.floor_for(key);
        profile.max_version() >= floor && (!profile.is_legacy() || self.legacy_allowed(key))
    }
}

#[cfg(test)]
mod tests;
