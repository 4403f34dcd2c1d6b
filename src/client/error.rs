//! [`RequestError`]: why a [`crate::Client`] request failed, with the connection's own message
//! (every attempt and a remedy) when TLS was the problem, and the connection's [`TlsInfo`]
//! when the failure came after the handshake.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use http::Method;

use crate::error::{Attempt, Error, ErrorKind};
use crate::stream::{ConnectionUse, TlsInfo};

/// Why a [`crate::Client`] request failed. Its `Display` is the whole story: the kind, the
/// request, what happened, every TLS attempt when TLS was involved, and what to do.
///
/// ```no_run
/// # async fn run(client: tls_fallback::Client) {
/// match client.get("https://gw.example/health").send().await {
///     Ok(res) => println!("{}", res.status()),
///     Err(e) => {
///         eprintln!("{e}"); // e.g. "below_floor (GET https://gw.example/health): every hello..."
///         if let Some(tls) = e.tls() {
///             eprintln!("the connection was made: {} via {}", tls.version, tls.profile);
///         }
///     }
/// }
/// # }
/// ```
///
/// `{:?}` prints the same story as `{}`, so a `main` that returns `Result<_, Box<dyn Error>>`
/// shows it after `Error: ` (as anyhow does); `{:#?}` prints the fields.
pub struct RequestError {
    pub(crate) kind: ErrorKind,
    pub(crate) method: Method,
    pub(crate) url: String,
    pub(crate) what: What,
    pub(crate) tls: Option<TlsInfo>,
    pub(crate) connection: Option<ConnectionUse>,
}

/// Where a request was when its time ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// No connection yet: TCP connect and the TLS handshakes (maybe a walk down the ladder).
    Connecting,
    /// Connected; the request was sent or is being sent; no response head yet.
    AwaitingAnswer,
    /// The head arrived with this status; the body did not finish.
    ReadingBody(u16),
}

#[derive(Debug)]
pub(crate) enum What {
    /// The connection could not be made: the connector's error.
    Connection(Error),
    /// The whole-request time ran out.
    Timeout {
        after: Duration,
        stage: Stage,
        received: u64,
    },
    /// The body passed the cap.
    TooLarge {
        limit: usize,
        announced: Option<u64>,
    },
    /// The HTTP exchange failed (hyper's error, with its chain).
    Http(Box<dyn StdError + Send + Sync>),
    /// A redirect that could not or must not be followed.
    Redirect(String),
    /// A bad URL, header or body.
    BadInput(String),
}

impl RequestError {
    pub(crate) fn new(method: &Method, url: &str, what: What) -> Self {
        let kind = match &what {
            What::Connection(e) => e.kind(),
            What::Timeout { .. } => ErrorKind::RequestTimeout,
            What::TooLarge { .. } => ErrorKind::BodyTooLarge,
            What::Http(_) | What::Redirect(_) => ErrorKind::Http,
            What::BadInput(_) => ErrorKind::BadInput,
        };
        RequestError {
            kind,
            method: method.clone(),
            url: url.to_string(),
            what,
            tls: None,
            connection: None,
        }
    }

    pub(crate) fn with_connection(
        mut self,
        tls: Option<TlsInfo>,
        connection: Option<ConnectionUse>,
    ) -> Self {
        self.tls = tls;
        self.connection = connection;
        self
    }

    /// The kind: the connection's [`ErrorKind`] when TLS or TCP failed, else
    /// [`ErrorKind::RequestTimeout`], [`ErrorKind::BodyTooLarge`], [`ErrorKind::Http`] or
    /// [`ErrorKind::BadInput`].
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The TLS connection the request went over, when one was made (a timeout while waiting
    /// for the answer, a body too large, a connection closed mid-answer).
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// Which request on that connection this was (HTTP/1.1).
    pub fn connection(&self) -> Option<&ConnectionUse> {
        self.connection.as_ref()
    }

    /// The connector's error when the connection could not be made.
    pub fn connection_error(&self) -> Option<&Error> {
        match &self.what {
            What::Connection(e) => Some(e),
            _ => None,
        }
    }

    /// Every TLS handshake attempt: the failed walk's, or the one of the connection used.
    pub fn attempts(&self) -> &[Attempt] {
        match (&self.what, &self.tls) {
            (What::Connection(e), _) => e.attempts(),
            (_, Some(tls)) => &tls.attempts,
            _ => &[],
        }
    }

    /// The URL of the request that failed (after redirects, the last one).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the whole-request time ran out.
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::RequestTimeout
    }
}

fn connection_words(tls: Option<&TlsInfo>) -> String {
    tls.map_or_else(String::new, |t| {
        format!(
            " (the TLS connection was made: {} via {}, {} handshake(s))",
            t.version,
            t.profile,
            t.handshakes()
        )
    })
}

fn timeout_words(after: Duration, stage: Stage, received: u64, tls: Option<&TlsInfo>) -> String {
    let conn = connection_words(tls);
    match stage {
        Stage::Connecting => format!(
            "no TLS connection within {after:?}: the TCP connect and the handshakes took it all. \
             The handshake timeout bounds each attempt and a walk down the ladder makes several: \
             raise this timeout, pin the host to the version it speaks, or run `tls-fallback \
             probe HOST` to see where the time goes"
        ),
        Stage::AwaitingAnswer => format!(
            "the request was sent and no answer came within {after:?}{conn}: the server, not \
             TLS, is slow or stuck. The server may have acted on the request: check before \
             sending it again (a payment may have gone through)"
        ),
        Stage::ReadingBody(status) => format!(
            "the answer (status {status}) began but its body did not finish within {after:?} \
             ({received} bytes received){conn}: the server, not TLS, is slow or stuck"
        ),
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} {}): ", self.kind.as_str(), self.method, self.url)?;
        let tls = self.tls.as_ref();
        match &self.what {
            What::Connection(e) => write!(f, "{e}"),
            What::Timeout {
                after,
                stage,
                received,
            } => f.write_str(&timeout_words(*after, *stage, *received, tls)),
            What::TooLarge { limit, announced } => {
                let how = announced.map_or_else(
                    || format!("more than {limit} bytes arrived"),
                    |n| format!("the server announced {n} bytes"),
                );
                write!(
                    f,
                    "the response body is larger than the cap of {limit} bytes ({how}); raise \
                     `ClientBuilder::max_body` if such bodies are expected"
                )
            }
            What::Http(e) => {
                write!(f, "the HTTP exchange failed{}: {e}", connection_words(tls))?;
                let mut source = e.source();
                while let Some(s) = source {
                    write!(f, ": {s}")?;
                    source = s.source();
                }
                Ok(())
            }
            What::Redirect(why) => write!(f, "{why}"),
            What::BadInput(why) => write!(f, "{why}"),
        }
    }
}

/// The story (`Display`), or with `{:#?}` the struct and its fields.
impl fmt::Debug for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !f.alternate() {
            return fmt::Display::fmt(self, f);
        }
        f.debug_struct("RequestError")
            .field("kind", &self.kind)
            .field("method", &self.method)
            .field("url", &self.url)
            .field("what", &self.what)
            .field("tls", &self.tls)
            .field("connection", &self.connection)
            .finish()
    }
}

impl StdError for RequestError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.what {
            What::Connection(e) => Some(e),
            What::Http(e) => Some(&**e),
            _ => None,
        }
    }
}

impl crate::ErrorChain for RequestError {
    fn chain_start(&self) -> &(dyn StdError + 'static) {
        self
    }
}
