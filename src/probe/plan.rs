//! Which hellos the probe sends, and why each one (pure: no I/O). Each test changes one
//! variable against its baseline, so a failure points at one cause: the version, the hello's
//! length (the F5 256..511-byte bug), the cipher count or an unknown extension; the SCSV test
//! offers one version below the best. Every hello outside the length test stays out of the F5
//! window, so that bug is never mistaken for another.

use super::findings::{TestId, VersionKey};
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

/// The TLS_FALLBACK_SCSV test: a hello offering one version below `highest`, with the SCSV.
pub fn scsv_step(highest: u16, sni: &Option<String>) -> Step {
    let below = highest.saturating_sub(1).max(TLS10);
    let mut spec = HelloSpec::up_to(below, sni.clone());
    spec.cipher_suites.push(FALLBACK_SCSV);
    avoid_f5_window(&mut spec);
    Step::run(
        TestId::FallbackScsv,
        format!("max TLS {} plus TLS_FALLBACK_SCSV", version_name(below)),
        spec,
    )
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
    fn the_scsv_hello_offers_one_version_below_with_the_scsv() {
        for (highest, offered) in [(TLS13, TLS12), (TLS12, TLS11), (TLS10, TLS10)] {
            let step = scsv_step(highest, &None);
            assert!(spec(&step).cipher_suites.contains(&FALLBACK_SCSV));
            assert_eq!(spec(&step).offered_versions().last(), Some(&offered));
        }
    }
}
