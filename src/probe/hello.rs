//! Hand-built TLS ClientHello records for the probe (pure, no I/O).
//!
//! OpenSSL cannot send the hellos a protocol-details probe needs (a legacy version of 0x0398, an
//! unknown extension, 150 cipher suites, an exact length), so this module writes them byte by
//! byte. Every hello offers what a stock OpenSSL 3 server accepts at any security level: ECDHE
//! and RSA suites for the offered versions, x25519/P-256/P-384, the usual signature algorithms,
//! extended_master_secret and the renegotiation SCSV; TLS 1.3 suites and extensions appear only
//! when `supported_versions` offers TLS 1.3.
//!
//! A hello may also offer an X25519MLKEM768 key share ([`HelloSpec::pq_key_share`]), the
//! post-quantum hybrid that OpenSSL 3.5+, Chrome, Firefox and Go send by default: its
//! encapsulation key is a fixed one ([`MLKEM768_ENCAPSULATION_KEY`]) that passes FIPS 203's
//! modulus check, so a real server picks the group and answers; nobody holds its decapsulation
//! key, which is fine since the probe reads only the server's first answer.

pub use crate::wire::GROUP_X25519MLKEM768;
use crate::wire::{
    CT_HANDSHAKE, EXT_EC_POINT_FORMATS, EXT_EXTENDED_MASTER_SECRET, EXT_KEY_SHARE,
    EXT_PSK_KEY_EXCHANGE_MODES, EXT_SERVER_NAME, EXT_SIGNATURE_ALGORITHMS, EXT_SUPPORTED_GROUPS,
    GROUP_X25519, HS_CLIENT_HELLO,
};
pub use crate::wire::{EXT_PADDING, EXT_SUPPORTED_VERSIONS};
pub use crate::wire::{FALLBACK_SCSV, RENEGOTIATION_SCSV, TLS10, TLS11, TLS12, TLS13};

/// TLS 1.3 cipher suites: AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305.
pub const TLS13_SUITES: [u16; 3] = [0x1301, 0x1302, 0x1303];
/// TLS 1.2 AEAD suites: ECDHE-ECDSA/RSA GCM and ChaCha, DHE-RSA and RSA GCM.
pub const TLS12_SUITES: [u16; 9] = [
    0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0x009e, 0x009c, 0x009d,
];
/// TLS 1.0/1.1 CBC suites (SHA-1 MAC), usable up to TLS 1.2 too.
pub const LEGACY_SUITES: [u16; 7] = [0xc013, 0xc014, 0xc009, 0xc00a, 0x002f, 0x0035, 0x000a];
/// x25519 public key sent in every TLS 1.3 key_share (RFC 7748 section 6.1, Alice's key).
pub const X25519_PUBLIC: [u8; 32] = [
    0x85, 0x20, 0xf0, 0x09, 0x89, 0x30, 0xa7, 0x54, 0x74, 0x8b, 0x7d, 0xdc, 0xb4, 0x3e, 0xf7, 0x5a,
    0x0d, 0xbf, 0x3a, 0x0d, 0x26, 0x38, 0x1a, 0xf4, 0xeb, 0xa4, 0xa9, 0x8e, 0xaa, 0x9b, 0x4e, 0x6a,
];
/// x25519 public key of the X25519MLKEM768 share (RFC 7748 section 6.1, Bob's key): another
/// key than the plain x25519 share's, as a real client's two shares would be.
pub const X25519_PUBLIC_PQ: [u8; 32] = [
    0xde, 0x9e, 0xdb, 0x7d, 0x7b, 0x7d, 0xc1, 0xb4, 0xd3, 0x5b, 0x61, 0xc2, 0xec, 0xe4, 0x35, 0x37,
    0x3f, 0x83, 0x43, 0xc8, 0x5b, 0x78, 0x67, 0x4d, 0xad, 0xfc, 0x7e, 0x14, 0x6f, 0x88, 0x2b, 0x4f,
];

const GROUPS: [u16; 3] = [GROUP_X25519, 0x0017, 0x0018];
/// [`GROUPS`] with X25519MLKEM768 first, as a post-quantum client sends them.
const PQ_GROUPS: [u16; 4] = [GROUP_X25519MLKEM768, GROUP_X25519, 0x0017, 0x0018];

/// ML-KEM-768 encapsulation key length (FIPS 203: 384 * k + 32 bytes, k = 3).
pub const MLKEM768_ENCAPSULATION_KEY_LEN: usize = 1184;
/// Length of an X25519MLKEM768 client key share: the ML-KEM-768 encapsulation key, then the
/// x25519 public key (draft-ietf-tls-ecdhe-mlkem; ML-KEM first for this group).
pub const X25519MLKEM768_SHARE_LEN: usize = MLKEM768_ENCAPSULATION_KEY_LEN + 32;
/// How many bytes [`HelloSpec::pq_key_share`] adds to a hello that has `ecc` and `key_share`:
/// the share's entry (group, length, 1216 bytes) and the group in supported_groups.
pub const PQ_KEY_SHARE_EXTRA_LEN: usize = 2 + 2 + X25519MLKEM768_SHARE_LEN + 2;
/// Length of the handshake message [`HelloSpec::post_quantum`] builds without a server name;
/// a name of n bytes adds n + 9. With its 5-byte record header and a name longer than 30 bytes
/// it no longer fits the 1,460-byte payload of one TCP segment on an Ethernet path (browsers,
/// with ALPN, GREASE and a session id, send 1,500-1,800 bytes): the size that breaks
/// middleboxes which cannot reassemble a ClientHello.
pub const PQ_HELLO_LEN: usize = 1416;

/// The fixed ML-KEM-768 encapsulation key of every post-quantum hello: 768 coefficients, each
/// `(i * 1021 + 17) mod 3329`, packed 12 bits each little-endian (FIPS 203 ByteEncode_12,
/// 1152 bytes), then a 32-byte rho of 0x5a. Every coefficient is below q = 3329, so it passes
/// the modulus check a FIPS 203 implementation (OpenSSL 3.5+) runs on a peer's key.
pub const MLKEM768_ENCAPSULATION_KEY: [u8; MLKEM768_ENCAPSULATION_KEY_LEN] = mlkem768_key();

/// ML-KEM's modulus.
const MLKEM_Q: u32 = 3329;

const fn mlkem768_key() -> [u8; MLKEM768_ENCAPSULATION_KEY_LEN] {
    let mut key = [0x5a_u8; MLKEM768_ENCAPSULATION_KEY_LEN];
    let mut pair = 0;
    // 768 coefficients, two per three bytes: a in the low 12 bits, b in the high 12.
    while pair < 384 {
        let a = ((2 * pair) as u32 * 1021 + 17) % MLKEM_Q;
        let b = ((2 * pair + 1) as u32 * 1021 + 17) % MLKEM_Q;
        let at = 3 * pair;
        key[at] = (a & 0xff) as u8;
        key[at + 1] = ((a >> 8) | ((b & 0x0f) << 4)) as u8;
        key[at + 2] = (b >> 4) as u8;
        pair += 1;
    }
    key
}
const SIGNATURE_ALGORITHMS: [u16; 10] = [
    0x0403, // ecdsa_secp256r1_sha256
    0x0503, // ecdsa_secp384r1_sha384
    0x0804, // rsa_pss_rsae_sha256
    0x0805, // rsa_pss_rsae_sha384
    0x0806, // rsa_pss_rsae_sha512
    0x0401, // rsa_pkcs1_sha256
    0x0501, // rsa_pkcs1_sha384
    0x0601, // rsa_pkcs1_sha512
    0x0203, // ecdsa_sha1
    0x0201, // rsa_pkcs1_sha1
];

/// Bytes of data carried by [`HelloSpec::unknown_extension`].
const UNKNOWN_EXTENSION_DATA: [u8; 4] = [0x00, 0x01, 0x02, 0x03];
/// Largest handshake message the builder writes (it must fit one 16 KiB record).
pub const MAX_HELLO_LEN: usize = 16_000;
const MAX_SUITES: usize = 4096;
const MAX_VERSIONS: usize = 127;
const MAX_SNI: usize = 255;

/// Everything a probe ClientHello offers; [`build_client_hello`] turns it into bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloSpec {
    /// Version in the record header (0x0301 is the most tolerated value).
    pub record_version: u16,
    /// `legacy_version` (the "client_version" of TLS <= 1.2).
    pub legacy_version: u16,
    /// Contents of the supported_versions extension; `None` omits the extension.
    pub supported_versions: Option<Vec<u16>>,
    /// Cipher suites, in preference order (at most 4096 are written).
    pub cipher_suites: Vec<u16>,
    /// Host name for the server_name extension; `None` omits it (at most 255 bytes are written).
    pub sni: Option<String>,
    /// Send supported_groups (x25519, P-256, P-384) and ec_point_formats (uncompressed).
    pub ecc: bool,
    /// Send signature_algorithms.
    pub signature_algorithms: bool,
    /// Send an empty extended_master_secret.
    pub extended_master_secret: bool,
    /// Send a key_share with one x25519 share and psk_key_exchange_modes (psk_dhe_ke).
    pub key_share: bool,
    /// Offer X25519MLKEM768 (0x11ec) as a browser does: first in supported_groups (with
    /// `ecc`), and its 1,216-byte share in front of the x25519 one (with `key_share`).
    pub pq_key_share: bool,
    /// Append an extension of this (unassigned) type carrying 4 bytes of data.
    pub unknown_extension: Option<u16>,
    /// Pad the handshake message (4-byte header included) to at least this many bytes (RFC 7685).
    pub pad_to: Option<usize>,
    /// The 32-byte client random.
    pub random: [u8; 32],
}

impl HelloSpec {
    /// A hello whose highest offer is `legacy_version`, without supported_versions.
    ///
    /// Offers the TLS 1.2 suites and signature_algorithms when `legacy_version >= 0x0303`
    /// (this includes the "future" values 0x0304, 0x0398, 0x0498), the legacy suites always.
    pub fn legacy(legacy_version: u16, sni: Option<String>) -> Self {
        let tls12 = legacy_version >= TLS12;
        let mut suites = Vec::new();
        if tls12 {
            suites.extend_from_slice(&TLS12_SUITES);
        }
        suites.extend_from_slice(&LEGACY_SUITES);
        suites.push(RENEGOTIATION_SCSV);
        HelloSpec {
            record_version: TLS10,
            legacy_version,
            supported_versions: None,
            cipher_suites: suites,
            sni,
            ecc: true,
            signature_algorithms: tls12,
            extended_master_secret: true,
            key_share: false,
            pq_key_share: false,
            unknown_extension: None,
            pad_to: None,
            random: [0x5a; 32],
        }
    }

    /// A hello with `legacy_version` 0x0303 and supported_versions `versions`.
    ///
    /// The suites and extensions follow the offered versions: TLS 1.3 suites and a key_share
    /// only if 0x0304 is offered, TLS 1.2 and legacy suites only if a version below it is.
    pub fn with_supported_versions(versions: Vec<u16>, sni: Option<String>) -> Self {
        let has13 = versions.contains(&TLS13);
        let has12 = versions.iter().any(|&v| (TLS12..TLS13).contains(&v));
        let has_legacy = versions.iter().any(|&v| v < TLS12);
        let mut suites = Vec::new();
        if has13 {
            suites.extend_from_slice(&TLS13_SUITES);
        }
        if has12 {
            suites.extend_from_slice(&TLS12_SUITES);
        }
        if has12 || has_legacy {
            suites.extend_from_slice(&LEGACY_SUITES);
            suites.push(RENEGOTIATION_SCSV);
        }
        HelloSpec {
            record_version: TLS10,
            legacy_version: TLS12,
            supported_versions: Some(versions),
            cipher_suites: suites,
            sni,
            ecc: true,
            signature_algorithms: true,
            extended_master_secret: has12 || has_legacy,
            key_share: has13,
            pq_key_share: false,
            unknown_extension: None,
            pad_to: None,
            random: [0x5a; 32],
        }
    }

    /// The plainest hello offering every version up to `max` (0x0301..=0x0304).
    ///
    /// TLS 1.3 uses supported_versions [max..=1.0]; lower maxima use `legacy_version` alone.
    pub fn up_to(max: u16, sni: Option<String>) -> Self {
        if max >= TLS13 {
            Self::with_supported_versions(vec![TLS13, TLS12, TLS11, TLS10], sni)
        } else {
            Self::legacy(max, sni)
        }
    }

    /// [`HelloSpec::up_to`] TLS 1.3 with an X25519MLKEM768 key share in front of the x25519 one
    /// ([`HelloSpec::pq_key_share`]): the hello of OpenSSL 3.5+, Chrome, Firefox and Go, about
    /// 1,400-1,550 bytes ([`PQ_HELLO_LEN`] without a server name).
    pub fn post_quantum(sni: Option<String>) -> Self {
        let mut spec = Self::up_to(TLS13, sni);
        spec.pq_key_share = true;
        spec
    }

    /// The versions this hello lets a server pick (supported_versions, else 1.0..=legacy capped at 1.2).
    pub fn offered_versions(&self) -> Vec<u16> {
        match &self.supported_versions {
            Some(v) => {
                let mut v = v.clone();
                v.sort_unstable();
                v.dedup();
                v
            }
            None => (TLS10..=self.legacy_version.min(TLS12)).collect(),
        }
    }

    /// Length of the handshake message (4-byte header included) this spec builds to.
    pub fn hello_len(&self) -> usize {
        build_client_hello(self).len().saturating_sub(5)
    }

    /// Length of the handshake message this spec builds to without any padding.
    pub fn natural_len(&self) -> usize {
        let mut s = self.clone();
        s.pad_to = None;
        s.hello_len()
    }
}

/// Builds the full TLS record (5-byte record header + ClientHello handshake message) for `spec`.
pub fn build_client_hello(spec: &HelloSpec) -> Vec<u8> {
    let mut body = Vec::with_capacity(512);
    put_u16(&mut body, spec.legacy_version);
    body.extend_from_slice(&spec.random);
    body.push(0); // empty legacy_session_id
    let suites = &spec.cipher_suites[..spec.cipher_suites.len().min(MAX_SUITES)];
    put_u16(&mut body, len16(suites.len() * 2));
    for &s in suites {
        put_u16(&mut body, s);
    }
    body.extend_from_slice(&[1, 0]); // compression methods: null only

    let mut exts = extensions(spec);
    // 4 (handshake header) + body + 2 (extensions length) + extensions.
    let unpadded = 4 + body.len() + 2 + exts.len();
    if let Some(target) = spec.pad_to {
        let target = target.min(MAX_HELLO_LEN);
        if target > unpadded {
            let data = target.saturating_sub(unpadded + 4);
            put_ext(&mut exts, EXT_PADDING, &vec![0u8; data]);
        }
    }
    if !exts.is_empty() {
        put_u16(&mut body, len16(exts.len()));
        body.extend_from_slice(&exts);
    }

    let mut hs = Vec::with_capacity(body.len() + 4);
    hs.push(HS_CLIENT_HELLO);
    put_u24(&mut hs, body.len());
    hs.extend_from_slice(&body);

    let mut record = Vec::with_capacity(hs.len() + 5);
    record.push(CT_HANDSHAKE);
    put_u16(&mut record, spec.record_version);
    put_u16(&mut record, len16(hs.len()));
    record.extend_from_slice(&hs);
    record
}

fn extensions(spec: &HelloSpec) -> Vec<u8> {
    let mut exts = Vec::new();
    if let Some(host) = &spec.sni {
        let name = host.as_bytes();
        let name = &name[..name.len().min(MAX_SNI)];
        let mut d = Vec::with_capacity(name.len() + 5);
        put_u16(&mut d, len16(name.len() + 3));
        d.push(0); // host_name
        put_u16(&mut d, len16(name.len()));
        d.extend_from_slice(name);
        put_ext(&mut exts, EXT_SERVER_NAME, &d);
    }
    if spec.ecc {
        put_ext(&mut exts, EXT_EC_POINT_FORMATS, &[1, 0]);
        let groups: &[u16] = if spec.pq_key_share {
            &PQ_GROUPS
        } else {
            &GROUPS
        };
        put_ext(&mut exts, EXT_SUPPORTED_GROUPS, &u16_list(groups));
    }
    if spec.signature_algorithms {
        put_ext(
            &mut exts,
            EXT_SIGNATURE_ALGORITHMS,
            &u16_list(&SIGNATURE_ALGORITHMS),
        );
    }
    if spec.extended_master_secret {
        put_ext(&mut exts, EXT_EXTENDED_MASTER_SECRET, &[]);
    }
    if let Some(versions) = &spec.supported_versions {
        let versions = &versions[..versions.len().min(MAX_VERSIONS)];
        let mut d = vec![(versions.len() * 2) as u8];
        for &v in versions {
            put_u16(&mut d, v);
        }
        put_ext(&mut exts, EXT_SUPPORTED_VERSIONS, &d);
    }
    if spec.key_share {
        put_ext(&mut exts, EXT_PSK_KEY_EXCHANGE_MODES, &[1, 1]); // psk_dhe_ke
        let mut shares = Vec::with_capacity(36 + 4 + X25519MLKEM768_SHARE_LEN);
        if spec.pq_key_share {
            put_u16(&mut shares, GROUP_X25519MLKEM768);
            put_u16(&mut shares, len16(X25519MLKEM768_SHARE_LEN));
            shares.extend_from_slice(&MLKEM768_ENCAPSULATION_KEY);
            shares.extend_from_slice(&X25519_PUBLIC_PQ);
        }
        put_u16(&mut shares, GROUP_X25519);
        put_u16(&mut shares, 32);
        shares.extend_from_slice(&X25519_PUBLIC);
        let mut d = Vec::with_capacity(shares.len() + 2);
        put_u16(&mut d, len16(shares.len()));
        d.extend_from_slice(&shares);
        put_ext(&mut exts, EXT_KEY_SHARE, &d);
    }
    if let Some(t) = spec.unknown_extension {
        put_ext(&mut exts, t, &UNKNOWN_EXTENSION_DATA);
    }
    exts
}

fn u16_list(items: &[u16]) -> Vec<u8> {
    let mut d = Vec::with_capacity(items.len() * 2 + 2);
    put_u16(&mut d, len16(items.len() * 2));
    for &i in items {
        put_u16(&mut d, i);
    }
    d
}

fn put_ext(out: &mut Vec<u8>, ext_type: u16, data: &[u8]) {
    put_u16(out, ext_type);
    put_u16(out, len16(data.len()));
    out.extend_from_slice(data);
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u24(out: &mut Vec<u8>, v: usize) {
    let v = u32::try_from(v).unwrap_or(u32::MAX).min(0x00ff_ffff);
    out.extend_from_slice(&v.to_be_bytes()[1..]);
}

/// Lengths are bounded by the MAX_* caps above, so this never saturates in practice.
fn len16(v: usize) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests;
