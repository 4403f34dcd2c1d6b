use super::*;

/// What a row expects: the URL as shown, and the decoded credentials.
type Want = Result<(&'static str, Option<(&'static str, &'static str)>), &'static str>;

#[test]
fn proxy_urls_parse_by_scheme_with_percent_decoded_credentials() {
    let rows: &[(&str, Want)] = &[
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
        ("https://proxy.corp", Err("expected http://HOST:PORT")),
        ("socks4://proxy.corp", Err("expected http://HOST:PORT")),
        ("proxy.corp:3128", Err("expected http://HOST:PORT")),
        ("", Err("invalid proxy URL")),
        ("http://proxy.corp/x", Err("no path")),
        ("http://u:se/cret@proxy.corp", Err("percent-encode")),
        ("http://@proxy.corp", Err("nothing before '@'")),
        ("http://u:%FF@proxy.corp", Err("password is not UTF-8")),
        ("http://u:secret@", Err("expected HOST or HOST:PORT")),
        ("http://proxy.corp:99999", Err("from 1 to 65535")),
        ("socks5h://proxy.corp:0", Err("from 1 to 65535")),
        ("http://", Err("expected HOST or HOST:PORT")),
    ];
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
fn credentials_become_a_sensitive_basic_header_and_stay_out_of_debug() {
    let u = ProxyUrl::parse("http://Aladdin:open%20sesame@proxy:3128").unwrap();
    let h = u.basic_auth().unwrap();
    // RFC 7617's example.
    assert_eq!(h.to_str().unwrap(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    assert!(h.is_sensitive());
    let c = format!("{:?}", u.credentials().unwrap());
    assert!(c.contains("Aladdin") && !c.contains("sesame"), "{c}");
    assert_eq!(
        ProxyUrl::parse("http://proxy:3128").unwrap().basic_auth(),
        None
    );
    assert_eq!(u.connect_uri().to_string(), "http://proxy:3128/");
    assert_eq!(u.scheme(), Scheme::Http);
}
