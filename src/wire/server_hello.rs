//! Parser of a server's first flight (pure, no I/O, never panics).
//!
//! The probe and the connector only need the first decision a server makes about a
//! ClientHello: a ServerHello (or HelloRetryRequest) and the version and suite it picked, an
//! alert, or bytes that are not TLS at all. Everything here reads through the bounded [`Reader`]: any input, truncated,
//! hostile or random, yields an answer and never a panic or an unbounded allocation.

use super::{
    alert, Reader, CT_ALERT, CT_HANDSHAKE, EXT_SUPPORTED_VERSIONS, HRR_RANDOM, HS_SERVER_HELLO,
    MAX_RECORD,
};

/// Largest ServerHello we accept to wait for; real ones are under 1 KiB.
const MAX_SERVER_HELLO: usize = 16_384;

/// Whether `head` (the first bytes a server sent) starts with a ServerHello, not a
/// HelloRetryRequest (a ServerHello with a fixed random: the server still waits for a hello it
/// likes). Needs the record header, the handshake header, the version and at least four bytes
/// of the random; compares as much of the random as `head` holds.
///
/// ```
/// use tls_fallback::wire::{is_server_hello, HRR_RANDOM};
///
/// let mut head = vec![22, 3, 3, 0, 90, 2, 0, 0, 86, 3, 3];
/// head.extend_from_slice(&[7, 7, 7, 7]);
/// assert!(is_server_hello(&head));
/// head.truncate(11);
/// head.extend_from_slice(&HRR_RANDOM[..4]);
/// assert!(!is_server_hello(&head));
/// ```
pub fn is_server_hello(head: &[u8]) -> bool {
    let mut r = Reader::new(head);
    if server_hello_version_of(&mut r).is_none() {
        return false;
    }
    let random = r.rest();
    let seen = random.len().min(HRR_RANDOM.len());
    seen >= 4 && random.get(..seen) != HRR_RANDOM.get(..seen)
}

/// The `legacy_version` of the ServerHello (or HelloRetryRequest) at the start of `head`, if
/// `head` starts with one and holds that far (11 bytes).
///
/// ```
/// use tls_fallback::wire::server_hello_version;
///
/// assert_eq!(server_hello_version(&[22, 3, 3, 0, 90, 2, 0, 0, 86, 3, 1]), Some(0x0301));
/// assert_eq!(server_hello_version(&[21, 3, 3, 0, 2, 2, 70]), None);
/// ```
pub fn server_hello_version(head: &[u8]) -> Option<u16> {
    server_hello_version_of(&mut Reader::new(head))
}

/// Reads a handshake record header, a ServerHello header and its version.
fn server_hello_version_of(r: &mut Reader<'_>) -> Option<u16> {
    let record_type = r.u8()?;
    r.take(4)?; // record version and length
    let message_type = r.u8()?;
    r.u24()?;
    let version = r.u16()?;
    (record_type == CT_HANDSHAKE && message_type == HS_SERVER_HELLO).then_some(version)
}

/// What the server's first bytes say about the ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerAnswer {
    /// A ServerHello or HelloRetryRequest.
    ServerHello {
        /// Negotiated version (the supported_versions selection if present, else legacy_version).
        version: u16,
        /// Selected cipher suite.
        cipher: u16,
        /// True when the message is a HelloRetryRequest.
        hello_retry: bool,
    },
    /// A plaintext alert record.
    Alert {
        /// Alert level (1 warning, 2 fatal).
        level: u8,
        /// Alert description (e.g. 70 protocol_version, 86 inappropriate_fallback).
        description: u8,
    },
    /// Bytes that are not a TLS record, or a record that is neither a ServerHello nor an alert.
    Garbage,
    /// A plausible beginning: more bytes are needed to decide.
    Incomplete,
}

/// Decides what `bytes` (everything the server sent so far) answer to a ClientHello.
pub fn parse_server_answer(bytes: &[u8]) -> ServerAnswer {
    let Some(&content_type) = bytes.first() else {
        return ServerAnswer::Incomplete;
    };
    if content_type != CT_ALERT && content_type != CT_HANDSHAKE {
        return ServerAnswer::Garbage;
    }
    if let Some(&major) = bytes.get(1) {
        if major != 3 {
            return ServerAnswer::Garbage;
        }
    }
    if content_type == CT_ALERT {
        return parse_alert(bytes);
    }
    parse_handshake(bytes)
}

/// One record header: (content type, payload length); `None` if fewer than 5 bytes.
fn record_header(bytes: &[u8]) -> Option<(u8, usize)> {
    let mut r = Reader::new(bytes);
    let ct = r.u8()?;
    let _version = r.u16()?;
    let len = usize::from(r.u16()?);
    Some((ct, len))
}

fn parse_alert(bytes: &[u8]) -> ServerAnswer {
    let Some((_, len)) = record_header(bytes) else {
        return ServerAnswer::Incomplete;
    };
    if !(2..=MAX_RECORD).contains(&len) {
        return ServerAnswer::Garbage;
    }
    match (bytes.get(5), bytes.get(6)) {
        (Some(&level), Some(&description)) => {
            if level == alert::LEVEL_WARNING || level == alert::LEVEL_FATAL {
                ServerAnswer::Alert { level, description }
            } else {
                ServerAnswer::Garbage
            }
        }
        _ => ServerAnswer::Incomplete,
    }
}

/// Reassembles the first handshake message across consecutive handshake records.
fn parse_handshake(bytes: &[u8]) -> ServerAnswer {
    let mut msg: Vec<u8> = Vec::new();
    let mut rest = bytes;
    loop {
        let Some((ct, len)) = record_header(rest) else {
            return partial_verdict(&msg, rest);
        };
        if ct != CT_HANDSHAKE || len == 0 || len > MAX_RECORD {
            return ServerAnswer::Garbage;
        }
        if rest.get(1) != Some(&3) {
            return ServerAnswer::Garbage;
        }
        let end = 5usize.saturating_add(len);
        let Some(payload) = rest.get(5..end) else {
            // Truncated record: judge what we have of the message so far.
            let available = rest.get(5..).unwrap_or(&[]);
            let mut partial = msg.clone();
            partial.extend_from_slice(available);
            return match message_status(&partial) {
                MessageStatus::Complete(m) => parse_server_hello(m),
                MessageStatus::Bad => ServerAnswer::Garbage,
                MessageStatus::Short => ServerAnswer::Incomplete,
            };
        };
        msg.extend_from_slice(payload);
        match message_status(&msg) {
            MessageStatus::Complete(m) => return parse_server_hello(m),
            MessageStatus::Bad => return ServerAnswer::Garbage,
            MessageStatus::Short => {}
        }
        rest = rest.get(end..).unwrap_or(&[]);
        if msg.len() > MAX_SERVER_HELLO + 4 {
            return ServerAnswer::Garbage;
        }
    }
}

/// Verdict when the next record header is not complete yet.
fn partial_verdict(msg: &[u8], rest: &[u8]) -> ServerAnswer {
    if let Some(&ct) = rest.first() {
        if ct != CT_HANDSHAKE {
            return ServerAnswer::Garbage;
        }
    }
    if let Some(&major) = rest.get(1) {
        if major != 3 {
            return ServerAnswer::Garbage;
        }
    }
    match message_status(msg) {
        MessageStatus::Bad => ServerAnswer::Garbage,
        _ => ServerAnswer::Incomplete,
    }
}

enum MessageStatus<'a> {
    /// The whole first handshake message (header included).
    Complete(&'a [u8]),
    /// Not a ServerHello, or an absurd length.
    Bad,
    /// Need more bytes.
    Short,
}

fn message_status(msg: &[u8]) -> MessageStatus<'_> {
    let mut r = Reader::new(msg);
    match r.u8() {
        None => return MessageStatus::Short,
        Some(HS_SERVER_HELLO) => {}
        Some(_) => return MessageStatus::Bad,
    }
    let Some(len) = r.u24() else {
        return MessageStatus::Short;
    };
    if len > MAX_SERVER_HELLO {
        return MessageStatus::Bad;
    }
    match msg.get(..len.saturating_add(4)) {
        Some(m) => MessageStatus::Complete(m),
        None => MessageStatus::Short,
    }
}

/// Parses a complete ServerHello handshake message (4-byte header included).
fn parse_server_hello(msg: &[u8]) -> ServerAnswer {
    parse_server_hello_inner(msg).unwrap_or(ServerAnswer::Garbage)
}

fn parse_server_hello_inner(msg: &[u8]) -> Option<ServerAnswer> {
    let mut r = Reader::new(msg.get(4..)?);
    let legacy_version = r.u16()?;
    let random = r.take(32)?;
    let sid_len = usize::from(r.u8()?);
    if sid_len > 32 {
        return None;
    }
    r.take(sid_len)?;
    let cipher = r.u16()?;
    let _compression = r.u8()?;
    let hello_retry = random == HRR_RANDOM;
    let mut version = legacy_version;
    if !r.is_empty() {
        let ext_len = usize::from(r.u16()?);
        let mut exts = Reader::new(r.take(ext_len)?);
        while !exts.is_empty() {
            let ext_type = exts.u16()?;
            let len = usize::from(exts.u16()?);
            let data = exts.take(len)?;
            if ext_type == EXT_SUPPORTED_VERSIONS {
                let mut d = Reader::new(data);
                version = d.u16()?;
                if !d.is_empty() {
                    return None;
                }
            }
        }
    }
    Some(ServerAnswer::ServerHello {
        version,
        cipher,
        hello_retry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TLS 1.3 ServerHello captured from `openssl s_server` 3.0.19 (no version flag) answering
    /// this crate's `HelloSpec::up_to(TLS13)`, followed by the first bytes of ChangeCipherSpec
    /// and an encrypted record, cut at 115 bytes.
    const TLS13_SERVER_HELLO: &str = "\
        160303005a0200005603036f777534c9f90a29283861e99863ba65d416795b056cbb405a10939a294c249c00\
        130100002e002b0002030400330024001d0020d1c8cbe9a0f5cf6ae728373d6a02b13912d60657539ed823\
        e0ab61bda7e90a54140303000101170303001739b2827b89bbe51e04";
    /// Length of the ServerHello record alone in [`TLS13_SERVER_HELLO`].
    const TLS13_SERVER_HELLO_RECORD: usize = 95;

    /// A TLS 1.0 ServerHello captured from `openssl s_server -tls1 -cipher DEFAULT:@SECLEVEL=0`
    /// answering `HelloSpec::legacy(TLS10)`, then the start of the Certificate record.
    const TLS10_SERVER_HELLO: &str = "\
        160301005d0200005903014c790015efcafdb0b1036000837a149a4438b1efd5faba30c3f0b99708d85c80\
        201da538f6142c6ba13c1f4d56153a357c292924eae88d90d8c70a200072dc681ac013000011ff01000100\
        000b0004030001020017000016030103170b00031300";

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    fn server_hello(version: u16, random: [u8; 32], exts: &[u8], cipher: u16) -> Vec<u8> {
        let mut body = version.to_be_bytes().to_vec();
        body.extend_from_slice(&random);
        body.push(0);
        body.extend_from_slice(&cipher.to_be_bytes());
        body.push(0);
        if !exts.is_empty() {
            body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
            body.extend_from_slice(exts);
        }
        let mut hs = vec![2, 0, (body.len() >> 8) as u8, body.len() as u8];
        hs.extend_from_slice(&body);
        let mut rec = vec![22, 3, 3, (hs.len() >> 8) as u8, hs.len() as u8];
        rec.extend_from_slice(&hs);
        rec
    }

    /// (head, is a ServerHello, its legacy_version): the connector sees at most 15 bytes.
    #[test]
    fn server_hello_checks_on_the_first_bytes() {
        let sh = |version: u16, random: &[u8]| {
            let mut h = vec![22, 3, 3, 0, 90, 2, 0, 0, 86];
            h.extend_from_slice(&version.to_be_bytes());
            h.extend_from_slice(random);
            h
        };
        let full_hrr = sh(0x0303, &HRR_RANDOM);
        let mut almost_hrr = full_hrr.clone();
        almost_hrr[11 + 31] ^= 1;
        let rows: Vec<(&str, Vec<u8>, bool, Option<u16>)> = vec![
            (
                "TLS 1.2 ServerHello, 15 bytes",
                sh(0x0303, &[1, 2, 3, 4]),
                true,
                Some(0x0303),
            ),
            (
                "TLS 1.0 ServerHello",
                sh(0x0301, &[0; 4]),
                true,
                Some(0x0301),
            ),
            (
                "impossible version",
                sh(0x0304, &[9; 4]),
                true,
                Some(0x0304),
            ),
            (
                "HelloRetryRequest, 15 bytes",
                sh(0x0303, &HRR_RANDOM[..4]),
                false,
                Some(0x0303),
            ),
            (
                "HelloRetryRequest, whole random",
                full_hrr,
                false,
                Some(0x0303),
            ),
            (
                "last byte of the random differs",
                almost_hrr,
                true,
                Some(0x0303),
            ),
            (
                "random cut at 3 bytes",
                sh(0x0303, &[1, 2, 3]),
                false,
                Some(0x0303),
            ),
            (
                "version cut",
                vec![22, 3, 3, 0, 90, 2, 0, 0, 86, 3],
                false,
                None,
            ),
            ("alert record", vec![21, 3, 3, 0, 2, 2, 70], false, None),
            (
                "certificate first",
                vec![22, 3, 3, 0, 9, 11, 0, 0, 5, 3, 3, 1, 2, 3, 4],
                false,
                None,
            ),
            ("not TLS", b"HTTP/1.1 400 Bad".to_vec(), false, None),
            ("nothing", vec![], false, None),
        ];
        for (name, head, is_sh, version) in rows {
            assert_eq!(is_server_hello(&head), is_sh, "{name}");
            assert_eq!(server_hello_version(&head), version, "{name}");
        }
    }

    #[test]
    fn captured_tls13_server_hello_reports_tls13() {
        let bytes = hex(TLS13_SERVER_HELLO);
        assert_eq!(
            parse_server_answer(&bytes),
            ServerAnswer::ServerHello {
                version: 0x0304,
                cipher: 0x1301,
                hello_retry: false
            }
        );
    }

    #[test]
    fn captured_tls10_server_hello_reports_tls10() {
        let bytes = hex(TLS10_SERVER_HELLO);
        assert_eq!(
            parse_server_answer(&bytes),
            ServerAnswer::ServerHello {
                version: 0x0301,
                cipher: 0xc013,
                hello_retry: false
            }
        );
        for n in 0..98 {
            assert_eq!(parse_server_answer(&bytes[..n]), ServerAnswer::Incomplete);
        }
    }

    #[test]
    fn tls12_server_hello_without_extensions_uses_legacy_version() {
        let bytes = server_hello(0x0301, [7; 32], &[], 0xc013);
        let mut more = bytes.clone();
        more.extend_from_slice(&[22, 3, 1, 0, 10, 11]); // start of Certificate
        for b in [&bytes, &more] {
            assert_eq!(
                parse_server_answer(b),
                ServerAnswer::ServerHello {
                    version: 0x0301,
                    cipher: 0xc013,
                    hello_retry: false
                }
            );
        }
    }

    #[test]
    fn hello_retry_request_is_flagged() {
        let exts = [0, 43, 0, 2, 3, 4, 0, 51, 0, 2, 0, 0x17];
        let bytes = server_hello(0x0303, HRR_RANDOM, &exts, 0x1302);
        assert_eq!(
            parse_server_answer(&bytes),
            ServerAnswer::ServerHello {
                version: 0x0304,
                cipher: 0x1302,
                hello_retry: true
            }
        );
    }

    #[test]
    fn server_hello_split_across_records_is_reassembled() {
        let one = server_hello(0x0303, [1; 32], &[0xff, 0x01, 0, 1, 0], 0xc02f);
        let hs = &one[5..];
        let (a, b) = hs.split_at(10);
        let mut bytes = vec![22, 3, 3, 0, a.len() as u8];
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(&[22, 3, 3, 0, b.len() as u8]);
        bytes.extend_from_slice(b);
        assert_eq!(parse_server_answer(&bytes), parse_server_answer(&one));
        for n in 0..bytes.len() {
            assert_eq!(parse_server_answer(&bytes[..n]), ServerAnswer::Incomplete);
        }
    }

    #[test]
    fn alerts_are_decoded() {
        assert_eq!(
            parse_server_answer(&[21, 3, 3, 0, 2, 2, 70]),
            ServerAnswer::Alert {
                level: 2,
                description: 70
            }
        );
        assert_eq!(
            parse_server_answer(&[21, 3, 1, 0, 2, 2, 86]),
            ServerAnswer::Alert {
                level: 2,
                description: 86
            }
        );
        assert_eq!(
            parse_server_answer(&[21, 3, 3, 0, 2, 2]),
            ServerAnswer::Incomplete
        );
        assert_eq!(
            parse_server_answer(&[21, 3, 3, 0, 0]),
            ServerAnswer::Garbage
        );
    }

    #[test]
    fn non_tls_bytes_are_garbage() {
        assert_eq!(
            parse_server_answer(b"HTTP/1.1 400 Bad"),
            ServerAnswer::Garbage
        );
        assert_eq!(parse_server_answer(b"SSH-2.0"), ServerAnswer::Garbage);
        assert_eq!(parse_server_answer(&[22, 4]), ServerAnswer::Garbage);
        assert_eq!(
            parse_server_answer(&[0x80, 0x2e, 0x04]),
            ServerAnswer::Garbage
        ); // SSLv2
        assert_eq!(parse_server_answer(&[]), ServerAnswer::Incomplete);
        assert_eq!(parse_server_answer(&[22, 3]), ServerAnswer::Incomplete);
        // A handshake record that is not a ServerHello (here: Certificate).
        assert_eq!(
            parse_server_answer(&[22, 3, 3, 0, 4, 11, 0, 0, 0]),
            ServerAnswer::Garbage
        );
        // Application data / change_cipher_spec first.
        assert_eq!(
            parse_server_answer(&[23, 3, 3, 0, 1, 0]),
            ServerAnswer::Garbage
        );
    }

    #[test]
    fn oversized_lengths_are_garbage_not_waits() {
        // Record length above 2^14 + 2048.
        assert_eq!(
            parse_server_answer(&[22, 3, 3, 0xff, 0xff, 2]),
            ServerAnswer::Garbage
        );
        // Handshake length of 16 MiB.
        assert_eq!(
            parse_server_answer(&[22, 3, 3, 0, 4, 2, 0xff, 0xff, 0xff]),
            ServerAnswer::Garbage
        );
        // ServerHello whose session id length says 255.
        let mut sh = server_hello(0x0303, [0; 32], &[], 0xc02f);
        sh[5 + 4 + 2 + 32] = 255;
        assert_eq!(parse_server_answer(&sh), ServerAnswer::Garbage);
        // Extension block longer than the message.
        let mut sh = server_hello(0x0303, [0; 32], &[0, 43, 0, 2, 3, 4], 0x1301);
        let ext_len_at = sh.len() - 8;
        sh[ext_len_at] = 0xff;
        assert_eq!(parse_server_answer(&sh), ServerAnswer::Garbage);
    }

    #[test]
    fn every_prefix_of_a_server_hello_is_incomplete_then_decided() {
        let bytes = hex(TLS13_SERVER_HELLO);
        for n in 0..TLS13_SERVER_HELLO_RECORD {
            assert_eq!(
                parse_server_answer(&bytes[..n]),
                ServerAnswer::Incomplete,
                "prefix {n}"
            );
        }
        for n in TLS13_SERVER_HELLO_RECORD..=bytes.len() {
            assert!(matches!(
                parse_server_answer(&bytes[..n]),
                ServerAnswer::ServerHello {
                    version: 0x0304,
                    ..
                }
            ));
        }
    }

    #[test]
    fn pseudo_random_inputs_never_panic() {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as u8
        };
        let valid = hex(TLS13_SERVER_HELLO);
        for i in 0..5000 {
            let len = usize::from(next()) % 200;
            let mut bytes: Vec<u8> = (0..len).map(|_| next()).collect();
            // Half of the inputs look like TLS so the deep paths get exercised too.
            if i % 2 == 0 && bytes.len() >= 5 {
                bytes[0] = if i % 4 == 0 { 22 } else { 21 };
                bytes[1] = 3;
            }
            let _ = parse_server_answer(&bytes);
            // Mutate one byte of a valid ServerHello, and truncate it.
            let mut m = valid.clone();
            let at = usize::from(next()) % m.len();
            m[at] = next();
            let cut = usize::from(next()) % (m.len() + 1);
            let _ = parse_server_answer(&m[..cut]);
            let _ = parse_server_answer(&m);
        }
    }
}
