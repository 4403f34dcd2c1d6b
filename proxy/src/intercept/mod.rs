//! `CONNECT` for apps that keep their `https://` URLs (`HTTPS_PROXY`): for a host in the
//! allow-list, the proxy answers 200, accepts the app's TLS with a leaf certificate minted
//! from the local CA ([`ca`]: name-constrained to the allowed hosts), and sends each request
//! inside through the fallback layer exactly as forward mode does (certificate checks on the
//! real upstream, SCSV, floor, legacy gate, headers, access log, metrics). A `--tunnel` host
//! gets a plain byte tunnel instead ([`tunnel`]); any other host, 403: the proxy is never an
//! open tunnel.
//!
//! What `CONNECT` hands over after its 200 ([`Pending`]) is kept in the app connection
//! (`service::Conn`) and taken by its worker when hyper gives the socket back
//! (`server::workers`), which then serves the requests inside on the same worker, in the same
//! connection slot.

pub mod ca;
pub mod constraints;
pub mod init;
pub mod tunnel;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{AlpnError, Ssl, SslAcceptor, SslMethod};
use tls_fallback::{HostPattern, PatternHost};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_openssl::SslStream;
use tracing::warn;

use crate::route::Dest;
use crate::runtime::Runtime;
use crate::service::answer::refusal;
use crate::service::{Conn, ProxyBody};
use ca::Ca;

/// What a `CONNECT` answered 200 hands to its connection's worker.
pub struct Pending {
    /// The app's socket, once hyper has sent the 200.
    pub on: hyper::upgrade::OnUpgrade,
    /// What to run on it.
    pub then: Then,
}

/// What runs on a `CONNECT`ed socket.
pub enum Then {
    /// Accept the app's TLS with this leaf, then serve its requests to `dest`.
    Intercept {
        /// The upstream.
        dest: Arc<Dest>,
        /// The leaf for it.
        leaf: Arc<Leaf>,
    },
    /// Relay bytes to this upstream connection.
    Tunnel {
        /// Where it goes.
        dest: Arc<Dest>,
        /// The connection, already open.
        upstream: tokio::net::TcpStream,
    },
}

/// A minted leaf, ready to accept apps' TLS for one host.
pub struct Leaf {
    /// The acceptor with the leaf and its key (TLS 1.2 and 1.3, ALPN `http/1.1`).
    pub acceptor: SslAcceptor,
    minted: Instant,
}

/// The interception CA and the leaves minted from it (per host, renewed after
/// [`ca::LEAF_RENEW`]); a host the CA cannot certify is refused for [`REFUSAL_KEPT`] without
/// minting again.
pub struct Interceptor {
    dir: PathBuf,
    ca: Ca,
    /// One key for every leaf of this run (as mitmproxy does): minting costs a signature only.
    leaf_key: PKey<Private>,
    leaves: quick_cache::sync::Cache<String, Minted>,
}

/// A host's leaf, or why the CA cannot certify it, and when.
#[derive(Clone)]
enum Minted {
    Leaf(Arc<Leaf>),
    Refused(Arc<str>, Instant),
}

/// The most hosts whose leaves are kept (a `*.suffix` allow pattern has no bound of its own).
const MAX_LEAVES: usize = 1024;

/// How long a host the CA cannot certify is refused without minting again.
pub const REFUSAL_KEPT: Duration = Duration::from_secs(60);

impl Interceptor {
    /// Loads the CA in `dir` ([`Ca::load`]) and warns about allowed hosts it cannot certify
    /// (a `CONNECT` to them will be refused).
    pub fn load(dir: &Path, allow: &[HostPattern]) -> Result<Interceptor, String> {
        let ca = Ca::load(dir)?;
        let leaf_key = ca::new_key().map_err(|e| format!("cannot make a leaf key: {e}"))?;
        let me = Interceptor {
            dir: dir.to_path_buf(),
            ca,
            leaf_key,
            leaves: quick_cache::sync::Cache::new(MAX_LEAVES),
        };
        for p in allow {
            let probe = match p.host() {
                PatternHost::Any => {
                    warn!(
                        "--allow {p} lets apps CONNECT to any host, but the interception CA \
                         can certify only the hosts it was made for"
                    );
                    continue;
                }
                PatternHost::Exact(h) => h.to_string(),
                PatternHost::Ip(ip) => ip.to_string(),
                PatternHost::Suffix(s) => format!("a.{s}"),
            };
            if let Err(e) = me.mint(&probe) {
                warn!("--allow {p}: {e}");
            }
        }
        Ok(me)
    }

    /// The root certificate (what apps trust): the upstream layers distrust it.
    pub fn root(&self) -> &openssl::x509::X509 {
        &self.ca.root
    }

    /// The leaf for `host`: the one minted less than [`ca::LEAF_RENEW`] ago, or a new one;
    /// an error saying how to re-create the CA when its constraints leave `host` out (and
    /// whether it was just found, or kept from a refusal less than [`REFUSAL_KEPT`] ago).
    pub fn leaf(&self, host: &str) -> Result<Arc<Leaf>, (Arc<str>, bool)> {
        match self.leaves.get(host) {
            Some(Minted::Leaf(l)) if l.minted.elapsed() < ca::LEAF_RENEW => return Ok(l),
            Some(Minted::Refused(why, at)) if at.elapsed() < REFUSAL_KEPT => {
                return Err((why, false))
            }
            _ => {}
        }
        match self.mint(host) {
            Ok(leaf) => {
                self.leaves
                    .insert(host.to_string(), Minted::Leaf(Arc::clone(&leaf)));
                Ok(leaf)
            }
            Err(why) => {
                let why: Arc<str> = why.into();
                let refused = Minted::Refused(Arc::clone(&why), Instant::now());
                self.leaves.insert(host.to_string(), refused);
                Err((why, true))
            }
        }
    }

    fn mint(&self, host: &str) -> Result<Arc<Leaf>, String> {
        let fail = |e: openssl::error::ErrorStack| format!("cannot mint a certificate: {e}");
        let ca = &self.ca;
        let cert =
            ca::new_leaf(&ca.issuer, &self.leaf_key, host, SystemTime::now()).map_err(fail)?;
        ca::verify(&ca.root, &ca.issuer.cert, &cert).map_err(|why| {
            format!(
                "the interception CA ({}) cannot certify {host} ({why}): it was made for other \
                 hosts; make a new one that names it (tls-fallback proxy ca init --dir {} \
                 --force --allow {host} ...) and have the apps trust the new {}",
                self.dir.join(ca::CA_FILE).display(),
                self.dir.display(),
                ca::CA_FILE
            )
        })?;
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).map_err(fail)?;
        b.set_private_key(&self.leaf_key).map_err(fail)?;
        b.set_certificate(&cert).map_err(fail)?;
        b.add_extra_chain_cert(ca.issuer.cert.clone())
            .map_err(fail)?;
        b.check_private_key().map_err(fail)?;
        // HTTP/1.1 only: an app that offers only h2 gets no ALPN answer and speaks HTTP/1.1.
        b.set_alpn_select_callback(|_, offered| {
            openssl::ssl::select_next_proto(b"\x08http/1.1", offered).ok_or(AlpnError::NOACK)
        });
        Ok(Arc::new(Leaf {
            acceptor: b.build(),
            minted: Instant::now(),
        }))
    }
}

/// `CONNECT` to an allowed host: the leaf, then 200 (the socket is taken after it is sent);
/// 403 with the reason when the CA cannot certify the host.
pub fn open(
    conn: &Conn,
    rt: &Runtime,
    req: &mut Request<Incoming>,
    dest: &Arc<Dest>,
) -> Response<ProxyBody> {
    let Some(interceptor) = rt.intercept.as_ref() else {
        return refusal(
            StatusCode::FORBIDDEN,
            "interception is not configured (--intercept-ca)",
        );
    };
    match interceptor.leaf(&dest.host) {
        Ok(leaf) => {
            let then = Then::Intercept {
                dest: Arc::clone(dest),
                leaf,
            };
            conn.hand_over(Pending {
                on: hyper::upgrade::on(req),
                then,
            });
            established()
        }
        Err((why, fresh)) => {
            if fresh {
                warn!("CONNECT {}: {why}", dest.authority);
            }
            refusal(StatusCode::FORBIDDEN, &why)
        }
    }
}

/// The 200 that opens a tunnel (no body).
pub fn established() -> Response<ProxyBody> {
    let mut res = Response::new(ProxyBody::Right(Default::default()));
    *res.status_mut() = StatusCode::OK;
    res
}

/// Accepts the app's TLS on `io` with `leaf`, within `within`.
pub async fn accept<S>(leaf: &Leaf, io: S, within: Duration) -> Result<SslStream<S>, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let ssl = Ssl::new(leaf.acceptor.context()).map_err(|e| e.to_string())?;
    let mut tls = SslStream::new(ssl, io).map_err(|e| e.to_string())?;
    match tokio::time::timeout(within, Pin::new(&mut tls).accept()).await {
        Err(_) => Err(format!(
            "no TLS handshake from the app within {} ms",
            within.as_millis()
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(())) => Ok(tls),
    }
}
