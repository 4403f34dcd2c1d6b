//! Parsing of a ClientHello, for the test kit's emulator and for tests: what a hello offers
//! (version, SCSV, length, suites, SNI, extensions, groups and key shares). Pure, bounded,
//! never panics.

use serde::Serialize;

use super::{
    is_grease, Reader, CT_HANDSHAKE, EXT_KEY_SHARE, EXT_SERVER_NAME, EXT_SUPPORTED_GROUPS,
    EXT_SUPPORTED_VERSIONS, FALLBACK_SCSV, HS_CLIENT_HELLO, MAX_HELLO, MAX_RECORD,
};

/// One entry of a ClientHello's `key_share` extension: the group and the size of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KeyShareEntry {
    /// The named group (0x001d x25519, 0x11ec X25519MLKEM768, GREASE as sent).
    pub group: u16,
    /// Length of the key exchange data in bytes (32 for x25519, 1216 for X25519MLKEM768).
    pub key_len: usize,
}

/// What a ClientHello offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientHelloInfo {
    /// The version in the first record header.
    pub record_version: u16,
    /// `legacy_version` in the hello.
    pub legacy_version: u16,
    /// The `supported_versions` list, if present (GREASE included, as sent).
    pub supported_versions: Option<Vec<u16>>,
    /// The highest version offered: the top of `supported_versions` (GREASE ignored) or
    /// `legacy_version`.
    pub offered_max: u16,
    /// Whether TLS_FALLBACK_SCSV is in the suite list.
    pub scsv: bool,
    /// Length of the handshake message, including its 4-byte header.
    pub hello_len: usize,
    /// Number of cipher suites (SCSVs included).
    pub cipher_count: usize,
    /// The server name (SNI), if sent.
    pub sni: Option<String>,
    /// Extension types, in order.
    pub extensions: Vec<u16>,
    /// The `supported_groups` list, in order (GREASE included, as sent); empty if absent.
    pub supported_groups: Vec<u16>,
    /// The `key_share` entries, in order (GREASE included, as sent); empty if absent.
    pub key_shares: Vec<KeyShareEntry>,
}

impl ClientHelloInfo {
    /// Whether the hello carries a key share of `group`.
    pub fn has_key_share(&self, group: u16) -> bool {
        self.key_shares.iter().any(|k| k.group == group)
    }
}

/// Why bytes are not a ClientHello.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// More bytes are needed (the record or the handshake message is cut short).
    #[error("incomplete ClientHello")]
    Incomplete,
    /// Not a TLS handshake record carrying a ClientHello.
    #[error("not a ClientHello: {0}")]
    Invalid(&'static str),
}

/// Reassembles the handshake message from TLS records. Returns the message (header included),
/// the first record's version and how many bytes of `data` it used, or `Incomplete` when more
/// records are needed.
pub fn reassemble_handshake(data: &[u8]) -> Result<(Vec<u8>, u16, usize), HelloError> {
    let mut msg = Vec::new();
    let mut r = Reader::new(data);
    let mut record_version = None;
    loop {
        let mut header = Reader::new(r.take(5).ok_or(HelloError::Incomplete)?);
        let (ty, version, len) = (header.u8(), header.u16(), header.u16());
        let (Some(ty), Some(version), Some(len)) = (ty, version, len) else {
            return Err(HelloError::Incomplete);
        };
        if ty != CT_HANDSHAKE {
            return Err(HelloError::Invalid(
                "the first record is not a handshake record",
            ));
        }
        if version >> 8 != 3 {
            return Err(HelloError::Invalid("the record version is not 3.x"));
        }
        let len = usize::from(len);
        if len == 0 || len > MAX_RECORD {
            return Err(HelloError::Invalid("bad record length"));
        }
        record_version.get_or_insert(version);
        msg.extend_from_slice(r.take(len).ok_or(HelloError::Incomplete)?);
        let mut head = Reader::new(&msg);
        if let (Some(ty), Some(body_len)) = (head.u8(), head.u24()) {
            if ty != HS_CLIENT_HELLO {
                return Err(HelloError::Invalid(
                    "the handshake message is not a ClientHello",
                ));
            }
            let need = 4 + body_len;
            if need > MAX_HELLO {
                return Err(HelloError::Invalid("ClientHello too long"));
            }
            if msg.len() >= need {
                msg.truncate(need);
                let used = data.len() - r.remaining();
                return Ok((msg, record_version.unwrap_or(super::TLS10), used));
            }
        }
    }
}

/// Parses the ClientHello at the start of `data` (one or more TLS records).
pub fn parse_client_hello(data: &[u8]) -> Result<ClientHelloInfo, HelloError> {
    let (msg, record_version, _) = reassemble_handshake(data)?;
    parse_handshake(&msg, record_version)
}

const TRUNCATED: HelloError = HelloError::Invalid("truncated");
const OVERRUN: HelloError = HelloError::Invalid("a length runs past the end");

/// Parses a ClientHello handshake message (4-byte header included).
pub fn parse_handshake(msg: &[u8], record_version: u16) -> Result<ClientHelloInfo, HelloError> {
    let mut r = Reader::new(msg);
    if r.u8().ok_or(TRUNCATED)? != HS_CLIENT_HELLO {
        return Err(HelloError::Invalid("not a ClientHello"));
    }
    let body_len = r.u24().ok_or(TRUNCATED)?;
    let mut r = Reader::new(r.take(body_len).ok_or(OVERRUN)?);
    let legacy_version = r.u16().ok_or(TRUNCATED)?;
    r.take(32).ok_or(OVERRUN)?; // random
    r.vec8().ok_or(OVERRUN)?; // session id
    let suites = Reader::u16_list(r.vec16().ok_or(OVERRUN)?)
        .ok_or(HelloError::Invalid("odd cipher suite list length"))?;
    r.vec8().ok_or(OVERRUN)?; // compression methods
    let mut extensions = Vec::new();
    let mut sni = None;
    let mut supported_versions = None;
    let mut supported_groups = Vec::new();
    let mut key_shares = Vec::new();
    if !r.is_empty() {
        let mut ext = Reader::new(r.vec16().ok_or(OVERRUN)?);
        while !ext.is_empty() {
            let ty = ext.u16().ok_or(TRUNCATED)?;
            let data = ext.vec16().ok_or(OVERRUN)?;
            extensions.push(ty);
            match ty {
                EXT_SERVER_NAME => sni = parse_sni(data),
                EXT_SUPPORTED_VERSIONS => {
                    let list = Reader::new(data).vec8().ok_or(OVERRUN)?;
                    supported_versions = Some(
                        Reader::u16_list(list)
                            .ok_or(HelloError::Invalid("odd supported_versions length"))?,
                    );
                }
                EXT_SUPPORTED_GROUPS => {
                    let list = Reader::new(data).vec16().ok_or(OVERRUN)?;
                    supported_groups = Reader::u16_list(list)
                        .ok_or(HelloError::Invalid("odd supported_groups length"))?;
                }
                EXT_KEY_SHARE => key_shares = parse_key_shares(data)?,
                _ => {}
            }
        }
    }
    let offered_max = supported_versions
        .as_ref()
        .and_then(|l: &Vec<u16>| l.iter().copied().filter(|v| !is_grease(*v)).max())
        .unwrap_or(legacy_version);
    Ok(ClientHelloInfo {
        record_version,
        legacy_version,
        supported_versions,
        offered_max,
        scsv: suites.contains(&FALLBACK_SCSV),
        hello_len: msg.len(),
        cipher_count: suites.len(),
        sni,
        extensions,
        supported_groups,
        key_shares,
    })
}

/// The entries of a ClientHello's `key_share` extension data (`KeyShareClientHello`: a 16-bit
/// length, then group, 16-bit key length and key, repeated to fill it exactly).
fn parse_key_shares(data: &[u8]) -> Result<Vec<KeyShareEntry>, HelloError> {
    let mut outer = Reader::new(data);
    let mut list = Reader::new(outer.vec16().ok_or(OVERRUN)?);
    if !outer.is_empty() {
        return Err(HelloError::Invalid("bytes after the key_share list"));
    }
    let mut shares = Vec::new();
    while !list.is_empty() {
        let group = list.u16().ok_or(TRUNCATED)?;
        let key = list.vec16().ok_or(OVERRUN)?;
        shares.push(KeyShareEntry {
            group,
            key_len: key.len(),
        });
    }
    Ok(shares)
}

fn parse_sni(data: &[u8]) -> Option<String> {
    let mut list = Reader::new(Reader::new(data).vec16()?);
    while !list.is_empty() {
        let ty = list.u8()?;
        let name = list.vec16()?;
        if ty == 0 {
            return std::str::from_utf8(name).ok().map(str::to_string);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal hand-made ClientHello: TLS 1.2 legacy version, two suites, SNI and
    /// supported_versions [GREASE, 1.3, 1.2].
    fn sample() -> Vec<u8> {
        let mut exts = Vec::new();
        let name = b"pay.example";
        let mut sni = Vec::new();
        sni.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        sni.push(0);
        sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
        sni.extend_from_slice(name);
        exts.extend_from_slice(&0u16.to_be_bytes());
        exts.extend_from_slice(&(sni.len() as u16).to_be_bytes());
        exts.extend_from_slice(&sni);
        exts.extend_from_slice(&43u16.to_be_bytes());
        exts.extend_from_slice(&7u16.to_be_bytes());
        exts.extend_from_slice(&[6, 0x3a, 0x3a, 3, 4, 3, 3]);
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 4, 0x13, 0x01, 0x56, 0x00]);
        body.extend_from_slice(&[1, 0]);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut msg = vec![1, 0];
        msg.extend_from_slice(&(body.len() as u16).to_be_bytes());
        msg.extend_from_slice(&body);
        let mut rec = vec![22, 3, 1];
        rec.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        rec.extend_from_slice(&msg);
        rec
    }

    #[test]
    fn parses_versions_scsv_sni_and_length() {
        let rec = sample();
        let h = parse_client_hello(&rec).unwrap();
        assert_eq!(h.legacy_version, 0x0303);
        assert_eq!(h.offered_max, 0x0304);
        assert!(h.scsv);
        assert_eq!(h.cipher_count, 2);
        assert_eq!(h.sni.as_deref(), Some("pay.example"));
        assert_eq!(h.hello_len, rec.len() - 5);
        assert_eq!(h.extensions, vec![0, 43]);
    }

    /// `sample()` with three more extensions: supported_groups [GREASE, 0x11ec, x25519] and a
    /// key_share of [GREASE (1 byte), 0x11ec (1216 bytes), x25519 (32 bytes)], then
    /// `extra` as the key_share's last bytes (inside the extension, outside its list).
    fn sample_with_shares(extra: &[u8]) -> Vec<u8> {
        let mut groups = vec![0, 6, 0x2a, 0x2a, 0x11, 0xec, 0x00, 0x1d];
        let mut shares = Vec::new();
        for (group, len) in [(0x2a2au16, 1usize), (0x11ec, 1216), (0x001d, 32)] {
            shares.extend_from_slice(&group.to_be_bytes());
            shares.extend_from_slice(&(len as u16).to_be_bytes());
            shares.extend(std::iter::repeat_n(0x42, len));
        }
        let mut ks = (shares.len() as u16).to_be_bytes().to_vec();
        ks.extend_from_slice(&shares);
        ks.extend_from_slice(extra);
        let mut exts = Vec::new();
        exts.extend_from_slice(&10u16.to_be_bytes());
        exts.extend_from_slice(&(groups.len() as u16).to_be_bytes());
        exts.append(&mut groups);
        exts.extend_from_slice(&51u16.to_be_bytes());
        exts.extend_from_slice(&(ks.len() as u16).to_be_bytes());
        exts.extend_from_slice(&ks);
        // Splice the new extensions after sample()'s: fix the extensions, handshake and
        // record lengths.
        let mut rec = sample();
        // Record and handshake headers, version, random, session id, suites, compression.
        let ext_len_at = 5 + 4 + 2 + 32 + 1 + (2 + 4) + 2;
        let old = u16::from_be_bytes([rec[ext_len_at], rec[ext_len_at + 1]]) as usize;
        rec[ext_len_at..ext_len_at + 2].copy_from_slice(&((old + exts.len()) as u16).to_be_bytes());
        rec.extend_from_slice(&exts);
        let hs_len = rec.len() - 9;
        rec[6..9].copy_from_slice(&(hs_len as u32).to_be_bytes()[1..]);
        let rec_len = rec.len() - 5;
        rec[3..5].copy_from_slice(&(rec_len as u16).to_be_bytes());
        rec
    }

    #[test]
    fn records_supported_groups_and_key_shares_in_order_with_grease() {
        let rec = sample_with_shares(&[]);
        let h = parse_client_hello(&rec).unwrap();
        assert_eq!(h.extensions, vec![0, 43, 10, 51]);
        assert_eq!(h.supported_groups, vec![0x2a2a, 0x11ec, 0x001d]);
        let shares: Vec<(u16, usize)> = h.key_shares.iter().map(|k| (k.group, k.key_len)).collect();
        assert_eq!(shares, vec![(0x2a2a, 1), (0x11ec, 1216), (0x001d, 32)]);
        assert!(h.has_key_share(super::super::GROUP_X25519MLKEM768));
        assert!(!h.has_key_share(0x0017));
        assert_eq!(h.hello_len, rec.len() - 5);
        assert!(h.hello_len > 1216 + 32);
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(json["key_shares"][1]["group"], 0x11ec);
        assert_eq!(json["key_shares"][1]["key_len"], 1216);
        assert_eq!(json["supported_groups"][2], 0x001d);
    }

    #[test]
    fn a_hello_without_groups_has_empty_lists() {
        let h = parse_client_hello(&sample()).unwrap();
        assert!(h.supported_groups.is_empty());
        assert!(h.key_shares.is_empty());
    }

    #[test]
    fn a_malformed_key_share_or_group_list_is_an_error() {
        assert_eq!(
            parse_client_hello(&sample_with_shares(&[0])),
            Err(HelloError::Invalid("bytes after the key_share list"))
        );
        // The x25519 entry announces 33 bytes, 32 follow: it overruns its list.
        let mut rec = sample_with_shares(&[]);
        let at = rec.len() - 32 - 2;
        rec[at..at + 2].copy_from_slice(&33u16.to_be_bytes());
        assert_eq!(parse_client_hello(&rec), Err(OVERRUN));
        // supported_groups of 5 bytes: odd.
        let mut rec = sample_with_shares(&[]);
        let groups = rec.windows(4).position(|w| w == [0, 10, 0, 8]).unwrap();
        rec[groups + 4..groups + 6].copy_from_slice(&5u16.to_be_bytes());
        assert_eq!(
            parse_client_hello(&rec),
            Err(HelloError::Invalid("odd supported_groups length"))
        );
    }

    #[test]
    fn every_prefix_and_corruption_of_a_hello_with_key_shares_is_an_error_not_a_panic() {
        let rec = sample_with_shares(&[]);
        for n in 0..rec.len() {
            assert!(parse_client_hello(&rec[..n]).is_err(), "prefix {n}");
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..5_000 {
            let mut bytes = rec.clone();
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                // Corrupt the last 1,300 bytes: groups and key shares.
                let i = bytes.len() - 1 - (seed as usize) % 1300;
                bytes[i] = (seed >> 32) as u8;
            }
            if let Ok(h) = parse_client_hello(&bytes) {
                let keys: usize = h.key_shares.iter().map(|k| k.key_len + 4).sum();
                assert!(keys <= h.hello_len);
            }
        }
    }

    #[test]
    fn a_hello_split_across_records_is_reassembled() {
        let rec = sample();
        let msg = &rec[5..];
        let (a, b) = msg.split_at(10);
        let mut two = Vec::new();
        for part in [a, b] {
            two.extend_from_slice(&[22, 3, 1]);
            two.extend_from_slice(&(part.len() as u16).to_be_bytes());
            two.extend_from_slice(part);
        }
        assert_eq!(
            parse_client_hello(&two).unwrap(),
            parse_client_hello(&rec).unwrap()
        );
    }

    #[test]
    fn every_prefix_and_every_corruption_is_an_error_not_a_panic() {
        let rec = sample();
        for n in 0..rec.len() {
            assert!(parse_client_hello(&rec[..n]).is_err(), "prefix {n}");
        }
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            let mut bytes = rec.clone();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = (seed as usize) % bytes.len();
                bytes[i] = (seed >> 32) as u8;
            }
            let _ = parse_client_hello(&bytes);
        }
        assert_eq!(
            parse_client_hello(b"GET / HTTP/1.1\r\n"),
            Err(HelloError::Invalid(
                "the first record is not a handshake record"
            ))
        );
    }
}
