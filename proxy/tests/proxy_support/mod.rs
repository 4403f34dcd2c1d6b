//! Helpers for the proxy tests: the built `tls-fallback proxy` as a child process, a TLS echo
//! upstream that reports the headers it received and streams large bodies, and runners for the
//! real clients (curl, Python `requests`, tinyproxy).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use openssl::ssl::{Ssl, SslAcceptor, SslMethod};
use tls_fallback::testkit::TestPki;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

/// The proxy binary, running.
pub struct Proxy {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub dir: tempfile::TempDir,
}

/// The test CA as a PEM file in `dir`.
pub fn ca_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, TestPki::shared().ca_pem()).expect("write the CA file");
    path
}

/// The proxy as this package builds it: the `tls-fallback-proxy` binary in the proxy package's
/// tests, `tls-fallback proxy` in the CLI's (which share these helpers).
///
/// `TLS_FALLBACK_PROXY_BIN=PATH` runs another build instead (a `tls-fallback` CLI binary with
/// its `proxy` subcommand, or a `tls-fallback-proxy`): how a test is shown to fail on old code.
pub fn proxy_command() -> (&'static str, &'static [&'static str]) {
    if let Ok(path) = std::env::var("TLS_FALLBACK_PROXY_BIN") {
        let path: &'static str = Box::leak(path.into_boxed_str());
        let prefix: &'static [&'static str] = if path.ends_with("/tls-fallback") {
            &["proxy"]
        } else {
            &[]
        };
        return (path, prefix);
    }
    match (
        option_env!("CARGO_BIN_EXE_tls-fallback-proxy"),
        option_env!("CARGO_BIN_EXE_tls-fallback"),
    ) {
        (Some(p), _) => (p, &[]),
        (None, Some(cli)) => (cli, &["proxy"]),
        (None, None) => panic!("no proxy binary in this package"),
    }
}

/// The `tls-fallback` CLI (only the CLI package's tests have it).
pub fn cli_command() -> &'static str {
    match option_env!("CARGO_BIN_EXE_tls-fallback") {
        Some(cli) => cli,
        None => panic!("the CLI binary is built only for the cli package's tests"),
    }
}

fn collect<R: tokio::io::AsyncRead + Unpin + Send + 'static>(r: R) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l = Arc::clone(&lines);
    tokio::spawn(async move {
        let mut r = BufReader::new(r).lines();
        while let Ok(Some(line)) = r.next_line().await {
            l.lock().unwrap().push(line);
        }
    });
    lines
}

/// Waits up to 10 s for a line containing `needle`; returns it.
pub async fn wait_line(lines: &Mutex<Vec<String>>, needle: &str) -> Option<String> {
    for _ in 0..200 {
        if let Some(l) = lines.lock().unwrap().iter().find(|l| l.contains(needle)) {
            return Some(l.clone());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

impl Proxy {
    /// `tls-fallback proxy --listen 127.0.0.1:0 --admin 127.0.0.1:0 --ca-file CA ARGS`.
    pub async fn start(args: &[&str]) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        Proxy::start_in(dir, args).await
    }

    pub async fn start_in(dir: tempfile::TempDir, args: &[&str]) -> Proxy {
        Proxy::start_wrapped(dir, &[], args).await
    }

    /// The proxy run by `wrapper` (e.g. `prlimit --nofile=256:256 --`), which must exec it
    /// (so that its pid is the proxy's).
    pub async fn start_wrapped(dir: tempfile::TempDir, wrapper: &[&str], args: &[&str]) -> Proxy {
        let ca = ca_file(&dir);
        let (program, prefix) = proxy_command();
        let mut command = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(program);
                c
            }
            None => Command::new(program),
        };
        let mut child = command
            .args(prefix)
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .arg("--ca-file")
            .arg(&ca)
            .args(args)
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the proxy starts");
        let stderr = collect(child.stderr.take().unwrap());
        let stdout = collect(child.stdout.take().unwrap());
        let addr_of = |line: Option<String>, what: &str| -> SocketAddr {
            let line =
                line.unwrap_or_else(|| panic!("no {what} line: {:?}", stderr.lock().unwrap()));
            // A text event ends with the address; a JSON one (`--log-format json`) has it at
            // the end of its message.
            let message = match serde_json::from_str::<serde_json::Value>(&line) {
                Ok(v) => v["message"].as_str().unwrap_or_default().to_string(),
                Err(_) => line,
            };
            message.rsplit(' ').next().unwrap().parse().unwrap()
        };
        let addr = addr_of(wait_line(&stderr, "listening on").await, "listening");
        let admin = addr_of(wait_line(&stderr, "admin on").await, "admin");
        Proxy {
            child,
            addr,
            admin,
            stderr,
            stdout,
            dir,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> i32 {
        self.child.id().expect("running") as i32
    }

    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Waits up to `secs` for the exit code.
    pub async fn exit_code(&mut self, secs: u64) -> Option<i32> {
        tokio::time::timeout(Duration::from_secs(secs), self.child.wait())
            .await
            .expect("the proxy exits in time")
            .expect("wait")
            .code()
    }

    /// A kB value from /proc/PID/status (`VmRSS`, `VmHWM`).
    pub fn mem_kb(&self, key: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        s.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} in {s}"))
    }

    /// GET on the admin listener: (status, body).
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        let r = curl(&[
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            &format!("http://{}{path}", self.admin),
        ])
        .await;
        let (body, code) = r.stdout.rsplit_once('\n').unwrap();
        (code.parse().unwrap(), body.to_string())
    }
}

/// A finished child process.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a program, bounded to 60 s.
pub async fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(program);
    cmd.args(args).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    for k in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
    ] {
        if !env.iter().any(|(e, _)| e == &k) {
            cmd.env_remove(k);
        }
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{program} finishes within 60 s"))
        .unwrap_or_else(|e| panic!("{program} starts: {e}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub async fn curl(args: &[&str]) -> Run {
    run("curl", args, &[]).await
}

/// curl through the proxy: (status, response headers lowercased, body).
pub async fn curl_via(
    proxy: &Proxy,
    extra: &[&str],
    url: &str,
) -> (u16, BTreeMap<String, String>, String) {
    let proxy_url = proxy.url();
    let mut args = vec!["-sS", "-D", "/dev/stderr", "-x", &proxy_url];
    args.extend_from_slice(extra);
    args.push(url);
    let r = curl(&args).await;
    let mut status = 0;
    let mut headers = BTreeMap::new();
    for line in r.stderr.lines() {
        if line.starts_with("HTTP/") {
            status = line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            headers.clear();
        } else if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    assert!(status != 0, "curl failed ({}): {}", r.code, r.stderr);
    (status, headers, r.stdout)
}

/// The status the proxy answers to curl's `CONNECT` for `url` (`curl -p`: a tunnel only), as
/// curl reports it (`000` when there was none).
pub async fn connect_status(proxy: &Proxy, url: &str) -> String {
    let proxy_url = proxy.url();
    let args = [
        "-sS",
        "-p",
        "-x",
        &proxy_url,
        "-o",
        "/dev/null",
        "-w",
        "%{http_connect}",
        url,
    ];
    curl(&args).await.stdout
}

/// Python `requests` through the proxy: runs `code` with `proxies` and `url` defined; it prints
/// what the test checks.
pub async fn python(code: &str, proxy: &str, url: &str) -> Run {
    let script = format!(
        "import sys, json, requests\nproxies = {{'http': sys.argv[1]}}\nurl = sys.argv[2]\n{code}\n"
    );
    run("python3", &["-c", &script, proxy, url], &[]).await
}

/// What the echo upstream saw.
#[derive(Default)]
pub struct EchoState {
    pub posts: AtomicU64,
    pub requests: AtomicU64,
    pub connections: AtomicU64,
}

/// A TLS 1.2+ server setup with the test kit's `localhost` certificate.
fn localhost_acceptor() -> SslAcceptor {
    let pki = TestPki::shared();
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    b.set_certificate(&pki.localhost.cert).unwrap();
    b.set_private_key(&pki.localhost.key).unwrap();
    b.build()
}

/// A modern TLS upstream (TLS 1.2+, `localhost` certificate): `/echo` answers the request
/// headers as JSON (and sends hop-by-hop and spoofed `x-tls-fallback-*` headers back),
/// `/download/N` streams N zero bytes, `/upload` counts the streamed body, `/slow/MS` waits,
/// `/redirect` answers 302, `/drop` reads the request and closes the connection unanswered.
pub struct Echo {
    pub addr: SocketAddr,
    pub state: Arc<EchoState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Echo {
    pub async fn start() -> Echo {
        Echo::start_with(None).await
    }

    /// An echo upstream that closes a kept-alive connection, without a word, once it has
    /// been idle for `idle` (as load balancers do).
    pub async fn start_idle_close(idle: Duration) -> Echo {
        Echo::start_with(Some(idle)).await
    }

    async fn start_with(idle: Option<Duration>) -> Echo {
        let acceptor = localhost_acceptor();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(EchoState::default());
        let st = Arc::clone(&state);
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                while conns.try_join_next().is_some() {}
                let Ok((tcp, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let (acceptor, st) = (acceptor.clone(), Arc::clone(&st));
                conns.spawn(async move { echo_conn(acceptor, tcp, st, idle).await });
            }
        });
        Echo { addr, state, task }
    }

    /// `http://localhost:PORT` (what apps send to the proxy).
    pub fn http_url(&self, path: &str) -> String {
        format!("http://localhost:{}{path}", self.addr.port())
    }
}

async fn echo_conn(
    acceptor: SslAcceptor,
    tcp: tokio::net::TcpStream,
    st: Arc<EchoState>,
    idle: Option<Duration>,
) {
    let _ = tcp.set_nodelay(true);
    let Ok(ssl) = Ssl::new(acceptor.context()) else {
        return;
    };
    let Ok(mut tls) = tokio_openssl::SslStream::new(ssl, tcp) else {
        return;
    };
    if Pin::new(&mut tls).accept().await.is_err() {
        return;
    }
    st.connections.fetch_add(1, Ordering::Relaxed);
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let st = Arc::clone(&st);
        async move {
            if req.uri().path() == "/drop" {
                // Reads the whole request, counts it, then hangs up without an answer.
                st.requests.fetch_add(1, Ordering::Relaxed);
                if req.method() == hyper::Method::POST {
                    st.posts.fetch_add(1, Ordering::Relaxed);
                }
                let _ = req.into_body().collect().await;
                return Err(std::io::Error::other("dropped without an answer"));
            }
            Ok(echo(req, &st).await)
        }
    });
    let mut b = hyper::server::conn::http1::Builder::new();
    if let Some(idle) = idle {
        b.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(idle);
    }
    let _ = b.serve_connection(TokioIo::new(tls), svc).await;
}

type EchoBody = Either<Full<Bytes>, Zeros>;

async fn echo(req: Request<Incoming>, st: &EchoState) -> Response<EchoBody> {
    st.requests.fetch_add(1, Ordering::Relaxed);
    if req.method() == hyper::Method::POST {
        st.posts.fetch_add(1, Ordering::Relaxed);
    }
    let path = req.uri().path().to_string();
    let full = |s: String| Either::Left(Full::new(Bytes::from(s)));
    if let Some(n) = path.strip_prefix("/download/") {
        return Response::new(Either::Right(Zeros {
            left: n.parse().unwrap_or(0),
        }));
    }
    if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        return Response::new(full("slow done\n".into()));
    }
    if path == "/redirect" {
        return Response::builder()
            .status(302)
            .header("location", "http://localhost/elsewhere")
            .body(full(String::new()))
            .unwrap();
    }
    if path == "/upload" {
        let mut body = req.into_body();
        let mut n: u64 = 0;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(d) = frame.data_ref() {
                n += d.len() as u64;
            }
        }
        return Response::new(full(format!("{n}")));
    }
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in req.headers() {
        headers
            .entry(k.to_string())
            .or_default()
            .push(v.to_str().unwrap_or("?").to_string());
    }
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let v = serde_json::json!({
        "method": method, "uri": uri, "headers": headers, "body": String::from_utf8_lossy(&body),
    });
    Response::builder()
        .header("connection", "x-up-hop")
        .header("x-up-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("x-tls-fallback-version", "spoofed")
        .header("x-up-kept", "1")
        .header("content-type", "application/json")
        .body(full(v.to_string()))
        .unwrap()
}

/// A body of `left` zero bytes in 64 KiB frames, made as it is read.
pub struct Zeros {
    left: u64,
}

static ZEROS: [u8; 65536] = [0; 65536];

impl Body for Zeros {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(ZEROS.len() as u64);
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
            &ZEROS[..n as usize],
        )))))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left)
    }
}

/// tinyproxy on a free loopback port allowing CONNECT to any port; with `auth`, it demands
/// Basic credentials (so a client without them gets 407).
pub struct Tinyproxy {
    pub child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Tinyproxy {
    pub async fn start(auth: bool) -> Tinyproxy {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("tinyproxy.conf");
        let mut text = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 50\nAllow 127.0.0.1\n\
             LogLevel Info\nDisableViaHeader Yes\n"
        );
        if auth {
            text.push_str("BasicAuth user secret\n");
        }
        std::fs::write(&conf, text).unwrap();
        let child = Command::new(tinyproxy_bin())
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("tinyproxy starts (apt-get install tinyproxy)");
        wait_listening(port, "tinyproxy").await;
        Tinyproxy {
            child,
            port,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// microsocks (a SOCKS5 server) on a free loopback port; with `auth`, it demands this user and
/// password.
pub struct Microsocks {
    pub child: Child,
    pub port: u16,
}

impl Microsocks {
    pub async fn start(auth: Option<(&str, &str)>) -> Microsocks {
        let port = free_port();
        let mut cmd = Command::new("microsocks");
        cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
        if let Some((user, password)) = auth {
            cmd.args(["-u", user, "-P", password]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("microsocks does not start ({e}): apt-get install microsocks")
            });
        wait_listening(port, "microsocks").await;
        Microsocks { child, port }
    }

    /// `127.0.0.1:PORT`, to put after `socks5://` or `socks5h://` (and credentials).
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Waits up to 5 s for `what` to accept connections on this loopback port.
async fn wait_listening(port: u16, what: &str) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not listen on {port}");
}

/// `tls-fallback get URL --ca-file CA --allow-legacy --json EXTRA`, with this environment
/// (and no proxy variable from the test's own environment).
pub async fn get_json(
    url: &str,
    ca: &std::path::Path,
    extra: &[String],
    env: &[(&str, String)],
) -> Run {
    let mut args = vec![
        "get",
        url,
        "--ca-file",
        ca.to_str().unwrap(),
        "--allow-legacy",
        "--json",
    ];
    args.extend(extra.iter().map(String::as_str));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run(cli_command(), &args, &env).await
}

fn tinyproxy_bin() -> &'static str {
    ["/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("tinyproxy")
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Proxy {
    /// The proxy with `--config FILE` holding `text`; the file's path, to rewrite it.
    pub async fn with_config(text: &str) -> (Proxy, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("proxy.toml");
        std::fs::write(&cfg, text).unwrap();
        let proxy = Proxy::start_in(dir, &["--config", cfg.to_str().unwrap()]).await;
        (proxy, cfg)
    }
}

// The gateways and what the emulator sees, shared with the library's integration tests.
#[path = "../../../tests/common/mod.rs"]
mod common;
#[allow(unused_imports)] // each test file uses some of them
pub use common::{downgrade_attack, gateway_with, ladder_seen, legacy_gateway, LEGACY_WALK};

/// A TLS upstream (`localhost` certificate) that answers each request head with the bytes
/// `answer` gives for its path, as they are: for framing no HTTP library would write. It does
/// not read request bodies.
pub struct RawUpstream {
    pub port: u16,
    pub connections: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawUpstream {
    pub async fn start(answer: fn(&str) -> &'static [u8]) -> RawUpstream {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let acceptor = localhost_acceptor();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&connections);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, count) = (acceptor.clone(), Arc::clone(&count));
                tokio::spawn(async move {
                    let Ok(mut tls) =
                        tokio_openssl::SslStream::new(Ssl::new(acceptor.context()).unwrap(), tcp)
                    else {
                        return;
                    };
                    if Pin::new(&mut tls).accept().await.is_err() {
                        return;
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                            buf.drain(..end + 4);
                            let path = head.split(' ').nth(1).unwrap_or("").to_string();
                            if tls.write_all(answer(&path)).await.is_err() {
                                return;
                            }
                        }
                        match tls.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        RawUpstream {
            port,
            connections,
            task,
        }
    }
}

/// nginx serving `return 200` over TLS (the test kit's `localhost` certificate) with h2, closing
/// each connection after `keepalive_requests` requests with a graceful GOAWAY, and a 16 MiB
/// file at `/big`; its access log tells how many requests it processed. Killed when dropped.
pub struct NginxH2 {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl NginxH2 {
    /// The size of `/big`.
    pub const BIG: usize = 16 * 1024 * 1024;

    pub async fn start(keepalive_requests: u32) -> NginxH2 {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let pki = TestPki::shared();
        std::fs::write(
            dir.path().join("cert.pem"),
            pki.localhost.cert.to_pem().unwrap(),
        )
        .unwrap();
        let key = pki.localhost.key.private_key_to_pem_pkcs8().unwrap();
        std::fs::write(dir.path().join("key.pem"), key).unwrap();
        let port = free_port();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 1024; }}\n\
             http {{\n\
               access_log {d}/access.log;\n\
               client_body_temp_path {d}/client_body;\n\
               proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n\
               scgi_temp_path {d}/scgi;\n\
               server {{\n\
                 listen 127.0.0.1:{port} ssl http2;\n\
                 ssl_certificate {d}/cert.pem;\n\
                 ssl_certificate_key {d}/key.pem;\n\
                 keepalive_requests {keepalive_requests};\n\
                 location = /big {{ alias {d}/big; }}\n\
                 location / {{ return 200 \"paid\\n\"; }}\n\
               }}\n\
             }}\n"
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        std::fs::write(dir.path().join("big"), vec![b'z'; NginxH2::BIG]).unwrap();
        let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("nginx is installed (apt-get install nginx)");
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nginx starts");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return NginxH2 { child, port, dir };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nginx does not listen on {port}");
    }

    /// Requests with `method` that nginx processed (its access log lines).
    pub fn processed(&self, method: &str) -> usize {
        let log = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        let needle = format!("\"{method} ");
        log.lines().filter(|l| l.contains(&needle)).count()
    }
}

impl Drop for NginxH2 {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
