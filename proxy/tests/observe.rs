//! What operators see: the library's `tracing` events reach the proxy's log on stderr, in the
//! configured format, beside the access line on stdout.

mod proxy_support;

use proxy_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downgrade_attack_logs_the_librarys_error_with_host_and_attempts_in_text_and_json() {
    for format in ["text", "json"] {
        let (server, em) = downgrade_attack().await;
        let proxy = Proxy::start(&[
            "--allow",
            "localhost",
            "--allow-legacy",
            "localhost",
            "--log-format",
            format,
        ])
        .await;
        let port = em.addr().port();
        let (status, headers, body) =
            curl_via(&proxy, &[], &format!("http://localhost:{port}/")).await;
        assert_eq!(status, 502, "{body}");
        assert_eq!(headers["x-tls-fallback-error"], "downgrade_detected");
        let event = wait_line(&proxy.stderr, "downgrade signal")
            .await
            .unwrap_or_else(|| panic!("{format}: no event: {:?}", proxy.stderr.lock().unwrap()));
        let host = format!("localhost:{port}");
        match format {
            "text" => {
                assert!(event.contains(" ERROR "), "{event}");
                assert!(event.contains(&format!("host={host}")), "{event}");
                assert!(event.contains("attempts="), "{event}");
                assert!(
                    event.contains("tls10-legacy"),
                    "the attempts list the rungs: {event}"
                );
            }
            _ => {
                let v: serde_json::Value = serde_json::from_str(&event)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {event}"));
                assert_eq!(v["level"], "ERROR", "{v}");
                assert_eq!(v["host"], host.as_str(), "{v}");
                assert!(
                    v["attempts"]
                        .as_str()
                        .unwrap_or("")
                        .contains("tls10-legacy"),
                    "{v}"
                );
                assert!(
                    v["target"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("tls_fallback"),
                    "{v}"
                );
            }
        }
        // The access line on stdout, as before.
        let line = wait_line(&proxy.stdout, &host).await.expect("access line");
        assert!(line.contains("502"), "{line}");
        assert_eq!(server.requests("GET"), 0, "nothing reached the server");
    }
}
