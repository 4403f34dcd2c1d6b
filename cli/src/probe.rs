//! `probe`: the library's probe of a TLS endpoint (hand-built hellos, then one full handshake
//! through the fallback connector with certificate checks), printed as a table or as JSON.

use std::time::Duration;

use tls_fallback::probe::{self, ProbeConfig, ProbeError, Target};

use crate::output::CliError;
use crate::ProbeArgs;

/// Runs `probe`: prints the report as a table or as pretty JSON.
pub async fn run(args: ProbeArgs) -> Result<(), CliError> {
    if args.timeout_ms == 0 {
        return Err(CliError::bad_input(
            "--timeout-ms 0: expected a number of milliseconds above 0",
        ));
    }
    // HOST, HOST:PORT, [v6]:PORT or an https:// URL; the error says which part is wrong.
    Target::parse(&args.target)
        .map_err(|e| CliError::bad_input(format!("probe target {:?}: {e}", args.target)))?;
    let mut cfg = ProbeConfig::new(args.target.clone());
    cfg.sni = args.sni.clone().or(cfg.sni);
    cfg.timeout = Duration::from_millis(args.timeout_ms);
    cfg.ca_file = args.ca_file.clone();
    let report = probe::probe(&cfg).await.map_err(|e| match e {
        ProbeError::BadTarget(m) => CliError::bad_input(m),
        other => CliError::failed("connect", other.to_string()),
    })?;
    if args.json {
        let s = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::failed("internal", e.to_string()))?;
        println!("{s}");
    } else {
        println!("{}", report.to_table());
    }
    Ok(())
}
