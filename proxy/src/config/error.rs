//! The configuration's error type: one variant per place a bad setting can come from, so that
//! the message names it (the file, line and key, or the flag) and callers can tell them apart.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the configuration was refused. The messages carry their cause (an I/O or TOML error is
/// part of the text, not a [`source`](std::error::Error::source)), so printing the error alone
/// says everything.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The `--config` file cannot be read.
    #[error("cannot read the config file {}: {error}", shown(&path.display()))]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A key of the file is unknown or has a bad value: `FILE:LINE: key \`k\`: message`.
    #[error("{}:{line}: key `{}`: {}", shown(&path.display()), shown(key), shown(message))]
    Key {
        /// The file.
        path: PathBuf,
        /// The line (from 1) of the value, or of the key when the key itself is wrong.
        line: usize,
        /// The key (the last part of a dotted or nested key, e.g. `max_connections`).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The file is not valid TOML at this line, outside any key's value.
    #[error("{}:{line}: {}", shown(&path.display()), shown(message))]
    Line {
        /// The file.
        path: PathBuf,
        /// The line (from 1).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The file is wrong somewhere TOML cannot point at.
    #[error("{}: {}", shown(&path.display()), shown(message))]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A flag has a bad value: `--flag-name: message`.
    #[error("--{flag}: {}", shown(message))]
    Flag {
        /// The flag's name without its dashes, e.g. `handshake-timeout-ms`.
        flag: String,
        /// What is wrong.
        message: String,
    },
    /// A listener on a non-loopback address without `--listen-public`.
    #[error(
        "--{what} {addr} is not a loopback address: a TLS-originating proxy on the network \
         lets anyone reach your upstreams; add --listen-public (listen_public = true) if that \
         is what you want"
    )]
    NotLoopback {
        /// `listen` or `admin`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
    },
    /// Neither hosts to forward to nor an upstream: the proxy is never open by default.
    #[error(
        "nothing to proxy to: give --allow PATTERN (forward mode: hosts apps may reach) or \
         --upstream https://HOST[:PORT] (upstream mode); this proxy is never open by default"
    )]
    NothingToProxy,
}

/// Text from the file (a key, a TOML message quoting it, a path) as it goes into one log line:
/// control characters (and the Unicode line and paragraph separators) escaped, so that a
/// quoted key or a path holding a newline cannot forge a line of the log.
pub fn shown(text: &dyn std::fmt::Display) -> String {
    let text = text.to_string();
    let unsafe_char = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if !text.chars().any(unsafe_char) {
        return text;
    }
    text.chars()
        .map(|c| match unsafe_char(c) {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}
