//! Configuration: [`FallbackLayerBuilder`] checks the policy and builds every rung into its
//! OpenSSL contexts, once.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslContext, SslContextBuilder, SslMethod, SslMode, SslOptions, SslVerifyMode};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509;

use crate::cache::{DecisionStore, FileStore, MemoryStore};
use crate::config::{BuiltRung, Config, PinnedRung};
use crate::error::Error;
use crate::policy::{HostPattern, Pin as HostPin, Policy};
use crate::profile::{Ladder, Profile, TlsVersion};
use crate::session::{ContextId, SessionCache};

/// `SSL_OP_TLSEXT_PADDING`: RFC 7685 padding, part of OpenSSL 3's default options.
const PADDING: SslOptions = SslOptions::from_bits_retain(openssl_sys::SSL_OP_TLSEXT_PADDING as _);
/// `SSL_OP_LEGACY_SERVER_CONNECT`: talk to servers without secure renegotiation.
const LEGACY_SERVER_CONNECT: SslOptions =
    SslOptions::from_bits_retain(openssl_sys::SSL_OP_LEGACY_SERVER_CONNECT as _);

/// Configures a [`crate::FallbackLayer`].
#[derive(Debug)]
pub struct FallbackLayerBuilder {
    system_roots: bool,
    ca_files: Vec<PathBuf>,
    roots: Vec<X509>,
    ladder: Ladder,
    floor: TlsVersion,
    legacy: Vec<String>,
    pins: Vec<(String, HostPin)>,
    timeout: Duration,
    h2: bool,
    ttl: Duration,
    capacity: u64,
    store: Option<Arc<dyn DecisionStore>>,
    cache_file: Option<PathBuf>,
    stall: Option<Duration>,
    session_capacity: u64,
    single_flight: bool,
    identity: Option<ClientIdentity>,
    #[cfg(feature = "redis")]
    redis: Option<crate::cache::RedisOptions>,
}

/// A client certificate and its key, as given to the builder.
enum ClientIdentity {
    Parsed(Vec<X509>, PKey<Private>),
    Pem(Vec<u8>, Vec<u8>),
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        match self {
            ClientIdentity::Parsed(chain, _) => f
                .debug_struct("ClientIdentity")
                .field("subject", &chain.first().map(|c| c.subject_name()))
                .finish_non_exhaustive(),
            ClientIdentity::Pem(..) => f.debug_struct("ClientIdentity").finish_non_exhaustive(),
        }
    }
}

impl ClientIdentity {
    fn resolve(self) -> Result<(Vec<X509>, PKey<Private>), Error> {
        let (chain, key) = match self {
            ClientIdentity::Parsed(chain, key) => (chain, key),
            ClientIdentity::Pem(chain, key) => (
                X509::stack_from_pem(&chain).map_err(|e| {
                    Error::Config(format!("the client certificate is not PEM: {e}"))
                })?,
                PKey::private_key_from_pem(&key).map_err(|e| {
                    Error::Config(format!("the client key is not a PEM private key: {e}"))
                })?,
            ),
        };
        let Some(leaf) = chain.first() else {
            return Err(Error::Config(
                "the client certificate chain holds no (PEM) certificate".into(),
            ));
        };
        let matches = leaf.public_key().is_ok_and(|public| public.public_eq(&key));
        if !matches {
            return Err(Error::Config(format!(
                "the client key does not match the client certificate {:?}",
                leaf.subject_name()
            )));
        }
        Ok((chain, key))
    }
}

/// What every rung's context shares.
struct Common<'a> {
    roots: &'a [X509],
    h2: bool,
    /// OpenSSL's default security level.
    level: u32,
    identity: Option<&'a (Vec<X509>, PKey<Private>)>,
    sessions: Option<&'a SessionCache>,
}

impl Default for FallbackLayerBuilder {
    fn default() -> Self {
        FallbackLayerBuilder {
            system_roots: true,
            ca_files: Vec::new(),
            roots: Vec::new(),
            ladder: Ladder::default(),
            floor: TlsVersion::Tls1_2,
            legacy: Vec::new(),
            pins: Vec::new(),
            timeout: Duration::from_secs(10),
            h2: false,
            ttl: Duration::from_secs(3600),
            capacity: 10_000,
            store: None,
            #[cfg(feature = "redis")]
            redis: None,
            cache_file: None,
            stall: Some(Duration::from_millis(1500)),
            session_capacity: 1024,
            single_flight: true,
            identity: None,
        }
    }
}

impl FallbackLayerBuilder {
    /// Also trusts the roots in this PEM file.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_files.push(path.into());
        self
    }

    /// Also trusts this root certificate.
    pub fn add_root_certificate(mut self, cert: X509) -> Self {
        self.roots.push(cert);
        self
    }

    /// Presents this client certificate (first in `chain`, then its intermediates) to servers
    /// that ask for one (mutual TLS), on every rung and pin.
    pub fn client_identity(mut self, chain: Vec<X509>, key: PKey<Private>) -> Self {
        self.identity = Some(ClientIdentity::Parsed(chain, key));
        self
    }

    /// As [`client_identity`](Self::client_identity), from PEM: the certificate followed by
    /// its intermediates, and an unencrypted private key (PKCS#8 or traditional). Checked at
    /// [`build`](Self::build): unreadable PEM or a key that does not match is a config error.
    pub fn client_identity_pem(
        mut self,
        chain_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.identity = Some(ClientIdentity::Pem(chain_pem.into(), key_pem.into()));
        self
    }

    /// Whether to trust the system roots (default: yes).
    pub fn system_roots(mut self, on: bool) -> Self {
        self.system_roots = on;
        self
    }

    /// Replaces the default ladder.
    pub fn ladder(mut self, ladder: Ladder) -> Self {
        self.ladder = ladder;
        self
    }

    /// The lowest version for hosts outside the legacy gate (default TLS 1.2). A floor below
    /// TLS 1.2 lets every host use the legacy rungs down to that version (a floor of TLS 1.1
    /// opens TLS 1.1, not 1.0); hosts named by [`allow_legacy`](Self::allow_legacy) may go
    /// down to TLS 1.0 whatever the floor. Pins are not bound by the floor: a pin is an
    /// explicit choice for the hosts it names.
    pub fn floor(mut self, v: TlsVersion) -> Self {
        self.floor = v;
        self
    }

    /// Lets hosts matching this pattern go below TLS 1.2 with legacy settings
    /// (`host`, `*.suffix`, either with `:port`, or `*`). Checked at [`build`](Self::build).
    pub fn allow_legacy(mut self, pattern: impl Into<String>) -> Self {
        self.legacy.push(pattern.into());
        self
    }

    /// Pins hosts matching the pattern to a version or a whole [`Profile`]: one attempt, no
    /// SCSV, no learning. The most specific pattern wins. Checked at [`build`](Self::build).
    ///
    /// A pin is an explicit choice and is not bound by the floor or the legacy gate: pinning a
    /// host to TLS 1.0 allows that host TLS 1.0 with legacy settings (certificates are still
    /// checked as on every rung).
    pub fn pin(mut self, pattern: impl Into<String>, pin: impl Into<HostPin>) -> Self {
        self.pins.push((pattern.into(), pin.into()));
        self
    }

    /// Time allowed for the TCP connect and for each handshake (default 10 s). A silent
    /// server past it counts as intolerant.
    pub fn handshake_timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Offers `h2` in ALPN (only if the hyper client is built with HTTP/2).
    pub fn enable_http2(mut self, on: bool) -> Self {
        self.h2 = on;
        self
    }

    /// How long a learned decision lives before the host is re-probed (default 1 hour).
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// At most this many hosts are remembered (default 10,000).
    pub fn cache_capacity(mut self, n: u64) -> Self {
        self.capacity = n;
        self
    }

    /// Uses this store for decisions instead of the in-memory default.
    pub fn decision_store(mut self, store: Arc<dyn DecisionStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Races a silent rung: when a rung has had no byte back for this long, the next rung
    /// starts in parallel and whichever handshake completes first is used (the higher rung if
    /// both do). Default 1.5 s; `None` waits for the full handshake timeout instead.
    pub fn stall_timeout(mut self, stall: Option<Duration>) -> Self {
        self.stall = stall;
        self
    }

    /// How many TLS sessions to keep for resumption, keyed by host, port and rung (default
    /// 1,024; 0 turns resumption off).
    pub fn session_cache_capacity(mut self, n: u64) -> Self {
        self.session_capacity = n;
        self
    }

    /// Whether concurrent first contacts to one host share one learning walk (default: yes).
    /// Off, each connection walks on its own (the naive behaviour, kept for comparison).
    pub fn single_flight(mut self, on: bool) -> Self {
        self.single_flight = on;
        self
    }

    /// Shares decisions with every instance using this Redis (`redis://` or `rediss://`, with
    /// user and password) and the same ladder and policy; lookups stay local (feature
    /// `redis`, [`crate::RedisStore`]).
    #[cfg(feature = "redis")]
    pub fn redis(self, url: impl Into<String>) -> Self {
        self.redis_options(crate::cache::RedisOptions::new(url))
    }

    /// As [`FallbackLayerBuilder::redis`], with every option ([`crate::RedisOptions`]).
    #[cfg(feature = "redis")]
    pub fn redis_options(mut self, options: crate::cache::RedisOptions) -> Self {
        self.redis = Some(options);
        self
    }

    /// Keeps decisions in this JSON file ([`FileStore`]).
    pub fn cache_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cache_file = Some(path.into());
        self
    }

    /// Checks the settings and builds every rung and pin into its OpenSSL contexts (what
    /// [`FallbackLayerBuilder::build`] runs).
    pub(crate) fn into_config(self) -> Result<Config, Error> {
        self.check()?;
        let parse = |p: &str| {
            p.parse::<HostPattern>()
                .map_err(|e| Error::Config(e.to_string()))
        };
        let legacy_hosts = self
            .legacy
            .iter()
            .map(|p| parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        let roots = self.roots()?;
        #[cfg(feature = "redis")]
        let shared_store = self.redis_store(&legacy_hosts)?;
        // OpenSSL's default security level (library default or openssl.cnf): certificate
        // checks stay at it on every rung, legacy rungs included.
        let level = SslContextBuilder::new(SslMethod::tls_client())
            .map_err(|e| Error::Config(format!("cannot create an OpenSSL context: {e}")))?
            .build()
            .security_level();
        let sessions = SessionCache::new(self.session_capacity.max(1));
        let session_ref = (self.session_capacity > 0).then_some(&sessions);
        let identity = self.identity.map(ClientIdentity::resolve).transpose()?;
        let common = Common {
            roots: &roots,
            h2: self.h2,
            level,
            identity: identity.as_ref(),
            sessions: session_ref,
        };
        let mut pins = Vec::new();
        for (i, (pattern, pin)) in self.pins.iter().enumerate() {
            let id = ContextId::Pin(i as u16);
            pins.push(PinnedRung {
                pattern: parse(pattern)?,
                rung: build_rung(pin.profile(), &common, (id, None))?,
            });
        }
        let rungs = build_ladder(self.ladder, &common)?;
        #[cfg(feature = "redis")]
        let store_given = self.store.or(shared_store);
        #[cfg(not(feature = "redis"))]
        let store_given = self.store;
        let store: Arc<dyn DecisionStore> = match (store_given, self.cache_file) {
            (Some(s), _) => s,
            (None, Some(path)) => Arc::new(FileStore::open(path, self.capacity, self.ttl)),
            (None, None) => Arc::new(MemoryStore::new(self.capacity)),
        };
        Ok(Config {
            rungs,
            pins,
            policy: Policy {
                floor: self.floor,
                legacy_hosts,
                handshake_timeout: self.timeout,
            },
            store,
            ttl: self.ttl,
            sessions: session_ref.cloned(),
            stall: self.stall,
            single_flight: self.single_flight,
        })
    }

    /// The settings that need no OpenSSL to be judged.
    fn check(&self) -> Result<(), Error> {
        self.ladder.validate().map_err(Error::Config)?;
        let bad = |msg: &str| Err(Error::Config(msg.into()));
        if self.timeout.is_zero() {
            return bad("the handshake timeout must be above zero");
        }
        if self.ladder.len() > usize::from(u8::MAX) || self.pins.len() > usize::from(u16::MAX) {
            return bad("at most 255 rungs and 65535 pins");
        }
        if self.stall.is_some_and(|s| s.is_zero()) {
            return bad("the stall time must be above zero");
        }
        if self.ttl.is_zero() {
            return bad("the cache TTL must be above zero");
        }
        if self.store.is_some() && self.cache_file.is_some() {
            return bad(
                "both a decision store and a cache file were given: choose one (a FileStore \
                 is a decision store)",
            );
        }
        Ok(())
    }

    /// The trusted roots: given, from CA files, and the system's.
    fn roots(&self) -> Result<Vec<X509>, Error> {
        let mut roots = self.roots.clone();
        for path in &self.ca_files {
            let pem = std::fs::read(path).map_err(|e| {
                Error::Config(format!("cannot read CA file {}: {e}", path.display()))
            })?;
            let certs = X509::stack_from_pem(&pem).map_err(|e| {
                Error::Config(format!(
                    "CA file {} is not PEM certificates: {e}",
                    path.display()
                ))
            })?;
            if certs.is_empty() {
                return Err(Error::Config(format!(
                    "CA file {} holds no certificate",
                    path.display()
                )));
            }
            roots.extend(certs);
        }
        if self.system_roots {
            roots.extend(system_roots()?);
        }
        Ok(roots)
    }
}

/// Every rung, with a plain and an SCSV context each.
fn build_ladder(ladder: Ladder, common: &Common<'_>) -> Result<Vec<BuiltRung>, Error> {
    let ids = |i: usize, scsv| ContextId::Rung {
        index: i as u8,
        scsv,
    };
    (ladder.into_rungs().into_iter().enumerate())
        .map(|(i, p)| build_rung(p, common, (ids(i, false), Some(ids(i, true)))))
        .collect()
}

impl FallbackLayerBuilder {
    /// The Redis store, if asked for; alone: a store or a cache file besides it is an error.
    #[cfg(feature = "redis")]
    fn redis_store(
        &self,
        legacy_hosts: &[HostPattern],
    ) -> Result<Option<Arc<dyn DecisionStore>>, Error> {
        let Some(options) = self.redis.clone() else {
            return Ok(None);
        };
        if self.store.is_some() || self.cache_file.is_some() {
            return Err(Error::Config(
                "Redis and a decision store or cache file were given: choose one".into(),
            ));
        }
        let policy = Policy {
            floor: self.floor,
            legacy_hosts: legacy_hosts.to_vec(),
            ..Policy::default()
        };
        let store = crate::cache::RedisStore::open(
            options,
            &self.ladder,
            &policy,
            self.ttl,
            self.capacity,
        )?;
        Ok(Some(Arc::new(store)))
    }
}

fn build_rung(
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
    b.set_verify(SslVerifyMode::PEER);
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
fn system_roots() -> Result<Vec<X509>, Error> {
    let mut store = X509StoreBuilder::new()
        .map_err(|e| Error::Config(format!("cannot create a certificate store: {e}")))?;
    store
        .set_default_paths()
        .map_err(|e| Error::Config(format!("cannot load the system roots: {e}")))?;
    Ok(store.build().all_certificates().into_iter().collect())
}
