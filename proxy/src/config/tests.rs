//! Table tests of the configuration: file errors with file, line and key; flag errors; merging.

use super::*;

fn with_file(text: &str, args: ProxyArgs) -> Result<Settings, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, text).unwrap();
    resolve(&ProxyArgs {
        config: Some(path),
        ..args
    })
    .map_err(|e| e.replace(&dir.path().display().to_string(), "DIR"))
}

fn allow(p: &str) -> ProxyArgs {
    ProxyArgs {
        allow: vec![p.into()],
        ..Default::default()
    }
}

#[test]
fn bad_files_name_the_file_line_and_key() {
    // (file, the error must contain)
    let rows: &[(&str, &str)] = &[
        (
            "allow = [\"gw.example\"]\nlisten = \"nope\"\n",
            "DIR/proxy.toml:2: key `listen`: invalid address \"nope\"",
        ),
        (
            "allow = [\"gw.example\"]\n\nhandshake_timeout_ms = \"ten\"\n",
            "DIR/proxy.toml:3: key `handshake_timeout_ms`",
        ),
        (
            "allow = [\"gw.example\"]\nhandshake_timeout_ms = 0\n",
            "DIR/proxy.toml:2: key `handshake_timeout_ms`: must be above 0",
        ),
        (
            "allow = [\"gw.example\"]\nbogus = 1\n",
            "DIR/proxy.toml:2: key `bogus`: unknown field `bogus`",
        ),
        (
            "allow = [\"gw.example\", \"bad host\"]\n",
            "DIR/proxy.toml:1: key `allow`: invalid host pattern \"bad host\"",
        ),
        (
            "allow = [\"a\"]\npin = [\"a=1.7\"]\n",
            "DIR/proxy.toml:2: key `pin`",
        ),
        (
            "upstream = \"http://gw.example\"\n",
            "DIR/proxy.toml:1: key `upstream`: invalid upstream URL",
        ),
        (
            "allow = [\"a\"]\nlog_format = \"xml\"\n",
            "DIR/proxy.toml:2: key `log_format`: unknown format \"xml\"",
        ),
        (
            "allow = [\"a\"]\n[limits]\nmax_connections = 0\n",
            "DIR/proxy.toml:3: key `max_connections`: must be above 0",
        ),
        (
            "allow = [\"a\"]\nworkers = 0\n",
            "DIR/proxy.toml:2: key `workers`: must be 1 to 256",
        ),
        (
            "allow = [\"a\"]\n[limits]\nmax_header_bytes = 10\n",
            "DIR/proxy.toml:3: key `max_header_bytes`: must be at least 8192",
        ),
        (
            "allow = [\"a\"]\n[[host]]\nmatch = \"a\"\npin = \"2.0\"\n",
            "DIR/proxy.toml:4: key `pin`",
        ),
        (
            "allow = [\"a\"]\n[[host]]\nmatch = \"a b\"\n",
            "DIR/proxy.toml:3: key `match`",
        ),
        (
            "allow = [\"a\"]\n[[host]]\nmatch = \"a\"\nclient_cert = \"c.pem\"\n",
            "client_cert and client_key go together",
        ),
        ("allow = [\"a\"\n", "DIR/proxy.toml:"),
        (
            "listen = \"10.1.2.3:8080\"\nallow = [\"a\"]\n",
            "--listen-public",
        ),
        (
            "via = \"ftp://p\"\nallow = [\"a\"]\n",
            "DIR/proxy.toml:1: key `via`",
        ),
        (
            "allow = [\"a\"]\nvia = \"socks4://ann:hunter2@p:1\"\n",
            "DIR/proxy.toml:2: key `via`: invalid proxy URL \"socks4://ann:***@p:1\"",
        ),
    ];
    for (text, want) in rows {
        let e = with_file(text, ProxyArgs::default()).unwrap_err();
        assert!(e.contains(want), "{text:?}: {e}");
    }
}

#[test]
fn a_proxy_password_from_the_file_is_kept_but_never_shown() {
    let s = with_file(
        "allow = [\"a\"]\nvia = \"socks5h://ann:hunter%32@p:1080\"\n",
        ProxyArgs::default(),
    )
    .unwrap();
    let via = s.layer.via.as_ref().unwrap();
    assert_eq!(via.credentials().unwrap().password, "hunter2");
    assert_eq!(via.to_string(), "socks5h://ann:***@p:1080");
    let debug = format!("{s:?}");
    assert!(debug.contains("ann:***@p:1080"), "{debug}");
    assert!(!debug.contains("hunter"), "{debug}");
}

#[test]
fn a_missing_file_is_named() {
    let e = resolve(&ProxyArgs {
        config: Some("/nonexistent/proxy.toml".into()),
        ..allow("a")
    })
    .unwrap_err();
    assert!(
        e.contains("cannot read the config file /nonexistent/proxy.toml"),
        "{e}"
    );
}

#[test]
fn no_allow_and_no_upstream_refuses_to_start() {
    let e = resolve(&ProxyArgs::default()).unwrap_err();
    assert!(e.contains("--allow") && e.contains("--upstream"), "{e}");
}

#[test]
fn flag_errors_name_the_flag() {
    let rows: Vec<(ProxyArgs, &str)> = vec![
        (
            ProxyArgs {
                listen: Some("x".into()),
                ..allow("a")
            },
            "--listen: invalid address",
        ),
        (
            ProxyArgs {
                handshake_timeout_ms: Some(0),
                ..allow("a")
            },
            "--handshake-timeout-ms: must be above 0",
        ),
        (allow("a b"), "--allow: invalid host pattern"),
        (
            ProxyArgs {
                pin: vec!["a".into()],
                ..allow("a")
            },
            "--pin:",
        ),
        (
            ProxyArgs {
                log_format: Some("x".into()),
                ..allow("a")
            },
            "--log-format: unknown format",
        ),
        (
            ProxyArgs {
                workers: Some(257),
                ..allow("a")
            },
            "--workers: must be 1 to 256",
        ),
        (
            ProxyArgs {
                listen: Some("0.0.0.0:8080".into()),
                ..allow("a")
            },
            "not a loopback address",
        ),
        (
            ProxyArgs {
                admin: Some("0.0.0.0:9090".into()),
                ..allow("a")
            },
            "--admin 0.0.0.0:9090",
        ),
        (
            ProxyArgs {
                upstream: Some("https://a/b".into()),
                ..Default::default()
            },
            "--upstream: invalid upstream URL",
        ),
    ];
    for (args, want) in rows {
        let e = resolve(&args).unwrap_err();
        assert!(e.contains(want), "{args:?}: {e}");
    }
}

#[test]
fn flags_win_over_the_file_and_lists_add_up() {
    let file = "listen = \"127.0.0.1:1\"\nallow = [\"a\"]\nallow_legacy = [\"old\"]\n\
                handshake_timeout_ms = 5\n[[host]]\nmatch = \"p:8443\"\npin = \"1.0\"\n\
                allow_legacy = true\n[[host]]\nmatch = \"m\"\nca_file = \"m.pem\"\n";
    let s = with_file(
        file,
        ProxyArgs {
            listen: Some("127.0.0.1:2".into()),
            allow: vec!["b".into()],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(s.listen.port(), 2);
    let allow: Vec<String> = s.routing.allow.iter().map(ToString::to_string).collect();
    assert_eq!(allow, ["a", "b"]);
    assert_eq!(s.layer.allow_legacy, ["old", "p:8443"]);
    assert_eq!(s.layer.pins, [("p:8443".to_string(), TlsVersion::Tls1_0)]);
    assert_eq!(s.layer.handshake_timeout, Duration::from_millis(5));
    assert_eq!(s.host_layers.len(), 1);
    assert_eq!(s.host_layers[0].layer.ca_file, Some(PathBuf::from("m.pem")));
    assert_eq!(s.host_layers[0].layer.pins, s.layer.pins);
}

#[test]
fn public_addresses_need_the_flag() {
    let s = resolve(&ProxyArgs {
        listen: Some("0.0.0.0:8080".into()),
        listen_public: true,
        ..allow("a")
    })
    .unwrap();
    assert!(!s.listen.ip().is_loopback());
}
