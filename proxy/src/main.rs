//! `tls-fallback-proxy`: the egress proxy as operators deploy it (the same as
//! `tls-fallback proxy`, without the CLI's test kit). Flags and `--config` are described by
//! `--help` and docs/PROXY.md.

use std::process::ExitCode;

use clap::Parser;

/// An egress proxy that originates TLS through the fallback connector for apps that send
/// http:// requests through it (forward mode) or to it (--upstream mode).
#[derive(Parser, Debug)]
#[command(name = "tls-fallback-proxy", version)]
struct Cli {
    #[command(flatten)]
    args: tls_fallback_proxy::ProxyArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tls_fallback_proxy::main(cli.args)
}
