//! What one test's socket did, kept for the evidence: the bytes written (each write is one
//! TCP segment, as the probe sent it with TCP_NODELAY) and read, with the time of each, and how
//! the exchange ended. The report's timestamps and failure descriptions and the pcapng file
//! (`pcap` module) are built from these records alone, never from a second look at the wire.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// One event on a test's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// The TCP handshake completed.
    Connected,
    /// The probe wrote these bytes in one write (one segment).
    Sent(Vec<u8>),
    /// The probe read these bytes in one read.
    Received(Vec<u8>),
    /// The server closed its side (FIN: a read returned 0).
    PeerClosed,
    /// The connection was reset (RST).
    PeerReset,
    /// The probe stopped waiting (its per-test timeout) and closed the connection.
    TimedOut,
    /// The probe closed the connection after deciding (a FIN from the probe).
    ClientClosed,
}

/// An event and when it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Microseconds since the UNIX epoch (UTC).
    pub at_us: u64,
    /// What happened.
    pub kind: EventKind,
}

/// One test's TCP connection: its two ends and its events, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The probe's end (source address and port).
    pub client: SocketAddr,
    /// The server's end.
    pub server: SocketAddr,
    /// When the TCP connect started, microseconds since the UNIX epoch.
    pub started_us: u64,
    /// What happened, in order.
    pub events: Vec<Event>,
}

impl Exchange {
    /// An exchange whose connect started now.
    pub fn new(client: SocketAddr, server: SocketAddr, started_us: u64) -> Exchange {
        Exchange {
            client,
            server,
            started_us,
            events: Vec::new(),
        }
    }

    /// Records `kind` now.
    pub fn push(&mut self, kind: EventKind) {
        self.events.push(Event {
            at_us: now_us(),
            kind,
        });
    }

    /// The sizes of the writes, in order (the write boundaries the server saw as segments).
    pub fn segments(&self) -> Vec<usize> {
        self.events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Sent(b) => Some(b.len()),
                _ => None,
            })
            .collect()
    }

    /// Every byte the server sent, concatenated.
    pub fn received(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for e in &self.events {
            if let EventKind::Received(b) = &e.kind {
                out.extend_from_slice(b);
            }
        }
        out
    }
}

/// Microseconds since the UNIX epoch, now (0 if the clock is before 1970).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `2026-12-08T04:31:02.123Z`: a UNIX time in microseconds as UTC ISO 8601, to the millisecond.
pub fn utc_millis(at_us: u64) -> String {
    let secs = at_us / 1_000_000;
    let millis = (at_us / 1_000) % 1_000;
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_are_iso_8601_to_the_millisecond() {
        let rows = [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_000_000, "2000-02-29T00:00:00.000Z"),
            (1_796_704_262_123_456, "2026-12-08T04:31:02.123Z"),
            (4_107_542_399_999_000, "2100-02-28T23:59:59.999Z"),
        ];
        for (us, text) in rows {
            assert_eq!(utc_millis(us), text, "{us}");
        }
        // Never panics, whatever the number.
        let _ = utc_millis(u64::MAX);
    }

    #[test]
    fn segments_and_received_bytes_follow_the_events() {
        let a: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:443".parse().unwrap();
        let mut x = Exchange::new(a, b, 1);
        x.push(EventKind::Connected);
        x.push(EventKind::Sent(vec![1; 300]));
        x.push(EventKind::Sent(vec![2; 217]));
        x.push(EventKind::Received(vec![0x15, 3]));
        x.push(EventKind::Received(vec![1]));
        x.push(EventKind::PeerClosed);
        assert_eq!(x.segments(), [300, 217]);
        assert_eq!(x.received(), [0x15, 3, 1]);
    }
}
