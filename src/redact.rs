//! Secrets out of what is shown: one rule for every URL that may carry credentials (an
//! outbound proxy's, a Redis server's) before it reaches a log line, an error or a `Debug`.

/// A URL as written (a proxy URL, a Redis URL), fit for a log line or an error message:
/// whatever stands between `://` and the last `@` becomes `user:***` (`***` when there is no
/// password: the user name may be a key), a port that is not a number (a password whose
/// `@HOST` was forgotten) becomes `***`, and so does the value of a query parameter that
/// carries credentials (`redis+unix:///run/redis.sock?pass=...`, as redis-rs reads them).
///
/// ```
/// assert_eq!(
///     tls_fallback::redact_url("redis://app:s3cret@redis.internal:6379/0"),
///     "redis://app:***@redis.internal:6379/0"
/// );
/// ```
pub fn url(s: &str) -> String {
    hide_query_secrets(&userinfo_and_port(s))
}

/// Query parameters whose value is a credential.
const SECRET_PARAMS: [&str; 7] = [
    "pass", "password", "passwd", "user", "username", "token", "auth",
];

/// `s` with the value of every [`SECRET_PARAMS`] parameter of its query as `***` (the query
/// starts at the first `?` after the last `@`, so a `?` in a hidden password is not one).
fn hide_query_secrets(s: &str) -> String {
    let from = s.rfind('@').map_or(0, |at| at + 1);
    let Some(q) = s[from..].find('?').map(|q| from + q + 1) else {
        return s.to_string();
    };
    let (end, fragment) = match s[q..].find('#') {
        Some(f) => (q + f, &s[q + f..]),
        None => (s.len(), ""),
    };
    let params: Vec<String> = s[q..end]
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str()) => {
                format!("{k}=***")
            }
            _ => p.to_string(),
        })
        .collect();
    format!("{}{}{fragment}", &s[..q], params.join("&"))
}

/// The userinfo and a port that is not a number, hidden.
fn userinfo_and_port(s: &str) -> String {
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
            // redis-rs reads a unix socket's credentials from the query.
            (
                "redis+unix:///run/redis.sock?db=0&pass=s3cret",
                "redis+unix:///run/redis.sock?db=0&pass=***",
            ),
            (
                "redis+unix:///r.sock?User=app&Password=s3cret#x",
                "redis+unix:///r.sock?User=***&Password=***#x",
            ),
            ("redis://:p?ss@r:1/0?db=1", "redis://:***@r:1/0?db=1"),
        ];
        for (u, shown) in rows {
            assert_eq!(url(u), shown, "{u}");
        }
    }
}
