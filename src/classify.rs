//! What a failure means: a handshake error becomes an [`Outcome`] (what happened on the wire)
//! and a [`Verdict`] (what the connector does next), by numeric codes only, never by message
//! text. The table in [`classify`] is the whole policy (the README shows it as a table).

use std::fmt;
use std::io;

use openssl::ssl::ErrorCode;
use serde::{Serialize, Serializer};

use crate::error::ErrorKind;

/// OpenSSL's library number for libssl errors (`ERR_LIB_SSL`).
const LIB_SSL: i32 = 20;
/// Reason codes add this to a received alert number (`SSL_AD_REASON_OFFSET`).
const ALERT_OFFSET: i32 = 1000;

/// OpenSSL reason codes the classifier knows (`SSL_R_*`).
pub mod reason {
    /// `SSL_R_CERTIFICATE_VERIFY_FAILED`.
    pub const CERTIFICATE_VERIFY_FAILED: i32 = 134;
    /// `SSL_R_UNSUPPORTED_PROTOCOL`: the server chose a version we do not allow.
    pub const UNSUPPORTED_PROTOCOL: i32 = 258;
    /// `SSL_R_WRONG_VERSION_NUMBER`: the bytes are not a TLS record.
    pub const WRONG_VERSION_NUMBER: i32 = 267;
    /// `SSL_R_PACKET_LENGTH_TOO_LONG`: a record header announcing too much.
    pub const PACKET_LENGTH_TOO_LONG: i32 = 198;
    /// `SSL_R_ENCRYPTED_LENGTH_TOO_LONG`.
    pub const ENCRYPTED_LENGTH_TOO_LONG: i32 = 150;
    /// `SSL_R_DATA_LENGTH_TOO_LONG`: OpenSSL 3.5+'s report of a record header announcing more
    /// than 2^14 + 2048 bytes (3.0 says 198).
    pub const DATA_LENGTH_TOO_LONG: i32 = 146;
    /// `SSL_R_HTTP_REQUEST`: plain HTTP where TLS was expected.
    pub const HTTP_REQUEST: i32 = 156;
    /// `SSL_R_RECORD_TOO_SMALL`.
    pub const RECORD_TOO_SMALL: i32 = 298;
    /// `SSL_R_BAD_RECORD_TYPE`.
    pub const BAD_RECORD_TYPE: i32 = 443;
    /// `SSL_R_UNEXPECTED_EOF_WHILE_READING`: OpenSSL 3's report of a FIN.
    pub const UNEXPECTED_EOF: i32 = 294;
    /// `SSL_R_LEGACY_SIGALG_DISALLOWED_OR_UNSUPPORTED`: a SHA-1/MD5 signature.
    pub const LEGACY_SIGALG: i32 = 333;
    /// `SSL_R_UNSAFE_LEGACY_RENEGOTIATION_DISABLED`.
    pub const UNSAFE_LEGACY_RENEGOTIATION: i32 = 338;
    /// `SSL_R_INAPPROPRIATE_FALLBACK`: also the RFC 8446 downgrade sentinel.
    pub const INAPPROPRIATE_FALLBACK: i32 = 373;
    /// `SSL_R_DH_KEY_TOO_SMALL`.
    pub const DH_KEY_TOO_SMALL: i32 = 394;
}

/// TLS alert numbers the classifier knows (they live in [`crate::wire::alert`]).
pub use crate::wire::alert;

/// What happened on one attempt, as seen on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The handshake finished.
    Ok,
    /// The server closed the connection (FIN) during the handshake.
    Closed,
    /// The connection was reset (RST) during the handshake.
    Reset,
    /// No handshake within the timeout; `answered` tells whether the server sent any byte.
    Timeout {
        /// Whether the server had sent at least one byte.
        answered: bool,
    },
    /// The server sent a fatal alert with this number.
    Alert(u8),
    /// Abandoned before it ended: the walk no longer needed it (`why`). Its short word stays
    /// `stalled`.
    Stalled {
        /// Why the walk dropped it.
        why: Abandoned,
        /// Whether the server had sent at least one byte.
        answered: bool,
    },
    /// OpenSSL refused the server's choice locally (reason code, e.g. 258 unsupported protocol).
    Refused {
        /// The `SSL_R_*` reason code.
        reason: i32,
    },
    /// The certificate or the host name failed verification.
    Certificate {
        /// OpenSSL's verification message (e.g. "hostname mismatch").
        detail: String,
    },
    /// The server answered with bytes that are not TLS.
    NotTls,
    /// The TCP connection could not be made.
    Connect {
        /// The connector's error, as text.
        detail: String,
    },
    /// Anything else (local configuration, unknown reason codes, I/O errors).
    Other {
        /// What OpenSSL or the OS said.
        detail: String,
    },
}

/// Why a walk abandoned an attempt that had not ended ([`Outcome::Stalled`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Abandoned {
    /// A rung running alongside it finished its handshake first: the connection is that one.
    OtherWon,
    /// The walk ended without a connection, as an error of this kind.
    WalkFailed(ErrorKind),
    /// Another rung showed a server that only speaks legacy TLS: only legacy rungs go on.
    LegacyServer,
    /// A higher rung was refused as an inappropriate fallback (the server speaks more than it
    /// offered): only the rungs above that one may still win.
    HigherRefused,
    /// The learned starting rung turned out obsolete: the walk started again from the top.
    Restarted,
}

impl fmt::Display for Abandoned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failed = |why: &str| format!("the walk ended without a connection ({why})");
        let text = match self {
            Abandoned::OtherWon => "a rung running alongside finished its handshake first".into(),
            Abandoned::WalkFailed(kind) => match kind {
                ErrorKind::NoTlsAnswer => failed("no rung got a byte back"),
                ErrorKind::BelowFloor => failed("every rung down to the floor failed"),
                ErrorKind::LegacyNotAllowed => {
                    failed("the server needs legacy TLS, not allowed for this host")
                }
                ErrorKind::DowngradeDetected => failed("a downgrade signal"),
                ErrorKind::Certificate => failed("a certificate was rejected"),
                ErrorKind::Timeout => failed("a handshake timed out"),
                ErrorKind::Connect => failed("a TCP connect failed"),
                ErrorKind::Handshake => failed("a handshake failed"),
                other => failed(other.as_str()),
            },
            Abandoned::LegacyServer => {
                "another rung found a server that only speaks legacy TLS".into()
            }
            Abandoned::HigherRefused => {
                "a higher rung was refused as an inappropriate fallback".into()
            }
            Abandoned::Restarted => {
                "the learned rung turned out obsolete and the walk started again from the top"
                    .into()
            }
        };
        f.write_str(&text)
    }
}

impl Outcome {
    /// A short word for tables and JSON: `ok`, `closed`, `reset`, `timeout`, `stalled`, `alert:70`,
    /// `refused:258`, `certificate`, `not_tls`, `connect`, `error`.
    pub fn short(&self) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::Closed => "closed".into(),
            Outcome::Reset => "reset".into(),
            Outcome::Timeout { .. } => "timeout".into(),
            Outcome::Stalled { .. } => "stalled".into(),
            Outcome::Alert(n) => format!("alert:{n}"),
            Outcome::Refused { reason } => format!("refused:{reason}"),
            Outcome::Certificate { .. } => "certificate".into(),
            Outcome::NotTls => "not_tls".into(),
            Outcome::Connect { .. } => "connect".into(),
            Outcome::Other { .. } => "error".into(),
        }
    }
}

/// What OpenSSL's local refusal means, and its own name for it.
fn reason_words(r: i32) -> Option<(&'static str, &'static str)> {
    Some(match r {
        reason::UNSUPPORTED_PROTOCOL => (
            "the server chose a TLS version this hello does not allow",
            "unsupported protocol",
        ),
        reason::LEGACY_SIGALG => (
            "the server signed with SHA-1 or MD5, refused at this security level",
            "legacy sigalg disallowed",
        ),
        reason::UNSAFE_LEGACY_RENEGOTIATION => (
            "the server lacks secure renegotiation (RFC 5746)",
            "unsafe legacy renegotiation disabled",
        ),
        reason::DH_KEY_TOO_SMALL => (
            "the server's DH key is too small for this security level",
            "dh key too small",
        ),
        reason::INAPPROPRIATE_FALLBACK => (
            "the server's random carries the RFC 8446 downgrade sentinel",
            "downgrade sentinel",
        ),
        _ => return None,
    })
}

impl Outcome {
    /// Whether this outcome is one the ladder answers with a fallback (intolerance or a legacy
    /// server), as opposed to a failure no other rung can fix.
    pub fn is_fallback_signal(&self) -> bool {
        match self {
            Outcome::Closed | Outcome::Reset | Outcome::Stalled { .. } => true,
            Outcome::Timeout { answered } => !answered,
            Outcome::Alert(_) | Outcome::Refused { .. } => {
                matches!(self.verdict(), Verdict::Intolerant | Verdict::LegacyServer)
            }
            _ => false,
        }
    }

    fn verdict(&self) -> Verdict {
        match *self {
            Outcome::Alert(n) => classify_ssl_reason(ALERT_OFFSET + i32::from(n)).1,
            Outcome::Refused { reason } => classify_ssl_reason(reason).1,
            _ => Verdict::Fatal,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok => f.write_str("ok"),
            Outcome::Closed => f.write_str("closed by the server (FIN)"),
            Outcome::Reset => f.write_str("reset (RST)"),
            Outcome::Timeout { answered: false } => f.write_str("no answer before the timeout"),
            Outcome::Timeout { answered: true } => f.write_str("handshake timed out mid-way"),
            Outcome::Alert(n) => write!(f, "alert {n} ({})", alert::name(*n)),
            Outcome::Stalled { why, answered } => {
                let state = if *answered {
                    "mid-handshake"
                } else {
                    "unanswered"
                };
                write!(f, "abandoned {state} when {why}")
            }
            Outcome::Refused { reason } => match reason_words(*reason) {
                Some((what, name)) => write!(
                    f,
                    "refused by OpenSSL here: {what} (OpenSSL reason {reason}: {name})"
                ),
                None => write!(f, "refused by OpenSSL here (OpenSSL reason {reason})"),
            },
            Outcome::Certificate { detail } => write!(f, "certificate rejected: {detail}"),
            Outcome::NotTls => f.write_str("the server answered with bytes that are not TLS"),
            Outcome::Connect { detail } => write!(f, "TCP connect failed: {detail}"),
            Outcome::Other { detail } => write!(f, "{detail}"),
        }
    }
}

impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.short())
    }
}

/// What the connector does after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The server choked on the hello: try the next rung.
    Intolerant,
    /// The server only speaks legacy TLS/crypto: go to a legacy rung if the host may, else stop.
    LegacyServer,
    /// A downgrade signal: stop, and forget what was learned about the host.
    Downgrade,
    /// Certificate or host name verification failed: stop, never fall back.
    Certificate,
    /// Anything else: stop.
    Fatal,
}

/// The raw facts of one failure, reduced to numbers; the input of [`classify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// End of stream before the handshake finished (FIN or close_notify).
    Eof,
    /// An I/O error of this kind.
    Io(io::ErrorKind),
    /// An error from OpenSSL's error queue: library and reason codes.
    Ssl {
        /// `ERR_GET_LIB`.
        library: i32,
        /// `ERR_GET_REASON`.
        reason: i32,
    },
    /// The handshake timed out; `answered` tells whether the server sent any byte.
    Timeout {
        /// Whether the server had sent at least one byte.
        answered: bool,
    },
}

/// The failure table. Every signal maps to exactly one outcome and one verdict.
pub fn classify(signal: &Signal) -> (Outcome, Verdict) {
    use Verdict::*;
    match *signal {
        // FIN or RST before the handshake finished: the classic intolerance.
        Signal::Eof => (Outcome::Closed, Intolerant),
        Signal::Io(io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted) => {
            (Outcome::Reset, Intolerant)
        }
        Signal::Io(io::ErrorKind::UnexpectedEof) => (Outcome::Closed, Intolerant),
        Signal::Io(io::ErrorKind::BrokenPipe) => (Outcome::Reset, Intolerant),
        Signal::Io(kind) => (
            Outcome::Other {
                detail: format!("I/O error during the handshake: {kind}"),
            },
            Fatal,
        ),
        // A hang with no byte back is intolerance; a slow server that started answering is not.
        Signal::Timeout { answered: false } => (Outcome::Timeout { answered: false }, Intolerant),
        Signal::Timeout { answered: true } => (Outcome::Timeout { answered: true }, Fatal),
        Signal::Ssl { library, reason } if library == LIB_SSL => classify_ssl_reason(reason),
        Signal::Ssl { library, reason } => (
            Outcome::Other {
                detail: format!("OpenSSL error (library {library}, reason {reason})"),
            },
            Fatal,
        ),
    }
}

fn classify_ssl_reason(r: i32) -> (Outcome, Verdict) {
    use Verdict::*;
    if (ALERT_OFFSET..ALERT_OFFSET + 256).contains(&r) {
        let n = (r - ALERT_OFFSET) as u8;
        let verdict = match n {
            // Intolerance alerts: a box that dislikes the version or the hello's shape.
            alert::PROTOCOL_VERSION
            | alert::HANDSHAKE_FAILURE
            | alert::ILLEGAL_PARAMETER
            | alert::DECODE_ERROR
            | alert::INTERNAL_ERROR
            | alert::BAD_RECORD_MAC => Intolerant,
            // RFC 7507: the server supports more than this fallback offered.
            alert::INAPPROPRIATE_FALLBACK => Downgrade,
            // Everything else (certificate alerts, unrecognized_name, ...) is not about versions.
            _ => Fatal,
        };
        return (Outcome::Alert(n), verdict);
    }
    match r {
        reason::UNEXPECTED_EOF => (Outcome::Closed, Intolerant),
        reason::CERTIFICATE_VERIFY_FAILED => (
            Outcome::Certificate {
                detail: "certificate verify failed".into(),
            },
            Certificate,
        ),
        reason::UNSUPPORTED_PROTOCOL
        | reason::LEGACY_SIGALG
        | reason::DH_KEY_TOO_SMALL
        | reason::UNSAFE_LEGACY_RENEGOTIATION => (Outcome::Refused { reason: r }, LegacyServer),
        // RFC 8446 section 4.1.3 downgrade sentinel in the ServerHello random.
        reason::INAPPROPRIATE_FALLBACK => (Outcome::Refused { reason: r }, Downgrade),
        reason::WRONG_VERSION_NUMBER
        | reason::PACKET_LENGTH_TOO_LONG
        | reason::ENCRYPTED_LENGTH_TOO_LONG
        | reason::DATA_LENGTH_TOO_LONG
        | reason::HTTP_REQUEST
        | reason::RECORD_TOO_SMALL
        | reason::BAD_RECORD_TYPE => (Outcome::NotTls, Fatal),
        _ => (
            Outcome::Other {
                detail: format!("TLS handshake failed (OpenSSL reason {r})"),
            },
            Fatal,
        ),
    }
}

/// Reduces an `openssl::ssl::Error` to the signal that matters: the first libssl error in the
/// queue, else the I/O error, else EOF.
pub fn signal_of(e: &openssl::ssl::Error) -> Signal {
    if let Some(stack) = e.ssl_error() {
        let errs = stack.errors();
        if let Some(first) = errs.iter().find(|x| x.library_code() == LIB_SSL) {
            return Signal::Ssl {
                library: LIB_SSL,
                reason: first.reason_code(),
            };
        }
        if let Some(first) = errs.first() {
            return Signal::Ssl {
                library: first.library_code(),
                reason: first.reason_code(),
            };
        }
    }
    if let Some(io) = e.io_error() {
        return Signal::Io(io.kind());
    }
    match e.code() {
        ErrorCode::SYSCALL | ErrorCode::ZERO_RETURN => Signal::Eof,
        _ => Signal::Ssl {
            library: LIB_SSL,
            reason: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fin_rst_and_silent_hang_are_intolerance() {
        assert_eq!(classify(&Signal::Eof).1, Verdict::Intolerant);
        assert_eq!(
            classify(&Signal::Io(io::ErrorKind::ConnectionReset)),
            (Outcome::Reset, Verdict::Intolerant)
        );
        assert_eq!(
            classify(&Signal::Timeout { answered: false }).1,
            Verdict::Intolerant
        );
        assert_eq!(
            classify(&Signal::Timeout { answered: true }).1,
            Verdict::Fatal
        );
        let eof3 = Signal::Ssl {
            library: LIB_SSL,
            reason: reason::UNEXPECTED_EOF,
        };
        assert_eq!(classify(&eof3), (Outcome::Closed, Verdict::Intolerant));
    }

    #[test]
    fn alerts_follow_the_design_table() {
        let a = |n: i32| {
            classify(&Signal::Ssl {
                library: LIB_SSL,
                reason: 1000 + n,
            })
        };
        for n in [70, 40, 47, 50, 80, 20] {
            assert_eq!(a(n), (Outcome::Alert(n as u8), Verdict::Intolerant), "{n}");
        }
        assert_eq!(a(86).1, Verdict::Downgrade);
        for n in [42, 45, 48, 112, 0] {
            assert_eq!(a(n).1, Verdict::Fatal, "{n}");
        }
    }

    #[test]
    fn legacy_reasons_downgrade_and_certificates_never_fall_back() {
        let s = |r| {
            classify(&Signal::Ssl {
                library: LIB_SSL,
                reason: r,
            })
        };
        for r in [258, 333, 394, 338] {
            assert_eq!(s(r).1, Verdict::LegacyServer, "{r}");
        }
        assert_eq!(s(373).1, Verdict::Downgrade);
        assert_eq!(s(134).1, Verdict::Certificate);
        assert_eq!(s(267), (Outcome::NotTls, Verdict::Fatal));
        assert_eq!(s(146), (Outcome::NotTls, Verdict::Fatal));
        assert_eq!(s(12345).1, Verdict::Fatal);
    }
}
