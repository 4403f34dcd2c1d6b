//! The `tls-fallback` binary against test-kit gateways: JSON keys and values, exit codes, and
//! bad input. The binary runs as a child process; the gateways run in this test's runtime.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::legacy_gateway;
use serde_json::Value;
use tls_fallback::testkit::{Emulator, Rule, TestPki, TlsServer};
use tls_fallback::TlsVersion::*;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("stdout is not JSON ({e}): {}\n{}", self.stdout, self.stderr)
        })
    }
}

async fn run(args: &[&str]) -> Run {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_tls-fallback"))
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the CLI finishes within 60 s")
    .expect("the CLI starts");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ca_file(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, TestPki::shared().ca_pem()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_json_reports_version_cipher_profile_and_every_attempt() {
    let (_s, em) = legacy_gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&dir);
    let url = em.url();
    let r = run(&[
        "get",
        &url,
        "--ca-file",
        ca.to_str().unwrap(),
        "--allow-legacy",
        "--json",
    ])
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["status"], 200);
    assert_eq!(v["tls_version"], "1.0");
    assert_eq!(v["profile"], "tls10-legacy");
    assert_eq!(v["from_cache"], false);
    assert!(v["cipher"].as_str().unwrap().contains("SHA"), "{v}");
    let attempts = v["attempts"].as_array().unwrap();
    let outcomes: Vec<&str> = attempts
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["closed", "closed", "closed", "closed", "closed", "ok"]
    );
    assert!(attempts
        .iter()
        .all(|a| a["ms"].is_u64() && a["profile"].is_string()));
    assert_eq!(em.count(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_failure_exits_1_with_kind_message_and_attempts() {
    let (_s, em) = legacy_gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&dir);
    let url = em.url();
    let r = run(&["get", &url, "--ca-file", ca.to_str().unwrap(), "--json"]).await;
    assert_eq!(r.code, 1);
    let v = r.json();
    assert_eq!(v["error"]["kind"], "below_floor");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--allow-legacy"));
    assert_eq!(v["attempts"].as_array().unwrap().len(), 4);
    // Human form goes to stderr with the same kind.
    let r = run(&["get", &url, "--ca-file", ca.to_str().unwrap()]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.starts_with("error (below_floor)"), "{}", r.stderr);
}

/// The numbered attempt lines of a human-form answer.
fn attempt_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| {
            let l = l.trim_start();
            l.split_once(". ")
                .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_attempt_lines_tell_what_happened_on_a_silent_port_and_a_closed_one() {
    // A port that accepts and never says a word.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let url = format!("https://127.0.0.1:{port}/");
    let flags = [
        "--handshake-timeout-ms",
        "1000",
        "--stall-timeout-ms",
        "200",
    ];
    let r = run(&[&["get", url.as_str()][..], &flags].concat()).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.starts_with("error (no_tls_answer)"),
        "{}",
        r.stderr
    );
    let lines = attempt_lines(&r.stderr);
    assert_eq!(lines.len(), 4, "{}", r.stderr);
    // Nothing finished: each line says it timed out or was dropped when the walk gave up.
    let abandoned = "abandoned unanswered when the walk ended without a connection (no rung \
                     got a byte back) after ";
    for line in &lines {
        assert!(
            line.contains("no answer before the timeout after ") || line.contains(abandoned),
            "{line}"
        );
    }
    assert!(lines.iter().any(|l| l.contains(abandoned)), "{}", r.stderr);
    assert!(!r.stderr.contains("finished first"), "{}", r.stderr);
    // The JSON keeps its words.
    let r = run(&[&["get", url.as_str(), "--json"][..], &flags].concat()).await;
    let outcomes = r.json()["attempts"].as_array().unwrap().clone();
    assert!(
        outcomes
            .iter()
            .all(|a| a["outcome"] == "timeout" || a["outcome"] == "stalled"),
        "{}",
        r.stdout
    );
    holder.abort();

    // A closed port: the message and the line say the connection was refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let r = run(&["get", &format!("https://127.0.0.1:{port}/")]).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.starts_with(&format!(
            "error (connect): could not connect to 127.0.0.1:{port}: tcp connect error: \
             Connection refused"
        )),
        "{}",
        r.stderr
    );
    let lines = attempt_lines(&r.stderr);
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    assert!(
        lines[0].starts_with(
            "  1. modern (up to TLS 1.3): TCP connect failed: tcp connect error: Connection \
             refused (os error 111) after "
        ) && lines[0].ends_with(" ms"),
        "{}",
        r.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_table_says_what_a_local_refusal_means() {
    // A TLS 1.0-only server: OpenSSL refuses its ServerHello to the modern hello (reason 258).
    let server = TlsServer::only(Tls1_0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&dir);
    let url = server.url();
    let args = [
        "get",
        &url,
        "--ca-file",
        ca.to_str().unwrap(),
        "--allow-legacy",
    ];
    let r = run(&args).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines = attempt_lines(&r.stdout);
    // Which local refusal depends on the OpenSSL build: the vendored 3.6 refuses the version
    // (258); Debian's 3.0.22 refuses the TLS 1.0 key exchange's SHA-1/MD5 signature first (333).
    let refusals = [
        (
            " ms  refused by OpenSSL here: the server chose a TLS version this hello does not \
             allow (OpenSSL reason 258: unsupported protocol)",
            "refused:258",
        ),
        (
            " ms  refused by OpenSSL here: the server signed with SHA-1 or MD5, refused at this \
             security level (OpenSSL reason 333: legacy sigalg disallowed)",
            "refused:333",
        ),
    ];
    let found = lines.iter().enumerate().find_map(|(i, l)| {
        (refusals.iter())
            .find(|(text, _)| l.ends_with(text))
            .map(|(_, word)| (i, *word))
    });
    assert!(found.is_some(), "{}", r.stdout);
    let (at, word) = found.unwrap();
    assert!(
        lines.last().is_some_and(|l| l.ends_with(" ms  ok")),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains(word), "{}", r.stdout);
    // The JSON keeps the short word for the same attempt.
    let r = run(&[&args[..], &["--json"]].concat()).await;
    let v = r.json();
    assert_eq!(v["attempts"][at]["outcome"], word, "{v}");
}

#[tokio::test]
async fn help_and_the_readme_list_every_subcommand_the_proxy_with_its_docs() {
    let r = run(&["--help"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    // "Commands:" then one "  NAME  what it does" line each.
    let commands: Vec<(&str, &str)> = (r.stdout.lines())
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.trim().split_once(' '))
        .filter(|(name, _)| *name != "help")
        .collect();
    let names: Vec<&str> = commands.iter().map(|c| c.0).collect();
    assert_eq!(
        names,
        ["get", "probe", "demo", "proxy", "decisions"],
        "{}",
        r.stdout
    );
    let proxy = commands[3].1.trim();
    assert!(
        proxy.contains("egress proxy") && proxy.ends_with("(docs/PROXY.md)"),
        "{proxy}"
    );
    // The README's CLI section: a usage line and a bullet for each; the proxy's points to its
    // documentation.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("the README");
    let section = (readme.split("\n## The CLI\n").nth(1))
        .and_then(|s| s.split("\n## ").next())
        .expect("a CLI section");
    for name in &names {
        let usage = format!("\ntls-fallback {name} ");
        assert!(section.contains(&usage), "no usage line for {name}");
        assert!(
            section.contains(&format!("\n* `{name}` ")),
            "no bullet for {name}"
        );
    }
    let bullet = section.split("\n* `proxy` ").nth(1).unwrap_or_default();
    let bullet = bullet.split("\n* ").next().unwrap_or_default();
    assert!(bullet.contains("(docs/PROXY.md)"), "{bullet}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_presents_a_client_certificate_when_given_one() {
    let server = tls_fallback::testkit::TlsServer::builder()
        .only(tls_fallback::TlsVersion::Tls1_2)
        .require_client_certificate(true)
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&dir);
    let pki = TestPki::shared();
    let cert = dir.path().join("client.pem");
    let key = dir.path().join("client.key");
    std::fs::write(&cert, pki.client.cert.to_pem().unwrap()).unwrap();
    std::fs::write(&key, pki.client.key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    let url = server.url();
    let ca = ca.to_str().unwrap();
    let r = run(&["get", &url, "--ca-file", ca, "--json"]).await;
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("client certificate"), "{}", r.stdout);
    assert_eq!(r.json()["attempts"].as_array().unwrap().len(), 1);
    let r = run(&[
        "get",
        &url,
        "--ca-file",
        ca,
        "--client-cert",
        cert.to_str().unwrap(),
        "--client-key",
        key.to_str().unwrap(),
        "--json",
    ])
    .await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.json()["status"], 200);
    // One without the other is a usage error.
    let r = run(&["get", &url, "--client-cert", cert.to_str().unwrap()]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_with_a_pin_sends_one_hello_at_that_version() {
    let (_s, em) = legacy_gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&dir);
    let pin = format!("localhost:{}=1.0", em.addr().port());
    let r = run(&[
        "get",
        &em.url(),
        "--ca-file",
        ca.to_str().unwrap(),
        "--pin",
        &pin,
        "--json",
    ])
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["tls_version"], "1.0");
    assert_eq!(v["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(em.count(), 1);
    assert!(!em.hellos()[0].scsv());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_repeat_shares_the_cache_across_requests() {
    let (server, em) = legacy_gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&dir);
    let r = run(&[
        "get",
        &em.url(),
        "--ca-file",
        ca.to_str().unwrap(),
        "--allow-legacy",
        "--repeat",
        "20",
        "--concurrency",
        "5",
        "--json",
    ])
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["requests"], 20);
    assert_eq!(v["ok"], 20);
    assert_eq!(v["failed"], 0);
    assert_eq!(v["versions"]["1.0"], 20);
    assert_eq!(v["errors"], serde_json::json!({}));
    assert!(v["p50_ms"].as_f64().unwrap() <= v["p99_ms"].as_f64().unwrap());
    // One learning walk (5 failed hellos) plus one handshake per connection actually opened.
    let handshakes = v["handshakes"].as_u64().unwrap();
    assert!(em.failed() <= 5, "failed hellos: {}", em.failed());
    assert_eq!(handshakes as usize, em.count());
    assert_eq!(server.requests("GET"), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_2_with_a_clear_message() {
    let cases: &[(&[&str], &str)] = &[
        (&["get", "not a url"], "invalid URL"),
        (&["get", "ftp://example.com/"], "https://"),
        (
            &["get", "https://x.example/", "--pin", "x.example"],
            "HOST[:PORT]=VERSION",
        ),
        (
            &["get", "https://x.example/", "--pin", "x.example=1.4"],
            "unknown TLS version",
        ),
        (
            &["get", "https://x.example/", "--pin", "a b=1.0"],
            "invalid host pattern",
        ),
        (
            &["get", "https://x.example/", "--handshake-timeout-ms", "0"],
            "above 0",
        ),
        (
            &[
                "get",
                "https://x.example/",
                "--ca-file",
                "/nonexistent/ca.pem",
            ],
            "cannot read CA file",
        ),
        (
            &["get", "https://x.example/", "--repeat", "abc"],
            "invalid value",
        ),
        (&["probe", "::::"], ""),
        (&["frobnicate"], "unrecognized subcommand"),
    ];
    for (args, needle) in cases {
        let r = run(args).await;
        assert_eq!(r.code, 2, "{args:?}: {} {}", r.stdout, r.stderr);
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{args:?}: {}", r.stderr);
    }
    // With --json the error is an object too.
    let r = run(&["get", "nope://", "--json"]).await;
    assert_eq!(r.code, 2);
    assert_eq!(r.json()["error"]["kind"], "bad_input");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_green_within_30_seconds() {
    let started = std::time::Instant::now();
    let r = run(&["demo", "--json"]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(v["ok"], true);
    let gateways = v["gateways"].as_array().unwrap();
    assert_eq!(gateways.len(), 7);
    let legacy = &gateways[0];
    assert_eq!(legacy["first"]["version"], "1.0");
    assert_eq!(legacy["second"]["attempts"], 1);
    let mitm = gateways
        .iter()
        .find(|g| g["gateway"] == "mitm-downgrade")
        .unwrap();
    assert_eq!(mitm["first"]["error"], "downgrade_detected");
    assert!(started.elapsed() < Duration::from_secs(30));
}

async fn probe_json(em: &Emulator) -> Value {
    let target = format!("127.0.0.1:{}", em.addr().port());
    let r = run(&[
        "probe",
        &target,
        "--sni",
        "localhost",
        "--timeout-ms",
        "700",
        "--json",
    ])
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.json()
}

/// The intolerance flags of a probe report, in a fixed order.
fn flags(v: &Value) -> (Vec<(String, bool)>, bool, bool, bool) {
    let vi = v["version_intolerance"].as_object().unwrap();
    let mut vi: Vec<(String, bool)> = vi
        .iter()
        .map(|(k, b)| (k.clone(), b.as_bool().unwrap()))
        .collect();
    vi.sort();
    (
        vi,
        v["long_handshake_intolerance"].as_bool().unwrap(),
        v["cipher_count_intolerance"].as_bool().unwrap(),
        v["extension_intolerance"].as_bool().unwrap(),
    )
}

fn vi(pairs: [bool; 5]) -> Vec<(String, bool)> {
    ["1.0", "1.1", "1.2", "1.3", "future"]
        .iter()
        .zip(pairs)
        .map(|(k, b)| (k.to_string(), b))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_on_a_clean_modern_server_finds_nothing_and_scsv_supported() {
    let server = TlsServer::modern().await.unwrap();
    let em = Emulator::start(server.addr(), vec![]).await.unwrap();
    let v = probe_json(&em).await;
    assert_eq!(v["supported"], serde_json::json!(["1.2", "1.3"]));
    assert_eq!(flags(&v), (vi([false; 5]), false, false, false));
    assert_eq!(v["fallback_scsv"], "supported");
    for key in ["target", "recommendation", "tests"] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    let full = v["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "fallback_connector");
    assert!(full.is_some(), "the full handshake check is reported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_reports_each_emulated_intolerance_and_no_other() {
    // (server, rule, expected version intolerance, long, ciphers, supported)
    let modern = || async { TlsServer::modern().await.unwrap() };
    let cases = vec![
        (
            TlsServer::only(Tls1_0).await.unwrap(),
            Rule::close_above(Tls1_0),
            vi([false, true, true, true, true]),
            (false, false),
            vec!["1.0"],
        ),
        (
            TlsServer::only(Tls1_0).await.unwrap(),
            Rule::reset_above(Tls1_0),
            vi([false, true, true, true, true]),
            (false, false),
            vec!["1.0"],
        ),
        (
            TlsServer::only(Tls1_2).await.unwrap(),
            Rule::hang_above(Tls1_2),
            vi([false, false, false, true, true]),
            (false, false),
            vec!["1.2"],
        ),
        (
            TlsServer::only(Tls1_1).await.unwrap(),
            Rule::alert_above(Tls1_1, 70),
            vi([false, false, true, true, true]),
            (false, false),
            vec!["1.1"],
        ),
        (
            modern().await,
            Rule::f5_hang(),
            vi([false; 5]),
            (true, false),
            vec!["1.2", "1.3"],
        ),
        (
            modern().await,
            Rule::close_if_ciphers_above(64),
            vi([false; 5]),
            (false, true),
            vec!["1.2", "1.3"],
        ),
    ];
    for (server, rule, versions, (long, ciphers), supported) in cases {
        let em = Emulator::start(server.addr(), vec![rule.clone()])
            .await
            .unwrap();
        let v = probe_json(&em).await;
        assert_eq!(
            flags(&v),
            (versions, long, ciphers, false),
            "{rule:?}: {v:#}"
        );
        assert_eq!(v["supported"], serde_json::json!(supported), "{rule:?}");
        assert!(
            v["recommendation"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("vendor"),
            "{rule:?}: {}",
            v["recommendation"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_human_output_is_a_table_and_connect_failure_exits_1() {
    let server = TlsServer::modern().await.unwrap();
    let target = format!("127.0.0.1:{}", server.addr().port());
    let r = run(&[
        "probe",
        &target,
        "--sni",
        "localhost",
        "--timeout-ms",
        "2000",
    ])
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("1.3"), "{}", r.stdout);
    drop(server);
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    drop(listener);
    let r = run(&["probe", &dead, "--timeout-ms", "1000", "--json"]).await;
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert_eq!(r.json()["error"]["kind"], "connect");
}
