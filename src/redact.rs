//! Secrets out of what is shown: one rule for every URL that may carry credentials (an
//! outbound proxy's, a Redis server's) before it reaches a log line, an error or a `Debug`.

/// A URL as written (a proxy URL, a Redis URL), fit for a log line or an error message:
/// whatever stands between `://` and the last `@` becomes `user:***` (`***` when there is no password: the user name may be a key),
/// and a port that is not a number (a password whose `@HOST` was
/// forgotten) becomes `***`.
#[cfg_attr(not(any(feature = "redis", feature = "outbound")), allow(dead_code))]
pub(crate) fn url(s: &str) -> String {
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), s),
    };
    if let Some((userinfo, host)) = rest.rsplit_once('@') {
        return match userinfo.split_once(':') {
            Some((user, password)) if !password.is_empty() => {
                format!("{scheme}{user}:***@{host}")
            }
            // A user name alone (`KEY@`, `KEY:@`) may be an API key: hidden too.
            _ => format!("{scheme}***@{host}"),
        };
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rsplit_once(':') {
        // `[::1]` splits as `[::` and `1]`: an IPv6 host has no port unless bracketed.
        Some((host, port))
            if !port.bytes().all(|b| b.is_ascii_digit())
                && (host.ends_with(']') || !host.contains(':')) =>
        {
            format!("{scheme}{host}:***{}", &rest[end..])
        }
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_everything_between_the_scheme_and_the_last_at() {
        let rows = [
            ("http://proxy:3128", "http://proxy:3128"),
            (
                "http://user:secret@proxy:3128",
                "http://user:***@proxy:3128",
            ),
            (
                "http://user:se@cret@proxy:3128",
                "http://user:***@proxy:3128",
            ),
            ("http://user:se/cret@proxy", "http://user:***@proxy"),
            ("socks5h://user@proxy", "socks5h://***@proxy"),
            ("http://apikey:@proxy:1", "http://***@proxy:1"),
            ("user:secret@proxy:3128", "user:***@proxy:3128"),
            // The '@HOST' was forgotten: what stands for the port may be the password.
            ("http://user:secret", "http://user:***"),
            ("http://user:secret/", "http://user:***/"),
            ("http://[::1]:3128", "http://[::1]:3128"),
            ("http://[::1]", "http://[::1]"),
            ("http://[::1]:secret", "http://[::1]:***"),
            ("ftp://x", "ftp://x"),
        ];
        for (s, shown) in rows {
            assert_eq!(url(s), shown, "{s}");
        }
    }

    #[test]
    fn redis_passwords_never_reach_the_logs() {
        let rows = [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://:s3cret@r:6379/0", "redis://:***@r:6379/0"),
            ("rediss://app:s3cret@r:6380", "rediss://app:***@r:6380"),
            ("redis://app:p@ss@r/1", "redis://app:***@r/1"),
            (
                "redis://app:s3cr/t@127.0.0.1:6379",
                "redis://app:***@127.0.0.1:6379",
            ),
            ("redis://app:a?b#c/d@r:1/0", "redis://app:***@r:1/0"),
            ("redis://s3cr/token@r", "redis://***@r"),
            ("not a url", "not a url"),
        ];
        for (u, shown) in rows {
            assert_eq!(url(u), shown, "{u}");
        }
    }
}
