//! The proxy under hostile apps and operators (issue 22's reproduced failures), driven through
//! the built binary with real clients: a reload that must reach kept-alive connections, idle
//! admin connections, the file descriptor limit, unbounded metric labels, a FIFO as the config
//! file, and a large request head in one write.

mod proxy_support;

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use proxy_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A keep-alive HTTP/1.1 connection to the proxy (hyper's client, one TCP connection).
async fn keep_alive(proxy: &Proxy) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// A GET of `url` (absolute form) on `send`'s connection: the status, bounded in time.
async fn status_on(
    send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    url: &str,
) -> u16 {
    let uri: http::Uri = url.parse().unwrap();
    let host = uri.authority().unwrap().to_string();
    let req = http::Request::get(uri)
        .header("host", host)
        .body(Empty::new())
        .unwrap();
    let exchange = async {
        send.ready().await.expect("the connection stays open");
        let res = send.send_request(req).await.expect("an answer");
        let status = res.status().as_u16();
        let _ = res.into_body().collect().await;
        status
    };
    tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .expect("an answer within 20 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_to_the_next_request_of_a_connection_opened_before_it() {
    let echo = Echo::start().await;
    let (proxy, cfg) = Proxy::with_config("allow = [\"localhost\"]\n").await;
    let url = echo.http_url("/echo");
    let mut conn = keep_alive(&proxy).await;
    assert_eq!(status_on(&mut conn, &url).await, 200);
    assert_eq!(status_on(&mut conn, &url).await, 200);
    std::fs::write(&cfg, "allow = [\"gw.example\"]\n").unwrap();
    proxy.signal("HUP");
    assert!(wait_line(&proxy.stderr, "SIGHUP: reloaded").await.is_some());
    let before = echo
        .state
        .requests
        .load(std::sync::atomic::Ordering::SeqCst);
    // The same TCP connection: the new allow-list holds for it too.
    assert_eq!(status_on(&mut conn, &url).await, 403);
    assert_eq!(status_on(&mut keep_alive(&proxy).await, &url).await, 403);
    let after = echo
        .state
        .requests
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        before, after,
        "nothing reached the upstream after the reload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_admin_connections_are_capped_and_timed_out_and_the_app_port_keeps_serving() {
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let wrapper = ["prlimit", "--nofile=256:256", "--"];
    let proxy = Proxy::start_wrapped(dir, &wrapper, &["--allow", "localhost"]).await;
    // 300 idle connections to the admin port, more than the proxy has descriptors for; the
    // first is accepted first. Those the proxy neither accepts nor queues wait in the
    // client's connect (2 s here).
    let mut first = TcpStream::connect(proxy.admin).await.expect("connect");
    let crowd: Vec<_> = (0..299)
        .map(|_| {
            let admin = proxy.admin;
            tokio::spawn(tokio::time::timeout(
                Duration::from_secs(2),
                TcpStream::connect(admin),
            ))
        })
        .collect();
    let mut idle = Vec::new();
    for c in crowd {
        if let Ok(Ok(Ok(tcp))) = c.await {
            idle.push(tcp);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let url = echo.http_url("/echo");
    for _ in 0..5 {
        assert_eq!(
            curl_via(&proxy, &[], &url).await.0,
            200,
            "the app port serves"
        );
    }
    // An idle admin connection is closed after the admin idle time (10 s).
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(15), first.read(&mut byte)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "closed by the proxy: {closed:?}"
    );
    // Once the crowd is gone, /healthz answers again.
    drop(idle);
    let healthz = async {
        for _ in 0..40 {
            if proxy.admin_get("/healthz").await.0 == 200 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        false
    };
    assert!(healthz.await, "the admin listener recovers");
    let stderr = proxy.stderr.lock().unwrap().join("\n");
    assert!(!stderr.contains("Too many open files"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_descriptor_limit_is_raised_and_max_connections_fits_what_is_left() {
    // A soft limit below the hard one is raised to it.
    let dir = tempfile::tempdir().unwrap();
    let wrapper = ["prlimit", "--nofile=512:4096", "--"];
    let proxy = Proxy::start_wrapped(dir, &wrapper, &["--allow", "localhost"]).await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", proxy.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(line.split_whitespace().nth(3), Some("4096"), "{line}");
    assert!(wait_line(&proxy.stderr, "limit raised from 512 to 4096")
        .await
        .is_some());
    // A hard limit too small for 1024 connections lowers max_connections, and says so.
    let dir = tempfile::tempdir().unwrap();
    let wrapper = ["prlimit", "--nofile=256:256", "--"];
    let args = ["--allow", "localhost", "--workers", "2"];
    let proxy = Proxy::start_wrapped(dir, &wrapper, &args).await;
    let line = wait_line(&proxy.stderr, "max_connections lowered").await;
    let line = line.expect("the lowering is logged");
    assert!(line.contains("from 1024 to 40"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_labels_stay_bounded_however_many_hosts_apps_ask_for() {
    // Every port of 127.0.0.1 is allowed; 130 closed ports asked for, 130 label sets wanted.
    let proxy = Proxy::start(&["--allow", "127.0.0.1", "--handshake-timeout-ms", "2000"]).await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let ports: Vec<u16> = (0..130).map(|_| free_port()).collect();
    let ask = async {
        for port in &ports {
            let req =
                format!("GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
            tcp.write_all(req.as_bytes()).await.unwrap();
            read_head_and_body(&mut tcp).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), ask)
        .await
        .expect("130 refusals within 60 s");
    let (status, metrics) = proxy.admin_get("/metrics").await;
    assert_eq!(status, 200);
    let mut hosts: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("tls_fallback_proxy_requests_total{"))
        .filter_map(|l| l.split("host=\"").nth(1)?.split('"').next())
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    assert!(hosts.contains(&"other"), "{hosts:?}");
    assert_eq!(hosts.len(), 101, "100 hosts and `other`: {hosts:?}");
}

/// Reads one response (head, then a Content-Length body) from `tcp`.
async fn read_head_and_body(tcp: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(tcp.read(&mut byte).await.unwrap(), 1, "the proxy closed");
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    tcp.read_exact(&mut body).await.unwrap();
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_as_the_config_file_is_refused_at_start_and_on_reload_without_blocking() {
    let mkfifo = |p: &std::path::Path| {
        let _ = std::fs::remove_file(p);
        assert!(std::process::Command::new("mkfifo")
            .arg(p)
            .status()
            .unwrap()
            .success());
    };
    // At start: refused at once, exit 2.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("proxy.toml");
    mkfifo(&fifo);
    let (program, prefix) = proxy_command();
    let mut args = prefix.to_vec();
    args.extend(["--config", fifo.to_str().unwrap()]);
    let r = run(program, &args, &[]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("not a regular file"), "{}", r.stderr);
    // On SIGHUP: the reload fails, logged; the proxy keeps serving and still stops on SIGTERM.
    let (mut proxy, cfg) = Proxy::with_config("allow = [\"localhost\"]\n").await;
    mkfifo(&cfg);
    proxy.signal("HUP");
    let line = wait_line(&proxy.stderr, "keeping the running configuration").await;
    assert!(line.expect("logged").contains("not a regular file"));
    assert_eq!(proxy.admin_get("/healthz").await.0, 200);
    // A FIFO named as the client certificate: the reload fails at once too (it used to block
    // a thread past the reload's deadline, and with it the exit).
    let fifo = cfg.with_file_name("client.fifo");
    mkfifo(&fifo);
    std::fs::remove_file(&cfg).unwrap(); // the FIFO: a write to it would wait for a reader
    let text = format!("allow = [\"localhost\"]\nclient_cert = {fifo:?}\nclient_key = {fifo:?}\n");
    std::fs::write(&cfg, text).unwrap();
    proxy.signal("HUP");
    let line = wait_line(&proxy.stderr, "client.fifo").await;
    let line = line.unwrap_or_else(|| panic!("{:?}", proxy.stderr.lock().unwrap()));
    assert!(line.contains("not a regular file"), "{line}");
    proxy.signal("TERM");
    assert_eq!(proxy.exit_code(10).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_past_max_header_bytes_is_431_however_it_arrives() {
    let echo = Echo::start().await;
    let proxy = Proxy::start(&["--allow", "localhost"]).await;
    let url = echo.http_url("/echo");
    // (bytes of one header, the status), each head sent in one write
    for (size, want) in [(60_000, "200"), (70_000, "431"), (110_000, "431")] {
        let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
        let big = "a".repeat(size);
        let req = format!(
            "GET {url} HTTP/1.1\r\nHost: {}\r\nX-Big: {big}\r\nConnection: close\r\n\r\n",
            url.trim_start_matches("http://").trim_end_matches("/echo")
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut out));
        let _ = read.await;
        let out = String::from_utf8_lossy(&out);
        let status = out.split(' ').nth(1).unwrap_or("none");
        assert_eq!(
            status,
            want,
            "{size} bytes: {}",
            out.lines().next().unwrap_or("")
        );
    }
}

/// Row 4: an h2 upstream that rotates its connections with a graceful GOAWAY (nginx
/// `keepalive_requests`) refuses the streams above the last one it takes. Those never reached
/// it (RFC 9113 section 8.7): the proxy sends them again, and nothing is processed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_an_h2_upstream_refused_with_goaway_are_sent_again_and_none_twice() {
    for keepalive_requests in [1, 100] {
        let nginx = NginxH2::start(keepalive_requests).await;
        let proxy = Proxy::start(&["--allow", "localhost"]).await;
        let client = reqwest::Client::builder()
            .proxy(reqwest::Proxy::http(proxy.url()).unwrap())
            .build()
            .unwrap();
        let url = format!("http://localhost:{}/pay", nginx.port);
        let (loops, each) = (16, 40);
        let tasks: Vec<_> = (0..loops)
            .map(|_| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    let mut statuses = Vec::new();
                    for _ in 0..each {
                        let r = client.post(&url).body("amount=10").send().await.unwrap();
                        let status = r.status().as_u16();
                        let body = r.text().await.unwrap();
                        statuses.push((status, body));
                    }
                    statuses
                })
            })
            .collect();
        let mut failed = Vec::new();
        for t in tasks {
            let answers = tokio::time::timeout(Duration::from_secs(120), t)
                .await
                .expect("640 POSTs within 2 minutes")
                .unwrap();
            failed.extend(answers.into_iter().filter(|(s, _)| *s != 200));
        }
        let sent = loops * each;
        assert!(
            failed.is_empty(),
            "keepalive_requests {keepalive_requests}: {} of {sent} failed, first: {:?}",
            failed.len(),
            failed.first()
        );
        assert_eq!(
            nginx.processed("POST"),
            sent,
            "keepalive_requests {keepalive_requests}: each POST processed exactly once"
        );
    }
}

/// A client of the proxy that asks for `url` (absolute form) and then reads nothing, with a
/// small receive buffer so that the kernel holds little of the answer for it.
async fn stalled_reader(proxy: &Proxy, url: &str) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut tcp = sock.connect(proxy.addr).await.unwrap();
    let host = url.split('/').nth(2).unwrap();
    let head = format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp
}

/// Row 1: apps that stop reading large responses from an h2 upstream. Each of their streams
/// holds at most its window (256 KiB) of the shared connection's (16 MiB), so the other apps'
/// responses on that connection keep coming (with hyper's defaults, 2 MiB of 5 MiB, every
/// other app waited until the stalled ones hung up); and a stream its app reads nothing of for
/// the idle timeout is reset, its response cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_that_stop_reading_h2_responses_neither_stall_the_others_nor_hold_their_stream() {
    let nginx = NginxH2::start(1000).await;
    let small = format!("http://localhost:{}/pay", nginx.port);
    let big = format!("http://localhost:{}/big", nginx.port);
    // The default idle timeout (60 s): the windows alone keep the others going.
    let proxy = Proxy::start(&["--allow", "localhost"]).await;
    let (status, _, _) = curl_via(&proxy, &[], &small).await;
    assert_eq!(status, 200, "the shared h2 connection is open");
    let mut stalled = Vec::new();
    for _ in 0..6 {
        stalled.push(stalled_reader(&proxy, &big).await);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let started = std::time::Instant::now();
        let (status, _, body) = curl_via(&proxy, &["--max-time", "10"], &small).await;
        assert_eq!((status, body.as_str()), (200, "paid\n"));
        slowest = slowest.max(started.elapsed());
    }
    eprintln!("the slowest of 10 small requests beside 6 stalled readers: {slowest:?}");
    assert!(
        slowest < Duration::from_secs(2),
        "another app waited {slowest:?} behind the stalled readers"
    );
    drop(stalled);
    // A short idle timeout: a reader that read nothing for it finds its response cut.
    let config = "allow = [\"localhost\"]\n[limits]\nidle_timeout_ms = 2000\n";
    let (proxy, _) = Proxy::with_config(config).await;
    let mut tcp = stalled_reader(&proxy, &big).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the cut response ends within 20 s");
    assert!(
        got.len() < NginxH2::BIG,
        "a stalled reader's response was cut ({} bytes)",
        got.len()
    );
}
