//! What a handshake offers: [`TlsVersion`], [`Profile`] (one rung) and [`Ladder`] (the rungs in
//! the order they are tried).
//!
//! A profile is plain data. The connector turns every profile into its OpenSSL contexts once,
//! when it is built (see [`crate::FallbackLayer`]), never per connection.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use openssl::ssl::SslVersion;
use serde::{Deserialize, Serialize};

/// A TLS protocol version the connector can offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.0 (RFC 2246); legacy, only for hosts allowed to use it.
    #[serde(rename = "1.0")]
    Tls1_0,
    /// TLS 1.1 (RFC 4346); legacy, only for hosts allowed to use it.
    #[serde(rename = "1.1")]
    Tls1_1,
    /// TLS 1.2 (RFC 5246).
    #[serde(rename = "1.2")]
    Tls1_2,
    /// TLS 1.3 (RFC 8446).
    #[serde(rename = "1.3")]
    Tls1_3,
}

impl TlsVersion {
    /// Every version, oldest first.
    pub const ALL: [TlsVersion; 4] = [
        TlsVersion::Tls1_0,
        TlsVersion::Tls1_1,
        TlsVersion::Tls1_2,
        TlsVersion::Tls1_3,
    ];

    /// The version's short name: `"1.0"`, `"1.1"`, `"1.2"` or `"1.3"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls1_0 => "1.0",
            TlsVersion::Tls1_1 => "1.1",
            TlsVersion::Tls1_2 => "1.2",
            TlsVersion::Tls1_3 => "1.3",
        }
    }

    /// The two-byte code on the wire (`0x0301` for TLS 1.0 ... `0x0304` for TLS 1.3).
    pub fn wire(self) -> u16 {
        match self {
            TlsVersion::Tls1_0 => crate::wire::TLS10,
            TlsVersion::Tls1_1 => crate::wire::TLS11,
            TlsVersion::Tls1_2 => crate::wire::TLS12,
            TlsVersion::Tls1_3 => crate::wire::TLS13,
        }
    }

    /// The version for a wire code, if it is one of the four.
    pub fn from_wire(code: u16) -> Option<TlsVersion> {
        TlsVersion::ALL.into_iter().find(|v| v.wire() == code)
    }

    /// Whether OpenSSL 3 needs legacy settings (security level 0) to speak this version.
    pub fn is_legacy(self) -> bool {
        self < TlsVersion::Tls1_2
    }

    pub(crate) fn to_ssl(self) -> SslVersion {
        match self {
            TlsVersion::Tls1_0 => SslVersion::TLS1,
            TlsVersion::Tls1_1 => SslVersion::TLS1_1,
            TlsVersion::Tls1_2 => SslVersion::TLS1_2,
            TlsVersion::Tls1_3 => SslVersion::TLS1_3,
        }
    }

    pub(crate) fn from_ssl(v: SslVersion) -> Option<TlsVersion> {
        TlsVersion::ALL.into_iter().find(|t| t.to_ssl() == v)
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS {}", self.as_str())
    }
}

/// A version string that is not one of `1.0`, `1.1`, `1.2`, `1.3`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown TLS version {0:?}: expected 1.0, 1.1, 1.2 or 1.3")]
pub struct ParseVersionError(pub String);

impl FromStr for TlsVersion {
    type Err = ParseVersionError;

    /// Accepts `1.2`, `tls1.2`, `TLSv1.2`, `tls12` and `TLS 1.2` (any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        let t = t.trim_start_matches("tls").trim_start_matches('v').trim();
        match t {
            "1.0" | "1" | "10" => Ok(TlsVersion::Tls1_0),
            "1.1" | "11" => Ok(TlsVersion::Tls1_1),
            "1.2" | "12" => Ok(TlsVersion::Tls1_2),
            "1.3" | "13" => Ok(TlsVersion::Tls1_3),
            _ => Err(ParseVersionError(s.to_string())),
        }
    }
}

/// TLS 1.2 suites for the compact rungs, eight names, AEADs only: seven with forward secrecy
/// (ECDHE, DHE) and `AES128-GCM-SHA256`, RSA key exchange without forward secrecy, kept last
/// for the old gateways whose servers offer nothing else (OpenSSL's defaults offer it too, so
/// the compact rung does not reach fewer servers than the full one).
const COMPACT_CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:\
ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:AES128-GCM-SHA256";
const COMPACT_SUITES13: &str =
    "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384";
const COMPACT_GROUPS: &str = "X25519:P-256";
const COMPACT_SIGALGS: &str = "ECDSA+SHA256:RSA-PSS+SHA256:RSA+SHA256:ECDSA+SHA384:RSA+SHA384";
/// Legacy suites: what TLS 1.0/1.1 gateways speak (SHA-1 CBC), at security level 0.
const LEGACY_CIPHERS: &str = "ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES256-SHA:\
ECDHE-ECDSA-AES256-SHA:DHE-RSA-AES128-SHA:DHE-RSA-AES256-SHA:AES128-SHA:AES256-SHA:\
DEFAULT:@SECLEVEL=0";

/// One rung of the ladder: everything a ClientHello offers.
///
/// ```
/// use tls_fallback::{Profile, TlsVersion};
/// let p = Profile::new("tls12-short", TlsVersion::Tls1_2)
///     .cipher_list("ECDHE-RSA-AES128-GCM-SHA256")
///     .padding(false);
/// assert_eq!(p.max_version(), TlsVersion::Tls1_2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    name: Cow<'static, str>,
    max_version: TlsVersion,
    min_version: Option<TlsVersion>,
    cipher_list: Option<Cow<'static, str>>,
    ciphersuites: Option<Cow<'static, str>>,
    groups: Option<Cow<'static, str>>,
    sigalgs: Option<Cow<'static, str>>,
    padding: bool,
    alpn: bool,
    legacy: bool,
}

impl Profile {
    /// A profile offering up to `max_version` with OpenSSL's defaults (padding and ALPN on).
    pub fn new(name: impl Into<Cow<'static, str>>, max_version: TlsVersion) -> Self {
        Profile {
            name: name.into(),
            max_version,
            min_version: None,
            cipher_list: None,
            ciphersuites: None,
            groups: None,
            sigalgs: None,
            padding: true,
            alpn: true,
            legacy: max_version.is_legacy(),
        }
    }

    /// Rung 0: TLS 1.3 with library defaults, RFC 7685 padding and ALPN.
    pub fn modern() -> Self {
        Profile::new("modern", TlsVersion::Tls1_3)
    }

    /// Rung 2: TLS 1.2 at most (no `supported_versions` extension), library defaults.
    pub fn tls12() -> Self {
        Profile::new("tls12", TlsVersion::Tls1_2)
    }

    /// Rung 1: TLS 1.3 (and 1.2) with short suite lists, two groups, no padding and no ALPN:
    /// a hello under 256 bytes for boxes that choke on long hellos, long suite lists or many
    /// extensions. It comes before any TLS 1.2 rung so that a TLS 1.3 server behind such a box
    /// is reached at its best version: a TLS 1.2-capped hello carries SCSV, which that server
    /// rightly refuses as an inappropriate fallback (and the walk stops there).
    pub fn modern_compact() -> Self {
        Profile::new("modern-compact", TlsVersion::Tls1_3)
            .cipher_list(COMPACT_CIPHERS)
            .ciphersuites(COMPACT_SUITES13)
            .groups(COMPACT_GROUPS)
            .sigalgs(COMPACT_SIGALGS)
            .padding(false)
            .alpn(false)
    }

    /// Rung 3: TLS 1.2 with a short suite list, two groups, no padding and no ALPN: a hello
    /// under 256 bytes for boxes that choke on long hellos or long lists.
    pub fn tls12_compact() -> Self {
        Profile::new("tls12-compact", TlsVersion::Tls1_2)
            .cipher_list(COMPACT_CIPHERS)
            .groups(COMPACT_GROUPS)
            .sigalgs(COMPACT_SIGALGS)
            .padding(false)
            .alpn(false)
    }

    /// Rung 4: TLS 1.1 at most, legacy settings (security level 0, SHA-1 CBC suites, legacy
    /// server connect). Only for hosts allowed below TLS 1.2.
    pub fn tls11_legacy() -> Self {
        Profile::new("tls11-legacy", TlsVersion::Tls1_1)
            .cipher_list(LEGACY_CIPHERS)
            .alpn(false)
            .legacy(true)
    }

    /// Rung 5: TLS 1.0, legacy settings. Only for hosts allowed below TLS 1.2.
    pub fn tls10_legacy() -> Self {
        Profile::new("tls10-legacy", TlsVersion::Tls1_0)
            .cipher_list(LEGACY_CIPHERS)
            .alpn(false)
            .legacy(true)
    }

    /// The profile a pin to `version` uses: exactly that version, legacy settings where the
    /// version needs them.
    pub fn exactly(version: TlsVersion) -> Self {
        let base = match version {
            TlsVersion::Tls1_3 => Profile::modern(),
            TlsVersion::Tls1_2 => Profile::tls12(),
            TlsVersion::Tls1_1 => Profile::tls11_legacy(),
            TlsVersion::Tls1_0 => Profile::tls10_legacy(),
        };
        let name = format!("pinned-tls{}", version.as_str().replace('.', ""));
        Profile {
            name: name.into(),
            ..base
        }
        .min_version(version)
    }

    /// Sets the lowest version this profile accepts (default: the host's floor).
    pub fn min_version(mut self, v: TlsVersion) -> Self {
        self.min_version = Some(v);
        self
    }

    /// Sets the OpenSSL cipher list for TLS 1.2 and below (`SSL_CTX_set_cipher_list`).
    pub fn cipher_list(mut self, list: impl Into<Cow<'static, str>>) -> Self {
        self.cipher_list = Some(list.into());
        self
    }

    /// Sets the TLS 1.3 suites (`SSL_CTX_set_ciphersuites`).
    pub fn ciphersuites(mut self, list: impl Into<Cow<'static, str>>) -> Self {
        self.ciphersuites = Some(list.into());
        self
    }

    /// Sets the key-exchange groups (`SSL_CTX_set1_groups_list`); fewer groups, smaller hello.
    pub fn groups(mut self, list: impl Into<Cow<'static, str>>) -> Self {
        self.groups = Some(list.into());
        self
    }

    /// Sets the signature algorithms (`SSL_CTX_set1_sigalgs_list`).
    pub fn sigalgs(mut self, list: impl Into<Cow<'static, str>>) -> Self {
        self.sigalgs = Some(list.into());
        self
    }

    /// Turns RFC 7685 padding on or off (on pushes a 256..511-byte hello to 512 bytes).
    pub fn padding(mut self, on: bool) -> Self {
        self.padding = on;
        self
    }

    /// Turns ALPN on or off (`http/1.1`, plus `h2` when the connector enables HTTP/2).
    pub fn alpn(mut self, on: bool) -> Self {
        self.alpn = on;
        self
    }

    /// Marks the profile as legacy: security level 0, legacy server connect, SHA-1 suites.
    /// Legacy profiles are only used for hosts the policy allows below TLS 1.2.
    pub fn legacy(mut self, on: bool) -> Self {
        self.legacy = on;
        self
    }

    /// The rung's name, as shown in attempts, errors and [`crate::TlsInfo`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The highest version this profile offers.
    pub fn max_version(&self) -> TlsVersion {
        self.max_version
    }

    /// The lowest version this profile accepts, if it sets one.
    pub fn min_version_opt(&self) -> Option<TlsVersion> {
        self.min_version
    }

    /// Whether the profile uses legacy settings.
    pub fn is_legacy(&self) -> bool {
        self.legacy
    }

    /// Whether RFC 7685 padding is on.
    pub fn has_padding(&self) -> bool {
        self.padding
    }

    /// Whether ALPN is offered.
    pub fn has_alpn(&self) -> bool {
        self.alpn
    }

    /// The OpenSSL cipher list for TLS 1.2 and below, if the profile sets one (exports use it).
    pub fn cipher_list_opt(&self) -> Option<&str> {
        self.cipher_list.as_deref()
    }
    pub(crate) fn ciphersuites_opt(&self) -> Option<&str> {
        self.ciphersuites.as_deref()
    }
    pub(crate) fn groups_opt(&self) -> Option<&str> {
        self.groups.as_deref()
    }
    pub(crate) fn sigalgs_opt(&self) -> Option<&str> {
        self.sigalgs.as_deref()
    }
}

/// The rungs, tried top to bottom. Every rung after the first is a fallback and carries
/// TLS_FALLBACK_SCSV.
///
/// ```
/// use tls_fallback::Ladder;
/// let names: Vec<_> = Ladder::default().iter().map(|p| p.name().to_string()).collect();
/// assert_eq!(
///     names,
///     ["modern", "modern-compact", "tls12", "tls12-compact", "tls11-legacy", "tls10-legacy"]
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ladder {
    rungs: Vec<Profile>,
}

impl Ladder {
    /// A custom ladder. It must not be empty, no rung may offer more than the first, and
    /// legacy rungs come last (checked when the connector is built).
    pub fn new(rungs: Vec<Profile>) -> Self {
        Ladder { rungs }
    }

    /// The rungs, top first.
    pub fn iter(&self) -> impl Iterator<Item = &Profile> {
        self.rungs.iter()
    }

    /// How many rungs.
    pub fn len(&self) -> usize {
        self.rungs.len()
    }

    /// Whether the ladder has no rung.
    pub fn is_empty(&self) -> bool {
        self.rungs.is_empty()
    }

    pub(crate) fn into_rungs(self) -> Vec<Profile> {
        self.rungs
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.rungs.is_empty() {
            return Err("the ladder has no rung".into());
        }
        let top = &self.rungs[0];
        if let Some(p) = self.rungs.iter().find(|p| p.max_version > top.max_version) {
            return Err(format!(
                "rung {:?} offers {} but the first rung {:?} only {}: the first rung must offer \
                 the highest version (later rungs are fallbacks)",
                p.name, p.max_version, top.name, top.max_version
            ));
        }
        for pair in self.rungs.windows(2) {
            if pair[0].legacy && !pair[1].legacy {
                return Err(format!(
                    "legacy rung {:?} comes before non-legacy rung {:?}: legacy rungs go last",
                    pair[0].name, pair[1].name
                ));
            }
        }
        let mut names: Vec<&str> = self.rungs.iter().map(|p| p.name()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("two rungs are named {:?}", w[0]));
        }
        Ok(())
    }
}

impl Default for Ladder {
    /// modern -> modern-compact -> tls12 -> tls12-compact -> tls11-legacy -> tls10-legacy.
    ///
    /// The hello's shape is trimmed before the version is capped: a box that chokes on long
    /// hellos may front a TLS 1.3 server, which refuses every capped (SCSV) hello as an
    /// inappropriate fallback. A version-intolerant box costs one extra failed hello on first
    /// contact (then the decision is cached), and a silent one is raced, not waited for.
    fn default() -> Self {
        Ladder::new(vec![
            Profile::modern(),
            Profile::modern_compact(),
            Profile::tls12(),
            Profile::tls12_compact(),
            Profile::tls11_legacy(),
            Profile::tls10_legacy(),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parses_common_spellings_and_rejects_others() {
        for (s, v) in [
            ("1.0", TlsVersion::Tls1_0),
            ("TLSv1.1", TlsVersion::Tls1_1),
            ("tls1.2", TlsVersion::Tls1_2),
            ("TLS 1.3", TlsVersion::Tls1_3),
        ] {
            assert_eq!(s.parse::<TlsVersion>(), Ok(v), "{s}");
        }
        for bad in ["", "1.4", "ssl3", "2.0", "1.2.3", "tls"] {
            assert!(bad.parse::<TlsVersion>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn default_ladder_only_goes_down_and_marks_legacy_rungs() {
        let l = Ladder::default();
        l.validate().unwrap();
        let legacy: Vec<bool> = l.iter().map(|p| p.is_legacy()).collect();
        assert_eq!(legacy, [false, false, false, false, true, true]);
    }

    #[test]
    fn ladder_that_rises_is_rejected() {
        let l = Ladder::new(vec![
            Profile::tls12(),
            Profile::tls11_legacy(),
            Profile::modern(),
        ]);
        assert!(l.validate().unwrap_err().contains("highest version"));
        let l = Ladder::new(vec![
            Profile::modern(),
            Profile::tls10_legacy(),
            Profile::tls12(),
        ]);
        assert!(l.validate().unwrap_err().contains("legacy rungs go last"));
        assert!(Ladder::new(vec![]).validate().is_err());
    }

    #[test]
    fn pinned_profile_is_exactly_one_version() {
        let p = Profile::exactly(TlsVersion::Tls1_0);
        assert_eq!(p.max_version(), TlsVersion::Tls1_0);
        assert_eq!(p.min_version_opt(), Some(TlsVersion::Tls1_0));
        assert!(p.is_legacy());
        assert_eq!(p.name(), "pinned-tls10");
    }
}
