//! One attempt: a TCP connect through the wrapped connector and one handshake with one rung,
//! under the handshake timeout, classified. The unit the driver runs, alone or raced; it
//! knows nothing of the ladder.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::Uri;
use hyper::rt::{Read, Write};
use hyper_util::rt::TokioIo;
use openssl::ssl::Ssl;
use openssl::x509::verify::X509CheckFlags;
use tokio::sync::Notify;
use tokio_openssl::SslStream;
use tower_service::Service;

use super::planner::Finish;
use super::Shared;
use crate::classify::{alert, classify, reason, signal_of, Outcome, Signal, Verdict};
use crate::config::BuiltRung;
use crate::error::Attempt;
use crate::policy::HostKey;
use crate::profile::TlsVersion;
use crate::session::SessionKey;
use crate::stream::{ReadWatch, TlsStream};
use crate::wire::{self, is_server_hello, server_hello_version};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the driver watches while an attempt runs.
#[derive(Debug, Default)]
pub(crate) struct Signals {
    /// The server sent at least one byte.
    pub(crate) answered: Arc<AtomicBool>,
    /// When the hello went out (after the TCP connect): the stall clock's start.
    pub(crate) hello_at: OnceLock<Instant>,
    /// Woken once the hello is out.
    pub(crate) hello_sent: Notify,
}

/// How one attempt ended: its record and, on success, the stream.
pub(crate) struct Tried<T> {
    pub(crate) attempt: Attempt,
    pub(crate) result: Result<TlsStream<T>, AttemptError>,
}

/// Why one attempt did not produce a stream.
pub(crate) enum AttemptError {
    /// The TCP connect failed: no hello was sent.
    Connect(BoxError),
    /// The handshake failed with this verdict (the outcome is in the record).
    Handshake(Verdict),
}

impl<T> Tried<T> {
    /// The planner's view of this ending.
    pub(crate) fn finish(&self) -> Finish {
        match &self.result {
            Ok(_) => Finish::Ok,
            Err(AttemptError::Connect(_)) => Finish::ConnectFailed,
            Err(AttemptError::Handshake(verdict)) => Finish::Failed {
                verdict: *verdict,
                timed_out: matches!(self.attempt.outcome, Outcome::Timeout { .. }),
                silent: self.attempt.outcome == Outcome::Timeout { answered: false },
            },
        }
    }
}

/// What one attempt is.
pub(crate) struct Plan<'a> {
    pub(crate) rung: &'a BuiltRung,
    /// With TLS_FALLBACK_SCSV (when the rung has that variant).
    pub(crate) fallback: bool,
    /// The lowest version the handshake accepts.
    pub(crate) min: TlsVersion,
}

/// One TCP connect and one handshake.
pub(crate) async fn attempt<S>(
    shared: &Shared,
    mut inner: S,
    uri: &Uri,
    key: &HostKey,
    plan: Plan<'_>,
    signals: Arc<Signals>,
) -> Tried<S::Response>
where
    S: Service<Uri>,
    S::Response: Read + Write + Unpin,
    S::Error: Into<BoxError>,
{
    let timeout = shared.config.policy.handshake_timeout;
    let started = Instant::now();
    let rung = plan.rung;
    let scsv = plan.fallback && rung.scsv.is_some();
    let record = |outcome: Outcome| Attempt {
        profile: Arc::clone(&rung.name),
        max_version: rung.profile.max_version(),
        scsv,
        outcome,
        elapsed: started.elapsed(),
    };
    let tcp = match tcp_connect(&mut inner, uri, timeout).await {
        Ok(tcp) => tcp,
        Err(e) => {
            // The whole chain: hyper-util's "tcp connect error" alone does not say refused.
            let detail = crate::error_chain(&*e);
            return Tried {
                attempt: record(Outcome::Connect { detail }),
                result: Err(AttemptError::Connect(e)),
            };
        }
    };
    shared.stats.handshake();
    // The stall clock starts here, with the hello, not with a slow TCP connect.
    let _ = signals.hello_at.set(Instant::now());
    signals.hello_sent.notify_one();
    let mut stream = match tls_stream(shared, key, &plan, scsv, tcp, &signals) {
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
    let (outcome, verdict) = judge_failure(&signal, &stream);
    tracing::debug!(host = %key, rung = %rung.name, scsv, outcome = %outcome, ?verdict,
        "handshake failed");
    Tried {
        attempt: record(outcome),
        result: Err(AttemptError::Handshake(verdict)),
    }
}

async fn tcp_connect<S>(
    inner: &mut S,
    uri: &Uri,
    timeout: Duration,
) -> Result<S::Response, BoxError>
where
    S: Service<Uri>,
    S::Error: Into<BoxError>,
{
    tokio::time::timeout(timeout, async {
        poll_fn(|cx| inner.poll_ready(cx))
            .await
            .map_err(Into::into)?;
        inner.call(uri.clone()).await.map_err(Into::into)
    })
    .await
    .unwrap_or_else(|_| Err(format!("TCP connect timed out after {timeout:?}").into()))
}

/// The TLS stream over the TCP stream, set up for this rung: minimum version, SNI for names
/// (never for IP literals), the same host name check on every rung (what rust-openssl's
/// `ConnectConfiguration::into_ssl` does), and the host's session for this very context. The
/// name is the key's normalised host, so SNI, the name check and the session key agree on
/// every spelling of the host.
fn tls_stream<T>(
    shared: &Shared,
    key: &HostKey,
    plan: &Plan<'_>,
    scsv: bool,
    tcp: T,
    signals: &Signals,
) -> Result<TlsStream<T>, openssl::error::ErrorStack>
where
    T: Read + Write + Unpin,
{
    let rung = plan.rung;
    let (connector, context) = match (&rung.scsv, scsv) {
        (Some(c), true) => (c, rung.ids.1),
        _ => (&rung.plain, rung.ids.0),
    };
    let host = key.host();
    let mut ssl = Ssl::new(connector)?;
    ssl.set_min_proto_version(Some(plan.min.to_ssl()))?;
    let param = ssl.param_mut();
    param.set_hostflags(X509CheckFlags::NO_PARTIAL_WILDCARDS);
    match key.ip() {
        Some(ip) => param.set_ip(ip)?,
        None => {
            param.set_host(host)?;
            ssl.set_hostname(host)?;
        }
    }
    if let Some(sessions) = &shared.config.sessions {
        let key = SessionKey {
            host: key.clone(),
            context,
        };
        sessions.prepare(&mut ssl, key);
    }
    let watch = ReadWatch::new(TokioIo::new(tcp), Arc::clone(&signals.answered));
    SslStream::new(ssl, watch)
}

/// The outcome and verdict of a failed handshake, with the facts the classifier cannot see:
/// the certificate's own message, and what the server's first bytes were.
fn judge_failure<T>(signal: &Signal, stream: &TlsStream<T>) -> (Outcome, Verdict) {
    let (mut outcome, mut verdict) = classify(signal);
    if let Outcome::Certificate { detail } = &mut outcome {
        *detail = stream.ssl().verify_result().error_string().to_string();
    }
    let head = stream.get_ref().head();
    if let Some(version) = impossible_version(&outcome, head) {
        // OpenSSL says "unsupported protocol" for any version it refuses; only TLS 1.0/1.1 are
        // a legacy server that a legacy rung can reach. SSL 3.0 or a nonsense version is not.
        outcome = Outcome::Other {
            detail: format!(
                "the server chose protocol version {version:#06x}, which no rung speaks"
            ),
        };
        verdict = Verdict::Fatal;
    }
    if outcome == Outcome::Alert(alert::HANDSHAKE_FAILURE) && is_server_hello(head) {
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
    (outcome, verdict)
}

/// For a local "unsupported protocol" refusal: the ServerHello's version if it is not TLS
/// 1.0-1.2 (the versions whose `legacy_version` a legacy rung can accept).
fn impossible_version(outcome: &Outcome, head: &[u8]) -> Option<u16> {
    let refused = Outcome::Refused {
        reason: reason::UNSUPPORTED_PROTOCOL,
    };
    if *outcome != refused {
        return None;
    }
    server_hello_version(head).filter(|v| !(wire::TLS10..=wire::TLS12).contains(v))
}
