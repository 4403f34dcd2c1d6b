//! A command a vendor can run to see one test fail: `openssl s_client` where OpenSSL can send
//! the same kind of hello, else `tls-fallback probe --only TEST`. Every argument that is not
//! plainly safe is single-quoted for a POSIX shell, so a hostile host or server name stays one
//! argument and never becomes shell syntax.

use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use crate::probe::TestId;
use crate::TlsVersion;

/// A command line and what to know before running it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reproduce {
    /// One POSIX shell command line.
    pub command: String,
    /// A caveat (OpenSSL version or build needed, how the hello differs), if any.
    pub note: Option<String>,
}

/// The command that repeats `test` against `addr` (the address the probe used), sending
/// `sni`; `host` is the name the user gave (an IP literal or empty when there is none).
/// `fallback_version` is the highest version of the `fallback_scsv` test's hello; without it
/// that test is repeated through `tls-fallback probe`.
///
/// ```
/// use tls_fallback::probe::evidence::reproduce;
/// use tls_fallback::probe::TestId;
///
/// let addr = "192.0.2.7:443".parse().unwrap();
/// let r = reproduce(TestId::Version12, "pay.example", addr, Some("pay.example"), None);
/// assert_eq!(r.command, "openssl s_client -connect 192.0.2.7:443 -servername pay.example -tls1_2");
/// let r = reproduce(TestId::LongHello, "pay.example", addr, Some("pay.example"), None);
/// assert_eq!(
///     r.command,
///     "tls-fallback probe --only long_hello --resolve pay.example:443:192.0.2.7 pay.example:443"
/// );
/// ```
pub fn reproduce(
    test: TestId,
    host: &str,
    addr: SocketAddr,
    sni: Option<&str>,
    fallback_version: Option<TlsVersion>,
) -> Reproduce {
    match openssl_flags(test, fallback_version) {
        Some((flags, note)) => {
            let mut args = vec!["openssl", "s_client", "-connect"];
            let connect = addr.to_string(); // [v6]:port, with brackets
            args.push(&connect);
            if let Some(name) = sni {
                args.extend(["-servername", name]);
            }
            args.extend(flags);
            Reproduce {
                command: shell_line(&args),
                note,
            }
        }
        None => probe_command(test, host, addr, sni),
    }
}

/// What the note of a legacy version says.
const LEGACY_NOTE: &str = "OpenSSL 3 allows TLS 1.0 and 1.1 only at security level 0, hence \
     -cipher 'DEFAULT@SECLEVEL=0'; some builds (and distributions) leave these versions out \
     entirely, and then this command fails on the client side: use the tls-fallback command";

type Flags = (Vec<&'static str>, Option<String>);

/// The s_client flags that send the same kind of hello as `test`, if OpenSSL can.
fn openssl_flags(test: TestId, fallback_version: Option<TlsVersion>) -> Option<Flags> {
    let legacy = |flag| {
        Some((
            vec![flag, "-cipher", "DEFAULT@SECLEVEL=0"],
            Some(LEGACY_NOTE.into()),
        ))
    };
    match test {
        TestId::Version10 => legacy("-tls1"),
        TestId::Version11 => legacy("-tls1_1"),
        TestId::Version12 => Some((vec!["-tls1_2"], None)),
        TestId::Version13Only => Some((vec!["-tls1_3"], None)),
        TestId::Version13 => Some((
            vec![],
            Some(
                "OpenSSL sends its own default hello (TLS 1.3 and 1.2); the probe's hello also \
                 offers 1.1 and 1.0"
                    .into(),
            ),
        )),
        // OpenSSL 3.5 release notes: X25519MLKEM768 is new in 3.5. Without a `*` prefix (3.5
        // group-list syntax) s_client sends a key share for the first group only, as far as
        // we know; the 1216-byte share is what matters for size.
        TestId::PqKeyShare => Some((
            vec!["-groups", "X25519MLKEM768:X25519"],
            Some(
                "needs OpenSSL 3.5 or later (X25519MLKEM768); OpenSSL may send only the \
                 X25519MLKEM768 share where the probe also sends an x25519 one"
                    .into(),
            ),
        )),
        TestId::FallbackScsv => scsv_flags(fallback_version?),
        _ => None,
    }
}

fn scsv_flags(version: TlsVersion) -> Option<Flags> {
    let (flag, legacy) = match version {
        TlsVersion::Tls1_0 => ("-tls1", true),
        TlsVersion::Tls1_1 => ("-tls1_1", true),
        TlsVersion::Tls1_2 => ("-tls1_2", false),
        // A fallback from TLS 1.3 does not exist yet: nothing to offer below it with the SCSV.
        TlsVersion::Tls1_3 => return None,
    };
    let mut flags = vec![flag];
    if legacy {
        flags.extend(["-cipher", "DEFAULT@SECLEVEL=0"]);
    }
    flags.push("-fallback_scsv");
    Some((flags, legacy.then(|| LEGACY_NOTE.to_string())))
}

/// `tls-fallback probe --only TEST [--sni NAME] [--resolve HOST:PORT:ADDR] TARGET`.
fn probe_command(test: TestId, host: &str, addr: SocketAddr, sni: Option<&str>) -> Reproduce {
    let port = addr.port();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let by_address = host.is_empty() || host.parse::<IpAddr>().is_ok();
    let mut args = vec![
        "tls-fallback".to_string(),
        "probe".into(),
        "--only".into(),
        test.as_str().into(),
    ];
    if let Some(name) = sni.filter(|n| by_address || !n.eq_ignore_ascii_case(host)) {
        push_flag(&mut args, "--sni", name.to_string());
    }
    let target = if by_address {
        addr.to_string()
    } else {
        // curl's syntax, IPv6 in brackets (`--resolve` is being added to the CLI like curl's).
        let ip = match addr.ip() {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        push_flag(&mut args, "--resolve", format!("{host}:{port}:{ip}"));
        format!("{host}:{port}")
    };
    // `--` so that a target starting with '-' is not read as a flag.
    if target.starts_with('-') {
        args.push("--".into());
    }
    args.push(target);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Reproduce {
        command: shell_line(&args),
        note: None,
    }
}

/// `--flag value`, or `--flag=value` when the value starts with '-' (so a parser cannot take
/// it for a flag).
fn push_flag(args: &mut Vec<String>, flag: &str, value: String) {
    if value.starts_with('-') {
        args.push(format!("{flag}={value}"));
    } else {
        args.extend([flag.to_string(), value]);
    }
}

/// The arguments as one POSIX shell line.
fn shell_line(args: &[&str]) -> String {
    args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
}

/// `arg` as one POSIX shell word: unchanged if it holds only characters no shell treats
/// specially, else in single quotes (inside which only `'` needs care: `'\''`).
pub(super) fn quote(arg: &str) -> String {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"-_./:=@,+%".contains(&b);
    if !arg.is_empty() && arg.bytes().all(plain) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}
