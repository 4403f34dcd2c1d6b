//! [`Response`]: a whole answer read under the client's timeout and body cap, with the TLS
//! connection it came over.

use http::{HeaderMap, StatusCode, Uri, Version};
use hyper::body::Bytes;
use serde::de::DeserializeOwned;

use crate::stream::{ConnectionUse, TlsInfo};

/// A complete response: status, headers, the whole body (at most the client's cap), and how
/// the TLS connection was made.
#[derive(Debug, Clone)]
pub struct Response {
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) url: Uri,
    pub(crate) tls: Option<TlsInfo>,
    pub(crate) connection: Option<ConnectionUse>,
}

impl Response {
    /// The status code (a redirect the client was not asked to follow is returned as is).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The HTTP version of the answer.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body.
    pub fn bytes(&self) -> &Bytes {
        &self.body
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_slice(&self.body)
    }

    /// The URL that answered (the last one, after redirects).
    pub fn url(&self) -> &Uri {
        &self.url
    }

    /// How the TLS connection was made (`None` for `http://`). It describes the connection:
    /// see [`Response::reused`] for this request.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// Which request on its connection this was (HTTP/1.1 over TLS).
    pub fn connection(&self) -> Option<&ConnectionUse> {
        self.connection.as_ref()
    }

    /// Whether this request went over a connection an earlier request had opened.
    pub fn reused(&self) -> bool {
        self.connection.as_ref().is_some_and(ConnectionUse::reused)
    }

    /// The parts, for code that wants an `http::Response<Bytes>`.
    pub fn into_http(self) -> http::Response<Bytes> {
        let mut res = http::Response::new(self.body);
        *res.status_mut() = self.status;
        *res.version_mut() = self.version;
        *res.headers_mut() = self.headers;
        if let Some(tls) = self.tls {
            res.extensions_mut().insert(tls);
        }
        if let Some(conn) = self.connection {
            res.extensions_mut().insert(conn);
        }
        res
    }
}
