//! The planner's transitions. Each method is one rule of the module docs of
//! [`super`]; they only read and write the planner's state and push actions.

use super::*;

type Out = Vec<Action>;

impl Planner {
    /// A planner for one connection. `prior`: the rung of a provisional decision stored before
    /// this walk (a reshape won again on it is confirmed).
    pub(crate) fn new(facts: Facts, start: Start, prior: Option<usize>) -> Self {
        Planner {
            facts,
            start,
            prior,
            phase: Phase::Done,
            running: Vec::new(),
            log: WalkLog::default(),
            next_id: 0,
            reprobed: false,
        }
    }

    /// The first actions: the starting rung's launch.
    pub(crate) fn begin(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        match self.start {
            Start::Cached(rung) if self.facts.rungs.get(rung).is_some_and(|r| r.allowed) => {
                self.phase = Phase::Descend { next: Some(rung) };
            }
            Start::Cached(rung) => {
                // The policy changed since the decision was written: it does not count.
                out.push(Action::Forget(Forget::NotAllowed));
                if rung > 0 {
                    self.restart(&mut out);
                    return out;
                }
                self.start = Start::Top;
                self.phase = Phase::Descend {
                    next: self.next_allowed(0),
                };
            }
            Start::Top => {
                self.phase = Phase::Descend {
                    next: self.next_allowed(0),
                };
            }
        }
        self.advance(&mut out);
        out
    }

    /// The actions that follow an event. Events after the conclusion are ignored.
    pub(crate) fn on(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        if self.phase == Phase::Done {
            return out;
        }
        match event {
            Event::Stalled(id, answered) => {
                let Some(r) = self.running.iter_mut().find(|r| r.id == id) else {
                    return out;
                };
                r.watch = if answered {
                    Watch::Answered
                } else {
                    Watch::Stalled
                };
                self.log.answered |= answered;
            }
            Event::Finished(id, finish) => {
                let Some(pos) = self.running.iter().position(|r| r.id == id) else {
                    return out;
                };
                let done = self.running.remove(pos);
                self.log.finished += 1;
                self.finished(done, finish, &mut out);
            }
        }
        if self.phase != Phase::Done {
            self.advance(&mut out);
        }
        out
    }

    /// Whether the walk has concluded.
    #[cfg(test)]
    pub(crate) fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    fn finished(&mut self, done: Running, finish: Finish, out: &mut Out) {
        match finish {
            Finish::Ok => self.win(done, out),
            Finish::ConnectFailed => self.connect_failed(done, out),
            Finish::Failed {
                verdict,
                timed_out,
                silent,
            } => {
                self.log.answered |= !silent;
                self.log.lost.push(done.rung);
                self.handshake_failed(done, verdict, timed_out, silent, out);
            }
        }
    }

    /// Launches what the phase calls for once the running attempts allow it.
    fn advance(&mut self, out: &mut Out) {
        self.launch_or_end(out);
        if self.phase != Phase::Done {
            self.watch_running(out);
        }
    }

    /// Starts the stall clock of every running attempt not yet watched, when a stall could
    /// start a racer or end a sweep.
    fn watch_running(&mut self, out: &mut Out) {
        let useful = matches!(self.phase, Phase::Descend { next: Some(_) } | Phase::Sweep);
        if !self.facts.racing || !useful {
            return;
        }
        for r in self.running.iter_mut().filter(|r| !r.watched) {
            r.watched = true;
            out.push(Action::Watch(r.id));
        }
    }

    fn launch_or_end(&mut self, out: &mut Out) {
        if !self.running.is_empty() {
            self.maybe_race(out);
            self.maybe_end_sweep(out);
            return;
        }
        match self.phase {
            Phase::Descend { next: Some(rung) } => {
                self.launch(rung, out);
                self.phase = Phase::Descend {
                    next: self.next_allowed(rung + 1),
                };
                if let Some(silent) = self.log.silent.take() {
                    self.pair_next_version(silent, rung, out);
                }
            }
            Phase::Hold { retry, resume } if self.log.retried.is_none() => {
                self.log.retried = Some(retry.rung);
                self.launch(retry.rung, out);
                self.phase = Phase::Descend { next: resume };
            }
            // A second racer that could not connect: no second retry; that is the answer.
            Phase::Hold { retry, .. } => self.fail(Failure::Connect(retry.id), out),
            Phase::AwaitHigher { retry: Some(retry) } if self.log.retried.is_none() => {
                self.log.retried = Some(retry.rung);
                self.launch(retry.rung, out);
                self.phase = Phase::AwaitRetry { rung: retry.rung };
            }
            // Every higher rung failed, yet the server refused a lower one as an inappropriate
            // fallback: something between us keeps the better hellos from it.
            Phase::AwaitHigher { .. } | Phase::AwaitRetry { .. } => self.downgrade(out),
            Phase::Descend { next: None } | Phase::Sweep => self.out_of_rungs(out),
            Phase::Done => {}
        }
    }

    /// Races the newest running attempt when its hello has stalled.
    fn maybe_race(&mut self, out: &mut Out) {
        let Phase::Descend { next: Some(next) } = self.phase else {
            return;
        };
        if !self.facts.racing || self.running.len() >= MAX_IN_FLIGHT {
            return;
        }
        let Some(newest) = self.running.iter().max_by_key(|r| r.id) else {
            return;
        };
        if newest.watch != Watch::Stalled {
            return;
        }
        let silent = newest.rung;
        out.push(Action::Count(Count::Race));
        self.launch(next, out);
        self.phase = Phase::Descend {
            next: self.next_allowed(next + 1),
        };
        self.pair_next_version(silent, next, out);
    }

    /// After a silent rung, `launched` was started: when it only reshapes the hello (the same
    /// cap as `silent`), the box that silenced one most likely silences the other, so the next
    /// version starts with it.
    fn pair_next_version(&mut self, silent: usize, launched: usize, out: &mut Out) {
        let Phase::Descend { next: Some(after) } = self.phase else {
            return;
        };
        let cap = |i: usize| self.facts.rungs[i].cap;
        if cap(launched) == cap(silent)
            && cap(after) < cap(launched)
            && self.running.len() < MAX_IN_FLIGHT
        {
            self.launch(after, out);
            self.phase = Phase::Descend {
                next: self.next_allowed(after + 1),
            };
        }
    }

    /// In a sweep, nothing answered and every running attempt has stalled: no TLS there.
    fn maybe_end_sweep(&mut self, out: &mut Out) {
        if self.phase == Phase::Sweep
            && !self.log.answered
            && self.running.iter().all(|r| r.watch == Watch::Stalled)
        {
            self.fail(Failure::NoTlsAnswer, out);
        }
    }

    fn launch(&mut self, rung: usize, out: &mut Out) {
        let id = AttemptId(self.next_id);
        self.next_id += 1;
        let pos = self.running.partition_point(|r| r.rung < rung);
        self.running.insert(
            pos,
            Running {
                id,
                rung,
                parallel: false,
                watch: Watch::Quiet,
                watched: false,
            },
        );
        if self.running.len() > 1 {
            // Every attempt running beside another is a racer (the silent rung included).
            self.running.iter_mut().for_each(|r| r.parallel = true);
        }
        out.push(Action::Launch {
            id,
            rung,
            fallback: rung > 0,
        });
    }

    /// The first rung at or after `from` that the policy allows; notes a skipped one.
    fn next_allowed(&mut self, from: usize) -> Option<usize> {
        let rungs = self.facts.rungs.get(from..)?;
        let off = rungs.iter().position(|r| {
            self.log.skipped |= !r.allowed;
            r.allowed
        })?;
        Some(from + off)
    }

    /// Abandons, for this reason, every running attempt for which `drop` holds.
    fn abandon_where(&mut self, why: Abandoned, out: &mut Out, drop: impl Fn(&Running) -> bool) {
        let (gone, keep): (Vec<Running>, Vec<Running>) = self.running.iter().partition(|r| drop(r));
        self.running = keep;
        for r in gone {
            self.log.lost.push(r.rung);
            out.push(Action::Abandon(r.id, why));
        }
    }

    fn conclude(&mut self, conclusion: Conclusion, out: &mut Out) {
        let why = match conclusion {
            Conclusion::Won { .. } => Abandoned::OtherWon,
            Conclusion::Failed(failure) => Abandoned::WalkFailed(failure.kind()),
        };
        self.abandon_where(why, out, |_| true);
        self.phase = Phase::Done;
        out.push(Action::Conclude(conclusion));
    }

    fn fail(&mut self, failure: Failure, out: &mut Out) {
        self.conclude(Conclusion::Failed(failure), out);
    }

    fn downgrade(&mut self, out: &mut Out) {
        out.push(Action::Count(Count::Downgrade));
        out.push(Action::Forget(Forget::Downgrade));
        self.fail(Failure::Downgrade, out);
    }

    /// Forgets the learned start and walks again from the top (once per connection).
    fn restart(&mut self, out: &mut Out) {
        self.abandon_where(Abandoned::Restarted, out, |_| true);
        self.reprobed = true;
        self.start = Start::Top;
        self.prior = None;
        self.log = WalkLog::default();
        self.phase = Phase::Descend {
            next: self.next_allowed(0),
        };
        self.advance(out);
    }

    fn cached_start(&self) -> Option<usize> {
        match self.start {
            Start::Cached(rung) => Some(rung),
            Start::Top => None,
        }
    }
}

mod outcomes;

pub(crate) use outcomes::pinned;
