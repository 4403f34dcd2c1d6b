//! What the proxy benchmarks share: starting nginx and the proxy beside a test-kit upstream,
//! the CPU time of their processes, and the medians of alternating rounds.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        // SIGTERM first: nginx's master stops its workers on it (a SIGKILLed master leaves
        // them running, still serving the port); the proxy drains and exits.
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        for _ in 0..100 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn find(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn wait_listening(port: u16, what: &str) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} is not listening on {port}");
}

pub fn start_nginx(dir: &Path, upstream: u16, ca: &Path, workers: u32) -> (Guard, u16) {
    let bin = find("nginx").expect("nginx is installed (apt-get install nginx)");
    let port = free_port();
    let d = dir.display();
    let conf = format!(
        "daemon off;\nworker_processes {workers};\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n\
           access_log {d}/access.log;\n\
           client_body_temp_path {d}/client_body;\n\
           proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n\
           uwsgi_temp_path {d}/uwsgi;\n\
           scgi_temp_path {d}/scgi;\n\
           upstream gateway {{ server 127.0.0.1:{upstream}; keepalive 64; }}\n\
           server {{\n\
             listen 127.0.0.1:{port};\n\
             location / {{\n\
               proxy_pass https://gateway;\n\
               proxy_http_version 1.1;\n\
               proxy_set_header Connection \"\";\n\
               proxy_set_header Host localhost:{upstream};\n\
               proxy_ssl_protocols TLSv1.2 TLSv1.3;\n\
               proxy_ssl_server_name on;\n\
               proxy_ssl_name localhost;\n\
               proxy_ssl_verify on;\n\
               proxy_ssl_trusted_certificate {ca};\n\
               proxy_ssl_session_reuse on;\n\
             }}\n\
           }}\n\
         }}\n",
        ca = ca.display()
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("write nginx.conf");
    let child = Command::new(bin)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts");
    wait_listening(port, "nginx");
    (Guard(child), port)
}

/// The proxy with `--workers`, the test CA and these flags (its mode); access log in `dir`.
pub fn start_proxy(dir: &Path, ca: &Path, workers: u32, mode: &[&str]) -> (Guard, u16, u16) {
    let port = free_port();
    let admin = free_port();
    let log = std::fs::File::create(dir.join("proxy-access.log")).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_tls-fallback-proxy"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .args(mode)
        .arg("--ca-file")
        .arg(ca)
        .args(["--workers", &workers.to_string()])
        .stdout(log)
        .stderr(Stdio::null())
        .spawn()
        .expect("the proxy starts");
    wait_listening(port, "tls-fallback proxy");
    (Guard(child), port, admin)
}

/// One wrk round: requests/s, p50 and p99 in ms, and the server's CPU time per request in µs
/// (when measured).
#[derive(Debug, Clone, Copy)]
pub struct Round {
    pub rps: f64,
    pub p50: f64,
    pub p99: f64,
    pub cpu_us: f64,
}

/// Rounds per side (`PROXY_BENCH_ROUNDS`, default 3) and seconds per round
/// (`PROXY_BENCH_SECONDS`, default 5).
pub fn setting(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// User and system time of `pids` and their child processes (nginx's workers), in clock ticks.
pub fn cpu_ticks(pids: &[u32]) -> u64 {
    let stat = |pid: &str| -> Option<(u64, u32)> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After "pid (comm) ": state ppid ... utime (14th field) stime (15th).
        let rest: Vec<&str> = text.rsplit_once(") ")?.1.split(' ').collect();
        let ppid = rest.get(1)?.parse().ok()?;
        let t = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
        Some((t, ppid))
    };
    let mut sum = 0;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if let Some((t, ppid)) = stat(pid) {
            let p: u32 = pid.parse().unwrap_or(0);
            if pids.contains(&p) || pids.contains(&ppid) {
                sum += t;
            }
        }
    }
    sum
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The median of each column over the rounds.
pub fn median(rows: &[Round]) -> Round {
    let mid = |f: fn(&Round) -> f64| {
        let mut v: Vec<f64> = rows.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Round {
        rps: mid(|r| r.rps),
        p50: mid(|r| r.p50),
        p99: mid(|r| r.p99),
        cpu_us: mid(|r| r.cpu_us),
    }
}
