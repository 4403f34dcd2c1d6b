//! The layer and the connector: [`FallbackLayer`] wraps any TCP connector (`Service<Uri>`) into
//! a [`FallbackConnector`] that hyper-util's legacy `Client` can use. Its `call` is the whole
//! attempt loop: choose the starting rung (pin, cache, single flight, top), handshake under a
//! timeout, classify, fall back or stop, learn.

use std::future::{poll_fn, Future};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::uri::Scheme;
use http::Uri;
use hyper::rt::{Read, Write};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use openssl::ssl::{SslConnector, SslMethod, SslMode, SslOptions};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509;
use serde::Serialize;
use tokio_openssl::SslStream;
use tower_layer::Layer;
use tower_service::Service;

use crate::cache::{
    self, Decision, DecisionStore, FileStore, FlightOutcome, Flights, Join, MemoryStore,
};
use crate::classify::{classify, signal_of, Outcome, Signal, Verdict};
use crate::error::{Attempt, Attempts, Error};
use crate::policy::{HostKey, HostPattern, Pin as HostPin, Policy};
use crate::profile::{Ladder, Profile, TlsVersion};
use crate::stream::{MaybeHttpsStream, ReadWatch, TlsInfo, TlsStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `SSL_OP_TLSEXT_PADDING`: RFC 7685 padding, part of OpenSSL 3's default options.
const PADDING: SslOptions = SslOptions::from_bits_retain(openssl_sys::SSL_OP_TLSEXT_PADDING as _);
/// `SSL_OP_LEGACY_SERVER_CONNECT`: talk to servers without secure renegotiation.
const LEGACY_SERVER_CONNECT: SslOptions =
    SslOptions::from_bits_retain(openssl_sys::SSL_OP_LEGACY_SERVER_CONNECT as _);

/// A rung built into its OpenSSL contexts, once.
struct BuiltRung {
    profile: Profile,
    name: Arc<str>,
    plain: SslConnector,
    /// The same context with TLS_FALLBACK_SCSV; `None` for pins (never a fallback).
    scsv: Option<SslConnector>,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    handshakes: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    single_flight_waits: AtomicU64,
    downgrades: AtomicU64,
    learned: AtomicU64,
    expired: AtomicU64,
    fallbacks: Mutex<std::collections::BTreeMap<String, u64>>,
}

struct Shared {
    rungs: Vec<BuiltRung>,
    pins: Vec<(HostPattern, BuiltRung)>,
    policy: Policy,
    store: Arc<dyn DecisionStore>,
    ttl: Duration,
    flights: Flights,
    stats: Counters,
}

/// Counters and learned hosts of a connector; see [`FallbackConnector::stats`].
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// `https://` connections requested.
    pub connections: u64,
    /// Handshakes attempted (every rung of every connection).
    pub handshakes: u64,
    /// Fallbacks, by the outcome that caused them (`closed`, `reset`, `alert:70`...).
    pub fallbacks: std::collections::BTreeMap<String, u64>,
    /// Connections that started from a cached decision.
    pub cache_hits: u64,
    /// Connections with no (or an expired) decision.
    pub cache_misses: u64,
    /// Connections that waited for another connection's learning walk.
    pub single_flight_waits: u64,
    /// Downgrade signals seen.
    pub downgrades: u64,
    /// Decisions learned (fallbacks recorded).
    pub learned: u64,
    /// Decisions that expired and were re-probed.
    pub expired: u64,
    /// Hosts that needed a fallback, with what was learned.
    pub hosts: Vec<HostStats>,
}

/// One learned host in [`Stats`].
#[derive(Debug, Clone, Serialize)]
pub struct HostStats {
    /// `host:port`.
    pub host: String,
    /// The rung that works.
    pub profile: String,
    /// Why the rungs above it failed.
    pub reason: String,
    /// When it was learned (ms since the Unix epoch).
    pub learned_at_ms: u64,
    /// Connections that started from it.
    pub uses: u64,
}

/// A `tower::Layer` that adds safe, per-host TLS fallback to a TCP connector.
///
/// ```no_run
/// use http_body_util::Empty;
/// use hyper::body::Bytes;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use tls_fallback::{FallbackLayer, TlsVersion};
/// use tower_layer::Layer;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let layer = FallbackLayer::builder()
///     .allow_legacy("legacy-gateway.example")
///     .pin("api.old-bank.example", TlsVersion::Tls1_0)
///     .build()?;
/// let connector = layer.layer(FallbackLayer::http_connector());
/// let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector);
/// let res = client.get("https://legacy-gateway.example/".parse()?).await?;
/// if let Some(tls) = res.extensions().get::<tls_fallback::TlsInfo>() {
///     println!("{} via {} after {} handshakes", tls.version, tls.profile, tls.handshakes());
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FallbackLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FallbackLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackLayer")
            .field(
                "rungs",
                &self
                    .shared
                    .rungs
                    .iter()
                    .map(|r| &r.name)
                    .collect::<Vec<_>>(),
            )
            .field("policy", &self.shared.policy)
            .finish()
    }
}

/// Configures a [`FallbackLayer`].
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
            cache_file: None,
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
    /// TLS 1.2 allows legacy TLS for every host.
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

    /// Keeps decisions in this JSON file ([`FileStore`]).
    pub fn cache_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cache_file = Some(path.into());
        self
    }

    /// Builds every rung's OpenSSL contexts and checks patterns, pins and the ladder.
    pub fn build(self) -> Result<FallbackLayer, Error> {
        self.ladder.validate().map_err(Error::Config)?;
        if self.timeout.is_zero() {
            return Err(Error::Config(
                "the handshake timeout must be above zero".into(),
            ));
        }
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
        let parse = |p: &str| {
            p.parse::<HostPattern>()
                .map_err(|e| Error::Config(e.to_string()))
        };
        let legacy_hosts = self
            .legacy
            .iter()
            .map(|p| parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        let roots = Roots {
            system: self.system_roots,
            extra: roots,
        };
        let mut pins = Vec::new();
        let mut policy_pins = Vec::new();
        for (pattern, pin) in &self.pins {
            let pat = parse(pattern)?;
            let profile = pin.profile();
            let built = build_rung(profile, &roots, self.h2, false)?;
            policy_pins.push((pat.clone(), pin.clone()));
            pins.push((pat, built));
        }
        let rungs = self
            .ladder
            .into_rungs()
            .into_iter()
            .map(|p| build_rung(p, &roots, self.h2, true))
            .collect::<Result<Vec<_>, _>>()?;
        if rungs.len() > usize::from(u8::MAX) {
            return Err(Error::Config("a ladder has at most 255 rungs".into()));
        }
        let store: Arc<dyn DecisionStore> = match (self.store, self.cache_file) {
            (Some(s), _) => s,
            (None, Some(path)) => Arc::new(FileStore::open(
                path,
                self.capacity,
                self.ttl.saturating_add(Duration::from_secs(60)),
            )),
            (None, None) => Arc::new(MemoryStore::new(
                self.capacity,
                self.ttl.saturating_add(Duration::from_secs(60)),
            )),
        };
        Ok(FallbackLayer {
            shared: Arc::new(Shared {
                rungs,
                pins,
                policy: Policy {
                    floor: self.floor,
                    legacy_hosts,
                    pins: policy_pins,
                    handshake_timeout: self.timeout,
                },
                store,
                ttl: self.ttl,
                flights: Flights::default(),
                stats: Counters::default(),
            }),
        })
    }
}

struct Roots {
    system: bool,
    extra: Vec<X509>,
}

fn build_rung(
    profile: Profile,
    roots: &Roots,
    h2: bool,
    with_scsv: bool,
) -> Result<BuiltRung, Error> {
    let ctx_err = |what: &str, e: openssl::error::ErrorStack| {
        Error::Config(format!("profile {:?}: {what}: {e}", profile.name()))
    };
    let build = |scsv: bool| -> Result<SslConnector, Error> {
        let mut b = SslConnector::builder(SslMethod::tls_client())
            .map_err(|e| ctx_err("cannot create an OpenSSL context", e))?;
        if !roots.system {
            let store = X509StoreBuilder::new().map_err(|e| ctx_err("cert store", e))?;
            b.set_cert_store(store.build());
        }
        for cert in &roots.extra {
            b.cert_store_mut()
                .add_cert(cert.clone())
                .map_err(|e| ctx_err("cannot add a root certificate", e))?;
        }
        b.set_max_proto_version(Some(profile.max_version().to_ssl()))
            .map_err(|e| ctx_err("max version", e))?;
        b.set_min_proto_version(Some(
            profile
                .min_version_opt()
                .unwrap_or(TlsVersion::Tls1_0)
                .to_ssl(),
        ))
        .map_err(|e| ctx_err("min version", e))?;
        if profile.is_legacy() {
            b.set_security_level(0);
            b.set_options(LEGACY_SERVER_CONNECT);
        }
        if let Some(list) = profile.cipher_list_opt() {
            b.set_cipher_list(list)
                .map_err(|e| ctx_err("cipher list", e))?;
        }
        if profile.is_legacy() {
            // A cipher string may carry its own @SECLEVEL; legacy means level 0 regardless.
            b.set_security_level(0);
        }
        if let Some(list) = profile.ciphersuites_opt() {
            b.set_ciphersuites(list)
                .map_err(|e| ctx_err("TLS 1.3 suites", e))?;
        }
        if let Some(list) = profile.groups_opt() {
            b.set_groups_list(list).map_err(|e| ctx_err("groups", e))?;
        }
        if let Some(list) = profile.sigalgs_opt() {
            b.set_sigalgs_list(list)
                .map_err(|e| ctx_err("signature algorithms", e))?;
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
            b.set_alpn_protos(protos).map_err(|e| ctx_err("ALPN", e))?;
        }
        if scsv {
            b.set_mode(SslMode::SEND_FALLBACK_SCSV);
        }
        Ok(b.build())
    };
    Ok(BuiltRung {
        name: Arc::from(profile.name()),
        plain: build(false)?,
        scsv: if with_scsv { Some(build(true)?) } else { None },
        profile,
    })
}

impl FallbackLayer {
    /// A builder with the defaults: system roots, the default ladder, floor TLS 1.2, no legacy
    /// host, no pin, 10 s handshake timeout, 1 h / 10,000-host decision cache in memory.
    pub fn builder() -> FallbackLayerBuilder {
        FallbackLayerBuilder::default()
    }

    /// The layer with every default.
    pub fn new() -> Result<Self, Error> {
        FallbackLayer::builder().build()
    }

    /// hyper-util's `HttpConnector`, set up to be wrapped: it accepts `https://` URIs
    /// (`enforce_http(false)`) and sets `TCP_NODELAY`.
    pub fn http_connector() -> HttpConnector {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http
    }

    /// Counters and learned hosts so far (shared by every connector from this layer).
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Forgets everything learned about a host.
    pub fn forget(&self, host: &str, port: u16) {
        self.shared.store.remove(&HostKey::new(host, port));
    }

    /// Makes learned decisions durable now (writes the cache file, if any).
    pub fn flush(&self) -> std::io::Result<()> {
        self.shared.store.flush()
    }
}

impl<S> Layer<S> for FallbackLayer {
    type Service = FallbackConnector<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FallbackConnector {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The connector: a `Service<Uri>` yielding [`MaybeHttpsStream`]s, for
/// `hyper_util::client::legacy::Client::builder(..).build(connector)`.
#[derive(Clone)]
pub struct FallbackConnector<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for FallbackConnector<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackConnector").finish_non_exhaustive()
    }
}

impl FallbackConnector<HttpConnector> {
    /// A connector over hyper-util's `HttpConnector` with every default.
    pub fn new() -> Result<Self, Error> {
        Ok(FallbackLayer::new()?.layer(FallbackLayer::http_connector()))
    }
}

impl<S> FallbackConnector<S> {
    /// Counters and learned hosts so far (shared with every clone and with the layer).
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Forgets everything learned about a host.
    pub fn forget(&self, host: &str, port: u16) {
        self.shared.store.remove(&HostKey::new(host, port));
    }
}

impl<S> Service<Uri> for FallbackConnector<S>
where
    S: Service<Uri> + Clone + Send + 'static,
    S::Response: Read + Write + Unpin + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = MaybeHttpsStream<S::Response>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| connect_error("", e.into(), Vec::new()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        // The ready clone goes into the future; `self.inner` gets a fresh clone (tower's rule).
        let inner = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, inner);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let scheme = uri.scheme().cloned();
            if scheme == Some(Scheme::HTTP) {
                let mut inner = inner;
                let tcp = inner
                    .call(uri.clone())
                    .await
                    .map_err(|e| connect_error(&uri.to_string(), e.into(), Vec::new()))?;
                return Ok(MaybeHttpsStream::Http(tcp));
            }
            if scheme != Some(Scheme::HTTPS) {
                return Err(Error::InvalidUri {
                    uri: uri.to_string(),
                    reason: "the scheme must be http or https".into(),
                });
            }
            let key = HostKey::from_uri(&uri)?;
            let mut walk = Walk {
                shared: &shared,
                inner,
                uri: &uri,
                key: &key,
                attempts: Vec::new(),
            };
            walk.run().await
        })
    }
}

fn connect_error(host: &str, e: BoxError, attempts: Vec<Attempt>) -> Error {
    Error::Connect {
        host: host.to_string(),
        source: Arc::from(e),
        attempts: Attempts(attempts),
    }
}

/// Why one attempt did not produce a stream.
enum AttemptError {
    /// The TCP connect failed: not a TLS problem, stop.
    Connect(BoxError),
    /// The handshake failed with this verdict (the attempt is recorded).
    Handshake(Verdict),
}

/// How a walk failed.
enum WalkError {
    /// Stop with this error.
    Fail(Error),
    /// The learned start rung is obsolete: walk again from the top.
    Reprobe,
}

/// Where a walk starts.
struct Start {
    rung: usize,
    from_cache: bool,
}

/// One connection's walk down the ladder.
struct Walk<'a, S> {
    shared: &'a Shared,
    inner: S,
    uri: &'a Uri,
    key: &'a HostKey,
    attempts: Vec<Attempt>,
}

impl<S> Walk<'_, S>
where
    S: Service<Uri> + Send,
    S::Response: Read + Write + Unpin + Send + 'static,
    S::Error: Into<BoxError>,
{
    async fn run(&mut self) -> Result<MaybeHttpsStream<S::Response>, Error> {
        let shared = self.shared;
        shared.stats.connections.fetch_add(1, Ordering::Relaxed);
        if let Some(i) = shared.policy.pin_index(self.key) {
            return self.pinned(&shared.pins[i].1).await;
        }
        // At most three rounds of waiting for someone else's walk, then walk alone.
        for _ in 0..3 {
            if let Some(d) = shared.lookup(self.key) {
                d.uses.fetch_add(1, Ordering::Relaxed);
                let start = Start {
                    rung: usize::from(d.rung).min(shared.rungs.len() - 1),
                    from_cache: true,
                };
                return self.walk(start, None).await;
            }
            match shared.flights.join(self.key) {
                Join::Lead(leader) => {
                    let start = Start {
                        rung: 0,
                        from_cache: false,
                    };
                    return self.walk(start, Some(leader)).await;
                }
                Join::Wait(rx) => {
                    shared
                        .stats
                        .single_flight_waits
                        .fetch_add(1, Ordering::Relaxed);
                    match cache::wait_flight(rx).await {
                        Some(FlightOutcome::Rung(rung)) => {
                            let start = Start {
                                rung,
                                from_cache: true,
                            };
                            return self.walk(start, None).await;
                        }
                        Some(FlightOutcome::Failed(e)) => return Err(e),
                        None => continue,
                    }
                }
            }
        }
        self.walk(
            Start {
                rung: 0,
                from_cache: false,
            },
            None,
        )
        .await
    }

    /// A pinned host: one attempt with its profile, no SCSV, no learning.
    async fn pinned(&mut self, rung: &BuiltRung) -> Result<MaybeHttpsStream<S::Response>, Error> {
        let min = rung.profile.min_version_opt().unwrap_or(TlsVersion::Tls1_0);
        match self.attempt(rung, false, min).await {
            Ok(stream) => Ok(self.finish(stream, rung, false, true)),
            Err(AttemptError::Connect(e)) => Err(self.connect_err(e)),
            Err(AttemptError::Handshake(verdict)) => Err(match verdict {
                Verdict::Certificate => Error::Certificate {
                    host: self.key.to_string(),
                    attempts: self.take_attempts(),
                },
                Verdict::Downgrade => Error::DowngradeDetected {
                    host: self.key.to_string(),
                    attempts: self.take_attempts(),
                },
                _ if self.last_outcome_is_timeout() => Error::Timeout {
                    host: self.key.to_string(),
                    attempts: self.take_attempts(),
                },
                _ => Error::Handshake {
                    host: self.key.to_string(),
                    attempts: self.take_attempts(),
                },
            }),
        }
    }

    async fn walk(
        &mut self,
        start: Start,
        leader: Option<cache::Leader<'_>>,
    ) -> Result<MaybeHttpsStream<S::Response>, Error> {
        let mut result = self.walk_inner(&start).await;
        if let Err(WalkError::Reprobe) = result {
            // The learned rung met a server that can do better (it answered the SCSV hello with
            // inappropriate_fallback): the gateway was fixed. Forget and walk from the top, once.
            // Still safe: every fallback of this new walk carries SCSV, and a downgrade signal
            // there is final.
            let top = Start {
                rung: 0,
                from_cache: false,
            };
            result = self.walk_inner(&top).await;
        }
        let result = result.map_err(|e| match e {
            WalkError::Fail(e) => e,
            WalkError::Reprobe => Error::Handshake {
                host: self.key.to_string(),
                attempts: self.take_attempts(),
            },
        });
        match &result {
            Ok((_, idx)) => {
                if let Some(l) = leader {
                    l.finish(FlightOutcome::Rung(*idx));
                }
            }
            Err(e) => {
                if let Some(l) = leader {
                    l.finish(FlightOutcome::Failed(e.clone()));
                }
            }
        }
        result.map(|(s, _)| s)
    }

    async fn walk_inner(
        &mut self,
        start: &Start,
    ) -> Result<(MaybeHttpsStream<S::Response>, usize), WalkError> {
        let shared = self.shared;
        let policy = &shared.policy;
        let floor = policy.floor_for(self.key);
        let mut idx = start.rung;
        let mut last = None;
        let mut stopped_by_policy = false;
        while let Some(rung) = shared.rungs.get(idx) {
            if !policy.rung_allowed(self.key, &rung.profile) {
                stopped_by_policy = true;
                break;
            }
            let min = rung
                .profile
                .min_version_opt()
                .map_or(floor, |m| m.max(floor));
            match self.attempt(rung, idx > 0, min).await {
                Ok(stream) => {
                    self.learn(idx, start);
                    let out = self.finish(stream, rung, start.from_cache, false);
                    return Ok((out, idx));
                }
                Err(AttemptError::Connect(e)) => return Err(WalkError::Fail(self.connect_err(e))),
                Err(AttemptError::Handshake(verdict)) => {
                    last = Some(verdict);
                    match verdict {
                        Verdict::Intolerant => {
                            self.count_fallback();
                            idx += 1;
                        }
                        Verdict::LegacyServer => {
                            self.count_fallback();
                            // Only a legacy rung can help; skip the modern ones below this.
                            match shared.rungs[idx + 1..]
                                .iter()
                                .position(|r| r.profile.is_legacy())
                            {
                                Some(off) => idx += 1 + off,
                                None => break,
                            }
                        }
                        Verdict::Downgrade if start.from_cache && idx == start.rung => {
                            shared.store.remove(self.key);
                            tracing::info!(
                                host = %self.key,
                                was = %rung.name,
                                "the learned TLS fallback is no longer needed (the server refused \
                                 it as an inappropriate fallback); re-probing from the top"
                            );
                            return Err(WalkError::Reprobe);
                        }
                        Verdict::Downgrade => {
                            shared.stats.downgrades.fetch_add(1, Ordering::Relaxed);
                            shared.store.remove(self.key);
                            tracing::error!(
                                host = %self.key,
                                attempts = %Attempts(self.attempts.clone()),
                                "downgrade signal (inappropriate_fallback / RFC 8446 sentinel): \
                                 refusing to continue; the host's cached decision was forgotten"
                            );
                            return Err(WalkError::Fail(Error::DowngradeDetected {
                                host: self.key.to_string(),
                                attempts: self.take_attempts(),
                            }));
                        }
                        Verdict::Certificate => {
                            return Err(WalkError::Fail(Error::Certificate {
                                host: self.key.to_string(),
                                attempts: self.take_attempts(),
                            }))
                        }
                        Verdict::Fatal => {
                            return Err(WalkError::Fail(if self.last_outcome_is_timeout() {
                                Error::Timeout {
                                    host: self.key.to_string(),
                                    attempts: self.take_attempts(),
                                }
                            } else {
                                Error::Handshake {
                                    host: self.key.to_string(),
                                    attempts: self.take_attempts(),
                                }
                            }))
                        }
                    }
                }
            }
        }
        // Out of rungs: the cached decision (if any) no longer holds.
        if start.from_cache {
            shared.store.remove(self.key);
        }
        let host = self.key.to_string();
        let attempts = self.take_attempts();
        Err(WalkError::Fail(match last {
            Some(Verdict::LegacyServer) if !policy.legacy_allowed(self.key) => {
                Error::LegacyNotAllowed {
                    host,
                    floor,
                    attempts,
                }
            }
            Some(Verdict::Intolerant) if stopped_by_policy => Error::BelowFloor {
                host,
                floor,
                attempts,
            },
            _ => Error::Handshake { host, attempts },
        }))
    }

    /// One TCP connect and one handshake with this rung.
    async fn attempt(
        &mut self,
        rung: &BuiltRung,
        fallback: bool,
        min: TlsVersion,
    ) -> Result<TlsStream<S::Response>, AttemptError> {
        let shared = self.shared;
        let timeout = shared.policy.handshake_timeout;
        let started = Instant::now();
        let tcp = tokio::time::timeout(timeout, async {
            poll_fn(|cx| self.inner.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            self.inner.call(self.uri.clone()).await.map_err(Into::into)
        })
        .await
        .unwrap_or_else(|_| Err(format!("TCP connect timed out after {timeout:?}").into()))
        .map_err(AttemptError::Connect)?;

        shared.stats.handshakes.fetch_add(1, Ordering::Relaxed);
        let scsv = fallback && rung.scsv.is_some();
        let connector = match (&rung.scsv, scsv) {
            (Some(c), true) => c,
            _ => &rung.plain,
        };
        let record = |this: &mut Self, outcome: Outcome| {
            this.attempts.push(Attempt {
                profile: Arc::clone(&rung.name),
                max_version: rung.profile.max_version(),
                scsv,
                outcome,
                elapsed: started.elapsed(),
            });
        };
        let host = self.uri.host().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ssl = connector
            .configure()
            .and_then(|mut cfg| {
                cfg.set_min_proto_version(Some(min.to_ssl()))?;
                cfg.into_ssl(host)
            })
            .and_then(|ssl| SslStream::new(ssl, ReadWatch::new(TokioIo::new(tcp))));
        let mut stream = match ssl {
            Ok(s) => s,
            Err(e) => {
                record(
                    self,
                    Outcome::Other {
                        detail: format!("cannot set up the handshake: {e}"),
                    },
                );
                return Err(AttemptError::Handshake(Verdict::Fatal));
            }
        };
        let signal = match tokio::time::timeout(timeout, Pin::new(&mut stream).connect()).await {
            Ok(Ok(())) => {
                record(self, Outcome::Ok);
                return Ok(stream);
            }
            Ok(Err(e)) => signal_of(&e),
            Err(_) => Signal::Timeout {
                answered: stream.get_ref().answered(),
            },
        };
        let (mut outcome, verdict) = classify(&signal);
        if let Outcome::Certificate { detail } = &mut outcome {
            *detail = stream.ssl().verify_result().error_string().to_string();
        }
        tracing::debug!(host = %self.key, rung = %rung.name, scsv, outcome = %outcome, ?verdict, "handshake failed");
        record(self, outcome);
        Err(AttemptError::Handshake(verdict))
    }

    fn finish(
        &mut self,
        stream: TlsStream<S::Response>,
        rung: &BuiltRung,
        from_cache: bool,
        pinned: bool,
    ) -> MaybeHttpsStream<S::Response> {
        let ssl = stream.ssl();
        let info = TlsInfo {
            version: ssl
                .version2()
                .and_then(TlsVersion::from_ssl)
                .unwrap_or(rung.profile.max_version()),
            cipher: ssl.current_cipher().map_or("unknown", |c| c.name()),
            profile: Arc::clone(&rung.name),
            attempts: std::mem::take(&mut self.attempts).into(),
            from_cache,
            pinned,
            resumed: ssl.session_reused(),
            alpn: match ssl.selected_alpn_protocol() {
                Some(b"h2") => Some("h2"),
                Some(b"http/1.1") => Some("http/1.1"),
                _ => None,
            },
        };
        MaybeHttpsStream::Https(TokioIo::new(stream), Arc::new(info))
    }

    /// Records what worked: a fallback is learned (and announced); a host that answers on the
    /// top rung is remembered as healthy so later first contacts skip the single flight.
    fn learn(&self, idx: usize, start: &Start) {
        let shared = self.shared;
        if start.from_cache && idx == start.rung {
            return;
        }
        let rung = &shared.rungs[idx];
        let reason = self
            .attempts
            .iter()
            .filter(|a| a.outcome != Outcome::Ok)
            .map(|a| format!("{}: {}", a.profile, a.outcome.short()))
            .collect::<Vec<_>>()
            .join("; ");
        if idx > 0 {
            shared.stats.learned.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                host = %self.key,
                failed = %reason,
                working = %rung.name,
                "TLS fallback learned: this host is intolerant to modern ClientHellos; later \
                 connections start at the working rung. Send the vendor the report of \
                 `tls-fallback probe {}`", self.key
            );
        }
        let decision = Decision::new(idx as u8, Arc::clone(&rung.name), reason);
        shared.store.put(self.key.clone(), Arc::new(decision));
    }

    fn count_fallback(&self) {
        if let Some(a) = self.attempts.last() {
            if let Ok(mut m) = self.shared.stats.fallbacks.lock() {
                *m.entry(a.outcome.short()).or_insert(0) += 1;
            }
        }
    }

    fn last_outcome_is_timeout(&self) -> bool {
        matches!(
            self.attempts.last().map(|a| &a.outcome),
            Some(Outcome::Timeout { .. })
        )
    }

    fn take_attempts(&mut self) -> Attempts {
        Attempts(std::mem::take(&mut self.attempts))
    }

    fn connect_err(&mut self, e: BoxError) -> Error {
        let attempts = std::mem::take(&mut self.attempts);
        connect_error(&self.key.to_string(), e, attempts)
    }
}

impl Shared {
    /// The host's decision, unless it has expired (then it is dropped and announced).
    fn lookup(&self, key: &HostKey) -> Option<Arc<Decision>> {
        match self.store.get(key) {
            Some(d) if d.expired(self.ttl) => {
                self.store.remove(key);
                self.stats.expired.fetch_add(1, Ordering::Relaxed);
                self.stats.cache_misses.fetch_add(1, Ordering::Relaxed);
                if d.rung > 0 {
                    tracing::info!(
                        host = %key,
                        was = %d.profile,
                        "TLS fallback decision expired; re-probing from the top of the ladder"
                    );
                }
                None
            }
            Some(d) => {
                self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                Some(d)
            }
            None => {
                self.stats.cache_misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn stats(&self) -> Stats {
        let c = &self.stats;
        let mut hosts: Vec<HostStats> = self
            .store
            .snapshot()
            .into_iter()
            .filter(|(_, d)| d.rung > 0 && !d.expired(self.ttl))
            .map(|(k, d)| HostStats {
                host: k.to_string(),
                profile: d.profile.to_string(),
                reason: d.reason.to_string(),
                learned_at_ms: d.learned_at_ms,
                uses: d.uses.load(Ordering::Relaxed),
            })
            .collect();
        hosts.sort_by(|a, b| a.host.cmp(&b.host));
        Stats {
            connections: c.connections.load(Ordering::Relaxed),
            handshakes: c.handshakes.load(Ordering::Relaxed),
            fallbacks: c.fallbacks.lock().map(|m| m.clone()).unwrap_or_default(),
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            cache_misses: c.cache_misses.load(Ordering::Relaxed),
            single_flight_waits: c.single_flight_waits.load(Ordering::Relaxed),
            downgrades: c.downgrades.load(Ordering::Relaxed),
            learned: c.learned.load(Ordering::Relaxed),
            expired: c.expired.load(Ordering::Relaxed),
            hosts,
        }
    }
}
