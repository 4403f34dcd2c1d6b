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
            if let Some(why) = why_it_won(&t.attempts, &args.url) {
                println!("why: {why}");
            }
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

/// In words, why the walk ended on a rung below the first: the same story `probe` tells.
/// `None` when the first hello worked (or nothing failed).
fn why_it_won(attempts: &[Attempt], url: &str) -> Option<String> {
    let (won, failed) = attempts.split_last()?;
    let first = failed.first()?;
    let host = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(['/', '?', '#']).next())
        .unwrap_or(url);
    if matches!(first.outcome, tls_fallback::Outcome::Refused { .. }) {
        return Some(format!(
            "OpenSSL here refused the server's answer to {}'s hello (see its line), and {} (up \
             to TLS {}, with TLS_FALLBACK_SCSV) worked: {host} speaks only an older TLS or \
             older crypto, which legacy rungs allow; the server is old, not a box in the path.",
            first.profile,
            won.profile,
            won.max_version.as_str()
        ));
    }
    let how = match first.outcome.short().as_str() {
        "closed" => "closed".to_string(),
        "reset" => "reset".to_string(),
        "timeout" | "stalled" => "left unanswered".to_string(),
        other => format!("answered with {other}"),
    };
    Some(if won.max_version == first.max_version {
        format!(
            "the full {} hello ({}) was {how}, and {}'s compact hello (under 256 bytes, few suites, \
             one key share) worked: the box in front of {host} drops long ClientHellos, or \
             cannot reassemble one that spans two TCP segments, as it would a post-quantum key \
             share. TLS {} kept: no version loss. `tls-fallback probe {host}` tells size from \
             reassembly and writes the report for the vendor.",
            first.max_version.as_str(),
            first.profile,
            won.profile,
            won.max_version.as_str()
        )
    } else {
        format!(
            "hellos offering TLS {} were {how}, and {} (up to TLS {}, with TLS_FALLBACK_SCSV) \
             worked: the box in front of {host} is intolerant to the newer version. \
             `tls-fallback probe {host}` writes the report for the vendor.",
            first.max_version.as_str(),
            won.profile,
            won.max_version.as_str()
        )
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tls_fallback::Outcome;

    fn attempt(profile: &str, v: TlsVersion, outcome: Outcome) -> Attempt {
        Attempt {
            profile: profile.into(),
            max_version: v,
            scsv: profile != "modern",
            outcome,
            elapsed: Duration::from_millis(5),
        }
    }

    /// A win on the compact rung tells the same story as `probe`: a long-hello box, no
    /// version loss; a win lower down names the version; a first-hello win says nothing.
    #[test]
    fn why_it_won_follows_the_attempts() {
        use TlsVersion::*;
        let url = "https://pay.example:8443/x";
        let compact = [
            attempt("modern", Tls1_3, Outcome::Reset),
            attempt("modern-compact", Tls1_3, Outcome::Ok),
        ];
        let why = why_it_won(&compact, url).unwrap();
        assert!(
            why.contains("the full 1.3 hello (modern) was reset"),
            "{why}"
        );
        assert!(why.contains("drops long ClientHellos"), "{why}");
        assert!(why.contains("TLS 1.3 kept: no version loss"), "{why}");
        assert!(why.contains("tls-fallback probe pay.example:8443"), "{why}");
        let lower = [
            attempt("modern", Tls1_3, Outcome::Closed),
            attempt("modern-compact", Tls1_3, Outcome::Closed),
            attempt("tls12", Tls1_2, Outcome::Ok),
        ];
        let why = why_it_won(&lower, url).unwrap();
        assert!(why.contains("hellos offering TLS 1.3 were closed"), "{why}");
        assert!(why.contains("tls12 (up to TLS 1.2"), "{why}");
        assert_eq!(
            why_it_won(&[attempt("modern", Tls1_3, Outcome::Ok)], url),
            None
        );
        assert_eq!(why_it_won(&[], url), None);
    }
}
