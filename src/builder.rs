//! Configuration: [`FallbackLayerBuilder`] checks the policy and builds every rung into its
//! OpenSSL contexts, once.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslContextBuilder, SslMethod};
use openssl::x509::X509;

use crate::cache::{DecisionStore, FileStore, MemoryStore};
use crate::config::{Config, PinnedRung};
use crate::connector::FallbackLayer;
use crate::error::Error;
use crate::policy::{HostPattern, Pin as HostPin, Policy};
use crate::profile::{Ladder, TlsVersion};
use crate::session::{ContextId, SessionCache};

mod contexts;

use contexts::{build_ladder, build_rung, system_roots, Common};

/// Configures a [`crate::FallbackLayer`].
#[derive(Debug)]
pub struct FallbackLayerBuilder {
    system_roots: bool,
    ca_files: Vec<PathBuf>,
    roots: Vec<X509>,
    distrusted: Vec<X509>,
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
    /// The layer whose decisions (and store) this one keeps.
    keep: Option<FallbackLayer>,
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

/// Parses an unencrypted PEM private key. An encrypted one is refused with what to do, never
/// asked a passphrase for (OpenSSL's default would prompt on the terminal, and a service that
/// reloads would wait there).
pub fn private_key_from_pem(pem: &[u8]) -> Result<PKey<Private>, String> {
    let encrypted = pem.windows(9).any(|w| w == b"ENCRYPTED");
    if encrypted {
        return Err("it is encrypted (has a passphrase); give it unencrypted \
                    (openssl pkey -in KEY -out KEY.plain)"
            .into());
    }
    // A callback that gives no passphrase: whatever OpenSSL finds, it never prompts.
    PKey::private_key_from_pem_callback(pem, |_| Ok(0))
        .map_err(|e| format!("not a PEM private key: {e}"))
}

impl ClientIdentity {
    fn resolve(self) -> Result<(Vec<X509>, PKey<Private>), Error> {
        let (chain, key) = match self {
            ClientIdentity::Parsed(chain, key) => (chain, key),
            ClientIdentity::Pem(chain, key) => (
                X509::stack_from_pem(&chain).map_err(|e| {
                    Error::Config(format!("the client certificate is not PEM: {e}"))
                })?,
                private_key_from_pem(&key)
                    .map_err(|e| Error::Config(format!("the client key: {e}")))?,
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

impl Default for FallbackLayerBuilder {
    fn default() -> Self {
        FallbackLayerBuilder {
            system_roots: true,
            ca_files: Vec::new(),
            roots: Vec::new(),
            distrusted: Vec::new(),
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
            keep: None,
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

    /// Never accepts a server chain that holds a certificate with this certificate's key,
    /// whatever the roots say: for a local CA that must not vouch for servers to this layer
    /// (an egress proxy's interception CA, which apps on the same host may trust through the
    /// system store the layer also reads).
    pub fn distrust(mut self, cert: X509) -> Self {
        self.distrusted.push(cert);
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

    /// Pins hosts matching the pattern to a version or a whole [`Profile`](crate::Profile): one attempt, no
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

    /// Keeps what `layer` learned: the new layer uses `layer`'s decision store (its memory, its
    /// cache file, its Redis link) instead of opening one, so a layer rebuilt with another
    /// policy, pins, timeouts, trust or TTL (a configuration reload) forgets nothing and
    /// writes the same file. Each decision is still judged by the new layer when it is used:
    /// a rung its policy does not allow for the host is dropped here (not in the fleet) and the
    /// host walks from the top. Both layers share the store from then on; a Redis store checks
    /// what it reads against the new layer's policy and TTL.
    ///
    /// The ladder must be `layer`'s (a decision names a rung by number and name), and no other
    /// store may be given ([`decision_store`](Self::decision_store),
    /// [`cache_file`](Self::cache_file), `redis`): checked at [`build`](Self::build).
    ///
    /// ```
    /// use tls_fallback::FallbackLayer;
    /// # fn run() -> Result<(), tls_fallback::Error> {
    /// let old = FallbackLayer::builder().build()?;
    /// let new = FallbackLayer::builder()
    ///     .allow_legacy("old-gateway.example")
    ///     .decisions_of(&old)
    ///     .build()?;
    /// # let _ = new; Ok(()) }
    /// ```
    pub fn decisions_of(mut self, layer: &FallbackLayer) -> Self {
        self.keep = Some(layer.clone());
        self
    }

    /// Checks the settings, builds every rung's OpenSSL contexts, and returns the layer.
    pub fn build(self) -> Result<FallbackLayer, Error> {
        let shared = crate::walk::Shared::new(self.into_config()?);
        Ok(FallbackLayer {
            shared: Arc::new(shared),
        })
    }

    /// Checks the settings and builds every rung and pin into its OpenSSL contexts (what
    /// [`FallbackLayerBuilder::build`] runs).
    pub(crate) fn into_config(mut self) -> Result<Config, Error> {
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
        // OpenSSL's default security level (library default or openssl.cnf): certificate
        // checks stay at it on every rung, legacy rungs included.
        let level = SslContextBuilder::new(SslMethod::tls_client())
            .map_err(|e| Error::Config(format!("cannot create an OpenSSL context: {e}")))?
            .build()
            .security_level();
        let sessions = SessionCache::new(self.session_capacity.max(1));
        let session_ref = (self.session_capacity > 0).then_some(&sessions);
        let identity = (self.identity.take())
            .map(ClientIdentity::resolve)
            .transpose()?;
        let distrusted = (self.distrusted.iter())
            .filter_map(|c| c.public_key().ok())
            .collect::<Vec<_>>();
        let common = Common {
            roots: &roots,
            distrusted: Arc::new(distrusted),
            h2: self.h2,
            level,
            identity: identity.as_ref(),
            sessions: session_ref,
        };
        let mut pins = Vec::new();
        for (i, (pattern, pin)) in self.pins.iter().enumerate() {
            // A pin is a decision someone made: it is in the log, with what it gives up.
            tracing::warn!(
                pattern = ?pattern,
                rung = %pin.profile().name(),
                version = %pin.profile().max_version().as_str(),
                "pinned: these hosts get this one rung, with no fallback and no downgrade check"
            );
            let id = ContextId::Pin(i as u16);
            pins.push(PinnedRung {
                pattern: parse(pattern)?,
                rung: build_rung(pin.profile(), &common, (id, None))?,
            });
        }
        let rungs = build_ladder(self.ladder.clone(), &common)?;
        let policy = Policy {
            floor: self.floor,
            legacy_hosts,
            handshake_timeout: self.timeout,
        };
        let stores = self.open_store(&policy)?;
        Ok(Config {
            rungs,
            pins,
            policy,
            store: stores.store,
            #[cfg(feature = "redis")]
            redis: stores.redis,
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
        if let Some(old) = &self.keep {
            #[cfg(feature = "redis")]
            let redis = self.redis.is_some();
            #[cfg(not(feature = "redis"))]
            let redis = false;
            if self.store.is_some() || self.cache_file.is_some() || redis {
                return bad(
                    "decisions_of keeps the other layer's store: give no decision store, cache \
                     file or Redis besides it",
                );
            }
            let same = old.shared.config.rungs.len() == self.ladder.len()
                && (old.shared.config.rungs.iter())
                    .zip(self.ladder.iter())
                    .all(|(r, p)| r.profile == *p);
            if !same {
                return bad(
                    "decisions_of: the other layer has another ladder, so its decisions name \
                     other rungs",
                );
            }
        }
        Ok(())
    }

    /// The trusted roots: given, from CA files, and the system's.
    fn roots(&self) -> Result<Vec<X509>, Error> {
        let mut roots = self.roots.clone();
        for path in &self.ca_files {
            let pem = crate::files::read_bounded(path, crate::files::MAX_BYTES).map_err(|e| {
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

/// The decision store a layer uses, and the same store as the Redis one when it is.
struct Stores {
    store: Arc<dyn DecisionStore>,
    #[cfg(feature = "redis")]
    redis: Option<Arc<crate::cache::RedisStore>>,
}

impl FallbackLayerBuilder {
    /// The decision store: the kept layer's (a Redis one adopts this policy and TTL), else the
    /// one given, Redis, the cache file, or memory.
    fn open_store(&mut self, policy: &Policy) -> Result<Stores, Error> {
        #[cfg(not(feature = "redis"))]
        let _ = policy; // Only a Redis store checks values against it.
        if let Some(old) = self.keep.take() {
            let old = &old.shared.config;
            #[cfg(feature = "redis")]
            if let Some(r) = &old.redis {
                r.adopt(&self.ladder, policy, self.ttl);
            }
            return Ok(Stores {
                store: Arc::clone(&old.store),
                #[cfg(feature = "redis")]
                redis: old.redis.clone(),
            });
        }
        #[cfg(feature = "redis")]
        if let Some(r) = self.redis_store(policy)? {
            return Ok(Stores {
                store: Arc::clone(&r) as Arc<dyn DecisionStore>,
                redis: Some(r),
            });
        }
        let store: Arc<dyn DecisionStore> = match (self.store.take(), self.cache_file.take()) {
            (Some(s), _) => s,
            (None, Some(path)) => Arc::new(FileStore::open(path, self.capacity, self.ttl)),
            (None, None) => Arc::new(MemoryStore::new(self.capacity)),
        };
        Ok(Stores {
            store,
            #[cfg(feature = "redis")]
            redis: None,
        })
    }

    /// The Redis store, if asked for; alone: a store or a cache file besides it is an error.
    #[cfg(feature = "redis")]
    fn redis_store(&self, policy: &Policy) -> Result<Option<Arc<crate::cache::RedisStore>>, Error> {
        let Some(options) = self.redis.clone() else {
            return Ok(None);
        };
        if self.store.is_some() || self.cache_file.is_some() {
            return Err(Error::Config(
                "Redis and a decision store or cache file were given: choose one".into(),
            ));
        }
        let store =
            crate::cache::RedisStore::open(options, &self.ladder, policy, self.ttl, self.capacity)?;
        Ok(Some(Arc::new(store)))
    }
}
