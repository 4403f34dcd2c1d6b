//! Certificates for test servers, made at run time with OpenSSL: a CA, and leaf certificates
//! that are good, for the wrong name, expired, or from an unknown CA.

use std::sync::OnceLock;

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509NameBuilder, X509};

/// A certificate and its private key.
#[derive(Clone)]
pub struct Identity {
    /// The certificate.
    pub cert: X509,
    /// Its key.
    pub key: PKey<Private>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("subject", &self.cert.subject_name())
            .finish_non_exhaustive()
    }
}

/// A test certificate authority and the identities the test kit uses.
pub struct TestPki {
    /// The CA; trust it with `FallbackLayerBuilder::add_root_certificate`.
    pub ca: Identity,
    /// A leaf for `localhost`, `127.0.0.1` and `::1`, signed by the CA.
    pub localhost: Identity,
    /// A leaf for `wrong.example` only, signed by the CA (host name mismatch).
    pub wrong_name: Identity,
    /// A leaf for `localhost` that expired yesterday, signed by the CA.
    pub expired: Identity,
    /// A leaf for `localhost` signed by a CA nobody trusts.
    pub untrusted: Identity,
    /// A client certificate (extended key usage clientAuth) signed by the CA, for servers that
    /// require one ([`crate::testkit::TlsServerBuilder::require_client_certificate`]).
    pub client: Identity,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki").finish_non_exhaustive()
    }
}

fn key() -> Result<PKey<Private>, ErrorStack> {
    PKey::from_rsa(Rsa::generate(2048)?)
}

fn serial() -> Result<Asn1Integer, ErrorStack> {
    let mut bn = BigNum::new()?;
    bn.rand(64, openssl::bn::MsbOption::MAYBE_ZERO, false)?;
    bn.to_asn1_integer()
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn make_ca(cn: &str, key: PKey<Private>) -> Result<Identity, ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", cn)?;
    let name = name.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    b.set_serial_number(&*serial()?)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(&key)?;
    b.set_not_before(&*Asn1Time::from_unix(now_unix() - 86_400)?)?;
    b.set_not_after(&*Asn1Time::days_from_now(3650)?)?;
    b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()?,
    )?;
    b.sign(&key, MessageDigest::sha256())?;
    Ok(Identity {
        cert: b.build(),
        key,
    })
}

fn make_leaf(
    ca: &Identity,
    key: &PKey<Private>,
    names: &[&str],
    not_before: i64,
    not_after: i64,
) -> Result<Identity, ErrorStack> {
    make_cert(ca, key, names, not_before, not_after, false)
}

fn make_cert(
    ca: &Identity,
    key: &PKey<Private>,
    names: &[&str],
    not_before: i64,
    not_after: i64,
    client: bool,
) -> Result<Identity, ErrorStack> {
    let key = key.clone();
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", names.first().copied().unwrap_or("test"))?;
    let name = name.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    b.set_serial_number(&*serial()?)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(ca.cert.subject_name())?;
    b.set_pubkey(&key)?;
    b.set_not_before(&*Asn1Time::from_unix(not_before)?)?;
    b.set_not_after(&*Asn1Time::from_unix(not_after)?)?;
    let mut san = SubjectAlternativeName::new();
    for n in names {
        if n.parse::<std::net::IpAddr>().is_ok() {
            san.ip(n);
        } else {
            san.dns(n);
        }
    }
    let san = san.build(&b.x509v3_context(Some(&ca.cert), None))?;
    b.append_extension(san)?;
    b.append_extension(BasicConstraints::new().build()?)?;
    let mut eku = ExtendedKeyUsage::new();
    if client {
        eku.client_auth();
    } else {
        eku.server_auth();
    }
    b.append_extension(eku.build()?)?;
    b.sign(&ca.key, MessageDigest::sha256())?;
    Ok(Identity {
        cert: b.build(),
        key,
    })
}

impl TestPki {
    /// Makes a fresh CA and identities. Two RSA-2048 keys (the slow part): one for the CA, one
    /// shared by every leaf and by the untrusted CA (test material only).
    pub fn generate() -> Result<TestPki, ErrorStack> {
        let ca = make_ca("tls-fallback test CA", key()?)?;
        let leaf_key = key()?;
        let now = now_unix();
        let day = 86_400;
        let names = ["localhost", "127.0.0.1", "::1"];
        let localhost = make_leaf(&ca, &leaf_key, &names, now - day, now + 365 * day)?;
        let wrong_name = make_leaf(
            &ca,
            &leaf_key,
            &["wrong.example"],
            now - day,
            now + 365 * day,
        )?;
        let expired = make_leaf(&ca, &leaf_key, &names, now - 30 * day, now - day)?;
        let stranger = make_ca("nobody trusts this CA", leaf_key.clone())?;
        let untrusted = make_leaf(&stranger, &leaf_key, &names, now - day, now + day)?;
        let client = make_cert(
            &ca,
            &leaf_key,
            &["client.test"],
            now - day,
            now + 365 * day,
            true,
        )?;
        Ok(TestPki {
            ca,
            localhost,
            wrong_name,
            expired,
            untrusted,
            client,
        })
    }

    /// One PKI per process, made on first use.
    ///
    /// # Panics
    /// If OpenSSL cannot generate keys (a broken installation); test-kit only.
    pub fn shared() -> &'static TestPki {
        static PKI: OnceLock<TestPki> = OnceLock::new();
        PKI.get_or_init(|| TestPki::generate().expect("OpenSSL cannot generate test certificates"))
    }

    /// A leaf for `localhost` and `127.0.0.1` with an RSA key of `bits` bits, signed by the CA:
    /// a 512-bit key is refused at every OpenSSL security level above 0.
    pub fn leaf_with_key_bits(&self, bits: u32) -> Result<Identity, ErrorStack> {
        let key = PKey::from_rsa(Rsa::generate(bits)?)?;
        let now = now_unix();
        make_leaf(
            &self.ca,
            &key,
            &["localhost", "127.0.0.1"],
            now - 86_400,
            now + 86_400,
        )
    }

    /// The CA certificate as PEM, for `--ca-file`.
    pub fn ca_pem(&self) -> Vec<u8> {
        self.ca.cert.to_pem().unwrap_or_default()
    }
}
