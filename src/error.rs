//! The public, matchable [`Error`]: which step failed, every attempt made, and what the user
//! can do about it.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::classify::Outcome;
use crate::profile::TlsVersion;

/// One handshake attempt: the rung tried, what happened and how long it took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// The profile (rung) name.
    pub profile: Arc<str>,
    /// The highest version the hello offered.
    pub max_version: TlsVersion,
    /// Whether the hello carried TLS_FALLBACK_SCSV.
    pub scsv: bool,
    /// What happened.
    pub outcome: Outcome,
    /// Time from TCP connect start to the outcome.
    #[serde(rename = "ms", serialize_with = "ser_ms")]
    pub elapsed: Duration,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// Every attempt of one connection, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Attempts(pub Vec<Attempt>);

impl Attempts {
    /// The attempts as a slice.
    pub fn as_slice(&self) -> &[Attempt] {
        &self.0
    }
}

/// One line per attempt, each on a new line; with `{:#}`, all on one line separated by `; `
/// (for a log event, which must stay one line).
impl fmt::Display for Attempts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            let sep = match (f.alternate(), i) {
                (false, _) => "\n  ",
                (true, 0) => "",
                (true, _) => "; ",
            };
            write!(
                f,
                "{sep}{}. {} (up to {}{}): {} after {} ms",
                i + 1,
                a.profile,
                a.max_version,
                if a.scsv { ", SCSV" } else { "" },
                a.outcome,
                a.elapsed.as_millis()
            )?;
        }
        Ok(())
    }
}

/// The kind of an [`Error`], stable for scripts (`Error::kind().as_str()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// A downgrade signal (inappropriate_fallback, RFC 8446 sentinel).
    DowngradeDetected,
    /// Every rung down to the floor failed with intolerance.
    BelowFloor,
    /// The server needs legacy TLS and the host is not allowed it.
    LegacyNotAllowed,
    /// Certificate or host name verification failed.
    Certificate,
    /// A handshake timed out where no fallback applies.
    Timeout,
    /// TCP connect or DNS failed.
    Connect,
    /// Any other handshake failure, or no rung left.
    Handshake,
    /// A malformed URI, pattern or configuration.
    BadInput,
    /// No rung the policy allows got a single byte back: not a TLS port, traffic dropped on
    /// the way, or a box that only answers versions below the floor.
    NoTlsAnswer,
    /// `Client` only: the whole request (connect, handshakes, request, body) did not
    /// finish within the client's timeout.
    RequestTimeout,
    /// `Client` only: the response body was larger than the client's cap.
    BodyTooLarge,
    /// `Client` only: the HTTP exchange failed after the TLS connection was made
    /// (the server closed the connection, sent bad HTTP, or redirected too often).
    Http,
}

impl ErrorKind {
    /// The snake_case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::DowngradeDetected => "downgrade_detected",
            ErrorKind::BelowFloor => "below_floor",
            ErrorKind::NoTlsAnswer => "no_tls_answer",
            ErrorKind::LegacyNotAllowed => "legacy_not_allowed",
            ErrorKind::Certificate => "certificate",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connect => "connect",
            ErrorKind::Handshake => "handshake",
            ErrorKind::BadInput => "bad_input",
            ErrorKind::RequestTimeout => "request_timeout",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::Http => "http",
        }
    }
}

/// Why a connection could not be made. Every connection error lists each attempt.
///
/// hyper's client wraps connector errors (its own `Display` says only `client error
/// (Connect)`); find ours with [`Error::find`], which takes what you hold (hyper-util's error, a
/// `&dyn Error`, a `Box<dyn Error + Send + Sync>`):
/// ```
/// # fn f(e: &hyper_util::client::legacy::Error) {
/// if let Some(tls) = tls_fallback::Error::find(e) {
///     eprintln!("{}: {tls}", tls.kind().as_str());
/// }
/// # }
/// ```
///
/// `{:?}` prints the same story as `{}` (what `main` returning `Result<_, Box<dyn Error>>`
/// shows after `Error: `, as with anyhow); `{:#?}` prints the fields.
#[derive(Clone)]
#[non_exhaustive]
pub enum Error {
    /// The server or the path sent a downgrade signal; nothing was learned and the host's
    /// cached decision was forgotten.
    DowngradeDetected {
        /// The host.
        host: String,
        /// Every attempt.
        attempts: Attempts,
    },
    /// Every rung the policy allows failed with intolerance; the next rung is below the floor.
    BelowFloor {
        /// The host.
        host: String,
        /// The floor that stopped the walk.
        floor: TlsVersion,
        /// Every attempt.
        attempts: Attempts,
    },
    /// No rung the policy allows got a single byte back: nothing there speaks TLS to us (a
    /// plain TCP service that waits for the client, a firewall that drops the traffic after
    /// the TCP handshake), or the box only answers versions below the floor.
    NoTlsAnswer {
        /// The host.
        host: String,
        /// The floor for this host.
        floor: TlsVersion,
        /// Every attempt.
        attempts: Attempts,
    },
    /// The server only speaks legacy TLS or legacy crypto, which this host may not use.
    LegacyNotAllowed {
        /// The host.
        host: String,
        /// The floor for this host.
        floor: TlsVersion,
        /// Every attempt.
        attempts: Attempts,
    },
    /// The certificate chain or the host name did not verify. Never a reason to fall back.
    Certificate {
        /// The host.
        host: String,
        /// Every attempt.
        attempts: Attempts,
    },
    /// A handshake timed out where no fallback applies (a pinned host, or a server that
    /// started answering and then stalled).
    Timeout {
        /// The host.
        host: String,
        /// Every attempt.
        attempts: Attempts,
    },
    /// The TCP connection (or name resolution) failed: not a TLS problem.
    Connect {
        /// The host.
        host: String,
        /// The inner connector's error.
        source: Arc<dyn StdError + Send + Sync>,
        /// Every attempt, the failed connects included (a racer's, and its retry).
        attempts: Attempts,
    },
    /// Any other handshake failure, or the ladder ran out of rungs.
    Handshake {
        /// The host.
        host: String,
        /// Every attempt.
        attempts: Attempts,
    },
    /// The URI cannot be used (no host, unsupported scheme).
    InvalidUri {
        /// The URI.
        uri: String,
        /// Why.
        reason: String,
    },
    /// A configuration error found when the connector was built.
    Config(String),
}

impl Error {
    /// The kind, for matching and for scripts.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::DowngradeDetected { .. } => ErrorKind::DowngradeDetected,
            Error::BelowFloor { .. } => ErrorKind::BelowFloor,
            Error::NoTlsAnswer { .. } => ErrorKind::NoTlsAnswer,
            Error::LegacyNotAllowed { .. } => ErrorKind::LegacyNotAllowed,
            Error::Certificate { .. } => ErrorKind::Certificate,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Connect { .. } => ErrorKind::Connect,
            Error::Handshake { .. } => ErrorKind::Handshake,
            Error::InvalidUri { .. } | Error::Config(_) => ErrorKind::BadInput,
        }
    }

    /// Every attempt made (empty for configuration errors).
    pub fn attempts(&self) -> &[Attempt] {
        match self {
            Error::DowngradeDetected { attempts, .. }
            | Error::BelowFloor { attempts, .. }
            | Error::NoTlsAnswer { attempts, .. }
            | Error::LegacyNotAllowed { attempts, .. }
            | Error::Certificate { attempts, .. }
            | Error::Timeout { attempts, .. }
            | Error::Connect { attempts, .. }
            | Error::Handshake { attempts, .. } => attempts.as_slice(),
            Error::InvalidUri { .. } | Error::Config(_) => &[],
        }
    }
}

/// "was closed", "was reset" ... when every attempt ended the same way, else "failed".
fn common_outcome(attempts: &Attempts) -> String {
    let mut words = attempts.0.iter().map(|a| a.outcome.short());
    match words.next() {
        Some(first) if words.all(|w| w == first) => match first.as_str() {
            "closed" => "was closed".into(),
            "reset" => "was reset".into(),
            "timeout" | "stalled" => "was left unanswered".into(),
            w if w.starts_with("alert:") => format!("was answered with {}", attempts.0[0].outcome),
            _ => "failed".into(),
        },
        _ => "failed".into(),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::DowngradeDetected { host, attempts } => write!(
                f,
                "downgrade detected talking to {host}: the server signalled that it supports a \
                 newer TLS than the fallback offered (inappropriate_fallback or the RFC 8446 \
                 sentinel); refusing to continue, and forgetting what was learned about this \
                 host. Two readings, which RFC 7507 cannot tell apart: an attacker on the path \
                 forces a downgrade, or a box in front of the server (a firewall, a load \
                 balancer, one box of a mixed pool) blocks the newer version. Investigate the \
                 path: `tls-fallback probe {host}` writes the report to send the vendor. Only if \
                 you trust this path, pin {host} to the version that gets through, as an \
                 explicit decision (it is logged, and it gives up the newer version and this \
                 downgrade check for the host).{attempts}"
            ),
            Error::BelowFloor {
                host,
                floor,
                attempts,
            } => below_floor(f, host, *floor, attempts),
            Error::NoTlsAnswer {
                host,
                floor,
                attempts,
            } => write!(
                f,
                "no TLS answer from {host}: every hello was left unanswered, not a single byte \
                 came back. Is this a TLS port? Check the port (an HTTP or other plain-TCP \
                 service waits for the client to speak first) and any firewall that accepts \
                 the TCP connection and then drops the traffic. Only rungs down to the floor \
                 ({floor}) were tried: a box that answers nothing newer than that looks the \
                 same; `tls-fallback probe {host}` tells them apart.{attempts}"
            ),
            Error::LegacyNotAllowed {
                host,
                floor,
                attempts,
            } => write!(
                f,
                "{host} only negotiates a TLS version or crypto below what this host may use \
                 (floor {floor}; OpenSSL 3 refuses TLS 1.0/1.1 and weak crypto at its default \
                 security level). Allow legacy TLS for it (builder `allow_legacy(\"{host}\")`, \
                 CLI `--allow-legacy`) or pin it, and ask the vendor to enable TLS \
                 1.2.{attempts}"
            ),
            Error::Certificate { host, attempts } => write!(
                f,
                "the certificate of {host} was rejected; no fallback is tried after a \
                 certificate error. Check the host name and the trusted roots (builder \
                 `ca_file`, CLI `--ca-file`).{attempts}"
            ),
            Error::Timeout { host, attempts } => write!(
                f,
                "the TLS handshake with {host} timed out; raise the handshake timeout if the \
                 server is just slow.{attempts}"
            ),
            Error::Connect {
                host,
                source,
                attempts,
            } => write!(
                f,
                "could not connect to {host}: {} (not a TLS problem: check the address, \
                 port, firewall or proxy){attempts}",
                crate::error_chain(&**source)
            ),
            Error::Handshake { host, attempts } => handshake(f, host, attempts),
            Error::InvalidUri { uri, reason } => write!(f, "invalid URI {uri:?}: {reason}"),
            Error::Config(msg) => write!(f, "invalid tls-fallback configuration: {msg}"),
        }
    }
}

fn below_floor(
    f: &mut fmt::Formatter<'_>,
    host: &str,
    floor: TlsVersion,
    attempts: &Attempts,
) -> fmt::Result {
    let lowest = attempts.0.last().map(|a| a.max_version).unwrap_or(floor);
    write!(
        f,
        "every hello to {host} down to {lowest} {} and the floor is {floor}: the \
         server probably only speaks an older TLS. If you trust this host, allow \
         legacy TLS for it (builder `allow_legacy(\"{host}\")`, CLI `--allow-legacy`) \
         or pin it to the version it speaks; and send the vendor the report of \
         `tls-fallback probe {host}`.{attempts}",
        common_outcome(attempts)
    )
}

fn handshake(f: &mut fmt::Formatter<'_>, host: &str, attempts: &Attempts) -> fmt::Result {
    let last = attempts.0.last().map(|a| &a.outcome);
    if attempts.0.is_empty() {
        write!(
            f,
            "no rung of the ladder may be used for {host}: the floor and the legacy \
             gate forbid them all; lower the floor or allow legacy TLS for this host"
        )
    } else if last.is_some_and(Outcome::is_fallback_signal) {
        write!(
            f,
            "the TLS handshake with {host} failed on every rung of the ladder the \
             policy allows; send the vendor the report of `tls-fallback probe \
             {host}`.{attempts}"
        )
    } else {
        write!(
            f,
            "the TLS handshake with {host} failed in a way no fallback can fix (the \
             last attempt: {}); send the vendor the report of `tls-fallback probe \
             {host}`.{attempts}",
            last.map_or_else(|| "none".to_string(), |o| o.to_string())
        )
    }
}

/// The story (`Display`), or with `{:#?}` the variant and its fields.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !f.alternate() {
            return fmt::Display::fmt(self, f);
        }
        fn with_floor(
            f: &mut fmt::Formatter<'_>,
            name: &str,
            host: &str,
            floor: &TlsVersion,
            attempts: &Attempts,
        ) -> fmt::Result {
            f.debug_struct(name)
                .field("host", &host)
                .field("floor", floor)
                .field("attempts", attempts)
                .finish()
        }
        match self {
            Error::BelowFloor {
                host,
                floor,
                attempts,
            } => with_floor(f, "BelowFloor", host, floor, attempts),
            Error::NoTlsAnswer {
                host,
                floor,
                attempts,
            } => with_floor(f, "NoTlsAnswer", host, floor, attempts),
            Error::LegacyNotAllowed {
                host,
                floor,
                attempts,
            } => with_floor(f, "LegacyNotAllowed", host, floor, attempts),
            Error::DowngradeDetected { host, attempts }
            | Error::Certificate { host, attempts }
            | Error::Timeout { host, attempts }
            | Error::Handshake { host, attempts } => f
                .debug_struct(self.variant_name())
                .field("host", host)
                .field("attempts", attempts)
                .finish(),
            Error::Connect {
                host,
                source,
                attempts,
            } => f
                .debug_struct("Connect")
                .field("host", host)
                .field("source", source)
                .field("attempts", attempts)
                .finish(),
            Error::InvalidUri { uri, reason } => f
                .debug_struct("InvalidUri")
                .field("uri", uri)
                .field("reason", reason)
                .finish(),
            Error::Config(msg) => f.debug_tuple("Config").field(msg).finish(),
        }
    }
}

impl Error {
    fn variant_name(&self) -> &'static str {
        match self {
            Error::DowngradeDetected { .. } => "DowngradeDetected",
            Error::BelowFloor { .. } => "BelowFloor",
            Error::NoTlsAnswer { .. } => "NoTlsAnswer",
            Error::LegacyNotAllowed { .. } => "LegacyNotAllowed",
            Error::Certificate { .. } => "Certificate",
            Error::Timeout { .. } => "Timeout",
            Error::Connect { .. } => "Connect",
            Error::Handshake { .. } => "Handshake",
            Error::InvalidUri { .. } => "InvalidUri",
            Error::Config(_) => "Config",
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Error::Connect { source, .. } => Some(&**source),
            _ => None,
        }
    }
}
