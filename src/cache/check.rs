//! One gate for decisions that come from outside this process: the cache file and Redis. A value
//! read there may be stale, hand-edited, written by another version or configuration, or forged
//! by whoever can write the file or the Redis server. Each check is pure (no I/O, the clock
//! passed in) and says what is wrong and what was expected.
//!
//! Passing the gate makes a decision a *starting rung* and nothing more: SCSV, the floor, the
//! legacy gate and the certificate checks hold on every rung whatever a value says.

// Without the feature `redis` only the cache file uses the gate (its ladder checks are the
// lookup's): the parts for values from Redis are compiled but unused.
#![cfg_attr(not(feature = "redis"), allow(dead_code))]

use std::fmt;
use std::time::Duration;

use crate::cache::{Decision, FileStore};
use crate::policy::{HostKey, Policy};
use crate::profile::{Ladder, Profile};

/// The longest text value (host, profile name, reason): the cache file's limit.
const MAX_VALUE_BYTES: usize = FileStore::MAX_VALUE_BYTES;
/// The largest serialized decision accepted: its three text values at their limit and the
/// rest (a real one is about 200 bytes).
pub(crate) const MAX_DECISION_BYTES: usize = 3 * MAX_VALUE_BYTES + 256;
/// The longest host name accepted (DNS names stop at 253; IPv6 literals are shorter).
const MAX_HOST_BYTES: usize = 255;
/// How far in the future a date may be (clock skew between machines) before it is refused,
/// and before a decision counts as expired (a clock that jumped back).
pub(crate) const FUTURE_SLACK_MS: u64 = 5 * 60 * 1000;

/// Why a decision from outside was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// More bytes than any real decision.
    TooLarge(usize),
    /// A host, profile or reason longer than the cache file allows.
    LongValue(usize),
    /// Not a decision at all.
    Malformed(String),
    /// An empty, over-long or port-0 host.
    BadHost,
    /// Provisional entries are never written outside the process.
    Provisional,
    /// Older than the TTL: a normal end of life, not an attack.
    Expired,
    /// Learned more than five minutes in the future.
    FromTheFuture(u64),
    /// The ladder has no rung with this number and name.
    UnknownRung(u8, String),
    /// The policy does not allow this rung for this host.
    Forbidden(String),
}

impl Invalid {
    /// Whether the refusal is worth a WARN: everything but a plain expiry, and a rung this
    /// policy does not allow the host (instances whose legacy gate or floor differ share keys:
    /// one allowed a legacy rung writes what another may not use).
    pub(crate) fn is_suspicious(&self) -> bool {
        !matches!(self, Invalid::Expired | Invalid::Forbidden(_))
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::TooLarge(n) => write!(
                f,
                "{n} bytes or more, expected a JSON decision of at most {MAX_DECISION_BYTES} bytes"
            ),
            Invalid::LongValue(n) => write!(
                f,
                "a text value of {n} bytes, expected at most {MAX_VALUE_BYTES}"
            ),
            Invalid::Malformed(e) => write!(
                f,
                "not a decision ({e}); expected JSON with rung, profile, reason, learned_at_ms"
            ),
            Invalid::BadHost => write!(
                f,
                "expected a host name of 1 to {MAX_HOST_BYTES} bytes and a port above 0"
            ),
            Invalid::Provisional => {
                write!(f, "a provisional decision; only confirmed ones are shared")
            }
            Invalid::Expired => write!(f, "older than the cache TTL"),
            Invalid::FromTheFuture(ms) => write!(
                f,
                "learned at {ms} ms, more than five minutes ahead of this clock"
            ),
            Invalid::UnknownRung(rung, name) => write!(
                f,
                "rung {rung} {name:?} is not on this ladder (another version or configuration?)"
            ),
            Invalid::Forbidden(name) => write!(
                f,
                "rung {name:?} is below what the policy allows for this host (floor, legacy gate)"
            ),
        }
    }
}

/// Parses one serialized decision, refusing anything over [`MAX_DECISION_BYTES`] unread.
pub(crate) fn parse(bytes: &[u8]) -> Result<Decision, Invalid> {
    if bytes.len() > MAX_DECISION_BYTES {
        return Err(Invalid::TooLarge(bytes.len()));
    }
    serde_json::from_slice(bytes).map_err(|e| Invalid::Malformed(e.to_string()))
}

/// The checks that need no ladder: the host, the date, the lengths, not provisional. The cache
/// file loader runs these; [`Rules::check`] adds the ladder and the policy.
pub(crate) fn entry(
    key: &HostKey,
    d: &Decision,
    ttl: Duration,
    now_ms: u64,
) -> Result<(), Invalid> {
    if key.host.is_empty() || key.host.len() > MAX_HOST_BYTES || key.port == 0 {
        return Err(Invalid::BadHost);
    }
    let text = d.profile.len().max(d.reason.len());
    if text > MAX_VALUE_BYTES {
        return Err(Invalid::LongValue(text));
    }
    if d.provisional {
        return Err(Invalid::Provisional);
    }
    if d.learned_at_ms > now_ms.saturating_add(FUTURE_SLACK_MS) {
        return Err(Invalid::FromTheFuture(d.learned_at_ms));
    }
    if u128::from(now_ms.saturating_sub(d.learned_at_ms)) >= ttl.as_millis() {
        return Err(Invalid::Expired);
    }
    Ok(())
}

/// What a shared decision is checked against: this process's ladder, policy and TTL.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub(crate) rungs: Vec<Profile>,
    pub(crate) policy: Policy,
    pub(crate) ttl: Duration,
}

impl Rules {
    pub(crate) fn new(ladder: &Ladder, policy: &Policy, ttl: Duration) -> Self {
        Rules {
            rungs: ladder.iter().cloned().collect(),
            policy: policy.clone(),
            ttl,
        }
    }

    /// Every check: [`entry`], then the rung exists here under that name, and the policy
    /// allows it for this host.
    pub(crate) fn check(&self, key: &HostKey, d: &Decision, now_ms: u64) -> Result<(), Invalid> {
        entry(key, d, self.ttl, now_ms)?;
        let rung = self
            .rungs
            .get(usize::from(d.rung))
            .filter(|p| p.name() == &*d.profile)
            .ok_or_else(|| Invalid::UnknownRung(d.rung, d.profile.to_string()))?;
        if !self.policy.rung_allowed(key, rung) {
            return Err(Invalid::Forbidden(d.profile.to_string()));
        }
        Ok(())
    }

    /// Whether rung `rung` only reshapes the hello of a rung above it with the same version
    /// cap (`modern-compact` under `modern`): a fallback TLS_FALLBACK_SCSV cannot vouch for,
    /// so a decision for it from outside is only a provisional one here (see
    /// [`crate::cache::Decision::provisional`]).
    pub(crate) fn reshapes(&self, rung: u8) -> bool {
        let rung = usize::from(rung);
        self.rungs.get(rung).is_some_and(|p| {
            self.rungs[..rung]
                .iter()
                .any(|above| above.max_version() == p.max_version())
        })
    }

    /// A short, stable fingerprint of the ladder: what a decision's rung number and name mean
    /// (the hello sent). Instances with other ladders never share keys. The policy (floor,
    /// legacy gate) is not in it: it does not change what a decision says, only whether this
    /// instance may use it, which [`Rules::check`] asks of every value read, and the walk of
    /// every start; so adding an `allow_legacy` pattern splits no fleet.
    pub(crate) fn fingerprint(&self) -> String {
        let mut text = String::new();
        for p in &self.rungs {
            text.push_str(&format!("{p:?}\n"));
        }
        let digest = openssl::sha::sha256(text.as_bytes());
        digest[..6].iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::unix_ms;
    use crate::TlsVersion;

    fn decision(rung: u8, profile: &str) -> Decision {
        Decision::new(rung, profile.into(), "modern: closed")
    }

    fn rules(legacy: &[&str]) -> Rules {
        let policy = Policy {
            legacy_hosts: legacy.iter().map(|p| p.parse().unwrap()).collect(),
            ..Policy::default()
        };
        Rules::new(&Ladder::default(), &policy, Duration::from_secs(3600))
    }

    #[test]
    fn each_refusal_row() {
        let now = unix_ms();
        let key = HostKey::new("pay.example", 443);
        let aged = |ms: u64| {
            let mut d = decision(2, "tls12");
            d.learned_at_ms = ms;
            d
        };
        let rows: Vec<(&str, HostKey, Decision, Result<(), Invalid>)> = vec![
            ("a fallback", key.clone(), decision(2, "tls12"), Ok(())),
            ("healthy", key.clone(), decision(0, "modern"), Ok(())),
            (
                "empty host",
                HostKey::new("", 443),
                decision(2, "tls12"),
                Err(Invalid::BadHost),
            ),
            (
                "port 0",
                HostKey::new("a", 0),
                decision(2, "tls12"),
                Err(Invalid::BadHost),
            ),
            (
                "provisional",
                key.clone(),
                decision(1, "modern-compact").into_provisional(),
                Err(Invalid::Provisional),
            ),
            (
                "expired",
                key.clone(),
                aged(now - 3_600_001),
                Err(Invalid::Expired),
            ),
            ("a minute ahead", key.clone(), aged(now + 60_000), Ok(())),
            (
                "a year ahead",
                key.clone(),
                aged(now + 365 * 86_400_000),
                Err(Invalid::FromTheFuture(now + 365 * 86_400_000)),
            ),
            (
                "unknown rung",
                key.clone(),
                decision(9, "tls12"),
                Err(Invalid::UnknownRung(9, "tls12".into())),
            ),
            (
                "name of another rung",
                key.clone(),
                decision(2, "modern"),
                Err(Invalid::UnknownRung(2, "modern".into())),
            ),
            (
                "legacy rung for a host outside the gate",
                key.clone(),
                decision(5, "tls10-legacy"),
                Err(Invalid::Forbidden("tls10-legacy".into())),
            ),
            (
                "legacy rung for a host inside the gate",
                HostKey::new("old.example", 443),
                decision(5, "tls10-legacy"),
                Ok(()),
            ),
        ];
        let r = rules(&["old.example"]);
        for (name, key, d, want) in rows {
            assert_eq!(r.check(&key, &d, now), want, "{name}");
        }
    }

    #[test]
    fn oversized_and_garbage_values_are_refused_before_use() {
        let big = vec![b'x'; 10 * 1024 * 1024];
        assert_eq!(parse(&big).err(), Some(Invalid::TooLarge(big.len())));
        assert!(matches!(
            parse(b"\x00\xffnot json"),
            Err(Invalid::Malformed(_))
        ));
        let ok = serde_json::to_vec(&decision(2, "tls12")).unwrap();
        assert_eq!(parse(&ok).map(|d| d.rung), Ok(2));
    }

    #[test]
    fn a_rung_that_only_reshapes_the_hello_of_one_above_is_a_reshape() {
        // The default ladder: modern, modern-compact, tls12, tls12-compact, tls11-legacy,
        // tls10-legacy; and a rung past its end.
        let r = rules(&[]);
        let want = [false, true, false, true, false, false, false];
        for (rung, want) in want.iter().enumerate() {
            assert_eq!(r.reshapes(rung as u8), *want, "rung {rung}");
        }
    }

    #[test]
    fn the_fingerprint_follows_the_ladder_only_not_the_policy() {
        let base = rules(&[]).fingerprint();
        assert_eq!(base, rules(&[]).fingerprint(), "stable");
        assert_eq!(base, rules(&["old.example"]).fingerprint(), "legacy gate");
        let mut floor = rules(&[]);
        floor.policy.floor = TlsVersion::Tls1_0;
        assert_eq!(base, floor.fingerprint(), "floor");
        let short = Rules::new(
            &Ladder::new(vec![Profile::modern(), Profile::tls12()]),
            &Policy::default(),
            Duration::from_secs(3600),
        );
        assert_ne!(base, short.fingerprint());
    }
}
