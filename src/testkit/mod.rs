//! Intolerant servers for tests, the demo and benchmarks (feature `testkit`).
//!
//! A real OpenSSL HTTPS server ([`TlsServer`]) behind an intolerance emulator ([`Emulator`])
//! that records every ClientHello it saw, so tests assert on the wire. Everything listens on
//! 127.0.0.1 and stops when dropped.
//!
//! ```no_run
//! use tls_fallback::testkit::{Emulator, Rule, TlsServer, TestPki};
//! use tls_fallback::TlsVersion;
//! # async fn run() -> std::io::Result<()> {
//! let server = TlsServer::only(TlsVersion::Tls1_0).await?;
//! let gateway = Emulator::start(server.addr(), vec![Rule::close_above(TlsVersion::Tls1_0)]).await?;
//! // ... point a client trusting TestPki::shared().ca at gateway.url() ...
//! for seen in gateway.hellos() {
//!     println!("{:?} scsv={} len={}", seen.offered(), seen.scsv(), seen.len());
//! }
//! # Ok(()) }
//! ```

mod emulator;
mod misbehave;
mod pki;
#[cfg(feature = "redis")]
mod redis;
mod server;

pub use emulator::{Action, Emulator, Rule, SeenHello, Trigger};
pub use misbehave::{MisbehavingServer, Misbehaviour, SeenRequest};
pub use pki::{Identity, TestPki};
#[cfg(feature = "redis")]
pub use redis::RedisServer;
pub use server::{TlsServer, TlsServerBuilder};
