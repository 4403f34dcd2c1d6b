//! The plain configuration a [`crate::FallbackLayer`] runs on: what
//! [`crate::FallbackLayerBuilder`] produces after checking the settings and building every
//! rung into its OpenSSL contexts, once. Nothing here changes after the build.

use std::sync::Arc;
use std::time::Duration;

use openssl::ssl::SslContext;

use crate::cache::DecisionStore;
use crate::policy::{most_specific, HostKey, HostPattern, Policy};
use crate::profile::{Profile, TlsVersion};
use crate::session::{ContextId, SessionCache};

/// A rung built into its OpenSSL contexts, once.
pub(crate) struct BuiltRung {
    pub(crate) profile: Profile,
    pub(crate) name: Arc<str>,
    pub(crate) plain: SslContext,
    /// The same context with TLS_FALLBACK_SCSV; `None` for pins (never a fallback).
    pub(crate) scsv: Option<SslContext>,
    /// Session-cache identities of `plain` and `scsv`.
    pub(crate) ids: (ContextId, ContextId),
}

impl BuiltRung {
    /// The lowest version a hello of this rung accepts for a host whose floor is `floor`.
    pub(crate) fn min_version(&self, floor: TlsVersion) -> TlsVersion {
        self.profile
            .min_version_opt()
            .map_or(floor, |m| m.max(floor))
    }
}

/// A pin with the rung built for it.
pub(crate) struct PinnedRung {
    pub(crate) pattern: HostPattern,
    pub(crate) rung: BuiltRung,
}

/// Everything a layer runs on, built once.
pub(crate) struct Config {
    pub(crate) rungs: Vec<BuiltRung>,
    pub(crate) pins: Vec<PinnedRung>,
    pub(crate) policy: Policy,
    pub(crate) store: Arc<dyn DecisionStore>,
    /// `store`, when it is the Redis store the builder opened: a layer rebuilt around the
    /// store gives it its own policy and TTL ([`crate::FallbackLayerBuilder::decisions_of`]).
    #[cfg(feature = "redis")]
    pub(crate) redis: Option<Arc<crate::cache::RedisStore>>,
    pub(crate) ttl: Duration,
    pub(crate) sessions: Option<SessionCache>,
    pub(crate) stall: Option<Duration>,
    pub(crate) single_flight: bool,
}

impl Config {
    /// The most specific pin covering this host (the first one given among equals).
    pub(crate) fn pin_for(&self, key: &HostKey) -> Option<&PinnedRung> {
        most_specific(self.pins.iter().map(|p| (&p.pattern, p)), key)
    }
}
