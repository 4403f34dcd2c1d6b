//! TLS session resumption: a client session cache keyed by host, port and the exact OpenSSL
//! context (rung and SCSV variant), so a session from a TLS 1.0 rung is never offered on a
//! TLS 1.3 rung, and repeat connections to a host resume instead of doing a full handshake.

use std::sync::{Arc, OnceLock};

use openssl::ex_data::Index;
use openssl::ssl::{Ssl, SslContextBuilder, SslRef, SslSession, SslSessionCacheMode};

use crate::policy::HostKey;

/// Which context a session belongs to: a ladder rung (plain or SCSV) or a pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ContextId {
    Rung { index: u8, scsv: bool },
    Pin(u16),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SessionKey {
    pub(crate) host: HostKey,
    pub(crate) context: ContextId,
}

/// The `Ssl` ex-data slot that tells the new-session callback whose session it got.
fn key_index() -> Option<Index<Ssl, SessionKey>> {
    static INDEX: OnceLock<Option<Index<Ssl, SessionKey>>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().ok())
}

/// Sessions by host and context; bounded, one (the newest) per key.
#[derive(Clone)]
pub(crate) struct SessionCache {
    sessions: Arc<quick_cache::sync::Cache<SessionKey, SslSession>>,
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCache")
            .field("entries", &self.sessions.len())
            .finish()
    }
}

impl SessionCache {
    pub(crate) fn new(capacity: u64) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX).max(1);
        SessionCache {
            sessions: Arc::new(quick_cache::sync::Cache::new(capacity)),
        }
    }

    /// Turns on client-side caching for a context being built: new sessions land here.
    pub(crate) fn install(&self, b: &mut SslContextBuilder) {
        if key_index().is_none() {
            return;
        }
        b.set_session_cache_mode(SslSessionCacheMode::CLIENT);
        let sessions = Arc::clone(&self.sessions);
        b.set_new_session_callback(move |ssl, session| {
            if let Some(key) = key_index().and_then(|i| ssl.ex_data(i)) {
                sessions.insert(key.clone(), session);
            }
        });
    }

    /// Tags the connection with its key and offers the cached session, if any.
    pub(crate) fn prepare(&self, ssl: &mut SslRef, key: SessionKey) {
        let Some(index) = key_index() else {
            return;
        };
        if let Some(session) = self.sessions.get(&key) {
            // SAFETY: `set_session` requires the session to come from the same SSL_CTX as `ssl`.
            // Sessions are stored under a key naming their context (rung index and SCSV variant,
            // or pin), this cache belongs to one connector whose contexts never change, and
            // `ssl` was created from the context that `key.context` names.
            #[allow(unsafe_code)]
            let set = unsafe { ssl.set_session(&session) };
            if set.is_err() {
                self.sessions.remove(&key);
            }
        }
        ssl.set_ex_data(index, key);
    }

    /// Drops the sessions of a host (after a downgrade signal or a changed decision).
    pub(crate) fn forget_host(&self, host: &HostKey) {
        self.sessions.retain(|k, _| k.host != *host);
    }
}
