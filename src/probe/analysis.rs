//! From test rows to findings (pure): which versions the server supports and which it is
//! intolerant to, the version the later tests build on, and what the length, cipher-count and
//! extension tests show against their baselines.

use std::collections::BTreeMap;

use super::findings::{
    scsv_verdict, NoTlsAnswer, ScsvSupport, ScsvUnknown, TestId, TestOutcome, VersionKey,
    WireVersion,
};
use super::plan::{self, ScsvPlan, VersionStep};
use super::ProbeTest;
use crate::wire::{TLS10, TLS11, TLS12, TLS13};

/// Everything the tests of one address show, derived once: the summary, the table, the
/// recommendation, the JSON flags and the SSL Labs fields are all read from this, so they
/// cannot disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    /// Versions supported and intolerated, and the best version that got through.
    pub versions: VersionFindings,
    /// Present when nothing answered in TLS.
    pub no_tls_answer: Option<NoTlsAnswer>,
    /// The F5 window, cipher-count and unknown-extension findings.
    pub shapes: ShapeFindings,
    /// The hello-size findings (long, split, post-quantum).
    pub sizes: SizeFindings,
    /// TLS_FALLBACK_SCSV support.
    pub scsv: ScsvSupport,
    /// Why `scsv` is unknown.
    pub scsv_unknown: Option<ScsvUnknown>,
    /// The server refused the SCSV hello at the best version that got through with
    /// `inappropriate_fallback`: it speaks a higher version than the path lets through.
    pub higher_version_blocked: bool,
}

impl Analysis {
    /// Derives every finding from the version plan and the tests that ran (any order, any
    /// subset: a missing test shows nothing).
    pub fn of(tests: &[ProbeTest], sni: &Option<String>) -> Analysis {
        let plan = plan::version_plan(sni);
        let version_rows: Vec<ProbeTest> = plan
            .iter()
            .map(|step| {
                tests
                    .iter()
                    .find(|t| t.name == step.id)
                    .cloned()
                    .unwrap_or_else(|| ProbeTest::skipped(step.id, "did not run"))
            })
            .collect();
        let versions = VersionFindings::of(&plan, &version_rows);
        let no_tls_answer = NoTlsAnswer::of(tests);
        let scsv_plan = ScsvPlan::of(&versions, no_tls_answer.is_none());
        let scsv_test = tests.iter().find(|t| t.name == TestId::FallbackScsv);
        let (scsv, scsv_unknown, blocked) = match scsv_plan {
            Err(why) => (ScsvSupport::Unknown, Some(why), false),
            Ok(p) => {
                let verdict = scsv_verdict(scsv_test.map(|t| &t.outcome), p.at_best);
                let why = match (verdict, scsv_test.map(|t| &t.outcome)) {
                    (ScsvSupport::Unknown, Some(TestOutcome::ServerHello(_))) => {
                        Some(ScsvUnknown::AcceptedAtBest)
                    }
                    (ScsvSupport::Unknown, _) => Some(ScsvUnknown::Inconclusive),
                    _ => None,
                };
                (verdict, why, p.at_best && verdict == ScsvSupport::Supported)
            }
        };
        Analysis {
            versions,
            no_tls_answer,
            shapes: ShapeFindings::of(tests),
            sizes: SizeFindings::of(tests),
            scsv,
            scsv_unknown,
            higher_version_blocked: blocked,
        }
    }

    /// SSL Labs' `protocolIntolerance` bit mask: 1 TLS 1.0, 2 TLS 1.1, 4 TLS 1.2, 8 TLS 1.3,
    /// 16 for 0x0398, 32 for 0x0498.
    pub fn protocol_intolerance(&self, tests: &[ProbeTest]) -> u32 {
        let mut mask = 0;
        for (key, bit) in [
            (VersionKey::Tls10, 1),
            (VersionKey::Tls11, 2),
            (VersionKey::Tls12, 4),
            (VersionKey::Tls13, 8),
        ] {
            if self.versions.intolerance.get(&key) == Some(&true) {
                mask |= bit;
            }
        }
        // The future values, each on its own: failed while a supported version was offered.
        let offered_supported = !self.versions.supported.is_empty();
        for (id, bit) in [(TestId::Future0398, 16), (TestId::Future0498, 32)] {
            let failed = tests.iter().any(|t| t.name == id && t.failed());
            if failed && offered_supported && self.no_tls_answer.is_none() {
                mask |= bit;
            }
        }
        mask
    }

    /// SSL Labs' `miscIntolerance` bit mask: 1 an unknown extension, 2 a long handshake
    /// (256..511 bytes), 4 when the long-handshake workaround (padding past 511) works.
    pub fn misc_intolerance(&self, tests: &[ProbeTest]) -> u32 {
        let mut mask = 0;
        if self.shapes.extension {
            mask |= 1;
        }
        if self.shapes.long_handshake {
            mask |= 2;
            if tests
                .iter()
                .any(|t| t.name == TestId::Long512 && t.server_hello())
            {
                mask |= 4;
            }
        }
        mask
    }

    /// Version keys proven intolerant, ascending.
    pub fn intolerant_versions(&self) -> Vec<VersionKey> {
        self.versions
            .intolerance
            .iter()
            .filter(|(_, &bad)| bad)
            .map(|(&k, _)| k)
            .collect()
    }

    /// The versions a hello offering more than the best got blocked at, as names ("1.3").
    pub fn best_name(&self) -> String {
        super::version_name(self.versions.best)
    }
}

/// What the hello-size tests show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SizeFindings {
    /// `long_hello` (about 1,550 bytes) failed while a shorter hello of the same version worked.
    pub long_hello: bool,
    /// `split_hello` (a short hello in two TCP segments) failed while the same hello in one
    /// segment worked: the box does not reassemble a hello spanning segments.
    pub split_hello: bool,
    /// `pq_key_share` failed while a hello without it worked.
    pub pq_key_share: bool,
    /// The longest hello that got a ServerHello (bytes).
    pub largest_passing: Option<usize>,
    /// The shortest of the long or post-quantum hellos that failed (bytes).
    pub smallest_failing: Option<usize>,
}

impl SizeFindings {
    /// Derives the findings from the tests that ran (missing tests show nothing).
    pub fn of(tests: &[ProbeTest]) -> SizeFindings {
        let find = |id| tests.iter().find(|t: &&ProbeTest| t.name == id);
        let passed = |id| find(id).is_some_and(ProbeTest::server_hello);
        let failed = |id| find(id).is_some_and(ProbeTest::failed);
        let short_ok = passed(TestId::LongShort) || passed(TestId::Long512);
        let any_ok = short_ok || passed(TestId::BaselinePadded);
        let largest_passing = tests
            .iter()
            .filter(|t| t.server_hello() && t.name != TestId::FallbackConnector)
            .map(|t| t.hello_len)
            .max();
        let smallest_failing = [TestId::LongHello, TestId::PqKeyShare]
            .into_iter()
            .filter_map(find)
            .filter(|t| t.failed())
            .map(|t| t.hello_len)
            .min();
        SizeFindings {
            long_hello: failed(TestId::LongHello) && any_ok,
            split_hello: failed(TestId::SplitHello) && short_ok,
            pq_key_share: failed(TestId::PqKeyShare) && any_ok,
            largest_passing,
            smallest_failing,
        }
    }

    /// Any of the three.
    pub fn any(&self) -> bool {
        self.long_hello || self.split_hello || self.pq_key_share
    }
}

#[allow(dead_code)]
const _VERSIONS: [u16; 4] = [TLS10, TLS11, TLS12, TLS13];

/// The facts the version tests establish, and the version the later tests build on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionFindings {
    /// Versions the server negotiated when offered alone, ascending.
    pub supported: Vec<u16>,
    /// Per key: whether a hello offering a supported version failed.
    pub intolerance: BTreeMap<VersionKey, bool>,
    /// The best version the server supports and tolerates (TLS 1.3 if none is known).
    pub best: u16,
}

impl VersionFindings {
    /// Derives the findings from the version plan and its tests, in the same order.
    pub fn of(plan: &[VersionStep], tests: &[ProbeTest]) -> VersionFindings {
        let mut supported: Vec<u16> = plan
            .iter()
            .zip(tests)
            .filter_map(|(step, test)| {
                let v = step.support?;
                (test.negotiated == Some(WireVersion(v))).then_some(v)
            })
            .collect();
        supported.sort_unstable();
        let mut intolerance: BTreeMap<VersionKey, bool> =
            VersionKey::ALL.into_iter().map(|k| (k, false)).collect();
        for (step, test) in plan.iter().zip(tests) {
            // Intolerant: no ServerHello although the hello offered a version the server supports.
            let offered_supported = step
                .spec
                .offered_versions()
                .iter()
                .any(|v| supported.contains(v));
            if let (Some(key), true) = (step.intolerance, test.failed() && offered_supported) {
                intolerance.insert(key, true);
            }
        }
        let best = supported
            .iter()
            .rev()
            .copied()
            .find(|&v| VersionKey::of(v).and_then(|k| intolerance.get(&k)) == Some(&false))
            .or(supported.last().copied())
            .unwrap_or(TLS13);
        VersionFindings {
            supported,
            intolerance,
            best,
        }
    }
}

/// What the length, cipher-count and extension tests show: each is a failure of the changed
/// hello while its baseline got a ServerHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShapeFindings {
    /// `long_300` failed, `long_short` worked (the F5 256..511-byte bug).
    pub long_handshake: bool,
    /// `ciphers_many` failed, `baseline_padded` worked.
    pub cipher_count: bool,
    /// `extension_unknown` failed, `baseline_padded` worked.
    pub extension: bool,
}

impl ShapeFindings {
    /// Derives the findings from the tests that ran (missing tests show nothing).
    pub fn of(tests: &[ProbeTest]) -> ShapeFindings {
        let find = |id| tests.iter().find(|t: &&ProbeTest| t.name == id);
        let intolerant = |changed: TestId, baseline: TestId| {
            find(changed).is_some_and(ProbeTest::failed)
                && find(baseline).is_some_and(ProbeTest::server_hello)
        };
        ShapeFindings {
            long_handshake: intolerant(TestId::Long300, TestId::LongShort),
            cipher_count: intolerant(TestId::CiphersMany, TestId::BaselinePadded),
            extension: intolerant(TestId::ExtensionUnknown, TestId::BaselinePadded),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::TestOutcome;

    #[test]
    fn a_shape_is_intolerance_only_against_a_working_baseline() {
        use TestId::*;
        let ok = || TestOutcome::ServerHello(WireVersion(TLS13));
        let f = |long, cipher_count, extension| ShapeFindings {
            long_handshake: long,
            cipher_count,
            extension,
        };
        let rows: Vec<(Vec<ProbeTest>, ShapeFindings)> = vec![
            (
                vec![
                    ProbeTest::sample(LongShort, ok()),
                    ProbeTest::sample(Long300, TestOutcome::Timeout),
                ],
                f(true, false, false),
            ),
            (
                vec![
                    ProbeTest::sample(LongShort, TestOutcome::Timeout),
                    ProbeTest::sample(Long300, TestOutcome::Timeout),
                ],
                f(false, false, false),
            ),
            (
                vec![
                    ProbeTest::sample(LongShort, ok()),
                    ProbeTest::sample(Long300, TestOutcome::Skipped),
                ],
                f(false, false, false),
            ),
            (
                vec![
                    ProbeTest::sample(BaselinePadded, ok()),
                    ProbeTest::sample(CiphersMany, TestOutcome::Closed),
                    ProbeTest::sample(ExtensionUnknown, TestOutcome::Alert(50)),
                ],
                f(false, true, true),
            ),
            (
                vec![
                    ProbeTest::sample(BaselinePadded, TestOutcome::Reset),
                    ProbeTest::sample(CiphersMany, TestOutcome::Closed),
                    ProbeTest::sample(ExtensionUnknown, ok()),
                ],
                f(false, false, false),
            ),
            (vec![], f(false, false, false)),
        ];
        for (tests, expected) in rows {
            assert_eq!(ShapeFindings::of(&tests), expected, "{tests:?}");
        }
    }

    #[test]
    fn support_intolerance_and_the_best_version_come_from_the_version_tests() {
        use crate::probe::plan::version_plan;
        use crate::wire::{TLS10, TLS12};
        let hello = |v| TestOutcome::ServerHello(WireVersion(v));
        let plan = version_plan(&None);
        // A TLS 1.0 box closing anything newer.
        let outcomes = [
            hello(TLS10),
            TestOutcome::Closed,
            TestOutcome::Closed,
            TestOutcome::Closed,
            TestOutcome::Closed,
            TestOutcome::Closed,
            TestOutcome::Closed,
            TestOutcome::Closed,
        ];
        let tests: Vec<ProbeTest> = outcomes
            .into_iter()
            .map(|o| ProbeTest::sample(TestId::Version12, o))
            .collect();
        let v = VersionFindings::of(&plan, &tests);
        assert_eq!(v.supported, [TLS10]);
        assert_eq!(v.best, TLS10);
        let bad: Vec<VersionKey> = v
            .intolerance
            .iter()
            .filter(|(_, b)| **b)
            .map(|(k, _)| *k)
            .collect();
        assert_eq!(
            bad,
            [
                VersionKey::Tls11,
                VersionKey::Tls12,
                VersionKey::Tls13,
                VersionKey::Future
            ]
        );
        // A TLS 1.2/1.3 server whose TLS 1.3 offer hangs: best is 1.2, 1.3 is intolerant.
        let outcomes = [
            TestOutcome::Alert(70),
            TestOutcome::Alert(70),
            hello(TLS12),
            hello(TLS13),
            TestOutcome::Timeout,
            hello(TLS12),
            hello(TLS12),
            hello(TLS12),
        ];
        let tests: Vec<ProbeTest> = outcomes
            .into_iter()
            .map(|o| ProbeTest::sample(TestId::Version12, o))
            .collect();
        let v = VersionFindings::of(&plan, &tests);
        assert_eq!(v.supported, [TLS12, TLS13]);
        assert_eq!(v.best, TLS12);
        assert!(v.intolerance[&VersionKey::Tls13]);
        // Nothing negotiated: nothing supported, nothing intolerant, TLS 1.3 as the baseline.
        let tests: Vec<ProbeTest> = (0..8)
            .map(|_| ProbeTest::sample(TestId::Version12, TestOutcome::Timeout))
            .collect();
        let v = VersionFindings::of(&plan, &tests);
        assert!(v.supported.is_empty() && v.intolerance.values().all(|b| !b));
        assert_eq!(v.best, TLS13);
    }
}
