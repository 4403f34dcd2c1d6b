//! `get`: fetch a URL through the fallback connector and report how the TLS connection was
//! made (one request), or send N requests through one client and summarise them (`--repeat`).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tls_fallback::{
    policy, Attempt, FallbackConnector, FallbackLayer, FallbackLayerBuilder, Stats, TlsInfo,
    TlsVersion,
};
use tower_layer::Layer;

use crate::output::{
    attempts_table, error_chain, print_json, round1, CliError, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK,
};
use crate::GetArgs;

/// The client every subcommand uses: hyper-util's, over the fallback connector.
pub type CliClient = Client<FallbackConnector<crate::proxy::via::ViaConnector>, Full<Bytes>>;

/// One request's result.
struct Outcome {
    status: u16,
    ms: f64,
    tls: Option<TlsInfo>,
    body: Bytes,
}

/// `get --json` with one request over TLS.
#[derive(Serialize)]
struct TlsJson<'a> {
    status: u16,
    tls_version: TlsVersion,
    cipher: &'a str,
    profile: &'a str,
    attempts: &'a [Attempt],
    from_cache: bool,
    pinned: bool,
    ms: f64,
}

/// `get --json` with one request over plain HTTP.
#[derive(Serialize)]
struct PlainJson {
    status: u16,
    tls_version: Option<TlsVersion>,
    ms: f64,
}

/// `get --repeat N --json`.
#[derive(Serialize)]
struct RepeatJson<'a> {
    requests: u32,
    ok: u64,
    failed: u64,
    handshakes: u64,
    p50_ms: f64,
    p99_ms: f64,
    versions: &'a BTreeMap<String, u64>,
    errors: &'a BTreeMap<String, u64>,
    statuses: &'a BTreeMap<u16, u64>,
    stats: &'a Stats,
}

fn builder(args: &GetArgs, host: &str, port: u16) -> Result<FallbackLayerBuilder, CliError> {
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
    let body = body.collect().await.map(|b| b.to_bytes()).map_err(|e| {
        CliError::failed(
            "http",
            format!("reading the response body: {}", error_chain(&e)),
        )
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

/// Runs `get`: exit 0 when every request got a response.
pub async fn run(args: GetArgs) -> Result<ExitCode, CliError> {
    let (url, host, port) = parse_url(&args.url)?;
    let method = http::Method::from_bytes(args.method.as_bytes())
        .map_err(|_| CliError::bad_input(format!("invalid method {:?}", args.method)))?;
    if args.repeat == 0 || args.concurrency == 0 {
        return Err(CliError::bad_input(
            "--repeat and --concurrency must be at least 1",
        ));
    }
    let layer = builder(&args, &host, port)?.build().map_err(|e| CliError {
        code: EXIT_BAD_INPUT,
        ..CliError::from_tls(&e)
    })?;
    // --proxy, else HTTPS_PROXY minus NO_PROXY: each rung is one CONNECT through it.
    let tcp = crate::proxy::via::connector(args.proxy.as_deref())
        .map_err(|e| CliError::bad_input(format!("--proxy: {e}")))?;
    let client: CliClient = Client::builder(TokioExecutor::new()).build(layer.layer(tcp));
    let data = Bytes::from(args.data.clone().unwrap_or_default());

    if args.repeat == 1 {
        let out = fetch(&client, &method, &url, &data).await?;
        print_single(&args, &out);
        return Ok(ExitCode::from(EXIT_OK));
    }
    repeat(&args, &layer, client, method, url, data).await
}

/// What `--repeat` counts.
#[derive(Default)]
struct Tally {
    latencies: Vec<f64>,
    versions: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    statuses: BTreeMap<u16, u64>,
    last_error: Option<CliError>,
}

impl Tally {
    /// The latency at percentile `p` (0..=1), nearest rank, rounded to 0.1 ms.
    fn percentile(&self, p: f64) -> f64 {
        let lat = &self.latencies;
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1;
        round1(lat[i])
    }
}

/// `--repeat`: N requests, C in flight, one client.
async fn repeat(
    args: &GetArgs,
    layer: &FallbackLayer,
    client: CliClient,
    method: http::Method,
    url: http::Uri,
    data: Bytes,
) -> Result<ExitCode, CliError> {
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
    let mut t = Tally::default();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(out)) => {
                t.latencies.push(out.ms);
                *t.statuses.entry(out.status).or_default() += 1;
                let v = out
                    .tls
                    .map_or("http".to_string(), |t| t.version.as_str().to_string());
                *t.versions.entry(v).or_default() += 1;
            }
            Ok(Err(e)) => {
                *t.errors.entry(e.kind.to_string()).or_default() += 1;
                t.last_error = Some(e);
            }
            Err(e) => {
                *t.errors.entry("internal".to_string()).or_default() += 1;
                eprintln!("a request task failed: {e}");
            }
        }
    }
    t.latencies.sort_by(|a, b| a.total_cmp(b));
    let failed = u64::from(args.repeat) - t.latencies.len() as u64;
    print_repeat(args, &layer.stats(), &t);
    Ok(if failed > 0 {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::from(EXIT_OK)
    })
}

fn print_repeat(args: &GetArgs, stats: &Stats, t: &Tally) {
    let ok = t.latencies.len() as u64;
    let failed = u64::from(args.repeat) - ok;
    if args.json {
        print_json(&RepeatJson {
            requests: args.repeat,
            ok,
            failed,
            handshakes: stats.handshakes,
            p50_ms: t.percentile(0.50),
            p99_ms: t.percentile(0.99),
            versions: &t.versions,
            errors: &t.errors,
            statuses: &t.statuses,
            stats,
        });
        return;
    }
    println!(
        "{} requests: {ok} ok, {failed} failed; {} handshakes; p50 {:.1} ms, p99 {:.1} ms",
        args.repeat,
        stats.handshakes,
        t.percentile(0.50),
        t.percentile(0.99)
    );
    for (v, n) in &t.versions {
        println!("  TLS {v}: {n}");
    }
    for (k, n) in &t.errors {
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
    if let Some(e) = &t.last_error {
        eprintln!("last error ({}): {}", e.kind, e.message);
    }
}

fn print_single(args: &GetArgs, out: &Outcome) {
    if args.json {
        match &out.tls {
            Some(t) => print_json(&TlsJson {
                status: out.status,
                tls_version: t.version,
                cipher: t.cipher,
                profile: &t.profile,
                attempts: &t.attempts,
                from_cache: t.from_cache,
                pinned: t.pinned,
                ms: round1(out.ms),
            }),
            None => print_json(&PlainJson {
                status: out.status,
                tls_version: None,
                ms: round1(out.ms),
            }),
        }
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
