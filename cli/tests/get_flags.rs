//! `get`'s request limits and newer flags against real servers: a server silent after the
//! handshake, a trickling and an endless body (timeout, body cap, bounded memory), `-o`, `-H`,
//! `-i`, `--cache-file` across two runs, `--floor`, `--stall-timeout-ms`; and every bad input's
//! exit code and message, as a table.

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use std::time::Duration;

use common::{gateway_with, ladder_seen, legacy_gateway, LEGACY_WALK};
use hyper::body::Bytes;
use support::{ca_file, run, run_sampled};
use tls_fallback::testkit::{Emulator, MisbehavingServer, Misbehaviour, Rule, TlsServer};
use tls_fallback::TlsVersion::*;

fn s(p: &std::path::Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_silent_after_the_handshake_ends_as_timeout_after_timeout_ms() {
    let server = MisbehavingServer::start(Misbehaviour::NoAnswer)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&dir);
    let url = server.url();
    let r = run(&[
        "get",
        &url,
        "--ca-file",
        s(&ca),
        "--timeout-ms",
        "1000",
        "--json",
    ])
    .await;
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(v["error"]["kind"], "timeout", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("--timeout-ms 1000"), "{message}");
    assert!(message.contains("no response head"), "{message}");
    assert!(r.elapsed >= Duration::from_millis(1000), "{:?}", r.elapsed);
    assert!(r.elapsed < Duration::from_secs(10), "{:?}", r.elapsed);
    // The request did reach the server: the wait was for its answer.
    assert_eq!(server.handshakes(), 1);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_body_ends_as_timeout_with_the_bytes_read() {
    let server = MisbehavingServer::start(Misbehaviour::Trickle {
        every: Duration::from_millis(100),
        len: 1_000,
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&dir);
    let url = server.url();
    let r = run(&["get", &url, "--ca-file", s(&ca), "--timeout-ms", "1500"]).await;
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.starts_with("error (timeout)"), "{}", r.stderr);
    assert!(
        r.stderr.contains("the response body did not finish"),
        "{}",
        r.stderr
    );
    assert!(r.elapsed < Duration::from_secs(10), "{:?}", r.elapsed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_body_stops_at_max_body_in_memory() {
    let server = MisbehavingServer::start(Misbehaviour::EndlessBody)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&dir);
    let url = server.url();
    let r = run(&[
        "get",
        &url,
        "--ca-file",
        s(&ca),
        "--max-body",
        "1M",
        "--json",
    ])
    .await;
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(v["error"]["kind"], "http", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("larger than --max-body (1048576 bytes)"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_body_to_a_file_keeps_memory_bounded_and_leaves_no_partial_file() {
    let server = MisbehavingServer::start(Misbehaviour::EndlessBody)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&dir);
    let out = dir.path().join("body.bin");
    let url = server.url();
    let args = [
        "get",
        &url,
        "--ca-file",
        s(&ca),
        "-o",
        s(&out),
        "--max-body",
        "96M",
        "--timeout-ms",
        "40000",
        "--json",
    ];
    let r = run_sampled(&args, true).await;
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(v["error"]["kind"], "http", "{v}");
    // 96 MiB went through; the process never held more than a fraction of it.
    assert!(r.peak_kib > 0, "memory was sampled");
    assert!(r.peak_kib < 48 * 1024, "peak RSS {} KiB", r.peak_kib);
    assert!(!out.exists(), "a partial body must not be left as the file");
    // The sampler sees a body held in memory: without -o the same cap costs its size.
    let in_memory = [&args[..4], &args[6..]].concat();
    let r = run_sampled(&in_memory, true).await;
    assert_eq!(r.json()["error"]["kind"], "http", "{}", r.stdout);
    assert!(r.peak_kib > 96 * 1024, "peak RSS {} KiB", r.peak_kib);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_file_headers_and_include_carry_exactly_what_was_sent() {
    let body = Bytes::from_static(b"{\"paid\":true}\n\x00\xff binary tail");
    let server = MisbehavingServer::start(Misbehaviour::Reply {
        status: 201,
        headers: vec![
            ("x-gateway".into(), "legacy-7".into()),
            ("set-cookie".into(), "a=1".into()),
            ("set-cookie".into(), "b=2".into()),
        ],
        body: body.clone(),
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&dir);
    let out = dir.path().join("reply.bin");
    let url = format!("{}pay?x=1", server.url());
    let r = run(&[
        "get",
        &url,
        "--ca-file",
        s(&ca),
        "-X",
        "POST",
        "-d",
        "{\"amount\":5}",
        "-H",
        "Content-Type: application/json",
        "-H",
        "X-Request-Id: 42",
        "-i",
        "-o",
        s(&out),
        "--json",
    ])
    .await;
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert_eq!(std::fs::read(&out).unwrap(), body.as_ref());
    let v = r.json();
    assert_eq!(v["status"], 201);
    assert_eq!(v["body_bytes"], body.len());
    assert_eq!(v["output"], s(&out));
    assert_eq!(v["headers"]["x-gateway"], "legacy-7");
    assert_eq!(v["headers"]["set-cookie"], "a=1, b=2");
    let seen = server.requests();
    assert_eq!(seen.len(), 1, "the POST is written once");
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].uri, "/pay?x=1");
    assert_eq!(seen[0].body.as_ref(), b"{\"amount\":5}");
    assert_eq!(seen[0].headers["content-type"], "application/json");
    assert_eq!(seen[0].headers["x-request-id"], "42");
    // The text form shows the headers and where the body went.
    let r = run(&["get", &url, "--ca-file", s(&ca), "-i", "-o", s(&out)]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("headers:\n"), "{}", r.stdout);
    assert!(r.stdout.contains("  x-gateway: legacy-7\n"), "{}", r.stdout);
    let written = format!("body ({} bytes) written to {}", body.len(), s(&out));
    assert!(r.stdout.contains(&written), "{}", r.stdout);
    // Without -i the JSON has no headers key; without -o no output keys.
    let v = run(&["get", &url, "--ca-file", s(&ca), "--json"])
        .await
        .json();
    for key in ["headers", "output", "body_bytes"] {
        assert!(v.get(key).is_none(), "{key} in {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_file_makes_the_second_run_start_from_the_learned_rung() {
    let (_server, em) = legacy_gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&dir);
    let cache = dir.path().join("decisions.json");
    let url = em.url();
    let args = [
        "get",
        &url,
        "--ca-file",
        s(&ca),
        "--allow-legacy",
        "--cache-file",
        s(&cache),
        "--json",
    ];
    let first = run(&args).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(first.json()["from_cache"], false);
    assert_eq!(ladder_seen(&em), LEGACY_WALK);
    assert!(cache.exists(), "the decision was written");
    let second = run(&args).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    let v = second.json();
    assert_eq!(v["from_cache"], true, "{v}");
    assert_eq!(v["tls_version"], "1.0");
    assert_eq!(v["attempts"].as_array().unwrap().len(), 1);
    // On the wire: one more hello, straight at TLS 1.0 (with SCSV, as every learned start).
    let seen = ladder_seen(&em);
    assert_eq!(seen.len(), LEGACY_WALK.len() + 1, "{seen:?}");
    assert_eq!(seen[LEGACY_WALK.len()], (Some(Tls1_0), true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floor_opens_or_closes_the_legacy_rungs() {
    let (_server, em) = legacy_gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&dir);
    let url = em.url();
    let r = run(&["get", &url, "--ca-file", s(&ca), "--floor", "1.0", "--json"]).await;
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.json()["tls_version"], "1.0");
    let tls12 = TlsServer::only(Tls1_2).await.unwrap();
    let r = run(&[
        "get",
        &tls12.url(),
        "--ca-file",
        s(&ca),
        "--floor",
        "1.3",
        "--json",
    ])
    .await;
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert_eq!(r.json()["error"]["kind"], "below_floor", "{}", r.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_timeout_races_a_silent_rung_or_waits_the_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&dir);
    // (stall flag, expected bound on the request's ms): TLS 1.3 hellos hang.
    let rows = [("100", 0..1_400), ("0", 1_900..10_000)];
    for (stall, bound) in rows {
        let server = TlsServer::only(Tls1_2).await.unwrap();
        let em = Emulator::start(server.addr(), vec![Rule::hang_above(Tls1_2)])
            .await
            .unwrap();
        let r = run(&[
            "get",
            &em.url(),
            "--ca-file",
            s(&ca),
            "--handshake-timeout-ms",
            "2000",
            "--stall-timeout-ms",
            stall,
            "--json",
        ])
        .await;
        assert_eq!(r.code, 0, "stall {stall}: {} {}", r.stdout, r.stderr);
        let v = r.json();
        assert_eq!(v["tls_version"], "1.2", "stall {stall}: {v}");
        let ms = v["ms"].as_f64().unwrap() as u64;
        assert!(
            bound.contains(&ms),
            "stall {stall}: {ms} ms, expected {bound:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_says_what_is_wrong_and_what_is_expected() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let u = "https://x.example/";
    // (args, exit code, substring of stderr)
    let rows: &[(&[&str], i32, &str)] = &[
        (
            &["get", "localhost:8443/health"],
            2,
            "e.g. https://localhost:8443/health",
        ),
        (&["get", "pay.example"], 2, "it has no scheme"),
        (&["get", "ftp://x.example/"], 2, "https:// or http://"),
        (
            &["get", u, "--pin", "localhost=1.5"],
            2,
            "1.5 is not a TLS version; expected 1.0, 1.1, 1.2 or 1.3",
        ),
        (&["get", u, "--pin", "a b=1.0"], 2, "invalid host pattern"),
        (
            &["get", u, "--pin", "https://x.example:8443/=1.0"],
            2,
            "it looks like a URL; a pattern is a host with an optional port, without scheme or \
             path: \"x.example\" (every port) or \"x.example:8443\" (port 8443 only)",
        ),
        (&["get", u, "--pin", "x.example"], 2, "HOST[:PORT]=VERSION"),
        (
            &["get", u, "--floor", "1.5"],
            2,
            "--floor 1.5 is not a TLS version; expected 1.0, 1.1, 1.2 or 1.3",
        ),
        (
            &["get", u, "-H", "Content-Type application/json"],
            2,
            "expected 'Name: value'",
        ),
        (&["get", u, "-H", "Bad Name: x"], 2, "is not a header name"),
        (
            &["get", u, "--max-body", "lots"],
            2,
            "expected a number of bytes",
        ),
        (&["get", u, "--timeout-ms", "0"], 2, "above 0"),
        (&["get", u, "--handshake-timeout-ms", "0"], 2, "above 0"),
        (
            &["get", u, "--stall-timeout-ms", "soon"],
            2,
            "invalid value",
        ),
        (&["get", u, "-X", "GE T"], 2, "invalid method"),
        (&["get", u, "-o", s(&out), "--repeat", "2"], 2, "not both"),
        (
            &["probe", "localhost:99999"],
            2,
            "port 99999 is out of range 1-65535",
        ),
        (
            &["probe", ""],
            2,
            "expected HOST[:PORT] or https://HOST[:PORT]/",
        ),
        (&["probe", u, "--timeout-ms", "0"], 2, "above 0"),
    ];
    for (args, code, needle) in rows {
        let r = run(args).await;
        assert_eq!(r.code, *code, "{args:?}: {} {}", r.stdout, r.stderr);
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{args:?}: {}", r.stderr);
    }
    // The pin's version is blamed, not its host pattern.
    let r = run(&["get", u, "--pin", "localhost=1.5"]).await;
    assert!(!r.stderr.contains("host pattern"), "{}", r.stderr);
    // With --json, runtime input errors are JSON objects too.
    let r = run(&["get", "localhost:8443/health", "--json"]).await;
    assert_eq!(r.json()["error"]["kind"], "bad_input");
    // An -o path that cannot be created is bad input, found once the response arrives.
    let (_server, em) = gateway_with(Rule::close_above(Tls1_0)).await;
    let ca = ca_file(&dir);
    let bad = dir.path().join("missing-dir").join("body");
    let r = run(&[
        "get",
        &em.url(),
        "--ca-file",
        s(&ca),
        "--allow-legacy",
        "-o",
        s(&bad),
    ])
    .await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("cannot create the file"), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_accepts_a_url() {
    let server = TlsServer::modern().await.unwrap();
    let url = format!("https://127.0.0.1:{}/health", server.addr().port());
    let r = run(&[
        "probe",
        &url,
        "--sni",
        "localhost",
        "--timeout-ms",
        "2000",
        "--json",
    ])
    .await;
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(v["supported"], serde_json::json!(["1.2", "1.3"]), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_port_is_no_tls_answer_within_one_handshake_timeout_plus_the_stall() {
    // Accepts connections and never writes a byte.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        // Bounded: the walk opens a handful of connections.
        for _ in 0..64 {
            match listener.accept().await {
                Ok((tcp, _)) => held.push(tcp),
                Err(_) => break,
            }
        }
    });
    let url = format!("https://localhost:{port}/");
    let r = run(&[
        "get",
        &url,
        "--handshake-timeout-ms",
        "1000",
        "--stall-timeout-ms",
        "300",
        "--json",
    ])
    .await;
    holder.abort();
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(v["error"]["kind"], "no_tls_answer", "{v}");
    // One handshake timeout plus one stall time, plus the process and a loaded machine.
    assert!(
        r.elapsed < Duration::from_millis(1_300 + 2_000),
        "{:?}",
        r.elapsed
    );
}
