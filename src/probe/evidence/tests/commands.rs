//! Reproduction commands (through a real shell) and known bugs.

use std::net::SocketAddr;

use super::*;
use crate::probe::hello::TLS12;
use crate::probe::{TestId, TestOutcome, WireVersion};
use crate::TlsVersion;

fn v4() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 7], 8443))
}

#[test]
fn reproduction_commands_row_by_row() {
    let sni = Some("pay.example");
    let base = "openssl s_client -connect 192.0.2.7:8443 -servername pay.example";
    let probe = |t: &str| {
        format!(
            "tls-fallback probe --only {t} --resolve pay.example:8443:192.0.2.7 pay.example:8443"
        )
    };
    let rows: Vec<(TestId, String, bool)> = vec![
        (
            TestId::Version10,
            format!("{base} -tls1 -cipher DEFAULT@SECLEVEL=0"),
            true,
        ),
        (
            TestId::Version11,
            format!("{base} -tls1_1 -cipher DEFAULT@SECLEVEL=0"),
            true,
        ),
        (TestId::Version12, format!("{base} -tls1_2"), false),
        (TestId::Version13Only, format!("{base} -tls1_3"), false),
        (TestId::Version13, base.to_string(), true),
        (
            TestId::PqKeyShare,
            format!("{base} -groups X25519MLKEM768:X25519"),
            true,
        ),
        (TestId::LongHello, probe("long_hello"), false),
        (TestId::SplitHello, probe("split_hello"), false),
        (TestId::Long300, probe("long_300"), false),
        (TestId::Future0398, probe("future_0x0398"), false),
        (TestId::ExtensionUnknown, probe("extension_unknown"), false),
        (TestId::CiphersMany, probe("ciphers_many"), false),
        (TestId::FallbackScsv, probe("fallback_scsv"), false),
    ];
    for (test, want, has_note) in rows {
        let r = reproduce(test, "pay.example", v4(), sni, None);
        assert_eq!(r.command, want, "{test}");
        assert_eq!(r.note.is_some(), has_note, "{test}");
    }
    let pq = reproduce(TestId::PqKeyShare, "pay.example", v4(), sni, None);
    assert!(pq.note.is_some_and(|n| n.contains("OpenSSL 3.5")));
}

#[test]
fn the_scsv_command_carries_the_fallback_version() {
    let sni = Some("pay.example");
    let rows = [
        (Some(TlsVersion::Tls1_2), "-tls1_2 -fallback_scsv"),
        (
            Some(TlsVersion::Tls1_0),
            "-tls1 -cipher DEFAULT@SECLEVEL=0 -fallback_scsv",
        ),
        (
            Some(TlsVersion::Tls1_1),
            "-tls1_1 -cipher DEFAULT@SECLEVEL=0 -fallback_scsv",
        ),
        (Some(TlsVersion::Tls1_3), "--only fallback_scsv"),
        (None, "--only fallback_scsv"),
    ];
    for (version, tail) in rows {
        let r = reproduce(TestId::FallbackScsv, "pay.example", v4(), sni, version);
        assert!(r.command.contains(tail), "{version:?}: {}", r.command);
    }
}

#[test]
fn addresses_sni_and_ip_hosts() {
    let v6: SocketAddr = "[2001:db8::1]:443".parse().unwrap_or(v4());
    let rows = [
        (
            TestId::Version12,
            "gw.example",
            v6,
            Some("gw.example"),
            "openssl s_client -connect '[2001:db8::1]:443' -servername gw.example -tls1_2",
        ),
        (
            TestId::LongHello,
            "gw.example",
            v6,
            Some("gw.example"),
            "tls-fallback probe --only long_hello --resolve 'gw.example:443:[2001:db8::1]' \
             gw.example:443",
        ),
        (
            TestId::LongHello,
            "[2001:db8::1]",
            v6,
            None,
            "tls-fallback probe --only long_hello '[2001:db8::1]:443'",
        ),
        (
            TestId::LongHello,
            "192.0.2.7",
            v4(),
            Some("api.example"),
            "tls-fallback probe --only long_hello --sni api.example 192.0.2.7:8443",
        ),
        (
            TestId::SplitHello,
            "GW.example",
            v4(),
            Some("other.example"),
            "tls-fallback probe --only split_hello --sni other.example --resolve \
             GW.example:8443:192.0.2.7 GW.example:8443",
        ),
        (
            TestId::Version13Only,
            "192.0.2.7",
            v4(),
            None,
            "openssl s_client -connect 192.0.2.7:8443 -tls1_3",
        ),
    ];
    for (test, host, addr, sni, want) in rows {
        assert_eq!(
            reproduce(test, host, addr, sni, None).command,
            want,
            "{host}"
        );
    }
}

/// Runs `command` with its program replaced by a printer in a real POSIX shell, and returns
/// the arguments the shell passed.
fn shell_args(command: &str) -> Vec<String> {
    let (_program, rest) = command.split_once(' ').unwrap_or((command, ""));
    let script = format!("printf '%s\\0' {rest}");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("sh runs");
    assert!(out.status.success(), "{script}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    text.split_terminator('\0').map(str::to_string).collect()
}

#[test]
fn hostile_names_stay_one_argument_in_a_real_shell() {
    let hostile = [
        "evil.example; touch /tmp/tls-fallback-pwned",
        "$(touch /tmp/tls-fallback-pwned)",
        "`touch /tmp/tls-fallback-pwned`",
        "it's'; echo 'x",
        "a\nb",
        "-rf",
        "*",
        "",
    ];
    for name in hostile {
        let r = reproduce(TestId::LongHello, name, v4(), Some(name), None);
        let args = shell_args(&r.command);
        if name.is_empty() {
            assert_eq!(args.last().map(String::as_str), Some("192.0.2.7:8443"));
            continue;
        }
        let target = format!("{name}:8443");
        assert_eq!(args.last(), Some(&target), "{name:?}: {}", r.command);
        let resolve = format!("{name}:8443:192.0.2.7");
        assert!(
            args.iter()
                .any(|a| a == &resolve || *a == format!("--resolve={resolve}")),
            "{name:?}: {args:?}"
        );
        let r = reproduce(TestId::Version12, name, v4(), Some(name), None);
        let args = shell_args(&r.command);
        assert_eq!(
            args[..5],
            [
                "s_client",
                "-connect",
                "192.0.2.7:8443",
                "-servername",
                name
            ]
        );
    }
    assert!(!std::path::Path::new("/tmp/tls-fallback-pwned").exists());
}

#[test]
fn a_target_starting_with_a_dash_is_not_read_as_a_flag() {
    let r = reproduce(
        TestId::LongHello,
        "-x.example",
        v4(),
        Some("-x.example"),
        None,
    );
    assert_eq!(
        r.command,
        "tls-fallback probe --only long_hello --resolve=-x.example:8443:192.0.2.7 -- \
         -x.example:8443"
    );
}

/// Test, how it failed, a word of the bug's name (`None`: no known bug), reference URLs.
const BUG_ROWS: [(TestId, FailedHow, Option<&str>, &[&str]); 22] = {
    use FailedHow::*;
    [
        (
            TestId::Long300,
            Timeout,
            Some("256..511"),
            &["rfc7685#section-4", "rfc8446#section-9.3"],
        ),
        (
            TestId::Long512,
            Reset,
            Some("512 bytes"),
            &["rfc8446#section-9.3"],
        ),
        (
            TestId::LongHello,
            Timeout,
            Some("Large ClientHello"),
            &["tldr.fail", "ecdhe-mlkem"],
        ),
        (
            TestId::SplitHello,
            Closed,
            Some("two TCP segments"),
            &["tldr.fail"],
        ),
        (
            TestId::PqKeyShare,
            Alert(47),
            Some("X25519MLKEM768"),
            &["tldr.fail", "ecdhe-mlkem"],
        ),
        (
            TestId::Version13,
            Alert(70),
            Some("TLS 1.3 version"),
            &["rfc8446#appendix-D"],
        ),
        (
            TestId::Version13Only,
            Reset,
            Some("TLS 1.3 version"),
            &["rfc8446#appendix-D"],
        ),
        (TestId::Version13Only, Alert(70), None, &[]),
        (TestId::Version13Only, Alert(40), None, &[]),
        (
            TestId::Version12,
            Timeout,
            Some("TLS 1.2 hello dropped"),
            &["rfc8446#appendix-D"],
        ),
        (TestId::Version12, Alert(70), None, &[]),
        (TestId::Version10, Reset, None, &[]),
        (TestId::Version11, Alert(70), None, &[]),
        (
            TestId::Future0398,
            Alert(70),
            Some("Future-version"),
            &["rfc8446#appendix-D"],
        ),
        (
            TestId::ExtensionUnknown,
            Alert(50),
            Some("Unknown-extension"),
            &["rfc8701"],
        ),
        (
            TestId::CiphersMany,
            Closed,
            Some("Cipher-suite list"),
            &["rfc8701"],
        ),
        (
            TestId::FallbackScsv,
            ServerHello,
            Some("not supported"),
            &["rfc7507"],
        ),
        (
            TestId::FallbackScsv,
            Alert(86),
            Some("blocked in the path"),
            &["rfc7507"],
        ),
        (
            TestId::FallbackScsv,
            Timeout,
            Some("SCSV intolerance"),
            &["rfc7507"],
        ),
        (TestId::FallbackScsv, Alert(40), None, &[]),
        (TestId::LongShort, Timeout, None, &[]),
        (TestId::Long300, ServerHello, None, &[]),
    ]
};

#[test]
fn known_bugs_row_by_row() {
    for (test, how, name, urls) in BUG_ROWS {
        let bug = known_bug(test, how);
        assert_eq!(bug.is_some(), name.is_some(), "{test} {how:?}");
        let Some(bug) = bug else { continue };
        assert!(
            bug.name.contains(name.unwrap_or_default()),
            "{test}: {}",
            bug.name
        );
        for url in urls {
            assert!(
                bug.references.iter().any(|r| r.url.contains(url)),
                "{test}: {url}"
            );
        }
        assert!(bug.references.iter().all(|r| r.url.starts_with("https://")));
        assert!(bug.explanation.contains(" Here the box "), "{test}");
    }
    let pq = known_bug(TestId::PqKeyShare, FailedHow::Alert(47)).map(|b| b.explanation);
    assert!(pq.is_some_and(|e| e.contains("sent alert illegal_parameter (47)")));
}

#[test]
fn failed_how_from_outcomes() {
    let rows = [
        (TestOutcome::Closed, Some(FailedHow::Closed)),
        (TestOutcome::Reset, Some(FailedHow::Reset)),
        (TestOutcome::Timeout, Some(FailedHow::Timeout)),
        (TestOutcome::Alert(86), Some(FailedHow::Alert(86))),
        (
            TestOutcome::ServerHello(WireVersion(TLS12)),
            Some(FailedHow::ServerHello),
        ),
        (TestOutcome::ConnectError, None),
        (TestOutcome::Skipped, None),
        (TestOutcome::Garbage, None),
    ];
    for (outcome, want) in rows {
        assert_eq!(FailedHow::of(&outcome), want, "{outcome}");
    }
}
