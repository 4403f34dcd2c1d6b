//! Table tests of the configuration: file errors with file, line and key; flag errors; merging.

use super::*;

fn with_file(text: &str, args: ProxyArgs) -> Result<Settings, String> {
    let (dir, r) = resolve_with_file(text, args);
    r.map_err(|e| e.to_string().replace(&dir, "DIR"))
}

/// Resolves with `text` as the `--config` file (in a temporary directory, also returned).
fn resolve_with_file(text: &str, args: ProxyArgs) -> (String, Result<Settings, ConfigError>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, text).unwrap();
    let r = resolve(&ProxyArgs {
        config: Some(path),
        ..args
    });
    (dir.path().display().to_string(), r)
}

/// `allow("a")` changed by `set`.
fn flags(set: impl FnOnce(&mut ProxyArgs)) -> ProxyArgs {
    let mut a = allow("a");
    set(&mut a);
    a
}

fn allow(p: &str) -> ProxyArgs {
    ProxyArgs {
        allow: vec![p.into()],
        ..Default::default()
    }
}

/// Files and what their error must contain.
const BAD_FILES: &[(&str, &str)] = &[
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
    (
        "allow = [\"a\"]\nstall_timeout_ms = 0\n",
        "DIR/proxy.toml:2: key `stall_timeout_ms`: must be above 0",
    ),
    (
        "allow = [\"a\"]\ndecision_ttl_ms = 0\n",
        "DIR/proxy.toml:2: key `decision_ttl_ms`: must be above 0",
    ),
    (
        "allow = [\"a\"]\nfloor = \"2.0\"\n",
        "DIR/proxy.toml:2: key `floor`: unknown TLS version \"2.0\"",
    ),
    (
        "allow = [\"a\"]\nfloor = 1.2\n",
        "DIR/proxy.toml:2: key `floor`: invalid type",
    ),
    (
        "allow = [\"a\"]\nclient_cert = \"c.pem\"\n",
        "DIR/proxy.toml:2: key `client_cert`: client_cert and client_key go together",
    ),
    // A list item on its own line: that line.
    (
        "allow = [\n  \"gw.example\",\n  \"bad host\",\n]\n",
        "DIR/proxy.toml:3: key `allow`: invalid host pattern \"bad host\"",
    ),
    // Keys in tables, dotted keys, and tables between `[[host]]` sections.
    (
        "allow = [\"a\"]\n[limits]\nbogus = 1\n",
        "DIR/proxy.toml:3: key `bogus`: unknown field `bogus`",
    ),
    (
        "allow = [\"a\"]\nlimits.idle_timeout_ms = \"x\"\n",
        "DIR/proxy.toml:2: key `idle_timeout_ms`: invalid type",
    ),
    (
        "allow = [\"a\"]\n[[host]]\nmatch = \"a\"\n[limits]\nmax_connections = \"x\"\n\
         [[host]]\nmatch = \"b\"\n",
        "DIR/proxy.toml:5: key `max_connections`: invalid type",
    ),
    (
        "allow = [\"a\"]\n[[host]]\nmatch = \"a\"\n[[host]]\nmatch = \"b\"\nca_file = 1\n",
        "DIR/proxy.toml:6: key `ca_file`: invalid type",
    ),
    // `--config` is a flag only.
    (
        "allow = [\"a\"]\nconfig = \"other.toml\"\n",
        "DIR/proxy.toml:2: key `config`: unknown field `config`",
    ),
    // A syntax error in a value names the key; elsewhere, the line.
    (
        "allow = [\"a\"]\nlisten = \n",
        "DIR/proxy.toml:2: key `listen`: ",
    ),
    (
        "allow = [\"a\"]\nfoo bar\n",
        "DIR/proxy.toml:2: key with no value",
    ),
];

#[test]
fn bad_files_name_the_file_line_and_key() {
    for (text, want) in BAD_FILES {
        let e = with_file(text, ProxyArgs::default()).unwrap_err();
        assert!(e.contains(want), "{text:?}: {e}");
    }
}

#[test]
fn a_key_with_a_newline_cannot_forge_a_log_line() {
    let text = "allow = [\"a\"]\n\"x\\n2026-12-07T00:00:00Z ERROR forged\" = 1\n";
    let e = with_file(text, ProxyArgs::default()).unwrap_err();
    assert!(!e.contains('\n'), "{e}");
    assert!(e.contains("DIR/proxy.toml:2: key `x\\n2026"), "{e}");
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
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("cannot read the config file /nonexistent/proxy.toml"),
        "{e}"
    );
}

#[test]
fn no_allow_and_no_upstream_refuses_to_start() {
    let e = resolve(&ProxyArgs::default()).unwrap_err().to_string();
    assert!(e.contains("--allow") && e.contains("--upstream"), "{e}");
}

#[test]
fn flag_errors_name_the_flag() {
    let rows: Vec<(ProxyArgs, &str)> = vec![
        (
            flags(|a| a.listen = Some("x".into())),
            "--listen: invalid address",
        ),
        (
            flags(|a| a.handshake_timeout_ms = Some(0)),
            "--handshake-timeout-ms: must be above 0",
        ),
        (allow("a b"), "--allow: invalid host pattern"),
        (flags(|a| a.pin = vec!["a".into()]), "--pin:"),
        (
            flags(|a| a.log_format = Some("x".into())),
            "--log-format: unknown format",
        ),
        (
            flags(|a| a.workers = Some(257)),
            "--workers: must be 1 to 256",
        ),
        (
            flags(|a| a.listen = Some("0.0.0.0:8080".into())),
            "not a loopback address",
        ),
        (
            flags(|a| a.admin = Some("0.0.0.0:9090".into())),
            "--admin 0.0.0.0:9090",
        ),
        (
            ProxyArgs {
                upstream: Some("https://a/b".into()),
                ..Default::default()
            },
            "--upstream: invalid upstream URL",
        ),
        (
            flags(|a| a.stall_timeout_ms = Some(0)),
            "--stall-timeout-ms: must be above 0",
        ),
        (
            flags(|a| a.decision_ttl_ms = Some(0)),
            "--decision-ttl-ms: must be above 0",
        ),
        (
            flags(|a| a.floor = Some("1.4".into())),
            "--floor: unknown TLS version \"1.4\"",
        ),
        (
            flags(|a| a.client_key = Some("k.pem".into())),
            "--client-key: client_cert and client_key go together",
        ),
    ];
    for (args, want) in rows {
        let e = resolve(&args).unwrap_err().to_string();
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

#[test]
fn errors_say_where_in_their_variant() {
    let (_, r) = resolve_with_file(
        "allow = [\"a\"]\n\n[limits]\nmax_connections = 0\n",
        ProxyArgs::default(),
    );
    let e = r.unwrap_err();
    assert!(
        matches!(&e, ConfigError::Key { line: 4, key, .. } if key == "max_connections"),
        "{e:?}"
    );
    let e = resolve(&ProxyArgs {
        workers: Some(0),
        ..allow("a")
    })
    .unwrap_err();
    assert!(
        matches!(&e, ConfigError::Flag { flag, .. } if flag == "workers"),
        "{e:?}"
    );
    assert!(matches!(
        resolve(&ProxyArgs::default()),
        Err(ConfigError::NothingToProxy)
    ));
}

#[test]
fn the_library_settings_come_from_the_file_or_the_flags() {
    let file = "allow = [\"a\"]\nstall_timeout_ms = 700\ndecision_ttl_ms = 60000\n\
                floor = \"1.1\"\n[[host]]\nmatch = \"m\"\nca_file = \"m.pem\"\n";
    let s = with_file(
        file,
        ProxyArgs {
            floor: Some("tls1.3".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(s.layer.stall_timeout, Some(Duration::from_millis(700)));
    assert_eq!(s.layer.decision_ttl, Some(Duration::from_secs(60)));
    assert_eq!(s.layer.floor, Some(TlsVersion::Tls1_3));
    let host = &s.host_layers[0].layer;
    assert_eq!(
        (host.stall_timeout, host.decision_ttl, host.floor),
        (s.layer.stall_timeout, s.layer.decision_ttl, s.layer.floor)
    );
    // Unset, the library's defaults apply.
    let s = resolve(&allow("a")).unwrap();
    assert_eq!(
        (s.layer.stall_timeout, s.layer.decision_ttl, s.layer.floor),
        (None, None, None)
    );
}

#[test]
fn every_builder_setting_has_a_file_key_and_a_flag() {
    let file = "allow = [\"a\"]\nsystem_roots = false\ncache_capacity = 50\n\
                session_cache_capacity = 0\nredis = \"redis://r\"\nredis_read_timeout_ms = 20\n\
                redis_lock_time_ms = 900\nredis_namespace = \"fleet-a\"\n\
                [[host]]\nmatch = \"m\"\nca_file = \"m.pem\"\n";
    let s = with_file(file, ProxyArgs::default()).unwrap();
    let want = RedisTuning {
        read_timeout: Some(Duration::from_millis(20)),
        lock_time: Some(Duration::from_millis(900)),
        namespace: Some("fleet-a".into()),
    };
    for l in [&s.layer, &s.host_layers[0].layer] {
        assert_eq!(l.system_roots, Some(false));
        assert_eq!(l.cache_capacity, Some(50));
        assert_eq!(l.session_cache_capacity, Some(0));
        assert_eq!(l.redis_tuning, want);
    }
    let flags = ProxyArgs::from_flags([
        "--allow",
        "a",
        "--system-roots",
        "false",
        "--cache-capacity",
        "7",
        "--session-cache-capacity",
        "3",
        "--redis",
        "redis://r",
        "--redis-namespace",
        "b",
    ])
    .unwrap();
    let s = resolve(&flags).unwrap();
    assert_eq!(
        (s.layer.system_roots, s.layer.cache_capacity),
        (Some(false), Some(7))
    );
    assert_eq!(s.layer.session_cache_capacity, Some(3));
    assert_eq!(s.layer.redis_tuning.namespace.as_deref(), Some("b"));
    // Unset, the library's defaults apply.
    let s = resolve(&allow("a")).unwrap();
    assert_eq!((s.layer.system_roots, s.layer.cache_capacity), (None, None));
    assert_eq!(s.layer.redis_tuning, RedisTuning::default());
}

#[test]
fn bad_store_settings_say_where_and_why() {
    let rows = [
        (
            "allow = [\"a\"]\ncache_capacity = 0\n",
            "DIR/proxy.toml:2: key `cache_capacity`: must be above 0",
        ),
        (
            "allow = [\"a\"]\nredis_namespace = \"x\"\n",
            "DIR/proxy.toml:2: key `redis_namespace`: needs redis",
        ),
        (
            "allow = [\"a\"]\nredis_read_timeout_ms = 10\n",
            "DIR/proxy.toml:2: key `redis_read_timeout_ms`: needs redis",
        ),
        (
            "allow = [\"a\"]\nredis = \"redis://r\"\nredis_lock_time_ms = 0\n",
            "DIR/proxy.toml:3: key `redis_lock_time_ms`: must be above 0",
        ),
        (
            "allow = [\"a\"]\nredis = \"redis://r\"\nredis_namespace = \"a b\"\n",
            "DIR/proxy.toml:3: key `redis_namespace`: invalid namespace \"a b\"",
        ),
        (
            "allow = [\"a\"]\nsystem_roots = \"no\"\n",
            "DIR/proxy.toml:2: key `system_roots`: invalid type",
        ),
    ];
    for (text, want) in rows {
        let e = with_file(text, ProxyArgs::default()).unwrap_err();
        assert!(e.contains(want), "{text}: {e}");
    }
}
