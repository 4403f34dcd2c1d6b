//! Helpers for the CLI's newer tests: run the binary as a child process (bounded to 60 s),
//! optionally sampling its peak memory, and write the test CA to a file.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use tls_fallback::testkit::TestPki;

/// One finished run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
    /// The largest resident set seen while it ran (VmHWM), in KiB; 0 if never sampled.
    pub peak_kib: u64,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("stdout is not JSON ({e}): {}\n{}", self.stdout, self.stderr)
        })
    }
}

/// Runs `tls-fallback ARGS`.
pub async fn run(args: &[&str]) -> Run {
    run_sampled(args, false).await
}

/// Runs `tls-fallback ARGS`, reading its peak memory from /proc every 20 ms when `sample`.
pub async fn run_sampled(args: &[&str], sample: bool) -> Run {
    let started = Instant::now();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tls-fallback"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the CLI starts");
    let mut peak_kib = 0;
    if let Some(pid) = child.id().filter(|_| sample) {
        // At most 60 s of samples: 3,000 rounds.
        for _ in 0..3_000 {
            match std::fs::read_to_string(format!("/proc/{pid}/status")) {
                Ok(status) => peak_kib = peak_kib.max(vm_hwm_kib(&status)),
                Err(_) => break,
            }
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the CLI finishes within 60 s")
        .expect("the CLI's output is readable");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
        peak_kib,
    }
}

/// `VmHWM:   12345 kB` from /proc/PID/status.
fn vm_hwm_kib(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The test CA as a PEM file in `dir`.
pub fn ca_file(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, TestPki::shared().ca_pem()).expect("write the CA file");
    path
}
