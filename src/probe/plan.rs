//! Which hellos the probe sends, and why each one (pure: no I/O). Each test changes one
//! variable against its baseline, so a failure points at one cause: the version, the hello's
//! length (the F5 256..511-byte bug), the cipher count or an unknown extension; the SCSV test
//! offers one version below the best. Every hello outside the length test stays out of the F5
//! window, so that bug is never mistaken for another.

use super::analysis::VersionFindings;
use super::findings::{ScsvUnknown, TestId, VersionKey};
use super::hello::{HelloSpec, FALLBACK_SCSV, RENEGOTIATION_SCSV, TLS10, TLS11, TLS12, TLS13};
use super::version_name;

/// Length the cipher-count and extension tests pad their hellos to.
pub(crate) const PADDED_LEN: usize = 600;
/// Length inside the F5 window (256..=511) used by the long-handshake test.
pub(crate) const LONG_LEN: usize = 300;
/// Smallest length past the F5 window.
pub(crate) const PAST_F5: usize = 512;
/// Cipher suites offered by the "many suites" hello.
pub(crate) const MANY_SUITES: usize = 150;
/// Length of the long-hello test: the size of a TLS 1.3 hello with an X25519MLKEM768 key share.
pub(crate) const LONG_HELLO_LEN: usize = 1_550;
/// Unknown extension type sent by the extension test (a reserved GREASE value, RFC 8701).
pub(crate) const UNKNOWN_EXTENSION: u16 = 0x7a7a;

/// One planned hello: what it is, what it offers, and why it is sent.
#[derive(Debug, Clone)]
pub struct Step {
    /// Which test.
    pub id: TestId,
    /// What the hello offers and why.
    pub description: String,
    /// The hello; `None` when the test cannot run (the description says why).
    pub spec: Option<HelloSpec>,
}

impl Step {
    fn run(id: TestId, description: impl Into<String>, spec: HelloSpec) -> Step {
        Step {
            id,
            description: description.into(),
            spec: Some(spec),
        }
    }

    fn skip(id: TestId, why: impl Into<String>) -> Step {
        Step {
            id,
            description: why.into(),
            spec: None,
        }
    }
}

/// One hello of the version tests.
#[derive(Debug, Clone)]
pub struct VersionStep {
    /// Which test.
    pub id: TestId,
    /// What the hello offers.
    pub description: &'static str,
    /// The hello.
    pub spec: HelloSpec,
    /// The version this hello proves supported when the server negotiates it.
    pub support: Option<u16>,
    /// The `version_intolerance` key this hello tests.
    pub intolerance: Option<VersionKey>,
}

/// A version step as data: id, description, hello, the version it proves, the key it tests.
type VersionRow = (
    TestId,
    &'static str,
    HelloSpec,
    Option<u16>,
    Option<VersionKey>,
);

/// The version support and intolerance hellos, each kept outside the F5 window; the hellos
/// that prove a version supported come first.
pub fn version_plan(sni: &Option<String>) -> Vec<VersionStep> {
    use VersionKey::*;
    let rows: [VersionRow; 8] = [
        (
            TestId::Version10,
            "legacy_version 1.0 only",
            HelloSpec::legacy(TLS10, sni.clone()),
            Some(TLS10),
            Some(Tls10),
        ),
        (
            TestId::Version11,
            "legacy_version 1.1, no supported_versions",
            HelloSpec::legacy(TLS11, sni.clone()),
            Some(TLS11),
            Some(Tls11),
        ),
        (
            TestId::Version12,
            "legacy_version 1.2, no supported_versions",
            HelloSpec::legacy(TLS12, sni.clone()),
            Some(TLS12),
            Some(Tls12),
        ),
        (
            TestId::Version13Only,
            "supported_versions [1.3] only, TLS 1.3 suites",
            HelloSpec::with_supported_versions(vec![TLS13], sni.clone()),
            Some(TLS13),
            None,
        ),
        (
            TestId::Version13,
            "supported_versions [1.3, 1.2, 1.1, 1.0]",
            HelloSpec::up_to(TLS13, sni.clone()),
            None,
            Some(Tls13),
        ),
        (
            TestId::Future0304,
            "legacy_version 0x0304 without supported_versions",
            HelloSpec::legacy(0x0304, sni.clone()),
            None,
            Some(Future),
        ),
        (
            TestId::Future0398,
            "legacy_version 0x0398 (\"TLS 1.152\")",
            HelloSpec::legacy(0x0398, sni.clone()),
            None,
            Some(Future),
        ),
        (
            TestId::Future0498,
            "legacy_version 0x0498 (\"TLS 2.152\")",
            HelloSpec::legacy(0x0498, sni.clone()),
            None,
            Some(Future),
        ),
    ];
    rows.into_iter()
        .map(|(id, description, mut spec, support, intolerance)| {
            avoid_f5_window(&mut spec);
            VersionStep {
                id,
                description,
                spec,
                support,
                intolerance,
            }
        })
        .collect()
}

/// The long-handshake tests on the baseline hello offering up to `best`: unpadded (if that is
/// under 256 bytes), padded into the F5 window, padded past it.
pub fn long_plan(best: u16, sni: &Option<String>) -> [Step; 3] {
    let base = HelloSpec::up_to(best, sni.clone());
    let best_name = version_name(best);
    let natural = base.natural_len();
    let mut long = base.clone();
    long.pad_to = Some(LONG_LEN.max(natural + 4));
    let mut past = base.clone();
    past.pad_to = Some(PAST_F5.max(natural + 4));
    let short = if natural < 256 {
        let mut short = base;
        short.pad_to = None;
        Step::run(
            TestId::LongShort,
            format!("TLS {best_name} hello, unpadded (< 256 bytes)"),
            short,
        )
    } else {
        Step::skip(
            TestId::LongShort,
            "unpadded hello is already >= 256 bytes (long SNI)",
        )
    };
    let long = if long.hello_len() <= 511 {
        Step::run(
            TestId::Long300,
            "same, padded into the F5 window (256..511 bytes)",
            long,
        )
    } else {
        Step::skip(TestId::Long300, "hello cannot fit the 256..511 window")
    };
    let past = Step::run(
        TestId::Long512,
        "same, padded past the F5 window (>= 512 bytes)",
        past,
    );
    [short, long, past]
}

/// The cipher-count and unknown-extension tests and their baseline, all at one padded length.
pub fn shape_plan(best: u16, sni: &Option<String>) -> [Step; 3] {
    let base = HelloSpec::up_to(best, sni.clone());
    let mut many = base.clone();
    many.cipher_suites = many_suites(&base.cipher_suites);
    let mut unknown = base.clone();
    unknown.unknown_extension = Some(UNKNOWN_EXTENSION);
    let target_len = [
        base.natural_len(),
        many.natural_len(),
        unknown.natural_len(),
    ]
    .into_iter()
    .max()
    .unwrap_or(0)
    .saturating_add(4)
    .max(PADDED_LEN);
    let mut baseline = base;
    for s in [&mut baseline, &mut many, &mut unknown] {
        s.pad_to = Some(target_len);
    }
    [
        Step::run(
            TestId::BaselinePadded,
            format!(
                "TLS {} hello, {} suites, padded",
                version_name(best),
                baseline.cipher_suites.len()
            ),
            baseline,
        ),
        Step::run(
            TestId::CiphersMany,
            format!(
                "same with {} suites (real and unassigned)",
                many.cipher_suites.len()
            ),
            many,
        ),
        Step::run(
            TestId::ExtensionUnknown,
            format!("baseline plus unknown extension {UNKNOWN_EXTENSION:#06x}"),
            unknown,
        ),
    ]
}

/// The TLS_FALLBACK_SCSV test: a hello offering up to `offered`, with the SCSV.
pub fn scsv_step(offered: u16, sni: &Option<String>) -> Step {
    let mut spec = HelloSpec::up_to(offered, sni.clone());
    spec.cipher_suites.push(FALLBACK_SCSV);
    avoid_f5_window(&mut spec);
    Step::run(
        TestId::FallbackScsv,
        format!("max TLS {} plus TLS_FALLBACK_SCSV", version_name(offered)),
        spec,
    )
}

/// The SCSV step the version findings call for (see [`ScsvPlan::of`]), or a skipped row
/// saying why it cannot tell anything.
pub fn scsv_plan(versions: &VersionFindings, answered: bool, sni: &Option<String>) -> Step {
    let supported: Vec<crate::TlsVersion> = versions
        .supported
        .iter()
        .filter_map(|&v| crate::TlsVersion::from_wire(v))
        .collect();
    match ScsvPlan::of(versions, answered) {
        Ok(plan) => scsv_step(plan.offered, sni),
        Err(why) => Step::skip(
            TestId::FallbackScsv,
            format!("TLS_FALLBACK_SCSV: {}", why.explain(&supported, None)),
        ),
    }
}

/// Which version the SCSV hello offers, and what an answer can prove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScsvPlan {
    /// The highest version the SCSV hello offers.
    pub offered: u16,
    /// The offer is the best version that got through while a higher one failed: an
    /// `inappropriate_fallback` answer then proves the server speaks a version the path blocks.
    pub at_best: bool,
}

impl ScsvPlan {
    /// The rule, as a table on the version findings:
    ///
    /// | nothing answered in TLS | no version | a version above the best failed | versions |  SCSV hello offers |
    /// |---|---|---|---|---|
    /// | yes | - | - | - | not sent (`no_tls_answer`) |
    /// | no | yes | - | - | not sent (`no_version`) |
    /// | no | no | yes | any | up to the best version that got through (`at_best`) |
    /// | no | no | no | two or more | one below the highest |
    /// | no | no | no | one | not sent (`single_version`) |
    pub fn of(versions: &VersionFindings, answered: bool) -> Result<ScsvPlan, ScsvUnknown> {
        let blocked_above = versions
            .intolerance
            .iter()
            .any(|(k, &bad)| bad && k.version().is_some_and(|v| v > versions.best));
        match (answered, versions.supported.as_slice()) {
            (false, _) => Err(ScsvUnknown::NoTlsAnswer),
            (true, []) => Err(ScsvUnknown::NoVersion),
            _ if blocked_above => Ok(ScsvPlan {
                offered: versions.best,
                at_best: true,
            }),
            (true, [_]) => Err(ScsvUnknown::SingleVersion),
            (true, [.., highest]) => Ok(ScsvPlan {
                offered: highest.saturating_sub(1).max(TLS10),
                at_best: false,
            }),
        }
    }
}

/// The hello-size tests on the baseline offering up to `best`: the same hello padded to
/// about 1,550 bytes (one write: two TCP segments on a 1,500-byte MTU path), the short
/// baseline written in two TCP segments (reassembly, not size), and a TLS 1.3 hello with an
/// X25519MLKEM768 key share (only when TLS 1.3 is the best version).
pub fn size_plan(best: u16, sni: &Option<String>) -> [Step; 3] {
    let base = HelloSpec::up_to(best, sni.clone());
    let best_name = version_name(best);
    let mut long = base.clone();
    long.pad_to = Some(LONG_HELLO_LEN.max(base.natural_len() + 4));
    let mut split = base.clone();
    avoid_f5_window(&mut split);
    let pq = if best >= TLS13 {
        let mut pq = base;
        pq.pq_key_share = true;
        avoid_f5_window(&mut pq);
        Step::run(
            TestId::PqKeyShare,
            format!(
                "TLS 1.3 hello with an X25519MLKEM768 key share ({} bytes)",
                pq.hello_len()
            ),
            pq,
        )
    } else {
        Step::skip(
            TestId::PqKeyShare,
            format!("not sent: the best version that got through is TLS {best_name}, and key shares are TLS 1.3's"),
        )
    };
    [
        Step::run(
            TestId::LongHello,
            format!(
                "TLS {best_name} hello padded to {} bytes, the size of a post-quantum key share",
                long.hello_len()
            ),
            long,
        ),
        Step::run(
            TestId::SplitHello,
            format!(
                "TLS {best_name} hello of {} bytes written in two TCP segments",
                split.hello_len()
            ),
            split,
        ),
        pq,
    ]
}

/// One test alone (`probe --only`), on the baseline `baseline` (TLS 1.3 when `None`); `None`
/// for the connector test, which sends no hand-built hello.
pub fn single(id: TestId, baseline: Option<u16>, sni: &Option<String>) -> Option<Step> {
    let best = baseline.unwrap_or(TLS13);
    if let Some(v) = version_plan(sni).into_iter().find(|s| s.id == id) {
        return Some(Step::run(id, v.description, v.spec));
    }
    if id == TestId::FallbackScsv {
        return Some(scsv_step(best, sni));
    }
    long_plan(best, sni)
        .into_iter()
        .chain(shape_plan(best, sni))
        .chain(size_plan(best, sni))
        .find(|s| s.id == id)
}

/// Pads a hello that would fall into 256..=511 bytes to 512, so F5 is not mistaken for the cause.
fn avoid_f5_window(spec: &mut HelloSpec) {
    let natural = spec.natural_len();
    if natural >= 256 {
        spec.pad_to = Some(PAST_F5.max(natural + 4));
    }
}

/// `base` first, then real legacy suites and unassigned values, up to [`MANY_SUITES`].
fn many_suites(base: &[u16]) -> Vec<u16> {
    let mut out = base.to_vec();
    let reserved = |s: u16| s == RENEGOTIATION_SCSV || s == FALLBACK_SCSV;
    let real = 0x0001u16..=0x006b;
    let unassigned = 0x7a00u16..=0x7a6f;
    for s in real.chain(unassigned) {
        if out.len() >= MANY_SUITES {
            break;
        }
        if !out.contains(&s) && !reserved(s) {
            out.push(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(step: &Step) -> &HelloSpec {
        step.spec.as_ref().expect("the step runs")
    }

    /// The length category of every hello the plan sends, for a typical host name.
    #[test]
    fn hello_lengths_fall_in_the_planned_categories() {
        for host in ["localhost", "payments.gateway.example-bank.com"] {
            let sni = Some(host.to_string());
            for step in version_plan(&sni) {
                let len = step.spec.hello_len();
                assert!(len < 256, "{host}: {} is {len} bytes", step.id);
            }
            for best in [TLS10, TLS12, TLS13] {
                let [short, long, past] = long_plan(best, &sni);
                assert!(spec(&short).hello_len() < 256);
                assert_eq!(spec(&long).hello_len(), LONG_LEN);
                assert_eq!(spec(&past).hello_len(), PAST_F5);
                let [baseline, many, unknown] = shape_plan(best, &sni);
                assert_eq!(spec(&many).cipher_suites.len(), MANY_SUITES);
                assert_eq!(spec(&unknown).unknown_extension, Some(UNKNOWN_EXTENSION));
                for s in [&baseline, &many, &unknown] {
                    assert_eq!(spec(s).hello_len(), PADDED_LEN, "{}", s.id);
                }
            }
        }
        // A very long name pushes the bigger hellos past 255 bytes: they are padded to 512.
        let long_name = Some(format!("{}.example", "a".repeat(120)));
        let lens: Vec<usize> = version_plan(&long_name)
            .iter()
            .map(|s| s.spec.hello_len())
            .collect();
        assert!(lens.iter().all(|l| !(256..PAST_F5).contains(l)), "{lens:?}");
        assert!(lens.contains(&PAST_F5), "{lens:?}");
    }

    #[test]
    fn the_support_hellos_come_first() {
        let plan = version_plan(&None);
        let first_other = plan.iter().position(|s| s.support.is_none()).unwrap();
        assert!(plan[first_other..].iter().all(|s| s.support.is_none()));
        assert_eq!(first_other, 4);
    }

    #[test]
    fn a_long_name_skips_the_unpadded_test_and_pads_the_others() {
        let huge = Some(format!("{}.example", "a".repeat(250)));
        let [short, long, past] = long_plan(TLS13, &huge);
        assert!(short.spec.is_none(), "{short:?}");
        assert!((256..=511).contains(&spec(&long).hello_len()));
        assert!(spec(&past).hello_len() >= PAST_F5);
    }

    #[test]
    fn the_scsv_hello_offers_the_version_asked_with_the_scsv() {
        for offered in [TLS12, TLS11, TLS10] {
            let step = scsv_step(offered, &None);
            assert!(spec(&step).cipher_suites.contains(&FALLBACK_SCSV));
            assert_eq!(spec(&step).offered_versions().last(), Some(&offered));
        }
    }
}
