//! From test rows to findings (pure): which versions the server supports and which it is
//! intolerant to, the version the later tests build on, and what the length, cipher-count and
//! extension tests show against their baselines.

use std::collections::BTreeMap;

use super::findings::{TestId, VersionKey, WireVersion};
use super::plan::VersionStep;
use super::ProbeTest;
use crate::wire::TLS13;

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
