//! The named rules: each constructor is one kind of broken box.

use std::time::Duration;

use super::{Action, Rule, Trigger};
use crate::wire::ClientHelloInfo;
use crate::TlsVersion;

impl Rule {
    /// Close (FIN) when a hello offers more than `v`.
    pub fn close_above(v: TlsVersion) -> Rule {
        Rule {
            trigger: Trigger::VersionAbove(v),
            action: Action::Close,
        }
    }
    /// Reset (RST) when a hello offers more than `v`.
    pub fn reset_above(v: TlsVersion) -> Rule {
        Rule {
            trigger: Trigger::VersionAbove(v),
            action: Action::Reset,
        }
    }
    /// Hang when a hello offers more than `v`.
    pub fn hang_above(v: TlsVersion) -> Rule {
        Rule {
            trigger: Trigger::VersionAbove(v),
            action: Action::Hang,
        }
    }
    /// Send alert `n` when a hello offers more than `v`.
    pub fn alert_above(v: TlsVersion, n: u8) -> Rule {
        Rule {
            trigger: Trigger::VersionAbove(v),
            action: Action::Alert(n),
        }
    }
    /// The old F5 BIG-IP bug: hang on a hello of 256..=511 bytes.
    pub fn f5_hang() -> Rule {
        Rule {
            trigger: Trigger::LengthIn(256, 511),
            action: Action::Hang,
        }
    }
    /// Close when a hello lists more than `n` suites.
    pub fn close_if_ciphers_above(n: usize) -> Rule {
        Rule {
            trigger: Trigger::CiphersAbove(n),
            action: Action::Close,
        }
    }
    /// Close when a hello is longer than `n` bytes.
    pub fn close_if_longer_than(n: usize) -> Rule {
        Rule {
            trigger: Trigger::LongerThan(n),
            action: Action::Close,
        }
    }
    /// Hang when a hello is longer than `n` bytes: the most common post-quantum breakage, a box
    /// that swallows a ClientHello spanning two TCP segments.
    pub fn hang_if_longer_than(n: usize) -> Rule {
        Rule {
            trigger: Trigger::LongerThan(n),
            action: Action::Hang,
        }
    }
    /// Reset (RST) when a hello is longer than `n` bytes.
    pub fn reset_if_longer_than(n: usize) -> Rule {
        Rule {
            trigger: Trigger::LongerThan(n),
            action: Action::Reset,
        }
    }
    /// Send fatal alert `alert` (e.g. 47 `illegal_parameter`, as some firewalls do) when a
    /// hello is longer than `n` bytes.
    pub fn alert_if_longer_than(n: usize, alert: u8) -> Rule {
        Rule {
            trigger: Trigger::LongerThan(n),
            action: Action::Alert(alert),
        }
    }
    /// Hang when a hello did not arrive whole in the first read ([`Trigger::Fragmented`]): a
    /// box that cannot reassemble a ClientHello, whatever its size.
    pub fn hang_if_fragmented() -> Rule {
        Rule {
            trigger: Trigger::Fragmented,
            action: Action::Hang,
        }
    }
    /// Reset (RST) when a hello did not arrive whole in the first read.
    pub fn reset_if_fragmented() -> Rule {
        Rule {
            trigger: Trigger::Fragmented,
            action: Action::Reset,
        }
    }
    /// Hang when a hello carries a key share of `group` (e.g. 0x11ec, X25519MLKEM768): a box
    /// that chokes on the post-quantum share itself rather than on the size.
    pub fn hang_if_key_share(group: u16) -> Rule {
        Rule {
            trigger: Trigger::KeyShareGroup(group),
            action: Action::Hang,
        }
    }
    /// Send fatal alert `alert` when a hello carries a key share of `group`.
    pub fn alert_if_key_share(group: u16, alert: u8) -> Rule {
        Rule {
            trigger: Trigger::KeyShareGroup(group),
            action: Action::Alert(alert),
        }
    }
    /// Reset the first `k` connections, whatever they offer.
    pub fn reset_first(k: usize) -> Rule {
        Rule {
            trigger: Trigger::FirstConnections(k),
            action: Action::Reset,
        }
    }
    /// Hold every hello this long before forwarding it: a slow server.
    pub fn delay(d: Duration) -> Rule {
        Rule {
            trigger: Trigger::Always,
            action: Action::DelayMs(d.as_millis() as u64),
        }
    }
    /// Answer every hello with garbage.
    pub fn garbage() -> Rule {
        Rule {
            trigger: Trigger::Always,
            action: Action::Garbage,
        }
    }
    /// Strip `supported_versions` from every hello and forward it ([`Action::StripTls13`]).
    pub fn strip_tls13() -> Rule {
        Rule {
            trigger: Trigger::Always,
            action: Action::StripTls13,
        }
    }

    /// Strip TLS_FALLBACK_SCSV from every hello and forward it ([`Action::StripScsv`]).
    pub fn strip_scsv() -> Rule {
        Rule {
            trigger: Trigger::Always,
            action: Action::StripScsv,
        }
    }

    /// Whether the rule applies to `hello`, which arrived in `reads` reads on connection `conn`.
    pub(super) fn fires(&self, hello: &ClientHelloInfo, conn: usize, reads: usize) -> bool {
        match self.trigger {
            Trigger::Always => true,
            Trigger::VersionAbove(v) => hello.offered_max > v.wire(),
            Trigger::LengthIn(lo, hi) => (lo..=hi).contains(&hello.hello_len),
            Trigger::CiphersAbove(n) => hello.cipher_count > n,
            Trigger::LongerThan(n) => hello.hello_len > n,
            Trigger::FirstConnections(k) => conn < k,
            Trigger::Fragmented => reads > 1,
            Trigger::KeyShareGroup(group) => hello.has_key_share(group),
        }
    }
}
