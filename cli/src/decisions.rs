//! `tls-fallback decisions list | export | forget`: what the library learned, read from one
//! source (a decision file, Redis, or a running proxy's admin listener), shown as a table,
//! written out as nginx / HAProxy / Envoy / JSON config, or forgotten.
//!
//! The config text comes from the proxy library's pure exporter
//! ([`tls_fallback_proxy::export`]); this module only fetches the decisions.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use tls_fallback::{Decision, FileStore, HostKey};
use tls_fallback_proxy::export::{export, Entry, Format, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::output::{EXIT_FAILED, EXIT_OK};

/// `decisions`' subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum DecisionsCommand {
    /// A table of the learned hosts.
    List(Source),
    /// The confirmed decisions as config: nginx, haproxy, envoy or json.
    Export(ExportArgs),
    /// Forget a host, so its next connection walks the ladder from the top.
    Forget(ForgetArgs),
}

/// Exactly one place to read decisions from.
#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
pub struct Source {
    /// A decision file (`--cache-file` of `get`, the proxy's `cache_file`).
    #[arg(long, value_name = "PATH")]
    pub cache_file: Option<PathBuf>,
    /// A Redis the proxies share decisions through (redis:// or rediss://).
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// A running proxy's admin listener, http://127.0.0.1:PORT (loopback only).
    #[arg(long, value_name = "URL")]
    pub admin: Option<String>,
}

/// `decisions export`'s arguments.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub source: Source,
    /// nginx, haproxy, envoy or json.
    #[arg(long, value_name = "FORMAT")]
    pub format: String,
    /// nginx: the first loopback port (host i, sorted, listens on PORT + i).
    #[arg(long, value_name = "PORT", default_value_t = 18443)]
    pub base_port: u16,
    /// The CA bundle the exported config verifies upstreams against.
    #[arg(
        long,
        value_name = "PEM",
        default_value = "/etc/ssl/certs/ca-certificates.crt"
    )]
    pub ca_file: String,
}

/// `decisions forget`'s arguments.
#[derive(clap::Args, Debug)]
pub struct ForgetArgs {
    /// HOST[:PORT] (port 443 if omitted; IPv6 in brackets).
    pub host: String,
    #[command(flatten)]
    pub source: Source,
}

/// The most keys a Redis listing reads.
const MAX_REDIS_KEYS: usize = 100_000;
/// The largest decision value read from Redis (the library's own writes are far smaller).
const MAX_REDIS_VALUE: isize = 16 * 1024;
/// The largest admin answer read.
const MAX_ADMIN_BYTES: usize = 64 * 1024 * 1024;
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a `decisions` subcommand; errors go to stderr.
pub async fn run(cmd: DecisionsCommand) -> ExitCode {
    let done = match cmd {
        DecisionsCommand::List(source) => read(&source).await.map(|e| print!("{}", table(&e))),
        DecisionsCommand::Export(args) => export_cmd(args).await,
        DecisionsCommand::Forget(args) => forget(&args).await,
    };
    match done {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

async fn export_cmd(args: ExportArgs) -> Result<(), String> {
    let format = Format::parse(&args.format)
        .ok_or_else(|| format!("--format must be one of: {}", Format::NAMES))?;
    let entries = read(&args.source).await?;
    let opts = Options {
        base_port: args.base_port,
        ca_file: args.ca_file,
    };
    print!("{}", export(&entries, format, &opts));
    Ok(())
}

async fn read(source: &Source) -> Result<Vec<Entry>, String> {
    if let Some(path) = &source.cache_file {
        return read_file(path);
    }
    if let Some(url) = &source.redis {
        return read_redis(url).await;
    }
    if let Some(url) = &source.admin {
        let (status, body) = admin(url, "GET", "/decisions/export?format=json").await?;
        if status != 200 {
            return Err(format!("{url}: HTTP {status}: {}", body.trim()));
        }
        return serde_json::from_str(&body).map_err(|e| format!("{url}: not decisions: {e}"));
    }
    Err("give one of --cache-file, --redis or --admin".into())
}

fn read_file(path: &Path) -> Result<Vec<Entry>, String> {
    let bytes = tls_fallback::read_bounded_file(path, FileStore::MAX_FILE_BYTES)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let pairs = FileStore::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(pairs
        .iter()
        .map(|(k, d)| Entry::from_decision(k, d))
        .collect())
}

/// The decision key prefix the library uses for the default ladder
/// (`<namespace>:<fingerprint>`), and a store on it.
fn redis_store(url: &str) -> Result<(tls_fallback::RedisStore, String), String> {
    let ladder = tls_fallback::Ladder::default();
    let policy = tls_fallback::policy::Policy::default();
    let options = tls_fallback::RedisOptions::new(url);
    let store =
        tls_fallback::RedisStore::open(options, &ladder, &policy, Duration::from_secs(86_400), 16)
            .map_err(|e| format!("Redis {}: {e}", tls_fallback::redact_url(url)))?;
    let probe = store.key_of(&HostKey::new("h", 1));
    let prefix = probe
        .strip_suffix(":d:h:1")
        .ok_or("unexpected Redis key layout")?
        .to_string();
    Ok((store, prefix))
}

async fn read_redis(url: &str) -> Result<Vec<Entry>, String> {
    let shown = tls_fallback::redact_url(url);
    let (_store, prefix) = redis_store(url)?;
    let client = redis::Client::open(url).map_err(|e| format!("Redis {shown}: {e}"))?;
    let mut conn = tokio::time::timeout(ADMIN_TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| format!("Redis {shown}: no connection within 10 s"))?
        .map_err(|e| format!("Redis {shown}: {e}"))?;
    let pattern = format!("{prefix}:d:*");
    let mut cursor: u64 = 0;
    let mut keys: Vec<String> = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(500)
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("Redis {shown}: {e}"))?;
        keys.extend(batch);
        if keys.len() > MAX_REDIS_KEYS {
            return Err(format!(
                "Redis {shown}: more than {MAX_REDIS_KEYS} decisions"
            ));
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let mut entries = Vec::new();
    for name in keys {
        let Some((host, port)) = name
            .strip_prefix(&format!("{prefix}:d:"))
            .and_then(|rest| rest.rsplit_once(':'))
        else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let bytes: Vec<u8> = redis::cmd("GETRANGE")
            .arg(&name)
            .arg(0)
            .arg(MAX_REDIS_VALUE)
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("Redis {shown}: {e}"))?;
        // Gone since the SCAN, or not a decision this tool understands: skipped, as the
        // library skips it.
        let Ok(d) = serde_json::from_slice::<Decision>(&bytes) else {
            continue;
        };
        entries.push(Entry::from_decision(&HostKey::new(host, port), &d));
    }
    Ok(entries)
}

/// `HOST[:PORT]` as a key (port 443 if omitted, IPv6 in brackets).
fn parse_host(s: &str) -> Result<HostKey, String> {
    let bad = || format!("{s:?}: expected HOST[:PORT] ([IPv6]:PORT)");
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if after.is_empty() => 443,
            None => return Err(bad()),
        };
        return Ok(HostKey::new(host, port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && !h.is_empty() => {
            Ok(HostKey::new(h, p.parse().map_err(|_| bad())?))
        }
        None if !s.is_empty() => Ok(HostKey::new(s, 443)),
        _ => Err(bad()),
    }
}

async fn forget(args: &ForgetArgs) -> Result<(), String> {
    let key = parse_host(&args.host)?;
    let shown = if key.host().contains(':') {
        format!("[{}]:{}", key.host(), key.port)
    } else {
        format!("{}:{}", key.host(), key.port)
    };
    let source = &args.source;
    if let Some(path) = &source.cache_file {
        return forget_in_file(path, &key, &shown);
    }
    if let Some(url) = &source.redis {
        let (store, _) = redis_store(url)?;
        for _ in 0..100 {
            if store.connected() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !store.connected() {
            return Err(format!(
                "Redis {}: not connected within 5 s",
                tls_fallback::redact_url(url)
            ));
        }
        use tls_fallback::DecisionStore;
        store.remove(&key);
        tokio::task::spawn_blocking(move || store.flush())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        println!("forgot {shown} (Redis; the fleet was told)");
        return Ok(());
    }
    if let Some(url) = &source.admin {
        let encoded: String = shown
            .bytes()
            .map(|b| match b {
                b'[' => "%5B".to_string(),
                b']' => "%5D".to_string(),
                b':' => "%3A".to_string(),
                b => (b as char).to_string(),
            })
            .collect();
        let path = format!("/decisions/forget?host={encoded}");
        let (status, body) = admin(url, "POST", &path).await?;
        if !(200..300).contains(&status) {
            return Err(format!("{url}: HTTP {status}: {}", body.trim()));
        }
        println!("forgot {shown} (proxy at {url})");
        return Ok(());
    }
    Err("give one of --cache-file, --redis or --admin".into())
}

/// Rewrites the decision file without `key`. A process that has the file open writes its own
/// copy back later: forget through that process (`--admin`) instead.
fn forget_in_file(path: &Path, key: &HostKey, shown: &str) -> Result<(), String> {
    let bytes = tls_fallback::read_bounded_file(path, FileStore::MAX_FILE_BYTES)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let pairs = FileStore::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let before = pairs.len();
    let hosts: Vec<serde_json::Value> = pairs
        .iter()
        .filter(|(k, _)| k != key)
        .map(|(k, d)| {
            let mut v = serde_json::to_value(d).unwrap_or_default();
            if let Some(obj) = v.as_object_mut() {
                obj.insert("host".into(), k.host().into());
                obj.insert("port".into(), k.port.into());
            }
            v
        })
        .collect();
    if hosts.len() == before {
        return Err(format!("{shown}: not in {}", path.display()));
    }
    let body = serde_json::json!({ "version": 1, "hosts": hosts });
    let text = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
    tls_fallback::write_private_file(path, &text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    println!("forgot {shown} ({})", path.display());
    Ok(())
}

/// One request to a loopback admin listener: (status, body).
async fn admin(url: &str, method: &str, path: &str) -> Result<(u16, String), String> {
    let authority = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: --admin takes http://HOST:PORT (loopback)"))?
        .trim_end_matches('/');
    let host = match authority.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
        None => authority,
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback || authority.contains('/') || authority.contains('@') {
        return Err(format!(
            "{url}: --admin takes a loopback http://HOST:PORT (the admin listener is local)"
        ));
    }
    let exchange = async {
        let mut conn = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let req =
            format!("{method} {path} HTTP/1.0\r\nHost: {authority}\r\nContent-Length: 0\r\n\r\n");
        conn.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let mut reply = Vec::new();
        (&mut conn)
            .take(MAX_ADMIN_BYTES as u64 + 1)
            .read_to_end(&mut reply)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        Ok::<_, String>(reply)
    };
    let reply = tokio::time::timeout(ADMIN_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{url}: no answer within 10 s"))??;
    if reply.len() > MAX_ADMIN_BYTES {
        return Err(format!("{url}: answer larger than {MAX_ADMIN_BYTES} bytes"));
    }
    let text = String::from_utf8_lossy(&reply);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{url}: not an HTTP answer"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{url}: not an HTTP answer"))?;
    Ok((status, body.to_string()))
}

/// The table `decisions list` prints.
fn table(entries: &[Entry]) -> String {
    use std::fmt::Write;
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
    let mut out = format!(
        "{:<40} {:<16} {:<11} {:<20} {:>6}  REASON\n",
        "HOST", "PROFILE", "STATE", "LEARNED", "USES"
    );
    for e in sorted {
        let host = if e.host.contains(':') {
            format!("[{}]:{}", e.host, e.port)
        } else {
            format!("{}:{}", e.host, e.port)
        };
        let state = if e.provisional {
            "provisional"
        } else {
            "confirmed"
        };
        let at = std::time::UNIX_EPOCH
            .checked_add(Duration::from_millis(e.learned_at_ms))
            .filter(|t| *t < std::time::UNIX_EPOCH + Duration::from_secs(253_402_300_799))
            .map(|t| humantime::format_rfc3339_seconds(t).to_string())
            .unwrap_or_else(|| "?".into());
        let reason: String = e
            .reason
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let _ = writeln!(
            out,
            "{host:<40} {:<16} {state:<11} {at:<20} {:>6}  {reason}",
            e.profile, e.uses
        );
    }
    out
}
