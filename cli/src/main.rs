//! `tls-fallback`: fetch through the fallback connector (`get`), diagnose a gateway the way
//! SSL Labs' "Protocol Details" does (`probe`), watch the connector handle a row of broken
//! gateways on 127.0.0.1 (`demo`), or run the egress proxy for apps that cannot take the
//! connector (`proxy`, the `tls-fallback-proxy` package's library).
//!
//! This file holds the arguments and the dispatch; each subcommand has its module, and
//! [`output`] the error type, the exit codes and the printing they share.
//!
//! Exit codes: 0 success, 1 the connection or probe failed, 2 bad input.

mod decisions;
mod demo;
mod get;
mod output;
mod probe;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::{EXIT_FAILED, EXIT_OK};

#[derive(Parser, Debug)]
#[command(
    name = "tls-fallback",
    version,
    about = "Safe per-host TLS fallback for fragile HTTPS gateways: fetch, probe, demo, and an egress proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Show the library's events on stderr: warnings and errors by default (none for `demo`,
    /// which tells its own story), -v info, -vv debug, -vvv trace. RUST_LOG (`tls_fallback=debug`)
    /// overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Fetch a URL through the fallback connector and report how the TLS connection was made.
    Get(Box<GetArgs>),
    /// Diagnose a TLS endpoint: versions, intolerance, TLS_FALLBACK_SCSV (SSL Labs style).
    Probe(ProbeArgs),
    /// Start broken gateways on 127.0.0.1 and show the connector handling each one.
    Demo(DemoArgs),
    /// Run the egress proxy: TLS with fallback for apps in any language (docs/PROXY.md).
    ///
    /// Apps send http:// requests through it (forward mode) or to it (--upstream mode); it
    /// makes the https:// connection through the fallback connector, for allowed hosts only.
    /// The same as the `tls-fallback-proxy` binary. The command, the config file, a systemd
    /// unit and client snippets: docs/PROXY.md.
    Proxy(Box<tls_fallback_proxy::ProxyArgs>),
    /// List, export (nginx, HAProxy, Envoy, JSON) or forget learned decisions, read from a
    /// decision file, Redis or a running proxy.
    #[command(subcommand)]
    Decisions(decisions::DecisionsCommand),
}

/// `get`'s arguments.
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// The URL (https:// or http://).
    pub url: String,
    /// Also trust the root certificates in this PEM file.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Allow TLS below 1.2 (with legacy crypto) for this URL's host.
    #[arg(long)]
    pub allow_legacy: bool,
    /// Client certificate (PEM, then its intermediates) for servers that require one.
    #[arg(long, value_name = "PEM", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM, unencrypted).
    #[arg(long, value_name = "PEM", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Pin a host to a version: HOST[:PORT]=VERSION (1.0, 1.1, 1.2, 1.3). Repeatable.
    #[arg(long, value_name = "HOST[:PORT]=VERSION")]
    pub pin: Vec<String>,
    /// Handshake (and TCP connect) timeout per attempt, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub handshake_timeout_ms: u64,
    /// HTTP method.
    #[arg(
        short = 'X',
        long = "request",
        value_name = "METHOD",
        default_value = "GET"
    )]
    pub method: String,
    /// Request body.
    #[arg(short = 'd', long = "data", value_name = "DATA")]
    pub data: Option<String>,
    /// Send N requests through one client (the decision cache is shared).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub repeat: u32,
    /// Requests in flight at once with --repeat.
    #[arg(long, value_name = "C", default_value_t = 1)]
    pub concurrency: u32,
    /// Reach the host through this proxy: http://[USER:PASS@]HOST:PORT (CONNECT),
    /// socks5h://[USER:PASS@]HOST:PORT (SOCKS5, the proxy resolves names) or socks5://...
    /// (names resolved here). Percent-encode @ : / in credentials. Default: HTTPS_PROXY,
    /// minus NO_PROXY.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Request header, 'Name: value' (e.g. -H 'Content-Type: application/json'). Repeatable.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Show the response headers.
    #[arg(short = 'i', long = "include")]
    pub include: bool,
    /// Write the response body to FILE (streamed, not kept in memory).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Time for the whole request (connect, every handshake, the request and the body), in
    /// milliseconds.
    #[arg(long, value_name = "N", default_value_t = 30_000)]
    pub timeout_ms: u64,
    /// Largest response body to read, in bytes (K, M, G: KiB, MiB, GiB).
    #[arg(long, value_name = "BYTES", default_value = "64M")]
    pub max_body: String,
    /// Load learned decisions from this JSON file and save them back, across runs.
    #[arg(long, value_name = "PATH")]
    pub cache_file: Option<PathBuf>,
    /// Share learned decisions through this Redis (redis:// or rediss://, with user and
    /// password): read what other instances learned, publish what this run learns.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// Lowest TLS version for hosts not allowed legacy (1.0, 1.1, 1.2, 1.3; default 1.2).
    #[arg(long, value_name = "VERSION")]
    pub floor: Option<String>,
    /// Start the next rung beside a silent one after N ms (default 1500; 0: no racing).
    #[arg(long, value_name = "N")]
    pub stall_timeout_ms: Option<u64>,
}

/// `probe`'s arguments.
#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// HOST[:PORT] (port 443 if omitted), [IPv6][:PORT] or an https:// URL.
    pub target: String,
    /// Also trust the root certificates in this PEM file (for the full-handshake check).
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Server name to send (default: the host, unless it is an IP address).
    #[arg(long, value_name = "NAME")]
    pub sni: Option<String>,
    /// Timeout per test, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 5_000)]
    pub timeout_ms: u64,
    /// Print JSON (the same as --format json).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Output format on stdout: text, json, markdown or html.
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Also write the report to FILE, in the format its extension names (.html, .md, .json,
    /// .txt).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write every test's exchange to FILE as pcapng (rebuilt from what each socket wrote and
    /// read, write boundaries kept).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Probe these addresses instead of the name's (curl's syntax): HOST:PORT:ADDR[,ADDR...].
    #[arg(long, value_name = "HOST:PORT:ADDR[,ADDR]")]
    pub resolve: Vec<String>,
    /// Run one test alone (a reproduction): version_1.0, long_hello, split_hello, ...
    #[arg(long, value_name = "TEST")]
    pub only: Option<String>,
    /// With --only: the highest version the test's hello offers (1.0, 1.1, 1.2, 1.3; default 1.3).
    #[arg(long, value_name = "VERSION", requires = "only")]
    pub baseline: Option<String>,
}

/// `demo`'s arguments.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet = if matches!(cli.command, Command::Demo(_)) {
        "off"
    } else {
        "warn"
    };
    let filter = match cli.verbose {
        0 => quiet,
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    if let Command::Proxy(args) = cli.command {
        // The proxy package runs its own threads and runtime.
        return tls_fallback_proxy::main(*args);
    }
    // The library's events (a refused decision file, Redis down, a detected downgrade) on
    // stderr, as the proxy logs them; stdout stays the command's output.
    tls_fallback_proxy::observe::init_tracing(tls_fallback_proxy::observe::LogFormat::Text, filter);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    rt.block_on(async move {
        match cli.command {
            Command::Get(args) => {
                let json_out = args.json;
                match get::run(*args).await {
                    Ok(code) => code,
                    Err(e) => e.report(json_out),
                }
            }
            Command::Probe(args) => {
                let json_out = args.json;
                match probe::run(args).await {
                    Ok(()) => ExitCode::from(EXIT_OK),
                    Err(e) => e.report(json_out),
                }
            }
            Command::Demo(args) => demo::run(args).await,
            Command::Decisions(cmd) => decisions::run(cmd).await,
            Command::Proxy(_) => ExitCode::from(EXIT_FAILED),
        }
    })
}
