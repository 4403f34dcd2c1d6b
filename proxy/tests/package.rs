//! The Debian package (`cargo deb -p tls-fallback-proxy`, files in `proxy/debian/`): its example
//! config parses as shipped and with every commented setting turned on, and the binary started
//! the way the unit starts it (that config) plus an operator's flags walks a legacy gateway,
//! reloads on SIGHUP and drains on SIGTERM.
//!
//! `.ci/run` runs them against the installed package: `TLS_FALLBACK_PROXY_BIN` names the binary
//! (`/usr/bin/tls-fallback-proxy`), `TLS_FALLBACK_PROXY_EXAMPLE` the config
//! (`/etc/tls-fallback/proxy.toml`); by default they use this build and `debian/proxy.toml`.

mod proxy_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use proxy_support::*;
use tls_fallback_proxy::config::{self, ConfigError, Limits, ProxyArgs, Settings};

/// The example config: `TLS_FALLBACK_PROXY_EXAMPLE`, else the one the package is built from.
fn example() -> PathBuf {
    match std::env::var_os("TLS_FALLBACK_PROXY_EXAMPLE") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("debian/proxy.toml"),
    }
}

/// `--config FILE FLAGS`, resolved as the binary does.
fn resolve(file: &Path, flags: &[&str]) -> Result<Settings, ConfigError> {
    let mut all = vec!["--config", file.to_str().expect("a UTF-8 path")];
    all.extend_from_slice(flags);
    config::resolve(&ProxyArgs::from_flags(all).expect("the flags parse"))
}

/// The example with its commented settings turned on: a `#` directly followed by a key or a
/// table header (`#admin = ...`, `#[limits]`) is a setting; `# ` starts prose, and stays.
fn uncommented(text: &str) -> (String, usize) {
    let mut settings = 0;
    let mut out = String::new();
    for line in text.lines() {
        match line.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '[') => {
                settings += 1;
                out.push_str(rest);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    (out, settings)
}

#[test]
fn the_example_config_as_shipped_allows_nothing_so_the_service_refuses_to_start() {
    // The unit runs `--config /etc/tls-fallback/proxy.toml` alone: until the operator names
    // what it may reach, the proxy exits 2 (RestartPreventExitStatus=2) and is never open.
    match resolve(&example(), &[]) {
        Err(ConfigError::NothingToProxy) => {}
        other => panic!("expected nothing to proxy to, got {other:?}"),
    }
}

#[test]
fn the_example_config_with_an_allow_flag_listens_on_loopback_and_keeps_decisions_in_the_state_directory(
) {
    let s = resolve(&example(), &["--allow", "gateway.example:443"]).expect("the example resolves");
    assert_eq!(s.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(s.admin, None);
    assert_eq!(
        s.layer.cache_file.as_deref(),
        Some(Path::new("/var/lib/tls-fallback/decisions.json")),
        "the unit's StateDirectory"
    );
    assert_eq!(s.routing.allow.len(), 1);
    assert_eq!(s.limits, Limits::default());
}

#[test]
fn every_commented_setting_in_the_example_config_parses_when_uncommented() {
    let path = example();
    let text = std::fs::read_to_string(&path).expect("the example config");
    let (text, settings) = uncommented(&text);
    assert!(settings >= 35, "only {settings} commented settings found");
    let dir = tempfile::tempdir().unwrap();
    let on = dir.path().join("proxy.toml");
    std::fs::write(&on, &text).unwrap();
    let s = resolve(&on, &[]).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(s.admin, Some("127.0.0.1:9090".parse().unwrap()));
    assert_eq!(s.routing.allow.len(), 2);
    assert!(s.routing.upstream.is_some());
    assert!(s.layer.via.is_some() && s.layer.redis.is_some());
    assert_eq!(s.host_layers.len(), 1, "[[host]] with its own ca_file");
    assert_eq!(
        s.intercept_ca.as_deref(),
        Some(Path::new("/var/lib/tls-fallback/ca")),
        "the CA in the unit's StateDirectory"
    );
    assert_eq!(s.routing.tunnel.len(), 1);
    // The values shown commented are the defaults.
    let shipped = resolve(&path, &["--allow", "gateway.example:443"]).unwrap();
    assert_eq!(s.limits, Limits::default());
    assert_eq!(s.request_timeout, shipped.request_timeout);
    assert_eq!(s.layer.handshake_timeout, shipped.layer.handshake_timeout);
    assert_eq!(s.log_format, shipped.log_format);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_on_the_example_config_with_flags_walks_a_legacy_gateway_reloads_and_drains() {
    let (_server, em) = legacy_gateway().await;
    let dir = tempfile::tempdir().unwrap();
    // The example's cache file is the package's state directory: this run keeps its own.
    let cache = dir.path().join("decisions.json");
    let (example, cache_arg) = (example(), cache.to_str().unwrap().to_string());
    let args = [
        "--config",
        example.to_str().unwrap(),
        "--allow",
        "localhost",
        "--allow-legacy",
        "localhost",
        "--cache-file",
        &cache_arg,
    ];
    let mut proxy = Proxy::start_in(dir, &args).await;
    let url = format!("http://localhost:{}/pay", em.addr().port());
    let (status, headers, body) = curl_via(&proxy, &[], &url).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-tls-fallback-version"], "1.0");
    assert_eq!(headers["x-tls-fallback-profile"], "tls10-legacy");
    // On the wire: the whole walk down to TLS 1.0, SCSV on every fallback.
    assert_eq!(ladder_seen(&em), LEGACY_WALK);
    // The decision reaches the file (written in the background, debounced).
    let mut saved = String::new();
    for _ in 0..100 {
        saved = std::fs::read_to_string(&cache).unwrap_or_default();
        if saved.contains("tls10-legacy") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(saved.contains("tls10-legacy"), "decision file: {saved:?}");
    // systemctl reload (SIGHUP) re-reads the example config; the flags still hold.
    proxy.signal("HUP");
    assert!(wait_line(&proxy.stderr, "SIGHUP: reloaded").await.is_some());
    assert_eq!(curl_via(&proxy, &[], &url).await.0, 200);
    // systemctl stop (SIGTERM) drains and exits 0.
    proxy.signal("TERM");
    assert_eq!(proxy.exit_code(10).await, Some(0));
}
