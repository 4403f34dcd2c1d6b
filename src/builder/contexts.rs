//! The OpenSSL side of [`FallbackLayerBuilder::build`](super::FallbackLayerBuilder::build):
//! every rung and pin made into its client contexts (versions, suites, groups, the hello's
//! shape, security level, trust, client identity), and the system's roots.

use std::sync::Arc;

use openssl::pkey::{PKey, Private, Public};
use openssl::ssl::{SslContext, SslContextBuilder, SslMethod, SslMode, SslOptions, SslVerifyMode};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509VerifyResult, X509};

use crate::config::BuiltRung;
use crate::error::Error;
use crate::profile::{Ladder, Profile, TlsVersion};
use crate::session::{ContextId, SessionCache};

/// `SSL_OP_TLSEXT_PADDING`: RFC 7685 padding, part of OpenSSL 3's default options.
const PADDING: SslOptions = SslOptions::from_bits_retain(openssl_sys::SSL_OP_TLSEXT_PADDING as _);
/// `SSL_OP_LEGACY_SERVER_CONNECT`: talk to servers without secure renegotiation.
const LEGACY_SERVER_CONNECT: SslOptions =
    SslOptions::from_bits_retain(openssl_sys::SSL_OP_LEGACY_SERVER_CONNECT as _);

/// What every rung's context shares.
pub(super) struct Common<'a> {
    pub(super) roots: &'a [X509],
    /// Keys no certificate of a server's chain may have (`FallbackLayerBuilder::distrust`).
    pub(super) distrusted: Arc<Vec<PKey<Public>>>,
    pub(super) h2: bool,
    /// OpenSSL's default security level.
    pub(super) level: u32,
    pub(super) identity: Option<&'a (Vec<X509>, PKey<Private>)>,
    pub(super) sessions: Option<&'a SessionCache>,
}

/// Every rung, with a plain and an SCSV context each.
pub(super) fn build_ladder(ladder: Ladder, common: &Common<'_>) -> Result<Vec<BuiltRung>, Error> {
    let ids = |i: usize, scsv| ContextId::Rung {
        index: i as u8,
        scsv,
    };
    (ladder.into_rungs().into_iter().enumerate())
        .map(|(i, p)| build_rung(p, common, (ids(i, false), Some(ids(i, true)))))
        .collect()
}

pub(super) fn build_rung(
    profile: Profile,
    common: &Common<'_>,
    ids: (ContextId, Option<ContextId>),
) -> Result<BuiltRung, Error> {
    Ok(BuiltRung {
        name: Arc::from(profile.name()),
        plain: context(&profile, common, false)?,
        scsv: match ids.1 {
            Some(_) => Some(context(&profile, common, true)?),
            None => None,
        },
        ids: (ids.0, ids.1.unwrap_or(ids.0)),
        profile,
    })
}

/// One OpenSSL client context for a profile. The base settings are those of rust-openssl's
/// `SslConnector` (options, modes, cipher exclusions, peer verification); it is not used
/// itself because it re-reads the system CA bundle for every context (about 240 million
/// instructions each under callgrind), where we parse the roots once and share them.
///
/// `common.level` is OpenSSL's default security level. A legacy profile lowers the level for the
/// TLS crypto (old versions, SHA-1 suites, small DH) but keeps certificate checks at `level`
/// (the verify "auth level"), so a 512-bit key or an MD5-signed chain is refused on every rung.
/// A non-legacy profile may not lower the level at all.
fn context(profile: &Profile, common: &Common<'_>, scsv: bool) -> Result<SslContext, Error> {
    let level = common.level;
    let err = |what: &str, e: openssl::error::ErrorStack| {
        Error::Config(format!("profile {:?}: {what}: {e}", profile.name()))
    };
    let mut b = base_context(profile, common).map_err(|(what, e)| err(what, e))?;
    if profile.is_legacy() {
        // After the cipher list: a cipher string may carry its own @SECLEVEL.
        b.set_security_level(0);
        b.set_options(LEGACY_SERVER_CONNECT);
        b.verify_param_mut().set_auth_level(level as i32);
    }
    shape(&mut b, profile, common.h2).map_err(|(what, e)| err(what, e))?;
    if scsv {
        b.set_mode(SslMode::SEND_FALLBACK_SCSV);
    }
    if let Some((chain, key)) = common.identity {
        b.set_certificate(&chain[0])
            .map_err(|e| err("client certificate", e))?;
        for extra in &chain[1..] {
            b.add_extra_chain_cert(extra.clone())
                .map_err(|e| err("client certificate chain", e))?;
        }
        b.set_private_key(key).map_err(|e| err("client key", e))?;
    }
    if let Some(cache) = common.sessions {
        cache.install(&mut b);
    }
    let ctx = b.build();
    // Checked on the built context, not on the cipher string: OpenSSL accepts `@SECLEVEL=n`
    // anywhere in it (`ALL@SECLEVEL=0`, `@SECLEVEL=0:ALL`, ...), and this is what it applies.
    let applied = ctx.security_level();
    if !profile.is_legacy() && applied < level {
        return Err(Error::Config(format!(
            "profile {:?} lowers the security level to {applied} (OpenSSL's default is {level}); \
             only legacy profiles may (`Profile::legacy(true)`), and they are used only for \
             hosts the legacy gate allows",
            profile.name()
        )));
    }
    Ok(ctx)
}

type Failed = (&'static str, openssl::error::ErrorStack);

/// rust-openssl's `SslConnector` settings, the roots, the cipher list and the versions.
fn base_context(profile: &Profile, common: &Common<'_>) -> Result<SslContextBuilder, Failed> {
    let mut b = SslContextBuilder::new(SslMethod::tls_client())
        .map_err(|e| ("cannot create an OpenSSL context", e))?;
    let mut options = SslOptions::ALL
        | SslOptions::NO_COMPRESSION
        | SslOptions::NO_SSLV2
        | SslOptions::NO_SSLV3
        | SslOptions::SINGLE_DH_USE
        | SslOptions::SINGLE_ECDH_USE;
    options &= !SslOptions::DONT_INSERT_EMPTY_FRAGMENTS;
    b.set_options(options);
    b.set_mode(
        SslMode::AUTO_RETRY
            | SslMode::ACCEPT_MOVING_WRITE_BUFFER
            | SslMode::ENABLE_PARTIAL_WRITE
            | SslMode::RELEASE_BUFFERS,
    );
    // Read whole records (and what follows them) in one read instead of a 5-byte header read
    // and a body read: one system call per record fewer on every connection. Safe: SSL_read
    // reports WANT_READ only after a socket read found nothing with no whole record buffered,
    // and `MaybeHttpsStream` skips a read only in that state (until the socket wakes), so
    // nothing buffered in OpenSSL is left waiting for a readiness event that will not come.
    b.set_read_ahead(true);
    if common.distrusted.is_empty() {
        b.set_verify(SslVerifyMode::PEER);
    } else {
        let distrusted = Arc::clone(&common.distrusted);
        b.set_verify_callback(SslVerifyMode::PEER, move |ok, ctx| {
            let refused = ctx
                .current_cert()
                .and_then(|c| c.public_key().ok())
                .is_some_and(|k| distrusted.iter().any(|d| d.public_eq(&k)));
            if refused {
                ctx.set_error(X509VerifyResult::APPLICATION_VERIFICATION);
            }
            ok && !refused
        });
    }
    for cert in common.roots {
        b.cert_store_mut()
            .add_cert(cert.clone())
            .map_err(|e| ("cannot add a root certificate", e))?;
    }
    b.set_cipher_list(
        profile
            .cipher_list_opt()
            .unwrap_or("DEFAULT:!aNULL:!eNULL:!MD5:!3DES:!DES:!RC4:!IDEA:!SEED:!aDSS:!SRP:!PSK"),
    )
    .map_err(|e| ("cipher list", e))?;
    b.set_max_proto_version(Some(profile.max_version().to_ssl()))
        .map_err(|e| ("max version", e))?;
    let min = profile.min_version_opt().unwrap_or(TlsVersion::Tls1_0);
    b.set_min_proto_version(Some(min.to_ssl()))
        .map_err(|e| ("min version", e))?;
    Ok(b)
}

/// The hello's shape: TLS 1.3 suites, groups, signature algorithms, padding, ALPN.
fn shape(b: &mut SslContextBuilder, profile: &Profile, h2: bool) -> Result<(), Failed> {
    if let Some(list) = profile.ciphersuites_opt() {
        b.set_ciphersuites(list)
            .map_err(|e| ("TLS 1.3 suites", e))?;
    }
    if let Some(list) = profile.groups_opt() {
        b.set_groups_list(list).map_err(|e| ("groups", e))?;
    }
    if let Some(list) = profile.sigalgs_opt() {
        b.set_sigalgs_list(list)
            .map_err(|e| ("signature algorithms", e))?;
    }
    if profile.has_padding() {
        b.set_options(PADDING);
    } else {
        b.clear_options(PADDING);
    }
    if profile.has_alpn() {
        let protos: &[u8] = if h2 {
            b"\x02h2\x08http/1.1"
        } else {
            b"\x08http/1.1"
        };
        b.set_alpn_protos(protos).map_err(|e| ("ALPN", e))?;
    }
    Ok(())
}

/// The system roots (OpenSSL's default file and directory, `SSL_CERT_FILE`/`SSL_CERT_DIR`
/// honoured), parsed once.
pub(super) fn system_roots() -> Result<Vec<X509>, Error> {
    let mut store = X509StoreBuilder::new()
        .map_err(|e| Error::Config(format!("cannot create a certificate store: {e}")))?;
    store
        .set_default_paths()
        .map_err(|e| Error::Config(format!("cannot load the system roots: {e}")))?;
    Ok(store.build().all_certificates().into_iter().collect())
}
