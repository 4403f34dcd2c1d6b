//! The guarantees of docs/SECURITY.md, one row each (or more): SCSV, downgrade signals, the
//! floor, the legacy gate, certificates, bounded failures, racing.

use super::*;
use Start::Top;

#[test]
#[rustfmt::skip]
fn scsv_downgrade_floor_and_legacy_gate() {
    check(vec![
        ("1: an attacker resetting both TLS 1.3 hellos meets inappropriate_fallback", d(), Top, None,
            vec![F(0, close()), F(1, close()), F(2, refused())], "L0 L1 L2 forget:downgrade fail downgrade"),
        ("1: an attacker closing everything above 1.0 cannot push a TLS 1.3 server down", l(), Top, None,
            vec![F(0, close()), F(1, close()), F(2, close()), F(3, close()), F(4, refused())],
            "L0 L1 L2 L3 L4 forget:downgrade fail downgrade"),
        ("2: the sentinel on the top rung is final at once", d(), Top, None,
            vec![F(0, refused())], "L0 forget:downgrade fail downgrade"),
        ("3: the floor: a close-above-1.0 box without legacy stops at 1.2", d(), Top, None,
            vec![F(0, close()), F(1, close()), F(2, close()), F(3, close())], "L0 L1 L2 L3 fail belowfloor"),
        ("3: a floor of 1.1 opens 1.1, never 1.0", ladder(Tls1_1, false, false), Top, None,
            vec![F(0, close()), F(1, close()), F(2, close()), F(3, close()), F(4, close())],
            "L0 L1 L2 L3 L4 fail belowfloor"),
        ("3: a forbidden rung in the middle is skipped, not the end of the walk", middle_forbidden(), Top, None,
            vec![F(0, close()), F(1, OK)], "L0 L2 won 2 fallback"),
        ("3: no rung allowed at all", nothing_allowed(), Top, None, vec![], "fail handshake"),
        ("4: a TLS 1.0-only server without the legacy gate", d(), Top, None,
            vec![F(0, legacy())], "L0 fail legacynotallowed"),
        ("4: a legacy server behind intolerance without the gate", d(), Top, None,
            vec![F(0, close()), F(1, close()), F(2, legacy())], "L0 L1 L2 fail legacynotallowed"),
        ("4: the gate open, the legacy rungs refuse too", l(), Top, None,
            vec![F(0, legacy()), F(1, legacy()), F(2, legacy())], "L0 L4 L5 fail handshake"),
    ]);
}

#[test]
#[rustfmt::skip]
fn certificates_fatal_errors_and_pins() {
    check(vec![
        ("5: a certificate error costs one hello", d(), Top, None, vec![F(0, cert())], "L0 fail certificate"),
        ("5: a certificate error after fallbacks stops there", l(), Top, None,
            vec![F(0, close()), F(1, close()), F(2, cert())], "L0 L1 L2 fail certificate"),
        ("5: a racer's certificate error is final", d_racing(), Top, None,
            vec![S(0), F(2, cert())], "L0 race L1 L2 A0 A1 fail certificate"),
        ("5: no rung after a certificate error behind a silent rung", l(), Top, None,
            vec![F(0, silent()), F(2, cert())], "L0 L1 L2 A1 fail certificate"),
        ("8: bytes that are not TLS stop the walk", d(), Top, None, vec![F(0, fatal())], "L0 fail handshake"),
        ("8: a timeout after the server started answering stops", d(), Top, None,
            vec![F(0, stuck())], "L0 fail timeout"),
        ("8: a TCP connect failure is not a TLS problem", d(), Top, None, vec![F(0, CONN)], "L0 fail connect"),
        ("8: a connect failure down the ladder", d(), Top, None,
            vec![F(0, close()), F(1, CONN)], "L0 L1 fail connect"),
    ]);
    let pinned = |f| {
        let actions = pinned(AttemptId(0), f);
        format!("{actions:?}")
    };
    assert!(pinned(OK).contains("learn: Nothing"));
    assert!(pinned(refused()).contains("PinnedSessions") && pinned(refused()).contains("Downgrade"));
    assert!(pinned(stuck()).contains("Failed(Timeout)"));
    assert!(pinned(silent()).contains("Failed(Timeout)"));
    assert!(pinned(CONN).contains("Failed(Connect"));
    assert!(pinned(cert()).contains("Failed(Certificate)"));
    assert!(pinned(close()).contains("Failed(Handshake)"));
}

#[test]
#[rustfmt::skip]
fn racing_keeps_the_rules() {
    check(vec![
        ("9: a refused racer while the top runs: wait for it; it wins", d_racing(), Top, None,
            vec![S(0), F(2, refused()), F(0, OK)], "L0 race L1 L2 A1 won 0 healthy"),
        ("9: a refused racer, then the higher rungs fail: a downgrade", d_racing(), Top, None,
            vec![S(0), F(2, refused()), F(1, close()), F(0, silent())],
            "L0 race L1 L2 forget:downgrade fail downgrade"),
        ("9: a refused racer abandons the rungs below it; the walk learns no fallback", l_racing(), Top, None,
            vec![S(0), S(2), F(0, silent()), F(2, refused()), F(1, OK)],
            "L0 race L1 L2 race L3 A3 won 1 nothing"),
        ("9: a racer that cannot connect does not end the walk", d_racing(), Top, None,
            vec![S(0), F(1, CONN), F(0, OK)], "L0 race L1 L2 A2 won 0 healthy"),
        ("9: a racer that could not connect is retried before anything below it is a downgrade", d_racing(), Top, None,
            vec![S(0), F(1, CONN), F(2, refused()), F(0, silent()), F(3, OK)],
            "L0 race L1 L2 L1 won 1 nothing"),
        ("9: the retried racer failing after a refusal is a downgrade", d_racing(), Top, None,
            vec![S(0), F(1, CONN), F(2, refused()), F(0, silent()), F(3, close())],
            "L0 race L1 L2 L1 forget:downgrade fail downgrade"),
        ("9: the retried racer unable to connect after a refusal is a downgrade", d_racing(), Top, None,
            vec![S(0), F(1, CONN), F(2, refused()), F(0, silent()), F(3, CONN)],
            "L0 race L1 L2 L1 forget:downgrade fail downgrade"),
        ("9: when only a racer could not connect, the error is the connect failure", d_racing(), Top, None,
            vec![S(0), F(1, CONN), F(2, close()), F(0, silent()), F(3, CONN)],
            "L0 race L1 L2 L1 fail connect"),
        ("9: after retrying a racer that could not connect, the walk goes on down", d_racing(), Top, None,
            vec![S(0), F(1, CONN), F(2, close()), F(0, silent()), F(3, close()), F(4, OK)],
            "L0 race L1 L2 L1 L3 won 3 provisional"),
        ("9: a rung started with its next-version partner is retried if it could not connect", d(), Top, None,
            vec![F(0, silent()), F(1, CONN), F(2, close()), F(3, OK)], "L0 L1 L2 L1 won 1 provisional"),
        ("9: a second racer that cannot connect ends the walk after the first one's retry", d_racing(), Top, None,
            vec![S(0), F(1, CONN), F(2, close()), F(0, silent()), S(3), F(4, CONN), F(3, close())],
            "L0 race L1 L2 L1 race L3 fail connect"),
        ("9: a legacy server keeps the legacy rungs a sweep already started", ladder(Tls1_0, false, true), Top, None,
            vec![S(0), S(1), S(2), F(2, silent()), F(0, silent()), F(1, close()), F(3, legacy()), F(4, OK)],
            "L0 race L1 L2 L3 L4 L5 A5 won 4 fallback"),
        ("9: a legacy rung that could not connect is relaunched once, as its retry", ladder(Tls1_0, false, false), Top, None,
            vec![F(0, close()), F(1, close()), F(2, silent()), F(4, CONN), F(3, legacy()), F(5, CONN)],
            "L0 L1 L2 L3 L4 L4 fail connect"),
        ("9: at most three attempts at once: a stalled racer waits for room", d_racing(), Top, None,
            vec![S(0), S(1), S(2), F(1, close()), F(2, OK)], "L0 race L1 L2 race L3 A0 A3 won 2 fallback"),
    ]);
}

fn middle_forbidden() -> Facts {
    let mut f = d();
    f.rungs[1].allowed = false;
    f
}

fn nothing_allowed() -> Facts {
    let mut f = d();
    f.rungs.iter_mut().for_each(|r| r.allowed = false);
    f
}
