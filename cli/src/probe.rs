//! `probe`: the library's raw probe of a TLS endpoint, plus one full handshake through the
//! fallback connector (certificates checked) to show what `get` would do.

use std::time::Instant;

use tls_fallback::probe::{self, ProbeConfig, ProbeError};
use tls_fallback::{Error, FallbackLayer};
use tower_layer::Layer;

use crate::output::CliError;
use crate::ProbeArgs;

/// Runs `probe`: prints the report as a table or as pretty JSON.
pub async fn run(args: ProbeArgs) -> Result<(), CliError> {
    if args.timeout_ms == 0 {
        return Err(CliError::bad_input("--timeout-ms must be above 0"));
    }
    let target = if args.target.contains(':') && !args.target.ends_with(']') {
        args.target.clone()
    } else {
        format!("{}:443", args.target)
    };
    let mut cfg = ProbeConfig::new(target.clone());
    cfg.sni = args.sni.clone().or(cfg.sni);
    cfg.timeout = std::time::Duration::from_millis(args.timeout_ms);
    let mut report = probe::probe(&cfg).await.map_err(|e| match e {
        ProbeError::BadTarget(m) => CliError::bad_input(m),
        other => CliError::failed("connect", other.to_string()),
    })?;
    // One real handshake through the connector (legacy allowed: this is a diagnosis), with
    // certificate checks, to show what `get` would do.
    report
        .tests
        .push(full_handshake(&args, &cfg, &target).await);
    if args.json {
        let s = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::failed("internal", e.to_string()))?;
        println!("{s}");
    } else {
        println!("{}", report.to_table());
    }
    Ok(())
}

async fn full_handshake(args: &ProbeArgs, cfg: &ProbeConfig, target: &str) -> probe::ProbeTest {
    let started = Instant::now();
    let host = cfg.sni.clone().unwrap_or_else(|| {
        target
            .rsplit_once(':')
            .map_or(target, |(h, _)| h)
            .to_string()
    });
    let port = target
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .unwrap_or(443);
    let mut b = FallbackLayer::builder()
        .handshake_timeout(cfg.timeout)
        .allow_legacy("*");
    if let Some(ca) = &args.ca_file {
        b = b.ca_file(ca);
    }
    let mut test = probe::ProbeTest {
        name: "fallback_connector".into(),
        description: "a full handshake through the fallback connector, certificates checked".into(),
        hello_len: 0,
        outcome: String::new(),
        negotiated: None,
        ms: 0,
    };
    let host_for_uri = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let uri: Result<http::Uri, _> = format!("https://{host_for_uri}:{port}/").parse();
    let result = match (b.build(), uri) {
        (Ok(layer), Ok(uri)) => {
            let mut connector = layer.layer(FallbackLayer::http_connector());
            tower_service::Service::call(&mut connector, uri)
                .await
                .map(|s| s.tls_info().cloned())
        }
        (Err(e), _) => Err(e),
        (_, Err(e)) => Err(Error::InvalidUri {
            uri: host,
            reason: e.to_string(),
        }),
    };
    test.ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(Some(info)) => {
            test.outcome = format!("ok:{}", info.profile);
            test.negotiated = Some(info.version.as_str().to_string());
        }
        Ok(None) => test.outcome = "ok".into(),
        Err(e) => test.outcome = format!("error:{}", e.kind().as_str()),
    }
    test
}
