use super::*;

/// What a row expects: the URL as shown, and the decoded credentials.
type Want = Result<(&'static str, Option<(&'static str, &'static str)>), &'static str>;

/// Parses each row's URL and checks what it expects.
fn check(rows: &[(&str, Want)]) {
    for (s, want) in rows {
        match (ProxyUrl::parse(s), want) {
            (Ok(u), Ok((shown, creds))) => {
                assert_eq!(u.to_string(), *shown, "{s}");
                assert_eq!(format!("{u:?}"), format!("ProxyUrl({shown})"), "{s}");
                let got = u
                    .credentials()
                    .map(|c| (c.user.as_str(), c.password.as_str()));
                assert_eq!(got, *creds, "{s}");
            }
            (Err(e), Err(w)) => {
                assert!(e.contains(w), "{s}: {e}");
                for secret in ["secret", "cret", "%FF"] {
                    assert!(
                        !e.contains(secret),
                        "{s}: the error shows the password: {e}"
                    );
                }
            }
            (got, _) => panic!("{s}: {got:?}"),
        }
    }
}

#[test]
fn proxy_urls_parse_by_scheme_with_percent_decoded_credentials() {
    check(&[
        ("http://127.0.0.1:3128", Ok(("http://127.0.0.1:3128", None))),
        (
            "http://proxy.corp:8080/",
            Ok(("http://proxy.corp:8080", None)),
        ),
        ("HTTP://proxy.corp", Ok(("http://proxy.corp:80", None))),
        ("http://[::1]:3128", Ok(("http://[::1]:3128", None))),
        (
            "socks5://proxy.corp",
            Ok(("socks5://proxy.corp:1080", None)),
        ),
        (
            "socks5h://127.0.0.1:1081",
            Ok(("socks5h://127.0.0.1:1081", None)),
        ),
        (
            "http://user:secret@proxy.corp:3128",
            Ok(("http://user:***@proxy.corp:3128", Some(("user", "secret")))),
        ),
        (
            "socks5h://j%40corp:p%40ss%3Aw%2Frd%25@127.0.0.1:1080",
            Ok((
                "socks5h://j%40corp:***@127.0.0.1:1080",
                Some(("j@corp", "p@ss:w/rd%")),
            )),
        ),
        // '@' in a password, unencoded: the last '@' ends the credentials.
        (
            "http://user:p@ss@proxy.corp:3128",
            Ok(("http://user:***@proxy.corp:3128", Some(("user", "p@ss")))),
        ),
        // A password may contain ':'; a user without one has an empty password.
        (
            "http://u:a:b@p:1",
            Ok(("http://u:***@p:1", Some(("u", "a:b")))),
        ),
        ("http://u@p:1", Ok(("http://***@p:1", Some(("u", ""))))),
        (
            "http://apikey:@p:1",
            Ok(("http://***@p:1", Some(("apikey", "")))),
        ),
        // A user name as written; `%EF%BF%BD` is U+FFFD spelled out, which is UTF-8.
        (
            "http://us%65r:x@p:1",
            Ok(("http://us%65r:***@p:1", Some(("user", "x")))),
        ),
        (
            "http://u:%ef%bf%bd@p:1",
            Ok(("http://u:***@p:1", Some(("u", "\u{FFFD}")))),
        ),
    ]);
}

#[test]
fn a_bad_proxy_url_is_an_error_that_says_why_and_shows_no_password() {
    check(&[
        ("https://proxy.corp", Err("expected http://HOST:PORT")),
        ("ftp://proxy.corp:21", Err("expected http://HOST:PORT")),
        ("socks4://proxy.corp", Err("expected http://HOST:PORT")),
        ("proxy.corp:3128", Err("expected http://HOST:PORT")),
        ("", Err("invalid proxy URL")),
        ("http://proxy.corp/x", Err("no path")),
        ("http://u:se/cret@proxy.corp", Err("percent-encode")),
        ("http://@proxy.corp", Err("nothing before '@'")),
        ("http://u:%FF@proxy.corp", Err("password is not UTF-8")),
        // U+FFFD spelled out beside a byte that is not UTF-8: still not UTF-8.
        (
            "http://u:%EF%BF%BD%FF@proxy.corp",
            Err("password is not UTF-8"),
        ),
        (
            "http://%EF%BF%BD%C3:x@proxy.corp",
            Err("user name is not UTF-8"),
        ),
        (
            "http://%C3:secret@proxy.corp",
            Err("user name is not UTF-8"),
        ),
        // Matcher would not read it: a clear error rather than no proxy.
        (
            "http://u:se cret@proxy.corp",
            Err("percent-encode the characters"),
        ),
        (
            "http://u:se\"cret@proxy.corp",
            Err("percent-encode the characters"),
        ),
        (
            &format!("socks5://u:{}@p", "x".repeat(256)),
            Err("at most 255 bytes"),
        ),
        ("http://u:secret@", Err("expected HOST or HOST:PORT")),
        ("http://proxy.corp:99999", Err("from 1 to 65535")),
        ("socks5h://proxy.corp:0", Err("from 1 to 65535")),
        ("http://", Err("expected HOST or HOST:PORT")),
    ]);
}

#[test]
fn credentials_stay_out_of_debug_and_the_url_is_matchers_to_read() {
    let u = ProxyUrl::parse("http://Aladdin:open%20sesame@proxy:3128").unwrap();
    let c = format!("{:?}", u.credentials().unwrap());
    assert!(c.contains("Aladdin") && !c.contains("sesame"), "{c}");
    let key = ProxyUrl::parse("http://k3y@proxy:3128").unwrap();
    let c = format!("{:?}", key.credentials().unwrap());
    assert!(!c.contains("k3y"), "{c}");
    assert_eq!(u.scheme(), Scheme::Http);
    assert_eq!(u.matcher_input(), "http://Aladdin:open%20sesame@proxy:3128");
    let socks = ProxyUrl::parse("socks5h://a:p@ss@p/").unwrap();
    assert_eq!(socks.scheme(), Scheme::Socks5h);
    assert_eq!(socks.matcher_input(), "socks5h://a:p%40ss@p:1080");
    assert!(matched(socks.matcher_input()).is_some());
}
