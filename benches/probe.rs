//! How long `probe` takes against each intolerant box of the test kit, next to testssl.sh on the
//! same boxes, and whether each tool names the box's problem:
//! `cargo bench --features testkit --bench probe` (about 20 minutes on 2 cores with testssl.sh,
//! 5 without). Prints one Markdown table; see docs/BENCHMARKS.md for how to read it.
//!
//! Each run starts a fresh box on 127.0.0.1 (a real OpenSSL server behind the intolerance
//! emulator), so a box that counts connections starts from zero for each tool. `probe` runs in
//! this process with a per-test timeout of 2 s (what a user sets for a LAN box) and 5 s (the
//! default). testssl.sh (`testssl.sh` or Debian's `testssl` on the PATH, or `TESTSSL=path`) runs
//! as a child with `-p -g -Z` (protocols, server implementation bugs, TLS_FALLBACK_SCSV), its
//! connect and OpenSSL timeouts at 5 s, and its pretty JSON read back; each run is killed after
//! `TESTSSL_CAP` seconds (180). Every number is the median of `RUNS` runs (3; `TESTSSL_RUNS`
//! for testssl.sh alone). `BENCH_ONLY=legacy-pay,f5-long-hello` runs some boxes;
//! `TESTSSL=off` skips testssl.sh.

#[path = "common/mod.rs"]
mod common;
use common::machine;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tls_fallback::probe::{probe, ProbeConfig, ProbeReport, ScsvSupport};
use tls_fallback::testkit::{Emulator, Rule, TestPki, TlsServer};
use tls_fallback::TlsVersion::{self, *};

/// `protocolIntolerance` bits (SSL Labs): TLS 1.1, 1.2, 1.3.
const INTOLERANT_11: u32 = 2;
const INTOLERANT_12: u32 = 4;
const INTOLERANT_13: u32 = 8;

/// One intolerant box and what a right verdict says about it, for each tool.
struct BoxSpec {
    name: &'static str,
    problem: &'static str,
    server: fn() -> Option<TlsVersion>,
    rules: fn() -> Vec<Rule>,
    probe_right: fn(&ProbeReport) -> bool,
    testssl_right: fn(&[Finding]) -> bool,
}

fn boxes() -> Vec<BoxSpec> {
    let mut v = demo_boxes();
    v.extend(new_boxes());
    v
}

/// The seven boxes of `tls-fallback demo` (cli/src/demo.rs), in its order.
fn demo_boxes() -> Vec<BoxSpec> {
    vec![
        BoxSpec {
            name: "legacy-pay",
            problem: "TLS 1.0 server; closes any hello above 1.0",
            server: || Some(Tls1_0),
            rules: || vec![Rule::close_above(Tls1_0)],
            probe_right: |r| r.supported == [Tls1_0] && r.protocol_intolerance & INTOLERANT_11 != 0,
            testssl_right: |f| failed_rather_than_downgrading(f, &["TLS1_1", "TLS1_2"]),
        },
        BoxSpec {
            name: "rst-box",
            problem: "TLS 1.1 server; resets any hello above 1.1",
            server: || Some(Tls1_1),
            rules: || vec![Rule::reset_above(Tls1_1)],
            probe_right: |r| r.supported == [Tls1_1] && r.protocol_intolerance & INTOLERANT_12 != 0,
            testssl_right: |f| failed_rather_than_downgrading(f, &["TLS1_2"]),
        },
        BoxSpec {
            name: "tls13-hang",
            problem: "TLS 1.2 server; a TLS 1.3 hello hangs",
            server: || Some(Tls1_2),
            rules: || vec![Rule::hang_above(Tls1_2)],
            probe_right: |r| r.supported == [Tls1_2] && r.protocol_intolerance & INTOLERANT_13 != 0,
            testssl_right: |f| failed_rather_than_downgrading(f, &["TLS1_3"]),
        },
        BoxSpec {
            name: "f5-long-hello",
            problem: "modern server; hangs on a 256..511-byte hello",
            server: || None,
            rules: || vec![Rule::f5_hang()],
            probe_right: |r| r.long_handshake_intolerance,
            testssl_right: |f| says(f, "between 256 and 511 bytes"),
        },
        BoxSpec {
            name: "short-lists",
            problem: "modern server; closes hellos with more than 16 suites",
            server: || None,
            rules: || vec![Rule::close_if_ciphers_above(16)],
            probe_right: |r| r.cipher_count_intolerance,
            testssl_right: |f| says(f, "cipher suites"),
        },
        BoxSpec {
            name: "mitm-downgrade",
            problem: "modern server; the first 2 connections are reset (an attacker)",
            server: || None,
            rules: || vec![Rule::reset_first(2)],
            // Healthy after two connections: right is 1.2 and 1.3 supported, neither
            // intolerant, SCSV supported.
            probe_right: |r| {
                r.supported == [Tls1_2, Tls1_3]
                    && r.protocol_intolerance & (INTOLERANT_12 | INTOLERANT_13) == 0
                    && r.fallback_scsv == ScsvSupport::Supported
            },
            testssl_right: |f| offered(f, "TLS1_2") && offered(f, "TLS1_3"),
        },
        BoxSpec {
            name: "pinned-legacy",
            problem: "as legacy-pay (the demo pins it in code; a prober sees the same box)",
            server: || Some(Tls1_0),
            rules: || vec![Rule::close_above(Tls1_0)],
            probe_right: |r| r.supported == [Tls1_0] && r.protocol_intolerance & INTOLERANT_11 != 0,
            testssl_right: |f| failed_rather_than_downgrading(f, &["TLS1_1", "TLS1_2"]),
        },
    ]
}

/// The boxes of the probe's new tests: long, split and TLS 1.3 blocked in front of a TLS 1.3
/// server.
fn new_boxes() -> Vec<BoxSpec> {
    vec![
        BoxSpec {
            name: "long-hello-hang",
            problem: "modern server; hangs on a hello longer than 1,000 bytes",
            server: || None,
            rules: || vec![Rule::hang_if_longer_than(1000)],
            probe_right: |r| r.long_hello_intolerance && !r.split_hello_intolerance,
            testssl_right: |f| says(f, "longer than") || says(f, "size"),
        },
        BoxSpec {
            name: "split-hello-hang",
            problem: "modern server; hangs on a hello that arrives in 2+ TCP segments",
            server: || None,
            rules: || vec![Rule::hang_if_fragmented()],
            probe_right: |r| r.split_hello_intolerance,
            testssl_right: |f| says(f, "segment") || says(f, "fragment"),
        },
        BoxSpec {
            name: "tls13-blocked",
            problem: "TLS 1.3 server; a box in front closes any hello above 1.2",
            server: || None,
            rules: || vec![Rule::close_above(Tls1_2)],
            probe_right: |r| r.supported == [Tls1_2] && r.protocol_intolerance & INTOLERANT_13 != 0,
            testssl_right: |f| failed_rather_than_downgrading(f, &["TLS1_3"]),
        },
    ]
}

/// A box running on 127.0.0.1.
struct Running {
    _server: TlsServer,
    emulator: Emulator,
}

async fn start(spec: &BoxSpec) -> std::io::Result<Running> {
    let server = match (spec.server)() {
        Some(v) => TlsServer::only(v).await?,
        None => TlsServer::modern().await?,
    };
    let emulator = Emulator::start(server.addr(), (spec.rules)()).await?;
    Ok(Running {
        _server: server,
        emulator,
    })
}

/// One run of one tool against a fresh box: wall time, hellos the box saw, the verdict, and
/// what the tool said (for the notes under the table).
struct Run {
    secs: f64,
    hellos: usize,
    right: Option<bool>,
    said: String,
    /// testssl.sh's version and the OpenSSL it runs, from its JSON.
    tool: Option<String>,
}

impl Run {
    fn failed(secs: f64, hellos: usize, said: String) -> Run {
        Run {
            secs,
            hellos,
            right: None,
            said,
            tool: None,
        }
    }
}

async fn probe_once(spec: &BoxSpec, timeout: Duration, ca: &Path) -> Run {
    let running = match start(spec).await {
        Ok(r) => r,
        Err(e) => return Run::failed(0.0, 0, format!("box did not start: {e}")),
    };
    let mut cfg = ProbeConfig::new(format!("127.0.0.1:{}", running.emulator.addr().port()));
    cfg.sni = Some("localhost".into());
    cfg.ca_file = Some(ca.to_path_buf());
    cfg.timeout = timeout;
    // About 25 tests, each bounded by the timeout, and the connector's walk.
    let cap = timeout * 40 + Duration::from_secs(30);
    let started = Instant::now();
    let result = tokio::time::timeout(cap, probe(&cfg)).await;
    let secs = started.elapsed().as_secs_f64();
    let hellos = running.emulator.count();
    match result {
        Ok(Ok(report)) => Run {
            secs,
            hellos,
            right: Some((spec.probe_right)(&report)),
            said: format!(
                "{} Failed tests: {}. Started {}.",
                report.summary.trim(),
                failed_tests(&report),
                report.started
            ),
            tool: None,
        },
        Ok(Err(e)) => Run::failed(secs, hellos, format!("error: {e}")),
        Err(_) => Run::failed(secs, hellos, format!("gave up after {} s", cap.as_secs())),
    }
}

fn failed_tests(report: &ProbeReport) -> String {
    let names: Vec<String> = report
        .tests
        .iter()
        .filter(|t| t.failed())
        .map(|t| format!("{} ({})", t.name, t.outcome))
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// One finding of testssl.sh's JSON.
struct Finding {
    id: String,
    severity: String,
    text: String,
}

fn says(findings: &[Finding], needle: &str) -> bool {
    findings
        .iter()
        .any(|f| f.severity != "OK" && f.severity != "INFO" && f.text.contains(needle))
}

fn finding<'a>(findings: &'a [Finding], id: &str) -> Option<&'a Finding> {
    findings.iter().find(|f| f.id == id)
}

fn offered(findings: &[Finding], id: &str) -> bool {
    finding(findings, id).is_some_and(|f| f.text.starts_with("offered"))
}

/// testssl.sh's version-intolerance verdict: "connection failed rather than downgrading to
/// TLSv1.x" on one of these protocol ids.
fn failed_rather_than_downgrading(findings: &[Finding], ids: &[&str]) -> bool {
    ids.iter().any(|id| {
        finding(findings, id).is_some_and(|f| f.text.contains("failed rather than downgrading"))
    })
}

/// Every `{id, severity, finding}` object anywhere in testssl.sh's pretty JSON.
fn findings(v: &Value, out: &mut Vec<Finding>) {
    match v {
        Value::Object(map) => {
            if let (Some(Value::String(id)), Some(Value::String(text))) =
                (map.get("id"), map.get("finding"))
            {
                let severity = map.get("severity").and_then(Value::as_str).unwrap_or("");
                out.push(Finding {
                    id: id.clone(),
                    severity: severity.to_string(),
                    text: text.clone(),
                });
            }
            map.values().for_each(|v| findings(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| findings(v, out)),
        _ => {}
    }
}

/// What testssl.sh said, in one line: every finding that is neither OK nor INFO.
fn notable(findings: &[Finding]) -> String {
    let parts: Vec<String> = findings
        .iter()
        .filter(|f| f.severity != "OK" && f.severity != "INFO" && f.severity != "DEBUG")
        .map(|f| {
            // A GREASE finding quotes the whole random extension.
            let text: String = f.text.chars().take(100).collect();
            let more = if text.len() < f.text.len() { "..." } else { "" };
            format!("{} {}: {text}{more}", f.id, f.severity)
        })
        .collect();
    if parts.is_empty() {
        "nothing above INFO".into()
    } else {
        parts.join("; ")
    }
}

/// testssl.sh on the PATH (`testssl.sh` upstream, `testssl` in Debian), or `TESTSSL`.
fn testssl_path() -> Option<PathBuf> {
    match std::env::var("TESTSSL") {
        Ok(v) if v == "off" => return None,
        Ok(v) if !v.is_empty() => return Some(PathBuf::from(v)),
        _ => {}
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| [dir.join("testssl.sh"), dir.join("testssl")])
        .find(|p| p.is_file())
}

const TESTSSL_ARGS: &[&str] = &[
    "--quiet",
    "--warnings",
    "off",
    "--color",
    "0",
    "--connect-timeout",
    "5",
    "--openssl-timeout",
    "5",
    "-p",
    "-g",
    "-Z",
];

async fn testssl_once(spec: &BoxSpec, tool: &Path, cap: Duration) -> Run {
    let running = match start(spec).await {
        Ok(r) => r,
        Err(e) => return Run::failed(0.0, 0, format!("box did not start: {e}")),
    };
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return Run::failed(0.0, 0, format!("no temporary directory: {e}")),
    };
    let json = dir.path().join("testssl.json");
    let mut cmd = tokio::process::Command::new(tool);
    cmd.args(TESTSSL_ARGS)
        .arg("--jsonfile-pretty")
        .arg(&json)
        .arg(format!("127.0.0.1:{}", running.emulator.addr().port()))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own group, so a timeout kills the openssl children too.
        .process_group(0)
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Run::failed(0.0, 0, format!("did not start: {e}")),
    };
    let status = tokio::time::timeout(cap, child.wait()).await;
    let secs = started.elapsed().as_secs_f64();
    let hellos = running.emulator.count();
    if status.is_err() {
        if let Some(pid) = child.id() {
            // SAFETY: kill(2) on the process group this bench created; no memory involved.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
        }
        let _ = child.wait().await;
        return Run::failed(secs, hellos, format!("gave up after {} s", cap.as_secs()));
    }
    let parsed = std::fs::read(&json)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let Some(value) = parsed else {
        return Run::failed(secs, hellos, "no JSON file".into());
    };
    let mut found = Vec::new();
    findings(&value, &mut found);
    let field = |k: &str| {
        value
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    };
    Run {
        secs,
        hellos,
        right: Some((spec.testssl_right)(&found)),
        said: notable(&found),
        tool: Some(format!("{}, {}", field("version"), field("openssl"))),
    }
}

/// `RUNS` runs of one tool, summed up as the median time and hellos and how often it was
/// right.
struct Summary {
    secs: f64,
    hellos: usize,
    right: usize,
    judged: usize,
    runs: usize,
    gave_up: Option<String>,
    said: String,
    tool: Option<String>,
}

fn summarize(mut runs: Vec<Run>) -> Summary {
    runs.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    let mid = runs.len() / 2;
    let mut hellos: Vec<usize> = runs.iter().map(|r| r.hellos).collect();
    hellos.sort_unstable();
    Summary {
        secs: runs.get(mid).map_or(f64::NAN, |r| r.secs),
        hellos: hellos.get(mid).copied().unwrap_or(0),
        right: runs.iter().filter(|r| r.right == Some(true)).count(),
        judged: runs.iter().filter(|r| r.right.is_some()).count(),
        runs: runs.len(),
        gave_up: runs
            .iter()
            .find(|r| r.right.is_none())
            .map(|r| r.said.clone()),
        said: runs.get(mid).map_or_else(String::new, |r| r.said.clone()),
        tool: runs.iter().find_map(|r| r.tool.clone()),
    }
}

impl Summary {
    fn time(&self) -> String {
        match &self.gave_up {
            Some(why) if self.judged == 0 => why.clone(),
            _ => format!("{:.2} s", self.secs),
        }
    }

    fn verdict(&self) -> String {
        let tail = match &self.gave_up {
            Some(why) if self.judged > 0 => format!(" ({} run(s): {why})", self.runs - self.judged),
            _ => String::new(),
        };
        let word = match (self.right, self.judged) {
            (_, 0) => "-".to_string(),
            (r, n) if r == n => "yes".to_string(),
            (0, _) => "NO".to_string(),
            (r, n) => format!("{r} of {n}"),
        };
        word + &tail
    }
}

struct Row {
    spec_name: &'static str,
    problem: &'static str,
    fast: Summary,
    default: Summary,
    testssl: Option<Summary>,
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

async fn measure(spec: &BoxSpec, ca: &Path, tool: Option<&Path>) -> Row {
    let runs = env_usize("RUNS", 3);
    let testssl_runs = env_usize("TESTSSL_RUNS", runs);
    let cap = Duration::from_secs(env_usize("TESTSSL_CAP", 180) as u64);
    let (mut fast, mut default, mut testssl) = (Vec::new(), Vec::new(), Vec::new());
    // Interleaved, so drift on a shared machine hits every column alike.
    for i in 0..runs.max(testssl_runs) {
        if i < runs {
            fast.push(probe_once(spec, Duration::from_secs(2), ca).await);
            default.push(probe_once(spec, Duration::from_secs(5), ca).await);
        }
        if let (Some(tool), true) = (tool, i < testssl_runs) {
            testssl.push(testssl_once(spec, tool, cap).await);
        }
        eprintln!("{}: run {} done", spec.name, i + 1);
    }
    Row {
        spec_name: spec.name,
        problem: spec.problem,
        fast: summarize(fast),
        default: summarize(default),
        testssl: tool.map(|_| summarize(testssl)),
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "| box | problem | probe, 2 s timeout | hellos | right? | probe, 5 s timeout | hellos | \
         right? | testssl.sh | hellos | right? | testssl.sh / probe (5 s) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let (t_time, t_hellos, t_right, ratio) = match &r.testssl {
            None => (
                "testssl.sh not installed".to_string(),
                "-".to_string(),
                "-".to_string(),
                "-".to_string(),
            ),
            Some(t) => (
                t.time(),
                t.hellos.to_string(),
                t.verdict(),
                if t.judged > 0 {
                    let ratio = t.secs / r.default.secs;
                    format!("{ratio:.*}x", if ratio < 10.0 { 1 } else { 0 })
                } else {
                    "-".into()
                },
            ),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.spec_name,
            r.problem,
            r.fast.time(),
            r.fast.hellos,
            r.fast.verdict(),
            r.default.time(),
            r.default.hellos,
            r.default.verdict(),
            t_time,
            t_hellos,
            t_right,
            ratio
        );
    }
    if let Some(tool) = rows.iter().find_map(|r| r.testssl.as_ref()?.tool.clone()) {
        println!("\ntestssl.sh {tool}");
    }
    println!("\nWhat each tool said (the median run):");
    for r in rows {
        println!("- {} probe (5 s): {}", r.spec_name, r.default.said);
        if let Some(t) = &r.testssl {
            println!("- {} testssl.sh: {}", r.spec_name, t.said);
        }
    }
}

fn ca_file() -> std::io::Result<tempfile::NamedTempFile> {
    let mut f = tempfile::NamedTempFile::new()?;
    f.write_all(&TestPki::shared().ca_pem())?;
    Ok(f)
}

fn main() {
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let want = |name: &str| only.is_empty() || only.split(',').any(|o| o == name);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ca = ca_file().expect("a temporary CA file");
    let tool = testssl_path();
    println!("machine: {}", machine());
    match &tool {
        Some(t) => println!("testssl.sh: {} {}", t.display(), TESTSSL_ARGS.join(" ")),
        None => println!("testssl.sh: not installed (or TESTSSL=off)"),
    }
    let started = Instant::now();
    let rows: Vec<Row> = rt.block_on(async {
        let mut rows = Vec::new();
        for spec in boxes().iter().filter(|s| want(s.name)) {
            rows.push(measure(spec, ca.path(), tool.as_deref()).await);
        }
        rows
    });
    print_table(&rows);
    println!("total {:.0} s", started.elapsed().as_secs_f64());
}
