//! Properties of host keys: every spelling of one name or address maps to one key (and one
//! pattern match), different hosts never share a key, and an IPv4-mapped IPv6 address is not
//! its IPv4 address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use tls_fallback::{HostKey, HostPattern};

/// A host name of one to four labels, lower case.
fn name() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", 1..5).prop_map(|l| l.join("."))
}

/// A spelling of `name`: each letter's case flipped or not, a trailing dot or not.
fn name_spelling(name: String) -> impl Strategy<Value = String> {
    let n = name.len();
    (prop::collection::vec(any::<bool>(), n), any::<bool>()).prop_map(move |(upper, dot)| {
        let mut s: String = name
            .chars()
            .zip(upper)
            .map(|(c, u)| if u { c.to_ascii_uppercase() } else { c })
            .collect();
        if dot {
            s.push('.');
        }
        s
    })
}

/// An IPv6 address with runs of zero groups (so that `::` has something to compress).
fn ipv6() -> impl Strategy<Value = Ipv6Addr> {
    prop::array::uniform8(prop_oneof![Just(0u16), Just(1u16), any::<u16>()])
        .prop_map(Ipv6Addr::from)
}

/// A spelling of `ip`: every group with or without leading zeros, upper or lower case, one
/// run of zero groups compressed to `::` or none, with brackets or without.
fn ipv6_spelling(ip: Ipv6Addr) -> impl Strategy<Value = String> {
    let groups = ip.segments();
    (
        prop::array::uniform8(any::<bool>()),
        any::<bool>(),
        any::<bool>(),
        0usize..8,
    )
        .prop_map(move |(padded, upper, brackets, run_start)| {
            let text: Vec<String> = groups
                .iter()
                .zip(padded)
                .map(|(g, p)| {
                    let t = if p {
                        format!("{g:04x}")
                    } else {
                        format!("{g:x}")
                    };
                    if upper {
                        t.to_ascii_uppercase()
                    } else {
                        t
                    }
                })
                .collect();
            // Compress the run of zero groups starting at `run_start`, if there is one.
            let run_end = (run_start..8)
                .take_while(|&i| groups[i] == 0)
                .last()
                .map(|i| i + 1);
            let s = match run_end {
                Some(end) => format!("{}::{}", text[..run_start].join(":"), text[end..].join(":")),
                None => text.join(":"),
            };
            if brackets {
                format!("[{s}]")
            } else {
                s
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn every_spelling_of_a_name_is_one_key((name, a, b) in name().prop_flat_map(|n| {
        (Just(n.clone()), name_spelling(n.clone()), name_spelling(n))
    }), port in 1u16..) {
        let key = HostKey::new(&a, port);
        prop_assert_eq!(&key, &HostKey::new(&b, port));
        prop_assert_eq!(key.host(), name.as_str());
        prop_assert_eq!(key.port(), port);
        let pattern: HostPattern = name.parse().unwrap();
        prop_assert!(pattern.matches(&a, port) && pattern.matches(&b, port));
    }

    #[test]
    fn every_spelling_of_an_ipv6_address_is_one_key((ip, a, b) in ipv6().prop_flat_map(|ip| {
        (Just(ip), ipv6_spelling(ip), ipv6_spelling(ip))
    }), port in 1u16..) {
        prop_assert_eq!(a.trim_matches(['[', ']']).parse::<Ipv6Addr>().ok(), Some(ip), "{}", a);
        let key = HostKey::new(&a, port);
        prop_assert_eq!(&key, &HostKey::new(&b, port));
        prop_assert_eq!(key.ip(), Some(IpAddr::V6(ip)));
        prop_assert_eq!(key.host(), ip.to_string());
        // A pattern in any spelling (with a port: in brackets) matches any other spelling.
        let bare = b.trim_matches(['[', ']']);
        for text in [format!("[{bare}]:{port}"), bare.to_string()] {
            let pattern: HostPattern = text.parse().unwrap();
            prop_assert!(pattern.matches(&a, port), "{} vs {}", text, a);
            prop_assert!(pattern.matches(key.host(), port));
        }
    }

    #[test]
    fn different_hosts_never_share_a_key(a in name(), b in name(), x in ipv6(), y in ipv6(), v4 in any::<u32>()) {
        prop_assert_eq!(HostKey::new(&a, 443) == HostKey::new(&b, 443), a == b);
        prop_assert_eq!(HostKey::new(&x.to_string(), 443) == HostKey::new(&y.to_string(), 443), x == y);
        // An IPv4 address and its IPv4-mapped IPv6 form are two hosts.
        let v4 = Ipv4Addr::from(v4);
        let mapped = format!("[{}]", v4.to_ipv6_mapped());
        prop_assert_ne!(HostKey::new(&v4.to_string(), 443), HostKey::new(&mapped, 443));
        let pattern: HostPattern = v4.to_string().parse().unwrap();
        prop_assert!(!pattern.matches(&mapped, 443));
        let dotted = format!("{}.", v4);
        prop_assert!(pattern.matches(&dotted, 443));
        // A name never equals an address key.
        prop_assert_ne!(HostKey::new(&a, 443), HostKey::new(&x.to_string(), 443));
    }
}
