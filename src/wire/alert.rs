//! TLS alert levels and the alert numbers the crate acts on or names (RFC 8446 section 6,
//! RFC 7507 for `inappropriate_fallback`).

/// Alert level `warning`.
pub const LEVEL_WARNING: u8 = 1;
/// Alert level `fatal`.
pub const LEVEL_FATAL: u8 = 2;

/// `close_notify`.
pub const CLOSE_NOTIFY: u8 = 0;
/// `bad_record_mac`.
pub const BAD_RECORD_MAC: u8 = 20;
/// `handshake_failure`.
pub const HANDSHAKE_FAILURE: u8 = 40;
/// `illegal_parameter`.
pub const ILLEGAL_PARAMETER: u8 = 47;
/// `decode_error`.
pub const DECODE_ERROR: u8 = 50;
/// `protocol_version`.
pub const PROTOCOL_VERSION: u8 = 70;
/// `internal_error`.
pub const INTERNAL_ERROR: u8 = 80;
/// `inappropriate_fallback` (RFC 7507).
pub const INAPPROPRIATE_FALLBACK: u8 = 86;

/// The name of alert `n` (`protocol_version`, ...), or `unknown`.
pub fn name(n: u8) -> &'static str {
    match n {
        CLOSE_NOTIFY => "close_notify",
        10 => "unexpected_message",
        BAD_RECORD_MAC => "bad_record_mac",
        22 => "record_overflow",
        HANDSHAKE_FAILURE => "handshake_failure",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        ILLEGAL_PARAMETER => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        DECODE_ERROR => "decode_error",
        51 => "decrypt_error",
        PROTOCOL_VERSION => "protocol_version",
        71 => "insufficient_security",
        INTERNAL_ERROR => "internal_error",
        INAPPROPRIATE_FALLBACK => "inappropriate_fallback",
        90 => "user_canceled",
        109 => "missing_extension",
        110 => "unsupported_extension",
        112 => "unrecognized_name",
        116 => "certificate_required",
        120 => "no_application_protocol",
        _ => "unknown",
    }
}
