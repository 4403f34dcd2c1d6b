//! The planner's rules, row by row: (ladder, start, events) -> the actions it takes. No socket,
//! no timer. Each row names the guarantee (docs/SECURITY.md), cache rule (docs/CACHE.md) or
//! first-contact benchmark row (docs/BENCHMARKS.md) it pins down.
//!
//! A row's trace lists the actions in order: `L2` launches rung 2 (every rung below the top
//! with SCSV: the harness checks it on every launch), `A1` abandons the attempt on rung 1,
//! `race` races a stalled rung, `forget:why`, and the conclusion (`won RUNG LEARN` or
//! `fail KIND`). Events name attempts by their number (launch order, from 0): `F(n, close())`
//! is attempt n finishing, `S(n)` its hello stalling unanswered, `Ans(n)` stalling answered.

use super::planner::*;
use crate::classify::Verdict;
use crate::profile::TlsVersion::{self, *};

mod model;

/// An event of a row.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ev {
    F(u32, Finish),
    S(u32),
    Ans(u32),
}
use Ev::*;

pub(super) fn close() -> Finish {
    failed(Verdict::Intolerant, false, false)
}
pub(super) fn silent() -> Finish {
    failed(Verdict::Intolerant, true, true)
}
pub(super) fn refused() -> Finish {
    failed(Verdict::Downgrade, false, false)
}
fn cert() -> Finish {
    failed(Verdict::Certificate, false, false)
}
fn legacy() -> Finish {
    failed(Verdict::LegacyServer, false, false)
}
fn fatal() -> Finish {
    failed(Verdict::Fatal, false, false)
}
fn stuck() -> Finish {
    failed(Verdict::Fatal, true, false)
}
const OK: Finish = Finish::Ok;
const CONN: Finish = Finish::ConnectFailed;

fn failed(verdict: Verdict, timed_out: bool, silent: bool) -> Finish {
    Finish::Failed {
        verdict,
        timed_out,
        silent,
    }
}

/// The default ladder's caps and legacy flags.
pub(super) const LADDER: [(TlsVersion, bool); 6] = [
    (Tls1_3, false),
    (Tls1_3, false),
    (Tls1_2, false),
    (Tls1_2, false),
    (Tls1_1, true),
    (Tls1_0, true),
];

/// The default ladder under a floor, with or without the legacy gate open for the host (the
/// same rule as `Policy::rung_allowed`).
pub(super) fn ladder(floor: TlsVersion, legacy_gate: bool, racing: bool) -> Facts {
    let legacy_allowed = legacy_gate || floor.is_legacy();
    let floor = if legacy_gate { Tls1_0 } else { floor };
    let rungs = LADDER
        .iter()
        .map(|&(cap, legacy)| RungFacts {
            cap,
            legacy,
            allowed: cap >= floor && (!legacy || legacy_allowed),
        })
        .collect();
    Facts {
        rungs,
        racing,
        legacy_allowed,
    }
}

/// Floor 1.2, legacy gate closed.
fn d() -> Facts {
    ladder(Tls1_2, false, false)
}
fn d_racing() -> Facts {
    ladder(Tls1_2, false, true)
}
/// The legacy gate open for the host.
fn l() -> Facts {
    ladder(Tls1_2, true, false)
}
fn l_racing() -> Facts {
    ladder(Tls1_2, true, true)
}

/// Runs a planner over events; returns the trace. Checks, on every row: fallback hellos are
/// exactly the rungs below the top, nothing the policy forbids is launched, and the walk ends
/// with exactly one conclusion, as the last action.
pub(super) fn trace(facts: Facts, start: Start, prior: Option<usize>, events: &[Ev]) -> String {
    let mut p = Planner::new(facts.clone(), start, prior);
    let mut rung_of = Vec::new();
    let mut out = Vec::new();
    let mut all = p.begin();
    for ev in events {
        let ev = match *ev {
            F(n, f) => Event::Finished(AttemptId(n), f),
            S(n) => Event::Stalled(AttemptId(n), false),
            Ans(n) => Event::Stalled(AttemptId(n), true),
        };
        all.extend(p.on(ev));
    }
    let conclusions = all.iter().filter(|a| matches!(a, Action::Conclude(_)));
    assert!(conclusions.count() <= 1, "{all:?}");
    if p.is_done() {
        assert!(matches!(all.last(), Some(Action::Conclude(_))), "{all:?}");
    }
    for a in &all {
        out.push(match *a {
            Action::Launch { id, rung, fallback } => {
                assert_eq!(fallback, rung > 0, "SCSV on every rung below the top only");
                assert!(
                    facts.rungs[rung].allowed,
                    "launched a forbidden rung {rung}"
                );
                assert_eq!(id.0 as usize, rung_of.len());
                rung_of.push(rung);
                format!("L{rung}")
            }
            Action::Abandon(id, _) => format!("A{}", rung_of[id.0 as usize]),
            Action::Count(Count::Race) => "race".into(),
            Action::Count(_) | Action::Watch(_) => continue,
            Action::Forget(why) => format!("forget:{why:?}").to_lowercase(),
            Action::Conclude(Conclusion::Won { rung, learn, .. }) => {
                format!("won {rung} {learn:?}").to_lowercase()
            }
            Action::Conclude(Conclusion::Failed(Failure::Connect(_))) => "fail connect".into(),
            Action::Conclude(Conclusion::Failed(f)) => format!("fail {f:?}").to_lowercase(),
        });
    }
    out.join(" ")
}

type Row = (
    &'static str,
    Facts,
    Start,
    Option<usize>,
    Vec<Ev>,
    &'static str,
);

fn check(rows: Vec<Row>) {
    let mut failures = Vec::new();
    for (name, facts, start, prior, events, want) in rows {
        let got = trace(facts, start, prior, &events);
        if got != want {
            failures.push(format!("{name}\n   want: {want}\n    got: {got}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

mod abandoned;
mod first_contact;
mod guarantees;
