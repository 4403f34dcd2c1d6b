//! The interception path (`CONNECT`, the app's TLS to the proxy's leaf, requests inside)
//! against forward mode and nginx's TLS-originating proxy, in one run:
//! `cargo bench -p tls-fallback-proxy --bench intercept` (about a minute and a half). nginx
//! cannot intercept, so the comparison is with what it can do: `proxy_pass https` (the app
//! speaks plain HTTP to it), as the proxy's forward mode does.
//!
//! wrk cannot go through a proxy, so one client in this process drives every path alike (hyper's
//! HTTP/1.1 client connections, OpenSSL for the app's TLS): 64 keep-alive connections for 5 s
//! per round, three rounds per path in rotating order, and the medians reported, with the
//! proxy's (or nginx's) CPU time per request from `/proc`. Then the cost of a new connection:
//! 16 loops each opening a connection, sending one request and closing, for each path: what
//! an app pays that does not keep its connection (the TLS handshake to the proxy's leaf, on
//! top of forward mode's TCP connect). `PROXY_BENCH_ROUNDS` and `PROXY_BENCH_SECONDS` as for
//! the `proxy` bench. Everything shares the machine's cores: compare ratios, not absolutes.

mod support;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use openssl::ssl::{SslConnector, SslMethod};
use tls_fallback::testkit::{TestPki, TlsServer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use support::*;

const CONNECTIONS: usize = 64;
const NEW_CONNECTION_LOOPS: usize = 16;
const SECONDS: u32 = 5;

/// A path from the app to the upstream.
#[derive(Clone)]
struct Target {
    name: &'static str,
    /// Where the app connects.
    port: u16,
    /// `CONNECT` to this first (interception).
    connect: Option<String>,
    /// TLS from the app, trusting this CA (interception, direct).
    tls: Option<Arc<SslConnector>>,
    /// The request target: absolute (forward mode) or a path.
    uri: String,
    /// The `Host` header.
    host: String,
    /// The server's process, for its CPU time (none for direct).
    pid: Option<u32>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Opens one app connection along `t` (TCP, `CONNECT`, TLS) with an HTTP/1.1 client on it.
async fn open(t: &Target) -> SendRequest<Empty<Bytes>> {
    let mut tcp = TcpStream::connect(("127.0.0.1", t.port))
        .await
        .expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    if let Some(target) = &t.connect {
        let head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
        tcp.write_all(head.as_bytes()).await.expect("CONNECT");
        let mut got = Vec::new();
        while !got.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            assert!(tcp.read(&mut b).await.expect("CONNECT answer") == 1 && got.len() < 4096);
            got.push(b[0]);
        }
        assert!(
            got.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&got)
        );
    }
    let io: Box<dyn Io> = match &t.tls {
        Some(c) => {
            let ssl = c
                .configure()
                .expect("ssl")
                .into_ssl("localhost")
                .expect("ssl");
            let mut s = tokio_openssl::SslStream::new(ssl, tcp).expect("ssl stream");
            Pin::new(&mut s)
                .connect()
                .await
                .expect("the app's TLS handshake");
            Box::new(s)
        }
        None => Box::new(tcp),
    };
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("http1");
    tokio::spawn(conn);
    send
}

/// One request on `send`: its latency in µs. A connection the server closed (nginx closes
/// one after `keepalive_requests`, 1000) is opened again, as wrk does.
async fn request(t: &Target, send: &mut SendRequest<Empty<Bytes>>) -> u64 {
    let start = Instant::now();
    let req = hyper::Request::get(t.uri.as_str())
        .header("host", t.host.as_str())
        .body(Empty::new())
        .expect("request");
    if send.ready().await.is_err() {
        *send = open(t).await;
    }
    let res = send.send_request(req).await.expect("response");
    assert_eq!(res.status(), 200, "{}", t.name);
    res.into_body().collect().await.expect("body");
    start.elapsed().as_micros() as u64
}

/// Requests/s, p50, p99 (ms) of `loops` tasks for `secs`, each either reusing one connection
/// (`keep_alive`) or opening one per request; the server's CPU time per request.
async fn round(t: &Target, loops: usize, keep_alive: bool, secs: u32) -> Round {
    let pids: Vec<u32> = t.pid.into_iter().collect();
    let before = cpu_ticks(&pids);
    let end = Instant::now() + Duration::from_secs(secs.into());
    let tasks: Vec<_> = (0..loops)
        .map(|_| {
            let t = t.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut send = if keep_alive {
                    Some(open(&t).await)
                } else {
                    None
                };
                while Instant::now() < end {
                    match send.as_mut() {
                        Some(s) => lat.push(request(&t, s).await),
                        None => {
                            let start = Instant::now();
                            let mut s = open(&t).await;
                            request(&t, &mut s).await;
                            lat.push(start.elapsed().as_micros() as u64);
                        }
                    }
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("client task"));
    }
    let ticks = cpu_ticks(&pids).saturating_sub(before);
    all.sort_unstable();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)] as f64 / 1000.0;
    Round {
        rps: all.len() as f64 / f64::from(secs),
        p50: at(0.5),
        p99: at(0.99),
        cpu_us: ticks as f64 * 1e6 / clock_ticks() / all.len().max(1) as f64,
    }
}

/// Rounds of every target in rotating order; the medians, in the targets' order.
async fn compare(targets: &[Target], loops: usize, keep_alive: bool) -> Vec<(Round, Vec<Round>)> {
    let secs = setting("PROXY_BENCH_SECONDS", SECONDS);
    let mut rounds: Vec<Vec<Round>> = targets.iter().map(|_| Vec::new()).collect();
    for i in 0..setting("PROXY_BENCH_ROUNDS", 3) as usize {
        for k in 0..targets.len() {
            let j = (i + k) % targets.len();
            rounds[j].push(round(&targets[j], loops, keep_alive, secs).await);
        }
    }
    rounds.into_iter().map(|r| (median(&r), r)).collect()
}

fn table(title: &str, targets: &[Target], results: &[(Round, Vec<Round>)]) {
    println!("\n### {title}\n");
    println!("| path | per s | p50 ms | p99 ms | server CPU µs each |");
    println!("|---|---|---|---|---|");
    for (t, (m, _)) in targets.iter().zip(results) {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.1} |",
            t.name, m.rps, m.p50, m.p99, m.cpu_us
        );
    }
    for (t, (_, rs)) in targets.iter().zip(results) {
        let each: Vec<String> = rs
            .iter()
            .map(|r| format!("{:.0}/{:.2}", r.rps, r.p99))
            .collect();
        println!("rounds {} (per s / p99 ms): {}", t.name, each.join(" "));
    }
}

fn ratio(what: &str, a: &Round, b: &Round) {
    println!(
        "{what}: throughput {:.2}x, p50 {:.2}x, p99 {:.2}x, server CPU per request {:.2}x",
        a.rps / b.rps,
        a.p50 / b.p50,
        a.p99 / b.p99,
        a.cpu_us / b.cpu_us
    );
}

/// `ca init` for `localhost` in `dir`: the interception CA's directory.
fn ca_init(dir: &Path) -> PathBuf {
    let ca = dir.join("intercept-ca");
    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_tls-fallback-proxy"))
        .args(["ca", "init", "--allow", "localhost", "--dir"])
        .arg(&ca)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("ca init runs")
        .success();
    assert!(ok, "ca init");
    ca
}

fn connector(ca: &Path) -> Arc<SslConnector> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).expect("connector");
    b.set_ca_file(ca).expect("CA file");
    Arc::new(b.build())
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let upstream = TlsServer::modern().await.expect("upstream");
        let up = upstream.addr().port();
        let dir = tempfile::tempdir().expect("temp dir");
        let test_ca = dir.path().join("ca.pem");
        std::fs::write(&test_ca, TestPki::shared().ca_pem()).expect("write the CA");
        let ca_dir = ca_init(dir.path());
        let ca_arg = ca_dir.to_str().expect("utf-8 path");
        let (nginx, nginx_port) = start_nginx(dir.path(), up, &test_ca, 2);
        let mode = ["--allow", "localhost", "--intercept-ca", ca_arg];
        let (proxy, proxy_port, _) = start_proxy(dir.path(), &test_ca, 2, &mode);
        let host = format!("localhost:{up}");
        let base = Target {
            name: "",
            port: proxy_port,
            connect: None,
            tls: None,
            uri: "/".into(),
            host: host.clone(),
            pid: Some(proxy.0.id()),
        };
        let nginx_t = Target {
            name: "nginx proxy_pass https (plain HTTP from the app)",
            port: nginx_port,
            pid: Some(nginx.0.id()),
            ..base.clone()
        };
        let forward = Target {
            name: "proxy, forward mode (http:// URL)",
            uri: format!("http://{host}/"),
            ..base.clone()
        };
        let intercept = Target {
            name: "proxy, interception (https:// URL, CONNECT + TLS)",
            connect: Some(host.clone()),
            tls: Some(connector(&ca_dir.join("ca.pem"))),
            ..base.clone()
        };
        let direct = Target {
            name: "direct (the app's TLS to the upstream)",
            port: up,
            tls: Some(connector(&test_ca)),
            pid: None,
            ..base.clone()
        };
        // Warm: the proxy learns the host and opens its upstream connections.
        for t in [&nginx_t, &forward, &intercept] {
            round(t, CONNECTIONS, true, 1).await;
        }
        println!(
            "{CONNECTIONS} keep-alive connections, {} rounds of {} s per path, 2 workers each \
             (nginx worker_processes 2, proxy --workers 2); client: hyper + OpenSSL, 2 threads, \
             in this process",
            setting("PROXY_BENCH_ROUNDS", 3),
            setting("PROXY_BENCH_SECONDS", SECONDS)
        );
        let kept = [nginx_t.clone(), forward.clone(), intercept.clone()];
        let k = compare(&kept, CONNECTIONS, true).await;
        table("Kept-alive connections", &kept, &k);
        ratio("interception/forward", &k[2].0, &k[1].0);
        ratio("interception/nginx", &k[2].0, &k[0].0);
        ratio("forward/nginx", &k[1].0, &k[0].0);
        let fresh = [forward, intercept, direct];
        let f = compare(&fresh, NEW_CONNECTION_LOOPS, false).await;
        table(
            &format!("A new connection per request ({NEW_CONNECTION_LOOPS} loops)"),
            &fresh,
            &f,
        );
        ratio("interception/forward", &f[1].0, &f[0].0);
        println!(
            "the app-side TLS adds {:.2} ms at p50 to a new connection ({:.0} vs {:.0} \
             connections/s)",
            f[1].0.p50 - f[0].0.p50,
            f[1].0.rps,
            f[0].0.rps
        );
        drop((nginx, proxy));
    });
}
