//! The driver: runs what the planner decides. It starts attempts and their stall timers, turns
//! their endings into planner events, and applies the side effects the planner asks for
//! (counters, forgetting, learning, the error or the stream). It decides nothing itself:
//! `loop { apply(actions); actions = planner.on(next_event().await) }`.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use http::Uri;
use hyper::rt::{Read, Write};
use hyper_util::rt::TokioIo;
use tower_service::Service;

use super::attempt::{attempt, AttemptError, BoxError, Plan, Signals, Tried};
use super::flight::waiters_may_start;
use super::planner::{Action, AttemptId, Conclusion, Count, Event, Failure, Forget, Learn};
use super::Shared;
use crate::cache::lookup::{record_win, Win};
use crate::cache::Decision;
use crate::classify::{Abandoned, Outcome};
use crate::config::BuiltRung;
use crate::error::{Attempt, Attempts, Error};
use crate::policy::HostKey;
use crate::profile::TlsVersion;
use crate::stream::{MaybeHttpsStream, TlsInfo, TlsStream};

type AttemptFuture<'a, T> = Pin<Box<dyn Future<Output = Tried<T>> + Send + 'a>>;
type StallFuture<'a> = Pin<Box<dyn Future<Output = bool> + Send + 'a>>;

/// An attempt in progress.
struct Running<'a, T> {
    id: AttemptId,
    rung: usize,
    scsv: bool,
    started: Instant,
    future: AttemptFuture<'a, T>,
    signals: Arc<Signals>,
    /// Fires once, when the hello has been out for the stall time; yields `answered`.
    stall: Option<StallFuture<'a>>,
}

/// How a walk ended, for the connection and for the connections waiting on it.
pub(crate) struct Ended<T> {
    pub(crate) result: Result<MaybeHttpsStream<T>, Error>,
    /// The win is no starting point for the connections that waited for this walk: stored
    /// only provisionally, or not stored at all.
    pub(crate) provisional: bool,
    /// The winning rung.
    pub(crate) rung: Option<usize>,
}

/// Runs one connection's attempts.
pub(crate) struct Driver<'a, S: Service<Uri>> {
    shared: &'a Shared,
    inner: S,
    uri: &'a Uri,
    key: &'a HostKey,
    /// The rungs attempts are made with: the ladder, or the one pinned rung.
    rungs: &'a [BuiltRung],
    pub(crate) pinned: bool,
    /// The provisional decision the walk started with.
    pub(crate) prior: Option<Arc<Decision>>,
    /// The cached rung the walk started from (for the operator's log lines).
    pub(crate) cached: Option<usize>,
    running: Vec<Running<'a, S::Response>>,
    records: Vec<(AttemptId, Attempt)>,
    connect_errors: Vec<(AttemptId, BoxError)>,
    won: Option<(AttemptId, TlsStream<S::Response>)>,
}

impl<'a, S: Service<Uri>> Driver<'a, S> {
    /// A driver for one connection's attempts with these rungs.
    pub(crate) fn new(
        shared: &'a Shared,
        inner: S,
        uri: &'a Uri,
        key: &'a HostKey,
        rungs: &'a [BuiltRung],
    ) -> Self {
        Driver {
            shared,
            inner,
            uri,
            key,
            rungs,
            pinned: false,
            prior: None,
            cached: None,
            running: Vec::new(),
            records: Vec::new(),
            connect_errors: Vec::new(),
            won: None,
        }
    }
}

impl<'a, S> Driver<'a, S>
where
    S: Service<Uri> + Clone + Send + 'a,
    S::Response: Read + Write + Unpin + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
{
    /// Applies actions; `pending` is the record of the attempt whose end caused them. Returns
    /// the end of the walk when one of them concludes it.
    pub(crate) fn apply(
        &mut self,
        actions: Vec<Action>,
        mut pending: Option<(AttemptId, Attempt)>,
    ) -> Option<Ended<S::Response>> {
        // A concluding batch lists the attempts it abandons before the one that ended the walk.
        if !actions.iter().any(|a| matches!(a, Action::Conclude(_))) {
            self.records.extend(pending.take());
        }
        for action in actions {
            match action {
                Action::Launch { id, rung, fallback } => self.launch(id, rung, fallback),
                Action::Watch(id) => self.watch(id),
                Action::Abandon(id, why) => self.abandon(id, why),
                Action::Count(count) => self.count(count, pending.as_ref()),
                Action::Forget(why) => self.forget(why, pending.as_ref()),
                Action::Conclude(conclusion) => {
                    self.records.extend(pending.take());
                    return Some(self.conclude(conclusion));
                }
            }
        }
        None
    }

    /// Waits for the next attempt to end (the highest rung first when several are ready) or
    /// for a stall timer.
    pub(crate) async fn next_event(&mut self) -> (Event, Option<Tried<S::Response>>) {
        poll_fn(|cx| {
            for r in self.running.iter_mut() {
                if let Poll::Ready(tried) = r.future.as_mut().poll(cx) {
                    let event = Event::Finished(r.id, tried.finish());
                    return Poll::Ready((event, Some(tried)));
                }
            }
            for r in self.running.iter_mut() {
                if let Some(stall) = r.stall.as_mut() {
                    if let Poll::Ready(answered) = stall.as_mut().poll(cx) {
                        r.stall = None;
                        return Poll::Ready((Event::Stalled(r.id, answered), None));
                    }
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Takes an ended attempt out of the running set; keeps its stream or connect error.
    pub(crate) fn take(
        &mut self,
        id: AttemptId,
        tried: Tried<S::Response>,
    ) -> (AttemptId, Attempt) {
        self.running.retain(|r| r.id != id);
        match tried.result {
            Ok(stream) => self.won = Some((id, stream)),
            Err(AttemptError::Connect(e)) => self.connect_errors.push((id, e)),
            Err(AttemptError::Handshake(_)) => {}
        }
        (id, tried.attempt)
    }

    fn launch(&mut self, id: AttemptId, idx: usize, fallback: bool) {
        let shared = self.shared;
        let rungs = self.rungs;
        let rung = &rungs[idx];
        let min = if self.pinned {
            rung.profile.min_version_opt().unwrap_or(TlsVersion::Tls1_0)
        } else {
            rung.min_version(shared.config.policy.floor_for(self.key))
        };
        let signals = Arc::new(Signals::default());
        let plan = Plan {
            rung,
            fallback,
            min,
        };
        let future = attempt(
            shared,
            self.inner.clone(),
            self.uri,
            self.key,
            plan,
            Arc::clone(&signals),
        );
        let running = Running {
            id,
            rung: idx,
            scsv: fallback && rung.scsv.is_some(),
            started: Instant::now(),
            future: Box::pin(future),
            signals,
            stall: None,
        };
        let pos = self.running.partition_point(|r| r.rung < idx);
        self.running.insert(pos, running);
    }

    fn watch(&mut self, id: AttemptId) {
        let Some(stall) = self.shared.config.stall else {
            return;
        };
        if let Some(r) = self.running.iter_mut().find(|r| r.id == id) {
            r.stall = Some(Box::pin(stall_timer(Arc::clone(&r.signals), stall)));
        }
    }

    fn abandon(&mut self, id: AttemptId, why: Abandoned) {
        let Some(pos) = self.running.iter().position(|r| r.id == id) else {
            return;
        };
        let r = self.running.remove(pos);
        let rung = &self.rungs[r.rung];
        let answered = r.signals.answered.load(Ordering::Acquire);
        let record = Attempt {
            profile: Arc::clone(&rung.name),
            max_version: rung.profile.max_version(),
            scsv: r.scsv,
            outcome: Outcome::Stalled { why, answered },
            elapsed: r.started.elapsed(),
        };
        self.records.push((id, record));
    }

    fn count(&self, count: Count, pending: Option<&(AttemptId, Attempt)>) {
        let stats = &self.shared.stats;
        match count {
            Count::Fallback(id) => {
                let record = pending
                    .filter(|(p, _)| *p == id)
                    .or_else(|| self.records.iter().find(|(r, _)| *r == id));
                if let Some((_, a)) = record {
                    stats.fallback(&a.outcome.short());
                }
            }
            Count::FallbackStalled => stats.fallback("stalled"),
            Count::Race => {
                stats.race();
                tracing::debug!(host = %self.key, "no answer within the stall time; racing the next rung");
            }
            Count::Downgrade => stats.downgrade(),
        }
    }

    /// Forgets what `why` says; `pending` is the attempt whose end caused it (not recorded
    /// yet), which the events list with the others.
    fn forget(&self, why: Forget, pending: Option<&(AttemptId, Attempt)>) {
        let config = &self.shared.config;
        let was = self
            .cached
            .and_then(|i| self.rungs.get(i))
            .map(|r| &*r.name);
        let forget_sessions = || {
            if let Some(sessions) = &config.sessions {
                sessions.forget_host(self.key);
            }
        };
        match why {
            // Not wrong, only not allowed here: other instances keep it.
            Forget::NotAllowed => config.store.discard(self.key),
            Forget::RanOut => {
                config.store.remove(self.key);
                if self.cached.is_some_and(|r| r > 0) {
                    tracing::info!(host = %self.key, was = ?was,
                        "the learned TLS fallback no longer works; re-probing from the top");
                }
            }
            Forget::Obsolete => {
                config.store.remove(self.key);
                forget_sessions();
                tracing::info!(host = %self.key, was = ?was,
                    "the learned TLS fallback is no longer needed (the server refused it as an \
                     inappropriate fallback); re-probing from the top");
            }
            Forget::Downgrade => {
                config.store.remove(self.key);
                forget_sessions();
                tracing::error!(host = %self.key,
                    attempts = %format_args!("{:#}", self.attempts_with(pending)),
                    "downgrade signal (inappropriate_fallback / RFC 8446 sentinel): refusing \
                     to continue; the host's cached decision was forgotten");
            }
            Forget::PinnedSessions => {
                forget_sessions();
                tracing::error!(host = %self.key, "downgrade signal on a pinned host");
            }
        }
    }

    /// The attempts recorded, and `pending` after them.
    fn attempts_with(&self, pending: Option<&(AttemptId, Attempt)>) -> Attempts {
        let all = self.records.iter().chain(pending);
        Attempts(all.map(|(_, a)| a.clone()).collect())
    }

    fn conclude(&mut self, conclusion: Conclusion) -> Ended<S::Response> {
        match conclusion {
            Conclusion::Won {
                id,
                rung,
                learn,
                from_cache,
            } => self.won(id, rung, learn, from_cache),
            Conclusion::Failed(failure) => Ended {
                result: Err(self.error(failure)),
                provisional: false,
                rung: None,
            },
        }
    }

    fn won(
        &mut self,
        id: AttemptId,
        idx: usize,
        learn: Learn,
        from_cache: bool,
    ) -> Ended<S::Response> {
        let Some((_, stream)) = self.won.take().filter(|(w, _)| *w == id) else {
            // The planner only concludes a win on an attempt that finished with a stream.
            let e = Error::Handshake {
                host: self.key.to_string(),
                attempts: self.take_attempts(),
            };
            return Ended {
                result: Err(e),
                provisional: false,
                rung: None,
            };
        };
        let rung = &self.rungs[idx];
        let reason = (self.records.iter())
            .filter(|(_, a)| a.outcome != Outcome::Ok)
            .map(|(_, a)| format!("{}: {}", a.profile, a.outcome.short()))
            .collect::<Vec<_>>()
            .join("; ");
        let win = Win {
            rung: idx,
            name: &rung.name,
            learn,
            reason,
            prior: self.prior.as_ref(),
        };
        let provisional = record_win(
            &*self.shared.config.store,
            &self.shared.stats,
            self.key,
            win,
        );
        // Waiters may start where this walk ended only if that is a decision: one stored now
        // (not provisionally), or the one the walk started from. A win that taught nothing
        // (a walk that saw a downgrade signal) is no starting point for a burst.
        let shareable = waiters_may_start(learn, from_cache, provisional);
        let info = tls_info(&stream, rung, self.take_attempts(), from_cache, self.pinned);
        Ended {
            result: Ok(MaybeHttpsStream::Https(
                TokioIo::new(stream),
                Arc::new(info),
            )),
            provisional: !shareable,
            rung: Some(idx),
        }
    }

    fn error(&mut self, failure: Failure) -> Error {
        let host = self.key.to_string();
        let floor = self.shared.config.policy.floor_for(self.key);
        if let Failure::Connect(id) = failure {
            let source = match self.connect_errors.iter().position(|(i, _)| *i == id) {
                Some(pos) => self.connect_errors.swap_remove(pos).1,
                None => "the TCP connect failed".into(),
            };
            let attempts = self.take_attempts();
            return Error::Connect {
                host,
                source: Arc::from(source),
                attempts,
            };
        }
        let attempts = self.take_attempts();
        match failure {
            Failure::Downgrade => Error::DowngradeDetected { host, attempts },
            Failure::Certificate => Error::Certificate { host, attempts },
            Failure::Timeout => Error::Timeout { host, attempts },
            Failure::BelowFloor => Error::BelowFloor {
                host,
                floor,
                attempts,
            },
            Failure::LegacyNotAllowed => Error::LegacyNotAllowed {
                host,
                floor,
                attempts,
            },
            Failure::NoTlsAnswer => Error::NoTlsAnswer {
                host,
                floor,
                attempts,
            },
            Failure::Handshake | Failure::Connect(_) => Error::Handshake { host, attempts },
        }
    }

    fn take_attempts(&mut self) -> Attempts {
        Attempts(
            std::mem::take(&mut self.records)
                .into_iter()
                .map(|(_, a)| a)
                .collect(),
        )
    }
}

/// Waits until the hello has been out for `stall`; yields whether the server answered.
async fn stall_timer(signals: Arc<Signals>, stall: Duration) -> bool {
    if signals.hello_at.get().is_none() {
        signals.hello_sent.notified().await;
    }
    if let Some(at) = signals.hello_at.get() {
        tokio::time::sleep_until((*at + stall).into()).await;
    }
    signals.answered.load(Ordering::Relaxed)
}

fn tls_info<T>(
    stream: &TlsStream<T>,
    rung: &BuiltRung,
    attempts: Attempts,
    from_cache: bool,
    pinned: bool,
) -> TlsInfo {
    let ssl = stream.ssl();
    TlsInfo {
        version: ssl
            .version2()
            .and_then(TlsVersion::from_ssl)
            .unwrap_or(rung.profile.max_version()),
        cipher: ssl.current_cipher().map_or("unknown", |c| c.name()),
        profile: Arc::clone(&rung.name),
        attempts: attempts.0.into(),
        from_cache,
        pinned,
        resumed: ssl.session_reused(),
        alpn: match ssl.selected_alpn_protocol() {
            Some(b"h2") => Some("h2"),
            Some(b"http/1.1") => Some("http/1.1"),
            _ => None,
        },
    }
}
