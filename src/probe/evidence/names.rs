//! Names and one-line notes for the code points a ClientHello carries: extension types,
//! groups, versions, cipher-suite markers. Code points are from the IANA TLS registries;
//! anything not listed is shown as hex, GREASE values (RFC 8701) as `GREASE`.

use crate::wire::{
    is_grease, Reader, EXT_EC_POINT_FORMATS, EXT_EXTENDED_MASTER_SECRET, EXT_KEY_SHARE,
    EXT_PADDING, EXT_PSK_KEY_EXCHANGE_MODES, EXT_SERVER_NAME, EXT_SIGNATURE_ALGORITHMS,
    EXT_SUPPORTED_GROUPS, EXT_SUPPORTED_VERSIONS, FALLBACK_SCSV, RENEGOTIATION_SCSV,
};

/// renegotiation_info (RFC 5746).
const EXT_RENEGOTIATION_INFO: u16 = 0xff01;

/// Extension names by type (IANA "TLS ExtensionType Values").
const EXTENSIONS: [(u16, &str); 22] = [
    (EXT_SERVER_NAME, "server_name"),
    (1, "max_fragment_length"),
    (5, "status_request"),
    (EXT_SUPPORTED_GROUPS, "supported_groups"),
    (EXT_EC_POINT_FORMATS, "ec_point_formats"),
    (EXT_SIGNATURE_ALGORITHMS, "signature_algorithms"),
    (16, "application_layer_protocol_negotiation"),
    (18, "signed_certificate_timestamp"),
    (EXT_PADDING, "padding"),
    (22, "encrypt_then_mac"),
    (EXT_EXTENDED_MASTER_SECRET, "extended_master_secret"),
    (27, "compress_certificate"),
    (28, "record_size_limit"),
    (35, "session_ticket"),
    (41, "pre_shared_key"),
    (42, "early_data"),
    (EXT_SUPPORTED_VERSIONS, "supported_versions"),
    (44, "cookie"),
    (EXT_PSK_KEY_EXCHANGE_MODES, "psk_key_exchange_modes"),
    (EXT_KEY_SHARE, "key_share"),
    (0xfe0d, "encrypted_client_hello"),
    (EXT_RENEGOTIATION_INFO, "renegotiation_info"),
];

/// Named groups (IANA "TLS Supported Groups"); the hybrids are from draft-ietf-tls-ecdhe-mlkem.
const GROUPS: [(u16, &str); 13] = [
    (0x0017, "secp256r1"),
    (0x0018, "secp384r1"),
    (0x0019, "secp521r1"),
    (0x001d, "x25519"),
    (0x001e, "x448"),
    (0x0100, "ffdhe2048"),
    (0x0101, "ffdhe3072"),
    (0x0102, "ffdhe4096"),
    (0x0200, "MLKEM512"),
    (0x11eb, "SecP256r1MLKEM768"),
    (0x11ec, "X25519MLKEM768"),
    (0x11ed, "SecP384r1MLKEM1024"),
    (0x6399, "X25519Kyber768Draft00"),
];

/// "server_name (0)", "GREASE (0x0a0a)", "unknown (0x7a7a)".
pub(super) fn extension_name(ty: u16) -> String {
    match EXTENSIONS.iter().find(|(t, _)| *t == ty) {
        Some((_, name)) => format!("{name} ({ty})"),
        None if is_grease(ty) => format!("GREASE ({ty:#06x})"),
        None => format!("unknown ({ty:#06x})"),
    }
}

/// The name alone ("key_share"), or "unknown 0x7a7a".
pub(super) fn extension_short_name(ty: u16) -> String {
    match EXTENSIONS.iter().find(|(t, _)| *t == ty) {
        Some((_, name)) => (*name).to_string(),
        None if is_grease(ty) => format!("GREASE {ty:#06x}"),
        None => format!("unknown {ty:#06x}"),
    }
}

/// "x25519", "X25519MLKEM768", "GREASE", else hex.
pub(super) fn group_name(g: u16) -> String {
    match GROUPS.iter().find(|(c, _)| *c == g) {
        Some((_, name)) => (*name).to_string(),
        None if is_grease(g) => "GREASE".into(),
        None => format!("{g:#06x}"),
    }
}

/// "1.2", "0x0398", "GREASE" (no "TLS" prefix).
pub(super) fn version_list_entry(v: u16) -> String {
    if is_grease(v) {
        return "GREASE".into();
    }
    crate::probe::version_name(v)
}

/// What an extension's data says, in words.
pub(super) fn extension_note(ty: u16, data: &[u8]) -> String {
    let said = match ty {
        EXT_SERVER_NAME => server_name(data),
        EXT_SUPPORTED_GROUPS => u16_vec(data, 2).map(|g| join(g.iter().map(|&g| group_name(g)))),
        EXT_EC_POINT_FORMATS => ec_point_formats(data),
        EXT_SIGNATURE_ALGORITHMS => u16_vec(data, 2).map(|s| format!("{} algorithms", s.len())),
        EXT_SUPPORTED_VERSIONS => u16_vec(data, 1)
            .map(|v| format!("TLS {}", join(v.iter().map(|&v| version_list_entry(v))))),
        EXT_KEY_SHARE => key_share(data),
        EXT_PSK_KEY_EXCHANGE_MODES => psk_modes(data),
        EXT_PADDING if data.iter().all(|&b| b == 0) => Some(format!("{} bytes", data.len())),
        EXT_PADDING => Some(format!("{} bytes, not all zero", data.len())),
        EXT_RENEGOTIATION_INFO if data == [0] => Some("empty (initial handshake)".into()),
        _ if data.is_empty() => Some("empty".into()),
        _ => Some(format!("{} bytes of data", data.len())),
    };
    said.unwrap_or_else(|| format!("malformed, {} bytes of data", data.len()))
}

/// "17 suites: 3 TLS 1.3, TLS_FALLBACK_SCSV, TLS_EMPTY_RENEGOTIATION_INFO_SCSV".
pub(super) fn cipher_suites_note(data: &[u8]) -> String {
    let Some(suites) = Reader::u16_list(data) else {
        return format!("odd length {}", data.len());
    };
    let mut parts = Vec::new();
    let tls13 = suites.iter().filter(|&&s| s >> 8 == 0x13).count();
    if tls13 > 0 {
        parts.push(format!("{tls13} TLS 1.3"));
    }
    let grease = suites.iter().filter(|&&s| is_grease(s)).count();
    if grease > 0 {
        parts.push(format!("{grease} GREASE"));
    }
    if suites.contains(&FALLBACK_SCSV) {
        parts.push("TLS_FALLBACK_SCSV".into());
    }
    if suites.contains(&RENEGOTIATION_SCSV) {
        parts.push("TLS_EMPTY_RENEGOTIATION_INFO_SCSV".into());
    }
    let count = format!("{} suite{}", suites.len(), plural(suites.len()));
    if parts.is_empty() {
        count
    } else {
        format!("{count}: {}", parts.join(", "))
    }
}

/// "null" or the method numbers.
pub(super) fn compression_note(data: &[u8]) -> String {
    match data {
        [0] => "null".into(),
        [] => "none (malformed: null is required)".into(),
        _ => join(data.iter().map(|m| {
            if *m == 0 {
                "null".into()
            } else {
                m.to_string()
            }
        })),
    }
}

fn server_name(data: &[u8]) -> Option<String> {
    let mut r = Reader::new(data);
    let mut list = Reader::new(r.vec16()?);
    let mut names = Vec::new();
    while !list.is_empty() {
        let kind = list.u8()?;
        let name = list.vec16()?;
        names.push(match kind {
            0 => printable(name),
            k => format!("name type {k}"),
        });
    }
    r.is_empty().then(|| join(names.into_iter()))
}

/// "X25519MLKEM768 (1216 bytes), x25519 (32 bytes)".
fn key_share(data: &[u8]) -> Option<String> {
    let mut r = Reader::new(data);
    let mut shares = Reader::new(r.vec16()?);
    let mut out = Vec::new();
    while !shares.is_empty() {
        let group = shares.u16()?;
        let key = shares.vec16()?;
        out.push(format!("{} ({} bytes)", group_name(group), key.len()));
    }
    if !r.is_empty() {
        return None;
    }
    Some(if out.is_empty() {
        "no shares".into()
    } else {
        join(out.into_iter())
    })
}

fn ec_point_formats(data: &[u8]) -> Option<String> {
    let formats = Reader::new(data).vec8()?;
    let names = formats.iter().map(|f| match f {
        0 => "uncompressed".to_string(),
        1 => "ansiX962_compressed_prime".to_string(),
        2 => "ansiX962_compressed_char2".to_string(),
        f => f.to_string(),
    });
    Some(join(names))
}

fn psk_modes(data: &[u8]) -> Option<String> {
    let modes = Reader::new(data).vec8()?;
    let names = modes.iter().map(|m| match m {
        0 => "psk_ke".to_string(),
        1 => "psk_dhe_ke".to_string(),
        m => m.to_string(),
    });
    Some(join(names))
}

/// A list of u16s behind a `width`-byte length that fills `data` exactly.
fn u16_vec(data: &[u8], width: usize) -> Option<Vec<u16>> {
    let mut r = Reader::new(data);
    let body = if width == 1 { r.vec8()? } else { r.vec16()? };
    r.is_empty().then_some(())?;
    Reader::u16_list(body)
}

/// Text a report can show: printable ASCII kept, anything else as `\xNN` (names are bytes a
/// hostile peer or user chose; the renderers still escape for their format).
pub(super) fn printable(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            0x20..=0x7e if b != b'\\' => char::from(b).to_string(),
            _ => format!("\\x{b:02x}"),
        })
        .collect()
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

pub(super) fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
