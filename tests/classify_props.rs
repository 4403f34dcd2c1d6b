//! Properties of the failure table (`tls_fallback::classify`): it is total and deterministic,
//! outcome and verdict agree, nothing about certificates ever leads to a fallback, and the two
//! downgrade signals (alert 86, reason 373) always stop the walk.

use std::io;

use proptest::prelude::*;
use tls_fallback::classify::{classify, Signal};
use tls_fallback::{Outcome, Verdict};

/// `ERR_LIB_SSL`.
const LIB_SSL: i32 = 20;
/// `ERR_LIB_X509`.
const LIB_X509: i32 = 11;

/// libssl reason codes about certificates, from OpenSSL 3.0's and 3.6's `sslerr.h`
/// (SSL_R_*CERT*, *_CA_*, X509, key and digest strength of the chain).
const CERTIFICATE_REASONS: &[i32] = &[
    134, // CERTIFICATE_VERIFY_FAILED
    135, // CERT_LENGTH_MISMATCH
    176, // NO_CERTIFICATES_RETURNED
    180, // DANE_TLSA_BAD_CERTIFICATE
    184, // DANE_TLSA_BAD_CERTIFICATE_USAGE
    199, // PEER_DID_NOT_RETURN_A_CERTIFICATE
    220, // SIGNATURE_FOR_NON_SIGNING_CERTIFICATE
    238, // INVALID_CERTIFICATE_OR_ALG
    247, // UNKNOWN_CERTIFICATE_TYPE
    268, // X509_LIB
    269, // X509_VERIFICATION_SETUP_PROBLEMS
    304, // BAD_ECC_CERT
    318, // ECC_CERT_NOT_FOR_SIGNING
    330, // NO_GOST_CERTIFICATE_SENT_BY_PEER
    348, // BAD_CERTIFICATE
    377, // CERT_CB_ERROR
    383, // WRONG_CERTIFICATE_TYPE
    397, // CA_KEY_TOO_SMALL
    398, // CA_MD_TOO_WEAK
    399, // EE_KEY_TOO_SMALL
];

/// Received alerts about certificates: no_certificate, bad_certificate, unsupported_certificate,
/// certificate_revoked, certificate_expired, certificate_unknown, unknown_ca,
/// certificate_unobtainable, bad_certificate_status_response, bad_certificate_hash_value,
/// certificate_required.
const CERTIFICATE_ALERTS: &[u8] = &[41, 42, 43, 44, 45, 46, 48, 111, 113, 114, 116];

fn io_kind() -> impl Strategy<Value = io::ErrorKind> {
    use io::ErrorKind::*;
    prop::sample::select(vec![
        NotFound,
        PermissionDenied,
        ConnectionRefused,
        ConnectionReset,
        ConnectionAborted,
        NotConnected,
        AddrInUse,
        AddrNotAvailable,
        BrokenPipe,
        AlreadyExists,
        WouldBlock,
        InvalidInput,
        InvalidData,
        TimedOut,
        WriteZero,
        Interrupted,
        Unsupported,
        UnexpectedEof,
        OutOfMemory,
        Other,
    ])
}

/// Any signal, with libssl reasons weighted towards the ranges that mean something.
fn signal() -> impl Strategy<Value = Signal> {
    prop_oneof![
        Just(Signal::Eof),
        io_kind().prop_map(Signal::Io),
        any::<bool>().prop_map(|answered| Signal::Timeout { answered }),
        (0i32..500).prop_map(|reason| Signal::Ssl {
            library: LIB_SSL,
            reason
        }),
        (1000i32..1256).prop_map(|reason| Signal::Ssl {
            library: LIB_SSL,
            reason
        }),
        (any::<i32>(), any::<i32>()).prop_map(|(library, reason)| Signal::Ssl { library, reason }),
    ]
}

/// A signal about a certificate, from libssl, from libcrypto's X509 code, or an alert.
fn certificate_signal() -> impl Strategy<Value = Signal> {
    prop_oneof![
        prop::sample::select(CERTIFICATE_REASONS).prop_map(|reason| Signal::Ssl {
            library: LIB_SSL,
            reason
        }),
        prop::sample::select(CERTIFICATE_ALERTS).prop_map(|n| Signal::Ssl {
            library: LIB_SSL,
            reason: 1000 + i32::from(n)
        }),
        any::<i32>().prop_map(|reason| Signal::Ssl {
            library: LIB_X509,
            reason
        }),
    ]
}

fn is_fallback(v: Verdict) -> bool {
    matches!(v, Verdict::Intolerant | Verdict::LegacyServer)
}

proptest! {
    // No failure file: the suite is an integration test without a src/ of its own.
    #![proptest_config(ProptestConfig {
        cases: 4096,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_signal_maps_to_exactly_one_verdict_and_a_matching_outcome(s in signal()) {
        let (outcome, verdict) = classify(&s);
        // Deterministic: the same facts always give the same answer.
        prop_assert_eq!(classify(&s), (outcome.clone(), verdict));
        // A failure is never reported as a success or as a raced abandonment.
        prop_assert!(!matches!(outcome, Outcome::Ok | Outcome::Stalled { .. }), "{:?}", outcome);
        // Outcome and verdict agree.
        match &outcome {
            Outcome::Closed | Outcome::Reset => prop_assert_eq!(verdict, Verdict::Intolerant),
            Outcome::Timeout { answered: false } => prop_assert_eq!(verdict, Verdict::Intolerant),
            Outcome::Timeout { answered: true } => prop_assert_eq!(verdict, Verdict::Fatal),
            Outcome::Certificate { .. } => prop_assert_eq!(verdict, Verdict::Certificate),
            Outcome::NotTls | Outcome::Connect { .. } | Outcome::Other { .. } => {
                prop_assert_eq!(verdict, Verdict::Fatal)
            }
            Outcome::Refused { reason } => prop_assert!(
                matches!(verdict, Verdict::LegacyServer | Verdict::Downgrade),
                "refused:{} -> {:?}", reason, verdict
            ),
            Outcome::Alert(n) => {
                prop_assert_eq!(&s, &Signal::Ssl { library: LIB_SSL, reason: 1000 + i32::from(*n) });
                prop_assert!(
                    verdict != Verdict::LegacyServer && verdict != Verdict::Certificate,
                    "alert {} -> {:?}",
                    n,
                    verdict
                );
            }
            Outcome::Ok | Outcome::Stalled { .. } => unreachable!(),
        }
        if verdict == Verdict::Certificate {
            prop_assert!(
                matches!(outcome, Outcome::Certificate { .. }),
                "{:?}",
                outcome
            );
        }
    }

    #[test]
    fn no_certificate_signal_ever_leads_to_a_fallback(s in certificate_signal()) {
        let (outcome, verdict) = classify(&s);
        prop_assert!(!is_fallback(verdict), "{:?} -> {:?} / {:?}", s, outcome, verdict);
        prop_assert!(verdict != Verdict::Downgrade, "{:?}", s);
    }

    #[test]
    fn inappropriate_fallback_and_the_sentinel_always_mean_downgrade(
        which in any::<bool>(),
    ) {
        let reason = if which { 1086 } else { 373 };
        let (outcome, verdict) = classify(&Signal::Ssl { library: LIB_SSL, reason });
        prop_assert_eq!(verdict, Verdict::Downgrade);
        let expected = if which { Outcome::Alert(86) } else { Outcome::Refused { reason: 373 } };
        prop_assert_eq!(outcome, expected);
    }

    #[test]
    fn other_libraries_never_trigger_a_fallback_or_a_downgrade(
        library in any::<i32>().prop_filter("not libssl", |l| *l != LIB_SSL),
        reason in any::<i32>(),
    ) {
        let (_, verdict) = classify(&Signal::Ssl { library, reason });
        prop_assert_eq!(verdict, Verdict::Fatal);
    }

    #[test]
    fn only_the_design_table_alerts_are_intolerance(n in any::<u8>()) {
        let (outcome, verdict) = classify(&Signal::Ssl { library: LIB_SSL, reason: 1000 + i32::from(n) });
        prop_assert_eq!(outcome, Outcome::Alert(n));
        let expected = match n {
            70 | 40 | 47 | 50 | 80 | 20 => Verdict::Intolerant,
            86 => Verdict::Downgrade,
            _ => Verdict::Fatal,
        };
        prop_assert_eq!(verdict, expected, "alert {}", n);
    }
}
