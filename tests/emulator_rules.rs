//! The emulator rules behind the probe's long-hello, split-hello and post-quantum tests, each on
//! real sockets in front of a real OpenSSL server: what the emulator saw (its `hellos()`
//! record: length, reads, key shares, action) and what a raw client saw (a ServerHello, an
//! alert, FIN, RST or silence). Also the post-quantum hello against the server alone: OpenSSL
//! 3.5+ (the vendored build of `--all-features`) picks X25519MLKEM768, OpenSSL 3.0 (the system
//! library) x25519.
#![cfg(feature = "testkit")]

use std::net::SocketAddr;
use std::time::Duration;

use tls_fallback::probe::hello::{
    build_client_hello, HelloSpec, GROUP_X25519MLKEM768, PQ_HELLO_LEN, TLS13,
};
use tls_fallback::testkit::{Action, Emulator, Rule, SeenHello, TlsServer};
use tls_fallback::wire::{self, parse_server_answer, Reader, ServerAnswer, GROUP_X25519};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a client waits for an answer before calling it silence.
const WAIT: Duration = Duration::from_millis(1500);
/// The pause between the two writes of a split hello.
const PAUSE: Duration = Duration::from_millis(40);
/// X25519MLKEM768 server share: ML-KEM-768 ciphertext (1088) then x25519 (32).
const PQ_SERVER_SHARE_LEN: usize = 1120;

/// What a raw client saw after sending a hello.
enum Seen {
    /// The server's first answer, decided, and every byte read.
    Answer(ServerAnswer, Vec<u8>),
    /// The connection closed (FIN) before any byte.
    Fin,
    /// The connection was reset.
    Rst,
    /// Nothing within [`WAIT`].
    Silence,
}

impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Seen::Answer(answer, bytes) => write!(f, "{answer:?} ({} bytes)", bytes.len()),
            Seen::Fin => f.write_str("FIN"),
            Seen::Rst => f.write_str("RST"),
            Seen::Silence => write!(f, "silence for {WAIT:?}"),
        }
    }
}

impl Seen {
    fn server_hello_version(&self) -> Option<u16> {
        match self {
            Seen::Answer(ServerAnswer::ServerHello { version, .. }, _) => Some(*version),
            _ => None,
        }
    }
}

fn sni() -> Option<String> {
    Some("localhost".to_string())
}

fn pq_hello() -> Vec<u8> {
    build_client_hello(&HelloSpec::post_quantum(sni()))
}

fn plain_tls13_hello() -> Vec<u8> {
    build_client_hello(&HelloSpec::up_to(TLS13, sni()))
}

/// The TLS 1.3 baseline padded to `len` bytes of handshake message (x25519 share only).
fn padded_tls13_hello(len: usize) -> Vec<u8> {
    let mut spec = HelloSpec::up_to(TLS13, sni());
    spec.pad_to = Some(len);
    build_client_hello(&spec)
}

/// Connects to `addr` with TCP_NODELAY, writes `parts` one write each with [`PAUSE`] between
/// them, then reads until the first answer is decided, the peer closes, or [`WAIT`] passes.
async fn send(addr: SocketAddr, parts: &[&[u8]]) -> Seen {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(PAUSE).await;
        }
        if let Err(e) = tcp.write_all(part).await {
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
            return Seen::Rst;
        }
    }
    let read = async {
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match tcp.read(&mut chunk).await {
                Ok(0) if got.is_empty() => return Seen::Fin,
                Ok(0) => return Seen::Answer(parse_server_answer(&got), got),
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Seen::Rst,
                Err(e) => panic!("read: {e}"),
            }
            let answer = parse_server_answer(&got);
            if answer != ServerAnswer::Incomplete || got.len() > 64 * 1024 {
                return Seen::Answer(answer, got);
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .unwrap_or(Seen::Silence)
}

/// The `key_share` a ServerHello carries: (group, key length). The ServerHello must be the
/// whole first record (it always is: under 16 KiB).
fn server_key_share(bytes: &[u8]) -> Option<(u16, usize)> {
    let mut record = Reader::new(bytes);
    let header = record.take(5)?;
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    let mut msg = Reader::new(record.take(len)?);
    let _ = (msg.u8()?, msg.u24()?); // ServerHello header
    msg.take(2 + 32)?; // legacy_version, random
    msg.vec8()?; // session id
    msg.take(3)?; // cipher suite, compression
    let mut exts = Reader::new(msg.vec16()?);
    while !exts.is_empty() {
        let (ty, mut data) = (exts.u16()?, Reader::new(exts.vec16()?));
        if ty == wire::EXT_KEY_SHARE {
            return Some((data.u16()?, data.vec16()?.len()));
        }
    }
    None
}

/// The one connection an emulator saw.
fn only(gateway: &Emulator) -> SeenHello {
    let seen = gateway.hellos();
    assert_eq!(seen.len(), 1, "{seen:?}");
    seen.into_iter().next().expect("one")
}

#[tokio::test]
async fn a_hello_longer_than_the_limit_hangs_and_a_shorter_one_passes() {
    let server = TlsServer::modern().await.unwrap();
    let gateway = Emulator::start(server.addr(), vec![Rule::hang_if_longer_than(1000)])
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let seen = send(gateway.addr(), &[&pq_hello()]).await;
    assert!(matches!(seen, Seen::Silence), "{seen:?}");
    assert!(started.elapsed() >= WAIT);
    let hello = only(&gateway);
    assert_eq!(hello.action, Action::Hang);
    assert_eq!(hello.len(), PQ_HELLO_LEN + 9 + 9);
    assert_eq!(
        hello.reads, 1,
        "one write of 1.4 KB is one segment on loopback"
    );

    gateway.clear();
    let seen = send(gateway.addr(), &[&plain_tls13_hello()]).await;
    assert_eq!(seen.server_hello_version(), Some(wire::TLS13), "{seen:?}");
    let hello = only(&gateway);
    assert_eq!(hello.action, Action::Pass);
    assert!(hello.len() < 256);
}

#[tokio::test]
async fn a_hello_longer_than_the_limit_is_reset() {
    let server = TlsServer::modern().await.unwrap();
    let gateway = Emulator::start(server.addr(), vec![Rule::reset_if_longer_than(1000)])
        .await
        .unwrap();
    let seen = send(gateway.addr(), &[&padded_tls13_hello(1550)]).await;
    assert!(matches!(seen, Seen::Rst), "{seen:?}");
    let hello = only(&gateway);
    assert_eq!((hello.action, hello.len()), (Action::Reset, 1550));
}

#[tokio::test]
async fn a_hello_longer_than_the_limit_gets_a_fatal_illegal_parameter() {
    let server = TlsServer::modern().await.unwrap();
    let gateway = Emulator::start(server.addr(), vec![Rule::alert_if_longer_than(1000, 47)])
        .await
        .unwrap();
    let seen = send(gateway.addr(), &[&pq_hello()]).await;
    match seen {
        Seen::Answer(answer, bytes) => {
            assert_eq!(
                answer,
                ServerAnswer::Alert {
                    level: 2,
                    description: 47
                }
            );
            assert_eq!(bytes, wire::fatal_alert_record(47));
        }
        other => panic!("expected an alert, saw {other:?}"),
    }
    assert_eq!(only(&gateway).action, Action::Alert(47));
    // At the limit exactly: passes.
    gateway.clear();
    let seen = send(gateway.addr(), &[&padded_tls13_hello(1000)]).await;
    assert_eq!(seen.server_hello_version(), Some(wire::TLS13), "{seen:?}");
    assert_eq!(only(&gateway).len(), 1000);
}

#[tokio::test]
async fn a_hello_in_two_segments_hangs_a_box_that_cannot_reassemble_and_one_segment_passes() {
    let server = TlsServer::modern().await.unwrap();
    let gateway = Emulator::start(server.addr(), vec![Rule::hang_if_fragmented()])
        .await
        .unwrap();
    // A short hello, split: it is the segmentation, not the size.
    let hello = plain_tls13_hello();
    let (a, b) = hello.split_at(100);
    let seen = send(gateway.addr(), &[a, b]).await;
    assert!(matches!(seen, Seen::Silence), "{seen:?}");
    let split = only(&gateway);
    assert_eq!(split.action, Action::Hang);
    assert_eq!(split.reads, 2);
    assert!(split.fragmented());
    assert_eq!(
        split.len(),
        hello.len() - 5,
        "the whole hello was still read"
    );

    // The long post-quantum hello in one write: one read, passed.
    gateway.clear();
    let seen = send(gateway.addr(), &[&pq_hello()]).await;
    assert_eq!(seen.server_hello_version(), Some(wire::TLS13), "{seen:?}");
    let whole = only(&gateway);
    assert_eq!((whole.action, whole.reads), (Action::Pass, 1));
    assert!(!whole.fragmented());
}

#[tokio::test]
async fn a_split_inside_the_record_header_is_fragmented_too_and_can_be_reset() {
    let server = TlsServer::modern().await.unwrap();
    let gateway = Emulator::start(server.addr(), vec![Rule::reset_if_fragmented()])
        .await
        .unwrap();
    let hello = pq_hello();
    let (a, rest) = hello.split_at(3);
    let (b, c) = rest.split_at(700);
    let seen = send(gateway.addr(), &[a, b, c]).await;
    assert!(matches!(seen, Seen::Rst), "{seen:?}");
    let split = only(&gateway);
    assert_eq!((split.action, split.reads), (Action::Reset, 3));
    assert!(split
        .hello
        .as_ref()
        .is_some_and(|h| h.has_key_share(GROUP_X25519MLKEM768)));
}

#[tokio::test]
async fn a_post_quantum_key_share_hangs_and_the_same_size_without_it_passes() {
    let server = TlsServer::modern().await.unwrap();
    let gateway = Emulator::start(
        server.addr(),
        vec![Rule::hang_if_key_share(GROUP_X25519MLKEM768)],
    )
    .await
    .unwrap();
    let seen = send(gateway.addr(), &[&pq_hello()]).await;
    assert!(matches!(seen, Seen::Silence), "{seen:?}");
    let pq = only(&gateway);
    assert_eq!(pq.action, Action::Hang);
    let offered = pq.hello.as_ref().expect("parsed");
    assert_eq!(
        offered.supported_groups.first(),
        Some(&GROUP_X25519MLKEM768)
    );
    let shares: Vec<_> = offered
        .key_shares
        .iter()
        .map(|k| (k.group, k.key_len))
        .collect();
    assert_eq!(shares, [(GROUP_X25519MLKEM768, 1216), (GROUP_X25519, 32)]);

    // The baseline padded to the same length: only the share is refused, not the size.
    gateway.clear();
    let seen = send(gateway.addr(), &[&padded_tls13_hello(pq.len())]).await;
    assert_eq!(seen.server_hello_version(), Some(wire::TLS13), "{seen:?}");
    let padded = only(&gateway);
    assert_eq!((padded.action, padded.len()), (Action::Pass, pq.len()));
}

#[tokio::test]
async fn a_key_share_alert_rule_answers_illegal_parameter_only_to_that_group() {
    let server = TlsServer::modern().await.unwrap();
    let gateway = Emulator::start(
        server.addr(),
        vec![Rule::alert_if_key_share(GROUP_X25519MLKEM768, 47)],
    )
    .await
    .unwrap();
    let seen = send(gateway.addr(), &[&pq_hello()]).await;
    assert!(
        matches!(
            seen,
            Seen::Answer(
                ServerAnswer::Alert {
                    level: 2,
                    description: 47
                },
                _
            )
        ),
        "{seen:?}"
    );
    let seen = send(gateway.addr(), &[&plain_tls13_hello()]).await;
    assert_eq!(seen.server_hello_version(), Some(wire::TLS13), "{seen:?}");
    let actions: Vec<_> = gateway.hellos().iter().map(|s| s.action).collect();
    assert_eq!(actions, [Action::Alert(47), Action::Pass]);
}

/// Two emulators on one port of 127.0.0.1 and 127.0.0.2; retries a few ports if 127.0.0.2's
/// is taken.
async fn two_addresses(backend: SocketAddr, second: Vec<Rule>) -> (Emulator, Emulator) {
    for _ in 0..5 {
        let first = Emulator::start(backend, vec![]).await.unwrap();
        let at = SocketAddr::from(([127, 0, 0, 2], first.addr().port()));
        match Emulator::start_at(at, backend, second.clone()).await {
            Ok(other) => return (first, other),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => panic!("bind {at}: {e}"),
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

#[tokio::test]
async fn two_addresses_on_one_port_behave_by_their_own_rules() {
    let server = TlsServer::modern().await.unwrap();
    let (healthy, broken) =
        two_addresses(server.addr(), vec![Rule::hang_if_longer_than(1000)]).await;
    assert_eq!(healthy.addr().ip(), std::net::IpAddr::from([127, 0, 0, 1]));
    assert_eq!(broken.addr().ip(), std::net::IpAddr::from([127, 0, 0, 2]));
    assert_eq!(healthy.addr().port(), broken.addr().port());

    let on_healthy = send(healthy.addr(), &[&pq_hello()]).await;
    let on_broken = send(broken.addr(), &[&pq_hello()]).await;
    assert_eq!(
        on_healthy.server_hello_version(),
        Some(wire::TLS13),
        "{on_healthy:?}"
    );
    assert!(matches!(on_broken, Seen::Silence), "{on_broken:?}");
    assert_eq!(only(&healthy).action, Action::Pass);
    assert_eq!(only(&broken).action, Action::Hang);

    // The short hello passes both: the addresses differ only on long hellos.
    let on_broken = send(broken.addr(), &[&plain_tls13_hello()]).await;
    assert_eq!(
        on_broken.server_hello_version(),
        Some(wire::TLS13),
        "{on_broken:?}"
    );
    assert_eq!(healthy.count(), 1);
    assert_eq!(broken.count(), 2);
}

#[tokio::test]
async fn start_at_a_taken_address_is_an_error() {
    let server = TlsServer::modern().await.unwrap();
    let first = Emulator::start(server.addr(), vec![]).await.unwrap();
    let err = Emulator::start_at(first.addr(), server.addr(), vec![])
        .await
        .expect_err("the same address and port twice");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
}

/// Whether the linked OpenSSL implements X25519MLKEM768 (3.5 and later).
fn openssl_has_mlkem() -> bool {
    openssl::version::number() >= 0x3050_0000
}

#[tokio::test]
async fn a_real_openssl_server_answers_the_post_quantum_hello_in_tls13_with_the_group_it_knows() {
    let server = TlsServer::modern().await.unwrap();
    let seen = send(server.addr(), &[&pq_hello()]).await;
    let Seen::Answer(
        ServerAnswer::ServerHello {
            version,
            hello_retry,
            ..
        },
        bytes,
    ) = &seen
    else {
        panic!("{} answered {seen:?}", openssl::version::version());
    };
    assert_eq!((*version, *hello_retry), (wire::TLS13, false));
    let share = server_key_share(bytes);
    eprintln!(
        "{}: ServerHello key_share {share:x?}",
        openssl::version::version()
    );
    if openssl_has_mlkem() {
        // OpenSSL 3.5+ accepted the ML-KEM-768 key (it passed the modulus check) and
        // encapsulated to it.
        assert_eq!(
            share,
            Some((GROUP_X25519MLKEM768, PQ_SERVER_SHARE_LEN)),
            "{}",
            openssl::version::version()
        );
    } else {
        assert_eq!(
            share,
            Some((GROUP_X25519, 32)),
            "{}",
            openssl::version::version()
        );
    }

    // Through a passing emulator: the same answer, and the share on the emulator's record.
    let gateway = Emulator::start(server.addr(), vec![]).await.unwrap();
    let seen = send(gateway.addr(), &[&pq_hello()]).await;
    let Seen::Answer(_, bytes) = &seen else {
        panic!("{seen:?}");
    };
    assert_eq!(server_key_share(bytes), share);
    assert!(only(&gateway)
        .hello
        .is_some_and(|h| h.has_key_share(GROUP_X25519MLKEM768)));
}

#[tokio::test]
async fn an_mlkem_key_failing_the_modulus_check_is_refused_by_openssl_35_and_ignored_by_30() {
    // The first coefficient of the encapsulation key set to 4095 (>= q = 3329).
    let mut hello = pq_hello();
    let group = GROUP_X25519MLKEM768.to_be_bytes();
    let at = hello
        .windows(4)
        .position(|w| w == [group[0], group[1], 0x04, 0xc0])
        .expect("the 1216-byte share")
        + 4;
    hello[at] = 0xff;
    hello[at + 1] |= 0x0f;
    let server = TlsServer::modern().await.unwrap();
    let seen = send(server.addr(), &[&hello]).await;
    eprintln!("{}: {seen:?}", openssl::version::version());
    if openssl_has_mlkem() {
        assert!(
            matches!(
                seen,
                Seen::Answer(
                    ServerAnswer::Alert {
                        level: 2,
                        description: 47
                    },
                    _
                )
            ),
            "{seen:?}"
        );
    } else {
        assert_eq!(seen.server_hello_version(), Some(wire::TLS13), "{seen:?}");
        let Seen::Answer(_, bytes) = &seen else {
            unreachable!()
        };
        assert_eq!(server_key_share(bytes), Some((GROUP_X25519, 32)));
    }
}

#[tokio::test]
async fn a_real_openssl_server_answers_the_padded_tls13_baseline_with_x25519() {
    let server = TlsServer::modern().await.unwrap();
    let hello = padded_tls13_hello(1550);
    assert_eq!(hello.len(), 1555);
    let seen = send(server.addr(), &[&hello]).await;
    assert_eq!(seen.server_hello_version(), Some(wire::TLS13), "{seen:?}");
    let Seen::Answer(_, bytes) = &seen else {
        unreachable!()
    };
    assert_eq!(server_key_share(bytes), Some((GROUP_X25519, 32)));
}
