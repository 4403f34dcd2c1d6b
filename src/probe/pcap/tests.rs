//! Unit tests of the pcapng writer: the file's blocks, each packet's checksums and the
//! sequence numbers of each rebuilt connection, read back with a small parser of their own.

use super::*;
use crate::probe::capture::Event;

fn exchange(client: &str, server: &str, events: Vec<EventKind>) -> Exchange {
    let mut x = Exchange::new(client.parse().unwrap(), server.parse().unwrap(), 1_000_000);
    for (i, kind) in events.into_iter().enumerate() {
        let at_us = 1_000_100 + 1_000 * i as u64;
        x.events.push(Event { at_us, kind });
    }
    x
}

/// Each block of the file: (type, body and options), after checking both length fields.
fn blocks(file: &[u8]) -> Vec<(u32, &[u8])> {
    let mut out = Vec::new();
    let mut rest = file;
    while !rest.is_empty() {
        let kind = u32::from_le_bytes(rest[0..4].try_into().unwrap());
        let len = u32::from_le_bytes(rest[4..8].try_into().unwrap()) as usize;
        assert!(
            len % 4 == 0 && len >= 12 && len <= rest.len(),
            "block length {len}"
        );
        let trailer = u32::from_le_bytes(rest[len - 4..len].try_into().unwrap()) as usize;
        assert_eq!(trailer, len, "the two lengths of a block agree");
        out.push((kind, &rest[8..len - 4]));
        rest = &rest[len..];
    }
    out
}

/// The comment option after `skip` bytes of a block body, if any.
fn comment(body: &[u8], skip: usize) -> Option<String> {
    let mut opts = &body[skip..];
    while opts.len() >= 4 {
        let code = u16::from_le_bytes([opts[0], opts[1]]);
        let len = u16::from_le_bytes([opts[2], opts[3]]) as usize;
        if code == OPT_COMMENT {
            return Some(String::from_utf8(opts[4..4 + len].to_vec()).unwrap());
        }
        opts = &opts[4 + len.div_ceil(4) * 4..];
    }
    None
}

/// The packets of a file, with their times and comments.
fn packets_of(file: &[u8]) -> Vec<(u64, Vec<u8>, Option<String>)> {
    blocks(file)
        .into_iter()
        .filter(|(kind, _)| *kind == EPB)
        .map(|(_, b)| {
            let word = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
            let at = (u64::from(word(4)) << 32) | u64::from(word(8));
            let len = word(12) as usize;
            assert_eq!(word(16) as usize, len);
            (
                at,
                b[20..20 + len].to_vec(),
                comment(b, 20 + len.div_ceil(4) * 4),
            )
        })
        .collect()
}

/// A decoded segment: (from port, seq, ack, flags, payload), after checking checksums.
fn tcp(packet: &[u8]) -> (u16, u32, u32, u8, Vec<u8>) {
    let (header, pseudo_len) = match packet[0] >> 4 {
        4 => {
            assert_eq!(checksum(&[&packet[..20]]), 0, "IPv4 header checksum");
            assert_eq!(
                u16::from_be_bytes([packet[2], packet[3]]) as usize,
                packet.len()
            );
            (20, 8)
        }
        6 => {
            assert_eq!(
                u16::from_be_bytes([packet[4], packet[5]]) as usize,
                packet.len() - 40
            );
            (40, 32)
        }
        v => panic!("IP version {v}"),
    };
    let t = &packet[header..];
    let mut pseudo = packet[header - pseudo_len..header].to_vec();
    if header == 20 {
        pseudo.extend_from_slice(&[0, 6]);
        pseudo.extend_from_slice(&(t.len() as u16).to_be_bytes());
    } else {
        pseudo.extend_from_slice(&(t.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 6]);
    }
    assert_eq!(checksum(&[&pseudo, t]), 0, "TCP checksum");
    let word = |i: usize| u32::from_be_bytes(t[i..i + 4].try_into().unwrap());
    (
        u16::from_be_bytes([t[0], t[1]]),
        word(4),
        word(8),
        t[13],
        t[20..].to_vec(),
    )
}

/// Every segment's seq is where its side left off; every ACK acknowledges all the other
/// side sent. Returns each segment's (from client, flags, payload length).
fn check_continuity(file: &[u8], client_port: u16) -> Vec<(bool, u8, usize)> {
    let (mut next_c, mut next_s) = (None::<u32>, None::<u32>);
    let mut out = Vec::new();
    for (_, p, _) in packets_of(file) {
        let (from, seq, ack, flags, payload) = tcp(&p);
        let from_client = from == client_port;
        let (mine, theirs) = if from_client {
            (&mut next_c, next_s)
        } else {
            (&mut next_s, next_c)
        };
        if let Some(expect) = *mine {
            assert_eq!(seq, expect, "seq continues");
        }
        if flags & ACK != 0 {
            assert_eq!(Some(ack), theirs, "ack is the other side's next seq");
        }
        let used = payload.len() as u32 + u32::from(flags & (SYN | FIN) != 0);
        *mine = Some(seq.wrapping_add(used));
        out.push((from_client, flags, payload.len()));
    }
    out
}

#[test]
fn the_file_is_one_little_endian_section_with_a_raw_ip_interface() {
    let x = exchange(
        "127.0.0.1:40000",
        "127.0.0.1:8443",
        vec![EventKind::Connected],
    );
    let file = pcapng(&[("baseline", &x)], "target 127.0.0.1:8443");
    let blocks = blocks(&file);
    let kinds: Vec<u32> = blocks.iter().map(|b| b.0).collect();
    assert_eq!(kinds, [SHB, IDB, EPB, EPB, EPB]);
    assert_eq!(
        blocks[0].1[..4],
        [0x4D, 0x3C, 0x2B, 0x1A],
        "byte-order magic, little-endian"
    );
    assert_eq!(blocks[0].1[4..8], [1, 0, 0, 0], "version 1.0");
    assert_eq!(blocks[1].1[..2], 101u16.to_le_bytes(), "LINKTYPE_RAW");
    let note = comment(blocks[0].1, 16).unwrap();
    for words in [
        "Rebuilt from the bytes each socket wrote and read, with the write boundaries kept",
        "not a kernel capture",
        "synthesized",
        "tls-fallback probe",
        "-d tcp.port==8443,tls",
        "Decode As",
        "\n\ntarget 127.0.0.1:8443",
    ] {
        assert!(note.contains(words), "{words:?} in {note}");
    }
    assert!(
        pcapng(&[], "").len() > 100,
        "no exchange: the section and interface only"
    );
}

#[test]
fn writes_stay_segments_and_numbers_continue_over_ipv4() {
    let x = exchange(
        "127.0.0.1:40000",
        "127.0.0.1:8443",
        vec![
            EventKind::Connected,
            EventKind::Sent(vec![0x16; 300]),
            EventKind::Sent(vec![0x16; 217]),
            EventKind::Received(vec![0x15; 7]),
            EventKind::PeerClosed,
            EventKind::ClientClosed,
        ],
    );
    let file = pcapng(&[("split_hello", &x)], "");
    let segs = check_continuity(&file, 40000);
    let data: Vec<(bool, usize)> = segs
        .iter()
        .filter(|s| s.2 > 0)
        .map(|s| (s.0, s.2))
        .collect();
    assert_eq!(data, [(true, 300), (true, 217), (false, 7)]);
    let flags: Vec<u8> = segs.iter().map(|s| s.1).collect();
    let (pa, fa) = (PSH | ACK, FIN | ACK);
    assert_eq!(
        flags,
        [SYN, SYN | ACK, ACK, pa, pa, pa, ACK, fa, ACK, fa, ACK]
    );
    let packets = packets_of(&file);
    assert_eq!(packets[0].0, 1_000_000, "the SYN at the connect's start");
    assert_eq!(packets[1].0, 1_000_100, "the SYN/ACK at Connected");
    assert_eq!(
        packets[0].2.as_deref(),
        Some("split_hello: 127.0.0.1:40000 -> 127.0.0.1:8443")
    );
    assert_eq!(
        packets[3].2.as_deref(),
        Some("split_hello: write 1 of 2, 300 bytes")
    );
    assert!(packets[3].1.starts_with(&[0x45]), "IPv4");
}

#[test]
fn ipv6_resets_and_timeouts_end_their_connections() {
    let reset = exchange(
        "[::1]:40001",
        "[::1]:443",
        vec![
            EventKind::Connected,
            EventKind::Sent(vec![1; 1550]),
            EventKind::PeerReset,
            EventKind::ClientClosed,
        ],
    );
    let file = pcapng(&[("long_hello", &reset)], "");
    let segs = check_continuity(&file, 40001);
    assert_eq!(
        segs.last(),
        Some(&(false, RST | ACK, 0)),
        "nothing after the RST"
    );
    assert_eq!(segs.len(), 5);
    assert!(packets_of(&file).iter().all(|p| p.1[0] >> 4 == 6), "IPv6");
    assert!(comment(blocks(&file)[0].1, 16)
        .unwrap()
        .contains("port 443 is decoded"));

    let hang = exchange(
        "[::1]:40002",
        "[::1]:8443",
        vec![
            EventKind::Connected,
            EventKind::Sent(vec![1; 100]),
            EventKind::TimedOut,
        ],
    );
    let file = pcapng(&[("pq_key_share", &hang)], "");
    let segs = check_continuity(&file, 40002);
    assert_eq!(segs[segs.len() - 2], (true, FIN | ACK, 0));
    let note = packets_of(&file)[segs.len() - 2].2.clone().unwrap();
    assert_eq!(
        note,
        "pq_key_share: timed out: no answer 1 ms after the last write"
    );
}

#[test]
fn long_reads_are_split_and_odd_inputs_never_panic() {
    let x = exchange(
        "10.0.0.1:40003",
        "[2001:db8::1]:8443",
        vec![
            EventKind::Sent(vec![]),
            EventKind::Received(vec![7; 2 * MAX_PAYLOAD + 5]),
            EventKind::Sent(vec![9; MAX_PAYLOAD + 1]),
            EventKind::PeerClosed,
            EventKind::PeerClosed,
        ],
    );
    let file = pcapng(&[("odd", &x)], &"é".repeat(40_000));
    let segs = check_continuity(&file, 40003);
    let data: Vec<(bool, usize)> = segs
        .iter()
        .filter(|s| s.2 > 0)
        .map(|s| (s.0, s.2))
        .collect();
    let m = MAX_PAYLOAD;
    assert_eq!(
        data,
        [(false, m), (false, m), (false, 5), (true, m), (true, 1)]
    );
    assert_eq!(
        segs.iter().filter(|s| s.1 & FIN != 0).count(),
        1,
        "one FIN per side"
    );
    let packets = packets_of(&file);
    assert!(
        packets.iter().all(|p| p.1[0] >> 4 == 6),
        "mixed families: IPv4-mapped IPv6"
    );
    assert_eq!(
        packets[0].0, packets[1].0,
        "no Connected: the handshake at the start"
    );
    let note = comment(blocks(&file)[0].1, 16).unwrap();
    assert!(
        note.len() <= MAX_COMMENT && note.ends_with('é'),
        "cut at a character"
    );
}
