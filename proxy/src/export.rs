//! Learned decisions written out as static config for the tools operators already run:
//! nginx, HAProxy, Envoy, or JSON. Pure text in, text out: no sockets, no files.
//!
//! Only confirmed decisions go out; a provisional one is named in a comment and left out. A
//! rung's TLS versions and whether it needs legacy crypto come from the library's own
//! [`Profile`]s, never from a table here. A compact rung (a short hello) cannot be expressed by
//! any of the three tools: it is exported as its version range, and the comment says so.

use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tls_fallback::{Decision, HostKey, HostStats, Ladder, Profile, TlsVersion};

/// One decision as the library stores it (the decision file's fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The normalised host name or IP literal.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The rung's index, where known (`/decisions` does not carry it).
    #[serde(default)]
    pub rung: Option<u8>,
    /// The rung's profile name (`tls10-legacy`, `modern-compact`, ...).
    pub profile: String,
    /// Why the rungs above it failed.
    pub reason: String,
    /// When it was learned (ms since the Unix epoch).
    pub learned_at_ms: u64,
    /// Connections that started from it.
    #[serde(default)]
    pub uses: u64,
    /// Seen once, not yet learned: never exported as config.
    #[serde(default)]
    pub provisional: bool,
}

impl Entry {
    /// An entry from a decision-file or store pair.
    pub fn from_decision(key: &HostKey, d: &Decision) -> Entry {
        Entry {
            host: key.host().to_string(),
            port: key.port,
            rung: Some(d.rung),
            profile: d.profile.to_string(),
            reason: d.reason.to_string(),
            learned_at_ms: d.learned_at_ms,
            uses: d.uses.load(std::sync::atomic::Ordering::Relaxed),
            provisional: d.provisional,
        }
    }

    /// An entry from a layer's stats (`host` is `host:port` there); `None` if it has no port.
    pub fn from_stats(h: &HostStats) -> Option<Entry> {
        let (host, port) = h.host.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let key = HostKey::new(host, port.parse().ok()?);
        Some(Entry {
            host: key.host().to_string(),
            port: key.port,
            rung: None,
            profile: h.profile.clone(),
            reason: h.reason.clone(),
            learned_at_ms: h.learned_at_ms,
            uses: h.uses,
            provisional: h.provisional,
        })
    }
}

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `server` blocks to include inside `http {}`.
    Nginx,
    /// `backend` sections.
    Haproxy,
    /// A YAML `clusters:` list.
    Envoy,
    /// The entries as JSON.
    Json,
}

impl Format {
    /// The names accepted by [`Format::parse`], for error messages.
    pub const NAMES: &'static str = "nginx, haproxy, envoy, json";

    /// `nginx`, `haproxy`, `envoy` or `json`.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "nginx" => Some(Format::Nginx),
            "haproxy" => Some(Format::Haproxy),
            "envoy" => Some(Format::Envoy),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// Settings the exported text needs that decisions do not carry.
#[derive(Debug, Clone)]
pub struct Options {
    /// nginx: the first loopback port; host `i` (in sorted order) listens on `base_port + i`.
    pub base_port: u16,
    /// The CA bundle upstream certificates are verified against.
    pub ca_file: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            base_port: 18443,
            ca_file: "/etc/ssl/certs/ca-certificates.crt".into(),
        }
    }
}

/// What a rung allows, read from the library's profile of that name.
struct Range {
    min: TlsVersion,
    max: TlsVersion,
    /// The legacy cipher list (security level 0 appended by each writer), if the rung needs it.
    legacy_ciphers: Option<String>,
    /// The rung only reshapes the hello, which none of the tools can do.
    compact: bool,
}

/// The profile named `name` in the default ladder, or a pin (`pinned-tls10` ...).
fn profile(name: &str) -> Option<Profile> {
    if let Some(p) = Ladder::default().iter().find(|p| p.name() == name) {
        return Some(p.clone());
    }
    TlsVersion::ALL
        .into_iter()
        .map(Profile::exactly)
        .find(|p| p.name() == name)
}

fn range(name: &str) -> Option<Range> {
    let p = profile(name)?;
    let max = p.max_version();
    // The connector offers down to the host's floor; a learned rung pins its own version as
    // the floor only where it needs legacy crypto (a modern gateway must not be talked down).
    let min = p.min_version_opt().unwrap_or(if max.is_legacy() {
        max
    } else {
        TlsVersion::Tls1_2.min(max)
    });
    // Without the profile's own security level: each writer appends `@SECLEVEL=0` its way.
    let legacy_ciphers = p.is_legacy().then(|| {
        let list = p.cipher_list_opt().unwrap_or("DEFAULT");
        let kept: Vec<&str> = list
            .split(':')
            .filter(|c| !c.is_empty() && !c.starts_with("@SECLEVEL"))
            .collect();
        kept.join(":")
    });
    Some(Range {
        min,
        max,
        legacy_ciphers,
        compact: !p.has_padding() && !p.has_alpn(),
    })
}

/// The decisions as `format` text, hosts sorted by `host:port`.
pub fn export(entries: &[Entry], format: Format, opts: &Options) -> String {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
    if format == Format::Json {
        let all: Vec<&Entry> = sorted;
        return serde_json::to_string_pretty(&all).unwrap_or_default() + "\n";
    }
    let c = "#";
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{c} tls-fallback: learned TLS settings, exported. Only confirmed decisions are here."
    );
    if format == Format::Nginx {
        let _ = writeln!(
            out,
            "{c} Include inside http {{}}. Host i (sorted) listens on 127.0.0.1:{} + i.",
            opts.base_port
        );
    }
    if format == Format::Envoy {
        out.push_str("clusters:\n");
    }
    let mut index: u32 = 0;
    for e in sorted {
        if e.provisional {
            let _ = writeln!(
                out,
                "{c} left out (provisional, not yet confirmed): {}:{} {}",
                e.host, e.port, e.profile
            );
            continue;
        }
        let Some(r) = range(&e.profile) else {
            let _ = writeln!(
                out,
                "{c} left out (unknown profile {:?}): {}:{}",
                one_line(&e.profile),
                e.host,
                e.port
            );
            continue;
        };
        if !safe_host(&e.host) {
            let _ = writeln!(out, "{c} left out (host name not safe to write as config)");
            continue;
        }
        comment(&mut out, e, &r);
        match format {
            Format::Nginx => {
                let port = u32::from(opts.base_port) + index;
                if port > u32::from(u16::MAX) {
                    let _ = writeln!(out, "# left out: no loopback port left");
                    continue;
                }
                nginx(&mut out, e, &r, port, opts);
            }
            Format::Haproxy => haproxy(&mut out, e, &r, opts),
            Format::Envoy => envoy(&mut out, e, &r, opts),
            Format::Json => {}
        }
        index += 1;
    }
    out
}

/// The host as written into config: names and IP literals only (no quotes, spaces, braces).
fn safe_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'))
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn rfc3339(ms: u64) -> String {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .filter(|t| *t < UNIX_EPOCH + Duration::from_secs(253_402_300_799))
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn comment(out: &mut String, e: &Entry, r: &Range) {
    let rung = e.rung.map(|n| format!("rung {n}, ")).unwrap_or_default();
    let _ = writeln!(
        out,
        "\n# {}:{}: {rung}{} (TLS {}..{}), learned {}, used {} times; why: {}",
        e.host,
        e.port,
        e.profile,
        r.min.as_str(),
        r.max.as_str(),
        rfc3339(e.learned_at_ms),
        e.uses,
        one_line(&e.reason)
    );
    if r.compact {
        let _ = writeln!(
            out,
            "# {} sends a compact hello; this tool cannot, so only its version range is kept.",
            e.profile
        );
    }
    if r.legacy_ciphers.is_some() {
        let _ = writeln!(out, "# legacy crypto: security level 0 for this host only.");
    }
}

fn nginx_version(v: TlsVersion) -> &'static str {
    match v {
        TlsVersion::Tls1_0 => "TLSv1",
        TlsVersion::Tls1_1 => "TLSv1.1",
        TlsVersion::Tls1_2 => "TLSv1.2",
        TlsVersion::Tls1_3 => "TLSv1.3",
    }
}

fn nginx(out: &mut String, e: &Entry, r: &Range, port: u32, opts: &Options) {
    let protocols: Vec<&str> = TlsVersion::ALL
        .into_iter()
        .filter(|v| *v >= r.min && *v <= r.max)
        .map(nginx_version)
        .collect();
    let host = bracket(&e.host);
    let _ = writeln!(out, "server {{");
    let _ = writeln!(out, "    listen 127.0.0.1:{port};");
    let _ = writeln!(out, "    location / {{");
    let _ = writeln!(out, "        proxy_pass https://{host}:{};", e.port);
    let _ = writeln!(out, "        proxy_ssl_protocols {};", protocols.join(" "));
    let _ = writeln!(out, "        proxy_ssl_server_name on;");
    let _ = writeln!(out, "        proxy_ssl_name {};", e.host);
    let _ = writeln!(out, "        proxy_ssl_verify on;");
    let _ = writeln!(
        out,
        "        proxy_ssl_trusted_certificate {};",
        opts.ca_file
    );
    if let Some(c) = &r.legacy_ciphers {
        let _ = writeln!(out, "        proxy_ssl_ciphers {c}:@SECLEVEL=0;");
    }
    let _ = writeln!(out, "    }}\n}}");
}

fn haproxy_version(v: TlsVersion) -> &'static str {
    match v {
        TlsVersion::Tls1_0 => "TLSv1.0",
        TlsVersion::Tls1_1 => "TLSv1.1",
        TlsVersion::Tls1_2 => "TLSv1.2",
        TlsVersion::Tls1_3 => "TLSv1.3",
    }
}

/// A name usable as an HAProxy backend or Envoy cluster: `tlsfb_HOST_PORT`.
fn ident(e: &Entry) -> String {
    let h: String = e
        .host
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("tlsfb_{h}_{}", e.port)
}

fn haproxy(out: &mut String, e: &Entry, r: &Range, opts: &Options) {
    let _ = writeln!(out, "backend {}", ident(e));
    // SNI carries names only (RFC 6066); `verifyhost` checks the certificate either way.
    let sni = if is_ip(&e.host) {
        String::new()
    } else {
        format!(" sni str({})", e.host)
    };
    let mut line = format!(
        "    server upstream {}:{} ssl verify required ca-file {} verifyhost {}{sni} ssl-min-ver {} ssl-max-ver {}",
        bracket(&e.host),
        e.port,
        opts.ca_file,
        e.host,
        haproxy_version(r.min),
        haproxy_version(r.max)
    );
    if let Some(c) = &r.legacy_ciphers {
        let _ = write!(line, " ciphers {c}:@SECLEVEL=0");
    }
    let _ = writeln!(out, "{line}");
}

fn envoy_version(v: TlsVersion) -> &'static str {
    match v {
        TlsVersion::Tls1_0 => "TLSv1_0",
        TlsVersion::Tls1_1 => "TLSv1_1",
        TlsVersion::Tls1_2 => "TLSv1_2",
        TlsVersion::Tls1_3 => "TLSv1_3",
    }
}

fn envoy(out: &mut String, e: &Entry, r: &Range, opts: &Options) {
    let _ = writeln!(out, "- name: {}", ident(e));
    let _ = writeln!(out, "  type: LOGICAL_DNS");
    let _ = writeln!(out, "  connect_timeout: 5s");
    let _ = writeln!(out, "  load_assignment:");
    let _ = writeln!(out, "    cluster_name: {}", ident(e));
    let _ = writeln!(out, "    endpoints:");
    let _ = writeln!(out, "    - lb_endpoints:");
    let _ = writeln!(out, "      - endpoint:");
    let _ = writeln!(out, "          address:");
    let _ = writeln!(out, "            socket_address:");
    let _ = writeln!(out, "              address: \"{}\"", e.host);
    let _ = writeln!(out, "              port_value: {}", e.port);
    let _ = writeln!(out, "  transport_socket:");
    let _ = writeln!(out, "    name: envoy.transport_sockets.tls");
    let _ = writeln!(out, "    typed_config:");
    let _ = writeln!(
        out,
        "      \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
    );
    if !is_ip(&e.host) {
        let _ = writeln!(out, "      sni: \"{}\"", e.host);
    }
    let _ = writeln!(out, "      common_tls_context:");
    let _ = writeln!(out, "        tls_params:");
    let _ = writeln!(
        out,
        "          tls_minimum_protocol_version: {}",
        envoy_version(r.min)
    );
    let _ = writeln!(
        out,
        "          tls_maximum_protocol_version: {}",
        envoy_version(r.max)
    );
    if let Some(c) = &r.legacy_ciphers {
        let _ = writeln!(out, "          cipher_suites:");
        // Envoy's BoringSSL refuses a list with a suite it lacks: no DHE, no OpenSSL keywords.
        let boring = c
            .split(':')
            .filter(|s| s.contains('-') && !s.starts_with("DHE-") && !s.starts_with('!'));
        for s in boring {
            let _ = writeln!(out, "          - \"{s}\"");
        }
    }
    let _ = writeln!(out, "        validation_context:");
    let _ = writeln!(out, "          trusted_ca:");
    let _ = writeln!(out, "            filename: \"{}\"", opts.ca_file);
}

fn is_ip(h: &str) -> bool {
    h.parse::<std::net::IpAddr>().is_ok()
}

/// An IPv6 literal in brackets, for `host:port` text.
fn bracket(h: &str) -> String {
    if h.contains(':') {
        format!("[{h}]")
    } else {
        h.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(host: &str, profile: &str, provisional: bool) -> Entry {
        Entry {
            host: host.into(),
            port: 443,
            rung: None,
            profile: profile.into(),
            reason: "modern: closed".into(),
            learned_at_ms: 1_765_000_000_000,
            uses: 3,
            provisional,
        }
    }

    #[test]
    fn legacy_rung_gets_tls10_and_security_level_zero() {
        let out = export(
            &[entry("old.example", "tls10-legacy", false)],
            Format::Nginx,
            &Options::default(),
        );
        assert!(out.contains("proxy_ssl_protocols TLSv1;"), "{out}");
        assert!(out.contains(":@SECLEVEL=0;"), "{out}");
        assert!(out.contains("listen 127.0.0.1:18443;"), "{out}");
        assert!(out.contains("2025-12-06T05:46:40Z"), "{out}");
    }

    #[test]
    fn provisional_decision_is_named_and_left_out() {
        let out = export(
            &[entry("p.example", "modern-compact", true)],
            Format::Haproxy,
            &Options::default(),
        );
        assert!(out.contains("left out (provisional"), "{out}");
        assert!(!out.contains("backend"), "{out}");
    }

    #[test]
    fn compact_tls13_rung_keeps_tls13_and_says_why() {
        let out = export(
            &[entry("c.example", "modern-compact", false)],
            Format::Envoy,
            &Options::default(),
        );
        assert!(
            out.contains("tls_maximum_protocol_version: TLSv1_3"),
            "{out}"
        );
        assert!(out.contains("compact hello"), "{out}");
        assert!(!out.contains("cipher_suites"), "{out}");
    }

    /// A decision file or Redis is untrusted: a reason cannot end the comment and add
    /// directives, and a profile the library does not know is not guessed at.
    #[test]
    fn hostile_reason_or_profile_adds_no_directive() {
        let mut e = entry("ok.example", "tls12", false);
        e.reason = "x\n}\nserver { listen 80; }\n".into();
        let mut unknown = entry("u.example", "evil\nssl_verify off", false);
        unknown.reason = String::new();
        for format in [Format::Nginx, Format::Haproxy, Format::Envoy] {
            let out = export(&[e.clone(), unknown.clone()], format, &Options::default());
            for line in out.lines() {
                assert!(
                    !line.starts_with("server { listen 80") && !line.starts_with("ssl_verify"),
                    "{out}"
                );
            }
            assert!(out.contains("left out (unknown profile"), "{out}");
        }
    }

    #[test]
    fn unsafe_host_is_never_written() {
        let out = export(
            &[entry("a;b{c", "tls12", false)],
            Format::Nginx,
            &Options::default(),
        );
        assert!(!out.contains("a;b{c"), "{out}");
    }
}
