//! Real TLS servers that are not this process's OpenSSL, as child processes on a free port of
//! 127.0.0.1: GnuTLS's `gnutls-serv` and nginx (Debian's, on the system OpenSSL). Each runs under
//! a guard that kills it on drop, so it dies even when an assertion fails; every wait is bounded.
//! When a binary is missing the helper says so loudly and returns `None`.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tls_fallback::testkit::TestPki;

/// Kills and reaps the child when dropped (also on panic).
pub struct ChildGuard {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl ChildGuard {
    /// The child's output so far (for failure messages).
    pub fn log(&self) -> String {
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
pub fn find(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

pub fn skip(bin: &str, package: &str) {
    eprintln!(
        "\n!!!!!!!! SKIPPED: `{bin}` is not installed (Debian package `{package}`); .ci/run \
         installs it. This interop test did NOT run. !!!!!!!!\n"
    );
}

/// A free port on 127.0.0.1 (bound and released; the server binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes the test kit's `localhost` certificate and key as PEM into `dir`.
pub fn write_identity(dir: &Path) -> (PathBuf, PathBuf) {
    let id = &TestPki::shared().localhost;
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, id.cert.to_pem().unwrap()).unwrap();
    std::fs::write(&key, id.key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    (cert, key)
}

/// Starts `cmd` with its output in `dir/<name>.log`, then waits (10 s at most) until it
/// accepts TCP connections on `port`.
pub async fn spawn(name: &'static str, mut cmd: Command, dir: &Path, port: u16) -> ChildGuard {
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
pub async fn gnutls_serv(dir: &Path, priority: &str) -> Option<(ChildGuard, u16)> {
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
pub async fn nginx(dir: &Path, protocols: &str) -> Option<(ChildGuard, u16)> {
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
