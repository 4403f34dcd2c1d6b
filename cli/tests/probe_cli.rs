//! `tls-fallback probe` as a user runs it, against test-kit gateways: `--resolve` chooses the
//! addresses (two emulators on one port of 127.0.0.1 and 127.0.0.2, one of them dropping long
//! hellos), `--format` and `--report FILE` write the format asked for, `--format json` keeps
//! every original key, `--pcap` writes a pcapng file, `--only` sends one hello, nothing but the
//! report reaches a pipe (no progress line), and bad input exits 2 before any connection.

mod support;

use std::net::SocketAddr;
use std::path::Path;

use serde_json::Value;
use support::{ca_file, run, Run};
use tls_fallback::testkit::{Action, Emulator, Rule, TlsServer};

/// Per-test timeout of the probe: short, the gateways are local.
const TIMEOUT_MS: &str = "600";

/// A server behind two emulators on one port: 127.0.0.1 hangs on hellos longer than 1,000
/// bytes, 127.0.0.2 passes everything.
struct TwoAddresses {
    _server: TlsServer,
    broken: Emulator,
    healthy: Emulator,
}

impl TwoAddresses {
    async fn start() -> TwoAddresses {
        let server = TlsServer::modern().await.unwrap();
        for _ in 0..5 {
            let broken = Emulator::start(server.addr(), vec![Rule::hang_if_longer_than(1000)])
                .await
                .unwrap();
            let at = SocketAddr::from(([127, 0, 0, 2], broken.addr().port()));
            match Emulator::start_at(at, server.addr(), vec![]).await {
                Ok(healthy) => {
                    return TwoAddresses {
                        _server: server,
                        broken,
                        healthy,
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => panic!("bind {at}: {e}"),
            }
        }
        panic!("no port free on both 127.0.0.1 and 127.0.0.2");
    }

    fn port(&self) -> u16 {
        self.broken.addr().port()
    }

    fn target(&self) -> String {
        format!("localhost:{}", self.port())
    }

    fn resolve(&self) -> String {
        format!("localhost:{}:127.0.0.1,127.0.0.2", self.port())
    }
}

/// `probe TARGET --resolve ... --ca-file ... --timeout-ms ...` plus `extra`.
async fn probe(gw: &TwoAddresses, ca: &Path, extra: &[&str]) -> Run {
    let target = gw.target();
    let resolve = gw.resolve();
    let ca = ca.display().to_string();
    let mut args = vec![
        "probe",
        target.as_str(),
        "--resolve",
        resolve.as_str(),
        "--ca-file",
        ca.as_str(),
        "--timeout-ms",
        TIMEOUT_MS,
    ];
    args.extend_from_slice(extra);
    run(&args).await
}

/// Nothing but the report on a pipe: no carriage return, no escape sequence.
fn no_progress_bytes(run: &Run) {
    for (name, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        assert!(!text.contains('\r'), "{name}: {text:?}");
        assert!(!text.contains('\x1b'), "{name}: {text:?}");
    }
}

/// The original JSON contract, in order, then the new keys.
const ORIGINAL_KEYS: [&str; 9] = [
    "target",
    "supported",
    "version_intolerance",
    "long_handshake_intolerance",
    "cipher_count_intolerance",
    "extension_intolerance",
    "fallback_scsv",
    "recommendation",
    "tests",
];

fn keeps_the_original_keys(v: &Value, text: &str) {
    let obj = v.as_object().expect("a JSON object");
    let mut at = 0;
    for key in ORIGINAL_KEYS {
        assert!(obj.contains_key(key), "{key}");
        let found = text[at..]
            .find(&format!("\"{key}\""))
            .unwrap_or_else(|| panic!("{key} after byte {at}"));
        at += found;
    }
    assert!(v["supported"].is_array() && v["version_intolerance"].is_object());
    for k in ["1.0", "1.1", "1.2", "1.3", "future"] {
        assert!(v["version_intolerance"][k].is_boolean(), "{k}");
    }
    for t in v["tests"].as_array().unwrap() {
        for key in [
            "name",
            "description",
            "hello_len",
            "outcome",
            "negotiated",
            "ms",
        ] {
            assert!(t.get(key).is_some(), "{key} in {t}");
        }
    }
    for key in [
        "long_hello_intolerance",
        "split_hello_intolerance",
        "pq_key_share_intolerance",
        "higher_version_blocked",
        "protocolIntolerance",
        "miscIntolerance",
        "fallbackScsv",
        "findings",
    ] {
        assert!(obj.contains_key(key), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_drives_the_addresses_and_json_keeps_every_original_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&dir);
    let gw = TwoAddresses::start().await;
    let md = dir.path().join("report.md");
    let pcap = dir.path().join("probe.pcapng");
    let run = probe(
        &gw,
        &ca,
        &[
            "--format",
            "json",
            "--report",
            md.to_str().unwrap(),
            "--pcap",
            pcap.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    no_progress_bytes(&run);
    let v = run.json();
    keeps_the_original_keys(&v, &run.stdout);
    // Both addresses, in the order given, each with its own findings.
    let addrs = v["addresses"].as_array().expect("addresses");
    assert_eq!(addrs.len(), 2, "{v}");
    assert_eq!(addrs[0]["address"], gw.broken.addr().to_string());
    assert_eq!(addrs[1]["address"], gw.healthy.addr().to_string());
    assert_eq!(addrs[0]["long_hello_intolerance"], true);
    assert_eq!(addrs[1]["long_hello_intolerance"], false);
    assert_eq!(
        v["addresses_differ"],
        "127.0.0.1 is intolerant (long hello), 127.0.0.2 is not intolerant: the addresses \
         behave differently."
    );
    // Each address saw the probe: the broken one failed the long hellos, the healthy one none.
    assert!(gw.broken.count() >= 18 && gw.healthy.count() >= 18);
    assert!(gw.broken.hellos().iter().any(|h| h.action == Action::Hang));
    assert!(gw.healthy.hellos().iter().all(|h| h.action == Action::Pass));
    // --report report.md is Markdown, with the verdict; --pcap is pcapng.
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(
        !text.trim_start().starts_with('{') && !text.contains("<html"),
        "{text}"
    );
    assert!(
        text.contains('#') && text.contains("a size limit"),
        "{text}"
    );
    let bytes = std::fs::read(&pcap).unwrap();
    assert!(bytes.len() > 1000, "{} bytes", bytes.len());
    assert_eq!(bytes[..4], [0x0a, 0x0d, 0x0d, 0x0a]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_files_take_their_format_from_the_extension() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&dir);
    let gw = TwoAddresses::start().await;
    for ext in ["html", "json", "txt"] {
        let path = dir.path().join(format!("report.{ext}"));
        let run = probe(&gw, &ca, &["--report", path.to_str().unwrap()]).await;
        assert_eq!(run.code, 0, "{ext}: {}", run.stderr);
        no_progress_bytes(&run);
        // stdout is the text table whatever the file's format.
        assert!(
            run.stdout.starts_with("TLS protocol details for"),
            "{}",
            run.stdout
        );
        let text = std::fs::read_to_string(&path).unwrap();
        match ext {
            "html" => {
                assert!(text.contains("<html") && text.contains("</html>"), "{text}");
                assert!(!text.contains("<script src"), "self-contained");
            }
            "json" => {
                let v: Value = serde_json::from_str(&text).expect("the .json report parses");
                keeps_the_original_keys(&v, &text);
                assert_eq!(v["addresses"].as_array().map(Vec::len), Some(2));
            }
            _ => assert!(text.starts_with("TLS protocol details for"), "{text}"),
        }
        assert!(text.contains("127.0.0.2"), "{ext}");
    }
    // --format markdown and html on stdout.
    for (format, marker) in [("markdown", "#"), ("html", "<html")] {
        let run = probe(&gw, &ca, &["--format", format]).await;
        assert_eq!(run.code, 0, "{format}: {}", run.stderr);
        no_progress_bytes(&run);
        assert!(run.stdout.contains(marker), "{format}: {}", run.stdout);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_sends_one_hello_to_each_address() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&dir);
    let gw = TwoAddresses::start().await;
    let run = probe(
        &gw,
        &ca,
        &["--only", "long_hello", "--baseline", "1.2", "--json"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v = run.json();
    assert_eq!(v["tests"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["tests"][0]["name"], "long_hello");
    for em in [&gw.broken, &gw.healthy] {
        let seen = em.hellos();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].offered(), Some(tls_fallback::TlsVersion::Tls1_2));
        assert!(seen[0].len() >= 1500);
    }
    assert_eq!(gw.broken.hellos()[0].action, Action::Hang);
    assert_eq!(gw.healthy.hellos()[0].action, Action::Pass);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_2_before_any_connection_and_a_dead_port_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&dir);
    let gw = TwoAddresses::start().await;
    let target = gw.target();
    let port = gw.port();
    let other = format!("other.example:{port}:127.0.0.1");
    let wrong_port = format!("localhost:{}:127.0.0.1", port.wrapping_add(1).max(1));
    let pdf = dir.path().join("report.pdf");
    let ca_arg = ca.display().to_string();
    // (arguments after the target, words of the message)
    let rows: [(Vec<&str>, &str); 6] = [
        (vec!["--resolve", &other], "is not the target localhost:"),
        (
            vec!["--resolve", &wrong_port],
            "is not the target localhost:",
        ),
        (
            vec!["--resolve", "localhost:1:not-an-ip"],
            "HOST:PORT:ADDR[,ADDR...]",
        ),
        (
            vec!["--report", pdf.to_str().unwrap()],
            ".html, .md, .json or .txt",
        ),
        (
            vec!["--format", "pdf"],
            "expected text, json, markdown or html",
        ),
        (vec!["--only", "long"], "split_hello"),
    ];
    for (extra, words) in rows {
        let mut args = vec!["probe", target.as_str(), "--ca-file", ca_arg.as_str()];
        args.extend(extra.iter().copied());
        let run = run(&args).await;
        assert_eq!(run.code, 2, "{extra:?}: {}", run.stderr);
        assert!(run.stderr.contains(words), "{extra:?}: {}", run.stderr);
        assert!(
            run.stderr.starts_with("error (bad_input)"),
            "{}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "{}", run.stdout);
        no_progress_bytes(&run);
    }
    assert!(!pdf.exists());
    assert_eq!(
        gw.broken.count() + gw.healthy.count(),
        0,
        "no connection made"
    );
    // --json: the error is one JSON object on stdout.
    let out = run(&["probe", &target, "--resolve", &other, "--json"]).await;
    assert_eq!(out.code, 2);
    assert_eq!(out.json()["error"]["kind"], "bad_input");
    // A port nothing listens on: exit 1, the reason on stderr.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = run(&[
        "probe",
        &format!("127.0.0.1:{dead}"),
        "--timeout-ms",
        TIMEOUT_MS,
    ])
    .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.starts_with("error (connect)"), "{}", out.stderr);
    assert!(out.stdout.is_empty());
}

/// On a terminal (a pty from util-linux `script`), a progress line names the address, the test
/// and the time, redrawn in place and cleared before the report; `--json` on the same terminal
/// shows none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_gets_a_progress_line_and_json_does_not() {
    let gw = TwoAddresses::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&dir);
    let bin = env!("CARGO_BIN_EXE_tls-fallback");
    let under_pty = |extra: &'static str| {
        let cmd = format!(
            "{bin} probe {} --resolve {} --ca-file {} --timeout-ms {TIMEOUT_MS} {extra}",
            gw.target(),
            gw.resolve(),
            ca.display()
        );
        async move {
            let out = tokio::time::timeout(
                std::time::Duration::from_secs(60),
                tokio::process::Command::new("script")
                    .args(["-qec", &cmd, "/dev/null"])
                    .kill_on_drop(true)
                    .output(),
            )
            .await
            .expect("the probe ends within 60 s")
            .expect("util-linux script runs (it gives the CLI a terminal)");
            assert!(out.status.success(), "{out:?}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    let text = under_pty("").await;
    // The hanging long hello keeps one test on screen for TIMEOUT_MS: ticks every 100 ms.
    assert!(text.contains("\r\x1b[2Kprobing 127.0.0.1:"), "{text:?}");
    assert!(text.contains(": long_hello ("), "{text:?}");
    assert!(text.contains(" s)"), "{text:?}");
    assert!(text.contains("TLS protocol details for"), "{text:?}");
    let json = under_pty("--json").await;
    assert!(
        !json.contains("probing ") && !json.contains('\x1b'),
        "{json:?}"
    );
    assert!(json.trim_start().starts_with('{'), "{json:?}");
}
