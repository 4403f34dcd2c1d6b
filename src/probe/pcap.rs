//! The `--pcap` evidence file: a pcapng of every test's connection, rebuilt from the
//! [`Exchange`] records alone (pure, no I/O).
//!
//! The probe has no kernel capture to hand over (that needs root and a capture library), but it
//! knows exactly what each socket wrote and read, and when. This module turns those records
//! into packets Wireshark and tshark decode as TLS: a synthesized TCP handshake, one segment per
//! write of the probe (so a hello written in two writes is two segments, as the box in the path
//! saw it), the server's bytes as it read them, and a FIN or RST where the exchange ended so.
//! Sequence and acknowledgement numbers, IPv4/IPv6 headers and checksums are computed here; the
//! section comment says so, so nobody mistakes the file for a kernel capture.
//!
//! The link type is raw IP (`LINKTYPE_RAW`, 101): one interface carries both IPv4 and IPv6.

use std::net::{IpAddr, SocketAddr};

use super::capture::{EventKind, Exchange};

/// The largest TCP payload one packet carries: an IPv4 packet is at most 65,535 bytes, headers
/// (20 + 20) included. Longer writes and reads are split at this size; shorter ones are kept whole.
pub const MAX_PAYLOAD: usize = 65_535 - 40;
/// The longest comment written (an option's length is a u16); longer ones are cut.
const MAX_COMMENT: usize = 60_000;
const LINKTYPE_RAW: u16 = 101;
const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 1;
const EPB: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const OPT_COMMENT: u16 = 1;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
/// Initial sequence numbers of the synthesized handshakes (Wireshark shows relative numbers).
const CLIENT_ISN: u32 = 0x1000_0000;
const SERVER_ISN: u32 = 0x7000_0000;
/// The name written in the file, as `shb_userappl` and in the section comment.
const TOOL: &str = concat!("tls-fallback probe ", env!("CARGO_PKG_VERSION"));

/// A pcapng file (little-endian, one section, one raw-IP interface) of these exchanges, in
/// order. Each pair is a test's name (`long_hello`) and its connection's record. The section
/// comment always says the file was rebuilt from the bytes each socket wrote and read, names
/// the tool and tells how to decode the servers' ports as TLS; `section_comment` (the target,
/// the command line) is appended when not empty. The first packet of each connection carries
/// the test's name as its comment, each write its number and size, each ending its cause.
///
/// Never panics: writes and reads longer than [`MAX_PAYLOAD`] are split, comments are cut, and
/// an exchange whose two ends differ in family is written as IPv6 (IPv4-mapped addresses).
///
/// ```
/// use tls_fallback::probe::capture::{Event, EventKind, Exchange};
/// use tls_fallback::probe::pcap::pcapng;
///
/// let (probe, server) = ("127.0.0.1:40000".parse().unwrap(), "127.0.0.1:8443".parse().unwrap());
/// let mut x = Exchange::new(probe, server, 1_000);
/// let hello = vec![0x16, 3, 1]; // a ClientHello's first bytes
/// for (at_us, kind) in [
///     (1_100, EventKind::Connected),
///     (1_200, EventKind::Sent(hello)),
///     (1_300, EventKind::PeerReset),
/// ] {
///     x.events.push(Event { at_us, kind });
/// }
/// let file = pcapng(&[("baseline", &x)], "probe 127.0.0.1:8443");
/// assert_eq!(file[..4], [0x0A, 0x0D, 0x0D, 0x0A]);
/// // std::fs::write("probe.pcapng", &file)?; then: tshark -r probe.pcapng -d tcp.port==8443,tls
/// ```
pub fn pcapng(exchanges: &[(&str, &Exchange)], section_comment: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ports: Vec<u16> = exchanges.iter().map(|(_, x)| x.server.port()).collect();
    ports.sort_unstable();
    ports.dedup();
    let mut comment = standard_comment(&ports);
    if !section_comment.is_empty() {
        comment.push_str("\n\n");
        comment.push_str(section_comment);
    }
    let mut opts = Vec::new();
    option(&mut opts, OPT_COMMENT, comment.as_bytes());
    option(&mut opts, SHB_USERAPPL, TOOL.as_bytes());
    let mut body = Vec::new();
    put32(&mut body, BYTE_ORDER_MAGIC);
    body.extend_from_slice(&1u16.to_le_bytes()); // major version
    body.extend_from_slice(&0u16.to_le_bytes()); // minor version
    body.extend_from_slice(&(-1i64).to_le_bytes()); // section length: not given
    block(&mut out, SHB, &body, &opts);

    let mut opts = Vec::new();
    option(&mut opts, IF_NAME, b"probe sockets (rebuilt)");
    let mut body = Vec::new();
    body.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes()); // reserved
    put32(&mut body, 0); // snaplen: no limit
    block(&mut out, IDB, &body, &opts);

    for (name, x) in exchanges {
        for p in packets(name, x) {
            enhanced_packet(&mut out, &p);
        }
    }
    out
}

fn standard_comment(ports: &[u16]) -> String {
    let decode: Vec<String> = ports
        .iter()
        .filter(|&&p| p != 443)
        .map(|p| format!("-d tcp.port=={p},tls"))
        .collect();
    let decode = if decode.is_empty() {
        String::from("(port 443 is decoded as TLS without it)")
    } else {
        decode.join(" ")
    };
    format!(
        "Written by {TOOL}. Rebuilt from the bytes each socket wrote and read, with the write \
         boundaries kept: each write of the probe is one TCP segment, as sent with TCP_NODELAY, \
         and the server's bytes are as the probe read them, with the times the probe recorded. \
         This is not a kernel capture: the TCP handshakes, sequence and acknowledgement numbers, \
         IP headers and checksums are synthesized, and nothing the probe did not read is here. \
         To decode a port other than 443 as TLS: tshark -r FILE {decode}, or in Wireshark \
         Analyze > Decode As..., TCP port, TLS."
    )
}

/// One packet of the file: when, the raw IP bytes, and an optional comment.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Packet {
    at_us: u64,
    data: Vec<u8>,
    comment: Option<String>,
}

/// Writes one Enhanced Packet Block on interface 0.
fn enhanced_packet(out: &mut Vec<u8>, p: &Packet) {
    let len = u32::try_from(p.data.len()).unwrap_or(u32::MAX);
    let mut body = Vec::with_capacity(p.data.len() + 24);
    put32(&mut body, 0); // interface id
    put32(&mut body, (p.at_us >> 32) as u32);
    put32(&mut body, p.at_us as u32);
    put32(&mut body, len); // captured
    put32(&mut body, len); // original
    body.extend_from_slice(&p.data);
    pad4(&mut body);
    let mut opts = Vec::new();
    if let Some(c) = &p.comment {
        option(&mut opts, OPT_COMMENT, c.as_bytes());
    }
    block(out, EPB, &body, &opts);
}

/// A block: type, total length, body (padded), options and their end, total length again.
fn block(out: &mut Vec<u8>, kind: u32, body: &[u8], opts: &[u8]) {
    let end_of_opts = if opts.is_empty() { 0 } else { 4 };
    let total = 12 + body.len() + opts.len() + end_of_opts;
    let total = u32::try_from(total).unwrap_or(u32::MAX);
    put32(out, kind);
    put32(out, total);
    out.extend_from_slice(body);
    pad4(out);
    if !opts.is_empty() {
        out.extend_from_slice(opts);
        put32(out, 0); // opt_endofopt
    }
    put32(out, total);
}

/// One option: code, length, value padded to 4 bytes. Values are cut to [`MAX_COMMENT`] bytes
/// at a UTF-8 boundary (they are all text here).
fn option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    let mut n = value.len().min(MAX_COMMENT);
    while n > 0 && n < value.len() && (value[n] & 0xC0) == 0x80 {
        n -= 1;
    }
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&u16::try_from(n).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&value[..n]);
    pad4(out);
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn pad4(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

/// The packets of one connection: the handshake, the data, the ending.
fn packets(name: &str, x: &Exchange) -> Vec<Packet> {
    let mut c = Conn::new(x);
    let connected = x
        .events
        .iter()
        .find(|e| e.kind == EventKind::Connected)
        .map_or(x.started_us, |e| e.at_us);
    let (from, to) = (x.client, x.server);
    c.seg(
        x.started_us,
        true,
        SYN,
        &[],
        Some(format!("{name}: {from} -> {to}")),
    );
    c.seg(connected, false, SYN | ACK, &[], None);
    c.seg(connected, true, ACK, &[], None);
    let writes = x.segments().len();
    let mut write = 0;
    let mut last_write_us = connected;
    for e in &x.events {
        if c.reset {
            break;
        }
        let at = e.at_us;
        match &e.kind {
            EventKind::Connected => {}
            EventKind::Sent(b) => {
                write += 1;
                last_write_us = at;
                let note = format!("{name}: write {write} of {writes}, {} bytes", b.len());
                c.data(at, true, b, note);
            }
            EventKind::Received(b) => c.data(at, false, b, String::new()),
            EventKind::PeerClosed => c.fin(at, false, format!("{name}: the server closed (FIN)")),
            EventKind::PeerReset => {
                c.seg(
                    at,
                    false,
                    RST | ACK,
                    &[],
                    Some(format!("{name}: the connection was reset (RST)")),
                );
                c.reset = true;
            }
            EventKind::TimedOut => {
                let ms = at.saturating_sub(last_write_us) / 1_000;
                let note = format!("{name}: timed out: no answer {ms} ms after the last write");
                c.fin(at, true, note);
            }
            EventKind::ClientClosed => c.fin(at, true, format!("{name}: the probe closed (FIN)")),
        }
    }
    c.out
}

/// The state of one rebuilt connection.
struct Conn {
    client: SocketAddr,
    server: SocketAddr,
    /// The next sequence number of each side.
    client_seq: u32,
    server_seq: u32,
    ip_id: u16,
    client_fin: bool,
    server_fin: bool,
    reset: bool,
    out: Vec<Packet>,
}

impl Conn {
    fn new(x: &Exchange) -> Conn {
        Conn {
            client: x.client,
            server: x.server,
            client_seq: CLIENT_ISN,
            server_seq: SERVER_ISN,
            ip_id: 0,
            client_fin: false,
            server_fin: false,
            reset: false,
            out: Vec::new(),
        }
    }

    /// One write or read: segments of at most [`MAX_PAYLOAD`], the receiver acknowledging
    /// each of the server's (as its kernel would, so no window fills up).
    fn data(&mut self, at: u64, from_client: bool, bytes: &[u8], note: String) {
        let mut note = (!note.is_empty()).then_some(note);
        for chunk in bytes.chunks(MAX_PAYLOAD) {
            self.seg(at, from_client, PSH | ACK, chunk, note.take());
            if !from_client {
                self.seg(at, true, ACK, &[], None);
            }
        }
    }

    /// A FIN from one side (once), acknowledged by the other.
    fn fin(&mut self, at: u64, from_client: bool, note: String) {
        let done = if from_client {
            &mut self.client_fin
        } else {
            &mut self.server_fin
        };
        if std::mem::replace(done, true) {
            return;
        }
        self.seg(at, from_client, FIN | ACK, &[], Some(note));
        self.seg(at, !from_client, ACK, &[], None);
    }

    /// One segment; advances the sender's sequence number.
    fn seg(&mut self, at: u64, from_client: bool, flags: u8, payload: &[u8], note: Option<String>) {
        let (src, dst, seq, ack) = if from_client {
            (self.client, self.server, self.client_seq, self.server_seq)
        } else {
            (self.server, self.client, self.server_seq, self.client_seq)
        };
        let ack = if flags & ACK != 0 { ack } else { 0 };
        let tcp = tcp_segment(src, dst, seq, ack, flags, payload);
        self.ip_id = self.ip_id.wrapping_add(1);
        let data = ip_packet(src.ip(), dst.ip(), self.ip_id, &tcp);
        let used = u32::try_from(payload.len()).unwrap_or(0) + u32::from(flags & (SYN | FIN) != 0);
        let next = if from_client {
            &mut self.client_seq
        } else {
            &mut self.server_seq
        };
        *next = next.wrapping_add(used);
        self.out.push(Packet {
            at_us: at,
            data,
            comment: note,
        });
    }
}

/// Both addresses in one family: IPv6 (IPv4-mapped) when they differ.
fn same_family(src: IpAddr, dst: IpAddr) -> (IpAddr, IpAddr) {
    match (src, dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => (src, dst),
        _ => (IpAddr::V6(v6(src)), IpAddr::V6(v6(dst))),
    }
}

fn v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// A TCP header (20 bytes, window 65,535) and payload, with its checksum over the
/// pseudo-header of the family [`ip_packet`] will use.
fn tcp_segment(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + payload.len());
    t.extend_from_slice(&src.port().to_be_bytes());
    t.extend_from_slice(&dst.port().to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.extend_from_slice(&[5 << 4, flags, 0xFF, 0xFF, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    let (s, d) = same_family(src.ip(), dst.ip());
    let mut pseudo = Vec::with_capacity(40);
    match (s, d) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, 6]);
            pseudo.extend_from_slice(&u16::try_from(t.len()).unwrap_or(0).to_be_bytes());
        }
        _ => {
            pseudo.extend_from_slice(&v6(s).octets());
            pseudo.extend_from_slice(&v6(d).octets());
            pseudo.extend_from_slice(&u32::try_from(t.len()).unwrap_or(0).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 6]);
        }
    }
    let sum = checksum(&[&pseudo, &t]);
    t[16..18].copy_from_slice(&sum.to_be_bytes());
    t
}

/// An IPv4 (DF, TTL 64, header checksum) or IPv6 (hop limit 64) packet carrying `tcp`.
fn ip_packet(src: IpAddr, dst: IpAddr, id: u16, tcp: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(40 + tcp.len());
    match same_family(src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = u16::try_from(20 + tcp.len()).unwrap_or(u16::MAX);
            p.extend_from_slice(&[0x45, 0]);
            p.extend_from_slice(&total.to_be_bytes());
            p.extend_from_slice(&id.to_be_bytes());
            p.extend_from_slice(&[0x40, 0, 64, 6, 0, 0]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            let sum = checksum(&[&p]);
            p[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        (s, d) => {
            let len = u16::try_from(tcp.len()).unwrap_or(u16::MAX);
            p.extend_from_slice(&[0x60, 0, 0, 0]);
            p.extend_from_slice(&len.to_be_bytes());
            p.extend_from_slice(&[6, 64]);
            p.extend_from_slice(&v6(s).octets());
            p.extend_from_slice(&v6(d).octets());
        }
    }
    p.extend_from_slice(tcp);
    p
}

/// The Internet checksum (RFC 1071) of the concatenated parts (each of even length but the last).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    for part in parts {
        let mut words = part.chunks_exact(2);
        for w in &mut words {
            sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [last] = words.remainder() {
            sum += u64::from(*last) << 8;
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests;
