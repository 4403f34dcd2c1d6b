//! The `--pcap` file as Wireshark users will see it: real raw TLS exchanges on loopback (a hello
//! in one write and in two, over IPv4 and IPv6, answered, closed, reset and left hanging by the
//! test kit), recorded as the probe's runner records them, written by `probe::pcap::pcapng` and
//! read back by tshark with checksum validation on. tshark must decode every ClientHello (the
//! split one reassembled to its full length), every ServerHello, each FIN and RST, and find no
//! malformed packet, bad checksum or TCP analysis problem. CI installs tshark; without it this
//! test fails and says so.
#![cfg(feature = "testkit")]

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use tls_fallback::probe::capture::{now_us, EventKind, Exchange};
use tls_fallback::probe::hello::{build_client_hello, HelloSpec, TLS13};
use tls_fallback::probe::pcap::pcapng;
use tls_fallback::testkit::{Emulator, Rule, TlsServer};
use tls_fallback::wire::{parse_server_answer, ServerAnswer};
use tls_fallback::TlsVersion;

/// How long one exchange waits for an answer (the hanging one uses all of it).
const WAIT: Duration = Duration::from_millis(400);

/// One test's connection, as the runner records it: connect, the writes (one event each, with
/// TCP_NODELAY), reads until a ServerHello, an alert, a close, a reset or `WAIT`.
async fn exchange(server: SocketAddr, writes: &[&[u8]]) -> Exchange {
    let started = now_us();
    let mut tcp = TcpStream::connect(server)
        .await
        .expect("connect on loopback");
    tcp.set_nodelay(true).unwrap();
    let mut x = Exchange::new(tcp.local_addr().unwrap(), server, started);
    x.push(EventKind::Connected);
    for (i, w) in writes.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tcp.write_all(w).await.unwrap();
        x.push(EventKind::Sent(w.to_vec()));
    }
    let deadline = Instant::now() + WAIT;
    let mut buf = vec![0u8; 4096];
    for _ in 0..64 {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, tcp.read(&mut buf)).await {
            Err(_) => return ended(x, EventKind::TimedOut),
            Ok(Ok(0)) => return ended(x, EventKind::PeerClosed),
            Ok(Err(_)) => return ended(x, EventKind::PeerReset),
            Ok(Ok(n)) => x.push(EventKind::Received(buf[..n].to_vec())),
        }
        if parse_server_answer(&x.received()) != ServerAnswer::Incomplete {
            return ended(x, EventKind::ClientClosed);
        }
    }
    ended(x, EventKind::ClientClosed)
}

fn ended(mut x: Exchange, how: EventKind) -> Exchange {
    x.push(how);
    x
}

/// tshark's rows for `file`, one per frame, fields split on tabs; panics with the way to
/// install tshark when it is missing, and with its stderr when it fails.
fn tshark(file: &std::path::Path, ports: &[u16], args: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(file);
    for opt in ["tcp.check_checksum:TRUE", "ip.check_checksum:TRUE"] {
        cmd.args(["-o", opt]);
    }
    for p in ports {
        cmd.args(["-d", &format!("tcp.port=={p},tls")]);
    }
    let out = match cmd.args(args).output() {
        Ok(out) => out,
        Err(e) => panic!(
            "tshark could not run ({e}): install it (Debian: apt-get install tshark; .ci/run \
             does) to check the probe's pcapng file"
        ),
    };
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(String::from).collect())
        .collect()
}

#[tokio::test]
async fn tshark_decodes_every_exchange_of_the_rebuilt_capture() {
    let server = TlsServer::modern().await.unwrap();
    let hello = build_client_hello(&HelloSpec::up_to(TLS13, Some("localhost".into())));
    let (head, tail) = hello.split_at(100);
    let mut long = HelloSpec::up_to(TLS13, Some("localhost".into()));
    long.pad_to = Some(1_550); // the size a post-quantum key share gives
    let long = build_client_hello(&long);
    let over_12 = |rule: fn(TlsVersion) -> Rule| vec![rule(TlsVersion::Tls1_2)];
    let closer = Emulator::start(server.addr(), over_12(Rule::close_above))
        .await
        .unwrap();
    let resetter = Emulator::start(server.addr(), over_12(Rule::reset_above))
        .await
        .unwrap();
    let hanger = Emulator::start(server.addr(), over_12(Rule::hang_above))
        .await
        .unwrap();
    let v6 = Emulator::start_on(IpAddr::V6(Ipv6Addr::LOCALHOST), server.addr(), vec![]).await;
    let v6 = match v6 {
        Ok(emulator) => Some(emulator),
        Err(e) => {
            eprintln!("no IPv6 loopback here ({e}): the ::1 exchange is left out");
            None
        }
    };

    // (name, exchange, how it ends: a ServerHello, or which side's FIN or RST).
    let mut rows = vec![
        (
            "whole_hello",
            exchange(server.addr(), &[&hello]).await,
            "hello",
        ),
        (
            "split_hello",
            exchange(server.addr(), &[head, tail]).await,
            "hello",
        ),
        (
            "long_hello",
            exchange(server.addr(), &[&long]).await,
            "hello",
        ),
        (
            "closed",
            exchange(closer.addr(), &[&hello]).await,
            "server FIN",
        ),
        (
            "reset",
            exchange(resetter.addr(), &[&hello]).await,
            "server RST",
        ),
        (
            "hang",
            exchange(hanger.addr(), &[&hello]).await,
            "client FIN",
        ),
    ];
    if let Some(v6) = &v6 {
        rows.push(("ipv6_hello", exchange(v6.addr(), &[&hello]).await, "hello"));
    }
    let pairs: Vec<(&str, &Exchange)> = rows.iter().map(|(n, x, _)| (*n, x)).collect();
    let file = pcapng(&pairs, "tests/probe_pcap.rs");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probe.pcapng");
    std::fs::write(&path, &file).unwrap();
    let mut ports: Vec<u16> = rows.iter().map(|(_, x, _)| x.server.port()).collect();
    ports.sort_unstable();
    ports.dedup();

    let fields = [
        "frame.number",
        "tcp.stream",
        "tcp.srcport",
        "tcp.flags",
        "tcp.len",
        "tls.handshake.type",
        "tls.handshake.length",
        "frame.comment",
    ];
    let mut args = vec!["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"];
    for f in fields {
        args.extend(["-e", f]);
    }
    let frames = tshark(&path, &ports, &args);
    for f in &frames {
        eprintln!("{}", f.join("\t"));
    }
    for (stream, (name, x, end)) in rows.iter().enumerate() {
        let sent = x.segments().iter().sum::<usize>();
        check_stream(&frames, stream, name, x, end, sent);
    }

    // Nothing tshark finds wrong: malformed packets, bad checksums, TCP analysis flags
    // (previous segment not captured, ACKed unseen segment, retransmission...), warnings but
    // Wireshark's "Connection reset (RST)" on the one reset, which is what happened.
    let problems = "_ws.malformed || ip.checksum.status == 0 || tcp.checksum.status == 0 \
                    || tcp.analysis.flags \
                    || (_ws.expert.severity >= \"Warning\" && tcp.flags.reset == 0)";
    let bad = tshark(&path, &ports, &["-Y", problems]);
    assert!(bad.is_empty(), "tshark found problems: {bad:?}");
    let resets = tshark(&path, &ports, &["-Y", "tcp.flags.reset == 1"]);
    assert_eq!(resets.len(), 1, "one RST, the reset exchange's: {resets:?}");
}

/// One connection's frames: its hello decoded once at full length, a ServerHello where the
/// server answered, the ending where it ended so, and the test's name on its first frame.
fn check_stream(
    frames: &[Vec<String>],
    stream: usize,
    name: &str,
    x: &Exchange,
    end: &str,
    len: usize,
) {
    let rows: Vec<&Vec<String>> = frames
        .iter()
        .filter(|f| f[1] == stream.to_string())
        .collect();
    assert!(rows.len() >= 5, "{name}: {rows:?}");
    assert!(
        rows[0][7].starts_with(&format!("{name}: ")),
        "{name}: comment {:?}",
        rows[0][7]
    );
    let types = |t: &str| {
        rows.iter()
            .filter(|r| r[5].split(',').any(|x| x == t))
            .count()
    };
    let hellos: Vec<&&Vec<String>> = rows
        .iter()
        .filter(|r| r[5].split(',').any(|x| x == "1"))
        .collect();
    assert_eq!(hellos.len(), 1, "{name}: one ClientHello");
    assert_eq!(
        hellos[0][6].split(',').next(),
        Some((len - 9).to_string().as_str()),
        "{name}"
    );
    let client_data: Vec<&str> = rows
        .iter()
        .filter(|r| r[2] == x.client.port().to_string() && r[4] != "0")
        .map(|r| r[4].as_str())
        .collect();
    let writes: Vec<String> = x.segments().iter().map(usize::to_string).collect();
    assert_eq!(client_data, writes, "{name}: one segment per write");
    let server = x.server.port().to_string();
    let from_server = |flags: &str| rows.iter().any(|r| r[2] == server && r[3] == flags);
    let from_client = |flags: &str| rows.iter().any(|r| r[2] != server && r[3] == flags);
    match end {
        "hello" => assert_eq!(types("2"), 1, "{name}: a ServerHello"),
        "server FIN" => assert!(from_server("0x0011") && types("2") == 0, "{name}"),
        "server RST" => assert!(from_server("0x0014") && types("2") == 0, "{name}"),
        _ => assert!(
            from_client("0x0011") && types("2") == 0,
            "{name}: the probe's FIN"
        ),
    }
}

/// A real probe's own capture, end to end: two addresses (127.0.0.1 healthy, 127.0.0.2 hanging
/// on hellos over 1,000 bytes) in front of one server; the report's pcapng holds one TCP stream
/// per test that sent a hello, tshark decodes each stream's ClientHello at the size the report
/// says, the split hello in two client segments, and finds nothing malformed.
#[tokio::test]
async fn tshark_reads_a_real_probes_capture_stream_by_stream() {
    use tls_fallback::probe::{probe, ProbeConfig, TestId};
    let server = TlsServer::modern().await.unwrap();
    let healthy = Emulator::start(server.addr(), vec![]).await.unwrap();
    let port = healthy.addr().port();
    let far: SocketAddr = ([127, 0, 0, 2], port).into();
    let _hanging = Emulator::start_at(far, server.addr(), vec![Rule::hang_if_longer_than(1_000)])
        .await
        .unwrap();
    let mut cfg = ProbeConfig::new(format!("localhost:{port}"));
    cfg.timeout = Duration::from_millis(400);
    cfg.full_handshake = false;
    cfg.resolve = vec![[127, 0, 0, 1].into(), [127, 0, 0, 2].into()];
    let report = probe(&cfg).await.unwrap();
    let sent: Vec<(String, usize, usize)> = report
        .per_address()
        .iter()
        .flat_map(|r| r.tests.iter())
        .filter(|t| t.exchange.is_some())
        .map(|t| (t.name.to_string(), t.hello_len, t.segments.len()))
        .collect();
    assert!(sent.len() >= 30, "two addresses' tests: {sent:?}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("probe.pcapng");
    std::fs::write(&file, report.to_pcapng()).unwrap();

    let hellos = tshark(
        &file,
        &[port],
        &[
            "-Y",
            "tls.handshake.type == 1",
            "-T",
            "fields",
            "-e",
            "tcp.stream",
            "-e",
            "tls.handshake.length",
        ],
    );
    assert_eq!(
        hellos.len(),
        sent.len(),
        "one ClientHello per test: {hellos:?}"
    );
    for (row, (name, len, _)) in hellos.iter().zip(&sent) {
        // tls.handshake.length excludes the 4-byte handshake header.
        assert_eq!(row[1], (len - 4).to_string(), "{name}: {row:?}");
    }
    let problems = tshark(
        &file,
        &[port],
        &["-Y", "_ws.malformed || ip.checksum.status == 0 || tcp.checksum.status == 0 || tcp.analysis.flags"],
    );
    assert!(problems.is_empty(), "{problems:?}");
    // The split hello went out as two client segments carrying data, on both addresses.
    let split: Vec<&(String, usize, usize)> = sent
        .iter()
        .filter(|s| s.0 == TestId::SplitHello.as_str())
        .collect();
    assert_eq!(split.len(), 2);
    assert!(split.iter().all(|s| s.2 == 2), "{split:?}");
}
