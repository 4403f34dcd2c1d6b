//! `probe`: the library's probe of a TLS endpoint (hand-built hellos against every address,
//! then one full handshake through the fallback connector with certificate checks), printed as
//! text, JSON, Markdown or HTML, and written as a report file and a pcapng capture.

use std::io::{IsTerminal, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tls_fallback::probe::{self, ProbeConfig, ProbeError, ProbeReport, Target, TestId};

use crate::output::CliError;
use crate::ProbeArgs;

/// A report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Json,
    Markdown,
    Html,
}

impl Format {
    /// `--format NAME`.
    fn from_name(name: &str) -> Result<Format, String> {
        match name.to_ascii_lowercase().as_str() {
            "text" | "txt" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            "markdown" | "md" => Ok(Format::Markdown),
            "html" => Ok(Format::Html),
            _ => Err(format!(
                "--format {name:?}: expected text, json, markdown or html"
            )),
        }
    }

    /// `--report FILE`: the format its extension names.
    fn from_path(path: &Path) -> Result<Format, String> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("html" | "htm") => Ok(Format::Html),
            Some("md" | "markdown") => Ok(Format::Markdown),
            Some("json") => Ok(Format::Json),
            Some("txt" | "text") => Ok(Format::Text),
            _ => Err(format!(
                "--report {}: the extension names the format: .html, .md, .json or .txt",
                path.display()
            )),
        }
    }

    fn render(self, report: &ProbeReport, pcap: Option<&str>) -> Result<String, CliError> {
        Ok(match self {
            Format::Text => report.to_table(),
            Format::Json => serde_json::to_string_pretty(report)
                .map_err(|e| CliError::failed("internal", e.to_string()))?,
            Format::Markdown => report.to_markdown_with(pcap),
            Format::Html => report.to_html_with(pcap),
        })
    }
}

/// `--resolve HOST:PORT:ADDR[,ADDR...]` (curl's syntax; IPv6 addresses in brackets or bare):
/// the addresses, checked against the target's host and port.
fn parse_resolve(entry: &str, target: &Target) -> Result<Vec<IpAddr>, String> {
    let bad = |why: &str| format!("--resolve {entry:?}: {why}; expected HOST:PORT:ADDR[,ADDR...]");
    let (host, rest) = match entry.strip_prefix('[') {
        Some(r) => {
            let (h, rest) = r
                .split_once("]:")
                .ok_or_else(|| bad("no ']:' after the IPv6 host"))?;
            (h, rest)
        }
        None => entry.split_once(':').ok_or_else(|| bad("no port"))?,
    };
    let (port, addrs) = rest.split_once(':').ok_or_else(|| bad("no address"))?;
    let port: u16 = port.parse().map_err(|_| bad("the port is not a number"))?;
    let same_host = host
        .trim_end_matches('.')
        .eq_ignore_ascii_case(target.host().trim_end_matches('.'));
    if !same_host || port != target.port() {
        return Err(bad(&format!(
            "{host}:{port} is not the target {}:{}",
            target.host(),
            target.port()
        )));
    }
    let mut out = Vec::new();
    for a in addrs.split(',') {
        let a = a.trim();
        let bare = a
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .unwrap_or(a);
        let ip: IpAddr = bare
            .parse()
            .map_err(|_| bad(&format!("{a:?} is not an IP address")))?;
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    Ok(out)
}

/// `--sni NAME`: a DNS name (letters, digits, `-`, `_`, dots; at most 253 bytes), since it goes
/// into the hello, the connector test's URL and the certificate check.
fn check_sni(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let labels_ok = name.split('.').all(|l| !l.is_empty() && l.len() <= 63);
    if name.is_empty() || name.len() > 253 || !name.chars().all(ok_char) || !labels_ok {
        return Err(format!(
            "--sni {name:?}: expected a DNS name (letters, digits, '-', '_', dots between \
             labels of 1-63 bytes, at most 253 bytes)"
        ));
    }
    Ok(())
}

/// `--baseline 1.2`.
fn parse_version(v: &str) -> Result<u16, String> {
    match v.trim() {
        "1.0" => Ok(0x0301),
        "1.1" => Ok(0x0302),
        "1.2" => Ok(0x0303),
        "1.3" => Ok(0x0304),
        other => Err(format!(
            "--baseline {other:?}: expected 1.0, 1.1, 1.2 or 1.3"
        )),
    }
}

/// `--only TEST`.
fn parse_test(name: &str) -> Result<TestId, String> {
    TestId::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = TestId::ALL.iter().map(|t| t.as_str()).collect();
        format!("--only {name:?}: expected one of {}", names.join(", "))
    })
}

/// The probe's configuration from the arguments (every check before any connection).
fn config(args: &ProbeArgs, target: &Target) -> Result<ProbeConfig, CliError> {
    if args.timeout_ms == 0 {
        return Err(CliError::bad_input(
            "--timeout-ms 0: expected a number of milliseconds above 0",
        ));
    }
    if let Some(name) = &args.sni {
        check_sni(name).map_err(CliError::bad_input)?;
    }
    for (flag, path) in [("--report", &args.report), ("--pcap", &args.pcap)] {
        if let Some(path) = path {
            check_writable_dir(flag, path)?;
        }
    }
    if let (Some(report), Some(pcap)) = (&args.report, &args.pcap) {
        if report == pcap {
            return Err(CliError::bad_input(format!(
                "--report and --pcap both name {}: one would overwrite the other",
                report.display()
            )));
        }
    }
    let mut cfg = ProbeConfig::new(args.target.clone());
    cfg.sni = args.sni.clone().or(cfg.sni);
    cfg.timeout = Duration::from_millis(args.timeout_ms);
    cfg.ca_file = args.ca_file.clone();
    for entry in &args.resolve {
        for ip in parse_resolve(entry, target).map_err(CliError::bad_input)? {
            if !cfg.resolve.contains(&ip) {
                cfg.resolve.push(ip);
            }
        }
    }
    cfg.only = args
        .only
        .as_deref()
        .map(parse_test)
        .transpose()
        .map_err(CliError::bad_input)?;
    cfg.baseline = args
        .baseline
        .as_deref()
        .map(parse_version)
        .transpose()
        .map_err(CliError::bad_input)?;
    Ok(cfg)
}

/// Runs `probe`: prints the report, writes `--report` and `--pcap`.
pub async fn run(args: ProbeArgs) -> Result<(), CliError> {
    // HOST, HOST:PORT, [v6]:PORT or an https:// URL; the error says which part is wrong.
    let target = Target::parse(&args.target)
        .map_err(|e| CliError::bad_input(format!("probe target {:?}: {e}", args.target)))?;
    let mut cfg = config(&args, &target)?;
    let format = match (&args.format, args.json) {
        (Some(name), _) => Format::from_name(name).map_err(CliError::bad_input)?,
        (None, true) => Format::Json,
        (None, false) => Format::Text,
    };
    let file_format = args
        .report
        .as_deref()
        .map(Format::from_path)
        .transpose()
        .map_err(CliError::bad_input)?;
    let progress = (format == Format::Text
        && std::io::stdout().is_terminal()
        && std::io::stderr().is_terminal())
    .then(ProgressLine::start);
    if let Some(p) = &progress {
        cfg.progress = Some(p.callback());
    }
    let result = probe::probe(&cfg).await;
    if let Some(p) = progress {
        p.finish();
    }
    let report = result.map_err(|e| match e {
        ProbeError::BadTarget(m) => CliError::bad_input(m),
        other => CliError::failed("connect", other.to_string()),
    })?;
    let pcap_name = args.pcap.as_ref().map(|p| p.display().to_string());
    // The report reaches stdout first: a file that cannot be written loses nothing.
    println!("{}", format.render(&report, pcap_name.as_deref())?);
    if let Some(path) = &args.pcap {
        write_file(path, &report.to_pcapng())?;
    }
    if let (Some(path), Some(f)) = (&args.report, file_format) {
        write_file(path, f.render(&report, pcap_name.as_deref())?.as_bytes())?;
    }
    Ok(())
}

/// `--report`/`--pcap`: the folder must exist before a probe that may take minutes.
fn check_writable_dir(flag: &str, path: &Path) -> Result<(), CliError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if dir.is_dir() {
        Ok(())
    } else {
        Err(CliError::bad_input(format!(
            "{flag} {}: the folder {} does not exist",
            path.display(),
            dir.display()
        )))
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    std::fs::write(path, bytes)
        .map_err(|e| CliError::failed("io", format!("cannot write {}: {e}", path.display())))
}

/// The test running now and since when, redrawn on stderr ten times a second.
struct ProgressLine {
    now: Arc<Mutex<Option<(SocketAddr, TestId, Instant)>>>,
    ticker: tokio::task::JoinHandle<()>,
}

impl ProgressLine {
    fn start() -> ProgressLine {
        let now: Arc<Mutex<Option<(SocketAddr, TestId, Instant)>>> = Arc::default();
        let shown = Arc::clone(&now);
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                let line = shown
                    .lock()
                    .ok()
                    .and_then(|g| *g)
                    .map(|(addr, test, since)| {
                        format!(
                            "probing {addr}: {test} ({:.1} s)",
                            since.elapsed().as_secs_f64()
                        )
                    });
                if let Some(line) = line {
                    let mut err = std::io::stderr().lock();
                    let _ = write!(err, "\r\x1b[2K{line}");
                    let _ = err.flush();
                }
            }
        });
        ProgressLine { now, ticker }
    }

    fn callback(&self) -> probe::Progress {
        let now = Arc::clone(&self.now);
        Arc::new(move |addr, test| {
            if let Ok(mut g) = now.lock() {
                *g = Some((addr, test, Instant::now()));
            }
        })
    }

    /// Stops redrawing and clears the line.
    fn finish(self) {
        self.ticker.abort();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K");
        let _ = err.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_entries_follow_curl_and_must_match_the_target() {
        let t = Target::parse("pay.example:8443").unwrap();
        let ok = |e: &str| parse_resolve(e, &t).unwrap();
        assert_eq!(
            ok("pay.example:8443:127.0.0.1"),
            ["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            ok("PAY.example.:8443:127.0.0.1,[::1],127.0.0.1"),
            [
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert_eq!(
            ok("pay.example:8443:::1"),
            ["::1".parse::<IpAddr>().unwrap()]
        );
        let rows = [
            (
                "other.example:8443:127.0.0.1",
                "is not the target pay.example:8443",
            ),
            ("pay.example:443:127.0.0.1", "is not the target"),
            ("pay.example:8443:nope", "\"nope\" is not an IP address"),
            ("pay.example:8443", "no address"),
            ("pay.example", "no port"),
            ("pay.example:x:1.2.3.4", "the port is not a number"),
            ("[::1:8443:1.2.3.4", "no ']:'"),
        ];
        for (entry, why) in rows {
            let e = parse_resolve(entry, &t).unwrap_err();
            assert!(
                e.contains(why) && e.ends_with("HOST:PORT:ADDR[,ADDR...]"),
                "{entry}: {e}"
            );
        }
        let v6 = Target::parse("[::1]:443").unwrap();
        assert_eq!(
            parse_resolve("[::1]:443:127.0.0.2", &v6).unwrap(),
            ["127.0.0.2".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn formats_come_from_the_flag_or_the_extension() {
        assert_eq!(Format::from_name("HTML"), Ok(Format::Html));
        assert_eq!(Format::from_name("md"), Ok(Format::Markdown));
        assert!(Format::from_name("pdf")
            .unwrap_err()
            .contains("expected text, json"));
        let f = |p: &str| Format::from_path(Path::new(p));
        assert_eq!(f("r.HTML"), Ok(Format::Html));
        assert_eq!(f("r.htm"), Ok(Format::Html));
        assert_eq!(f("r.markdown"), Ok(Format::Markdown));
        assert_eq!(f("out/r.json"), Ok(Format::Json));
        assert_eq!(f("r.txt"), Ok(Format::Text));
        for bad in ["r", "r.pdf", "r.html.bak"] {
            assert!(
                f(bad).unwrap_err().contains(".html, .md, .json or .txt"),
                "{bad}"
            );
        }
    }

    #[test]
    fn report_files_need_an_existing_folder() {
        assert!(check_writable_dir("--report", Path::new("r.html")).is_ok());
        let dir = tempfile::tempdir().unwrap();
        assert!(check_writable_dir("--pcap", &dir.path().join("p.pcapng")).is_ok());
        let missing = dir.path().join("nope").join("r.html");
        let e = check_writable_dir("--report", &missing).unwrap_err();
        assert!(e.message.contains("does not exist"), "{}", e.message);
        assert_eq!(e.code, crate::output::EXIT_BAD_INPUT);
    }

    #[test]
    fn a_server_name_must_be_a_dns_name() {
        for good in ["pay.example", "a-b_c.example", "localhost", "x"] {
            assert_eq!(check_sni(good), Ok(()), "{good}");
        }
        let long = format!("{}.example", "a".repeat(64));
        for bad in [
            "", "a b", "a/b", "u@h", "h:443", "a..b", ".a", "\u{7}", &long,
        ] {
            let e = check_sni(bad).unwrap_err();
            assert!(e.contains("expected a DNS name"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn tests_and_versions_are_named_or_refused_with_the_choices() {
        assert_eq!(parse_test("long_hello"), Ok(TestId::LongHello));
        assert!(parse_test("long").unwrap_err().contains("split_hello"));
        assert_eq!(parse_version("1.2"), Ok(0x0303));
        assert!(parse_version("1.4")
            .unwrap_err()
            .contains("expected 1.0, 1.1, 1.2 or 1.3"));
    }
}
