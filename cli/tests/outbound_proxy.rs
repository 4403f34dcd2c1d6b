//! Outbound proxies with real servers nobody here wrote: `get --proxy` and `proxy --via` (flag,
//! `HTTPS_PROXY`, config file) through microsocks (SOCKS5, with and without credentials) and
//! tinyproxy (HTTP CONNECT with `BasicAuth`). Every rung of a walk is one connection through
//! the proxy; a refusal is a connect error naming the proxy, never a fallback, and the password
//! shows nowhere.

#[path = "../../proxy/tests/proxy_support/mod.rs"]
mod proxy_support;

use proxy_support::*;
use serde_json::Value;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// The SOCKS5 user and password microsocks demands, and how a URL spells the password.
const USER: &str = "ann";
const PASSWORD: &str = "p@ss:w/rd";
const PASSWORD_IN_URL: &str = "p%40ss%3Aw%2Frd";
/// What a row sends when it sends wrong credentials: it must show nowhere.
const WRONG: &str = "wr0ng-pa55";

/// One `get` row: (flag, environment, exit code, the version reached or a message part).
type GetRow = (Vec<String>, Vec<(&'static str, String)>, i32, String);

fn flag(url: String) -> Vec<String> {
    vec!["--proxy".into(), url]
}

/// Runs the rows against a gateway that closes above TLS 1.0; a success walked the whole
/// ladder through the proxy, a failure is a connect error and no hello reached the gateway.
async fn check_get_rows(rows: Vec<GetRow>) {
    let (_s, em) = legacy_gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&dir);
    for (flag, env, code, want) in rows {
        em.clear();
        let r = get_json(&em.url(), &ca, &flag, &env).await;
        let at = format!("{flag:?} {env:?}: {}{}", r.stdout, r.stderr);
        assert_eq!(r.code, code, "{at}");
        for secret in [PASSWORD, PASSWORD_IN_URL, WRONG, "secret"] {
            assert!(
                !r.stdout.contains(secret) && !r.stderr.contains(secret),
                "{at}"
            );
        }
        let v = json(&r.stdout);
        match code {
            0 => {
                assert_eq!(v["tls_version"], want.as_str(), "{at}");
                assert_eq!(
                    ladder_seen(&em),
                    LEGACY_WALK,
                    "every rung went through: {at}"
                );
            }
            _ => {
                let kind = if code == 2 { "bad_input" } else { "connect" };
                assert_eq!(v["error"]["kind"], kind, "{at}");
                let msg = v["error"]["message"].as_str().unwrap();
                assert!(msg.contains(&want), "{at}");
                assert_eq!(em.count(), 0, "a refusal is no fallback: {at}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_through_socks5_walks_inside_the_proxy_and_a_refusal_names_it() {
    let open = Microsocks::start(None).await;
    let locked = Microsocks::start(Some((USER, PASSWORD))).await;
    let (o, l) = (open.addr(), locked.addr());
    let good = format!("socks5h://{USER}:{PASSWORD_IN_URL}@{l}");
    let wrong = format!("socks5h://{USER}:{WRONG}@{l}");
    let rows: Vec<GetRow> = vec![
        // socks5h: microsocks resolves `localhost`; socks5: this side does.
        (flag(format!("socks5h://{o}")), vec![], 0, "1.0".into()),
        (flag(format!("socks5://{o}")), vec![], 0, "1.0".into()),
        (flag(good.clone()), vec![], 0, "1.0".into()),
        (vec![], vec![("HTTPS_PROXY", good)], 0, "1.0".into()),
        (
            flag(wrong.clone()),
            vec![],
            1,
            format!(
                "the SOCKS5 proxy socks5h://{USER}:***@{l} did not open a connection to localhost:"
            ),
        ),
        (
            flag(wrong.clone()),
            vec![],
            1,
            "it refused the credentials".into(),
        ),
        (
            vec![],
            vec![("HTTPS_PROXY", wrong.clone())],
            1,
            "refused the credentials".into(),
        ),
        (
            flag(format!("socks5h://{l}")),
            vec![],
            1,
            "it requires credentials".into(),
        ),
        (
            vec![],
            vec![
                ("HTTPS_PROXY", wrong.clone()),
                ("NO_PROXY", "localhost".into()),
            ],
            0,
            "1.0".into(),
        ),
        (
            flag(format!("socks4://{USER}:{WRONG}@{l}")),
            vec![],
            2,
            "invalid proxy URL".into(),
        ),
    ];
    check_get_rows(rows).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_through_a_connect_proxy_with_credentials_and_a_407_says_they_were_refused() {
    let tiny = Tinyproxy::start(true).await;
    let t = format!("127.0.0.1:{}", tiny.port);
    let rows: Vec<GetRow> = vec![
        // `s%65cret` is `secret` percent-encoded: what tinyproxy's `BasicAuth user secret` wants.
        (
            flag(format!("http://user:s%65cret@{t}")),
            vec![],
            0,
            "1.0".into(),
        ),
        (
            vec![],
            vec![("HTTPS_PROXY", format!("http://user:s%65cret@{t}"))],
            0,
            "1.0".into(),
        ),
        (
            flag(format!("http://user:{WRONG}@{t}")),
            vec![],
            1,
            format!("the proxy http://user:***@{t} did not open a tunnel to localhost:"),
        ),
        (
            flag(format!("http://user:{WRONG}@{t}")),
            vec![],
            1,
            // tinyproxy answers wrong credentials with 401, missing ones with 407.
            "it refused the credentials of user \"user\" (it answered 401 Unauthorized)".into(),
        ),
        (
            flag(format!("http://{t}")),
            vec![],
            1,
            "proxy authorization required (it answered 407 Proxy Authentication Required)".into(),
        ),
        (
            flag(format!("ftp://user:{WRONG}@{t}")),
            vec![],
            2,
            "invalid proxy URL".into(),
        ),
    ];
    check_get_rows(rows).await;
}

/// How a `proxy --via` row gives the proxy: the flag or the config file.
#[derive(Debug, Clone, Copy)]
enum Source {
    Flag,
    File,
}

async fn start_proxy_via(source: Source, via: &str) -> Proxy {
    let base = ["--allow", "localhost", "--allow-legacy", "localhost"];
    match source {
        Source::Flag => {
            let mut args = base.to_vec();
            args.extend(["--via", via]);
            Proxy::start(&args).await
        }
        Source::File => {
            let dir = tempfile::tempdir().unwrap();
            let cfg = dir.path().join("proxy.toml");
            std::fs::write(&cfg, format!("via = {via:?}\n")).unwrap();
            let mut args = base.to_vec();
            args.extend(["--config", cfg.to_str().unwrap()]);
            Proxy::start_in(dir, &args).await
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_proxy_via_socks5_or_connect_with_credentials_and_refusals_are_502_connect() {
    let socks = Microsocks::start(Some((USER, PASSWORD))).await;
    let tiny = Tinyproxy::start(true).await;
    let (s, t) = (socks.addr(), format!("127.0.0.1:{}", tiny.port));
    // (source, via URL, status, a message part of the 502)
    let rows = [
        (
            Source::Flag,
            format!("socks5://{USER}:{PASSWORD_IN_URL}@{s}"),
            200,
            "",
        ),
        (
            Source::File,
            format!("socks5h://{USER}:{PASSWORD_IN_URL}@{s}"),
            200,
            "",
        ),
        (Source::Flag, format!("http://user:secret@{t}"), 200, ""),
        (
            Source::File,
            format!("socks5h://{USER}:{WRONG}@{s}"),
            502,
            "refused the credentials",
        ),
        (
            Source::Flag,
            format!("http://user:{WRONG}@{t}"),
            502,
            "refused the credentials",
        ),
    ];
    let (_server, em) = legacy_gateway().await;
    let url = format!("http://localhost:{}/", em.addr().port());
    for (source, via, status, want) in rows {
        em.clear();
        let proxy = start_proxy_via(source, &via).await;
        let (got, headers, body) = curl_via(&proxy, &[], &url).await;
        let at = format!("{source:?} {via}: {body}");
        assert_eq!(got, status, "{at}");
        if status == 200 {
            assert_eq!(headers["x-tls-fallback-version"], "1.0", "{at}");
            assert_eq!(
                ladder_seen(&em),
                LEGACY_WALK,
                "every rung went through: {at}"
            );
        } else {
            assert_eq!(headers["x-tls-fallback-error"], "connect", "{at}");
            let msg = json(&body)["error"]["message"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(msg.contains(want) && msg.contains(":***@"), "{at}");
            assert_eq!(em.count(), 0, "a refusal is no fallback: {at}");
            // The access log has had time to be written.
            wait_line(&proxy.stdout, "GET localhost:").await;
        }
        let logs = [&proxy.stdout, &proxy.stderr].map(|l| l.lock().unwrap().join("\n"));
        for secret in [PASSWORD, PASSWORD_IN_URL, WRONG, "secret"] {
            assert!(!body.contains(secret), "{at}");
            assert!(!logs.iter().any(|l| l.contains(secret)), "{at}: {logs:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_cannot_reach_the_target_is_a_connect_error_saying_what_it_answered() {
    let socks = Microsocks::start(None).await;
    let tiny = Tinyproxy::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&dir);
    // Nothing listens there: each proxy's connection to it is refused.
    let dead = format!("https://localhost:{}/", free_port());
    // (proxy, message parts)
    let rows = [
        (
            format!("socks5h://{}", socks.addr()),
            "did not open a connection to localhost:",
            ": it refused the connection (",
        ),
        (
            tiny.url(),
            "did not open a tunnel to localhost:",
            ": it answered 5",
        ),
    ];
    for (proxy, opened, answered) in rows {
        let r = get_json(&dead, &ca, &flag(proxy.clone()), &[]).await;
        assert_eq!(r.code, 1, "{proxy}: {}{}", r.stdout, r.stderr);
        let v = json(&r.stdout);
        assert_eq!(v["error"]["kind"], "connect", "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        for part in [proxy.as_str(), opened, answered] {
            assert!(msg.contains(part), "{proxy}: {msg}");
        }
        assert_eq!(
            v["attempts"].as_array().map(Vec::len),
            Some(1),
            "no fallback: {v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_through_a_connect_proxy_walks_inside_the_tunnel_and_a_407_names_the_proxy() {
    let open = Tinyproxy::start(false).await;
    let locked = Tinyproxy::start(true).await;
    let (_s, em) = legacy_gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&dir);
    let url = em.url();
    let get = |extra: Vec<String>, env: Vec<(&'static str, String)>| {
        let (ca, url) = (ca.clone(), url.clone());
        async move { get_json(&url, &ca, &extra, &env).await }
    };
    // (flag, environment, exit code, error kind or the version reached)
    type Env = Vec<(&'static str, String)>;
    let rows: Vec<(Vec<String>, Env, i32, &str)> = vec![
        (vec!["--proxy".into(), open.url()], vec![], 0, "1.0"),
        (vec!["--proxy".into(), locked.url()], vec![], 1, "connect"),
        (vec![], vec![("HTTPS_PROXY", locked.url())], 1, "connect"),
        (
            vec![],
            vec![
                ("HTTPS_PROXY", locked.url()),
                ("NO_PROXY", "localhost".into()),
            ],
            0,
            "1.0",
        ),
        (
            vec!["--proxy".into(), "https://x:1".into()],
            vec![],
            2,
            "bad_input",
        ),
    ];
    for (flag, env, code, want) in rows {
        em.clear();
        let r = get(flag.clone(), env.clone()).await;
        assert_eq!(r.code, code, "{flag:?} {env:?}: {}{}", r.stdout, r.stderr);
        let v = json(&r.stdout);
        if code == 0 {
            assert_eq!(v["tls_version"], want, "{v}");
            // Every rung went through (one CONNECT each): the emulator saw the whole walk.
            assert_eq!(ladder_seen(&em), LEGACY_WALK, "{flag:?} {env:?}");
        } else {
            assert_eq!(v["error"]["kind"], want, "{v}");
        }
        if want == "connect" {
            let msg = v["error"]["message"].as_str().unwrap();
            assert!(msg.contains(&locked.url()), "{msg}");
            assert!(msg.contains("authorization required"), "{msg}");
            assert_eq!(
                em.count(),
                0,
                "a 407 is no fallback: no hello reached the gateway"
            );
        }
    }
}
