//! The local interception CA: made once by `ca init` with X.509 name constraints that permit
//! only the allowed hosts (a stolen key can impersonate the payment gateways, never a bank or a
//! mail provider), and the short-lived leaf certificates minted from it, each checked by
//! OpenSSL's own verification against the CA before it is used.
//!
//! Two levels: a root (`ca.pem`, what apps trust) whose key is thrown away once it has signed
//! an issuing intermediate, and that intermediate (its key and certificate in `ca-key.pem`),
//! which signs the leaves and is sent with each. Both carry the name constraints, the
//! `serverAuth` extended key usage and an `email`/`URI` lock: Java's validation ignores a trust
//! anchor's own constraints but enforces an intermediate's, and without the key usage and the
//! lock the key could sign S/MIME or client certificates for any name.

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

pub use super::constraints::{constraints, constraints_der, Constraints, Subtree};

/// The CA certificate apps trust, in the CA directory.
pub const CA_FILE: &str = "ca.pem";
/// The issuing key and its certificate (mode 0600), in the CA directory.
pub const KEY_FILE: &str = "ca-key.pem";
/// How long the CA is valid: ten years (a CA that expires unnoticed stops every payment).
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a leaf is valid; the proxy mints a new one after [`LEAF_RENEW`].
pub const LEAF_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How long a minted leaf is used before a new one replaces it.
pub const LEAF_RENEW: Duration = Duration::from_secs(12 * 3600);
/// How far back a certificate's validity starts, for apps whose clocks run behind.
const BACKDATE: Duration = Duration::from_secs(3600);

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

/// A CA certificate for `key`, constrained to `c`, valid from `now` for [`CA_LIFETIME`]:
/// self-signed (the root: `issuer` is `None`, at most one CA below it) or signed by `issuer`
/// (the intermediate: no CA below it).
fn new_ca_cert(
    key: &PKey<Private>,
    c: &Constraints,
    now: SystemTime,
    issuer: Option<(&X509, &PKey<Private>)>,
) -> Result<X509, ErrorStack> {
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    b.set_serial_number(&*serial()?)?;
    let (subject, pathlen) = match issuer {
        None => (name("tls-fallback interception CA")?, 1),
        Some(_) => (name("tls-fallback interception issuer")?, 0),
    };
    b.set_subject_name(&subject)?;
    match issuer {
        None => b.set_issuer_name(&subject)?,
        Some((cert, _)) => b.set_issuer_name(cert.subject_name())?,
    }
    b.set_pubkey(key)?;
    b.set_not_before(&*time(now - BACKDATE)?)?;
    b.set_not_after(&*time(now + CA_LIFETIME)?)?;
    b.append_extension(
        BasicConstraints::new()
            .critical()
            .ca()
            .pathlen(pathlen)
            .build()?,
    )?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()?,
    )?;
    b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    let ctx = b.x509v3_context(issuer.map(|(cert, _)| &**cert), None);
    let ski = SubjectKeyIdentifier::new().build(&ctx)?;
    let aki = match issuer {
        Some(_) => Some(AuthorityKeyIdentifier::new().keyid(true).build(&ctx)?),
        None => None,
    };
    b.append_extension(ski)?;
    if let Some(aki) = aki {
        b.append_extension(aki)?;
    }
    let oid = Asn1Object::from_str("2.5.29.30")?;
    let value = Asn1OctetString::new_from_bytes(&constraints_der(c))?;
    b.append_extension(X509Extension::new_from_der(&oid, true, &value)?)?;
    b.sign(issuer.map_or(key, |(_, k)| k), MessageDigest::sha256())?;
    Ok(b.build())
}

/// A new CA constrained to `c`: the root certificate (its key is dropped here), and the
/// issuing intermediate with its key.
pub fn new_ca(c: &Constraints, now: SystemTime) -> Result<(X509, Issuer), ErrorStack> {
    let root_key = new_key()?;
    let root = new_ca_cert(&root_key, c, now, None)?;
    let key = new_key()?;
    let cert = new_ca_cert(&key, c, now, Some((&root, &root_key)))?;
    Ok((root, Issuer { cert, key }))
}

/// A leaf for `host` (a name or an IP address), signed by the CA, valid from `now` for
/// [`LEAF_LIFETIME`]. Its subject names no host (a common name that looked like one would be
/// checked against the constraints as one): the host is in the subject alternative name.
pub fn new_leaf(
    issuer: &Issuer,
    leaf_key: &PKey<Private>,
    host: &str,
    now: SystemTime,
) -> Result<X509, ErrorStack> {
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    b.set_serial_number(&*serial()?)?;
    b.set_subject_name(&*name("tls-fallback interception")?)?;
    b.set_issuer_name(issuer.cert.subject_name())?;
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
    let ctx = b.x509v3_context(Some(&issuer.cert), None);
    let san = san.build(&ctx)?;
    let aki = AuthorityKeyIdentifier::new().keyid(true).build(&ctx)?;
    b.append_extension(san)?;
    b.append_extension(aki)?;
    b.sign(&issuer.key, MessageDigest::sha256())?;
    Ok(b.build())
}

/// Verifies `leaf` with the chain `issuer` against `root` alone, as an app's OpenSSL would
/// (name constraints and key usage included): the reason when it does not verify.
pub fn verify(root: &X509, issuer: &X509, leaf: &X509) -> Result<(), String> {
    let fail = |e: ErrorStack| e.to_string();
    let mut store = X509StoreBuilder::new().map_err(fail)?;
    store.add_cert(root.clone()).map_err(fail)?;
    store
        .set_purpose(openssl::x509::X509PurposeId::SSL_SERVER)
        .map_err(fail)?;
    let store = store.build();
    let mut chain = Stack::new().map_err(fail)?;
    chain.push(issuer.clone()).map_err(fail)?;
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

/// The issuing intermediate: its certificate and key.
pub struct Issuer {
    /// The certificate (sent with every leaf).
    pub cert: X509,
    /// Its key.
    pub key: PKey<Private>,
}

/// A CA loaded from its directory.
pub struct Ca {
    /// The root apps trust.
    pub root: X509,
    /// What signs the leaves.
    pub issuer: Issuer,
}

/// The largest CA file read (a certificate or a key is about 1 KB).
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Refuses a CA directory that another user could write to (and so swap `ca.pem` apps trust by
/// path, or plant links): it must be the effective user's, writable by it alone.
pub fn check_dir(dir: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(dir)
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        if !m.is_dir() {
            return Err(format!("{} is not a directory", dir.display()));
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if m.uid() != me || m.mode() & 0o022 != 0 {
            return Err(format!(
                "{} is writable by other users or not owned by this one (uid {}, mode {:o}): \
                 another user could replace the CA there; use a directory of this user's, mode \
                 0700",
                dir.display(),
                m.uid(),
                m.mode() & 0o777
            ));
        }
    }
    Ok(())
}

/// Reads the key file: opened without following a link, then checked on the open descriptor
/// (a regular file of this user's that nobody else may read), bounded, never blocking.
fn read_key_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let fail = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = options.open(path).map_err(fail)?;
    let m = file.metadata().map_err(fail)?;
    if !m.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if m.mode() & 0o077 != 0 || m.uid() != me {
            return Err(format!(
                "{} is readable by others or not this user's (mode {:o}, uid {}): it can \
                 impersonate the allowed hosts; chmod 600 it, owned by the proxy's user",
                path.display(),
                m.mode() & 0o777,
                m.uid()
            ));
        }
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(fail)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("{} is too large for a key", path.display()));
    }
    Ok(bytes)
}

impl Ca {
    /// Reads `DIR/ca.pem` (the root) and `DIR/ca-key.pem` (the issuing key and certificate):
    /// the directory the user's alone, the key file readable by its owner alone, unencrypted;
    /// the certificate the key's and issued by the root; neither expired.
    pub fn load(dir: &Path) -> Result<Ca, String> {
        check_dir(dir)?;
        let root_path = dir.join(CA_FILE);
        let key_path = dir.join(KEY_FILE);
        let root_pem = tls_fallback::read_bounded_file(&root_path, MAX_FILE_BYTES)
            .map_err(|e| format!("cannot read {}: {e}", root_path.display()))?;
        let root = X509::from_pem(&root_pem)
            .map_err(|e| format!("{}: not a PEM certificate: {e}", root_path.display()))?;
        let key_pem = read_key_file(&key_path)?;
        let key = tls_fallback::private_key_from_pem(&key_pem)
            .map_err(|e| format!("{}: {e}", key_path.display()))?;
        let cert = X509::stack_from_pem(&key_pem)
            .ok()
            .and_then(|certs| certs.into_iter().next())
            .ok_or_else(|| {
                format!(
                    "{} holds no issuing certificate after its key: make the CA again with \
                     `ca init --force`",
                    key_path.display()
                )
            })?;
        if !cert.public_key().is_ok_and(|p| p.public_eq(&key)) {
            return Err(format!(
                "{}: the key is not its certificate's",
                key_path.display()
            ));
        }
        let signed = root.public_key().and_then(|k| cert.verify(&k));
        if !signed.unwrap_or(false) {
            return Err(format!(
                "{} was not issued by {}: the two files are of different CAs",
                key_path.display(),
                root_path.display()
            ));
        }
        let now = Asn1Time::days_from_now(0).map_err(|e| e.to_string())?;
        if root.not_after() < now || cert.not_after() < now {
            return Err(format!(
                "the interception CA {} expired on {}: make a new one with `ca init --force`",
                root_path.display(),
                root.not_after()
            ));
        }
        Ok(Ca {
            root,
            issuer: Issuer { cert, key },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(p: &[&str]) -> Vec<tls_fallback::HostPattern> {
        p.iter().map(|s| s.parse().unwrap()).collect()
    }

    /// A leaf signed by the issuer with these SANs and extended key usage, as a thief of the
    /// issuing key could make (not what `new_leaf` makes).
    fn stolen(issuer: &Issuer, san: &str, client: bool) -> X509 {
        let key = new_key().unwrap();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&serial().unwrap()).unwrap();
        b.set_subject_name(&name("thief").unwrap()).unwrap();
        b.set_issuer_name(issuer.cert.subject_name()).unwrap();
        b.set_pubkey(&key).unwrap();
        let now = SystemTime::now();
        b.set_not_before(&time(now - BACKDATE).unwrap()).unwrap();
        b.set_not_after(&time(now + LEAF_LIFETIME).unwrap())
            .unwrap();
        let mut eku = ExtendedKeyUsage::new();
        if client {
            eku.client_auth().email_protection();
        } else {
            eku.server_auth();
        }
        b.append_extension(eku.build().unwrap()).unwrap();
        let ctx = b.x509v3_context(Some(&issuer.cert), None);
        let mut alt = SubjectAlternativeName::new();
        match san.split_once(':') {
            Some(("email", e)) => alt.email(e),
            _ => alt.dns(san),
        };
        let alt = alt.build(&ctx).unwrap();
        b.append_extension(alt).unwrap();
        b.sign(&issuer.key, MessageDigest::sha256()).unwrap();
        b.build()
    }

    /// OpenSSL's own verification enforces what the CA carries: leaves for the allowed names
    /// verify, any other name or address is refused, and the issuing key signs no mail or
    /// client certificate.
    #[test]
    fn openssl_refuses_leaves_outside_the_constraints() {
        let now = SystemTime::now();
        let leaf_key = new_key().unwrap();
        let c = constraints(&pats(&["gw.example", "*.pay.example", "127.0.0.1"])).unwrap();
        let (root, issuer) = new_ca(&c, now).unwrap();
        let check = |host: &str| {
            let leaf = new_leaf(&issuer, &leaf_key, host, now).unwrap();
            verify(&root, &issuer.cert, &leaf)
        };
        for ok in ["gw.example", "GW.EXAMPLE", "eu.pay.example", "127.0.0.1"] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        for refused in ["bank.example", "pay.example", "example", "127.0.0.2", "::1"] {
            let e = check(refused).unwrap_err();
            assert!(e.contains("violation"), "{refused}: {e}");
        }
        // What a thief of the issuing key could sign: a mail certificate, a client one.
        use openssl::x509::X509PurposeId;
        let rows = [
            ("email:ceo@bank.example", X509PurposeId::SMIME_SIGN),
            ("gw.example", X509PurposeId::SSL_CLIENT),
        ];
        for (san, purpose) in rows {
            let mut store = X509StoreBuilder::new().unwrap();
            store.add_cert(root.clone()).unwrap();
            store.set_purpose(purpose).unwrap();
            let store = store.build();
            let leaf = stolen(&issuer, san, true);
            let mut chain = Stack::new().unwrap();
            chain.push(issuer.cert.clone()).unwrap();
            let mut ctx = X509StoreContext::new().unwrap();
            let ok = ctx
                .init(&store, &leaf, &chain, |c| c.verify_cert())
                .unwrap();
            assert!(!ok, "{san}: the issuing key signs only server certificates");
        }
        // Names only: every address is excluded; addresses only: every name.
        let (root, issuer) = new_ca(&constraints(&pats(&["gw.example"])).unwrap(), now).unwrap();
        let leaf = new_leaf(&issuer, &leaf_key, "10.0.0.1", now).unwrap();
        assert!(verify(&root, &issuer.cert, &leaf)
            .unwrap_err()
            .contains("violation"));
        let (root, issuer) = new_ca(&constraints(&pats(&["127.0.0.1"])).unwrap(), now).unwrap();
        let leaf = new_leaf(&issuer, &leaf_key, "localhost", now).unwrap();
        assert!(verify(&root, &issuer.cert, &leaf)
            .unwrap_err()
            .contains("violation"));
    }
}
