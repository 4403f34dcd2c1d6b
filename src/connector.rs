//! The layer and the connector: [`FallbackLayer`] wraps any TCP connector (`Service<Uri>`) into
//! a [`FallbackConnector`] that hyper-util's legacy `Client` can use. Its `call` is the whole
//! attempt loop: choose the starting rung (pin, cache, single flight, top), handshake under a
//! timeout, classify, fall back or stop, learn.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::uri::Scheme;
use http::Uri;
use hyper::rt::{Read, Write};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use std::net::IpAddr;

use openssl::ssl::Ssl;
use openssl::x509::verify::X509CheckFlags;
use tokio_openssl::SslStream;
use tower_layer::Layer;
use tower_service::Service;

use crate::builder::BuiltRung;
pub use crate::builder::FallbackLayerBuilder;
use crate::cache::{self, Decision, DecisionStore, FlightOutcome, Flights, Join};
use crate::classify::{alert, classify, reason, signal_of, Outcome, Signal, Verdict};
use crate::error::{Attempt, Attempts, Error};
use crate::policy::{HostKey, HostPattern, Policy};
use crate::profile::TlsVersion;
use crate::session::{SessionCache, SessionKey};
use crate::stats::{Counters, HostStats, Stats};
use crate::stream::{MaybeHttpsStream, ReadWatch, TlsInfo, TlsStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything a layer and its connectors share: built once, read-only but for the caches and
/// counters.
pub(crate) struct Shared {
    pub(crate) rungs: Vec<BuiltRung>,
    pub(crate) pins: Vec<(HostPattern, BuiltRung)>,
    pub(crate) policy: Policy,
    pub(crate) store: Arc<dyn DecisionStore>,
    pub(crate) ttl: Duration,
    pub(crate) flights: Flights,
    pub(crate) stats: Counters,
    pub(crate) sessions: Option<SessionCache>,
    pub(crate) stall: Option<Duration>,
    pub(crate) single_flight: bool,
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
    pub(crate) shared: Arc<Shared>,
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

    /// Forgets everything learned about a host: its decision and its TLS sessions.
    pub fn forget(&self, host: &str, port: u16) {
        self.shared.forget(&HostKey::new(host, port));
    }

    /// The policy this layer applies: the floor, the legacy gate and the pins, per host
    /// ([`Policy::floor_for`], [`Policy::legacy_allowed`]).
    pub fn policy(&self) -> &Policy {
        &self.shared.policy
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

    /// Forgets everything learned about a host: its decision and its TLS sessions.
    pub fn forget(&self, host: &str, port: u16) {
        self.shared.forget(&HostKey::new(host, port));
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
        self.inner.poll_ready(cx).map_err(|e| {
            connect_error(
                "any host (the wrapped connector failed poll_ready)",
                e.into(),
                Vec::new(),
            )
        })
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
                lost: Vec::new(),
                prior: None,
            };
            let result = walk.run().await;
            if let Err(e) = &result {
                shared.stats.failure(e.kind());
            }
            result
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

/// One attempt's record and result.
struct Tried<T> {
    attempt: Attempt,
    result: Result<TlsStream<T>, AttemptError>,
}

type AttemptFuture<'a, T> = Pin<Box<dyn Future<Output = Tried<T>> + Send + 'a>>;

/// An attempt in progress (a silent rung and the rungs racing it).
struct InFlight<'a, T> {
    idx: usize,
    scsv: bool,
    started: Instant,
    answered: Arc<AtomicBool>,
    /// When the hello went out (after the TCP connect): the stall clock's start.
    hello_at: Arc<OnceLock<Instant>>,
    /// Ran beside another attempt at some point (a racer, or the rung it raced).
    parallel: bool,
    future: AttemptFuture<'a, T>,
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

/// What woke the walk up.
enum Event<T> {
    Done(usize, Tried<T>),
    Stall,
}

/// One connection's walk down the ladder.
struct Walk<'a, S> {
    shared: &'a Shared,
    inner: S,
    uri: &'a Uri,
    key: &'a HostKey,
    attempts: Vec<Attempt>,
    /// Rungs of the current `walk_inner` that failed (not by a TCP connect failure) or were
    /// abandoned: what a win is compared against to tell a reshape from a version fallback.
    lost: Vec<usize>,
    /// The host's provisional decision as it was when the current `walk_inner` started: only
    /// an entry stored before this walk can be confirmed by it.
    prior: Option<Arc<Decision>>,
}

/// One TCP connect and one handshake with a rung: the unit the walk runs, alone or raced.
#[allow(clippy::too_many_arguments)]
async fn attempt<S>(
    shared: &Shared,
    mut inner: S,
    uri: &Uri,
    key: &HostKey,
    rung: &BuiltRung,
    fallback: bool,
    min: TlsVersion,
    answered: Arc<AtomicBool>,
    hello_at: Arc<OnceLock<Instant>>,
) -> Tried<S::Response>
where
    S: Service<Uri>,
    S::Response: Read + Write + Unpin,
    S::Error: Into<BoxError>,
{
    let timeout = shared.policy.handshake_timeout;
    let started = Instant::now();
    let scsv = fallback && rung.scsv.is_some();
    let record = |outcome: Outcome| Attempt {
        profile: Arc::clone(&rung.name),
        max_version: rung.profile.max_version(),
        scsv,
        outcome,
        elapsed: started.elapsed(),
    };
    let tcp = tokio::time::timeout(timeout, async {
        poll_fn(|cx| inner.poll_ready(cx))
            .await
            .map_err(Into::into)?;
        inner.call(uri.clone()).await.map_err(Into::into)
    })
    .await
    .unwrap_or_else(|_| Err(format!("TCP connect timed out after {timeout:?}").into()));
    let tcp = match tcp {
        Ok(tcp) => tcp,
        Err(e) => {
            return Tried {
                attempt: record(Outcome::Connect {
                    detail: e.to_string(),
                }),
                result: Err(AttemptError::Connect(e)),
            }
        }
    };
    shared.stats.handshake();
    // The stall clock starts here, with the hello, not with a slow TCP connect.
    let _ = hello_at.set(Instant::now());
    let (connector, context) = match (&rung.scsv, scsv) {
        (Some(c), true) => (c, rung.ids.1),
        _ => (&rung.plain, rung.ids.0),
    };
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ssl = Ssl::new(connector)
        .and_then(|mut ssl| {
            ssl.set_min_proto_version(Some(min.to_ssl()))?;
            // SNI for names (never for IP literals), and the same host name check on every
            // rung: what rust-openssl's `ConnectConfiguration::into_ssl` does.
            let param = ssl.param_mut();
            param.set_hostflags(X509CheckFlags::NO_PARTIAL_WILDCARDS);
            match host.parse::<IpAddr>() {
                Ok(ip) => param.set_ip(ip)?,
                Err(_) => {
                    param.set_host(host)?;
                    ssl.set_hostname(host)?;
                }
            }
            Ok(ssl)
        })
        .and_then(|mut ssl| {
            if let Some(sessions) = &shared.sessions {
                let key = SessionKey {
                    host: key.clone(),
                    context,
                };
                sessions.prepare(&mut ssl, key);
            }
            SslStream::new(ssl, ReadWatch::new(TokioIo::new(tcp), answered))
        });
    let mut stream = match ssl {
        Ok(s) => s,
        Err(e) => {
            return Tried {
                attempt: record(Outcome::Other {
                    detail: format!("cannot set up the handshake: {e}"),
                }),
                result: Err(AttemptError::Handshake(Verdict::Fatal)),
            }
        }
    };
    let signal = match tokio::time::timeout(timeout, Pin::new(&mut stream).connect()).await {
        Ok(Ok(())) => {
            if stream.ssl().session_reused() {
                shared.stats.resumed();
            }
            return Tried {
                attempt: record(Outcome::Ok),
                result: Ok(stream),
            };
        }
        Ok(Err(e)) => signal_of(&e),
        Err(_) => Signal::Timeout {
            answered: stream.get_ref().answered(),
        },
    };
    let (mut outcome, mut verdict) = classify(&signal);
    if let Outcome::Certificate { detail } = &mut outcome {
        *detail = stream.ssl().verify_result().error_string().to_string();
    }
    if let Some(version) = impossible_version(&outcome, stream.get_ref().head()) {
        // OpenSSL says "unsupported protocol" for any version it refuses; only TLS 1.0/1.1 are
        // a legacy server that a legacy rung can reach. SSL 3.0 or a nonsense version is not.
        outcome = Outcome::Other {
            detail: format!(
                "the server chose protocol version {version:#06x}, which no rung speaks"
            ),
        };
        verdict = Verdict::Fatal;
    }
    if outcome == Outcome::Alert(alert::HANDSHAKE_FAILURE)
        && answered_with_server_hello(stream.get_ref().head())
    {
        // The server accepted this hello (it chose a version and a suite) and refused the
        // handshake later: not hello intolerance. A server that requires a client
        // certificate does this; so would another rung.
        outcome = Outcome::Other {
            detail: "the server accepted the hello (it sent a ServerHello) and then refused \
                     the handshake with alert 40 handshake_failure: not hello intolerance; \
                     does the server require a client certificate \
                     (`FallbackLayerBuilder::client_identity`)?"
                .into(),
        };
        verdict = Verdict::Fatal;
    }
    tracing::debug!(host = %key, rung = %rung.name, scsv, outcome = %outcome, ?verdict, "handshake failed");
    Tried {
        attempt: record(outcome),
        result: Err(AttemptError::Handshake(verdict)),
    }
}

/// Whether the server's first message was a ServerHello (a TLS 1.3 HelloRetryRequest, a
/// ServerHello with a fixed random, is not: the server still waits for a hello it likes).
fn answered_with_server_hello(head: &[u8]) -> bool {
    // SHA-256("HelloRetryRequest") starts with these bytes (RFC 8446, 4.1.3).
    const HRR_RANDOM: [u8; 4] = [0xcf, 0x21, 0xad, 0x74];
    matches!(head, [22, _, _, _, _, 2, _, _, _, _, _, r @ ..] if r.len() >= 4 && r[..4] != HRR_RANDOM)
}

/// For a local "unsupported protocol" refusal: the ServerHello's version if it is not TLS
/// 1.0-1.2 (the versions whose `legacy_version` a legacy rung can accept).
fn impossible_version(outcome: &Outcome, head: &[u8]) -> Option<u16> {
    if *outcome
        != (Outcome::Refused {
            reason: reason::UNSUPPORTED_PROTOCOL,
        })
    {
        return None;
    }
    // record type 22 (handshake), then handshake type 2 (ServerHello), then its version.
    match head {
        [22, _, _, _, _, 2, _, _, _, hi, lo, ..] => {
            let v = u16::from_be_bytes([*hi, *lo]);
            (!(0x0301..=0x0303).contains(&v)).then_some(v)
        }
        _ => None,
    }
}

/// At most this many attempts run at once: a silent rung and the rungs racing it.
const MAX_IN_FLIGHT: usize = 3;

/// While a silent rung's TCP connect is still pending, how often the walk looks again.
const CONNECT_RECHECK: Duration = Duration::from_millis(50);

impl<'a, S> Walk<'a, S>
where
    S: Service<Uri> + Clone + Send + 'a,
    S::Response: Read + Write + Unpin + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
{
    async fn run(&mut self) -> Result<MaybeHttpsStream<S::Response>, Error> {
        let shared = self.shared;
        shared.stats.connection();
        if let Some(i) = shared.policy.pin_index(self.key) {
            return self.pinned(&shared.pins[i].1).await;
        }
        // At most three rounds of waiting for someone else's walk, then (after one more look
        // at the cache) walk alone.
        let mut connect_retried = false;
        for round in 0..=3 {
            if let Some(d) = shared.lookup(self.key) {
                d.uses.fetch_add(1, Ordering::Relaxed);
                let start = Start {
                    rung: usize::from(d.rung),
                    from_cache: true,
                };
                return self.walk(start, None).await;
            }
            if !shared.single_flight || round == 3 {
                break;
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
                    shared.stats.single_flight_wait();
                    match cache::wait_flight(rx).await {
                        Some(FlightOutcome::Rung(rung)) => {
                            let start = Start {
                                rung,
                                from_cache: true,
                            };
                            return self.walk(start, None).await;
                        }
                        // The leader won with a reshaped hello that is not learned yet: one
                        // reset must not choose the hello of a whole burst. Walk again (one
                        // waiter leads and confirms it or not; the others wait for that).
                        Some(FlightOutcome::Provisional) => continue,
                        // The leader's TCP connect failed: that says nothing about TLS and
                        // may not hold for this connection (another address, a transient
                        // refusal). Try once more; one of the waiters leads that round. A
                        // second failure is shared: no chain of leaders each waiting out a
                        // connect timeout.
                        Some(FlightOutcome::Failed(e @ Error::Connect { .. })) => {
                            if connect_retried {
                                return Err(e);
                            }
                            connect_retried = true;
                            continue;
                        }
                        // The leader was cancelled (its request was dropped): try again.
                        None => continue,
                        // A TLS verdict (certificate, downgrade, every rung failed, timeouts)
                        // holds for the host: share it rather than walk the ladder again.
                        Some(FlightOutcome::Failed(e)) => return Err(e),
                    }
                }
            }
        }
        let top = Start {
            rung: 0,
            from_cache: false,
        };
        self.walk(top, None).await
    }

    /// A pinned host: one attempt with its profile, no SCSV, no learning.
    async fn pinned(
        &mut self,
        rung: &'a BuiltRung,
    ) -> Result<MaybeHttpsStream<S::Response>, Error> {
        let min = rung.profile.min_version_opt().unwrap_or(TlsVersion::Tls1_0);
        let tried = attempt(
            self.shared,
            self.inner.clone(),
            self.uri,
            self.key,
            rung,
            false,
            min,
            Arc::new(AtomicBool::new(false)),
            Arc::new(OnceLock::new()),
        )
        .await;
        self.attempts.push(tried.attempt);
        match tried.result {
            Ok(stream) => Ok(self.finish(stream, rung, false, true)),
            Err(AttemptError::Connect(e)) => Err(self.connect_err(e)),
            Err(AttemptError::Handshake(verdict)) => {
                let host = self.key.to_string();
                let timed_out = self.last_outcome_is_timeout();
                if verdict == Verdict::Downgrade {
                    self.shared.stats.downgrade();
                    self.forget_sessions();
                    tracing::error!(host = %self.key, "downgrade signal on a pinned host");
                }
                let attempts = self.take_attempts();
                Err(match verdict {
                    Verdict::Certificate => Error::Certificate { host, attempts },
                    Verdict::Downgrade => Error::DowngradeDetected { host, attempts },
                    _ if timed_out => Error::Timeout { host, attempts },
                    _ => Error::Handshake { host, attempts },
                })
            }
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
        if let Some(leader) = leader {
            leader.finish(match &result {
                Ok((_, _, true)) => FlightOutcome::Provisional,
                Ok((_, idx, false)) => FlightOutcome::Rung(*idx),
                Err(e) => FlightOutcome::Failed(e.clone()),
            });
        }
        result.map(|(s, _, _)| s)
    }

    /// The first rung at or after `from` that the policy allows for this host; `skipped` is
    /// set when a rung was passed over because of the policy (floor or legacy gate).
    fn next_allowed(&self, from: usize, skipped: &mut bool) -> Option<usize> {
        let policy = &self.shared.policy;
        let rungs = self.shared.rungs.get(from..)?;
        let off = rungs.iter().position(|r| {
            let ok = policy.rung_allowed(self.key, &r.profile);
            *skipped |= !ok;
            ok
        })?;
        Some(from + off)
    }

    fn launch(&self, idx: usize, parallel: bool) -> InFlight<'a, S::Response> {
        let shared = self.shared;
        let rung = &shared.rungs[idx];
        let floor = shared.policy.floor_for(self.key);
        let min = rung
            .profile
            .min_version_opt()
            .map_or(floor, |m| m.max(floor));
        let answered = Arc::new(AtomicBool::new(false));
        let hello_at = Arc::new(OnceLock::new());
        let future = attempt(
            shared,
            self.inner.clone(),
            self.uri,
            self.key,
            rung,
            idx > 0,
            min,
            Arc::clone(&answered),
            Arc::clone(&hello_at),
        );
        InFlight {
            idx,
            scsv: idx > 0 && rung.scsv.is_some(),
            started: Instant::now(),
            answered,
            hello_at,
            parallel,
            future: Box::pin(future),
        }
    }

    /// After rung `silent` went unanswered and its successor `idx` was launched: when `idx` only
    /// reshapes the hello (same version as `silent`), the same version-intolerant box most
    /// likely silences it too, so the next version is launched along with it.
    fn launch_next_version(
        &self,
        silent: usize,
        idx: usize,
        inflight: &mut Vec<InFlight<'a, S::Response>>,
        next: &mut Option<usize>,
        skipped: &mut bool,
    ) {
        let max = |i: usize| self.shared.rungs[i].profile.max_version();
        if let Some(after) = *next {
            if max(idx) == max(silent) && max(after) < max(idx) && inflight.len() < MAX_IN_FLIGHT {
                inflight.push(self.launch(after, true));
                *next = self.next_allowed(after + 1, skipped);
            }
        }
    }

    /// Records attempts that were still running when the walk ended, in rung order: a raced
    /// rung that ends the walk is recorded after the silent rungs it raced.
    fn settle(&mut self, inflight: &mut Vec<InFlight<'a, S::Response>>) {
        if inflight.is_empty() {
            return;
        }
        let last = self.attempts.pop();
        self.abandon(inflight);
        self.attempts.extend(last);
    }

    /// Records attempts that were still running when the walk moved on without them.
    fn abandon(&mut self, inflight: &mut Vec<InFlight<'a, S::Response>>) {
        for f in inflight.drain(..) {
            let rung = &self.shared.rungs[f.idx];
            self.lost.push(f.idx);
            self.attempts.push(Attempt {
                profile: Arc::clone(&rung.name),
                max_version: rung.profile.max_version(),
                scsv: f.scsv,
                outcome: Outcome::Stalled,
                elapsed: f.started.elapsed(),
            });
        }
    }

    /// The walk: rungs in order from `start`, each one connection and one handshake, skipping
    /// the rungs the policy forbids for this host. A rung whose hello has had no byte back for
    /// the stall time is raced by the next rung (up to [`MAX_IN_FLIGHT`] at once); the first
    /// handshake to finish wins (the higher rung when several are ready together).
    async fn walk_inner(
        &mut self,
        start: &Start,
    ) -> Result<(MaybeHttpsStream<S::Response>, usize, bool), WalkError> {
        let shared = self.shared;
        let policy = &shared.policy;
        let floor = policy.floor_for(self.key);
        self.lost.clear();
        self.prior = shared.store.get(self.key).filter(|d| d.provisional);
        let mut skipped = false;
        let mut next = self.next_allowed(start.rung, &mut skipped);
        if start.from_cache && next != Some(start.rung) {
            // The learned rung is no longer allowed for this host (the policy changed since a
            // cache file was written): that decision does not count.
            shared.store.remove(self.key);
            if start.rung > 0 {
                return Err(WalkError::Reprobe);
            }
        }
        let mut inflight: Vec<InFlight<'a, S::Response>> = Vec::with_capacity(MAX_IN_FLIGHT);
        let mut no_race: Option<usize> = None;
        let mut last = None;
        // A racer was refused as an inappropriate fallback while a higher rung still ran: the
        // server speaks more than the racer offered. If every higher rung then fails too, that
        // is a downgrade, not intolerance.
        let mut refused_racer = false;
        // The rung that last failed by timing out with no answer (a silent box).
        let mut silent: Option<usize> = None;
        // The highest rung (lowest index) whose TCP connect failed in a race: it never sent a
        // hello, so it proves nothing. It is tried once more, alone, before the walk goes on
        // down, gives up, or calls anything below it a downgrade.
        let mut connect_failed: Option<(usize, BoxError)> = None;
        let mut relaunched: Option<usize> = None;
        // The rest of the ladder, held while that rung waits for its retry.
        let mut held: Option<usize> = None;
        let mut gave_up: Option<BoxError> = None;
        loop {
            if inflight.is_empty() {
                match (next, &connect_failed) {
                    (Some(idx), _) => {
                        inflight.push(self.launch(idx, false));
                        next = self.next_allowed(idx + 1, &mut skipped);
                        if let Some(silent) = silent.take() {
                            self.launch_next_version(
                                silent,
                                idx,
                                &mut inflight,
                                &mut next,
                                &mut skipped,
                            );
                        }
                    }
                    (None, Some((idx, _))) if relaunched.is_none() => {
                        let idx = *idx;
                        tracing::debug!(host = %self.key, rung = %shared.rungs[idx].name,
                            "a racer could not connect; trying it once more, alone");
                        connect_failed = None;
                        relaunched = Some(idx);
                        next = held.take();
                        inflight.push(self.launch(idx, false));
                    }
                    (None, _) => {
                        gave_up = connect_failed.take().map(|(_, e)| e);
                        break;
                    }
                }
            }
            if inflight.len() > 1 {
                // Every attempt running beside another is a racer (the silent rung included).
                for f in &mut inflight {
                    f.parallel = true;
                }
            }
            let race_at = match (shared.stall, inflight.last(), next) {
                (Some(stall), Some(newest), Some(_))
                    if inflight.len() < MAX_IN_FLIGHT && no_race != Some(newest.idx) =>
                {
                    Some(match newest.hello_at.get() {
                        Some(at) => *at + stall,
                        None => (newest.started + stall).max(Instant::now() + CONNECT_RECHECK),
                    })
                }
                _ => None,
            };
            let done = poll_fn(|cx| {
                // In rung order, so the higher rung wins when several are ready.
                for (i, f) in inflight.iter_mut().enumerate() {
                    if let Poll::Ready(t) = f.future.as_mut().poll(cx) {
                        return Poll::Ready(Event::Done(i, t));
                    }
                }
                Poll::Pending
            });
            let event = match race_at {
                Some(at) => tokio::select! {
                    biased;
                    e = done => e,
                    _ = tokio::time::sleep_until(at.into()) => Event::Stall,
                },
                None => done.await,
            };
            let (i, tried) = match event {
                Event::Stall => {
                    let (Some(newest), Some(idx), Some(stall)) =
                        (inflight.last(), next, shared.stall)
                    else {
                        continue;
                    };
                    let silent_since = newest.hello_at.get().copied();
                    if silent_since.is_none_or(|at| at.elapsed() < stall) {
                        // Still connecting: the stall clock has not started.
                        continue;
                    }
                    let newest_idx = newest.idx;
                    if newest.answered.load(Ordering::Relaxed) {
                        // A slow server, not a silent box: let it finish.
                        no_race = Some(newest.idx);
                    } else {
                        shared.stats.race();
                        tracing::debug!(host = %self.key, silent = %shared.rungs[newest_idx].name,
                            racer = %shared.rungs[idx].name,
                            "no answer within the stall time; racing the next rung");
                        inflight.push(self.launch(idx, true));
                        next = self.next_allowed(idx + 1, &mut skipped);
                        self.launch_next_version(
                            newest_idx,
                            idx,
                            &mut inflight,
                            &mut next,
                            &mut skipped,
                        );
                    }
                    continue;
                }
                Event::Done(i, tried) => (i, tried),
            };
            let done = inflight.remove(i);
            let idx = done.idx;
            self.attempts.push(tried.attempt);
            let mut verdict = match tried.result {
                Ok(stream) => {
                    if !inflight.is_empty() {
                        self.count_fallback_as("stalled");
                    }
                    self.settle(&mut inflight);
                    let provisional = self.learn(idx, start);
                    let rung = &shared.rungs[idx];
                    let out = self.finish(stream, rung, start.from_cache, false);
                    return Ok((out, idx, provisional));
                }
                Err(AttemptError::Connect(e))
                    if relaunched != Some(idx) && (done.parallel || !inflight.is_empty()) =>
                {
                    // A racer (or the rung it raced) could not connect: that says nothing about
                    // TLS, and the attempts still running may succeed. Launch nothing new for
                    // now; the highest such rung is tried once more, alone, before the rest of
                    // the ladder. A lower one that is not retried counts as lost (the reshape
                    // rule in `learn` must not take it for untried).
                    held = held.or(next.take());
                    match &connect_failed {
                        Some((i, _)) if *i < idx => self.lost.push(idx),
                        Some((i, _)) => {
                            self.lost.push(*i);
                            connect_failed = Some((idx, e));
                        }
                        None => connect_failed = Some((idx, e)),
                    }
                    continue;
                }
                // The retried rung cannot connect either, after a lower racer was refused as
                // an inappropriate fallback: that refusal is the only TLS evidence left.
                Err(AttemptError::Connect(_)) if refused_racer && relaunched == Some(idx) => {
                    Verdict::Downgrade
                }
                Err(AttemptError::Connect(e)) => {
                    self.settle(&mut inflight);
                    return Err(WalkError::Fail(self.connect_err(e)));
                }
                Err(AttemptError::Handshake(verdict)) => {
                    self.lost.push(idx);
                    verdict
                }
            };
            let untried_above = connect_failed.as_ref().is_some_and(|(i, _)| *i < idx);
            if verdict == Verdict::Downgrade
                && (inflight.iter().any(|f| f.idx < idx) || untried_above)
            {
                // A racer offered less than the server supports while a higher rung is still
                // running (or could not connect, so never sent its hello): the server may just
                // be slow, or that rung may work. Wait for (or retry) the higher rungs, and stop
                // launching lower ones.
                refused_racer = true;
                next = None;
                held = None;
                let (higher, mut lower): (Vec<_>, Vec<_>) =
                    inflight.drain(..).partition(|f| f.idx < idx);
                inflight = higher;
                self.abandon(&mut lower);
                connect_failed = connect_failed.filter(|(i, _)| *i < idx);
                continue;
            }
            if refused_racer && matches!(verdict, Verdict::Intolerant | Verdict::LegacyServer) {
                if !inflight.is_empty() || connect_failed.is_some() {
                    // Higher rungs still run, or one is still to be retried (the loop's top).
                    continue;
                }
                // Every higher rung failed after all, yet the server refused a lower one as an
                // inappropriate fallback: it speaks more than that rung offered, and something
                // between us keeps the better hellos from it. Do not go lower.
                verdict = Verdict::Downgrade;
            }
            last = Some(verdict);
            match verdict {
                Verdict::Intolerant => {
                    if matches!(
                        self.attempts.last().map(|a| &a.outcome),
                        Some(Outcome::Timeout { answered: false })
                    ) {
                        silent = Some(silent.map_or(idx, |s| s.max(idx)));
                    }
                    self.count_fallback();
                }
                Verdict::LegacyServer => {
                    self.count_fallback();
                    // Only a legacy rung can help: drop modern racers (and any retry of one),
                    // skip to the first legacy rung below this one that the policy allows.
                    self.abandon(&mut inflight);
                    connect_failed = None;
                    held = None;
                    next = match shared.rungs[idx + 1..]
                        .iter()
                        .position(|r| r.profile.is_legacy())
                    {
                        Some(off) => self.next_allowed(idx + 1 + off, &mut skipped),
                        None => None,
                    };
                    if next.is_none() {
                        break;
                    }
                }
                Verdict::Downgrade
                    if start.from_cache
                        && start.rung > 0
                        && idx == start.rung
                        && self.attempts.len() == 1 =>
                {
                    self.abandon(&mut inflight);
                    shared.store.remove(self.key);
                    self.forget_sessions();
                    tracing::info!(
                        host = %self.key,
                        was = %shared.rungs[idx].name,
                        "the learned TLS fallback is no longer needed (the server refused it \
                         as an inappropriate fallback); re-probing from the top"
                    );
                    return Err(WalkError::Reprobe);
                }
                Verdict::Downgrade => {
                    self.settle(&mut inflight);
                    shared.stats.downgrade();
                    shared.store.remove(self.key);
                    self.forget_sessions();
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
                    self.settle(&mut inflight);
                    return Err(WalkError::Fail(Error::Certificate {
                        host: self.key.to_string(),
                        attempts: self.take_attempts(),
                    }));
                }
                Verdict::Fatal => {
                    self.settle(&mut inflight);
                    let host = self.key.to_string();
                    let timed_out = self.last_outcome_is_timeout();
                    let attempts = self.take_attempts();
                    return Err(WalkError::Fail(if timed_out {
                        Error::Timeout { host, attempts }
                    } else {
                        Error::Handshake { host, attempts }
                    }));
                }
            }
        }
        let connect_failed = gave_up.or(connect_failed.map(|(_, e)| e));
        if let Some(e) = connect_failed.filter(|_| last != Some(Verdict::LegacyServer)) {
            // Out of attempts after a racer could not even connect: a network problem, not a
            // TLS verdict (and no reason to drop a cached decision).
            return Err(WalkError::Fail(self.connect_err(e)));
        }
        // Out of rungs: the cached decision (if any) no longer holds.
        if start.from_cache {
            shared.store.remove(self.key);
            if start.rung > 0 {
                // The learned fallback stopped working (the server no longer speaks that
                // version, e.g. it was upgraded to TLS 1.2 only): walk from the top, once. This
                // only ever offers more than the learned rung did.
                tracing::info!(
                    host = %self.key,
                    was = %shared.rungs[start.rung].name,
                    "the learned TLS fallback no longer works; re-probing from the top"
                );
                return Err(WalkError::Reprobe);
            }
        }
        let host = self.key.to_string();
        let attempts = self.take_attempts();
        Err(WalkError::Fail(match last {
            Some(Verdict::LegacyServer) if skipped || !policy.legacy_allowed(self.key) => {
                Error::LegacyNotAllowed {
                    host,
                    floor,
                    attempts,
                }
            }
            Some(Verdict::Intolerant) if skipped => Error::BelowFloor {
                host,
                floor,
                attempts,
            },
            _ => Error::Handshake { host, attempts },
        }))
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
    /// Returns whether the win was learned only provisionally.
    ///
    /// TLS_FALLBACK_SCSV guards versions: a server that speaks more than the winning rung offers
    /// refuses it. It cannot guard a rung that failed with the *same* version cap and a
    /// different shape (`modern` then `modern-compact`, `tls12` then `tls12-compact`): one
    /// injected reset, or a glitch, would otherwise pick the hello of every connection for the
    /// whole TTL (no padding, no post-quantum key share, no ALPN). Such a win is learned
    /// provisionally and becomes a starting point only when the next walk from the top ends on
    /// the same rung.
    fn learn(&self, idx: usize, start: &Start) -> bool {
        let shared = self.shared;
        if start.from_cache && idx == start.rung {
            return false;
        }
        let rung = &shared.rungs[idx];
        let reason = self
            .attempts
            .iter()
            .filter(|a| a.outcome != Outcome::Ok)
            .map(|a| format!("{}: {}", a.profile, a.outcome.short()))
            .collect::<Vec<_>>()
            .join("; ");
        // A rung above the winner with the same cap failed or was abandoned in this walk.
        let cap = rung.profile.max_version();
        let reshape = self
            .lost
            .iter()
            .any(|&i| i < idx && shared.rungs[i].profile.max_version() == cap);
        // Confirmed only by an entry stored before this walk started (not by a concurrent walk
        // that saw the same reset).
        let seen_before = || {
            self.prior.as_ref().is_some_and(|d| {
                usize::from(d.rung) == idx
                    && d.profile == rung.name
                    && !d.expired(shared.ttl)
                    // Still the stored entry: not forgotten or replaced during this walk.
                    && shared.store.get(self.key).is_some_and(|now| Arc::ptr_eq(&now, d))
            })
        };
        let mut decision = Decision::new(idx as u8, Arc::clone(&rung.name), reason);
        let provisional = reshape && !seen_before();
        if provisional {
            tracing::info!(
                host = %self.key,
                failed = %decision.reason,
                working = %rung.name,
                "a reshaped hello at the same TLS version worked; used for this connection \
                 only, and learned if the next first contact needs it too"
            );
            decision = decision.into_provisional();
        } else if idx > 0 {
            shared.stats.learned();
            tracing::warn!(
                host = %self.key,
                failed = %decision.reason,
                working = %rung.name,
                "TLS fallback learned: this host is intolerant to modern ClientHellos; later \
                 connections start at the working rung. Send the vendor the report of \
                 `tls-fallback probe {}`", self.key
            );
        }
        shared.store.put(self.key.clone(), Arc::new(decision));
        provisional
    }

    fn forget_sessions(&self) {
        if let Some(sessions) = &self.shared.sessions {
            sessions.forget_host(self.key);
        }
    }

    fn count_fallback(&self) {
        if let Some(a) = self.attempts.last() {
            self.count_fallback_as(&a.outcome.short());
        }
    }

    fn count_fallback_as(&self, why: &str) {
        self.shared.stats.fallback(why);
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
    fn forget(&self, key: &HostKey) {
        self.store.remove(key);
        if let Some(sessions) = &self.sessions {
            sessions.forget_host(key);
        }
    }

    /// The host's decision, unless it has expired (then it is dropped and announced).
    fn lookup(&self, key: &HostKey) -> Option<Arc<Decision>> {
        match self.store.get(key) {
            Some(d) if d.expired(self.ttl) => {
                self.store.remove(key);
                self.stats.cache_miss();
                if d.provisional {
                    // Never used as a start: nothing expires that anyone relied on.
                    return None;
                }
                self.stats.expired();
                if d.rung > 0 {
                    tracing::info!(
                        host = %key,
                        was = %d.profile,
                        "TLS fallback decision expired; re-probing from the top of the ladder"
                    );
                }
                None
            }
            Some(d)
                if self
                    .rungs
                    .get(usize::from(d.rung))
                    .is_none_or(|r| r.name != d.profile) =>
            {
                // Learned with another ladder (a cache file from another version or
                // configuration): the rung number means nothing here.
                self.store.remove(key);
                self.stats.cache_miss();
                tracing::info!(
                    host = %key,
                    was = %d.profile,
                    "the cached TLS fallback names a rung this ladder does not have there; \
                     re-probing from the top"
                );
                None
            }
            Some(d) if !d.provisional => {
                self.stats.cache_hit();
                Some(d)
            }
            // Provisional (seen once): not a starting point; the next walk starts at the top.
            Some(_) | None => {
                self.stats.cache_miss();
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
                provisional: d.provisional,
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
            resumed: c.resumed.load(Ordering::Relaxed),
            races: c.races.load(Ordering::Relaxed),
            hosts,
        }
    }
}
