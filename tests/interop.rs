//! Interop with TLS stacks that are not OpenSSL-in-this-process: GnuTLS's `gnutls-serv` and
//! nginx (Debian's, on the system OpenSSL 3.0), each behind the test kit's intolerance emulator.
//! What is checked: the negotiated version, the hellos on the wire (version offered, SCSV), and
//! that an independent server honours TLS_FALLBACK_SCSV.
//!
//! `.ci/run` installs `gnutls-bin` and `nginx`; when a binary is missing the test says so loudly
//! and returns. Servers run as child processes owned by a guard that kills them on drop, so
//! they die even when an assertion fails; every wait is bounded.

mod common;

use common::servers::{gnutls_serv, nginx};
use common::*;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tls_fallback::testkit::{Emulator, Rule};
use tls_fallback::{ErrorKind, FallbackLayer, TlsVersion};
use tower_layer::Layer;
use TlsVersion::*;

fn fresh_client(layer: &FallbackLayer) -> TestClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build::<_, Full<Bytes>>(layer.layer(FallbackLayer::http_connector()))
}

/// The emulator in front of a child server on `port`.
async fn gateway(port: u16, rules: Vec<Rule>) -> Emulator {
    Emulator::start(([127, 0, 0, 1], port).into(), rules)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gnutls_tls10_only_behind_close_above_tls10_is_reached_on_tls10_with_scsv() {
    let dir = tempfile::tempdir().unwrap();
    let Some((server, port)) = gnutls_serv(dir.path(), "NORMAL:-VERS-ALL:+VERS-TLS1.0").await
    else {
        return;
    };
    let em = gateway(port, vec![Rule::close_above(Tls1_0)]).await;
    let layer = builder().allow_legacy("localhost").build().unwrap();
    let client = fresh_client(&layer);
    let (res, body) = get(&client, &em.url())
        .await
        .unwrap_or_else(|e| panic!("{}\n{}", tls_error(&e), server.log()));
    assert_eq!(res.status(), 200);
    assert!(
        String::from_utf8_lossy(&body).contains("GnuTLS"),
        "{body:?}"
    );
    let info = tls(&res);
    assert_eq!(info.version, Tls1_0);
    assert_eq!(&*info.profile, "tls10-legacy");
    assert_eq!(ladder_seen(&em), LEGACY_WALK);
    // Learned: the next connection is one TLS 1.0 hello, still with SCSV.
    em.clear();
    let (res, _) = get(&client, &em.url()).await.unwrap();
    assert_eq!((tls(&res).version, tls(&res).from_cache), (Tls1_0, true));
    assert_eq!(ladder_seen(&em), [(Some(Tls1_0), true)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gnutls_tls12_only_behind_close_above_tls12_is_reached_on_tls12_with_scsv() {
    let dir = tempfile::tempdir().unwrap();
    let Some((server, port)) = gnutls_serv(dir.path(), "NORMAL:-VERS-ALL:+VERS-TLS1.2").await
    else {
        return;
    };
    let em = gateway(port, vec![Rule::close_above(Tls1_2)]).await;
    let layer = builder().build().unwrap();
    let (res, _) = get(&fresh_client(&layer), &em.url())
        .await
        .unwrap_or_else(|e| panic!("{}\n{}", tls_error(&e), server.log()));
    let info = tls(&res);
    assert_eq!(info.version, Tls1_2);
    assert_eq!(&*info.profile, "tls12");
    assert_eq!(
        ladder_seen(&em),
        [
            (Some(Tls1_3), false),
            (Some(Tls1_3), true),
            (Some(Tls1_2), true)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gnutls_tls12_only_without_intolerance_answers_the_modern_hello_with_tls12() {
    let dir = tempfile::tempdir().unwrap();
    let Some((server, port)) = gnutls_serv(dir.path(), "NORMAL:-VERS-ALL:+VERS-TLS1.2").await
    else {
        return;
    };
    let em = gateway(port, vec![]).await;
    let layer = builder().build().unwrap();
    let (res, _) = get(&fresh_client(&layer), &em.url())
        .await
        .unwrap_or_else(|e| panic!("{}\n{}", tls_error(&e), server.log()));
    assert_eq!((tls(&res).version, tls(&res).handshakes()), (Tls1_2, 1));
    assert_eq!(ladder_seen(&em), [(Some(Tls1_3), false)]);
    assert!(
        layer.stats().hosts.is_empty(),
        "no fallback, nothing learned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gnutls_with_tls13_refuses_the_scsv_fallback_an_attacker_forces() {
    let dir = tempfile::tempdir().unwrap();
    let Some((server, port)) =
        gnutls_serv(dir.path(), "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2").await
    else {
        return;
    };
    let em = gateway(port, vec![Rule::reset_above(Tls1_2)]).await;
    let layer = builder().allow_legacy("*").build().unwrap();
    let err = tls_error(&get(&fresh_client(&layer), &em.url()).await.unwrap_err());
    assert_eq!(
        err.kind(),
        ErrorKind::DowngradeDetected,
        "{err}\n{}",
        server.log()
    );
    let outcomes: Vec<String> = err.attempts().iter().map(|a| a.outcome.short()).collect();
    assert_eq!(outcomes, ["reset", "reset", "alert:86"]);
    assert_eq!(
        ladder_seen(&em),
        [
            (Some(Tls1_3), false),
            (Some(Tls1_3), true),
            (Some(Tls1_2), true)
        ]
    );
    assert!(layer.stats().hosts.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_tls10_and_11_behind_close_above_tls11_is_reached_on_tls11() {
    let dir = tempfile::tempdir().unwrap();
    let Some((server, port)) = nginx(dir.path(), "TLSv1 TLSv1.1").await else {
        return;
    };
    let em = gateway(port, vec![Rule::close_above(Tls1_1)]).await;
    let layer = builder().allow_legacy("localhost").build().unwrap();
    let (res, body) = get(&fresh_client(&layer), &em.url())
        .await
        .unwrap_or_else(|e| panic!("{}\n{}", tls_error(&e), server.log()));
    assert_eq!(res.status(), 200);
    assert_eq!(&body[..], b"hello from nginx\n");
    let info = tls(&res);
    assert_eq!(info.version, Tls1_1);
    assert_eq!(&*info.profile, "tls11-legacy");
    assert_eq!(ladder_seen(&em), LEGACY_WALK[..5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_tls10_and_11_behind_close_above_tls10_refuses_the_tls10_fallback() {
    // nginx can do TLS 1.1, so the gateway closing everything above 1.0 is indistinguishable
    // from an attacker: the TLS 1.0 hello carries SCSV and nginx answers inappropriate_fallback.
    let dir = tempfile::tempdir().unwrap();
    let Some((server, port)) = nginx(dir.path(), "TLSv1 TLSv1.1").await else {
        return;
    };
    let em = gateway(port, vec![Rule::close_above(Tls1_0)]).await;
    let layer = builder().allow_legacy("localhost").build().unwrap();
    let err = tls_error(&get(&fresh_client(&layer), &em.url()).await.unwrap_err());
    assert_eq!(
        err.kind(),
        ErrorKind::DowngradeDetected,
        "{err}\n{}",
        server.log()
    );
    assert_eq!(ladder_seen(&em), LEGACY_WALK);
    assert_eq!(
        err.attempts().last().map(|a| a.outcome.short()).as_deref(),
        Some("alert:86")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_tls10_only_behind_close_above_tls10_is_reached_on_tls10() {
    let dir = tempfile::tempdir().unwrap();
    let Some((server, port)) = nginx(dir.path(), "TLSv1").await else {
        return;
    };
    let em = gateway(port, vec![Rule::close_above(Tls1_0)]).await;
    let layer = builder().allow_legacy("localhost").build().unwrap();
    let (res, body) = get(&fresh_client(&layer), &em.url())
        .await
        .unwrap_or_else(|e| panic!("{}\n{}", tls_error(&e), server.log()));
    assert_eq!(&body[..], b"hello from nginx\n");
    assert_eq!(tls(&res).version, Tls1_0);
    assert_eq!(ladder_seen(&em), LEGACY_WALK);
}
