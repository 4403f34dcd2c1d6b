//! # tls-fallback
//!
//! Safe, per-host TLS fallback for hyper clients talking to fragile HTTPS gateways.
//!
//! Old payment gateways and APIs sit behind boxes that close, reset, hang or alert when they
//! see a modern ClientHello (TLS 1.3, a 256..511-byte hello, a long cipher list), and OpenSSL 3
//! refuses TLS 1.0/1.1 servers at its default security level. [`FallbackLayer`] wraps any TCP
//! connector (hyper-util's `HttpConnector`) and, per host:
//!
//! 1. starts at a pinned profile, the cached decision, or the top of the [`Ladder`];
//! 2. handshakes under a timeout; only the *handshake* is retried, so no HTTP request is ever
//!    sent twice;
//! 3. classifies a failure by numeric codes ([`classify`]): intolerance falls to the next rung,
//!    anything else (certificates, downgrade signals, TCP errors) stops;
//! 4. remembers the rung that worked ([`cache`]) and reports it in [`TlsInfo`].
//!
//! Safety: every fallback rung sends TLS_FALLBACK_SCSV, rungs below the floor (TLS 1.2) and
//! legacy crypto are only used for hosts allowed them, certificates are checked on every rung,
//! and a downgrade signal ends the attempt and forgets the host.
//!
//! ```no_run
//! use http_body_util::Empty;
//! use hyper::body::Bytes;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tls_fallback::{FallbackLayer, TlsVersion};
//! use tower_layer::Layer;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let layer = FallbackLayer::builder()
//!     .allow_legacy("*.legacy-gateway.example")
//!     .pin("api.old-bank.example:8443", TlsVersion::Tls1_0)
//!     .build()?;
//! let client = Client::builder(TokioExecutor::new())
//!     .build::<_, Empty<Bytes>>(layer.layer(FallbackLayer::http_connector()));
//! let res = client.get("https://eu.legacy-gateway.example/health".parse()?).await?;
//! println!("{:?}", res.extensions().get::<tls_fallback::TlsInfo>());
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
#![deny(unsafe_code)]

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod builder;
pub mod cache;
pub mod classify;
mod config;
mod connector;
mod error;
pub mod policy;
pub mod probe;
mod profile;
mod session;
mod stats;
mod stream;
#[cfg(feature = "testkit")]
pub mod testkit;
mod walk;
pub mod wire;

pub use builder::FallbackLayerBuilder;
#[doc(inline)]
pub use cache::{
    Decision, DecisionStore, FileStore, FleetFlight, FleetLease, MemoryStore, SharedStats,
};
#[cfg(feature = "redis")]
pub use cache::{RedisOptions, RedisStore};
#[doc(inline)]
pub use classify::{Outcome, Verdict};
pub use connector::{FallbackConnector, FallbackLayer};
pub use error::{Attempt, Attempts, Error, ErrorKind};
#[doc(inline)]
pub use policy::{HostKey, HostPattern, Pin};
pub use profile::{Ladder, ParseVersionError, Profile, TlsVersion};
pub use stats::{HostStats, Stats};
pub use stream::{MaybeHttpsStream, ReadWatch, TlsInfo, TlsStream};
