//! The known middlebox and server bug a failing test matches, in words a vendor recognises,
//! with what to fix and where the rule is written.
//!
//! Sources checked for these texts (not from memory alone):
//! - RFC 7685 section 4 gives, as its example, avoiding a ClientHello of 256..511 bytes
//!   "because at least one TLS implementation is known to hang the connection"; the RFC does
//!   not name the vendor. OpenSSL (`tls_construct_ctos_padding`) and BoringSSL pad "to
//!   workaround bugs in F5 terminators. See RFC 7685", which is where the F5 name comes from.
//! - RFC 8446 section 9.3 is "Protocol Invariants" (endpoints and middleboxes), appendix D is
//!   "Backward Compatibility" (D.1 and D.2: negotiating with older servers and clients).
//! - RFC 7507 is the SCSV (since obsoleted by RFC 8996, which deprecates TLS 1.0 and 1.1; it
//!   is still where the server's duty to answer `inappropriate_fallback` is written).
//! - RFC 8701 is GREASE: values reserved so that peers keep ignoring unknown values.
//! - X25519MLKEM768 (0x11EC, a 1216-byte client share: 1184-byte ML-KEM-768 key + 32) is
//!   defined by draft-ietf-tls-ecdhe-mlkem; some sources say it has since been published as an
//!   RFC, which we could not confirm, so the reference is the draft's datatracker page (it
//!   points to the RFC once there is one).
//! - tldr.fail collects the middleboxes that break on ClientHellos larger than one packet; we
//!   could only read it through articles that cite it, so its title here is a description.

use serde::Serialize;

use crate::probe::{TestId, TestOutcome};
use crate::wire::alert;

/// How a test failed, as [`known_bug`] needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailedHow {
    /// The connection was closed (FIN) without an answer.
    Closed,
    /// The connection was reset (RST).
    Reset,
    /// Nothing came back before the timeout.
    Timeout,
    /// A TLS alert of this number.
    Alert(u8),
    /// A ServerHello where a refusal was due (only the `fallback_scsv` test fails this way).
    ServerHello,
}

impl FailedHow {
    /// The failure form of a test outcome; `None` for outcomes that say nothing about the
    /// hello (connect errors, skipped tests, garbage, the connector test).
    pub fn of(outcome: &TestOutcome) -> Option<FailedHow> {
        match outcome {
            TestOutcome::Closed => Some(FailedHow::Closed),
            TestOutcome::Reset => Some(FailedHow::Reset),
            TestOutcome::Timeout => Some(FailedHow::Timeout),
            TestOutcome::Alert(n) => Some(FailedHow::Alert(*n)),
            TestOutcome::ServerHello(_) => Some(FailedHow::ServerHello),
            _ => None,
        }
    }

    /// "closed the connection (FIN)", "sent alert illegal_parameter (47)"...
    fn describe(self) -> String {
        match self {
            FailedHow::Closed => "closed the connection (FIN) without an answer".into(),
            FailedHow::Reset => "reset the connection (RST)".into(),
            FailedHow::Timeout => "sent nothing until the probe gave up (timeout)".into(),
            FailedHow::Alert(n) => format!("sent alert {} ({n})", alert::name(n)),
            FailedHow::ServerHello => "answered with a ServerHello".into(),
        }
    }
}

/// A document a finding rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Reference {
    /// What it is ("RFC 8446, section 9.3: Protocol Invariants").
    pub title: &'static str,
    /// Where to read it.
    pub url: &'static str,
}

/// The known bug a failure matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KnownBug {
    /// A name the vendor recognises ("F5 BIG-IP 256..511-byte ClientHello hang").
    pub name: &'static str,
    /// One paragraph: what the device does wrong, how it failed here, what to fix.
    pub explanation: String,
    /// Where the rule is written.
    pub references: Vec<Reference>,
}

/// RFC 7685 section 4: the padding extension and the 256..511-byte hang.
pub const RFC7685: Reference = Reference {
    title: "RFC 7685, section 4: ClientHello padding (the 256..511-byte hang)",
    url: "https://www.rfc-editor.org/rfc/rfc7685#section-4",
};
/// RFC 7507: TLS_FALLBACK_SCSV.
pub const RFC7507: Reference = Reference {
    title: "RFC 7507: TLS Fallback Signaling Cipher Suite Value (SCSV)",
    url: "https://www.rfc-editor.org/rfc/rfc7507",
};
/// RFC 8446 section 9.3: what every TLS endpoint and middlebox must tolerate.
pub const RFC8446_INVARIANTS: Reference = Reference {
    title: "RFC 8446, section 9.3: Protocol Invariants",
    url: "https://www.rfc-editor.org/rfc/rfc8446#section-9.3",
};
/// RFC 8446 appendix D: version negotiation with older peers.
pub const RFC8446_BACKWARD: Reference = Reference {
    title: "RFC 8446, appendix D: Backward Compatibility",
    url: "https://www.rfc-editor.org/rfc/rfc8446#appendix-D",
};
/// RFC 8701: GREASE, unknown values must be ignored.
pub const RFC8701: Reference = Reference {
    title: "RFC 8701: Applying GREASE to TLS Extensibility",
    url: "https://www.rfc-editor.org/rfc/rfc8701",
};
/// tldr.fail: ClientHellos larger than one packet (title is ours, see the module comment).
pub const TLDR_FAIL: Reference = Reference {
    title: "tldr.fail: middleboxes that break on ClientHellos larger than one packet",
    url: "https://tldr.fail/",
};
/// draft-ietf-tls-ecdhe-mlkem: the X25519MLKEM768 group.
pub const ECDHE_MLKEM: Reference = Reference {
    title: "draft-ietf-tls-ecdhe-mlkem: hybrid ECDHE-MLKEM key agreement for TLS 1.3",
    url: "https://datatracker.ietf.org/doc/draft-ietf-tls-ecdhe-mlkem/",
};

/// A bug as data: the explanation is `what`, then how it failed here, then `fix`.
struct Entry {
    name: &'static str,
    what: &'static str,
    fix: &'static str,
    references: &'static [Reference],
}

/// The known bug `test` failing as `how` matches, if any. Call it for a test that failed
/// where its baseline passed. `None` where the failure can be correct behaviour: TLS 1.0 and
/// 1.1 refused (deprecated, RFC 8996), a protocol_version or handshake_failure alert to a
/// hello offering only one version, an inconclusive SCSV answer, the baselines.
///
/// ```
/// use tls_fallback::probe::evidence::{known_bug, FailedHow};
/// use tls_fallback::probe::TestId;
///
/// let bug = known_bug(TestId::Long300, FailedHow::Timeout).unwrap();
/// assert!(bug.name.contains("256..511"));
/// assert!(bug.references.iter().any(|r| r.url.contains("rfc7685")));
/// assert!(known_bug(TestId::Version10, FailedHow::Alert(70)).is_none());
/// ```
pub fn known_bug(test: TestId, how: FailedHow) -> Option<KnownBug> {
    let entry = entry(test, how)?;
    Some(KnownBug {
        name: entry.name,
        explanation: format!(
            "{} Here the box {}. {}",
            entry.what,
            how.describe(),
            entry.fix
        ),
        references: entry.references.to_vec(),
    })
}

fn entry(test: TestId, how: FailedHow) -> Option<&'static Entry> {
    let refused = matches!(
        how,
        FailedHow::Alert(alert::PROTOCOL_VERSION | alert::HANDSHAKE_FAILURE)
    );
    let dropped = matches!(
        how,
        FailedHow::Closed | FailedHow::Reset | FailedHow::Timeout
    );
    match (test, how) {
        (_, FailedHow::ServerHello) if test != TestId::FallbackScsv => None,
        (TestId::Long300, _) => Some(&F5_WINDOW),
        (TestId::Long512, _) => Some(&LONG_512),
        (TestId::LongHello, _) => Some(&LONG_HELLO),
        (TestId::SplitHello, _) => Some(&SPLIT_HELLO),
        (TestId::PqKeyShare, _) => Some(&PQ_SHARE),
        (TestId::Version13, _) => Some(&TLS13_INTOLERANCE),
        (TestId::Version13Only, _) if !refused => Some(&TLS13_INTOLERANCE),
        (TestId::Version12, _) if dropped => Some(&TLS12_DROPPED),
        (TestId::Future0304 | TestId::Future0398 | TestId::Future0498, _) => Some(&FUTURE),
        (TestId::ExtensionUnknown, _) => Some(&UNKNOWN_EXTENSION),
        (TestId::CiphersMany, _) => Some(&MANY_CIPHERS),
        (TestId::FallbackScsv, FailedHow::ServerHello) => Some(&SCSV_IGNORED),
        (TestId::FallbackScsv, FailedHow::Alert(alert::INAPPROPRIATE_FALLBACK)) => {
            Some(&VERSION_BLOCKED)
        }
        (TestId::FallbackScsv, _) if dropped => Some(&SCSV_INTOLERANCE),
        _ => None,
    }
}

const F5_WINDOW: Entry = Entry {
    name: "F5 BIG-IP 256..511-byte ClientHello hang",
    what: "The device fails ClientHellos whose handshake message is 256 to 511 bytes long, while \
           shorter and longer ones pass. This is the bug RFC 7685's padding extension was made \
           to step around; OpenSSL and BoringSSL pad hellos out of this window for F5 \
           terminators.",
    fix: "The device must accept a ClientHello of any length; on F5 BIG-IP, move to a release \
          without this defect. Until then clients must pad their hellos to 512 bytes or more.",
    references: &[RFC7685, RFC8446_INVARIANTS],
};

const LONG_512: Entry = Entry {
    name: "ClientHello length intolerance (512 bytes and more)",
    what: "The device fails a ClientHello of 512 bytes or more, a size browsers have sent for \
           years (they pad to 512 bytes to avoid the F5 window).",
    fix: "A device that terminates TLS must behave as a compliant server and accept any \
          ClientHello that fits the protocol's limits (RFC 8446, section 9.3).",
    references: &[RFC8446_INVARIANTS, RFC7685],
};

const LONG_HELLO: Entry = Entry {
    name: "Large ClientHello intolerance (the post-quantum hello size, tldr.fail)",
    what: "The device fails a ClientHello of about 1,550 bytes: the size an X25519MLKEM768 \
           post-quantum key share gives, which Chrome, Firefox, Go and OpenSSL 3.5+ send by \
           default, and more than one TCP segment on a 1,500-byte MTU path.",
    fix: "The device must read the whole ClientHello, across TCP segments and TLS records, \
          before deciding anything, and must not assume it fits one packet.",
    references: &[TLDR_FAIL, RFC8446_INVARIANTS, ECDHE_MLKEM],
};

const SPLIT_HELLO: Entry = Entry {
    name: "ClientHello split over two TCP segments not reassembled (tldr.fail)",
    what: "The device fails a short ClientHello that arrives in two TCP segments, although the \
           same bytes in one segment pass: it inspects the first segment only. TCP is a byte \
           stream, so any hello may arrive in pieces, and every post-quantum hello does.",
    fix: "The device must reassemble the TCP stream before it parses the ClientHello.",
    references: &[TLDR_FAIL, RFC8446_INVARIANTS],
};

const PQ_SHARE: Entry = Entry {
    name: "X25519MLKEM768 key share intolerance (post-quantum, tldr.fail)",
    what: "The device fails a ClientHello offering an X25519MLKEM768 key share (group 0x11EC, \
           1216 bytes), the default of Chrome, Firefox, Go and OpenSSL 3.5+. Some devices hang \
           on the size, others reject the unknown group with illegal_parameter.",
    fix: "The device must ignore groups and key shares it does not know and accept a key_share \
          extension of this size (RFC 8446, section 9.3); or support the group.",
    references: &[TLDR_FAIL, ECDHE_MLKEM, RFC8446_INVARIANTS],
};

const TLS13_INTOLERANCE: Entry = Entry {
    name: "TLS 1.3 version intolerance",
    what: "The device fails a ClientHello offering TLS 1.3 in supported_versions. A server \
           without TLS 1.3 must answer with the highest version both sides offer, and a \
           middlebox must either pass the hello or terminate TLS correctly.",
    fix: "Fix the device's version negotiation (RFC 8446, appendix D) and let hellos with \
          supported_versions through (section 9.3).",
    references: &[RFC8446_BACKWARD, RFC8446_INVARIANTS],
};

const TLS12_DROPPED: Entry = Entry {
    name: "TLS 1.2 hello dropped (version intolerance)",
    what: "The device drops a plain TLS 1.2 ClientHello instead of answering it or refusing it \
           with a protocol_version alert.",
    fix: "A server that does not speak TLS 1.2 must say so with a protocol_version alert; a \
          middlebox must pass the hello (RFC 8446, appendix D and section 9.3).",
    references: &[RFC8446_BACKWARD, RFC8446_INVARIANTS],
};

const FUTURE: Entry = Entry {
    name: "Future-version intolerance (legacy_version above TLS 1.2)",
    what: "The device fails a ClientHello whose legacy_version is higher than any it knows \
           (0x0304, 0x0398 or 0x0498, without supported_versions). A server must answer such a \
           hello with the highest version it supports; this very intolerance is why TLS 1.3 \
           moved version negotiation into an extension.",
    fix: "Negotiate down to the highest supported version instead of failing (RFC 8446, \
          appendix D).",
    references: &[RFC8446_BACKWARD, RFC8446_INVARIANTS],
};

const UNKNOWN_EXTENSION: Entry = Entry {
    name: "Unknown-extension intolerance",
    what: "The device fails a ClientHello carrying one extension it does not know. Browsers send \
           such values on purpose (GREASE) so that this stays working.",
    fix: "Ignore unknown extensions (RFC 8446, section 9.3; RFC 8701).",
    references: &[RFC8446_INVARIANTS, RFC8701],
};

const MANY_CIPHERS: Entry = Entry {
    name: "Cipher-suite list intolerance (a long list with unknown values)",
    what: "The device fails a ClientHello listing about 150 cipher suites, some of them \
           unassigned values.",
    fix: "Ignore cipher suites it does not know and accept any list length the protocol allows \
          (RFC 8701; RFC 8446, section 9.3).",
    references: &[RFC8701, RFC8446_INVARIANTS],
};

const SCSV_IGNORED: Entry = Entry {
    name: "TLS_FALLBACK_SCSV not supported",
    what: "The server accepted a hello that offered less than its best version and carried \
           TLS_FALLBACK_SCSV, where RFC 7507 requires the inappropriate_fallback alert. Without \
           it, an attacker who breaks the first handshake can push clients that retry down to \
           an older version.",
    fix: "Turn on TLS_FALLBACK_SCSV handling in the server or the device that terminates TLS.",
    references: &[RFC7507],
};

const VERSION_BLOCKED: Entry = Entry {
    name: "Higher TLS version blocked in the path (the server refuses the downgrade)",
    what: "The server refused the fallback hello with inappropriate_fallback: it supports a \
           higher version than this hello offered, yet hellos offering that version failed. \
           Something between client and server blocks the higher version: a middlebox, or an \
           attacker.",
    fix: "Find the device in the path and make it pass or correctly terminate the higher \
          version (RFC 8446, section 9.3 and appendix D); do not pin clients lower unless the \
          path is trusted.",
    references: &[RFC7507, RFC8446_INVARIANTS, RFC8446_BACKWARD],
};

const SCSV_INTOLERANCE: Entry = Entry {
    name: "TLS_FALLBACK_SCSV intolerance",
    what: "The device fails a hello because it carries the signalling value TLS_FALLBACK_SCSV \
           (0x5600) among its cipher suites.",
    fix: "Handle the SCSV as RFC 7507 says, or at least ignore it as an unknown suite (RFC 8701).",
    references: &[RFC7507, RFC8701],
};
