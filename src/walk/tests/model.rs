//! A model-based property test of the planner: a random server (best and lowest version,
//! whether it honours TLS_FALLBACK_SCSV, a bad certificate or not), a random intolerant box in
//! front of it (silent, closing or passing, per rung), a random on-path attacker (kills or
//! silences any hello, injects alerts, inappropriate_fallback included), random TCP connect
//! failures, a random policy and start, and a random order of completions and stalls. The
//! planner is run against it to the end; each invariant is its own assertion.

use proptest::prelude::*;

use super::*;

/// What stands between the hello and the server, or the attacker, does to one hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    Pass,
    Close,
    Silent,
    /// An injected inappropriate_fallback alert.
    Refuse,
}

#[derive(Debug, Clone)]
struct Server {
    best: TlsVersion,
    lowest: TlsVersion,
    honours_scsv: bool,
    bad_cert: bool,
}

#[derive(Debug, Clone)]
struct World {
    server: Server,
    /// The intolerant box, per rung.
    box_: Vec<Kill>,
    /// The attacker, per attempt (launch order).
    attacker: Vec<Kill>,
    /// TCP connect failures, per attempt.
    no_connect: Vec<bool>,
    floor: TlsVersion,
    legacy_gate: bool,
    racing: bool,
    start: Start,
    prior: Option<usize>,
    /// The scheduler's picks.
    picks: Vec<u16>,
}

fn version() -> impl Strategy<Value = TlsVersion> {
    prop_oneof![Just(Tls1_0), Just(Tls1_1), Just(Tls1_2), Just(Tls1_3)]
}

fn kill(pass_weight: u32) -> impl Strategy<Value = Kill> {
    prop_oneof![
        pass_weight => Just(Kill::Pass),
        1 => Just(Kill::Close),
        1 => Just(Kill::Silent),
        1 => Just(Kill::Refuse),
    ]
}

fn world() -> impl Strategy<Value = World> {
    let server = (
        version(),
        version(),
        any::<bool>(),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(a, b, honours_scsv, bad_cert)| Server {
            best: a.max(b),
            lowest: a.min(b),
            honours_scsv,
            bad_cert,
        });
    let box_ = prop::collection::vec(
        prop_oneof![3 => Just(Kill::Pass), 1 => Just(Kill::Close), 1 => Just(Kill::Silent)],
        6,
    );
    let attacker = prop::collection::vec(kill(6), 16);
    let no_connect = prop::collection::vec(prop::bool::weighted(0.08), 16);
    let start = prop_oneof![3 => Just(Start::Top), 2 => (0usize..7).prop_map(Start::Cached)];
    let policy = (version(), any::<bool>(), any::<bool>());
    let prior = prop::option::of(0usize..6);
    let picks = prop::collection::vec(any::<u16>(), 64);
    (
        server, box_, attacker, no_connect, policy, start, prior, picks,
    )
        .prop_map(
            |(
                server,
                box_,
                attacker,
                no_connect,
                (floor, legacy_gate, racing),
                start,
                prior,
                picks,
            )| {
                World {
                    server,
                    box_,
                    attacker,
                    no_connect,
                    floor,
                    legacy_gate,
                    racing,
                    start,
                    prior,
                    picks,
                }
            },
        )
}

impl World {
    fn facts(&self) -> Facts {
        ladder(self.floor, self.legacy_gate, self.racing)
    }

    /// How attempt `n` on `rung` ends, and the version a success negotiates.
    fn outcome(&self, n: usize, rung: usize, facts: &Facts) -> (Finish, Option<TlsVersion>) {
        if self.no_connect.get(n).copied().unwrap_or(false) {
            return (Finish::ConnectFailed, None);
        }
        let attack = self.attacker.get(n).copied().unwrap_or(Kill::Pass);
        let wire = if attack == Kill::Pass {
            self.box_[rung]
        } else {
            attack
        };
        match wire {
            Kill::Close => return (close(), None),
            Kill::Silent => return (silent(), None),
            Kill::Refuse => return (refused(), None),
            Kill::Pass => {}
        }
        let s = &self.server;
        let cap = facts.rungs[rung].cap;
        if cap < s.lowest {
            // protocol_version alert.
            return (close(), None);
        }
        let refused_by_scsv = rung > 0 && s.honours_scsv && s.best > cap;
        // The RFC 8446 marker: a TLS 1.3 server answering a hello capped below 1.3.
        let marker = s.best == Tls1_3 && cap < Tls1_3;
        if refused_by_scsv || marker {
            return (refused(), None);
        }
        let v = cap.min(s.best);
        if v < Tls1_2 && !facts.rungs[rung].legacy {
            return (failed(Verdict::LegacyServer, false, false), None);
        }
        if s.bad_cert {
            return (failed(Verdict::Certificate, false, false), None);
        }
        (Finish::Ok, Some(v))
    }
}

/// One attempt as the model runs it.
struct Live {
    id: AttemptId,
    finish: Finish,
    stalled: bool,
    /// The planner asked for its stall clock.
    watched: bool,
}

/// What a run of the planner against a world did.
#[derive(Default)]
struct Run {
    launches: Vec<usize>,
    /// Launches before the re-probe, if there was one.
    before_reprobe: Option<usize>,
    won: Option<(usize, Learn, Option<TlsVersion>)>,
    failed: Option<Failure>,
    saw_downgrade: bool,
    launched_after_certificate: bool,
    max_running: usize,
}

fn run(world: &World) -> Run {
    let facts = world.facts();
    let mut planner = Planner::new(facts.clone(), world.start, world.prior);
    let mut r = Run::default();
    let mut live: Vec<Live> = Vec::new();
    let mut versions = Vec::new();
    let mut actions = planner.begin();
    let mut cert_seen = false;
    for step in 0..400 {
        for a in &actions {
            match *a {
                Action::Launch { id, rung, .. } => {
                    r.launched_after_certificate |= cert_seen;
                    let (finish, v) = world.outcome(r.launches.len(), rung, &facts);
                    r.launches.push(rung);
                    versions.push(v);
                    live.push(Live {
                        id,
                        finish,
                        stalled: false,
                        watched: false,
                    });
                }
                Action::Abandon(id, _) => live.retain(|l| l.id != id),
                Action::Watch(id) => live
                    .iter_mut()
                    .filter(|l| l.id == id)
                    .for_each(|l| l.watched = true),
                Action::Forget(Forget::Obsolete | Forget::RanOut) if r.before_reprobe.is_none() => {
                    // A new walk from the top: what the first one saw does not carry over.
                    r.before_reprobe = Some(r.launches.len());
                    r.saw_downgrade = false;
                }
                Action::Conclude(Conclusion::Won {
                    id, rung, learn, ..
                }) => {
                    r.won = Some((rung, learn, versions[id.0 as usize]));
                }
                Action::Conclude(Conclusion::Failed(f)) => r.failed = Some(f),
                _ => {}
            }
        }
        r.max_running = r.max_running.max(live.len());
        if planner.is_done() || live.is_empty() {
            break;
        }
        let event = pick(world, &mut live, step);
        actions = planner.on(event);
        if let Event::Finished(_, Finish::Failed { verdict, .. }) = event {
            let restarted = actions
                .iter()
                .any(|a| matches!(a, Action::Forget(Forget::Obsolete | Forget::RanOut)));
            r.saw_downgrade |= verdict == Verdict::Downgrade && !restarted;
            cert_seen |= verdict == Verdict::Certificate;
        }
    }
    assert!(planner.is_done(), "the walk did not conclude: {world:?}");
    r
}

/// The scheduler: any running attempt may finish (a silent one only after its stall, when
/// its stall clock runs) or, when its stall clock runs, stall first.
fn pick(world: &World, live: &mut Vec<Live>, step: usize) -> Event {
    let choice = usize::from(world.picks[step % world.picks.len()]);
    let mut options = Vec::new();
    for (i, l) in live.iter().enumerate() {
        let silent = matches!(l.finish, Finish::Failed { silent: true, .. });
        if !(l.watched && silent && !l.stalled) {
            options.push((i, true));
        }
        if l.watched && !l.stalled {
            options.push((i, false));
        }
    }
    let (i, finish) = options[choice % options.len()];
    if finish {
        let l = live.remove(i);
        Event::Finished(l.id, l.finish)
    } else {
        let l = &mut live[i];
        l.stalled = true;
        // A server that will answer may have answered already, or be slow to.
        let speaks = matches!(l.finish, Finish::Ok | Finish::Failed { silent: false, .. })
            && !matches!(
                l.finish,
                Finish::Failed {
                    verdict: Verdict::Intolerant,
                    ..
                }
            );
        Event::Stalled(l.id, speaks && choice % 2 == 0)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn the_walk_keeps_its_guarantees_against_any_server_and_attacker(world in world()) {
        let facts = world.facts();
        let r = run(&world);
        let s = &world.server;
        if let Some((rung, learn, v)) = r.won {
            let v = v.expect("a win negotiates a version");
            // SCSV (or the RFC 8446 marker): the attacker gets an error, not a weaker version.
            if s.honours_scsv || s.best == Tls1_3 {
                prop_assert_eq!(v, s.best, "won below the server's best on rung {}: {:?}", rung, world);
            }
            // A walk that saw a downgrade signal learns no fallback.
            if r.saw_downgrade {
                prop_assert!(matches!(learn, Learn::Nothing | Learn::Healthy),
                    "learned {:?} after a downgrade signal: {:?}", learn, world);
            }
            prop_assert!(!s.bad_cert, "won despite a bad certificate: {:?}", world);
        }
        // Nothing below the floor or outside the legacy gate is launched.
        for &rung in &r.launches {
            prop_assert!(facts.rungs[rung].allowed, "launched forbidden rung {}: {:?}", rung, world);
        }
        // Nothing is launched after a certificate failure.
        prop_assert!(!r.launched_after_certificate, "launched after a certificate error: {:?}", world);
        // Attempts: at most the ladder plus one retry per walk, and one re-probe.
        let allowed = facts.rungs.iter().filter(|f| f.allowed).count();
        let first = r.before_reprobe.unwrap_or(r.launches.len());
        prop_assert!(first <= allowed + 1, "{} attempts before any re-probe: {:?}", first, world);
        prop_assert!(r.launches.len() - first <= allowed + 1, "re-probe too long: {:?}", world);
        // At most three at once, but for the silent-port sweep (every rung once).
        prop_assert!(r.max_running <= MAX_IN_FLIGHT.max(allowed), "{:?}", world);
        prop_assert!(r.won.is_some() != r.failed.is_some(), "exactly one conclusion: {:?}", world);
    }
}
