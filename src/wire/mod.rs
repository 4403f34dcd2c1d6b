//! The TLS wire as the crate sees it: one bounded byte [`Reader`], one set of constants (record
//! and handshake types, version codes, TLS_FALLBACK_SCSV, extension numbers, the
//! HelloRetryRequest random, alert numbers), the ClientHello parser the test kit's emulator
//! uses, and the parser of a server's first answer used by the probe and by the connector's
//! ServerHello checks. Everything here is pure and bounded, and never panics on any input.

pub mod alert;
mod client_hello;
mod reader;
mod server_hello;

pub use client_hello::{
    parse_client_hello, parse_handshake, reassemble_handshake, ClientHelloInfo, HelloError,
    KeyShareEntry,
};
pub use reader::Reader;
pub use server_hello::{is_server_hello, parse_server_answer, server_hello_version, ServerAnswer};

/// Record content type of an alert.
pub const CT_ALERT: u8 = 21;
/// Record content type of a handshake message.
pub const CT_HANDSHAKE: u8 = 22;
/// Handshake message type of a ClientHello.
pub const HS_CLIENT_HELLO: u8 = 1;
/// Handshake message type of a ServerHello (and of a HelloRetryRequest).
pub const HS_SERVER_HELLO: u8 = 2;
/// Largest record payload: 2^14 bytes plus 2048 of TLS 1.2 ciphertext expansion.
pub const MAX_RECORD: usize = 16_384 + 2048;

/// TLS 1.0 on the wire.
pub const TLS10: u16 = 0x0301;
/// TLS 1.1 on the wire.
pub const TLS11: u16 = 0x0302;
/// TLS 1.2 on the wire.
pub const TLS12: u16 = 0x0303;
/// TLS 1.3 on the wire (only ever in `supported_versions`, never in `legacy_version`).
pub const TLS13: u16 = 0x0304;

/// TLS_FALLBACK_SCSV (RFC 7507).
pub const FALLBACK_SCSV: u16 = 0x5600;
/// TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746), stands for an empty renegotiation_info.
pub const RENEGOTIATION_SCSV: u16 = 0x00ff;

/// The `server_name` extension.
pub const EXT_SERVER_NAME: u16 = 0;
/// The `supported_groups` extension.
pub const EXT_SUPPORTED_GROUPS: u16 = 10;
/// The `ec_point_formats` extension.
pub const EXT_EC_POINT_FORMATS: u16 = 11;
/// The `signature_algorithms` extension.
pub const EXT_SIGNATURE_ALGORITHMS: u16 = 13;
/// The `padding` extension (RFC 7685).
pub const EXT_PADDING: u16 = 21;
/// The `extended_master_secret` extension (RFC 7627).
pub const EXT_EXTENDED_MASTER_SECRET: u16 = 23;
/// The `supported_versions` extension (RFC 8446).
pub const EXT_SUPPORTED_VERSIONS: u16 = 43;
/// The `psk_key_exchange_modes` extension (RFC 8446).
pub const EXT_PSK_KEY_EXCHANGE_MODES: u16 = 45;
/// The `key_share` extension (RFC 8446).
pub const EXT_KEY_SHARE: u16 = 51;

/// The x25519 named group (RFC 8446).
pub const GROUP_X25519: u16 = 0x001d;
/// The X25519MLKEM768 hybrid post-quantum group (draft-ietf-tls-ecdhe-mlkem): its client key
/// share is an ML-KEM-768 encapsulation key (1184 bytes) followed by an x25519 key (32 bytes).
pub const GROUP_X25519MLKEM768: u16 = 0x11ec;

/// The `random` of a HelloRetryRequest: SHA-256("HelloRetryRequest") (RFC 8446 section 4.1.3).
pub const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// The largest ClientHello the parser accepts (handshake message, bytes).
pub const MAX_HELLO: usize = 1 << 16;

/// Whether a version code is a GREASE value (RFC 8701).
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

/// A plaintext fatal alert record carrying alert `description`, as a server sends it.
pub fn fatal_alert_record(description: u8) -> [u8; 7] {
    let [major, minor] = TLS12.to_be_bytes();
    [
        CT_ALERT,
        major,
        minor,
        0,
        2,
        alert::LEVEL_FATAL,
        description,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grease_is_recognised() {
        assert!(is_grease(0x3a3a));
        assert!(is_grease(0xfafa));
        assert!(!is_grease(0x0304));
        assert!(!is_grease(0x3a4a));
    }

    #[test]
    fn a_fatal_alert_record_parses_back() {
        assert_eq!(
            parse_server_answer(&fatal_alert_record(alert::PROTOCOL_VERSION)),
            ServerAnswer::Alert {
                level: 2,
                description: 70
            }
        );
    }
}
