//! `tls-fallback`: fetch through the fallback connector (`get`), diagnose a gateway the way
//! SSL Labs' "Protocol Details" does (`probe`), or watch the connector handle a row of broken
//! gateways on 127.0.0.1 (`demo`).
//!
//! Exit codes: 0 success, 1 the connection or probe failed, 2 bad input.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tls_fallback::probe::{self, ProbeConfig, ProbeError};
use tls_fallback::testkit::{Emulator, Rule, TestPki, TlsServer};
use tls_fallback::{
    policy, Attempt, Error, FallbackConnector, FallbackLayer, FallbackLayerBuilder, TlsInfo,
    TlsVersion,
};
use tower_layer::Layer;

#[path = "../../cli/src/proxy/mod.rs"]
mod proxy;

#[derive(Parser, Debug)]
#[command(
    name = "tls-fallback",
    version,
    about = "Safe per-host TLS fallback for fragile HTTPS gateways: fetch, probe, demo"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Fetch a URL through the fallback connector and report how the TLS connection was made.
    Get(GetArgs),
    /// Diagnose a TLS endpoint: versions, intolerance, TLS_FALLBACK_SCSV (SSL Labs style).
    Probe(ProbeArgs),
    /// Start broken gateways on 127.0.0.1 and show the connector handling each one.
    Demo(DemoArgs),
    /// Run an egress proxy that originates TLS through the fallback connector for apps that
    /// send http:// requests through it (forward mode) or to it (--upstream mode).
    Proxy(proxy::ProxyArgs),
}

#[derive(clap::Args, Debug)]
struct GetArgs {
    /// The URL (https:// or http://).
    url: String,
    /// Also trust the root certificates in this PEM file.
    #[arg(long, value_name = "PEM")]
    ca_file: Option<std::path::PathBuf>,
    /// Allow TLS below 1.2 (with legacy crypto) for this URL's host.
    #[arg(long)]
    allow_legacy: bool,
    /// Client certificate (PEM, then its intermediates) for servers that require one.
    #[arg(long, value_name = "PEM", requires = "client_key")]
    client_cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM, unencrypted).
    #[arg(long, value_name = "PEM", requires = "client_cert")]
    client_key: Option<std::path::PathBuf>,
    /// Pin a host to a version: HOST[:PORT]=VERSION (1.0, 1.1, 1.2, 1.3). Repeatable.
    #[arg(long, value_name = "HOST[:PORT]=VERSION")]
    pin: Vec<String>,
    /// Handshake (and TCP connect) timeout per attempt, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    handshake_timeout_ms: u64,
    /// HTTP method.
    #[arg(
        short = 'X',
        long = "request",
        value_name = "METHOD",
        default_value = "GET"
    )]
    method: String,
    /// Request body.
    #[arg(short = 'd', long = "data", value_name = "DATA")]
    data: Option<String>,
    /// Send N requests through one client (the decision cache is shared).
    #[arg(long, value_name = "N", default_value_t = 1)]
    repeat: u32,
    /// Requests in flight at once with --repeat.
    #[arg(long, value_name = "C", default_value_t = 1)]
    concurrency: u32,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct ProbeArgs {
    /// HOST:PORT (port 443 if omitted).
    target: String,
    /// Also trust the root certificates in this PEM file (for the full-handshake check).
    #[arg(long, value_name = "PEM")]
    ca_file: Option<std::path::PathBuf>,
    /// Server name to send (default: the host, unless it is an IP address).
    #[arg(long, value_name = "NAME")]
    sni: Option<String>,
    /// Timeout per test, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 5_000)]
    timeout_ms: u64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct DemoArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// A failure with the CLI's error kind and exit code.
struct CliError {
    kind: &'static str,
    message: String,
    attempts: Vec<Attempt>,
    code: u8,
}

impl CliError {
    fn bad_input(message: impl Into<String>) -> Self {
        CliError {
            kind: "bad_input",
            message: message.into(),
            attempts: Vec::new(),
            code: 2,
        }
    }

    fn from_client(e: &hyper_util::client::legacy::Error) -> Self {
        match Error::find(e) {
            Some(tls) => CliError {
                kind: tls.kind().as_str(),
                message: tls.to_string(),
                attempts: tls.attempts().to_vec(),
                code: if tls.kind() == tls_fallback::ErrorKind::BadInput {
                    2
                } else {
                    1
                },
            },
            None => CliError {
                kind: if e.is_connect() { "connect" } else { "http" },
                message: error_chain(e),
                attempts: Vec::new(),
                code: 1,
            },
        }
    }

    fn report(&self, json_out: bool) -> ExitCode {
        if json_out {
            let v = json!({
                "error": { "kind": self.kind, "message": self.message },
                "attempts": self.attempts,
            });
            println!("{v}");
        } else {
            eprintln!("error ({}): {}", self.kind, self.message);
        }
        ExitCode::from(self.code)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        match cli.command {
            Command::Get(args) => {
                let json_out = args.json;
                match get(args).await {
                    Ok(code) => code,
                    Err(e) => e.report(json_out),
                }
            }
            Command::Probe(args) => {
                let json_out = args.json;
                match run_probe(args).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => e.report(json_out),
                }
            }
            Command::Demo(args) => demo(args).await,
            Command::Proxy(args) => proxy::run(args).await,
        }
    })
}

// ---------------------------------------------------------------------------------------------
// get

type CliClient = Client<FallbackConnector<HttpConnector>, Full<Bytes>>;

fn get_builder(args: &GetArgs, host: &str, port: u16) -> Result<FallbackLayerBuilder, CliError> {
    if args.handshake_timeout_ms == 0 {
        return Err(CliError::bad_input(
            "--handshake-timeout-ms must be above 0",
        ));
    }
    let mut b = FallbackLayer::builder()
        .handshake_timeout(Duration::from_millis(args.handshake_timeout_ms));
    if let Some(ca) = &args.ca_file {
        b = b.ca_file(ca);
    }
    if let (Some(cert), Some(key)) = (&args.client_cert, &args.client_key) {
        let read = |what: &str, path: &std::path::Path| {
            std::fs::read(path).map_err(|e| {
                CliError::bad_input(format!("cannot read the {what} {}: {e}", path.display()))
            })
        };
        b = b.client_identity_pem(read("client certificate", cert)?, read("client key", key)?);
    }
    if args.allow_legacy {
        let pattern = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        b = b.allow_legacy(pattern);
    }
    for pin in &args.pin {
        let (pattern, version) =
            policy::parse_pin(pin).map_err(|e| CliError::bad_input(format!("--pin: {e}")))?;
        b = b.pin(pattern.to_string(), version);
    }
    Ok(b)
}

struct Outcome {
    status: u16,
    ms: f64,
    tls: Option<TlsInfo>,
    body: Bytes,
}

async fn fetch(
    client: &CliClient,
    method: &http::Method,
    url: &http::Uri,
    data: &Bytes,
) -> Result<Outcome, CliError> {
    let req = http::Request::builder()
        .method(method.clone())
        .uri(url.clone())
        .body(Full::new(data.clone()))
        .map_err(|e| CliError::bad_input(e.to_string()))?;
    let started = Instant::now();
    let res = client
        .request(req)
        .await
        .map_err(|e| CliError::from_client(&e))?;
    let (parts, body) = res.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| CliError {
            kind: "http",
            message: format!("reading the response body: {}", error_chain(&e)),
            attempts: Vec::new(),
            code: 1,
        })?;
    Ok(Outcome {
        status: parts.status.as_u16(),
        ms: started.elapsed().as_secs_f64() * 1000.0,
        tls: parts.extensions.get::<TlsInfo>().cloned(),
        body,
    })
}

fn parse_url(s: &str) -> Result<(http::Uri, String, u16), CliError> {
    let url: http::Uri = s
        .parse()
        .map_err(|e| CliError::bad_input(format!("invalid URL {s:?}: {e}")))?;
    let scheme = url.scheme_str().unwrap_or("");
    if scheme != "https" && scheme != "http" {
        return Err(CliError::bad_input(format!(
            "invalid URL {s:?}: it must start with https:// or http://"
        )));
    }
    let host = url
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| CliError::bad_input(format!("invalid URL {s:?}: it has no host")))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    Ok((url, host, port))
}

async fn get(args: GetArgs) -> Result<ExitCode, CliError> {
    let (url, host, port) = parse_url(&args.url)?;
    let method = http::Method::from_bytes(args.method.as_bytes())
        .map_err(|_| CliError::bad_input(format!("invalid method {:?}", args.method)))?;
    if args.repeat == 0 || args.concurrency == 0 {
        return Err(CliError::bad_input(
            "--repeat and --concurrency must be at least 1",
        ));
    }
    let layer = get_builder(&args, &host, port)?
        .build()
        .map_err(|e| CliError {
            kind: e.kind().as_str(),
            message: e.to_string(),
            attempts: Vec::new(),
            code: 2,
        })?;
    let client: CliClient =
        Client::builder(TokioExecutor::new()).build(layer.layer(FallbackLayer::http_connector()));
    let data = Bytes::from(args.data.clone().unwrap_or_default());

    if args.repeat == 1 {
        let out = fetch(&client, &method, &url, &data).await?;
        print_single(&args, &out);
        return Ok(ExitCode::SUCCESS);
    }

    // --repeat: N requests, C in flight, one client.
    let sem = Arc::new(tokio::sync::Semaphore::new(args.concurrency as usize));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..args.repeat {
        let permit = Arc::clone(&sem)
            .acquire_owned()
            .await
            .map_err(|e| CliError::bad_input(e.to_string()))?;
        let (client, method, url, data) =
            (client.clone(), method.clone(), url.clone(), data.clone());
        set.spawn(async move {
            let r = fetch(&client, &method, &url, &data).await;
            drop(permit);
            r
        });
    }
    let mut lat = Vec::new();
    let mut versions: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut last_error = None;
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(out)) => {
                lat.push(out.ms);
                *statuses.entry(out.status).or_default() += 1;
                let v = out
                    .tls
                    .map_or("http".to_string(), |t| t.version.as_str().to_string());
                *versions.entry(v).or_default() += 1;
            }
            Ok(Err(e)) => {
                *errors.entry(e.kind.to_string()).or_default() += 1;
                last_error = Some(e);
            }
            Err(e) => {
                *errors.entry("internal".to_string()).or_default() += 1;
                eprintln!("a request task failed: {e}");
            }
        }
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1;
        (lat[i] * 10.0).round() / 10.0
    };
    let stats = layer.stats();
    let ok = lat.len() as u64;
    let failed = u64::from(args.repeat) - ok;
    if args.json {
        let v = json!({
            "requests": args.repeat,
            "ok": ok,
            "failed": failed,
            "handshakes": stats.handshakes,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "versions": versions,
            "errors": errors,
            "statuses": statuses,
            "stats": stats,
        });
        println!("{v}");
    } else {
        println!(
            "{} requests: {ok} ok, {failed} failed; {} handshakes; p50 {:.1} ms, p99 {:.1} ms",
            args.repeat,
            stats.handshakes,
            pct(0.50),
            pct(0.99)
        );
        for (v, n) in &versions {
            println!("  TLS {v}: {n}");
        }
        for (k, n) in &errors {
            println!("  error {k}: {n}");
        }
        for h in &stats.hosts {
            let state = if h.provisional {
                "seen once, learned if it recurs"
            } else {
                "learned"
            };
            println!("  {state} {} -> {} ({})", h.host, h.profile, h.reason);
        }
    }
    if let Some(e) = last_error.filter(|_| !args.json) {
        eprintln!("last error ({}): {}", e.kind, e.message);
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn attempts_table(attempts: &[Attempt]) -> String {
    let mut s = String::new();
    for (i, a) in attempts.iter().enumerate() {
        s.push_str(&format!(
            "  {:>2}. {:<16} up to {:<7} {:<5} {:<14} {:>6} ms\n",
            i + 1,
            a.profile,
            a.max_version.to_string(),
            if a.scsv { "SCSV" } else { "" },
            a.outcome.short(),
            a.elapsed.as_millis()
        ));
    }
    s
}

fn print_single(args: &GetArgs, out: &Outcome) {
    if args.json {
        let v = match &out.tls {
            Some(t) => json!({
                "status": out.status,
                "tls_version": t.version,
                "cipher": t.cipher,
                "profile": t.profile,
                "attempts": t.attempts,
                "from_cache": t.from_cache,
                "pinned": t.pinned,
                "ms": (out.ms * 10.0).round() / 10.0,
            }),
            None => json!({
                "status": out.status,
                "tls_version": Value::Null,
                "ms": (out.ms * 10.0).round() / 10.0,
            }),
        };
        println!("{v}");
        return;
    }
    println!("HTTP {}", out.status);
    match &out.tls {
        Some(t) => {
            println!(
                "{} with {} via profile {}{}{}",
                t.version,
                t.cipher,
                t.profile,
                if t.pinned { " (pinned)" } else { "" },
                if t.from_cache { " (from cache)" } else { "" }
            );
            println!("attempts:");
            print!("{}", attempts_table(&t.attempts));
        }
        None => println!("plain HTTP (no TLS)"),
    }
    let preview = &out.body[..out.body.len().min(2048)];
    println!("body ({} bytes):", out.body.len());
    println!("{}", String::from_utf8_lossy(preview));
}

// ---------------------------------------------------------------------------------------------
// probe

async fn run_probe(args: ProbeArgs) -> Result<(), CliError> {
    if args.timeout_ms == 0 {
        return Err(CliError::bad_input("--timeout-ms must be above 0"));
    }
    let target = if args.target.contains(':') && !args.target.ends_with(']') {
        args.target.clone()
    } else {
        format!("{}:443", args.target)
    };
    let mut cfg = ProbeConfig::new(target.clone());
    cfg.sni = args.sni.clone().or(cfg.sni);
    cfg.timeout = Duration::from_millis(args.timeout_ms);
    let mut report = probe::probe(&cfg).await.map_err(|e| match e {
        ProbeError::BadTarget(m) => CliError::bad_input(m),
        other => CliError {
            kind: "connect",
            message: other.to_string(),
            attempts: Vec::new(),
            code: 1,
        },
    })?;
    // One real handshake through the connector (legacy allowed: this is a diagnosis), with
    // certificate checks, to show what `get` would do.
    report
        .tests
        .push(full_handshake(&args, &cfg, &target).await);
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                return Err(CliError {
                    kind: "internal",
                    message: e.to_string(),
                    attempts: Vec::new(),
                    code: 1,
                })
            }
        }
    } else {
        println!("{}", report.to_table());
    }
    Ok(())
}

async fn full_handshake(args: &ProbeArgs, cfg: &ProbeConfig, target: &str) -> probe::ProbeTest {
    let started = Instant::now();
    let host = cfg.sni.clone().unwrap_or_else(|| {
        target
            .rsplit_once(':')
            .map_or(target, |(h, _)| h)
            .to_string()
    });
    let port = target
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .unwrap_or(443);
    let mut b = FallbackLayer::builder()
        .handshake_timeout(cfg.timeout)
        .allow_legacy("*");
    if let Some(ca) = &args.ca_file {
        b = b.ca_file(ca);
    }
    let mut test = probe::ProbeTest {
        name: "fallback_connector".into(),
        description: "a full handshake through the fallback connector, certificates checked".into(),
        hello_len: 0,
        outcome: String::new(),
        negotiated: None,
        ms: 0,
    };
    let host_for_uri = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let uri: Result<http::Uri, _> = format!("https://{host_for_uri}:{port}/").parse();
    let result = match (b.build(), uri) {
        (Ok(layer), Ok(uri)) => {
            let mut connector = layer.layer(FallbackLayer::http_connector());
            tower_service::Service::call(&mut connector, uri)
                .await
                .map(|s| s.tls_info().cloned())
        }
        (Err(e), _) => Err(e),
        (_, Err(e)) => Err(Error::InvalidUri {
            uri: host,
            reason: e.to_string(),
        }),
    };
    test.ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(Some(info)) => {
            test.outcome = format!("ok:{}", info.profile);
            test.negotiated = Some(info.version.as_str().to_string());
        }
        Ok(None) => test.outcome = "ok".into(),
        Err(e) => test.outcome = format!("error:{}", e.kind().as_str()),
    }
    test
}

// ---------------------------------------------------------------------------------------------
// demo

struct Gateway {
    name: &'static str,
    behaviour: &'static str,
    _server: TlsServer,
    emulator: Emulator,
    expect: Expect,
}

#[derive(Clone, Copy)]
enum Expect {
    /// Both contacts succeed with this version.
    Version(TlsVersion),
    /// The first contact is refused as a downgrade; the second succeeds with this version.
    DowngradeThen(TlsVersion),
}

struct Contact {
    attempts: usize,
    version: Option<TlsVersion>,
    ms: f64,
    error: Option<String>,
}

async fn contact(client: &CliClient, url: &str) -> Contact {
    let started = Instant::now();
    let req = http::Request::get(url).body(Full::new(Bytes::new()));
    let result = match req {
        Ok(req) => tokio::time::timeout(Duration::from_secs(20), client.request(req)).await,
        Err(e) => {
            return Contact {
                attempts: 0,
                version: None,
                ms: 0.0,
                error: Some(e.to_string()),
            }
        }
    };
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(Ok(res)) => {
            let info = res.extensions().get::<TlsInfo>().cloned();
            let _ = res.into_body().collect().await;
            Contact {
                attempts: info.as_ref().map_or(0, |i| i.handshakes()),
                version: info.map(|i| i.version),
                ms,
                error: None,
            }
        }
        Ok(Err(e)) => {
            let (attempts, kind) = match Error::find(&e) {
                Some(t) => (t.attempts().len(), t.kind().as_str().to_string()),
                None => (0, "http".to_string()),
            };
            Contact {
                attempts,
                version: None,
                ms,
                error: Some(kind),
            }
        }
        Err(_) => Contact {
            attempts: 0,
            version: None,
            ms,
            error: Some("timeout".into()),
        },
    }
}

async fn gateway(
    name: &'static str,
    behaviour: &'static str,
    server: TlsServer,
    rules: Vec<Rule>,
    expect: Expect,
) -> std::io::Result<Gateway> {
    let emulator = Emulator::start(server.addr(), rules).await?;
    Ok(Gateway {
        name,
        behaviour,
        _server: server,
        emulator,
        expect,
    })
}

async fn demo(args: DemoArgs) -> ExitCode {
    match demo_inner(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: the demo could not start its gateways: {e}");
            ExitCode::from(1)
        }
    }
}

async fn demo_inner(args: DemoArgs) -> std::io::Result<bool> {
    use TlsVersion::*;
    let started = Instant::now();
    let gateways = vec![
        gateway(
            "legacy-pay",
            "TLS 1.0 only; closes any hello above 1.0",
            TlsServer::only(Tls1_0).await?,
            vec![Rule::close_above(Tls1_0)],
            Expect::Version(Tls1_0),
        )
        .await?,
        gateway(
            "rst-box",
            "TLS 1.1 only; resets any hello above 1.1",
            TlsServer::only(Tls1_1).await?,
            vec![Rule::reset_above(Tls1_1)],
            Expect::Version(Tls1_1),
        )
        .await?,
        gateway(
            "tls13-hang",
            "TLS 1.2 server; a TLS 1.3 hello hangs",
            TlsServer::only(Tls1_2).await?,
            vec![Rule::hang_above(Tls1_2)],
            Expect::Version(Tls1_2),
        )
        .await?,
        gateway(
            "f5-long-hello",
            "hangs on a 256..511-byte hello",
            TlsServer::modern().await?,
            vec![Rule::f5_hang()],
            Expect::Version(Tls1_3),
        )
        .await?,
        gateway(
            "short-lists",
            "closes hellos with more than 16 suites",
            TlsServer::modern().await?,
            vec![Rule::close_if_ciphers_above(16)],
            Expect::Version(Tls1_3),
        )
        .await?,
        gateway(
            "mitm-downgrade",
            "attacker resets both TLS 1.3 hellos to a modern server",
            TlsServer::modern().await?,
            vec![Rule::reset_first(2)],
            Expect::DowngradeThen(Tls1_3),
        )
        .await?,
        gateway(
            "pinned-legacy",
            "TLS 1.0 only, closes above 1.0; pinned in code",
            TlsServer::only(Tls1_0).await?,
            vec![Rule::close_above(Tls1_0)],
            Expect::Version(Tls1_0),
        )
        .await?,
    ];
    let port = |i: usize| gateways[i].emulator.addr().port();
    let layer = FallbackLayer::builder()
        .system_roots(false)
        .add_root_certificate(TestPki::shared().ca.cert.clone())
        .handshake_timeout(Duration::from_millis(1000))
        // A silent rung is raced by the next one after 300 ms instead of waiting 1 s.
        .stall_timeout(Some(Duration::from_millis(300)))
        .allow_legacy(format!("localhost:{}", port(0)))
        .allow_legacy(format!("localhost:{}", port(1)))
        .pin(format!("localhost:{}", port(6)), Tls1_0)
        .build();
    let layer = match layer {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(false);
        }
    };
    // No pooling: the second contact opens a new connection, so the cache is what helps.
    let client: CliClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(layer.layer(FallbackLayer::http_connector()));

    let mut rows = Vec::new();
    let mut all_ok = true;
    for g in &gateways {
        let url = g.emulator.url();
        let first = contact(&client, &url).await;
        let second = contact(&client, &url).await;
        let ok = match g.expect {
            Expect::Version(v) => first.version == Some(v) && second.version == Some(v),
            Expect::DowngradeThen(v) => {
                first.error.as_deref() == Some("downgrade_detected") && second.version == Some(v)
            }
        };
        all_ok &= ok;
        let result = match (g.expect, &first.error) {
            _ if !ok => "UNEXPECTED".to_string(),
            (Expect::DowngradeThen(_), _) => "attack refused, nothing learned".to_string(),
            (_, _) if g.name == "pinned-legacy" => "pinned: one hello, no SCSV".to_string(),
            // Same version, reshaped hello: SCSV cannot vouch for it, so the second contact
            // walks again and confirms it.
            (_, _) if first.attempts > 1 && second.attempts == first.attempts => {
                "reshaped hello: confirmed on 2nd contact, learned from the 3rd".to_string()
            }
            (_, _) if first.attempts > 1 => format!(
                "learned: {} hello(s) saved per connection",
                first.attempts - second.attempts
            ),
            _ => "no fallback needed".to_string(),
        };
        rows.push((g, first, second, result));
    }
    let elapsed = started.elapsed();

    if args.json {
        let v: Vec<Value> = rows
            .iter()
            .map(|(g, a, b, r)| {
                json!({
                    "gateway": g.name,
                    "behaviour": g.behaviour,
                    "first": {"attempts": a.attempts, "version": a.version, "ms": a.ms.round(), "error": a.error},
                    "second": {"attempts": b.attempts, "version": b.version, "ms": b.ms.round(), "error": b.error},
                    "hellos_seen": g.emulator.count(),
                    "result": r,
                })
            })
            .collect();
        println!(
            "{}",
            json!({"gateways": v, "ok": all_ok, "seconds": elapsed.as_secs_f64()})
        );
        return Ok(all_ok);
    }
    println!("tls-fallback demo: seven broken gateways on 127.0.0.1, one connector\n");
    println!(
        "{:<15} {:<54} {:<26} {:<26} result",
        "gateway", "behaviour", "first contact", "second contact"
    );
    println!(
        "{:<15} {:<54} {:<26} {:<26}",
        "", "", "(hellos, version, time)", "(hellos, version, time)"
    );
    let cell = |c: &Contact| match (&c.version, &c.error) {
        (Some(v), _) => format!("{} {:<9} {:>6.0} ms", c.attempts, v.to_string(), c.ms),
        (None, Some(e)) => format!("{} {e}", c.attempts),
        _ => "?".to_string(),
    };
    for (g, a, b, r) in &rows {
        println!(
            "{:<15} {:<54} {:<26} {:<26} {}",
            g.name,
            g.behaviour,
            cell(a),
            cell(b),
            r
        );
    }
    let stats = layer.stats();
    let seen: Vec<_> = gateways.iter().flat_map(|g| g.emulator.hellos()).collect();
    let scsv = seen.iter().filter(|h| h.scsv()).count();
    println!(
        "\nOn the wire: {} hellos, {scsv} with TLS_FALLBACK_SCSV (every fallback and every \
         learned start; never the first try or a pin). {} handshakes for {} connections, {} \
         hosts learned, {} downgrade refused; {:.1} s.",
        seen.len(),
        stats.handshakes,
        stats.connections,
        stats.hosts.iter().filter(|h| !h.provisional).count(),
        stats.downgrades,
        elapsed.as_secs_f64()
    );
    if !all_ok {
        eprintln!("some gateway did not behave as expected: see UNEXPECTED above");
    }
    Ok(all_ok)
}
