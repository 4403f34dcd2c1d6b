//! First contacts (the rows of docs/BENCHMARKS.md) and the cache's walk rules
//! (docs/CACHE.md).

use super::*;
use Start::{Cached, Top};

#[test]
#[rustfmt::skip]
fn first_contact_rows_of_the_benchmarks() {
    check(vec![
        ("healthy modern: rung 0, remembered as healthy", d(), Top, None,
            vec![F(0, OK)], "L0 won 0 healthy"),
        ("TLS 1.3 hang, racing: the stall starts the compact rung and TLS 1.2 together", d_racing(), Top, None,
            vec![S(0), F(2, OK)], "L0 race L1 L2 A0 A1 won 2 fallback"),
        ("TLS 1.3 hang, no racing: after the timeout the compact rung and TLS 1.2 start together", d(), Top, None,
            vec![F(0, silent()), F(2, OK)], "L0 L1 L2 A1 won 2 fallback"),
        ("close above 1.2: three hellos", d(), Top, None,
            vec![F(0, close()), F(1, close()), F(2, OK)], "L0 L1 L2 won 2 fallback"),
        ("> 16 suites closed: the compact rung, provisionally", d(), Top, None,
            vec![F(0, close()), F(1, OK)], "L0 L1 won 1 provisional"),
        ("long hello closed in front of TLS 1.3: confirmed on the second walk", d(), Top, Some(1),
            vec![F(0, close()), F(1, OK)], "L0 L1 won 1 confirm"),
        ("reset above 1.1, legacy allowed: five hellos", l(), Top, None,
            vec![F(0, close()), F(1, close()), F(2, close()), F(3, close()), F(4, OK)],
            "L0 L1 L2 L3 L4 won 4 fallback"),
        ("alert 70 above 1.0, legacy allowed: six hellos", l(), Top, None,
            vec![F(0, close()), F(1, close()), F(2, close()), F(3, close()), F(4, close()), F(5, OK)],
            "L0 L1 L2 L3 L4 L5 won 5 fallback"),
        ("a legacy-only server jumps to the first legacy rung", l(), Top, None,
            vec![F(0, legacy()), F(1, OK)], "L0 L4 won 4 fallback"),
        ("a legacy-only server drops the modern racers", l_racing(), Top, None,
            vec![S(0), F(2, legacy()), F(3, OK)], "L0 race L1 L2 A0 A1 L4 won 4 fallback"),
        ("hang above 1.0, racing: the sweep reaches TLS 1.0 after one timeout", l_racing(), Top, None,
            vec![S(0), S(1), S(2), F(0, silent()), F(5, OK)],
            "L0 race L1 L2 L3 L4 L5 A1 A2 A3 A4 won 5 fallback"),
        ("a slow server that answered is not raced", d_racing(), Top, None,
            vec![Ans(0), F(0, OK)], "L0 won 0 healthy"),
        ("a racer that answered blocks the silent-port sweep", d_racing(), Top, None,
            vec![S(0), Ans(2), F(0, silent()), F(2, OK)], "L0 race L1 L2 A1 won 2 fallback"),
    ]);
}

#[test]
#[rustfmt::skip]
fn a_port_where_nothing_answers_is_its_own_finding() {
    check(vec![
        ("silent port, racing: one timeout plus one stall time", d_racing(), Top, None,
            vec![S(0), S(1), S(2), F(0, silent()), S(3)],
            "L0 race L1 L2 L3 A1 A2 A3 fail notlsanswer"),
        ("silent port, racing: the sweep waits for its new rung's stall", d_racing(), Top, None,
            vec![S(0), S(1), S(2), F(0, silent())], "L0 race L1 L2 L3"),
        ("silent port, no racing: every rung down to the floor times out", d(), Top, None,
            vec![F(0, silent()), F(1, silent()), F(2, silent()), F(3, silent())],
            "L0 L1 L2 L3 fail notlsanswer"),
        ("a box that closes is intolerance, not silence", d(), Top, None,
            vec![F(0, close()), F(1, close()), F(2, close()), F(3, close())],
            "L0 L1 L2 L3 fail belowfloor"),
        ("silent then a close: some answer came, below the floor", d(), Top, None,
            vec![F(0, silent()), F(1, close()), F(2, silent()), F(3, silent())],
            "L0 L1 L2 L3 fail belowfloor"),
        ("the sweep ends early when a rung answers after all", d_racing(), Top, None,
            vec![S(0), S(1), S(2), F(0, silent()), F(3, OK)],
            "L0 race L1 L2 L3 A1 A2 won 3 provisional"),
    ]);
}

#[test]
#[rustfmt::skip]
fn the_cache_walk_rules() {
    check(vec![
        ("a learned rung: one hello, with SCSV, nothing learned", l(), Cached(5), None,
            vec![F(0, OK)], "L5 won 5 nothing"),
        ("a learned healthy host: the top rung, no SCSV", d(), Cached(0), None,
            vec![F(0, OK)], "L0 won 0 nothing"),
        ("a learned rung that turned intolerant goes on down and learns the new one", l(), Cached(4), None,
            vec![F(0, close()), F(1, OK)], "L4 L5 won 5 fallback"),
        ("a learned tls12 meeting one reset ends on a provisional tls12-compact", d(), Cached(2), None,
            vec![F(0, close()), F(1, OK)], "L2 L3 won 3 provisional"),
        ("a learned rung the policy no longer allows is dropped: walk from the top", d(), Cached(5), None,
            vec![F(0, OK)], "forget:notallowed L0 won 0 healthy"),
        ("a learned rung this ladder does not have is dropped", d(), Cached(9), None,
            vec![F(0, close()), F(1, close()), F(2, OK)], "forget:notallowed L0 L1 L2 won 2 fallback"),
        ("the learned rung refused as an inappropriate fallback: the gateway was fixed", l(), Cached(5), None,
            vec![F(0, refused()), F(1, OK)], "L5 forget:obsolete L0 won 0 healthy"),
        ("a learned rung that runs out re-probes from the top, once", l(), Cached(5), None,
            vec![F(0, close()), F(1, OK)], "L5 forget:ranout L0 won 0 healthy"),
        ("the re-probe's own failure is final", d(), Cached(3), None,
            vec![F(0, close()), F(1, close()), F(2, close()), F(3, close()), F(4, close())],
            "L3 forget:ranout L0 L1 L2 L3 fail belowfloor"),
        ("a refusal after the learned rung's intolerance is a downgrade, not a re-probe", d(), Cached(2), None,
            vec![F(0, close()), F(1, refused())], "L2 L3 forget:downgrade fail downgrade"),
        ("a learned healthy host that fails everywhere is forgotten, no re-probe", d(), Cached(0), None,
            vec![F(0, close()), F(1, close()), F(2, close()), F(3, close())],
            "L0 L1 L2 L3 forget:ranout fail belowfloor"),
        ("a provisional entry for another rung does not confirm", d(), Top, Some(3),
            vec![F(0, close()), F(1, OK)], "L0 L1 won 1 provisional"),
        ("a reshape below the top version is provisional too", d(), Top, None,
            vec![F(0, close()), F(1, close()), F(2, close()), F(3, OK)], "L0 L1 L2 L3 won 3 provisional"),
        ("a version fallback is learned at once: SCSV vouches for it", d(), Top, None,
            vec![F(0, close()), F(1, close()), F(2, OK)], "L0 L1 L2 won 2 fallback"),
    ]);
}
