//! The interception CA's X.509 name constraints: from the allow patterns (a rule, table-tested)
//! to the DER of the extension (RFC 5280 section 4.2.1.10).

use std::net::IpAddr;

use tls_fallback::{HostPattern, PatternHost};

/// One name-constraint subtree, as RFC 5280 section 4.2.1.10 writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subtree {
    /// `dNSName`: the name and every name below it; with a leading `.`, only names below it;
    /// empty, every name.
    Dns(String),
    /// `iPAddress`: one address (a full mask), or every address of a family (an empty mask).
    Ip(IpAddr, bool),
    /// `rfc822Name`: mail addresses at this host.
    Email(String),
    /// `uniformResourceIdentifier`: URIs whose host is this.
    Uri(String),
}

/// The host that e-mail and URI names are locked to: `.invalid` is reserved (RFC 2606), so the
/// CA can certify no mail address and no URI.
const NOWHERE: &str = "invalid";

/// A CA's name constraints.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Constraints {
    /// The names the CA may certify.
    pub permitted: Vec<Subtree>,
    /// The names it may not, whatever `permitted` says.
    pub excluded: Vec<Subtree>,
}

/// The name constraints that permit the hosts of these patterns and nothing else.
///
/// | pattern | permitted subtree |
/// |---|---|
/// | `gw.example`, `gw.example:8443` | DNS `gw.example` (with the names below it: RFC 5280 has no "this name only") |
/// | `*.example.com` | DNS `.example.com` (names below it, not `example.com`) |
/// | `192.0.2.7`, `[2001:db8::7]:443` | that address |
/// | `*` | refused: such a CA could impersonate any host |
/// | `com`, `*.com` (one label; `localhost` excepted) | refused: a whole top-level domain |
///
/// A name type with nothing permitted is excluded whole (all DNS names, all IPv4 and IPv6
/// addresses): in RFC 5280, a type that no permitted subtree names is unconstrained. Mail
/// addresses and URIs are always locked to `.invalid`.
pub fn constraints(patterns: &[HostPattern]) -> Result<Constraints, String> {
    let mut c = Constraints::default();
    let whole_tld = |p: &HostPattern| {
        format!(
            "{p} covers a whole top-level domain (a name covers every name below it): name the \
             gateways (gw.example, *.gateway.example)"
        )
    };
    for p in patterns {
        let tree = match p.host() {
            PatternHost::Any => {
                return Err(format!(
                    "{p:?} names every host: a CA for it could impersonate any site; list the \
                     gateways (gw.example, *.gateway.example)"
                ))
            }
            PatternHost::Exact(h) if !h.contains('.') && h != "localhost" => {
                return Err(whole_tld(p))
            }
            PatternHost::Suffix(s) if !s.contains('.') => return Err(whole_tld(p)),
            PatternHost::Exact(h) => Subtree::Dns(h.to_string()),
            PatternHost::Suffix(s) => Subtree::Dns(format!(".{s}")),
            PatternHost::Ip(ip) => Subtree::Ip(ip, true),
        };
        if !c.permitted.contains(&tree) {
            c.permitted.push(tree);
        }
    }
    if c.permitted.is_empty() {
        return Err("no host to intercept: give --allow PATTERN (the gateways)".into());
    }
    let has = |f: fn(&Subtree) -> bool| c.permitted.iter().any(f);
    if !has(|t| matches!(t, Subtree::Dns(_))) {
        c.excluded.push(Subtree::Dns(String::new()));
    }
    if !has(|t| matches!(t, Subtree::Ip(..))) {
        c.excluded.push(Subtree::Ip(IpAddr::from([0u8; 4]), false));
        c.excluded.push(Subtree::Ip(IpAddr::from([0u16; 8]), false));
    }
    c.permitted.push(Subtree::Email(NOWHERE.into()));
    c.permitted.push(Subtree::Uri(NOWHERE.into()));
    Ok(c)
}

/// A DER element: `tag`, its length, `content`.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// The `GeneralSubtree` of one subtree: a SEQUENCE holding its `GeneralName`.
fn subtree_der(t: &Subtree) -> Vec<u8> {
    let name = match t {
        // dNSName [2] IA5String; pattern host names are ASCII letters, digits, '-', '_', '.'.
        Subtree::Dns(d) => der(0x82, d.as_bytes()),
        // iPAddress [7] OCTET STRING: the address, then the mask.
        Subtree::Ip(ip, full) => {
            let (addr, len) = match ip {
                IpAddr::V4(v) => (v.octets().to_vec(), 4),
                IpAddr::V6(v) => (v.octets().to_vec(), 16),
            };
            let mask = vec![if *full { 0xff } else { 0 }; len];
            der(0x87, &[addr, mask].concat())
        }
        // rfc822Name [1] and uniformResourceIdentifier [6], IA5String.
        Subtree::Email(h) => der(0x81, h.as_bytes()),
        Subtree::Uri(h) => der(0x86, h.as_bytes()),
    };
    der(0x30, &name)
}

/// The `NameConstraints` extension's value (RFC 5280: a SEQUENCE of `[0]` permitted and `[1]`
/// excluded subtrees, each implicitly tagged).
pub fn constraints_der(c: &Constraints) -> Vec<u8> {
    let mut body = Vec::new();
    for (tag, trees) in [(0xa0, &c.permitted), (0xa1, &c.excluded)] {
        if !trees.is_empty() {
            let inner: Vec<u8> = trees.iter().flat_map(subtree_der).collect();
            body.extend(der(tag, &inner));
        }
    }
    der(0x30, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(p: &[&str]) -> Vec<HostPattern> {
        p.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn constraints_by_pattern() {
        let dns = |s: &str| Subtree::Dns(s.into());
        let v4 = |a: [u8; 4]| Subtree::Ip(IpAddr::from(a), true);
        let no_ip = [
            Subtree::Ip(IpAddr::from([0u8; 4]), false),
            Subtree::Ip(IpAddr::from([0u16; 8]), false),
        ];
        let lock = [
            Subtree::Email("invalid".into()),
            Subtree::Uri("invalid".into()),
        ];
        let with_lock = |mut v: Vec<Subtree>| {
            v.extend(lock.clone());
            v
        };
        // (patterns, permitted before the e-mail/URI lock, excluded)
        let rows: Vec<(&[&str], Vec<Subtree>, Vec<Subtree>)> = vec![
            (&["gw.example"], vec![dns("gw.example")], no_ip.to_vec()),
            (
                &["GW.example:8443", "gw.example"],
                vec![dns("gw.example")],
                no_ip.to_vec(),
            ),
            (
                &["*.pay.example"],
                vec![dns(".pay.example")],
                no_ip.to_vec(),
            ),
            (&["localhost"], vec![dns("localhost")], no_ip.to_vec()),
            (&["127.0.0.1"], vec![v4([127, 0, 0, 1])], vec![dns("")]),
            (
                &["[::1]:443", "gw.example"],
                vec![Subtree::Ip("::1".parse().unwrap(), true), dns("gw.example")],
                vec![],
            ),
        ];
        for (p, permitted, excluded) in rows {
            let c = constraints(&pats(p)).unwrap();
            let want = Constraints {
                permitted: with_lock(permitted),
                excluded,
            };
            assert_eq!(c, want, "{p:?}");
        }
        assert!(constraints(&pats(&["*"])).unwrap_err().contains("any site"));
        assert!(constraints(&pats(&["gw.example", "*:443"])).is_err());
        assert!(constraints(&[]).unwrap_err().contains("--allow"));
        for tld in ["com", "*.com", "intranet"] {
            let e = constraints(&pats(&[tld])).unwrap_err();
            assert!(e.contains("top-level domain"), "{tld}: {e}");
        }
    }

    #[test]
    fn der_lengths_short_and_long() {
        assert_eq!(der(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        let long = der(0x04, &[0; 200]);
        assert_eq!(&long[..3], &[0x04, 0x81, 200]);
        let longer = der(0x04, &[0; 300]);
        assert_eq!(&longer[..4], &[0x04, 0x82, 1, 44]);
    }
}
