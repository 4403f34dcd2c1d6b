//! Servers that answer a ClientHello with bytes no TLS server would send: garbage, a truncated
//! record, an oversized record length, an alert of the wrong length, a ServerHello with an
//! impossible version, nothing at all, or one byte per second. Each must end in a clear error
//! of a stable kind, after a bounded number of hellos and a bounded time, without a panic and
//! without leaking a socket. The same bytes go through the crate's own parsers
//! (`wire::parse_server_answer`, `wire::parse_client_hello`).

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use tls_fallback::wire::{self, ClientHelloInfo, HelloError};
use tls_fallback::wire::{parse_server_answer, ServerAnswer};
use tls_fallback::ErrorKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A ServerHello record (TLS 1.2 record header) whose `legacy_version` is `version`, with no
/// extensions and suite 0xc02f.
const fn server_hello(version: [u8; 2]) -> [u8; 47] {
    let mut b = [0u8; 47];
    let head = [22, 3, 3, 0, 42, 2, 0, 0, 38];
    let mut i = 0;
    while i < head.len() {
        b[i] = head[i];
        i += 1;
    }
    b[9] = version[0];
    b[10] = version[1];
    // random: 11..43 stays 0x2a-filled below; session id length 0, suite, compression 0.
    let mut j = 11;
    while j < 43 {
        b[j] = 0x2a;
        j += 1;
    }
    b[43] = 0;
    b[44] = 0xc0;
    b[45] = 0x2f;
    b[46] = 0;
    b
}

const HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
const BINARY_GARBAGE: &[u8] = &[
    0xde, 0xad, 0xbe, 0xef, 0x00, 0xff, 0x13, 0x37, 0x80, 0x01, 0x02, 0x7f, 0x41, 0x42, 0x43, 0x44,
];
/// A handshake record announcing 90 bytes, of which 15 arrive.
const TRUNCATED_RECORD: &[u8] = &[
    22, 3, 3, 0, 90, 2, 0, 0, 86, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1,
];
/// A handshake record announcing 65,535 bytes (the limit is 2^14 + 2048).
const OVERSIZED_RECORD: &[u8] = &[
    22, 3, 3, 0xff, 0xff, 2, 0, 0, 86, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
];
/// An alert record of five bytes (alerts are two).
const ALERT_TOO_LONG: &[u8] = &[21, 3, 3, 0, 5, 2, 40, 0, 0, 0];
/// An alert record of one byte.
const ALERT_TOO_SHORT: &[u8] = &[21, 3, 3, 0, 1, 2];
const SERVER_HELLO_0399: [u8; 47] = server_hello([3, 0x99]);
const SERVER_HELLO_0200: [u8; 47] = server_hello([2, 0]);

/// What a raw server does after reading the ClientHello.
#[derive(Clone, Copy, Debug)]
enum Script {
    /// Send these bytes, then close (FIN).
    SendClose(&'static [u8]),
    /// Send these bytes, then hold the socket open without a word.
    SendHold(&'static [u8]),
    /// Send nothing, hold the socket.
    Silent,
    /// Send these bytes one per second.
    Drip(&'static [u8]),
}

/// A TCP server on 127.0.0.1 that reads each ClientHello, records it, and plays a [`Script`].
/// Holds are bounded (20 s, or until the client closes); stops accepting when dropped.
struct RawServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Option<ClientHelloInfo>>>>,
    task: JoinHandle<()>,
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_hello(tcp: &mut TcpStream) -> Option<ClientHelloInfo> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        for _ in 0..64 {
            match wire::parse_client_hello(&buf) {
                Ok(h) => return Some(h),
                Err(HelloError::Invalid(_)) => return None,
                Err(HelloError::Incomplete) => {}
            }
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .ok()
        .flatten()
}

/// Holds the socket until the client closes it, 20 s at most.
async fn hold(tcp: &mut TcpStream) {
    let mut sink = [0u8; 512];
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(n) = tcp.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

impl RawServer {
    async fn start(script: Script) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let seen = Arc::clone(&seen2);
                tokio::spawn(async move {
                    let hello = read_hello(&mut tcp).await;
                    seen.lock().unwrap().push(hello);
                    match script {
                        Script::SendClose(bytes) => {
                            let _ = tcp.write_all(bytes).await;
                            let _ = tcp.shutdown().await;
                        }
                        Script::SendHold(bytes) => {
                            let _ = tcp.write_all(bytes).await;
                            hold(&mut tcp).await;
                        }
                        Script::Silent => hold(&mut tcp).await,
                        Script::Drip(bytes) => {
                            for b in bytes.iter().take(20) {
                                if tcp.write_all(&[*b]).await.is_err() {
                                    break;
                                }
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                    }
                });
            }
        });
        RawServer { addr, seen, task }
    }

    fn url(&self) -> String {
        format!("https://localhost:{}/", self.addr.port())
    }

    /// The hellos received; every one must have parsed as a ClientHello.
    fn hellos(&self) -> Vec<ClientHelloInfo> {
        let seen = self.seen.lock().unwrap().clone();
        seen.into_iter()
            .map(|h| h.expect("the client sent a parseable ClientHello"))
            .collect()
    }
}

/// Open file descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Tests in this file run one at a time, each on its own runtime created under this lock, so
/// that the descriptor counts are theirs alone (another test's runtime starting or stopping
/// would open or close a few).
static SERIAL: Mutex<()> = Mutex::new(());

fn serially<F: std::future::Future<Output = ()>>(test: impl FnOnce() -> F) {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(test());
}

/// Sockets may close a moment after the client is dropped: wait (3 s at most) for the count
/// to come back to `before`, then allow a tolerance of 2 for the runtime's lazily opened
/// handles.
async fn assert_no_fd_leak(before: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut now = open_fds();
    while now > before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        now = open_fds();
    }
    eprintln!("{what}: open fds before {before}, after {now}");
    assert!(now <= before + 2, "{what}: fds {before} -> {now}");
}

/// Both parsers on the bytes and on every prefix: an answer, never a panic.
fn parse_everything(bytes: &[u8]) -> ServerAnswer {
    for n in 0..bytes.len() {
        let _ = parse_server_answer(&bytes[..n]);
        assert!(wire::parse_client_hello(&bytes[..n]).is_err());
    }
    assert!(
        wire::parse_client_hello(bytes).is_err(),
        "not a ClientHello"
    );
    parse_server_answer(bytes)
}

struct Expect {
    kind: ErrorKind,
    /// Outcome of every attempt (`Outcome::short`).
    outcomes: &'static [&'static str],
    /// Words the error message must contain.
    says: &'static [&'static str],
}

/// Runs one GET against a raw server playing `script`, and checks the error, the number of
/// hellos, the time taken (attempts x timeout + slack) and the descriptor count.
async fn bad_server(script: Script, legacy: bool, timeout: Duration, expect: Expect) {
    let before = open_fds();
    {
        let server = RawServer::start(script).await;
        // No racing: each silent rung is waited out once, so the count of hellos is exact.
        let mut b = builder().handshake_timeout(timeout).stall_timeout(None);
        if legacy {
            b = b.allow_legacy("localhost");
        }
        let layer = b.build().unwrap();
        let client = client(&layer);
        let started = Instant::now();
        let err = tls_error(&get(&client, &server.url()).await.unwrap_err());
        let took = started.elapsed();
        let ctx = format!("{script:?}: {err}");
        assert_eq!(err.kind(), expect.kind, "{ctx}");
        let outcomes: Vec<String> = err.attempts().iter().map(|a| a.outcome.short()).collect();
        assert_eq!(outcomes, expect.outcomes, "{ctx}");
        for word in expect.says {
            assert!(err.to_string().contains(word), "{ctx}: missing {word:?}");
        }
        // One hello per attempt, each a well-formed ClientHello.
        assert_eq!(server.hellos().len(), expect.outcomes.len(), "{ctx}");
        let bound = timeout * expect.outcomes.len() as u32 + Duration::from_secs(2);
        assert!(took < bound, "{ctx}: took {took:?}");
        assert!(layer.stats().hosts.is_empty(), "{ctx}: nothing is learned");
    }
    assert_no_fd_leak(before, &format!("{script:?}")).await;
}

const SHORT: Duration = Duration::from_millis(500);

#[test]
fn an_http_answer_is_not_tls_and_ends_after_one_hello() {
    serially(|| async {
        assert_eq!(parse_everything(HTTP_ANSWER), ServerAnswer::Garbage);
        bad_server(
            Script::SendClose(HTTP_ANSWER),
            true,
            SHORT,
            Expect {
                kind: ErrorKind::Handshake,
                outcomes: &["not_tls"],
                says: &["bytes that are not TLS"],
            },
        )
        .await;
    });
}

#[test]
fn binary_garbage_is_not_tls_and_ends_after_one_hello() {
    serially(|| async {
        assert_eq!(parse_everything(BINARY_GARBAGE), ServerAnswer::Garbage);
        bad_server(
            Script::SendClose(BINARY_GARBAGE),
            true,
            SHORT,
            Expect {
                kind: ErrorKind::Handshake,
                outcomes: &["not_tls"],
                says: &["bytes that are not TLS"],
            },
        )
        .await;
    });
}

#[test]
fn an_oversized_record_length_is_not_tls_and_ends_after_one_hello() {
    serially(|| async {
        assert_eq!(parse_everything(OVERSIZED_RECORD), ServerAnswer::Garbage);
        bad_server(
            Script::SendClose(OVERSIZED_RECORD),
            true,
            SHORT,
            Expect {
                kind: ErrorKind::Handshake,
                outcomes: &["not_tls"],
                says: &["bytes that are not TLS"],
            },
        )
        .await;
    });
}

#[test]
fn a_truncated_record_then_silence_times_out_mid_way_after_one_hello() {
    serially(|| async {
        assert_eq!(parse_everything(TRUNCATED_RECORD), ServerAnswer::Incomplete);
        bad_server(
            Script::SendHold(TRUNCATED_RECORD),
            true,
            SHORT,
            Expect {
                kind: ErrorKind::Timeout,
                outcomes: &["timeout"],
                says: &["timed out", "mid-way"],
            },
        )
        .await;
    });
}

#[test]
fn a_truncated_record_then_fin_is_taken_for_a_close_and_stops_at_the_floor() {
    serially(|| async {
        // The server started a ServerHello and closed: OpenSSL reports an unexpected EOF, which
        // the classifier cannot tell from a box closing on the hello, so the walk goes down to
        // the floor (four hellos, all with SCSV after the first) and stops there.
        bad_server(
            Script::SendClose(TRUNCATED_RECORD),
            false,
            SHORT,
            Expect {
                kind: ErrorKind::BelowFloor,
                outcomes: &["closed", "closed", "closed", "closed"],
                says: &["was closed", "floor is TLS 1.2"],
            },
        )
        .await;
    });
}

#[test]
fn an_alert_record_of_the_wrong_length_is_a_fatal_handshake_error() {
    serially(|| async {
        assert_eq!(
            parse_everything(ALERT_TOO_LONG),
            ServerAnswer::Alert {
                level: 2,
                description: 40
            }
        );
        assert_eq!(parse_everything(ALERT_TOO_SHORT), ServerAnswer::Garbage);
        for bytes in [ALERT_TOO_LONG, ALERT_TOO_SHORT] {
            // OpenSSL refuses the record itself (SSL_R_INVALID_ALERT): not an alert the server
            // meant, not intolerance, so no fallback.
            bad_server(
                Script::SendClose(bytes),
                true,
                SHORT,
                Expect {
                    kind: ErrorKind::Handshake,
                    outcomes: &["error"],
                    says: &["OpenSSL reason"],
                },
            )
            .await;
        }
    });
}

#[test]
fn a_server_hello_with_an_impossible_version_is_refused_after_one_hello() {
    serially(|| async {
        for bytes in [&SERVER_HELLO_0399[..], &SERVER_HELLO_0200[..]] {
            let version = u16::from_be_bytes([bytes[9], bytes[10]]);
            assert_eq!(
                parse_everything(bytes),
                ServerAnswer::ServerHello {
                    version,
                    cipher: 0xc02f,
                    hello_retry: false
                }
            );
            // OpenSSL refuses the version locally (reason 258, unsupported protocol), the code a
            // TLS 1.0 server gets too; the connector reads the ServerHello's version and knows
            // no rung speaks it: one hello, with or without legacy permission.
            let hex: &'static str = if version == 0x0399 {
                "0x0399"
            } else {
                "0x0200"
            };
            assert_eq!(hex, format!("{version:#06x}"));
            for legacy in [false, true] {
                bad_server(
                    Script::SendClose(bytes),
                    legacy,
                    SHORT,
                    Expect {
                        kind: ErrorKind::Handshake,
                        outcomes: &["error"],
                        says: if hex == "0x0399" {
                            &["0x0399", "no rung speaks", "no fallback can fix"]
                        } else {
                            &["0x0200", "no rung speaks", "no fallback can fix"]
                        },
                    },
                )
                .await;
            }
        }
    });
}

#[test]
fn a_silent_server_costs_one_timeout_per_rung_down_to_the_floor() {
    // Nothing answering on any rung is its own finding (no_tls_answer), not intolerance.
    serially(|| async {
        bad_server(
            Script::Silent,
            false,
            SHORT,
            Expect {
                kind: ErrorKind::NoTlsAnswer,
                outcomes: &["timeout", "timeout", "timeout", "timeout"],
                says: &[
                    "no TLS answer",
                    "left unanswered",
                    "Is this a TLS port?",
                    "(TLS 1.2)",
                ],
            },
        )
        .await;
    });
}

#[test]
fn a_server_sending_one_byte_per_second_times_out_mid_way_after_one_hello() {
    serially(|| async {
        bad_server(
            Script::Drip(&SERVER_HELLO_0399),
            true,
            Duration::from_secs(1),
            Expect {
                kind: ErrorKind::Timeout,
                outcomes: &["timeout"],
                says: &["timed out", "mid-way"],
            },
        )
        .await;
    });
}

#[test]
fn a_silent_server_raced_by_every_rung_still_stops_at_the_floor_without_leaks() {
    serially(|| async {
        let before = open_fds();
        {
            let server = RawServer::start(Script::Silent).await;
            let stall = Duration::from_millis(100);
            let layer = builder()
                .handshake_timeout(SHORT)
                .stall_timeout(Some(stall))
                .build()
                .unwrap();
            let started = Instant::now();
            let err = tls_error(&get(&client(&layer), &server.url()).await.unwrap_err());
            let took = started.elapsed();
            // Nothing answered anything: its own finding, not "below the floor".
            assert_eq!(err.kind(), ErrorKind::NoTlsAnswer, "{err}");
            // Four rungs above the floor, each tried once.
            assert_eq!(server.hellos().len(), 4, "{err}");
            assert_eq!(err.attempts().len(), 4, "{err}");
            // Within one handshake timeout plus one stall time (and scheduling slack).
            assert!(took >= SHORT, "{took:?}");
            assert!(
                took < SHORT + stall + Duration::from_millis(700),
                "{took:?}"
            );
        }
        assert_no_fd_leak(before, "silent, raced").await;
    });
}

#[test]
fn every_bad_answer_and_its_prefixes_parse_without_panic() {
    let all: [&[u8]; 9] = [
        HTTP_ANSWER,
        BINARY_GARBAGE,
        TRUNCATED_RECORD,
        OVERSIZED_RECORD,
        ALERT_TOO_LONG,
        ALERT_TOO_SHORT,
        &SERVER_HELLO_0399,
        &SERVER_HELLO_0200,
        &[],
    ];
    for bytes in all {
        parse_everything(bytes);
        // Glued together, and behind a valid record header, too.
        let mut glued = bytes.to_vec();
        glued.extend_from_slice(TRUNCATED_RECORD);
        parse_everything(&glued);
        let mut framed = vec![22, 3, 1, 0, bytes.len() as u8];
        framed.extend_from_slice(bytes);
        let _ = parse_server_answer(&framed);
        let _ = wire::parse_client_hello(&framed);
    }
}
