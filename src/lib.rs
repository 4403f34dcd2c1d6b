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
//! Most programs want `Client` (feature `client`, on by default): the layer inside
//! hyper-util's client, with one timeout for the whole request, a body cap, JSON and form
//! bodies, and errors that carry every attempt and a remedy. Programs with their own hyper
//! stack use the layer directly:
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
//! // How the connection was made, and whether this request reused it:
//! println!("{:?}", res.extensions().get::<tls_fallback::TlsInfo>());
//! println!("{:?}", res.extensions().get::<tls_fallback::ConnectionUse>());
//! # Ok(()) }
//! ```
//!
//! hyper's error says only `client error (Connect)`; [`Error::find`] finds ours in it.
#![warn(missing_docs)]
#![deny(unsafe_code)]

/// The README's examples, compiled as doctests (the Quick start uses `Client`).
#[cfg(all(doctest, feature = "client"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The production guide's examples, compiled as doctests.
#[cfg(all(doctest, feature = "client"))]
#[doc = include_str!("../docs/PRODUCTION.md")]
struct ProductionDoctests;

mod builder;
pub mod cache;
pub mod classify;
#[cfg(feature = "client")]
mod client;
mod config;
mod connector;
mod error;
mod files;
mod find;
#[cfg(feature = "outbound")]
pub mod outbound;
pub mod policy;
pub mod probe;
mod profile;
mod redact;
mod session;
mod stats;
mod stream;
#[cfg(feature = "testkit")]
pub mod testkit;
mod walk;
pub mod wire;

pub use builder::{private_key_from_pem, FallbackLayerBuilder};
#[doc(inline)]
pub use cache::{
    Decision, DecisionSource, DecisionStore, FileStore, FleetFlight, FleetLease, MemoryStore,
    SharedStats,
};
#[cfg(feature = "redis")]
pub use cache::{RedisOptions, RedisStore};
#[doc(inline)]
pub use classify::{Outcome, Verdict};
#[cfg(feature = "client")]
pub use client::{Client, ClientBuilder, RequestBuilder, RequestError, Response};
pub use connector::{FallbackConnector, FallbackLayer};
pub use error::{Attempt, Attempts, Error, ErrorKind};
pub use files::read_bounded as read_bounded_file;
pub use files::replace_private as write_private_file;
pub use files::replace_public as write_public_file;
pub use find::{error_chain, ErrorChain};
#[doc(inline)]
pub use policy::{HostKey, HostPattern, PatternHost, Pin};
pub use profile::{Ladder, ParseVersionError, Profile, TlsVersion};
pub use redact::url as redact_url;
pub use stats::{metric_names, HostStats, Stats};
pub use stream::{ConnectionUse, MaybeHttpsStream, ReadWatch, TlsInfo, TlsStream};
