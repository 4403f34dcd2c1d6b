//! Why the planner abandons each attempt it drops: every `Abandon` carries the reason the
//! attempt's line then tells (`Outcome::Stalled`), row by row.

use super::*;
use crate::classify::Abandoned::{self, *};
use crate::error::ErrorKind;

/// (rung, reason) of every attempt the planner abandons over these events.
fn abandoned(facts: Facts, start: Start, events: &[Ev]) -> Vec<(usize, Abandoned)> {
    let mut p = Planner::new(facts, start, None);
    let mut rung_of = Vec::new();
    let mut all = p.begin();
    for ev in events {
        let ev = match *ev {
            F(n, f) => Event::Finished(AttemptId(n), f),
            S(n) => Event::Stalled(AttemptId(n), false),
            Ans(n) => Event::Stalled(AttemptId(n), true),
        };
        all.extend(p.on(ev));
    }
    let mut out = Vec::new();
    for a in all {
        match a {
            Action::Launch { rung, .. } => rung_of.push(rung),
            Action::Abandon(id, why) => out.push((rung_of[id.0 as usize], why)),
            _ => {}
        }
    }
    out
}

/// (name, ladder, start, events, (rung, reason) of each attempt abandoned).
type Row = (&'static str, Facts, Start, Vec<Ev>, Vec<(usize, Abandoned)>);

#[test]
#[rustfmt::skip]
fn every_abandoned_attempt_says_why() {
    let no_answer = WalkFailed(ErrorKind::NoTlsAnswer);
    let rows: Vec<Row> = vec![
        ("a racer wins over the silent top rung and its twin", d_racing(), Start::Top,
            vec![S(0), F(2, OK)], vec![(0, OtherWon), (1, OtherWon)]),
        ("a silent port: the sweep ends, nothing finished", d_racing(), Start::Top,
            vec![S(0), S(1), S(2), F(0, silent()), S(3)],
            vec![(1, no_answer), (2, no_answer), (3, no_answer)]),
        ("a silent port: the racers timed out first, the last one is dropped", d_racing(), Start::Top,
            vec![S(0), S(1), S(2), F(0, silent()), F(1, silent()), F(2, silent()), S(3)],
            vec![(3, no_answer)]),
        ("a racer's certificate error ends the walk", d_racing(), Start::Top,
            vec![S(0), F(2, cert())],
            vec![(0, WalkFailed(ErrorKind::Certificate)), (1, WalkFailed(ErrorKind::Certificate))]),
        ("a legacy-only server drops the modern racers", l_racing(), Start::Top,
            vec![S(0), F(2, legacy())], vec![(0, LegacyServer), (1, LegacyServer)]),
        ("a refused racer drops the rungs below it", l_racing(), Start::Top,
            vec![S(0), S(2), F(0, silent()), F(2, refused())], vec![(3, HigherRefused)]),
        ("an obsolete learned rung: the walk starts again from the top", d_racing(), Start::Cached(2),
            vec![S(0), F(0, refused())], vec![(3, Restarted)]),
    ];
    let mut failures = Vec::new();
    for (name, facts, start, events, want) in rows {
        let got = abandoned(facts, start, &events);
        if got != want {
            failures.push(format!("{name}\n   want: {want:?}\n    got: {got:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
