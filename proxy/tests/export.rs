//! Decisions exported as config are accepted by the real tools: `nginx -t`, `haproxy -c`, and
//! Envoy's v3 field names (Envoy is not in Debian: its YAML is parsed with python3-yaml and
//! checked key by key). A request through the exported nginx config reaches a TLS 1.0 gateway.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tls_fallback::testkit::{Emulator, Rule, TestPki, TlsServer};
use tls_fallback::{FileStore, TlsVersion};
use tls_fallback_proxy::export::{export, Entry, Format, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A decision file with a legacy, a TLS 1.2, a compact TLS 1.3 and a provisional decision,
/// read back with the library's own parser.
fn entries() -> Vec<Entry> {
    let text = r#"{"version":1,"hosts":[
      {"host":"localhost","port":1443,"rung":5,"profile":"tls10-legacy","reason":"modern: closed; tls12: closed","learned_at_ms":1765000000000},
      {"host":"127.0.0.1","port":2443,"rung":2,"profile":"tls12","reason":"modern: closed","learned_at_ms":1765000000000},
      {"host":"127.0.0.2","port":3443,"rung":1,"profile":"modern-compact","reason":"modern: reset","learned_at_ms":1765000000000},
      {"host":"localhost","port":4443,"rung":1,"profile":"modern-compact","reason":"modern: reset","learned_at_ms":1765000000000,"provisional":true}
    ]}"#;
    FileStore::parse(text.as_bytes())
        .unwrap()
        .iter()
        .map(|(k, d)| Entry::from_decision(k, d))
        .collect()
}

fn ca_options(dir: &Path, base_port: u16) -> Options {
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, TestPki::shared().ca_pem()).unwrap();
    Options {
        base_port,
        ca_file: ca.display().to_string(),
    }
}

fn nginx_conf(dir: &Path, include: &str) -> std::path::PathBuf {
    let d = dir.display();
    std::fs::write(dir.join("export.conf"), include).unwrap();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\nevents {{ worker_connections 64; }}\n\
         http {{\n access_log {d}/access.log;\n client_body_temp_path {d}/cb;\n\
         proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/f;\n uwsgi_temp_path {d}/u;\n\
         scgi_temp_path {d}/s;\n include {d}/export.conf;\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

fn nginx_bin() -> &'static str {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("nginx is installed (apt-get install nginx)")
}

#[test]
fn nginx_accepts_the_export_and_provisional_is_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let text = export(&entries(), Format::Nginx, &ca_options(dir.path(), 18443));
    assert!(text.contains("proxy_ssl_protocols TLSv1;"), "{text}");
    assert!(text.contains("proxy_ssl_protocols TLSv1.2;"), "{text}");
    assert!(
        text.contains("proxy_ssl_protocols TLSv1.2 TLSv1.3;"),
        "{text}"
    );
    assert!(text.contains("left out (provisional"), "{text}");
    assert!(!text.contains("https://localhost:4443"), "{text}");
    let conf = nginx_conf(dir.path(), &text);
    let out = Command::new(nginx_bin())
        .arg("-t")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nginx -t: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn haproxy_accepts_the_export() {
    let dir = tempfile::tempdir().unwrap();
    let text = export(&entries(), Format::Haproxy, &ca_options(dir.path(), 18443));
    assert!(
        text.contains("ssl-min-ver TLSv1.0 ssl-max-ver TLSv1.0 ciphers "),
        "{text}"
    );
    assert!(text.contains("@SECLEVEL=0"), "{text}");
    assert!(text.contains("left out (provisional"), "{text}");
    let cfg = format!(
        "global\n    log stdout format raw local0\n\ndefaults\n    mode http\n    \
         timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\n\
         frontend app\n    bind 127.0.0.1:{}\n    default_backend tlsfb_localhost_1443\n\n{text}",
        free_port()
    );
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let bin = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("haproxy is installed (apt-get install haproxy)");
    let out = Command::new(bin)
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "haproxy -c: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The fields Envoy's v3 API documents for a cluster with an upstream TLS transport socket.
const ENVOY_CHECK: &str = r#"
import sys, yaml
doc = yaml.safe_load(sys.stdin)
versions = {"TLS_AUTO", "TLSv1_0", "TLSv1_1", "TLSv1_2", "TLSv1_3"}
clusters = doc["clusters"]
assert len(clusters) == 3, clusters
for c in clusters:
    assert set(c) <= {"name", "type", "connect_timeout", "load_assignment", "transport_socket"}, c
    sa = c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert isinstance(sa["address"], str) and isinstance(sa["port_value"], int)
    ts = c["transport_socket"]
    assert ts["name"] == "envoy.transport_sockets.tls"
    tc = ts["typed_config"]
    assert tc["@type"] == "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
    assert set(tc) <= {"@type", "sni", "common_tls_context"}, tc
    assert tc.get("sni", sa["address"]) == sa["address"]
    ctx = tc["common_tls_context"]
    assert set(ctx) <= {"tls_params", "validation_context"}, ctx
    tp = ctx["tls_params"]
    assert set(tp) <= {"tls_minimum_protocol_version", "tls_maximum_protocol_version", "cipher_suites"}, tp
    assert tp["tls_minimum_protocol_version"] in versions
    assert tp["tls_maximum_protocol_version"] in versions
    assert all(isinstance(s, str) and "-" in s and not s.startswith("DHE-") for s in tp.get("cipher_suites", []))
    assert isinstance(ctx["validation_context"]["trusted_ca"]["filename"], str)
legacy = [c for c in clusters if c["name"] == "tlsfb_localhost_1443"][0]
tp = legacy["transport_socket"]["typed_config"]["common_tls_context"]["tls_params"]
assert tp["tls_maximum_protocol_version"] == "TLSv1_0" and tp["cipher_suites"], tp
print("ok")
"#;

#[test]
fn envoy_export_has_the_v3_fields() {
    let text = export(&entries(), Format::Envoy, &Options::default());
    assert!(text.contains("left out (provisional"), "{text}");
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(ENVOY_CHECK)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is installed");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "envoy check: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn json_export_keeps_every_decision() {
    let text = export(&entries(), Format::Json, &Options::default());
    let back: Vec<Entry> = serde_json::from_str(&text).unwrap();
    assert_eq!(back.len(), 4);
    assert!(back.iter().any(|e| e.provisional));
}

/// The exported nginx block, run by nginx, reaches a TLS 1.0-only server behind a box that
/// closes any newer hello, and the request gets 200.
#[tokio::test]
async fn request_through_exported_nginx_reaches_tls10_gateway() {
    let server = TlsServer::only(TlsVersion::Tls1_0).await.expect("server");
    let em = Emulator::start(server.addr(), vec![Rule::close_above(TlsVersion::Tls1_0)])
        .await
        .expect("emulator");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let entry = Entry {
        host: "localhost".into(),
        port: em.addr().port(),
        rung: Some(5),
        profile: "tls10-legacy".into(),
        reason: "modern: closed".into(),
        learned_at_ms: 1_765_000_000_000,
        uses: 1,
        provisional: false,
    };
    let text = export(&[entry], Format::Nginx, &ca_options(dir.path(), port));
    let conf = nginx_conf(dir.path(), &text);
    let mut child = tokio::process::Command::new(nginx_bin())
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .kill_on_drop(true)
        .spawn()
        .expect("nginx starts");
    let mut conn = None;
    for _ in 0..100 {
        if let Ok(c) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            conn = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut conn = conn.expect("nginx listens");
    conn.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut reply))
        .await
        .expect("nginx answers")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply).to_string();
    let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}\n{log}");
    let offered: Vec<_> = em.hellos().iter().map(|h| h.offered()).collect();
    assert_eq!(
        offered,
        vec![Some(TlsVersion::Tls1_0)],
        "nginx offered TLS 1.0 only"
    );
    child.kill().await.ok();
}
