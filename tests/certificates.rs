//! Certificate failures behind every intolerance mode: an unknown CA, an expired certificate
//! and a wrong host name, each reached after the ladder walked past a close, reset, alert 70,
//! hang (waited out or raced), the F5 length bug or cipher-count intolerance. The rule under
//! test: certificates are checked the same way on every rung, a certificate error is final, and
//! the walk costs exactly one hello per rung reached, none after the certificate error.

mod common;

use std::time::Duration;

use common::*;
use tls_fallback::testkit::{Action, Emulator, Identity, Rule, TestPki, TlsServer};
use tls_fallback::{ErrorKind, Ladder, Profile, TlsVersion};
use TlsVersion::*;

/// Which bad certificate the server presents.
#[derive(Clone, Copy, Debug)]
enum Cert {
    /// Signed by a CA the client does not trust.
    Untrusted,
    /// Expired yesterday.
    Expired,
    /// Valid, but for `wrong.example`.
    WrongName,
}

impl Cert {
    fn identity(self) -> Identity {
        let pki = TestPki::shared();
        match self {
            Cert::Untrusted => pki.untrusted.clone(),
            Cert::Expired => pki.expired.clone(),
            Cert::WrongName => pki.wrong_name.clone(),
        }
    }

    /// What OpenSSL's verification says (X509_verify_cert_error_string).
    fn detail(self) -> &'static str {
        match self {
            Cert::Untrusted => "unable to get local issuer certificate",
            Cert::Expired => "certificate has expired",
            Cert::WrongName => "hostname mismatch",
        }
    }
}

/// The intolerance in front of the server.
#[derive(Clone, Copy, Debug)]
enum Mode {
    CloseAbove12,
    ResetAbove12,
    Alert70Above12,
    HangAbove12,
    /// A hang with a stall time shorter than the handshake timeout: the next rung races it.
    HangAbove12Raced,
    CloseAbove10,
    ResetAbove10,
    Alert70Above10,
    HangAbove10,
    /// Hang on a 256..=511-byte hello, with a ladder whose top rung does not pad.
    F5,
    /// Close on more than 16 suites.
    CipherCount,
}

/// Hang modes wait out this timeout on every silent rung.
const HANG_TIMEOUT: Duration = Duration::from_secs(1);

struct Setup {
    /// What the server speaks.
    server: Option<TlsVersion>,
    rule: Rule,
    legacy: bool,
    ladder: Option<Ladder>,
    stall: Option<Duration>,
    /// The rungs tried, in order; the last one meets the certificate.
    rungs: &'static [&'static str],
    /// The outcome of every rung before the last.
    failed_as: &'static str,
    /// (offered max, SCSV) of every hello the emulator must see.
    wire: &'static [(TlsVersion, bool)],
}

const WALK_TO_12: &[&str] = &["modern", "modern-compact", "tls12"];
const WIRE_TO_12: &[(TlsVersion, bool)] = &[(Tls1_3, false), (Tls1_3, true), (Tls1_2, true)];
const WALK_TO_10: &[&str] = &[
    "modern",
    "modern-compact",
    "tls12",
    "tls12-compact",
    "tls11-legacy",
    "tls10-legacy",
];
const WIRE_TO_10: &[(TlsVersion, bool)] = &[
    (Tls1_3, false),
    (Tls1_3, true),
    (Tls1_2, true),
    (Tls1_2, true),
    (Tls1_1, true),
    (Tls1_0, true),
];

impl Mode {
    fn setup(self) -> Setup {
        let to_12 = |rule, failed_as| Setup {
            server: Some(Tls1_2),
            rule,
            legacy: false,
            ladder: None,
            stall: None,
            rungs: WALK_TO_12,
            failed_as,
            wire: WIRE_TO_12,
        };
        let to_10 = |rule, failed_as| Setup {
            server: Some(Tls1_0),
            rule,
            legacy: true,
            ladder: None,
            stall: None,
            rungs: WALK_TO_10,
            failed_as,
            wire: WIRE_TO_10,
        };
        match self {
            Mode::CloseAbove12 => to_12(Rule::close_above(Tls1_2), "closed"),
            Mode::ResetAbove12 => to_12(Rule::reset_above(Tls1_2), "reset"),
            Mode::Alert70Above12 => to_12(Rule::alert_above(Tls1_2, 70), "alert:70"),
            Mode::HangAbove12 => to_12(Rule::hang_above(Tls1_2), "timeout"),
            Mode::HangAbove12Raced => Setup {
                stall: Some(Duration::from_millis(200)),
                ..to_12(Rule::hang_above(Tls1_2), "stalled")
            },
            Mode::CloseAbove10 => to_10(Rule::close_above(Tls1_0), "closed"),
            Mode::ResetAbove10 => to_10(Rule::reset_above(Tls1_0), "reset"),
            Mode::Alert70Above10 => to_10(Rule::alert_above(Tls1_0, 70), "alert:70"),
            Mode::HangAbove10 => to_10(Rule::hang_above(Tls1_0), "timeout"),
            Mode::F5 => Setup {
                server: None,
                rule: Rule::f5_hang(),
                legacy: false,
                // Two classic groups keep the unpadded hello at ~300 bytes on OpenSSL 3.0 and
                // 3.5+ alike.
                ladder: Some(Ladder::new(vec![
                    Profile::new("modern-unpadded", Tls1_3)
                        .padding(false)
                        .groups("X25519:P-256"),
                    Profile::modern_compact(),
                ])),
                stall: None,
                rungs: &["modern-unpadded", "modern-compact"],
                failed_as: "timeout",
                wire: &[(Tls1_3, false), (Tls1_3, true)],
            },
            Mode::CipherCount => Setup {
                server: None,
                rule: Rule::close_if_ciphers_above(16),
                legacy: false,
                ladder: None,
                stall: None,
                rungs: &["modern", "modern-compact"],
                failed_as: "closed",
                wire: &[(Tls1_3, false), (Tls1_3, true)],
            },
        }
    }
}

async fn certificate_error_behind(cert: Cert, mode: Mode) {
    let setup = mode.setup();
    let mut server = TlsServer::builder().identity(cert.identity());
    if let Some(v) = setup.server {
        server = server.only(v);
    }
    let server = server.start().await.unwrap();
    let em = Emulator::start(server.addr(), vec![setup.rule.clone()])
        .await
        .unwrap();
    // Hang modes wait out the timeout; the stall time is above it unless the mode races.
    let mut b = builder()
        .handshake_timeout(HANG_TIMEOUT)
        .stall_timeout(setup.stall.or(Some(HANG_TIMEOUT * 2)));
    if setup.legacy {
        b = b.allow_legacy("localhost");
    }
    if let Some(ladder) = setup.ladder.clone() {
        b = b.ladder(ladder);
    }
    let layer = b.build().unwrap();
    let err = tls_error(&get(&client(&layer), &em.url()).await.unwrap_err());
    let ctx = format!("{cert:?} behind {mode:?}: {err}");
    assert_eq!(err.kind(), ErrorKind::Certificate, "{ctx}");
    assert!(err
        .to_string()
        .contains("no fallback is tried after a certificate error"));

    // One attempt per rung, in ladder order (a raced, abandoned rung is listed once too).
    let mut tried: Vec<(&str, String)> = err
        .attempts()
        .iter()
        .map(|a| (&*a.profile, a.outcome.short()))
        .collect();
    tried.sort_by_key(|(name, _)| setup.rungs.iter().position(|r| r == name));
    let expected: Vec<(&str, String)> = setup
        .rungs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let last = i + 1 == setup.rungs.len();
            let outcome = if last { "certificate" } else { setup.failed_as };
            (*r, outcome.to_string())
        })
        .collect();
    // A silent rung's successor of the same version is started together with the next
    // version; when the latter ends the walk first, the former is abandoned ("stalled").
    let hangs = matches!(mode, Mode::HangAbove12 | Mode::HangAbove10);
    let tried: Vec<(&str, String)> = tried
        .into_iter()
        .map(|(r, o)| match o.as_str() {
            "stalled" if hangs => (r, setup.failed_as.to_string()),
            _ => (r, o),
        })
        .collect();
    assert_eq!(tried, expected, "{ctx}");
    let abandoned: Vec<usize> = err
        .attempts()
        .iter()
        .filter(|a| a.outcome.short() == "stalled")
        .filter_map(|a| setup.rungs.iter().position(|r| *r == &*a.profile))
        .collect();
    let last = err
        .attempts()
        .iter()
        .find(|a| a.outcome.short() == "certificate")
        .unwrap();
    assert!(
        last.outcome.to_string().contains(cert.detail()),
        "{ctx}: {}",
        last.outcome
    );

    // On the wire: at most one hello per rung reached, exactly one per rung that finished (a
    // rung abandoned for a parallel one may not have sent its hello yet), and only the last
    // one reached the server.
    let seen = em.hellos();
    let wire: Vec<(TlsVersion, bool)> = seen
        .iter()
        // A connection with no hello: an abandoned rung's TCP connect the kernel completed.
        .filter_map(|h| Some((h.offered()?, h.scsv())))
        .collect();
    assert_wire(&wire, setup.wire, &abandoned, &ctx);
    let passed: Vec<_> = seen.iter().filter(|h| h.action == Action::Pass).collect();
    assert_eq!(passed.len(), 1, "{ctx}");
    assert_eq!(
        (passed[0].offered().unwrap(), passed[0].scsv()),
        *setup.wire.last().unwrap(),
        "{ctx}"
    );
    if matches!(mode, Mode::F5) {
        assert!(
            (256..=511).contains(&seen[0].len()),
            "{ctx}: {}",
            seen[0].len()
        );
        assert!(seen[1].len() < 256, "{ctx}: {}", seen[1].len());
    }
    assert_eq!(server.handshakes(), 0, "{ctx}");
    let stats = layer.stats();
    assert!(stats.hosts.is_empty(), "{ctx}: learned {:?}", stats.hosts);
    if matches!(mode, Mode::HangAbove12Raced) {
        // One race: at the stall, the compact TLS 1.3 rung and the TLS 1.2 rung start together.
        assert_eq!(stats.races, 1, "{ctx}");
    }

    // Nothing was learned: the next connection walks the same rungs again, no further.
    // An abandoned rung's hello may still be on its way into the emulator's records: let
    // them settle first, so it is not counted as the next walk's.
    settle(&em).await;
    em.clear();
    let again = tls_error(&get(&client(&layer), &em.url()).await.unwrap_err());
    assert_eq!(again.kind(), ErrorKind::Certificate, "{ctx}");
    let wire: Vec<(TlsVersion, bool)> = em
        .hellos()
        .iter()
        // A connection with no hello: an abandoned rung's TCP connect the kernel completed.
        .filter_map(|h| Some((h.offered()?, h.scsv())))
        .collect();
    let abandoned: Vec<usize> = again
        .attempts()
        .iter()
        .filter(|a| a.outcome.short() == "stalled")
        .filter_map(|a| setup.rungs.iter().position(|r| *r == &*a.profile))
        .collect();
    assert_wire(&wire, setup.wire, &abandoned, &ctx);
}

/// Waits (at most 1 s) until the emulator has recorded nothing new for 100 ms.
async fn settle(em: &Emulator) {
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    let mut seen = em.hellos().len();
    while std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = em.hellos().len();
        if now == seen {
            return;
        }
        seen = now;
    }
}

/// `seen` holds, in any order, each hello of `all` at most once, and every one whose rung
/// (index into `all`) is not in `abandoned`.
fn assert_wire(
    seen: &[(TlsVersion, bool)],
    all: &[(TlsVersion, bool)],
    abandoned: &[usize],
    ctx: &str,
) {
    let mut left: Vec<Option<(TlsVersion, bool)>> = all.iter().copied().map(Some).collect();
    for hello in seen {
        // Prefer a rung that must have been seen, so an optional one is not used up first.
        let slot = (0..left.len())
            .filter(|i| left[*i] == Some(*hello))
            .min_by_key(|i| abandoned.contains(i))
            .unwrap_or_else(|| panic!("{ctx}: unexpected or repeated hello {hello:?} in {seen:?}"));
        left[slot] = None;
    }
    for (i, missing) in left.iter().enumerate() {
        assert!(
            missing.is_none() || abandoned.contains(&i),
            "{ctx}: no hello for rung {i} ({missing:?}) in {seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_ca_behind_close_above_tls12_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::Untrusted, Mode::CloseAbove12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_ca_behind_reset_above_tls12_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::Untrusted, Mode::ResetAbove12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_ca_behind_alert70_above_tls12_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::Untrusted, Mode::Alert70Above12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_ca_behind_hang_above_tls12_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::Untrusted, Mode::HangAbove12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_ca_behind_hang_above_tls12_raced_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::Untrusted, Mode::HangAbove12Raced).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_ca_behind_close_above_tls10_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::Untrusted, Mode::CloseAbove10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_ca_behind_reset_above_tls10_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::Untrusted, Mode::ResetAbove10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_ca_behind_alert70_above_tls10_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::Untrusted, Mode::Alert70Above10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_ca_behind_hang_above_tls10_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::Untrusted, Mode::HangAbove10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_ca_behind_f5_length_hang_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::Untrusted, Mode::F5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_ca_behind_cipher_count_intolerance_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::Untrusted, Mode::CipherCount).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_behind_close_above_tls12_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::Expired, Mode::CloseAbove12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_behind_reset_above_tls12_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::Expired, Mode::ResetAbove12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_behind_alert70_above_tls12_fails_as_certificate_with_no_rung_after_it()
{
    certificate_error_behind(Cert::Expired, Mode::Alert70Above12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_behind_hang_above_tls12_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::Expired, Mode::HangAbove12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_behind_hang_above_tls12_raced_fails_as_certificate_with_no_rung_after_it(
) {
    certificate_error_behind(Cert::Expired, Mode::HangAbove12Raced).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_behind_close_above_tls10_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::Expired, Mode::CloseAbove10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_behind_reset_above_tls10_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::Expired, Mode::ResetAbove10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_behind_alert70_above_tls10_fails_as_certificate_with_no_rung_after_it()
{
    certificate_error_behind(Cert::Expired, Mode::Alert70Above10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_behind_hang_above_tls10_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::Expired, Mode::HangAbove10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_behind_f5_length_hang_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::Expired, Mode::F5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_behind_cipher_count_intolerance_fails_as_certificate_with_no_rung_after_it(
) {
    certificate_error_behind(Cert::Expired, Mode::CipherCount).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_hostname_behind_close_above_tls12_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::WrongName, Mode::CloseAbove12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_hostname_behind_reset_above_tls12_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::WrongName, Mode::ResetAbove12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_hostname_behind_alert70_above_tls12_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::WrongName, Mode::Alert70Above12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_hostname_behind_hang_above_tls12_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::WrongName, Mode::HangAbove12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_hostname_behind_hang_above_tls12_raced_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::WrongName, Mode::HangAbove12Raced).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_hostname_behind_close_above_tls10_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::WrongName, Mode::CloseAbove10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_hostname_behind_reset_above_tls10_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::WrongName, Mode::ResetAbove10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_hostname_behind_alert70_above_tls10_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::WrongName, Mode::Alert70Above10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_hostname_behind_hang_above_tls10_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::WrongName, Mode::HangAbove10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_hostname_behind_f5_length_hang_fails_as_certificate_with_no_rung_after_it() {
    certificate_error_behind(Cert::WrongName, Mode::F5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_hostname_behind_cipher_count_intolerance_fails_as_certificate_with_no_rung_after_it()
{
    certificate_error_behind(Cert::WrongName, Mode::CipherCount).await;
}

/// A TLS 1.0-only server at security level 0 presenting a 512-bit RSA key, behind a box that
/// closes every hello above TLS 1.0: the walk reaches the legacy rung (security level 0 for
/// the TLS crypto), and the certificate is still checked at OpenSSL's default level there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_rung_still_refuses_a_certificate_the_modern_rungs_would_refuse() {
    let weak = TestPki::shared().leaf_with_key_bits(512).unwrap();
    let server = TlsServer::builder()
        .only(Tls1_0)
        .security_level(0)
        .identity(weak)
        .start()
        .await
        .unwrap();
    let em = Emulator::start(server.addr(), vec![Rule::close_above(Tls1_0)])
        .await
        .unwrap();
    let layer = builder().allow_legacy("localhost").build().unwrap();
    let err = tls_error(&get(&client(&layer), &em.url()).await.unwrap_err());
    assert_eq!(err.kind(), ErrorKind::Certificate, "{err}");
    let last = err.attempts().last().unwrap();
    assert_eq!(&*last.profile, "tls10-legacy");
    assert!(
        last.outcome.to_string().contains("too small") || last.outcome.to_string().contains("weak"),
        "{}",
        last.outcome
    );
    assert_eq!(server.handshakes(), 0);
    assert_eq!(em.count(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_requires_a_client_certificate_is_not_mistaken_for_an_intolerant_one() {
    let server = TlsServer::builder()
        .only(Tls1_2)
        .require_client_certificate(true)
        .start()
        .await
        .unwrap();
    let em = Emulator::start(server.addr(), vec![]).await.unwrap();
    // Without a client certificate: TLS 1.2 ends in alert 40 after the ServerHello, which is
    // final (one hello), with a hint.
    let layer = builder().allow_legacy("*").build().unwrap();
    let err = tls_error(&get(&client(&layer), &em.url()).await.unwrap_err());
    assert_eq!(err.kind(), ErrorKind::Handshake, "{err}");
    assert_eq!(em.count(), 1, "{err}");
    assert!(err.to_string().contains("client certificate"), "{err}");
    assert!(layer.stats().hosts.is_empty());

    // With one, on the same rung.
    em.clear();
    let pki = TestPki::shared();
    let layer = builder()
        .client_identity(vec![pki.client.cert.clone()], pki.client.key.clone())
        .build()
        .unwrap();
    let (res, _) = get(&client(&layer), &em.url()).await.unwrap();
    assert_eq!(tls(&res).version, Tls1_2);
    assert_eq!(tls(&res).handshakes(), 1);
    assert_eq!(server.handshakes(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_identity_from_pem_works_and_a_mismatched_key_is_a_config_error() {
    let pki = TestPki::shared();
    let server = TlsServer::builder()
        .require_client_certificate(true)
        .start()
        .await
        .unwrap();
    let layer = builder()
        .client_identity_pem(
            pki.client.cert.to_pem().unwrap(),
            pki.client.key.private_key_to_pem_pkcs8().unwrap(),
        )
        .build()
        .unwrap();
    let (res, _) = get(&client(&layer), &server.url()).await.unwrap();
    assert_eq!(res.status(), 200);

    let other_key = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap())
        .unwrap()
        .private_key_to_pem_pkcs8()
        .unwrap();
    let err = builder()
        .client_identity_pem(pki.client.cert.to_pem().unwrap(), other_key)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadInput);
    assert!(err.to_string().contains("does not match"), "{err}");
    let err = builder()
        .client_identity_pem(b"not pem".to_vec(), b"nor this".to_vec())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("PEM"), "{err}");
    let err = builder()
        .client_identity_pem(
            b"not pem".to_vec(),
            pki.client.key.private_key_to_pem_pkcs8().unwrap(),
        )
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("no (PEM) certificate"), "{err}");
    // The key never shows in Debug output.
    let b = builder().client_identity_pem(pki.client.cert.to_pem().unwrap(), b"SECRET".to_vec());
    assert!(!format!("{b:?}").contains("SECRET"));
}

/// `distrust`: a CA the layer's roots hold (as the system store holds an egress proxy's
/// interception CA that apps trust) still vouches for no server: the chain is refused as a
/// certificate error, with no rung after it; without `distrust`, the same server is reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distrusted_ca_vouches_for_no_server_whatever_the_roots_hold() {
    let server = TlsServer::builder().start().await.unwrap();
    let url = format!("https://localhost:{}/", server.addr().port());
    let trusting = builder().build().unwrap();
    let (res, _) = get(&client(&trusting), &url).await.unwrap();
    assert_eq!(res.status(), 200);
    let distrusting = builder()
        .distrust(TestPki::shared().ca.cert.clone())
        .build()
        .unwrap();
    let err = tls_error(&get(&client(&distrusting), &url).await.unwrap_err());
    assert_eq!(err.kind(), ErrorKind::Certificate, "{err}");
    assert_eq!(err.attempts().len(), 1, "no fallback after it: {err}");
}

/// An encrypted client key is refused with what to do; OpenSSL never asks for a passphrase.
#[test]
fn an_encrypted_client_key_is_refused_without_a_prompt() {
    use openssl::symm::Cipher;
    let key = &TestPki::shared().client.key;
    let pem = key
        .private_key_to_pem_pkcs8_passphrase(Cipher::aes_128_cbc(), b"secret")
        .unwrap();
    let e = tls_fallback::private_key_from_pem(&pem).err().unwrap();
    assert!(e.contains("unencrypted"), "{e}");
    let plain = key.private_key_to_pem_pkcs8().unwrap();
    assert!(tls_fallback::private_key_from_pem(&plain).is_ok());
    assert!(tls_fallback::private_key_from_pem(b"garbage").is_err());
}
