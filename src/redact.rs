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
    userinfo_and_port(&hide_query_secrets(s))
}

/// Query parameters whose value is a credential.
const SECRET_PARAMS: [&str; 7] = [
    "pass", "password", "passwd", "user", "username", "token", "auth",
];

/// `s` with the value of every [`SECRET_PARAMS`] parameter after its first `?` as `***`: a
/// query may hold an `@` (`?user=svc@corp`), and a `?` in a password followed by `pass=`
/// only makes more hidden. Keys are compared percent-decoded (`p%61ss` is `pass` to redis-rs).
fn hide_query_secrets(s: &str) -> String {
    let Some(q) = s.find('?').map(|q| q + 1) else {
        return s.to_string();
    };
    let (end, fragment) = match s[q..].find('#') {
        Some(f) => (q + f, &s[q + f..]),
        None => (s.len(), ""),
    };
    let params: Vec<String> = s[q..end]
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _))
                if SECRET_PARAMS.contains(&percent_decoded(k).to_ascii_lowercase().as_str()) =>
            {
                format!("{k}=***")
            }
            _ => p.to_string(),
        })
        .collect();
    format!("{}{}{fragment}", &s[..q], params.join("&"))
}

/// `%XX` escapes decoded (a key compared with [`SECRET_PARAMS`]; what is not an escape stays).
fn percent_decoded(k: &str) -> String {
    let b = k.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
            // An '@' in the query, a percent-encoded key.
            (
                "redis+unix:///r.sock?user=svc@corp&pass=s3cret",
                "redis+unix:///r.sock?user=***&pass=***",
            ),
            (
                "redis+unix:///r.sock?p%61ss=s3cret&db=1",
                "redis+unix:///r.sock?p%61ss=***&db=1",
            ),
        ];
        for (u, shown) in rows {
            assert_eq!(url(u), shown, "{u}");
        }
    }
}
