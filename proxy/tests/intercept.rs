//! No code change: apps keep their `https://` URLs, set `HTTPS_PROXY`, trust the local CA that
//! `ca init` made, and reach a legacy gateway through the proxy's interception, driven by
//! clients nobody here wrote (curl, Python `requests`, PHP's curl extension). Asserted on the
//! wire (the emulator's hellos: the ladder, SCSV on every fallback) and on the upstream (each
//! POST arrives once).

mod proxy_support;

use std::path::{Path, PathBuf};

use proxy_support::*;
use tls_fallback::testkit::{Emulator, TlsServer};

/// `tls-fallback-proxy ca init --dir DIR/ca --allow ...`: the CA directory.
async fn ca_init(dir: &Path, allow: &[&str]) -> PathBuf {
    let ca = dir.join("ca");
    let (program, prefix) = proxy_command();
    let mut args: Vec<&str> = prefix.to_vec();
    let ca_text = ca.to_str().unwrap();
    args.extend(["ca", "init", "--dir", ca_text]);
    for a in allow {
        args.extend(["--allow", a]);
    }
    let r = run(program, &args, &[]).await;
    assert_eq!(r.code, 0, "ca init: {}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("update-ca-certificates"), "{}", r.stdout);
    ca
}

/// A proxy intercepting CONNECT to `localhost` (legacy allowed) with a CA made for it.
async fn intercepting(extra: &[&str]) -> (Proxy, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_init(dir.path(), &["localhost"]).await;
    let ca_dir = ca.to_str().unwrap().to_string();
    let mut args = vec![
        "--allow",
        "localhost",
        "--allow-legacy",
        "localhost",
        "--intercept-ca",
        &ca_dir,
    ];
    args.extend_from_slice(extra);
    let proxy = Proxy::start_in(dir, &args).await;
    (proxy, ca.join("ca.pem"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_an_https_url_reaches_a_legacy_gateway_on_tls10_through_interception() {
    let (_server, em) = legacy_gateway().await;
    let (proxy, ca) = intercepting(&[]).await;
    let key = ca.with_file_name("ca-key.pem");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the CA key is private");
    let url = format!("https://localhost:{}/pay", em.addr().port());
    let (status, headers, body) = curl_via(&proxy, &["--cacert", ca.to_str().unwrap()], &url).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("GET over TLSv1"), "{body}");
    assert_eq!(headers["x-tls-fallback-version"], "1.0");
    assert_eq!(headers["x-tls-fallback-profile"], "tls10-legacy");
    // The fallback ran upstream, with SCSV on every fallback hello.
    assert_eq!(ladder_seen(&em), LEGACY_WALK);
    let line = wait_line(&proxy.stdout, "GET localhost:")
        .await
        .expect("access log line for the request inside");
    assert!(line.contains(" 200 ") && line.contains("tls=1.0"), "{line}");
    assert!(
        wait_line(&proxy.stdout, "CONNECT localhost:")
            .await
            .is_some(),
        "the CONNECT has its line"
    );
    // Without the CA, curl refuses the proxy's certificate: interception is not silent.
    let r = curl(&["-sS", "-x", &proxy.url(), &url]).await;
    assert_ne!(
        r.code, 0,
        "curl must refuse a certificate from an untrusted CA"
    );
    assert!(
        wait_line(&proxy.stderr, "does the app trust the interception CA")
            .await
            .is_some(),
        "the proxy says why the app's handshake failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_requests_posts_to_an_https_url_once_through_interception() {
    let (server, em) = legacy_gateway().await;
    let (proxy, ca) = intercepting(&[]).await;
    let url = format!("https://localhost:{}/charge", em.addr().port());
    let script = "import sys, requests\n\
        s = requests.Session()\n\
        p = {'https': sys.argv[1]}\n\
        for i in range(2):\n\
        \x20   r = s.post(sys.argv[2], data=b'amount=10', proxies=p, verify=sys.argv[3], timeout=30)\n\
        \x20   print(r.status_code, r.headers['x-tls-fallback-version'], r.text.strip())\n";
    let r = run(
        "python3",
        &["-c", script, &proxy.url(), &url, ca.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.matches("200 1.0 hello").count(), 2, "{}", r.stdout);
    assert!(
        r.stdout.contains("POST over TLSv1, 9 body bytes"),
        "{}",
        r.stdout
    );
    assert_eq!(server.requests("POST"), 2, "each POST arrives once");
    assert_eq!(ladder_seen(&em)[..LEGACY_WALK.len()], LEGACY_WALK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn php_curl_posts_to_an_https_url_once_through_interception() {
    if run(
        "php",
        &["-r", "exit(function_exists('curl_init') ? 0 : 3);"],
        &[],
    )
    .await
    .code
        != 0
    {
        panic!("php with the curl extension is needed (apt install php-cli php-curl)");
    }
    let (server, em) = legacy_gateway().await;
    let (proxy, ca) = intercepting(&[]).await;
    let url = format!("https://localhost:{}/charge", em.addr().port());
    // What a payment module does, with the proxy and CA set per handle.
    let script = r#"
        $c = curl_init($argv[1]);
        curl_setopt($c, CURLOPT_PROXY, $argv[2]);
        curl_setopt($c, CURLOPT_CAINFO, $argv[3]);
        curl_setopt($c, CURLOPT_POST, true);
        curl_setopt($c, CURLOPT_POSTFIELDS, 'amount=10');
        curl_setopt($c, CURLOPT_RETURNTRANSFER, true);
        curl_setopt($c, CURLOPT_TIMEOUT, 30);
        $body = curl_exec($c);
        if ($body === false) { fwrite(STDERR, curl_error($c)); exit(1); }
        echo curl_getinfo($c, CURLINFO_RESPONSE_CODE), " ", trim($body), "\n";
    "#;
    let r = run(
        "php",
        &["-r", script, &url, &proxy.url(), ca.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.starts_with("200 hello"), "{}", r.stdout);
    assert!(
        r.stdout.contains("POST over TLSv1, 9 body bytes"),
        "{}",
        r.stdout
    );
    assert_eq!(server.requests("POST"), 1, "the POST arrives once");
    assert_eq!(ladder_seen(&em), LEGACY_WALK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_outside_the_allow_list_is_403_and_a_host_outside_the_ca_is_refused_with_how() {
    let em = Emulator::start("127.0.0.1:9".parse().unwrap(), vec![])
        .await
        .unwrap();
    let port = em.addr().port();
    // The CA covers gw.example only; the allow-list also names localhost.
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_init(dir.path(), &["gw.example"]).await;
    let ca_dir = ca.to_str().unwrap().to_string();
    let args = [
        "--allow",
        "gw.example",
        "--allow",
        "localhost",
        "--intercept-ca",
        &ca_dir,
    ];
    let proxy = Proxy::start_in(dir, &args).await;
    assert!(
        wait_line(&proxy.stderr, "--allow localhost")
            .await
            .is_some(),
        "the start warns about an allowed host the CA cannot certify"
    );
    let outside = format!("https://127.0.0.1:{port}/");
    assert_eq!(connect_status(&proxy, &outside).await, "403");
    let uncovered = format!("https://localhost:{port}/");
    assert_eq!(connect_status(&proxy, &uncovered).await, "403");
    assert_eq!(em.count(), 0, "nothing connected for a refused CONNECT");
    let line = wait_line(&proxy.stderr, "cannot certify localhost")
        .await
        .expect("the refusal is logged");
    assert!(line.contains("ca init"), "it says how to fix it: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_host_gets_bytes_relayed_untouched_and_interception_needs_the_flag() {
    // A modern server the app reaches with its own TLS: the test CA, not the proxy's.
    let server = TlsServer::builder().start().await.unwrap();
    let port = server.addr().port();
    let dir = tempfile::tempdir().unwrap();
    let test_ca = ca_file(&dir);
    let tunnel = format!("localhost:{port}");
    let proxy = Proxy::start_in(dir, &["--allow", "gw.example", "--tunnel", &tunnel]).await;
    let url = format!("https://localhost:{port}/x");
    let (status, headers, body) =
        curl_via(&proxy, &["--cacert", test_ca.to_str().unwrap()], &url).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !headers.contains_key("x-tls-fallback-version"),
        "a tunnel is not intercepted: {headers:?}"
    );
    // An allowed host without --intercept-ca: 405, and the body says what to do.
    let status = connect_status(&proxy, "https://gw.example/").await;
    assert_eq!(status, "405");
}

/// Apps on the host may trust the CA through the system store, which the proxy's upstream
/// check reads too: the CA must still vouch for no upstream. A server whose certificate the
/// interception CA issued (what a thief of its key would run on the path) is a 502
/// certificate error, whatever the trust store holds; and `--tunnel` never opens to every host
/// or to every port of one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interception_ca_vouches_for_no_upstream_and_tunnels_name_their_port() {
    use tls_fallback::testkit::Identity;
    use tls_fallback_proxy::intercept::ca::{self, Ca};
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = ca_init(dir.path(), &["localhost"]).await;
    let ca = Ca::load(&ca_dir).unwrap();
    let key = ca::new_key().unwrap();
    let cert = ca::new_leaf(&ca.issuer, &key, "localhost", std::time::SystemTime::now()).unwrap();
    let thief = TlsServer::builder()
        .identity(Identity { cert, key })
        .start()
        .await
        .unwrap();
    // A trust store that holds the interception CA (root and issuer), as the system's would.
    let bundle = dir.path().join("bundle.pem");
    let mut pem = std::fs::read(ca_dir.join("ca.pem")).unwrap();
    pem.extend(ca.issuer.cert.to_pem().unwrap());
    std::fs::write(&bundle, pem).unwrap();
    let url = format!("http://localhost:{}/pay", thief.addr().port());
    let ca_text = ca_dir.to_str().unwrap().to_string();
    let bundle_text = bundle.to_str().unwrap().to_string();
    // The bundle as the upstream trust of localhost ([[host]] ca_file), without and with
    // interception.
    let host = format!("[[host]]\nmatch = \"localhost\"\nca_file = {bundle_text:?}\n");
    let plain = format!("allow = [\"localhost\"]\n{host}");
    let (without, _) = Proxy::with_config(&plain).await;
    let (status, _, body) = curl_via(&without, &[], &url).await;
    assert_eq!(
        status, 200,
        "the bundle is trusted without interception: {body}"
    );
    let intercepting = format!("allow = [\"localhost\"]\nintercept_ca = {ca_text:?}\n{host}");
    let (with, _) = Proxy::with_config(&intercepting).await;
    let (status, headers, body) = curl_via(&with, &[], &url).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(headers["x-tls-fallback-error"], "certificate", "{body}");
    // --tunnel '*' and a tunnel without a port refuse to start.
    for bad in [["--tunnel", "*"], ["--tunnel", "localhost"]] {
        let (program, prefix) = proxy_command();
        let mut args: Vec<&str> = prefix.to_vec();
        args.extend(["--listen", "127.0.0.1:0"]);
        args.extend(bad);
        let r = run(program, &args, &[]).await;
        assert_eq!(r.code, 2, "{bad:?}: {}", r.stderr);
        assert!(r.stderr.contains("--tunnel"), "{bad:?}: {}", r.stderr);
    }
}
