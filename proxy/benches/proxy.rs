//! `tls-fallback proxy` against nginx as a TLS-originating reverse proxy, in one run:
//! `cargo bench -p tls-fallback-proxy --bench proxy` (about two minutes). Both sit in front of the
//! same test-kit HTTPS upstream (TLS 1.3, HTTP/1.1) and keep upstream connections alive; `wrk`
//! drives each with 64 keep-alive connections, plain HTTP, for 5 s per round: direct, then three
//! rounds each in the order nginx, proxy, proxy, nginx, nginx, proxy (to even out drift), after
//! warming each with one request and one second of the same load; once with one worker each
//! (nginx `worker_processes 1`, the proxy's `--workers 1`) and once with two. It prints the
//! median requests/s, p50/p99 latency and CPU time per request (the server's processes, from
//! `/proc`) of each, the latency each adds over going to the upstream directly, and the
//! proxy/nginx ratios. `PROXY_BENCH_ROUNDS=8 PROXY_BENCH_SECONDS=3` runs more, shorter rounds:
//! on a shared machine, the medians of many alternating rounds are what to compare.
//! Everything shares the machine's cores: compare ratios, not absolutes.
//! `PROXY_BENCH_UPSTREAM_ONLY=1` only starts the upstream and prints its port and CA file, for
//! profiling by hand. Needs `wrk` and `nginx` (Debian packages; `.ci/run` installs them).

mod support;

use std::path::Path;
use std::process::Command;

use support::*;

use tls_fallback::testkit::{TestPki, TlsServer};

const CONNECTIONS: u32 = 64;
const SECONDS: u32 = 5;

/// One wrk round against `url`, with the CPU time the processes `pids` (and their children)
/// spent meanwhile, per request.
fn wrk(url: &str, pids: &[u32]) -> Round {
    let before = cpu_ticks(pids);
    let (mut r, requests) = wrk_for(url, setting("PROXY_BENCH_SECONDS", SECONDS));
    let ticks = cpu_ticks(pids).saturating_sub(before);
    r.cpu_us = ticks as f64 * 1e6 / clock_ticks() / requests.max(1) as f64;
    r
}

/// A wrk round of `seconds` and the number of requests it made.
fn wrk_for(url: &str, seconds: u32) -> (Round, u64) {
    let bin = find("wrk").expect("wrk is installed (apt-get install wrk)");
    let out = Command::new(bin)
        .args([
            "-t2",
            &format!("-c{CONNECTIONS}"),
            &format!("-d{seconds}s"),
            "--latency",
            url,
        ])
        .output()
        .expect("wrk runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("Non-2xx") && !text.contains("Socket errors"),
        "wrk saw errors for {url}:\n{text}"
    );
    let field = |prefix: &str| -> &str {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {prefix:?} in wrk output:\n{text}"))
    };
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk output:\n{text}"));
    let round = Round {
        rps: field("Requests/sec:").parse().expect("requests/s"),
        p50: ms(field("50%")),
        p99: ms(field("99%")),
        cpu_us: 0.0,
    };
    (round, requests)
}

/// `512.00us`, `1.23ms`, `1.01s` in milliseconds.
fn ms(s: &str) -> f64 {
    let (num, factor) = if let Some(n) = s.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().expect("a latency") * factor
}

/// One configuration: nginx with `workers` worker processes, the proxy with `--workers`,
/// measured direct, then in alternating rounds.
fn compare(workers: u32, up: u16, ca: &Path) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (nginx, nginx_port) = start_nginx(dir.path(), up, ca, workers);
    let upstream = format!("https://localhost:{up}");
    let (proxy, proxy_port, admin) =
        start_proxy(dir.path(), ca, workers, &["--upstream", &upstream]);
    let nginx_url = format!("http://127.0.0.1:{nginx_port}/");
    let proxy_url = format!("http://127.0.0.1:{proxy_port}/");
    // Warm both before measuring: the first request makes the proxy learn the host, then one
    // second of the same load opens their 64 upstream connections, so that the rounds measure
    // the steady state of both.
    for url in [&nginx_url, &proxy_url] {
        let _ = Command::new("curl")
            .args(["-s", "-o", "/dev/null", url])
            .status();
        let _ = wrk_for(url, 1);
    }
    let direct = wrk(&format!("https://localhost:{up}/"), &[]);
    // Rounds alternate, nginx first then the proxy first (N P P N N P ...): this VM's
    // neighbours move a single round by 10 % or more; the median of each column is reported.
    let (mut ns, mut ps) = (Vec::new(), Vec::new());
    for i in 0..setting("PROXY_BENCH_ROUNDS", 3) {
        let order = if i % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for proxy_turn in order {
            if proxy_turn {
                ps.push(wrk(&proxy_url, &[proxy.0.id()]));
            } else {
                ns.push(wrk(&nginx_url, &[nginx.0.id()]));
            }
        }
    }
    let (n, p) = (median(&ns), median(&ps));
    println!("\n### {workers} worker(s) each (nginx worker_processes, proxy --workers)\n");
    println!(
        "| path | requests/s | p50 ms | p99 ms | added p50 ms | added p99 ms | CPU µs/request |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| direct (wrk -> https upstream) | {:.0} | {:.2} | {:.2} | | | |",
        direct.rps, direct.p50, direct.p99
    );
    for (name, r) in [("nginx proxy_pass https", n), ("tls-fallback proxy", p)] {
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} |",
            r.rps,
            r.p50,
            r.p99,
            r.p50 - direct.p50,
            r.p99 - direct.p99,
            r.cpu_us
        );
    }
    println!(
        "\nproxy/nginx (medians of {} rounds each): throughput {:.2}x (goal >= 0.9x), p99 {:.2}x \
         (goal <= 1.1x), p50 {:.2}x, CPU per request {:.2}x",
        ns.len(),
        p.rps / n.rps,
        p.p99 / n.p99,
        p.p50 / n.p50,
        p.cpu_us / n.cpu_us
    );
    // How many upstream connections the proxy opened: keep-alive means about 64, not one per
    // request.
    let stats = Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{admin}/decisions")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&stats).unwrap_or_default();
    println!(
        "proxy upstream connections: {} ({} handshakes, {} resumed)",
        v["connections"], v["handshakes"], v["resumed"]
    );
    let show = |rs: &[Round]| {
        rs.iter()
            .map(|r| format!("{:.0}/{:.2}/{:.1}", r.rps, r.p99, r.cpu_us))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "rounds (requests/s / p99 ms / CPU µs per request): nginx {}; proxy {}",
        show(&ns),
        show(&ps)
    );
}

fn main() {
    // The upstream's runtime has a fixed size, whatever TOKIO_WORKER_THREADS says.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let upstream = rt.block_on(TlsServer::modern()).expect("upstream");
    let up = upstream.addr().port();
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, TestPki::shared().ca_pem()).expect("write the CA");
    if std::env::var_os("PROXY_BENCH_UPSTREAM_ONLY").is_some() {
        // For profiling by hand: keep the upstream up and say where it is.
        println!("upstream https://localhost:{up}/ ca {}", ca.display());
        loop {
            std::thread::park();
        }
    }
    println!(
        "{CONNECTIONS} keep-alive connections, {} rounds each of {} s (wrk -t2), upstream: \
         test-kit TLS 1.3 HTTP/1.1 server (2 threads)",
        setting("PROXY_BENCH_ROUNDS", 3),
        setting("PROXY_BENCH_SECONDS", SECONDS)
    );
    for workers in [1, 2] {
        compare(workers, up, &ca);
    }
    println!("upstream TLS handshakes in all: {}", upstream.handshakes());
}
