//! Parsing of a ClientHello, for the test kit's emulator and for tests: what a hello offers
//! (version, SCSV, length, suites, SNI, extensions). Pure, bounded, never panics.

use serde::Serialize;

use super::{
    is_grease, Reader, CT_HANDSHAKE, EXT_SERVER_NAME, EXT_SUPPORTED_VERSIONS, FALLBACK_SCSV,
    HS_CLIENT_HELLO, MAX_HELLO, MAX_RECORD,
};

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
    })
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
