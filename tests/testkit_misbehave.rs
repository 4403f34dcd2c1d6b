//! The test kit's misbehaving servers do what they say, seen through the fallback layer.

mod common;

use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::Bytes;
use hyper::Request;
use tls_fallback::testkit::{MisbehavingServer, Misbehaviour};

#[tokio::test]
async fn no_answer_server_reads_the_request_and_stays_silent() {
    let server = MisbehavingServer::start(Misbehaviour::NoAnswer)
        .await
        .unwrap();
    let client = common::client(&common::builder().build().unwrap());
    let req = Request::post(server.url() + "pay")
        .header("x-test", "1")
        .body(http_body_util::Full::new(Bytes::from_static(b"{\"a\":1}")))
        .unwrap();
    let res = tokio::time::timeout(Duration::from_millis(800), client.request(req)).await;
    assert!(res.is_err(), "no answer expected: {res:?}");
    let seen = server.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].uri.as_str()),
        ("POST", "/pay")
    );
    assert_eq!(seen[0].headers["x-test"], "1");
    assert_eq!(&seen[0].body[..], b"{\"a\":1}");
    assert_eq!(server.handshakes(), 1);
}

#[tokio::test]
async fn trickle_sends_the_announced_length_one_byte_per_pause() {
    let how = Misbehaviour::Trickle {
        every: Duration::from_millis(40),
        len: 5,
    };
    let server = MisbehavingServer::start(how).await.unwrap();
    let client = common::client(&common::builder().build().unwrap());
    let start = Instant::now();
    let (res, body) = common::get(&client, &server.url()).await.unwrap();
    assert_eq!(res.headers()["content-length"], "5");
    assert_eq!(&body[..], b".....");
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn endless_body_keeps_coming() {
    let server = MisbehavingServer::start(Misbehaviour::EndlessBody)
        .await
        .unwrap();
    let client = common::client(&common::builder().build().unwrap());
    let req = Request::get(server.url())
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("headers within 10 s")
        .unwrap();
    let mut body = res.into_body();
    let mut got = 0usize;
    // Bounded: 4 MiB of an endless body, or 10 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    while got < 4 << 20 && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), body.frame()).await {
            Ok(Some(Ok(f))) => got += f.data_ref().map_or(0, |d| d.len()),
            other => panic!("body ended or failed after {got} bytes: {other:?}"),
        }
    }
    assert!(got >= 4 << 20, "{got}");
}

#[tokio::test]
async fn reply_sends_status_headers_and_body() {
    let server = MisbehavingServer::start(Misbehaviour::redirect(302, "/elsewhere"))
        .await
        .unwrap();
    let client = common::client(&common::builder().build().unwrap());
    let (res, body) = common::get(&client, &server.url()).await.unwrap();
    assert_eq!(res.status(), 302);
    assert_eq!(res.headers()["location"], "/elsewhere");
    assert!(body.is_empty());
}
