//! The walk's rules, as a pure state machine: which rung to try next, when to race a silent
//! rung, what a refused racer means, when to give up, what to learn. No socket, no clock, no
//! store: the driver (`walk::driver`) feeds it [`Event`]s and runs the [`Action`]s it returns.
//!
//! One [`Planner`] serves one connection: its walk down the ladder and, when the learned
//! starting rung turns out obsolete, the one re-probe from the top. The rules, in the order a
//! walk meets them:
//!
//! * **Start** at the cached rung (a fallback hello: SCSV) or the top; a cached rung the policy
//!   no longer allows is forgotten and the walk starts from the top.
//! * **Descend**: when nothing runs, launch the next rung the policy allows (a rung passed over
//!   because of the floor or the legacy gate is remembered: `skipped`). Every rung below the top
//!   is a fallback and carries SCSV.
//! * **Race**: a rung whose hello has had no byte back for the stall time is raced by the next
//!   rung; when that one only reshapes the hello (same version cap), the next version starts
//!   with it. At most [`MAX_IN_FLIGHT`] attempts run at once. A slow rung that did answer is
//!   not raced.
//! * **Hold**: an attempt that ran beside another and could not connect sent no hello, so it
//!   proves nothing: nothing new launches until the others end, then it is tried once more,
//!   alone, and the ladder resumes below it.
//! * **Await the higher rungs**: a racer refused as an inappropriate fallback while a higher
//!   rung still runs (or waits for its retry) means the server speaks more than the racer
//!   offered: nothing lower launches; if every higher rung fails after all, that is a
//!   downgrade.
//! * **Sweep**: when a rung times out without a byte, no attempt so far got any answer, and the
//!   racers still running have been silent past the stall time too, every remaining rung is
//!   launched at once; if they stay silent for the stall time the walk ends as
//!   [`Failure::NoTlsAnswer`] (nothing speaks TLS there), within one handshake timeout plus one
//!   stall time.
//! * **Conclude**: the first handshake to finish wins (the driver polls higher rungs first);
//!   a certificate error, a downgrade signal or a fatal error ends the walk; running out of
//!   rungs ends it with the most useful kind. A downgrade signal on the learned starting rung
//!   itself, as the walk's first answer, means the gateway was fixed: forget and walk again
//!   from the top, once. So does a learned rung that runs out.
//! * **Learn**: a win on the cached rung learns nothing; a win on the top rung is `Healthy`; a
//!   win after a downgrade signal (a refused racer) learns nothing else; a win after a failed
//!   rung with the same version cap is a reshape, which SCSV cannot vouch for: `Provisional`,
//!   or `Confirm` when a provisional entry for that rung was stored before this walk; any other
//!   win is a `Fallback`.

pub(crate) use crate::cache::lookup::Learn;
use crate::classify::{Abandoned, Verdict};
use crate::error::ErrorKind;
use crate::profile::TlsVersion;

/// At most this many attempts run at once outside a sweep: a silent rung and its racers.
pub(crate) const MAX_IN_FLIGHT: usize = 3;

/// What the planner knows about one rung of the ladder, for this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RungFacts {
    /// The highest version the rung offers.
    pub(crate) cap: TlsVersion,
    /// A legacy rung (security level 0, SHA-1 suites): where a legacy server is sent.
    pub(crate) legacy: bool,
    /// Whether the policy (floor, legacy gate) allows the rung for this host.
    pub(crate) allowed: bool,
}

/// The ladder and the settings, as far as the walk's rules need them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Facts {
    /// The rungs, top first.
    pub(crate) rungs: Vec<RungFacts>,
    /// Whether a silent rung is raced after the stall time.
    pub(crate) racing: bool,
    /// Whether the legacy gate lets this host through.
    pub(crate) legacy_allowed: bool,
}

/// Where a walk starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// The top of the ladder.
    Top,
    /// A rung learned before.
    Cached(usize),
}

/// One attempt (a TCP connect and a handshake with one rung), numbered from 0 per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct AttemptId(pub(crate) u32);

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    /// The handshake finished.
    Ok,
    /// The TCP connect failed: no hello was sent.
    ConnectFailed,
    /// The handshake failed with this verdict.
    Failed {
        /// The classifier's verdict.
        verdict: Verdict,
        /// It ended by the handshake timeout.
        timed_out: bool,
        /// It ended by the timeout without a single byte from the server.
        silent: bool,
    },
}

/// What the driver tells the planner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// An attempt ended.
    Finished(AttemptId, Finish),
    /// An attempt's hello has been out for the stall time; `answered`: a byte came back.
    Stalled(AttemptId, bool),
}

/// Why the host's decision (and TLS sessions) are forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forget {
    /// The cached rung is not allowed for this host (any more).
    NotAllowed,
    /// The learned rung was refused as an inappropriate fallback: the gateway was fixed.
    Obsolete,
    /// Every rung from the learned one down failed: the learned rung no longer works.
    RanOut,
    /// A downgrade signal.
    Downgrade,
    /// A downgrade signal on a pinned host: its TLS sessions only.
    PinnedSessions,
}

/// A counter for the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Count {
    /// A fallback caused by this attempt's outcome.
    Fallback(AttemptId),
    /// A fallback caused by stalled rungs that a lower rung overtook.
    FallbackStalled,
    /// A silent rung raced by the next one.
    Race,
    /// A downgrade signal.
    Downgrade,
}

/// Why a walk failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// This attempt's TCP connect failed, and that is the answer.
    Connect(AttemptId),
    /// A downgrade signal.
    Downgrade,
    /// The certificate or the host name did not verify.
    Certificate,
    /// The last attempt timed out in a way that is not intolerance.
    Timeout,
    /// A handshake failure with no better name.
    Handshake,
    /// Out of rungs, some below the floor.
    BelowFloor,
    /// A legacy-only server, and the legacy gate is closed for the host.
    LegacyNotAllowed,
    /// No rung got a single byte back.
    NoTlsAnswer,
}

impl Failure {
    /// The kind of the error this failure becomes.
    pub(crate) fn kind(self) -> ErrorKind {
        match self {
            Failure::Connect(_) => ErrorKind::Connect,
            Failure::Downgrade => ErrorKind::DowngradeDetected,
            Failure::Certificate => ErrorKind::Certificate,
            Failure::Timeout => ErrorKind::Timeout,
            Failure::Handshake => ErrorKind::Handshake,
            Failure::BelowFloor => ErrorKind::BelowFloor,
            Failure::LegacyNotAllowed => ErrorKind::LegacyNotAllowed,
            Failure::NoTlsAnswer => ErrorKind::NoTlsAnswer,
        }
    }
}

/// How a walk ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conclusion {
    /// This attempt's handshake is the connection.
    Won {
        /// The winning attempt.
        id: AttemptId,
        /// Its rung.
        rung: usize,
        /// What to learn.
        learn: Learn,
        /// The walk that won started from a cached decision.
        from_cache: bool,
    },
    /// No connection.
    Failed(Failure),
}

/// What the driver must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Start an attempt with this rung; `fallback`: with TLS_FALLBACK_SCSV.
    Launch {
        /// The new attempt's number.
        id: AttemptId,
        /// The rung.
        rung: usize,
        /// A fallback hello (every rung but the top).
        fallback: bool,
    },
    /// Start the stall clock of a running attempt: report `Event::Stalled` once its hello has
    /// been out for the stall time. Asked only when a stall could change something (a rung is
    /// left to race with, or a sweep runs): a timer costs a little on every connection.
    Watch(AttemptId),
    /// Drop a running attempt (recorded as stalled, with the reason).
    Abandon(AttemptId, Abandoned),
    /// Bump a counter.
    Count(Count),
    /// Forget the host's decision and TLS sessions.
    Forget(Forget),
    /// The walk is over.
    Conclude(Conclusion),
}

/// How a running attempt stands with respect to the stall time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watch {
    /// Its hello has been out for less than the stall time (or it is still connecting).
    Quiet,
    /// Its hello has had nothing back for the stall time.
    Stalled,
    /// A byte came back: a slow server, never raced.
    Answered,
}

#[derive(Debug, Clone, Copy)]
struct Running {
    id: AttemptId,
    rung: usize,
    /// Ran beside another attempt at some point.
    parallel: bool,
    watch: Watch,
    /// Its stall clock runs (see [`Action::Watch`]).
    watched: bool,
}

/// A rung whose TCP connect failed in a race, waiting for its one retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Retry {
    rung: usize,
    /// The failed attempt (its error is the answer if the retry is not possible).
    id: AttemptId,
}

/// The walk's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Going down the ladder; `next` is the next rung the policy allows.
    Descend { next: Option<usize> },
    /// A racer could not connect: launch nothing until the running attempts end, then retry it
    /// alone and resume the ladder at `resume`.
    Hold { retry: Retry, resume: Option<usize> },
    /// A lower racer was refused as an inappropriate fallback: only the running (higher)
    /// attempts, and `retry` if one is pending, may still win.
    AwaitHigher { retry: Option<Retry> },
    /// The retry of [`Phase::AwaitHigher`] runs: its failure of any kind is a downgrade.
    AwaitRetry { rung: usize },
    /// Every remaining rung runs; nothing has answered yet.
    Sweep,
    /// Concluded.
    Done,
}

/// The facts one walk (the first, or the re-probe) gathers.
#[derive(Debug, Clone, Default)]
struct WalkLog {
    /// Rungs that failed, or were abandoned, in this walk (a reshape is judged against them).
    lost: Vec<usize>,
    /// The lowest rung that last timed out without a byte, waiting to pair the next version.
    silent: Option<usize>,
    /// The verdict of the last failure that counted.
    last: Option<Verdict>,
    /// A rung was passed over because of the policy.
    skipped: bool,
    /// Attempts that ended in this walk.
    finished: usize,
    /// Some attempt of this walk got at least one byte back (or ended other than silently).
    answered: bool,
    /// The rung that had its one retry after a failed connect.
    retried: Option<usize>,
    /// A downgrade signal was seen (a racer refused while a higher rung ran).
    refused: bool,
}

/// The walk of one connection; see the module docs for its rules.
#[derive(Debug, Clone)]
pub(crate) struct Planner {
    facts: Facts,
    start: Start,
    /// The rung of a provisional decision stored before this walk.
    prior: Option<usize>,
    phase: Phase,
    /// In rung order.
    running: Vec<Running>,
    log: WalkLog,
    next_id: u32,
    reprobed: bool,
}

mod rules;

pub(crate) use rules::pinned;
