//! Interop with TLS stacks that are not OpenSSL-in-this-process: GnuTLS's `gnutls-serv` and
//! nginx (Debian's, on the system OpenSSL 3.0), each behind the test kit's intolerance emulator.
//! What is checked: the negotiated version, the hellos on the wire (version offered, SCSV), and
//! that an independent server honours TLS_FALLBACK_SCSV.
//!
//! `.ci/run` installs `gnutls-bin` and `nginx`; when a binary is missing the test says so loudly
//! and returns. Servers run as child processes owned by a guard that kills them on drop, so
//! they die even when an assertion fails; every wait is bounded.

mod common;

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tls_fallback::testkit::{Emulator, Rule, TestPki};
use tls_fallback::{ErrorKind, FallbackLayer, TlsVersion};
use tower_layer::Layer;
use TlsVersion::*;

/// Kills and reaps the child when dropped (also on panic).
struct ChildGuard {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl ChildGuard {
    /// The child's output so far (for failure messages).
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        // After SIGKILL the wait returns at once; bound it anyway.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        eprintln!(
            "{}: child {} did not exit after kill",
            self.name,
            self.child.id()
        );
    }
}

/// The path of `bin` if it is installed (PATH, then /usr/sbin for nginx).
fn find(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

fn skip(bin: &str, package: &str) {
    eprintln!(
        "\n!!!!!!!! SKIPPED: `{bin}` is not installed (Debian package `{package}`); .ci/run \
         installs it. This interop test did NOT run. !!!!!!!!\n"
    );
}

/// A free port on 127.0.0.1 (bound and released; the server binds it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes the test kit's `localhost` certificate and key as PEM into `dir`.
fn write_identity(dir: &Path) -> (PathBuf, PathBuf) {
    let id = &TestPki::shared().localhost;
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, id.cert.to_pem().unwrap()).unwrap();
    std::fs::write(&key, id.key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    (cert, key)
}

/// Starts `cmd` with its output in `dir/<name>.log`, then waits (10 s at most) until it
/// accepts TCP connections on `port`.
async fn spawn(name: &'static str, mut cmd: Command, dir: &Path, port: u16) -> ChildGuard {
    let log = dir.join(format!("{name}.log"));
    let out = File::create(&log).unwrap();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let mut guard = ChildGuard { name, child, log };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = guard.child.try_wait() {
            panic!("{name} exited with {status}: {}", guard.log());
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return guard;
        }
        assert!(
            Instant::now() < deadline,
            "{name} not listening on {port} after 10 s: {}",
            guard.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `gnutls-serv` in HTTP mode with this priority string, or `None` (after a loud message)
/// when GnuTLS's tools are not installed.
async fn gnutls_serv(dir: &Path, priority: &str) -> Option<(ChildGuard, u16)> {
    let Some(bin) = find("gnutls-serv") else {
        skip("gnutls-serv", "gnutls-bin");
        return None;
    };
    let (cert, key) = write_identity(dir);
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.arg("--http")
        .arg("--disable-client-cert")
        .arg(format!("--port={port}"))
        .arg(format!("--x509certfile={}", cert.display()))
        .arg(format!("--x509keyfile={}", key.display()))
        .arg(format!("--priority={priority}"));
    Some((spawn("gnutls-serv", cmd, dir, port).await, port))
}

/// nginx speaking only `protocols`, as a foreground single process with every path in `dir`.
async fn nginx(dir: &Path, protocols: &str) -> Option<(ChildGuard, u16)> {
    let Some(bin) = find("nginx") else {
        skip("nginx", "nginx");
        return None;
    };
    let (cert, key) = write_identity(dir);
    let port = free_port();
    let d = dir.display();
    let conf = format!(
        "daemon off;\n\
         master_process off;\n\
         worker_processes 1;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
           access_log off;\n\
           client_body_temp_path {d}/client_body;\n\
           proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n\
           uwsgi_temp_path {d}/uwsgi;\n\
           scgi_temp_path {d}/scgi;\n\
           server {{\n\
             listen 127.0.0.1:{port} ssl;\n\
             server_name localhost;\n\
             ssl_certificate {cert};\n\
             ssl_certificate_key {key};\n\
             ssl_protocols {protocols};\n\
             ssl_ciphers DEFAULT:@SECLEVEL=0;\n\
             location / {{ return 200 \"hello from nginx\\n\"; }}\n\
           }}\n\
         }}\n",
        cert = cert.display(),
        key = key.display(),
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(dir.join("error.log"));
    Some((spawn("nginx", cmd, dir, port).await, port))
}

fn fresh_client(layer: &FallbackLayer) -> TestClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build::<_, Full<Bytes>>(layer.layer(FallbackLayer::http_connector()))
}

/// The emulator in front of a child server on `port`.
async fn gateway(port: u16, rules: Vec<Rule>) -> Emulator {
    Emulator::start(([127, 0, 0, 1], port).into(), rules)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gnutls_tls10_only_behind_close_above_tls10_is_reached_on_tls10_with_scsv() {
    let dir = tempfile::tempdir().unwrap();
    let Some((server, port)) = gnutls_serv(dir.path(), "NORMAL:-VERS-ALL:+VERS-TLS1.0").await
    else {
        return;
    };
    let em = gateway(port, vec![Rule::close_above(Tls1_0)]).await;
    let layer = builder().allow_legacy("localhost").build().unwrap();
    let client = fresh_client(&layer);
    let (res, body) = get(&client, &em.url())
        .await
        .unwrap_or_else(|e| panic!("{}\n{}", tls_error(&e), server.log()));
    assert_eq!(res.status(), 200);
    assert!(
        String::from_utf8_lossy(&body).contains("GnuTLS"),
        "{body:?}"
    );
    let info = tls(&res);
    assert_eq!(info.version, Tls1_0);
    assert_eq!(&*info.profile, "tls10-legacy");
    assert_eq!(ladder_seen(&em), LEGACY_WALK);
    // Learned: the next connection is one TLS 1.0 hello, still with SCSV.
    em.clear();
    let (res, _) = get(&client, &em.url()).await.unwrap();
    assert_eq!((tls(&res).version, tls(&res).from_cache), (Tls1_0, true));
    assert_eq!(ladder_seen(&em), [(Some(Tls1_0), true)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gnutls_tls12_only_behind_close_above_tls12_is_reached_on_tls12_with_scsv() {
    let dir = tempfile::tempdir().unwrap();
    let Some((server, port)) = gnutls_serv(dir.path(), "NORMAL:-VERS-ALL:+VERS-TLS1.2").await
    else {
        return;
    };
    let em = gateway(port, vec![Rule::close_above(Tls1_2)]).await;
    let layer = builder().build().unwrap();
    let (res, _) = get(&fresh_client(&layer), &em.url())
        .await
        .unwrap_or_else(|e| panic!("{}\n{}", tls_error(&e), server.log()));
    let info = tls(&res);
    assert_eq!(info.version, Tls1_2);
    assert_eq!(&*info.profile, "tls12");
    assert_eq!(
        ladder_seen(&em),
        [
            (Some(Tls1_3), false),
            (Some(Tls1_3), true),
            (Some(Tls1_2), true)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gnutls_tls12_only_without_intolerance_answers_the_modern_hello_with_tls12() {
    let dir = tempfile::tempdir().unwrap();
    let Some((server, port)) = gnutls_serv(dir.path(), "NORMAL:-VERS-ALL:+VERS-TLS1.2").await
    else {
        return;
    };
    let em = gateway(port, vec![]).await;
    let layer = builder().build().unwrap();
    let (res, _) = get(&fresh_client(&layer), &em.url())
        .await
        .unwrap_or_else(|e| panic!("{}\n{}", tls_error(&e), server.log()));
    assert_eq!((tls(&res).version, tls(&res).handshakes()), (Tls1_2, 1));
    assert_eq!(ladder_seen(&em), [(Some(Tls1_3), false)]);
    assert!(
        layer.stats().hosts.is_empty(),
        "no fallback, nothing learned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gnutls_with_tls13_refuses_the_scsv_fallback_an_attacker_forces() {
    let dir = tempfile::tempdir().unwrap();
    let Some((server, port)) =
        gnutls_serv(dir.path(), "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2").await
    else {
        return;
    };
    let em = gateway(port, vec![Rule::reset_above(Tls1_2)]).await;
    let layer = builder().allow_legacy("*").build().unwrap();
    let err = tls_error(&get(&fresh_client(&layer), &em.url()).await.unwrap_err());
    assert_eq!(
        err.kind(),
        ErrorKind::DowngradeDetected,
        "{err}\n{}",
        server.log()
    );
    let outcomes: Vec<String> = err.attempts().iter().map(|a| a.outcome.short()).collect();
    assert_eq!(outcomes, ["reset", "reset", "alert:86"]);
    assert_eq!(
        ladder_seen(&em),
        [
            (Some(Tls1_3), false),
            (Some(Tls1_3), true),
            (Some(Tls1_2), true)
        ]
    );
    assert!(layer.stats().hosts.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_tls10_and_11_behind_close_above_tls11_is_reached_on_tls11() {
    let dir = tempfile::tempdir().unwrap();
    let Some((server, port)) = nginx(dir.path(), "TLSv1 TLSv1.1").await else {
        return;
    };
    let em = gateway(port, vec![Rule::close_above(Tls1_1)]).await;
    let layer = builder().allow_legacy("localhost").build().unwrap();
    let (res, body) = get(&fresh_client(&layer), &em.url())
        .await
        .unwrap_or_else(|e| panic!("{}\n{}", tls_error(&e), server.log()));
    assert_eq!(res.status(), 200);
    assert_eq!(&body[..], b"hello from nginx\n");
    let info = tls(&res);
    assert_eq!(info.version, Tls1_1);
    assert_eq!(&*info.profile, "tls11-legacy");
    assert_eq!(ladder_seen(&em), LEGACY_WALK[..5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_tls10_and_11_behind_close_above_tls10_refuses_the_tls10_fallback() {
    // nginx can do TLS 1.1, so the gateway closing everything above 1.0 is indistinguishable
    // from an attacker: the TLS 1.0 hello carries SCSV and nginx answers inappropriate_fallback.
    let dir = tempfile::tempdir().unwrap();
    let Some((server, port)) = nginx(dir.path(), "TLSv1 TLSv1.1").await else {
        return;
    };
    let em = gateway(port, vec![Rule::close_above(Tls1_0)]).await;
    let layer = builder().allow_legacy("localhost").build().unwrap();
    let err = tls_error(&get(&fresh_client(&layer), &em.url()).await.unwrap_err());
    assert_eq!(
        err.kind(),
        ErrorKind::DowngradeDetected,
        "{err}\n{}",
        server.log()
    );
    assert_eq!(ladder_seen(&em), LEGACY_WALK);
    assert_eq!(
        err.attempts().last().map(|a| a.outcome.short()).as_deref(),
        Some("alert:86")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_tls10_only_behind_close_above_tls10_is_reached_on_tls10() {
    let dir = tempfile::tempdir().unwrap();
    let Some((server, port)) = nginx(dir.path(), "TLSv1").await else {
        return;
    };
    let em = gateway(port, vec![Rule::close_above(Tls1_0)]).await;
    let layer = builder().allow_legacy("localhost").build().unwrap();
    let (res, body) = get(&fresh_client(&layer), &em.url())
        .await
        .unwrap_or_else(|e| panic!("{}\n{}", tls_error(&e), server.log()));
    assert_eq!(&body[..], b"hello from nginx\n");
    assert_eq!(tls(&res).version, Tls1_0);
    assert_eq!(ladder_seen(&em), LEGACY_WALK);
}
