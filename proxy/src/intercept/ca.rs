//! The local interception CA: made once by `ca init` with X.509 name constraints that permit
//! only the allowed hosts (a stolen key can impersonate the payment gateways, never a bank or a
//! mail provider), and the short-lived leaf certificates minted from it, each checked by
//! OpenSSL's own verification against the CA before it is used.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openssl::asn1::{Asn1Integer, Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{
    X509Builder, X509Extension, X509Name, X509NameBuilder, X509StoreContext, X509,
};
use tls_fallback::{HostPattern, PatternHost};

/// The CA certificate apps trust, in the CA directory.
pub const CA_FILE: &str = "ca.pem";
/// The CA's private key (mode 0600), in the CA directory.
pub const KEY_FILE: &str = "ca-key.pem";
/// How long the CA is valid: ten years (a CA that expires unnoticed stops every payment).
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a leaf is valid; the proxy mints a new one after [`LEAF_RENEW`].
pub const LEAF_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How long a minted leaf is used before a new one replaces it.
pub const LEAF_RENEW: Duration = Duration::from_secs(12 * 3600);
/// How far back a certificate's validity starts, for apps whose clocks run behind.
const BACKDATE: Duration = Duration::from_secs(3600);

/// One name-constraint subtree, as RFC 5280 section 4.2.1.10 writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subtree {
    /// `dNSName`: the name and every name below it; with a leading `.`, only names below it;
    /// empty, every name.
    Dns(String),
    /// `iPAddress`: one address (a full mask), or every address of a family (an empty mask).
    Ip(IpAddr, bool),
}

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
///
/// A name type with nothing permitted is excluded whole (all DNS names, all IPv4 and IPv6
/// addresses): in RFC 5280, a type that no permitted subtree names is unconstrained.
pub fn constraints(patterns: &[HostPattern]) -> Result<Constraints, String> {
    let mut c = Constraints::default();
    for p in patterns {
        let tree = match p.host() {
            PatternHost::Any => {
                return Err(format!(
                    "{p:?} names every host: a CA for it could impersonate any site; list the \
                     gateways (gw.example, *.gateway.example)"
                ))
            }
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

/// A new EC P-256 key (the CA's, and the one key every leaf of a proxy run shares).
pub fn new_key() -> Result<PKey<Private>, ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}

fn serial() -> Result<Asn1Integer, ErrorStack> {
    let mut bn = BigNum::new()?;
    bn.rand(127, MsbOption::MAYBE_ZERO, false)?;
    bn.to_asn1_integer()
}

fn time(t: SystemTime) -> Result<Asn1Time, ErrorStack> {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Asn1Time::from_unix(i64::try_from(secs).unwrap_or(i64::MAX))
}

fn name(cn: &str) -> Result<X509Name, ErrorStack> {
    let mut n = X509NameBuilder::new()?;
    n.append_entry_by_nid(Nid::ORGANIZATIONNAME, "tls-fallback")?;
    n.append_entry_by_nid(Nid::COMMONNAME, cn)?;
    Ok(n.build())
}

/// A new CA certificate for `key`, constrained to `c`, valid from `now` for [`CA_LIFETIME`].
pub fn new_ca(key: &PKey<Private>, c: &Constraints, now: SystemTime) -> Result<X509, ErrorStack> {
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    b.set_serial_number(&*serial()?)?;
    let subject = name("tls-fallback interception CA")?;
    b.set_subject_name(&subject)?;
    b.set_issuer_name(&subject)?;
    b.set_pubkey(key)?;
    b.set_not_before(&*time(now - BACKDATE)?)?;
    b.set_not_after(&*time(now + CA_LIFETIME)?)?;
    b.append_extension(BasicConstraints::new().critical().ca().pathlen(0).build()?)?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()?,
    )?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
    b.append_extension(ski)?;
    let oid = Asn1Object::from_str("2.5.29.30")?;
    let value = Asn1OctetString::new_from_bytes(&constraints_der(c))?;
    b.append_extension(X509Extension::new_from_der(&oid, true, &value)?)?;
    b.sign(key, MessageDigest::sha256())?;
    Ok(b.build())
}

/// A leaf for `host` (a name or an IP address), signed by the CA, valid from `now` for
/// [`LEAF_LIFETIME`]. Its subject names no host (a common name that looked like one would be
/// checked against the constraints as one): the host is in the subject alternative name.
pub fn new_leaf(
    ca: &X509,
    ca_key: &PKey<Private>,
    leaf_key: &PKey<Private>,
    host: &str,
    now: SystemTime,
) -> Result<X509, ErrorStack> {
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    b.set_serial_number(&*serial()?)?;
    b.set_subject_name(&*name("tls-fallback interception")?)?;
    b.set_issuer_name(ca.subject_name())?;
    b.set_pubkey(leaf_key)?;
    b.set_not_before(&*time(now - BACKDATE)?)?;
    b.set_not_after(&*time(now + LEAF_LIFETIME)?)?;
    b.append_extension(BasicConstraints::new().critical().build()?)?;
    b.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
    b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    let mut san = SubjectAlternativeName::new();
    if host.parse::<IpAddr>().is_ok() {
        san.ip(host);
    } else {
        san.dns(host);
    }
    let ctx = b.x509v3_context(Some(ca), None);
    let san = san.build(&ctx)?;
    let aki = AuthorityKeyIdentifier::new().keyid(true).build(&ctx)?;
    b.append_extension(san)?;
    b.append_extension(aki)?;
    b.sign(ca_key, MessageDigest::sha256())?;
    Ok(b.build())
}

/// Verifies `leaf` against `ca` alone, as an app's OpenSSL would (name constraints included):
/// the reason when it does not verify.
pub fn verify(ca: &X509, leaf: &X509) -> Result<(), String> {
    let fail = |e: ErrorStack| e.to_string();
    let mut store = X509StoreBuilder::new().map_err(fail)?;
    store.add_cert(ca.clone()).map_err(fail)?;
    let store = store.build();
    let chain = Stack::new().map_err(fail)?;
    let mut ctx = X509StoreContext::new().map_err(fail)?;
    let (ok, why) = ctx
        .init(&store, leaf, &chain, |c| {
            let ok = c.verify_cert()?;
            Ok((ok, c.error().error_string().to_string()))
        })
        .map_err(fail)?;
    if ok {
        Ok(())
    } else {
        Err(why)
    }
}

/// A CA loaded from its directory.
pub struct Ca {
    /// The certificate.
    pub cert: X509,
    /// Its key.
    pub key: PKey<Private>,
}

/// The largest CA file read (a certificate or a key is about 1 KB).
const MAX_FILE_BYTES: u64 = 64 * 1024;

impl Ca {
    /// Reads `DIR/ca.pem` and `DIR/ca-key.pem`: regular files, bounded; the key readable by
    /// its owner alone; the key the certificate's; the certificate not expired.
    pub fn load(dir: &Path) -> Result<Ca, String> {
        let read = |f: &str| {
            let path = dir.join(f);
            tls_fallback::read_bounded_file(&path, MAX_FILE_BYTES)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        let key_path = dir.join(KEY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::symlink_metadata(&key_path)
                .map_err(|e| format!("cannot read {}: {e}", key_path.display()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(format!(
                    "{} is readable by others (mode {:o}): it can impersonate the allowed \
                     hosts; chmod 600 it",
                    key_path.display(),
                    mode & 0o777
                ));
            }
        }
        let cert = X509::from_pem(&read(CA_FILE)?).map_err(|e| {
            format!(
                "{}: not a PEM certificate: {e}",
                dir.join(CA_FILE).display()
            )
        })?;
        let key = PKey::private_key_from_pem(&read(KEY_FILE)?)
            .map_err(|e| format!("{}: not a PEM private key: {e}", key_path.display()))?;
        let matches = cert.public_key().is_ok_and(|p| p.public_eq(&key));
        if !matches {
            return Err(format!(
                "{} is not the key of {}",
                key_path.display(),
                dir.join(CA_FILE).display()
            ));
        }
        let now = Asn1Time::days_from_now(0).map_err(|e| e.to_string())?;
        if cert.not_after() < now {
            return Err(format!(
                "the interception CA {} expired on {}: make a new one with `ca init --force`",
                dir.join(CA_FILE).display(),
                cert.not_after()
            ));
        }
        Ok(Ca { cert, key })
    }
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
        // (patterns, permitted, excluded)
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
            (&["127.0.0.1"], vec![v4([127, 0, 0, 1])], vec![dns("")]),
            (
                &["[::1]:443", "gw.example"],
                vec![Subtree::Ip("::1".parse().unwrap(), true), dns("gw.example")],
                vec![],
            ),
        ];
        for (p, permitted, excluded) in rows {
            let c = constraints(&pats(p)).unwrap();
            assert_eq!(
                c,
                Constraints {
                    permitted,
                    excluded
                },
                "{p:?}"
            );
        }
        assert!(constraints(&pats(&["*"])).unwrap_err().contains("any site"));
        assert!(constraints(&pats(&["gw.example", "*:443"])).is_err());
        assert!(constraints(&[]).unwrap_err().contains("--allow"));
    }

    #[test]
    fn der_lengths_short_and_long() {
        assert_eq!(der(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        let long = der(0x04, &[0; 200]);
        assert_eq!(&long[..3], &[0x04, 0x81, 200]);
        let longer = der(0x04, &[0; 300]);
        assert_eq!(&longer[..4], &[0x04, 0x82, 1, 44]);
    }

    /// OpenSSL's own verification enforces the constraints the CA carries: leaves for the
    /// allowed names verify, any other name or address is refused.
    #[test]
    fn openssl_refuses_leaves_outside_the_constraints() {
        let now = SystemTime::now();
        let key = new_key().unwrap();
        let leaf_key = new_key().unwrap();
        let c = constraints(&pats(&["gw.example", "*.pay.example", "127.0.0.1"])).unwrap();
        let ca = new_ca(&key, &c, now).unwrap();
        let check = |host: &str| verify(&ca, &new_leaf(&ca, &key, &leaf_key, host, now).unwrap());
        for ok in ["gw.example", "GW.EXAMPLE", "eu.pay.example", "127.0.0.1"] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        for refused in ["bank.example", "pay.example", "example", "127.0.0.2", "::1"] {
            let e = check(refused).unwrap_err();
            assert!(e.contains("violation"), "{refused}: {e}");
        }
        // Names only: every address is excluded.
        let c = constraints(&pats(&["gw.example"])).unwrap();
        let ca = new_ca(&key, &c, now).unwrap();
        let leaf = new_leaf(&ca, &key, &leaf_key, "10.0.0.1", now).unwrap();
        assert!(verify(&ca, &leaf).unwrap_err().contains("violation"));
        // Addresses only: every name is excluded.
        let c = constraints(&pats(&["127.0.0.1"])).unwrap();
        let ca = new_ca(&key, &c, now).unwrap();
        let leaf = new_leaf(&ca, &key, &leaf_key, "localhost", now).unwrap();
        assert!(verify(&ca, &leaf).unwrap_err().contains("violation"));
    }
}
