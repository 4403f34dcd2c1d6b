//! `demo`: start seven broken gateways on 127.0.0.1 (real OpenSSL servers behind the test kit's
//! intolerance emulator) and show one connector handling each of them, twice.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tls_fallback::testkit::{Emulator, Rule, TestPki, TlsServer};
use tls_fallback::{Error, FallbackLayer, TlsInfo, TlsVersion};
use tower_layer::Layer;

use crate::get::CliClient;
use crate::output::{print_json, EXIT_FAILED, EXIT_OK};
use crate::DemoArgs;

struct Gateway {
    name: &'static str,
    behaviour: &'static str,
    _server: TlsServer,
    emulator: Emulator,
    expect: Expect,
}

#[derive(Clone, Copy)]
enum Expect {
    /// Both contacts succeed with this version.
    Version(TlsVersion),
    /// The first contact is refused as a downgrade; the second succeeds with this version.
    DowngradeThen(TlsVersion),
}

/// One contact with a gateway.
struct Contact {
    attempts: usize,
    version: Option<TlsVersion>,
    ms: f64,
    error: Option<String>,
}

/// A gateway's two contacts and the verdict.
struct Row<'a> {
    gateway: &'a Gateway,
    first: Contact,
    second: Contact,
    result: String,
}

/// `demo --json`.
#[derive(Serialize)]
struct DemoJson<'a> {
    gateways: Vec<GatewayJson<'a>>,
    ok: bool,
    seconds: f64,
}

#[derive(Serialize)]
struct GatewayJson<'a> {
    gateway: &'a str,
    behaviour: &'a str,
    first: ContactJson<'a>,
    second: ContactJson<'a>,
    hellos_seen: usize,
    result: &'a str,
}

#[derive(Serialize)]
struct ContactJson<'a> {
    attempts: usize,
    version: Option<TlsVersion>,
    ms: f64,
    error: Option<&'a str>,
}

impl<'a> From<&'a Contact> for ContactJson<'a> {
    fn from(c: &'a Contact) -> Self {
        ContactJson {
            attempts: c.attempts,
            version: c.version,
            ms: c.ms.round(),
            error: c.error.as_deref(),
        }
    }
}

async fn contact(client: &CliClient, url: &str) -> Contact {
    let started = Instant::now();
    let req = http::Request::get(url).body(Full::new(Bytes::new()));
    let result = match req {
        Ok(req) => tokio::time::timeout(Duration::from_secs(20), client.request(req)).await,
        Err(e) => {
            return Contact {
                attempts: 0,
                version: None,
                ms: 0.0,
                error: Some(e.to_string()),
            }
        }
    };
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let (attempts, version, error) = match result {
        Ok(Ok(res)) => {
            let info = res.extensions().get::<TlsInfo>().cloned();
            let _ = res.into_body().collect().await;
            (
                info.as_ref().map_or(0, |i| i.handshakes()),
                info.map(|i| i.version),
                None,
            )
        }
        Ok(Err(e)) => match Error::find(&e) {
            Some(t) => (
                t.attempts().len(),
                None,
                Some(t.kind().as_str().to_string()),
            ),
            None => (0, None, Some("http".to_string())),
        },
        Err(_) => (0, None, Some("timeout".to_string())),
    };
    Contact {
        attempts,
        version,
        ms,
        error,
    }
}

async fn gateway(
    name: &'static str,
    behaviour: &'static str,
    server: TlsServer,
    rules: Vec<Rule>,
    expect: Expect,
) -> std::io::Result<Gateway> {
    let emulator = Emulator::start(server.addr(), rules).await?;
    Ok(Gateway {
        name,
        behaviour,
        _server: server,
        emulator,
        expect,
    })
}

/// Runs `demo`: exit 0 when every gateway behaved as expected.
pub async fn run(args: DemoArgs) -> ExitCode {
    match demo(args).await {
        Ok(true) => ExitCode::from(EXIT_OK),
        Ok(false) => ExitCode::from(EXIT_FAILED),
        Err(e) => {
            eprintln!("error: the demo could not start its gateways: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// The seven gateways, in the order the table shows them.
async fn gateways() -> std::io::Result<Vec<Gateway>> {
    use TlsVersion::*;
    Ok(vec![
        gateway(
            "legacy-pay",
            "TLS 1.0 only; closes any hello above 1.0",
            TlsServer::only(Tls1_0).await?,
            vec![Rule::close_above(Tls1_0)],
            Expect::Version(Tls1_0),
        )
        .await?,
        gateway(
            "rst-box",
            "TLS 1.1 only; resets any hello above 1.1",
            TlsServer::only(Tls1_1).await?,
            vec![Rule::reset_above(Tls1_1)],
            Expect::Version(Tls1_1),
        )
        .await?,
        gateway(
            "tls13-hang",
            "TLS 1.2 server; a TLS 1.3 hello hangs",
            TlsServer::only(Tls1_2).await?,
            vec![Rule::hang_above(Tls1_2)],
            Expect::Version(Tls1_2),
        )
        .await?,
        gateway(
            "f5-long-hello",
            "hangs on a 256..511-byte hello",
            TlsServer::modern().await?,
            vec![Rule::f5_hang()],
            Expect::Version(Tls1_3),
        )
        .await?,
        gateway(
            "short-lists",
            "closes hellos with more than 16 suites",
            TlsServer::modern().await?,
            vec![Rule::close_if_ciphers_above(16)],
            Expect::Version(Tls1_3),
        )
        .await?,
        gateway(
            "mitm-downgrade",
            "attacker resets both TLS 1.3 hellos to a modern server",
            TlsServer::modern().await?,
            vec![Rule::reset_first(2)],
            Expect::DowngradeThen(Tls1_3),
        )
        .await?,
        gateway(
            "pinned-legacy",
            "TLS 1.0 only, closes above 1.0; pinned in code",
            TlsServer::only(Tls1_0).await?,
            vec![Rule::close_above(Tls1_0)],
            Expect::Version(Tls1_0),
        )
        .await?,
    ])
}

/// The demo's layer: trusts the test CA, allows legacy for the first two gateways, pins the last.
fn layer(gateways: &[Gateway]) -> Result<FallbackLayer, Error> {
    let port = |i: usize| gateways[i].emulator.addr().port();
    FallbackLayer::builder()
        .system_roots(false)
        .add_root_certificate(TestPki::shared().ca.cert.clone())
        .handshake_timeout(Duration::from_millis(1000))
        // A silent rung is raced by the next one after 300 ms instead of waiting 1 s.
        .stall_timeout(Some(Duration::from_millis(300)))
        .allow_legacy(format!("localhost:{}", port(0)))
        .allow_legacy(format!("localhost:{}", port(1)))
        .pin(format!("localhost:{}", port(6)), TlsVersion::Tls1_0)
        .build()
}

/// Whether a gateway's two contacts went as expected, and the verdict the table shows.
fn verdict(g: &Gateway, first: &Contact, second: &Contact) -> (bool, String) {
    let ok = match g.expect {
        Expect::Version(v) => first.version == Some(v) && second.version == Some(v),
        Expect::DowngradeThen(v) => {
            first.error.as_deref() == Some("downgrade_detected") && second.version == Some(v)
        }
    };
    let result = match (g.expect, &first.error) {
        _ if !ok => "UNEXPECTED".to_string(),
        (Expect::DowngradeThen(_), _) => "attack refused, nothing learned".to_string(),
        (_, _) if g.name == "pinned-legacy" => "pinned: one hello, no SCSV".to_string(),
        // Same version, reshaped hello: SCSV cannot vouch for it, so the second contact
        // walks again and confirms it.
        (_, _) if first.attempts > 1 && second.attempts == first.attempts => {
            "reshaped hello: confirmed on 2nd contact, learned from the 3rd".to_string()
        }
        (_, _) if first.attempts > 1 => format!(
            "learned: {} hello(s) saved per connection",
            first.attempts - second.attempts
        ),
        _ => "no fallback needed".to_string(),
    };
    (ok, result)
}

async fn demo(args: DemoArgs) -> std::io::Result<bool> {
    let started = Instant::now();
    let gateways = gateways().await?;
    let layer = match layer(&gateways) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(false);
        }
    };
    // No pooling: the second contact opens a new connection, so the cache is what helps.
    let client: CliClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(layer.layer(tls_fallback::outbound::ViaConnector::direct()));

    let mut rows = Vec::new();
    let mut all_ok = true;
    for g in &gateways {
        let url = g.emulator.url();
        let first = contact(&client, &url).await;
        let second = contact(&client, &url).await;
        let (ok, result) = verdict(g, &first, &second);
        all_ok &= ok;
        rows.push(Row {
            gateway: g,
            first,
            second,
            result,
        });
    }
    let elapsed = started.elapsed();
    if args.json {
        print_json(&DemoJson {
            gateways: rows.iter().map(row_json).collect(),
            ok: all_ok,
            seconds: elapsed.as_secs_f64(),
        });
    } else {
        print_table(&rows, &layer, &gateways, elapsed);
        if !all_ok {
            eprintln!("some gateway did not behave as expected: see UNEXPECTED above");
        }
    }
    Ok(all_ok)
}

fn row_json<'a>(r: &'a Row<'a>) -> GatewayJson<'a> {
    GatewayJson {
        gateway: r.gateway.name,
        behaviour: r.gateway.behaviour,
        first: (&r.first).into(),
        second: (&r.second).into(),
        hellos_seen: r.gateway.emulator.count(),
        result: &r.result,
    }
}

fn print_table(rows: &[Row<'_>], layer: &FallbackLayer, gateways: &[Gateway], elapsed: Duration) {
    println!("tls-fallback demo: seven broken gateways on 127.0.0.1, one connector\n");
    println!(
        "{:<15} {:<54} {:<26} {:<26} result",
        "gateway", "behaviour", "first contact", "second contact"
    );
    println!(
        "{:<15} {:<54} {:<26} {:<26}",
        "", "", "(hellos, version, time)", "(hellos, version, time)"
    );
    let cell = |c: &Contact| match (&c.version, &c.error) {
        (Some(v), _) => format!("{} {:<9} {:>6.0} ms", c.attempts, v.to_string(), c.ms),
        (None, Some(e)) => format!("{} {e}", c.attempts),
        _ => "?".to_string(),
    };
    for r in rows {
        println!(
            "{:<15} {:<54} {:<26} {:<26} {}",
            r.gateway.name,
            r.gateway.behaviour,
            cell(&r.first),
            cell(&r.second),
            r.result
        );
    }
    let stats = layer.stats();
    let seen: Vec<_> = gateways.iter().flat_map(|g| g.emulator.hellos()).collect();
    let scsv = seen.iter().filter(|h| h.scsv()).count();
    println!(
        "\nOn the wire: {} hellos, {scsv} with TLS_FALLBACK_SCSV (every fallback and every \
         learned start; never the first try or a pin). {} handshakes for {} connections, {} \
         hosts learned, {} downgrade refused; {:.1} s.",
        seen.len(),
        stats.handshakes,
        stats.connections,
        stats.hosts.iter().filter(|h| !h.provisional).count(),
        stats.downgrades,
        elapsed.as_secs_f64()
    );
}
