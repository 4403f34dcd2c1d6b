//! What every subcommand shares: the error type with its kind and exit code, the JSON printer,
//! and the attempts table.
//!
//! Exit codes: [`EXIT_OK`] success, [`EXIT_FAILED`] the connection or probe failed,
//! [`EXIT_BAD_INPUT`] bad input.

use std::process::ExitCode;

use serde::Serialize;
use tls_fallback::{Attempt, Error, ErrorKind};

/// Success.
pub const EXIT_OK: u8 = 0;
/// The connection, the request or the probe failed.
pub const EXIT_FAILED: u8 = 1;
/// Bad input: a flag, a URL, a file (clap uses 2 for usage errors too).
pub const EXIT_BAD_INPUT: u8 = 2;

/// A failure with the CLI's error kind and exit code.
#[derive(Debug)]
pub struct CliError {
    /// The error kind printed as `error (KIND)` and in JSON (`bad_input`, `connect`, `http`...).
    pub kind: &'static str,
    /// What went wrong and, where we know it, what is expected.
    pub message: String,
    /// The handshake attempts, when the connector made some.
    pub attempts: Vec<Attempt>,
    /// The process exit code.
    pub code: u8,
}

/// The JSON form of a [`CliError`].
#[derive(Serialize)]
struct ErrorJson<'a> {
    error: ErrorBody<'a>,
    attempts: &'a [Attempt],
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    kind: &'a str,
    message: &'a str,
}

impl CliError {
    /// Bad input (exit 2).
    pub fn bad_input(message: impl Into<String>) -> Self {
        CliError {
            kind: "bad_input",
            message: message.into(),
            attempts: Vec::new(),
            code: EXIT_BAD_INPUT,
        }
    }

    /// A failure of this kind (exit 1).
    pub fn failed(kind: &'static str, message: impl Into<String>) -> Self {
        CliError {
            kind,
            message: message.into(),
            attempts: Vec::new(),
            code: EXIT_FAILED,
        }
    }

    /// A library error: its kind, message and attempts; exit 2 for bad input, else 1.
    pub fn from_tls(e: &Error) -> Self {
        CliError {
            kind: e.kind().as_str(),
            message: e.to_string(),
            attempts: e.attempts().to_vec(),
            code: if e.kind() == ErrorKind::BadInput {
                EXIT_BAD_INPUT
            } else {
                EXIT_FAILED
            },
        }
    }

    /// An error from hyper's client: the connector's error if there is one inside, else
    /// `connect` or `http` with the whole chain of causes.
    pub fn from_client(e: &hyper_util::client::legacy::Error) -> Self {
        match Error::find(e) {
            Some(tls) => Self::from_tls(tls),
            None => Self::failed(
                if e.is_connect() { "connect" } else { "http" },
                error_chain(e),
            ),
        }
    }

    /// Prints the error (one JSON object on stdout, or `error (KIND): MESSAGE` on stderr) and
    /// returns its exit code.
    pub fn report(&self, json_out: bool) -> ExitCode {
        if json_out {
            print_json(&ErrorJson {
                error: ErrorBody {
                    kind: self.kind,
                    message: &self.message,
                },
                attempts: &self.attempts,
            });
        } else {
            eprintln!("error ({}): {}", self.kind, self.message);
        }
        ExitCode::from(self.code)
    }
}

pub use tls_fallback::error_chain;

/// Prints one JSON object on one line, keys sorted at every level (the CLI's JSON contract has
/// always been printed in this order).
pub fn print_json(value: &impl Serialize) {
    match serde_json::to_value(value) {
        Ok(v) => println!("{v}"),
        // Only a map with non-string keys could fail, and none of ours has one.
        Err(e) => eprintln!("error (internal): cannot print JSON: {e}"),
    }
}

/// Rounds to one decimal, as every `*_ms` value in the JSON output.
pub fn round1(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

/// The attempts as an indented table, one line each, what happened in words last (the JSON
/// keeps the short words: `refused:258`, `stalled`).
pub fn attempts_table(attempts: &[Attempt]) -> String {
    let mut s = String::new();
    for (i, a) in attempts.iter().enumerate() {
        s.push_str(&format!(
            "  {:>2}. {:<16} up to {:<7} {:<5} {:>6} ms  {}\n",
            i + 1,
            a.profile,
            a.max_version.to_string(),
            if a.scsv { "SCSV" } else { "" },
            a.elapsed.as_millis(),
            a.outcome
        ));
    }
    s
}
