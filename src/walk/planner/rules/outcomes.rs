//! What one finished attempt means: a win, a connect failure, a handshake failure.

use super::super::*;
use super::Out;

impl Planner {
    pub(super) fn win(&mut self, done: Running, out: &mut Out) {
        if !self.running.is_empty() {
            out.push(Action::Count(Count::FallbackStalled));
        }
        let learn = self.learn(done.rung);
        let from_cache = self.cached_start().is_some();
        self.conclude(
            Conclusion::Won {
                id: done.id,
                rung: done.rung,
                learn,
                from_cache,
            },
            out,
        );
    }

    /// What a win on `rung` teaches.
    fn learn(&self, rung: usize) -> Learn {
        if self.cached_start() == Some(rung) {
            return Learn::Nothing;
        }
        // SCSV guards versions, not shapes: a rung above the winner with the same cap failed,
        // or is being abandoned, in this walk, so one injected reset could explain the win.
        let cap = self.facts.rungs[rung].cap;
        let reshape = (self.log.lost.iter().copied())
            .chain(self.running.iter().map(|r| r.rung))
            .any(|i| i < rung && self.facts.rungs[i].cap == cap);
        match (reshape, rung) {
            (_, 0) if self.log.refused => Learn::Healthy,
            // A walk that saw a downgrade signal learns no fallback.
            _ if self.log.refused => Learn::Nothing,
            (true, _) if self.prior == Some(rung) => Learn::Confirm,
            (true, _) => Learn::Provisional,
            (false, 0) => Learn::Healthy,
            (false, _) => Learn::Fallback,
        }
    }

    pub(super) fn connect_failed(&mut self, done: Running, out: &mut Out) {
        let raced = done.parallel || !self.running.is_empty();
        let failed = Retry {
            rung: done.rung,
            id: done.id,
        };
        if self.log.retried == Some(done.rung) || !raced {
            if matches!(self.phase, Phase::AwaitRetry { .. }) {
                // The retried rung cannot connect either, after a lower racer was refused as
                // an inappropriate fallback: that refusal is the only TLS evidence left.
                return self.downgrade(out);
            }
            // Not a TLS problem: stop with the connect error.
            return self.fail(Failure::Connect(done.id), out);
        }
        // A racer (or the rung it raced) could not connect: it sent no hello and proves
        // nothing, while the others may still succeed. Hold the ladder; the highest such rung
        // is retried once, alone. A lower one that is not retried counts as lost.
        let keep_higher = |held: Retry, log: &mut WalkLog| {
            let (keep, lose) = if held.rung < failed.rung {
                (held, failed)
            } else {
                (failed, held)
            };
            log.lost.push(lose.rung);
            keep
        };
        self.phase = match self.phase {
            Phase::Descend { next } => Phase::Hold {
                retry: failed,
                resume: next,
            },
            Phase::Sweep => Phase::Hold {
                retry: failed,
                resume: None,
            },
            Phase::Hold { retry, resume } => Phase::Hold {
                retry: keep_higher(retry, &mut self.log),
                resume,
            },
            Phase::AwaitHigher { retry: None } => Phase::AwaitHigher {
                retry: Some(failed),
            },
            Phase::AwaitHigher { retry: Some(r) } => Phase::AwaitHigher {
                retry: Some(keep_higher(r, &mut self.log)),
            },
            phase @ (Phase::AwaitRetry { .. } | Phase::Done) => phase,
        };
    }

    /// The retry held for a rung above `rung`, if any.
    fn retry_above(&self, rung: usize) -> Option<Retry> {
        match self.phase {
            Phase::Hold { retry, .. } | Phase::AwaitHigher { retry: Some(retry) }
                if retry.rung < rung =>
            {
                Some(retry)
            }
            _ => None,
        }
    }

    pub(super) fn handshake_failed(
        &mut self,
        done: Running,
        verdict: Verdict,
        timed_out: bool,
        silent: bool,
        out: &mut Out,
    ) {
        let higher_running = self.running.iter().any(|r| r.rung < done.rung);
        if verdict == Verdict::Downgrade
            && (higher_running || self.retry_above(done.rung).is_some())
            && !matches!(self.phase, Phase::AwaitRetry { .. })
        {
            // A racer offered less than the server supports while a higher rung still runs
            // (or never sent its hello): the server may just be slow, or that rung may work.
            // Wait for the higher rungs, launch nothing lower.
            let retry = self.retry_above(done.rung);
            self.log.refused = true;
            self.abandon_where(Abandoned::HigherRefused, out, |r| r.rung > done.rung);
            self.phase = Phase::AwaitHigher { retry };
            return;
        }
        let verdict = match (self.phase, verdict) {
            (
                Phase::AwaitHigher { .. } | Phase::AwaitRetry { .. },
                Verdict::Intolerant | Verdict::LegacyServer,
            ) => {
                // A higher rung failed too; when none is left, `advance` calls the downgrade.
                return;
            }
            (_, v) => v,
        };
        self.log.last = Some(verdict);
        match verdict {
            Verdict::Intolerant => self.intolerant(done, silent, out),
            Verdict::LegacyServer => self.legacy_server(done, out),
            Verdict::Downgrade
                if self.cached_start().is_some_and(|r| r > 0 && r == done.rung)
                    && self.log.finished == 1
                    && !self.reprobed =>
            {
                // The learned rung itself was refused: the server now supports more than it
                // offers (the gateway was fixed). Walk from the top, offering more, not less.
                out.push(Action::Forget(Forget::Obsolete));
                self.restart(out);
            }
            Verdict::Downgrade => self.downgrade(out),
            Verdict::Certificate => self.fail(Failure::Certificate, out),
            Verdict::Fatal if timed_out => self.fail(Failure::Timeout, out),
            Verdict::Fatal => self.fail(Failure::Handshake, out),
        }
    }

    fn intolerant(&mut self, done: Running, silent: bool, out: &mut Out) {
        out.push(Action::Count(Count::Fallback(done.id)));
        if !silent {
            return;
        }
        self.log.silent = Some(self.log.silent.map_or(done.rung, |s| s.max(done.rung)));
        let all_stalled = self.running.iter().all(|r| r.watch == Watch::Stalled);
        if self.facts.racing && !self.log.answered && !self.running.is_empty() && all_stalled {
            // Nothing has answered anything: start every remaining rung now, so that a port
            // where nothing speaks TLS is called so after one more stall time.
            if let Phase::Descend { mut next } = self.phase {
                while let Some(rung) = next {
                    self.launch(rung, out);
                    next = self.next_allowed(rung + 1);
                }
                self.phase = Phase::Sweep;
            }
        }
    }

    /// Only a legacy rung can help: drop the modern racers, keep the legacy rungs below this
    /// one that already run (a race or a sweep started them: launching them again would cost a
    /// hello each), and go on at the first legacy rung below those (and below any that already
    /// failed) that the policy allows.
    fn legacy_server(&mut self, done: Running, out: &mut Out) {
        out.push(Action::Count(Count::Fallback(done.id)));
        let legacy: Vec<bool> = self.facts.rungs.iter().map(|r| r.legacy).collect();
        self.abandon_where(Abandoned::LegacyServer, out, |r| {
            !(legacy[r.rung] && r.rung > done.rung)
        });
        if let Some(held) = self.retry_above(usize::MAX).filter(|h| h.rung > done.rung) {
            // A legacy rung that could not connect beside the others: launching it again is
            // its one retry, or, when that was used up, it is not tried again.
            match self.log.retried {
                None => self.log.retried = Some(held.rung),
                Some(_) => self.log.lost.push(held.rung),
            }
        }
        let first_legacy = legacy[done.rung + 1..]
            .iter()
            .position(|&l| l)
            .map(|off| done.rung + 1 + off);
        // Legacy rungs below this one that already ran or run in this walk are not tried again.
        let tried = (self.running.iter().map(|r| r.rung))
            .chain(self.log.lost.iter().copied())
            .filter(|&i| i > done.rung && legacy[i])
            .max();
        let from = tried.map(|i| i + 1).or(first_legacy);
        let next = from.and_then(|i| self.next_allowed(i));
        self.phase = Phase::Descend { next };
    }

    /// Out of rungs: re-probe a learned start once, else fail with the most useful kind.
    pub(super) fn out_of_rungs(&mut self, out: &mut Out) {
        if let Some(rung) = self.cached_start() {
            out.push(Action::Forget(Forget::RanOut));
            if rung > 0 && !self.reprobed {
                // The learned fallback stopped working (the server was upgraded to a newer
                // version only): walk from the top, once. This only ever offers more.
                return self.restart(out);
            }
        }
        let failure = match self.log.last {
            _ if !self.log.answered && self.log.finished > 0 => Failure::NoTlsAnswer,
            Some(Verdict::LegacyServer) if self.log.skipped || !self.facts.legacy_allowed => {
                Failure::LegacyNotAllowed
            }
            Some(Verdict::Intolerant) if self.log.skipped => Failure::BelowFloor,
            _ => Failure::Handshake,
        };
        self.fail(failure, out);
    }
}

/// A pinned host: one attempt with its profile, no SCSV, no learning. The actions that follow
/// its end.
pub(crate) fn pinned(id: AttemptId, finish: Finish) -> Vec<Action> {
    let failed = |f| vec![Action::Conclude(Conclusion::Failed(f))];
    match finish {
        Finish::Ok => vec![Action::Conclude(Conclusion::Won {
            id,
            rung: 0,
            learn: Learn::Nothing,
            from_cache: false,
        })],
        Finish::ConnectFailed => failed(Failure::Connect(id)),
        Finish::Failed {
            verdict: Verdict::Downgrade,
            ..
        } => vec![
            Action::Count(Count::Downgrade),
            Action::Forget(Forget::PinnedSessions),
            Action::Conclude(Conclusion::Failed(Failure::Downgrade)),
        ],
        Finish::Failed {
            verdict: Verdict::Certificate,
            ..
        } => failed(Failure::Certificate),
        Finish::Failed {
            timed_out: true, ..
        } => failed(Failure::Timeout),
        Finish::Failed { .. } => failed(Failure::Handshake),
    }
}
