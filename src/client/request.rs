//! [`RequestBuilder`] and the exchange itself: every hop of a request under one deadline, the
//! body read under the cap, and what was known when time ran out.

use std::time::Duration;

use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::{Extensions, HeaderMap, Method, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::connect::{capture_connection, CaptureConnection};
use serde::Serialize;

use super::error::{RequestError, Stage, What};
use super::{form, redirect, Client, Response};
use crate::error::Error;
use crate::stream::{ConnectionUse, TlsInfo};

/// A request being put together; [`RequestBuilder::send`] sends it. A bad header or body is
/// reported by `send`, as [`crate::ErrorKind::BadInput`].
#[derive(Debug)]
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    client: Client,
    method: Method,
    url: String,
    headers: HeaderMap,
    body: Bytes,
    timeout: Option<Duration>,
    error: Option<String>,
}

impl RequestBuilder {
    pub(super) fn new(client: Client, method: Method, url: &str) -> Self {
        RequestBuilder {
            client,
            method,
            url: url.to_string(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            timeout: None,
            error: None,
        }
    }

    fn fail(mut self, why: String) -> Self {
        self.error.get_or_insert(why);
        self
    }

    /// Adds a header (several values of one name are all sent).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            (Ok(n), Ok(v)) => {
                self.headers.append(n, v);
                self
            }
            (Err(_), _) => self.fail(format!("invalid header name {name:?}")),
            (_, Err(_)) => self.fail(format!("invalid value for header {name}: {value:?}")),
        }
    }

    /// Adds every header of `headers`.
    pub fn headers(mut self, headers: &HeaderMap) -> Self {
        for (n, v) in headers {
            self.headers.append(n, v.clone());
        }
        self
    }

    /// The body, as is.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// A JSON body; sets `Content-Type: application/json` unless already set.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => self.typed(body, "application/json"),
            Err(e) => self.fail(format!("the JSON body cannot be encoded: {e}")),
        }
    }

    /// A form body (`application/x-www-form-urlencoded`) from a struct, a map or a list of
    /// pairs whose values are strings, numbers or bools (`None` fields are left out); sets the
    /// `Content-Type` unless already set.
    pub fn form<T: Serialize + ?Sized>(self, value: &T) -> Self {
        match form::encode(value) {
            Ok(body) => self.typed(body, "application/x-www-form-urlencoded"),
            Err(e) => self.fail(format!("the form body cannot be encoded: {e}")),
        }
    }

    fn typed(mut self, body: impl Into<Bytes>, content_type: &'static str) -> Self {
        self.body = body.into();
        self.headers
            .entry(CONTENT_TYPE)
            .or_insert(HeaderValue::from_static(content_type));
        self
    }

    /// This request's whole-request timeout, instead of the client's.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the request and reads the whole answer, all within the timeout.
    pub async fn send(self) -> Result<Response, RequestError> {
        let bad = |why: String| RequestError::new(&self.method, &self.url, What::BadInput(why));
        if let Some(why) = &self.error {
            return Err(bad(why.clone()));
        }
        let uri = parse_url(&self.url).map_err(bad)?;
        let client = &self.client;
        let after = self.timeout.unwrap_or(client.cfg.timeout);
        let mut headers = self.headers.clone();
        for (name, value) in &client.cfg.headers {
            if !headers.contains_key(name) {
                headers.insert(name, value.clone());
            }
        }
        let mut p = Progress::new(&self.method, &uri);
        let hops = client.hops(self.method.clone(), uri, headers, self.body.clone(), &mut p);
        match tokio::time::timeout(after, hops).await {
            Ok(result) => result,
            Err(_) => Err(p.timed_out(after)),
        }
    }
}

/// A URL the client can use, or what is wrong with it.
fn parse_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("invalid URL {url:?} ({e}); expected https://host[:port]/path"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("https" | "http"), Some(_)) => Ok(uri),
        (None, _) => Err(format!(
            "invalid URL {url:?}: no scheme; expected https://{url}"
        )),
        (Some(other), _) if other != "https" && other != "http" => Err(format!(
            "invalid URL {url:?}: unsupported scheme {other:?}; expected https:// (or http://)"
        )),
        _ => Err(format!(
            "invalid URL {url:?}: no host; expected https://host[:port]/path"
        )),
    }
}

/// What is known about a request while it runs, kept outside its future so a timeout can
/// still say where the request was.
struct Progress {
    method: Method,
    url: String,
    stage: Stage,
    received: u64,
    capture: Option<CaptureConnection>,
    tls: Option<TlsInfo>,
    connection: Option<ConnectionUse>,
}

impl Progress {
    fn new(method: &Method, uri: &Uri) -> Self {
        Progress {
            method: method.clone(),
            url: uri.to_string(),
            stage: Stage::Connecting,
            received: 0,
            capture: None,
            tls: None,
            connection: None,
        }
    }

    /// A new hop: a new request, maybe a new connection.
    fn enter(&mut self, method: &Method, uri: &Uri, capture: CaptureConnection) {
        *self = Progress::new(method, uri);
        self.capture = Some(capture);
    }

    /// The connection the current hop was handed, if any, from hyper-util's capture.
    fn learn_connection(&mut self) {
        let Some(capture) = &self.capture else { return };
        let mut ext = Extensions::new();
        if let Some(connected) = &*capture.connection_metadata() {
            connected.get_extras(&mut ext);
            if self.stage == Stage::Connecting {
                self.stage = Stage::AwaitingAnswer;
            }
        }
        self.tls = self.tls.take().or_else(|| ext.remove::<TlsInfo>());
        self.connection = self
            .connection
            .take()
            .or_else(|| ext.remove::<ConnectionUse>());
    }

    fn error(&mut self, what: What) -> RequestError {
        self.learn_connection();
        RequestError::new(&self.method, &self.url, what)
            .with_connection(self.tls.clone(), self.connection.clone())
    }

    fn timed_out(mut self, after: Duration) -> RequestError {
        self.learn_connection();
        let what = What::Timeout {
            after,
            stage: self.stage,
            received: self.received,
        };
        self.error(what)
    }
}

impl Client {
    /// Every hop of one request: send, follow a redirect if asked, read the body.
    async fn hops(
        &self,
        mut method: Method,
        mut uri: Uri,
        mut headers: HeaderMap,
        mut body: Bytes,
        p: &mut Progress,
    ) -> Result<Response, RequestError> {
        let mut followed = 0;
        loop {
            let res = self.exchange(&method, &uri, &headers, &body, p).await?;
            let (parts, incoming) = res.into_parts();
            p.stage = Stage::ReadingBody(parts.status.as_u16());
            p.tls = parts.extensions.get::<TlsInfo>().cloned();
            p.connection = parts.extensions.get::<ConnectionUse>().cloned();
            let data = read_capped(incoming, &parts.headers, self.cfg.max_body, p).await?;
            let location = parts.headers.get(LOCATION).and_then(|v| v.to_str().ok());
            let hop = match self.cfg.redirects {
                0 => None,
                _ => redirect::next(parts.status, &method, &uri, location)
                    .map_err(|why| p.error(What::Redirect(why)))?,
            };
            let Some(hop) = hop else {
                return Ok(Response {
                    status: parts.status,
                    version: parts.version,
                    headers: parts.headers,
                    body: data,
                    url: uri,
                    tls: p.tls.take(),
                    connection: p.connection.take(),
                });
            };
            if followed == self.cfg.redirects {
                let why = format!(
                    "stopped after {followed} redirect(s) (the client's limit); the next one \
                     pointed to {}",
                    hop.uri
                );
                return Err(p.error(What::Redirect(why)));
            }
            followed += 1;
            if hop.cross_origin {
                for name in &redirect::CREDENTIALS {
                    headers.remove(name);
                }
            }
            if !hop.keep_body {
                body = Bytes::new();
                headers.remove(CONTENT_TYPE);
                headers.remove(CONTENT_LENGTH);
            }
            (method, uri) = (hop.method, hop.uri);
        }
    }

    /// One request on one connection, up to the response head.
    async fn exchange(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &Bytes,
        p: &mut Progress,
    ) -> Result<http::Response<Incoming>, RequestError> {
        let mut req = http::Request::new(Full::new(body.clone()));
        *req.method_mut() = method.clone();
        *req.uri_mut() = uri.clone();
        *req.headers_mut() = headers.clone();
        p.enter(method, uri, capture_connection(&mut req));
        self.http
            .request(req)
            .await
            .map_err(|e| match Error::find(&e) {
                Some(ours) => p.error(What::Connection(ours.clone())),
                None => p.error(What::Http(Box::new(e))),
            })
    }
}

/// The whole body, or an error once it passes `max` (announced or counted).
async fn read_capped(
    mut body: Incoming,
    headers: &HeaderMap,
    max: usize,
    p: &mut Progress,
) -> Result<Bytes, RequestError> {
    let announced = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = announced.filter(|n| *n > max as u64) {
        let limit = max;
        return Err(p.error(What::TooLarge {
            limit,
            announced: Some(n),
        }));
    }
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| p.error(What::Http(Box::new(e))))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if buf.len() + data.len() > max {
            let limit = max;
            return Err(p.error(What::TooLarge {
                limit,
                announced: None,
            }));
        }
        buf.extend_from_slice(&data);
        p.received = buf.len() as u64;
    }
    Ok(Bytes::from(buf))
}
