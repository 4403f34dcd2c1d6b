//! `tls-fallback proxy` runs the proxy package (`tls-fallback-proxy`, tested in its own
//! package): the same flags, the same walk, from the CLI binary.

#[path = "../../proxy/tests/proxy_support/mod.rs"]
mod proxy_support;

use proxy_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_proxy_subcommand_walks_a_legacy_gateway_down_to_tls10() {
    let (_server, em) = legacy_gateway().await;
    assert_eq!(
        proxy_command().1,
        ["proxy"],
        "the CLI's subcommand runs here"
    );
    let proxy = Proxy::start(&["--allow", "localhost", "--allow-legacy", "localhost"]).await;
    let url = format!("http://localhost:{}/pay", em.addr().port());
    let (status, headers, body) = curl_via(&proxy, &[], &url).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-tls-fallback-version"], "1.0");
    assert_eq!(headers["x-tls-fallback-handshakes"], "6");
    assert_eq!(ladder_seen(&em), LEGACY_WALK);
}
