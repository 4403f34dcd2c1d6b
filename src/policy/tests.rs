//! The host pattern and pin rules, row by row.

use super::*;

fn pat(s: &str) -> HostPattern {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn exact_suffix_port_and_any_patterns_match_as_documented() {
    assert!(pat("api.example.com").matches("API.example.com", 1));
    assert!(!pat("api.example.com").matches("x.api.example.com", 443));
    assert!(pat("*.example.com").matches("a.b.example.com", 443));
    assert!(!pat("*.example.com").matches("example.com", 443));
    assert!(!pat("*.example.com").matches("badexample.com", 443));
    assert!(pat("host:8443").matches("host", 8443));
    assert!(!pat("host:8443").matches("host", 443));
    assert!(pat("*").matches("anything", 1));
    assert!(pat("[::1]:443").matches("::1", 443));
    assert!(pat("::1").matches("::1", 9));
    assert!(pat("127.0.0.1:99").matches("127.0.0.1", 99));
    assert!(pat("Example.COM.").matches("example.com", 1));
    assert!(pat("example.com").matches("EXAMPLE.com.", 1));
}

#[test]
fn ip_literal_patterns_compare_addresses_not_text() {
    for (pattern, host, matches) in [
        ("[::1]:443", "[0:0::1]", true),
        ("[::1]:443", "0000::0001", true),
        ("0:0::1", "::1", true),
        ("[0000::0001]", "[::1]", true),
        ("127.0.0.1", "127.0.0.1.", true),
        ("[::1]", "::2", false),
        ("127.0.0.1", "[::ffff:127.0.0.1]", false),
        ("[::ffff:127.0.0.1]", "127.0.0.1", false),
        ("[::ffff:7f00:1]", "[::ffff:127.0.0.1]", true),
        ("127.0.0.1", "127.1", false),
    ] {
        assert_eq!(
            pat(pattern).matches(host, 443),
            matches,
            "{pattern} vs {host}"
        );
    }
}

#[test]
fn malformed_patterns_are_rejected_with_a_reason() {
    for bad in [
        "",
        " ",
        "exa mple.com",
        "https://x.com",
        "x.com:0",
        "x.com:65536",
        "x.com:abc",
        "a.*.com",
        "*x.com",
        "*.",
        "[::1",
        "[zz]:1",
        "1:2:3",
        "-bad.com",
        "x..com",
    ] {
        let e = bad.parse::<HostPattern>().expect_err(bad);
        assert!(!e.reason.is_empty());
        assert!(e.to_string().contains("invalid host pattern"));
    }
}

#[test]
fn a_url_or_a_path_is_refused_with_the_pattern_it_meant() {
    let url = "it looks like a URL; a pattern is a host with an optional port, without \
               scheme or path: ";
    // (given, the reason)
    let rows = [
        (
            "https://pay.example/",
            format!("{url}\"pay.example\" (every port) or \"pay.example:443\" (port 443 only)"),
        ),
        (
            " HTTPS://Pay.Example:8443/v1/payments?x=1 ",
            format!("{url}\"pay.example\" (every port) or \"pay.example:8443\" (port 8443 only)"),
        ),
        (
            "http://pay.example",
            format!("{url}\"pay.example\" (every port) or \"pay.example:80\" (port 80 only)"),
        ),
        (
            "https://[::1]:8443/",
            format!("{url}\"[::1]\" (every port) or \"[::1]:8443\" (port 8443 only)"),
        ),
        (
            "https://user@pay.example/",
            format!("{url}\"pay.example\" (every port) or \"pay.example:443\" (port 443 only)"),
        ),
        ("https://", format!("{url}\"host\" or \"host:443\"")),
        (
            "pay.example/v1",
            "a pattern is a host with an optional port, without a path: \"pay.example\"".into(),
        ),
        (
            "pay.example:8443/",
            "a pattern is a host with an optional port, without a path: \"pay.example:8443\""
                .into(),
        ),
        (
            "pay.example:1:2",
            "too many ':': a pattern is \"host\" or \"host:443\" (an IPv6 address with a \
             port is \"[addr]:443\")"
                .into(),
        ),
    ];
    for (given, reason) in rows {
        let e = given.parse::<HostPattern>().expect_err(given);
        assert_eq!(e.reason, reason, "{given}");
        // Every pattern the reason suggests is one.
        let quoted = reason.split('"').skip(1).step_by(2);
        for suggested in quoted.filter(|q| !q.contains("host") && !q.contains("addr")) {
            assert!(suggested.parse::<HostPattern>().is_ok(), "{suggested}");
        }
    }
}

#[test]
fn the_most_specific_pin_wins() {
    let pins = [
        pat("*"),
        pat("*.example.com"),
        pat("pay.example.com:8443"),
        pat("pay.example.com"),
        pat("pay.example.com"),
    ];
    let idx = |h: &str, p| {
        most_specific(
            pins.iter().enumerate().map(|(i, p)| (p, i)),
            &HostKey::new(h, p),
        )
    };
    assert_eq!(idx("pay.example.com", 8443), Some(2));
    assert_eq!(idx("pay.example.com", 443), Some(3), "the first of equals");
    assert_eq!(idx("www.example.com", 443), Some(1));
    assert_eq!(idx("other.org", 443), Some(0));
}

#[test]
fn legacy_rungs_are_only_for_allowed_hosts() {
    let policy = Policy {
        legacy_hosts: vec![pat("old.example")],
        ..Policy::default()
    };
    let old = HostKey::new("old.example", 443);
    let new = HostKey::new("new.example", 443);
    assert!(policy.rung_allowed(&old, &Profile::tls10_legacy()));
    assert!(!policy.rung_allowed(&new, &Profile::tls10_legacy()));
    assert!(!policy.rung_allowed(&new, &Profile::tls11_legacy()));
    assert!(policy.rung_allowed(&new, &Profile::tls12_compact()));
    assert_eq!(policy.floor_for(&new), TlsVersion::Tls1_2);
    assert_eq!(policy.floor_for(&old), TlsVersion::Tls1_0);
}

#[test]
fn a_floor_of_tls11_opens_tls11_but_not_tls10() {
    let policy = Policy {
        floor: TlsVersion::Tls1_1,
        legacy_hosts: vec![pat("old.example")],
        ..Policy::default()
    };
    let old = HostKey::new("old.example", 443);
    let any = HostKey::new("any.example", 443);
    assert_eq!(policy.floor_for(&any), TlsVersion::Tls1_1);
    assert!(policy.legacy_allowed(&any));
    assert!(policy.rung_allowed(&any, &Profile::tls11_legacy()));
    assert!(!policy.rung_allowed(&any, &Profile::tls10_legacy()));
    // The legacy gate still opens TLS 1.0 for the hosts it names.
    assert_eq!(policy.floor_for(&old), TlsVersion::Tls1_0);
    assert!(policy.rung_allowed(&old, &Profile::tls10_legacy()));
}

#[test]
fn pins_parse_from_the_cli_form() {
    let (p, v) = parse_pin("a.example=1.1").unwrap();
    assert!(p.matches("a.example", 443));
    assert_eq!(v, TlsVersion::Tls1_1);
    assert!(parse_pin("a.example").is_err());
    assert!(parse_pin("a.example=1.4").is_err());
    assert!(parse_pin("=1.2").is_err());
}

#[test]
fn host_key_normalises_case_brackets_and_dots() {
    let uri: Uri = "https://[::1]:8443/x".parse().unwrap();
    assert_eq!(HostKey::from_uri(&uri).unwrap(), HostKey::new("::1", 8443));
    let uri: Uri = "https://Api.Example.com./".parse().unwrap();
    let k = HostKey::from_uri(&uri).unwrap();
    assert_eq!((&*k.host, k.port), ("api.example.com", 443));
    assert_eq!(k.to_string(), "api.example.com:443");
    let k = HostKey::new("[0000:0::0001]", 443);
    assert_eq!(
        (k.host(), k.ip()),
        ("::1", Some(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])))
    );
    assert_eq!(k.to_string(), "[::1]:443");
    assert_eq!(HostKey::new("Example.COM.", 1).ip(), None);
    // Keys read back from a store are normalised too.
    let read: HostKey = serde_json::from_str(r#"{"host":"[0:0::1]","port":9}"#).unwrap();
    assert_eq!(read, HostKey::new("::1", 9));
}
