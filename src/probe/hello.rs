//! Hand-built TLS ClientHello records for the probe (pure, no I/O).
//!
//! OpenSSL cannot send the hellos a protocol-details probe needs (a legacy version of 0x0398, an
//! unknown extension, 150 cipher suites, an exact length), so this module writes them byte by
//! byte. Every hello offers what a stock OpenSSL 3 server accepts at any security level: ECDHE
//! and RSA suites for the offered versions, x25519/P-256/P-384, the usual signature algorithms,
//! extended_master_secret and the renegotiation SCSV; TLS 1.3 suites and extensions appear only
//! when `supported_versions` offers TLS 1.3.

use crate::wire::{
    CT_HANDSHAKE, EXT_EC_POINT_FORMATS, EXT_EXTENDED_MASTER_SECRET, EXT_KEY_SHARE,
    EXT_PSK_KEY_EXCHANGE_MODES, EXT_SERVER_NAME, EXT_SIGNATURE_ALGORITHMS, EXT_SUPPORTED_GROUPS,
    HS_CLIENT_HELLO,
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

const GROUP_X25519: u16 = 0x001d;
const GROUPS: [u16; 3] = [GROUP_X25519, 0x0017, 0x0018];
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
        put_ext(&mut exts, EXT_SUPPORTED_GROUPS, &u16_list(&GROUPS));
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
        let mut d = Vec::with_capacity(38);
        put_u16(&mut d, 36);
        put_u16(&mut d, GROUP_X25519);
        put_u16(&mut d, 32);
        d.extend_from_slice(&X25519_PUBLIC);
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
