//! `get`: fetch a URL through the fallback connector and report how the TLS connection was
//! made (one request), or send N requests through one client and summarise them (`--repeat`).
//!
//! `parse` checks the flags, `fetch` runs one request under the limits, `print` writes the
//! result as text or JSON.

mod fetch;
mod parse;
mod print;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tls_fallback::{policy, FallbackConnector, FallbackLayer, FallbackLayerBuilder};
use tower_layer::Layer;

use self::fetch::{fetch, Limits, Request, Sink};
use crate::output::{CliError, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK};
use crate::GetArgs;

/// The client every subcommand uses: hyper-util's, over the fallback connector.
pub type CliClient = Client<FallbackConnector<tls_fallback::outbound::ViaConnector>, Full<Bytes>>;

fn builder(args: &GetArgs, url: &parse::Url) -> Result<FallbackLayerBuilder, CliError> {
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
        let (host, port) = (&url.host, url.port);
        let pattern = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        b = b.allow_legacy(pattern);
    }
    for pin in &args.pin {
        parse::pin_version(pin).map_err(CliError::bad_input)?;
        let (pattern, version) =
            policy::parse_pin(pin).map_err(|e| CliError::bad_input(format!("--pin: {e}")))?;
        b = b.pin(pattern.to_string(), version);
    }
    if let Some(floor) = &args.floor {
        b = b.floor(parse::version(floor).map_err(|e| bad_flag("--floor", e))?);
    }
    if let Some(ms) = args.stall_timeout_ms {
        // 0: no racing; a silent rung waits for the whole handshake timeout.
        b = b.stall_timeout((ms > 0).then(|| Duration::from_millis(ms)));
    }
    if let Some(path) = &args.cache_file {
        b = b.cache_file(path);
    }
    if let Some(url) = &args.redis {
        b = b.redis(url);
    }
    Ok(b)
}

fn bad_flag(flag: &str, message: String) -> CliError {
    CliError::bad_input(format!("{flag} {message}"))
}

/// The request and the limits `get`'s flags describe.
fn request(args: &GetArgs, url: &parse::Url) -> Result<(Request, Limits), CliError> {
    let method = http::Method::from_bytes(args.method.as_bytes()).map_err(|_| {
        CliError::bad_input(format!(
            "invalid method {:?}: expected a token such as GET, POST or PUT",
            args.method
        ))
    })?;
    if args.repeat == 0 || args.concurrency == 0 {
        return Err(CliError::bad_input(
            "--repeat and --concurrency must be at least 1",
        ));
    }
    if args.timeout_ms == 0 {
        return Err(CliError::bad_input(
            "--timeout-ms 0: expected a number of milliseconds above 0",
        ));
    }
    if args.output.is_some() && args.repeat > 1 {
        return Err(CliError::bad_input(
            "-o takes the body of one response; expected either -o FILE or --repeat N, not both",
        ));
    }
    let mut headers = HeaderMap::new();
    for h in &args.headers {
        let (name, value) = parse::header(h).map_err(CliError::bad_input)?;
        headers.append(name, value);
    }
    let max_body = parse::size("--max-body", &args.max_body).map_err(CliError::bad_input)?;
    let req = Request {
        method,
        uri: url.uri.clone(),
        headers,
        body: Bytes::from(args.data.clone().unwrap_or_default()),
    };
    let limits = Limits {
        timeout: Duration::from_millis(args.timeout_ms),
        max_body,
    };
    Ok((req, limits))
}

/// Runs `get`: exit 0 when every request got a whole response.
pub async fn run(args: GetArgs) -> Result<ExitCode, CliError> {
    let url = parse::url(&args.url).map_err(CliError::bad_input)?;
    let (req, limits) = request(&args, &url)?;
    let layer = builder(&args, &url)?.build().map_err(|e| CliError {
        code: EXIT_BAD_INPUT,
        ..CliError::from_tls(&e)
    })?;
    // --proxy, else HTTPS_PROXY minus NO_PROXY: each rung is one CONNECT (or SOCKS
    // connection) through it.
    let tcp = tls_fallback::outbound::connector_from_flag(args.proxy.as_deref())
        .map_err(|e| CliError::bad_input(format!("--proxy: {e}")))?;
    let client: CliClient = Client::builder(TokioExecutor::new()).build(layer.layer(tcp));
    let result = if args.repeat == 1 {
        let sink = args.output.clone().map_or(Sink::Memory, Sink::File);
        let out = fetch(&client, &req, limits, &sink).await;
        out.map(|out| {
            print::single(&args, &out);
            ExitCode::from(EXIT_OK)
        })
    } else {
        Ok(repeat(&args, &layer, client, req, limits).await)
    };
    if let Some(path) = &args.cache_file {
        if let Err(e) = layer.flush() {
            eprintln!(
                "warning: cannot write the decision file {}: {e}",
                path.display()
            );
        }
    }
    if args.redis.is_some() {
        // What this run learned reaches Redis before the process ends.
        if let Err(e) = layer.flush() {
            eprintln!("warning: {e}");
        }
    }
    result
}

/// What `--repeat` counts.
#[derive(Default)]
pub struct Tally {
    pub(super) latencies: Vec<f64>,
    pub(super) versions: BTreeMap<String, u64>,
    pub(super) errors: BTreeMap<String, u64>,
    pub(super) statuses: BTreeMap<u16, u64>,
    pub(super) last_error: Option<CliError>,
}

impl Tally {
    /// The latency at percentile `p` (0..=1), nearest rank, rounded to 0.1 ms.
    pub(super) fn percentile(&self, p: f64) -> f64 {
        let lat = &self.latencies;
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1;
        crate::output::round1(lat[i])
    }
}

/// `--repeat`: N requests, C in flight, one client; bodies are counted, not kept.
async fn repeat(
    args: &GetArgs,
    layer: &FallbackLayer,
    client: CliClient,
    req: Request,
    limits: Limits,
) -> ExitCode {
    let sem = Arc::new(tokio::sync::Semaphore::new(args.concurrency as usize));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..args.repeat {
        let Ok(permit) = Arc::clone(&sem).acquire_owned().await else {
            break; // The semaphore is never closed.
        };
        let (client, req) = (client.clone(), req.clone());
        set.spawn(async move {
            let r = fetch(&client, &req, limits, &Sink::Discard).await;
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
    print::repeat(args, &layer.stats(), &t);
    ExitCode::from(if failed > 0 { EXIT_FAILED } else { EXIT_OK })
}
