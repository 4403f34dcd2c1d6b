//! Finding a tls-fallback [`Error`] inside the errors users hold: hyper-util's client error,
//! a `&dyn Error`, a boxed error. [`ErrorChain`] says where a chain of sources starts.

use std::error::Error as StdError;
use std::sync::Arc;

use crate::error::Error;

/// An error and its sources on one line, joined by `: ` (for a log line or a message): the
/// one way the crate, the CLI and the proxy write a chain of causes.
///
/// ```
/// let e = std::io::Error::other("refused");
/// assert_eq!(tls_fallback::error_chain(&e), "refused");
/// ```
pub fn error_chain(e: &dyn StdError) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// An error value whose chain of sources [`Error::find`] can search.
///
/// Implemented for the errors a tls-fallback user holds: hyper-util's client error, hyper's,
/// `std::io::Error`, our own errors, `dyn Error` (with or without `Send`/`Sync`) and boxes or
/// `Arc`s of those. For another concrete error type use [`Error::find_in`], or implement this
/// trait for it (one line: return `self`).
pub trait ErrorChain {
    /// The first error of the chain.
    fn chain_start(&self) -> &(dyn StdError + 'static);
}

macro_rules! chain_for_dyn {
    ($($t:ty),* $(,)?) => {$(
        impl ErrorChain for $t {
            fn chain_start(&self) -> &(dyn StdError + 'static) {
                self
            }
        }
    )*};
}

macro_rules! chain_for_ptr {
    ($($t:ty),* $(,)?) => {$(
        impl ErrorChain for $t {
            fn chain_start(&self) -> &(dyn StdError + 'static) {
                &**self
            }
        }
    )*};
}

chain_for_dyn!(
    dyn StdError + 'static,
    dyn StdError + Send + 'static,
    dyn StdError + Send + Sync + 'static,
    hyper_util::client::legacy::Error,
    hyper::Error,
    std::io::Error,
    Error,
);

chain_for_ptr!(
    Box<dyn StdError + 'static>,
    Box<dyn StdError + Send + 'static>,
    Box<dyn StdError + Send + Sync + 'static>,
    Arc<dyn StdError + Send + Sync + 'static>,
);

impl Error {
    /// Finds a tls-fallback error in a chain of sources (e.g. inside hyper's client error),
    /// from whatever error you hold.
    ///
    /// Every form type-checks as a function, so `.and_then(Error::find)` works:
    /// ```
    /// use std::error::Error as StdError;
    /// use tls_fallback::Error;
    ///
    /// fn from_hyper(r: &Result<(), hyper_util::client::legacy::Error>) -> Option<&Error> {
    ///     r.as_ref().err().and_then(Error::find)
    /// }
    /// fn from_boxed(r: &Result<(), Box<dyn StdError + Send + Sync>>) -> Option<&Error> {
    ///     r.as_ref().err().and_then(Error::find)
    /// }
    /// fn from_dyn<'a>(e: Option<&'a (dyn StdError + 'static)>) -> Option<&'a Error> {
    ///     e.and_then(Error::find)
    /// }
    /// // Found through any depth of sources, and in itself:
    /// let ours = Error::Config("bad floor".into());
    /// let wrapped = std::io::Error::other(ours.clone());
    /// assert_eq!(Error::find(&wrapped).map(Error::kind), Some(ours.kind()));
    /// let boxed: Box<dyn StdError + Send + Sync> = Box::new(wrapped);
    /// assert!(from_boxed(&Err(boxed)).is_some());
    /// assert!(from_dyn(Some(&ours)).is_some());
    /// ```
    pub fn find<E: ErrorChain + ?Sized>(e: &E) -> Option<&Error> {
        let mut e = e.chain_start();
        loop {
            if let Some(ours) = e.downcast_ref::<Error>() {
                return Some(ours);
            }
            // An io::Error's `source()` skips the error it wraps: step into it instead.
            let wrapped = e
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref());
            e = match wrapped {
                Some(inner) => inner,
                None => e.source()?,
            };
        }
    }

    /// [`Error::find`] for any other concrete error type (one that does not implement
    /// [`ErrorChain`]).
    pub fn find_in<E: StdError + 'static>(e: &E) -> Option<&Error> {
        Error::find(e as &(dyn StdError + 'static))
    }
}
