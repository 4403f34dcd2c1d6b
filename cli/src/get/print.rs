//! `get`'s output: one response (status, TLS facts, attempts, headers with `-i`, the body or
//! where it went) or the `--repeat` summary, as text or as one JSON object.

use std::collections::BTreeMap;

use http::HeaderMap;
use serde::Serialize;
use tls_fallback::{Attempt, Stats, TlsVersion};

use super::fetch::Outcome;
use super::Tally;
use crate::output::{attempts_table, print_json, round1};
use crate::GetArgs;

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
    #[serde(flatten)]
    extra: Extra<'a>,
}

/// `get --json` with one request over plain HTTP.
#[derive(Serialize)]
struct PlainJson<'a> {
    status: u16,
    tls_version: Option<TlsVersion>,
    ms: f64,
    #[serde(flatten)]
    extra: Extra<'a>,
}

/// What the newer flags add to `get --json`; absent without them.
#[derive(Serialize)]
struct Extra<'a> {
    /// `-i`: the response headers, names in lower case, repeated ones joined by `, `.
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<BTreeMap<String, String>>,
    /// `-o FILE`: where the body went.
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<&'a str>,
    /// `-o FILE`: how many body bytes were written.
    #[serde(skip_serializing_if = "Option::is_none")]
    body_bytes: Option<u64>,
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

/// The headers as one map: lower-case names, repeated ones joined by `, `, bytes that are not
/// text replaced.
fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        map.entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    map
}

/// Prints one response.
pub fn single(args: &GetArgs, out: &Outcome) {
    let output = args.output.as_ref().map(|p| p.to_string_lossy());
    if args.json {
        let extra = Extra {
            headers: args.include.then(|| header_map(&out.headers)),
            output: output.as_deref(),
            body_bytes: output.as_ref().map(|_| out.body_len),
        };
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
                extra,
            }),
            None => print_json(&PlainJson {
                status: out.status,
                tls_version: None,
                ms: round1(out.ms),
                extra,
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
    if args.include {
        println!("headers:");
        for (name, value) in &out.headers {
            println!("  {name}: {}", String::from_utf8_lossy(value.as_bytes()));
        }
    }
    match output {
        Some(path) => println!("body ({} bytes) written to {path}", out.body_len),
        None => {
            let preview = &out.body[..out.body.len().min(2048)];
            println!("body ({} bytes):", out.body.len());
            println!("{}", String::from_utf8_lossy(preview));
        }
    }
}

/// Prints the `--repeat` summary.
pub fn repeat(args: &GetArgs, stats: &Stats, t: &Tally) {
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
