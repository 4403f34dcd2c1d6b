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
mod tests {
    use super::*;

    /// Walks a built record and checks every length field; returns (extension types, hs len).
    fn check_structure(record: &[u8]) -> (Vec<u16>, usize) {
        assert_eq!(record[0], 22, "handshake record");
        let rec_len = u16::from_be_bytes([record[3], record[4]]) as usize;
        assert_eq!(rec_len, record.len() - 5, "record length");
        let hs = &record[5..];
        assert_eq!(hs[0], 1, "client_hello");
        let hs_len = u32::from_be_bytes([0, hs[1], hs[2], hs[3]]) as usize;
        assert_eq!(hs_len + 4, hs.len(), "handshake length");
        let b = &hs[4..];
        let mut p = 2 + 32;
        let sid = b[p] as usize;
        p += 1 + sid;
        let cs = u16::from_be_bytes([b[p], b[p + 1]]) as usize;
        assert_eq!(cs % 2, 0);
        p += 2 + cs;
        let comp = b[p] as usize;
        p += 1 + comp;
        let ext_len = u16::from_be_bytes([b[p], b[p + 1]]) as usize;
        p += 2;
        assert_eq!(p + ext_len, b.len(), "extensions length");
        let mut types = Vec::new();
        while p < b.len() {
            let t = u16::from_be_bytes([b[p], b[p + 1]]);
            let l = u16::from_be_bytes([b[p + 2], b[p + 3]]) as usize;
            p += 4 + l;
            assert!(p <= b.len(), "extension {t:#x} overruns");
            assert!(!types.contains(&t), "duplicate extension {t:#x}");
            types.push(t);
        }
        assert_eq!(p, b.len());
        (types, hs.len())
    }

    #[test]
    fn every_standard_hello_has_consistent_lengths() {
        let sni = Some("localhost".to_string());
        let specs = [
            HelloSpec::legacy(TLS10, sni.clone()),
            HelloSpec::legacy(TLS11, sni.clone()),
            HelloSpec::legacy(TLS12, sni.clone()),
            HelloSpec::legacy(0x0304, sni.clone()),
            HelloSpec::legacy(0x0398, None),
            HelloSpec::with_supported_versions(vec![TLS13], sni.clone()),
            HelloSpec::up_to(TLS13, sni.clone()),
        ];
        for spec in specs {
            let (_, len) = check_structure(&build_client_hello(&spec));
            assert_eq!(len, spec.hello_len());
            assert!(len < 256, "{spec:?} is {len} bytes");
        }
    }

    #[test]
    fn tls13_extensions_only_when_tls13_is_offered() {
        let (t12, _) = check_structure(&build_client_hello(&HelloSpec::legacy(TLS12, None)));
        assert!(!t12.contains(&EXT_SUPPORTED_VERSIONS) && !t12.contains(&EXT_KEY_SHARE));
        let spec = HelloSpec::legacy(TLS12, None);
        assert!(!spec.cipher_suites.iter().any(|s| TLS13_SUITES.contains(s)));
        let (t13, _) = check_structure(&build_client_hello(&HelloSpec::up_to(TLS13, None)));
        assert!(t13.contains(&EXT_SUPPORTED_VERSIONS) && t13.contains(&EXT_KEY_SHARE));
        let t10 = HelloSpec::legacy(TLS10, None);
        assert!(!t10.signature_algorithms);
        assert!(!t10.cipher_suites.iter().any(|s| TLS12_SUITES.contains(s)));
    }

    #[test]
    fn padding_reaches_the_exact_target_length() {
        for target in [300, 512, 600, 1000] {
            let mut spec = HelloSpec::up_to(TLS13, Some("example.com".into()));
            spec.pad_to = Some(target);
            let record = build_client_hello(&spec);
            let (types, len) = check_structure(&record);
            assert_eq!(len, target);
            assert_eq!(types.last(), Some(&EXT_PADDING));
        }
        let mut spec = HelloSpec::up_to(TLS12, None);
        spec.pad_to = Some(10); // below the natural length: no padding at all
        let (types, len) = check_structure(&build_client_hello(&spec));
        assert!(!types.contains(&EXT_PADDING));
        assert_eq!(len, spec.natural_len());
    }

    #[test]
    fn unknown_extension_and_many_suites_are_well_formed() {
        let mut spec = HelloSpec::up_to(TLS13, Some("a.example".into()));
        spec.unknown_extension = Some(0x7a7a);
        spec.cipher_suites.extend(0x7a00..0x7a90);
        let (types, _) = check_structure(&build_client_hello(&spec));
        assert!(types.contains(&0x7a7a));
    }

    /// FNV-1a of a built record, to pin hellos byte for byte.
    fn fnv(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    #[test]
    fn existing_hellos_are_byte_identical_to_before_the_post_quantum_option() {
        // (length, FNV-1a) of each record as built before `pq_key_share` existed.
        let sni = Some("localhost".to_string());
        let pinned = [
            (
                HelloSpec::legacy(TLS10, sni.clone()),
                106,
                0xa09f_ffa3_c0fa_3fe3,
            ),
            (
                HelloSpec::legacy(TLS12, sni.clone()),
                150,
                0x8e75_5dc3_ec22_232c,
            ),
            (HelloSpec::legacy(0x0398, None), 132, 0xd9c0_bbb6_241b_6aa7),
            (
                HelloSpec::with_supported_versions(vec![TLS13], sni.clone()),
                173,
                0xe7da_b441_469e_3523,
            ),
            (
                HelloSpec::up_to(TLS13, sni.clone()),
                217,
                0xa6d7_3082_b51d_4926,
            ),
            (HelloSpec::up_to(TLS13, None), 199, 0xb604_d1bc_6f45_12be),
        ];
        for (spec, len, hash) in pinned {
            assert!(!spec.pq_key_share);
            let record = build_client_hello(&spec);
            assert_eq!((record.len(), fnv(&record)), (len, hash), "{spec:?}");
        }
    }

    /// FIPS 203 section 7.2's modulus check on an encapsulation key: ByteEncode_12 of
    /// ByteDecode_12 of its first 384 * k bytes gives them back (every 12-bit coefficient is
    /// below q), and the length is 384 * k + 32.
    fn passes_modulus_check(ek: &[u8], k: usize) -> bool {
        if ek.len() != 384 * k + 32 {
            return false;
        }
        let mut coefficients = Vec::with_capacity(256 * k);
        for c in ek[..384 * k].chunks_exact(3) {
            let (b0, b1, b2) = (u32::from(c[0]), u32::from(c[1]), u32::from(c[2]));
            coefficients.push(b0 | (b1 & 0x0f) << 8);
            coefficients.push(b1 >> 4 | b2 << 4);
        }
        // ByteDecode_12 reduces mod q; ByteEncode_12 writes the reduced values back.
        let mut again = Vec::with_capacity(384 * k);
        for pair in coefficients.chunks_exact(2) {
            let (a, b) = (pair[0] % MLKEM_Q, pair[1] % MLKEM_Q);
            again.extend_from_slice(&[a as u8, (a >> 8 | (b & 0x0f) << 4) as u8, (b >> 4) as u8]);
        }
        coefficients.iter().all(|&c| c < MLKEM_Q) && again == ek[..384 * k]
    }

    #[test]
    fn the_mlkem768_key_passes_the_fips203_modulus_check() {
        assert!(passes_modulus_check(&MLKEM768_ENCAPSULATION_KEY, 3));
        assert_eq!(MLKEM768_ENCAPSULATION_KEY[1152..], [0x5a; 32], "rho");
        // The first coefficients are the pattern, unpacked little-endian.
        let k = &MLKEM768_ENCAPSULATION_KEY;
        let a = u32::from(k[0]) | (u32::from(k[1]) & 0x0f) << 8;
        let b = u32::from(k[1]) >> 4 | u32::from(k[2]) << 4;
        assert_eq!((a, b), (17, 1038));
        // The check catches a coefficient of q or above, in either half of a triple.
        for (at, patch) in [(0, [0x01, 0x0d]), (1, [0x10, 0xd0]), (1150, [0xff, 0xff])] {
            let mut bad = MLKEM768_ENCAPSULATION_KEY;
            bad[at..at + 2].copy_from_slice(&patch);
            assert!(!passes_modulus_check(&bad, 3), "patch at {at}");
        }
        assert!(!passes_modulus_check(&MLKEM768_ENCAPSULATION_KEY[1..], 3));
    }

    #[test]
    fn a_post_quantum_hello_offers_x25519mlkem768_first_with_a_1216_byte_share() {
        let spec = HelloSpec::post_quantum(None);
        let record = build_client_hello(&spec);
        let (types, len) = check_structure(&record);
        assert_eq!(len, PQ_HELLO_LEN);
        assert_eq!(
            len,
            HelloSpec::up_to(TLS13, None).hello_len() + PQ_KEY_SHARE_EXTRA_LEN
        );
        assert!(types.contains(&EXT_KEY_SHARE) && types.contains(&EXT_SUPPORTED_GROUPS));
        let hello = crate::wire::parse_client_hello(&record).unwrap();
        assert_eq!(hello.supported_groups, PQ_GROUPS);
        let shares: Vec<_> = hello
            .key_shares
            .iter()
            .map(|k| (k.group, k.key_len))
            .collect();
        assert_eq!(shares, [(0x11ec, 1216), (0x001d, 32)]);
        // The hybrid share: the ML-KEM-768 encapsulation key, then the x25519 key.
        let group = GROUP_X25519MLKEM768.to_be_bytes();
        let at = record
            .windows(4)
            .position(|w| w == [group[0], group[1], 0x04, 0xc0])
            .unwrap()
            + 4;
        assert_eq!(record[at..at + 1184], MLKEM768_ENCAPSULATION_KEY);
        assert_eq!(record[at + 1184..at + 1216], X25519_PUBLIC_PQ);
        assert_eq!(record[at + 1216..at + 1220], [0x00, 0x1d, 0x00, 0x20]);
        assert_eq!(record[at + 1220..at + 1252], X25519_PUBLIC);
        // A server name of n bytes adds n + 9.
        let named = HelloSpec::post_quantum(Some("pay.example.com".into()));
        assert_eq!(named.hello_len(), PQ_HELLO_LEN + 15 + 9);
    }

    #[test]
    fn the_post_quantum_option_needs_ecc_for_the_group_and_key_share_for_the_share() {
        let mut spec = HelloSpec::legacy(TLS12, None);
        spec.pq_key_share = true;
        let hello = crate::wire::parse_client_hello(&build_client_hello(&spec)).unwrap();
        assert_eq!(hello.supported_groups, PQ_GROUPS);
        assert!(hello.key_shares.is_empty());
        let mut spec = HelloSpec::post_quantum(None);
        spec.ecc = false;
        let hello = crate::wire::parse_client_hello(&build_client_hello(&spec)).unwrap();
        assert!(hello.supported_groups.is_empty());
        assert!(hello.has_key_share(GROUP_X25519MLKEM768));
    }

    #[test]
    fn the_tls13_baseline_padded_to_a_post_quantum_size_builds_in_one_record() {
        for target in [PQ_HELLO_LEN, 1550] {
            let mut spec = HelloSpec::up_to(TLS13, Some("localhost".into()));
            spec.pad_to = Some(target);
            let record = build_client_hello(&spec);
            let (types, len) = check_structure(&record);
            assert_eq!(len, target);
            assert_eq!(types.last(), Some(&EXT_PADDING));
            let hello = crate::wire::parse_client_hello(&record).unwrap();
            assert_eq!(hello.hello_len, target);
            assert_eq!(hello.key_shares.len(), 1, "x25519 only");
            assert_eq!(hello.supported_groups, GROUPS);
        }
    }

    #[test]
    fn oversized_inputs_are_capped_not_panicking() {
        let mut spec = HelloSpec::up_to(TLS13, Some("x".repeat(1000)));
        spec.cipher_suites = (0..40_000u32).map(|i| i as u16).collect();
        spec.supported_versions = Some(vec![TLS13; 500]);
        spec.pad_to = Some(usize::MAX);
        let record = build_client_hello(&spec);
        let (_, len) = check_structure(&record);
        assert!(len <= 16_384);
    }
}
