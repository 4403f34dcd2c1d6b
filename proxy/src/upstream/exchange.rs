//! One request to an upstream: take a connection (the one the app connection holds, the shared
//! h2 one, a parked one, or a new one through the fallback layer), send the request, and hand
//! the response back with how the connection was made.
//!
//! A request is sent at most once: it goes on another connection only when it never reached
//! the upstream: hyper handed it back unsent (a parked or shared connection that the upstream
//! had closed), or an h2 upstream said it did not process it (a stream above a GOAWAY's last
//! stream id, or REFUSED_STREAM: RFC 9113 section 8.7), see [`after_failure`]. For the second
//! case hyper has already consumed the body, so a request body of at most [`REPLAY_BYTES`] with
//! a known length is read whole before it goes to an h2 connection, to be sent again.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method, Uri};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Bytes, Incoming};
use hyper::{Request, Response};

use super::conn::{ConnInfo, Connections, Fresh, SendError, UpBody, H2};
use super::drain::Relay;
use super::slot::Slot;
use crate::route::Dest;

/// A response and the connection it came on.
pub type Answer = (Response<Relay>, Option<Arc<ConnInfo>>);

/// A send that failed, and the connection it failed on when one was made (an `http` error
/// after a handshake still says which TLS version and rung the connection used).
pub type Failed = (SendError, Option<Arc<ConnInfo>>);

/// What to do after a send failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send it again on another connection: it never left.
    Retry,
    /// Answer with the error.
    Fail,
}

/// How many times one request may be handed back unsent and tried on another connection (each
/// try takes a parked or shared connection the upstream may have closed, or a new one).
pub const MAX_RESENDS: u32 = 4;

/// How many times one request an h2 upstream refused unprocessed may be sent again. Higher:
/// an upstream that closes its connections after a few requests (nginx `keepalive_requests`)
/// refuses every stream above the last one it takes, and the requests that were in flight
/// together all move to the next connection, where one more gets through each time.
pub const MAX_REFUSED_RESENDS: u32 = 32;

/// How a request that failed came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Back {
    /// It may have reached the upstream.
    MayHaveLeft,
    /// hyper handed it back unsent.
    Unsent,
    /// An h2 upstream refused it unprocessed (GOAWAY, REFUSED_STREAM) and its body was kept.
    Refused,
}

/// The retry rule, by how the request came back:
///
/// | back | connection | resends so far | next |
/// |---|---|---|---|
/// | may have left | any | any | fail |
/// | unsent | parked, shared or used before | < [`MAX_RESENDS`] | retry |
/// | unsent | new | any | fail (a new connection that fails is the answer) |
/// | refused unprocessed | any | < [`MAX_REFUSED_RESENDS`] | retry |
pub fn after_failure(back: Back, reused: bool, resends: u32) -> Next {
    let retry = match back {
        Back::MayHaveLeft => false,
        Back::Unsent => reused && resends < MAX_RESENDS,
        Back::Refused => resends < MAX_REFUSED_RESENDS,
    };
    if retry {
        Next::Retry
    } else {
        Next::Fail
    }
}

/// How one try went.
enum Outcome {
    Done(Response<Relay>),
    /// Handed back unsent, or refused unprocessed (`Back`), with the error to answer if it is
    /// not sent again.
    Unsent(Request<UpBody>, Back, SendError),
    /// Failed after the request may have left.
    Failed(SendError),
}

/// The connection a try takes.
enum Checkout {
    /// The slot's connection `id`, and whether it was used before.
    H1(u64, bool),
    H2(H2),
}

/// Sends one request to `dest` through `pool`, holding the HTTP/1.1 connection in the app
/// connection's `slot`; the answer says how the connection was made. `req` is HTTP/1.1 with
/// its `Host`; `uri` the absolute `https://` one. A response from a shared h2 connection is
/// reset if the app reads nothing of it for `unread`.
pub async fn send(
    pool: &Arc<Connections>,
    slot: &Slot,
    uri: http::Uri,
    dest: &Dest,
    req: Request<Incoming>,
    unread: Duration,
) -> Result<Answer, Failed> {
    let authority = dest.authority.as_str();
    let mut resends = 0;
    let mut req = req.map(Either::Left);
    let mut replay = None;
    let origin = uri.path_and_query().map_or_else(
        || http::Uri::from_static("/"),
        |pq| http::Uri::from(pq.clone()),
    );
    loop {
        let checked_out = checkout(pool, slot, uri.clone(), authority).await;
        let (outcome, reused, info) = match checked_out.map_err(|e| (e, None))? {
            Checkout::H2(h2) => {
                let info = h2.info.clone();
                if replay.is_none() {
                    replay = keep_for_replay(&mut req).await.map_err(|e| (e, None))?;
                }
                let sent = send_h2(pool, h2, &uri, authority, req, replay.as_ref(), unread).await;
                (sent, true, info)
            }
            Checkout::H1(id, reused) => {
                *req.uri_mut() = origin.clone();
                let (outcome, info) = send_h1(slot, id, req).await;
                (outcome, reused, info)
            }
        };
        match outcome {
            Outcome::Done(res) => return Ok((res, info)),
            Outcome::Failed(e) => return Err((e, info)),
            Outcome::Unsent(back, how, e) => {
                if after_failure(how, reused, resends) == Next::Fail {
                    return Err((e, info));
                }
                resends += 1;
                req = back;
                // Back to an HTTP/1.1 request with its Host, whichever try it came from.
                *req.version_mut() = http::Version::HTTP_11;
                req.headers_mut()
                    .insert(http::header::HOST, dest.host_header.clone());
            }
        }
    }
}

/// The connection for the next request: the one held if it is for this upstream, else a
/// shared h2 one, else a parked one, else a new one.
async fn checkout(
    pool: &Arc<Connections>,
    slot: &Slot,
    uri: http::Uri,
    authority: &str,
) -> Result<Checkout, SendError> {
    if let Some(id) = slot.held_for(authority, pool) {
        return Ok(Checkout::H1(id, true));
    }
    if let Some(h2) = pool.shared_h2(authority) {
        return Ok(Checkout::H2(h2));
    }
    if let Some(h1) = pool.take_parked(authority, slot.worker()) {
        return Ok(Checkout::H1(slot.hold(authority, pool, h1), true));
    }
    match pool.connect(uri, authority).await? {
        Fresh::H2(h2) => Ok(Checkout::H2(h2)),
        Fresh::H1(h1) => Ok(Checkout::H1(slot.hold(authority, pool, h1), false)),
    }
}

/// The largest request body read whole before it goes to an h2 connection, so that it can be
/// sent again if the upstream refuses its stream unprocessed; a larger one, or one of unknown
/// length, streams and is never sent again.
pub const REPLAY_BYTES: u64 = 64 * 1024;

/// A request as it was before its first h2 try, to be sent again.
struct Replay {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Replay {
    fn request(&self) -> Request<UpBody> {
        let mut req = Request::new(Either::Right(Full::new(self.body.clone())));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// Reads a request body of known length up to [`REPLAY_BYTES`] whole (a GET's empty body
/// costs nothing) and keeps a copy of the request; `None` for a larger or streamed body.
async fn keep_for_replay(req: &mut Request<UpBody>) -> Result<Option<Replay>, SendError> {
    let small = req
        .body()
        .size_hint()
        .exact()
        .is_some_and(|n| n <= REPLAY_BYTES);
    if !small {
        return Ok(None);
    }
    let body = match std::mem::replace(req.body_mut(), Either::Right(Full::default())) {
        Either::Left(app) => match app.collect().await {
            Ok(all) => all.to_bytes(),
            // The app's body broke off (it hung up): nothing was sent.
            Err(e) => return Err(SendError::NotSent(Some(e))),
        },
        // Only the first try reads it; a body already read is not read again.
        Either::Right(_) => return Ok(None),
    };
    *req.body_mut() = Either::Right(Full::new(body.clone()));
    Ok(Some(Replay {
        method: req.method().clone(),
        uri: req.uri().clone(),
        headers: req.headers().clone(),
        body,
    }))
}

/// Whether an h2 stream's error shows that the upstream never processed the request: a stream
/// above the last stream id of the upstream's GOAWAY, or one it refused (REFUSED_STREAM); RFC
/// 9113 section 8.7 makes sending those again safe.
pub fn never_processed(e: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return h2.is_remote()
                && (h2.is_go_away() || h2.reason() == Some(h2::Reason::REFUSED_STREAM));
        }
        source = s.source();
    }
    false
}

/// One try on the held HTTP/1.1 connection `id`.
async fn send_h1(slot: &Slot, id: u64, req: Request<UpBody>) -> (Outcome, Option<Arc<ConnInfo>>) {
    if !slot.ready(id).await {
        // Closed before it took the request: nothing was sent.
        return (
            Outcome::Unsent(req, Back::Unsent, SendError::NotSent(None)),
            None,
        );
    }
    let mut pending = Some(req);
    let (result, info) = match slot.send(id, &mut pending) {
        Some((sending, info)) => (sending.await, info),
        // The connection went away between `ready` and now: the request is still here.
        None => {
            return match pending {
                Some(back) => (
                    Outcome::Unsent(back, Back::Unsent, SendError::NotSent(None)),
                    None,
                ),
                None => (Outcome::Failed(SendError::NotSent(None)), None),
            };
        }
    };
    let outcome = match result {
        Ok(res) => Outcome::Done(res.map(|b| Relay::held(b, slot.handback(), id))),
        Err(mut e) => match e.take_message() {
            Some(back) => {
                Outcome::Unsent(back, Back::Unsent, SendError::NotSent(Some(e.into_error())))
            }
            None => Outcome::Failed(SendError::Lost(e.into_error())),
        },
    };
    (outcome, info)
}

/// One try on a shared h2 connection. A request it hands back unsent (the connection ended,
/// say after a GOAWAY), or one the upstream refused unprocessed with its body kept
/// (`replay`), can go on another one; the dead connection leaves the pool.
async fn send_h2(
    pool: &Connections,
    mut h2: H2,
    uri: &http::Uri,
    authority: &str,
    mut req: Request<UpBody>,
    replay: Option<&Replay>,
    unread: Duration,
) -> Outcome {
    *req.uri_mut() = uri.clone();
    *req.version_mut() = http::Version::HTTP_2;
    req.headers_mut().remove(http::header::HOST);
    if let Err(e) = h2.send.ready().await {
        pool.forget_h2(authority, h2.id);
        return Outcome::Unsent(req, Back::Refused, SendError::NotSent(Some(e)));
    }
    match h2.send.try_send_request(req).await {
        Ok(res) => Outcome::Done(res.map(|b| Relay::shared(b, unread))),
        Err(mut e) => {
            pool.forget_h2(authority, h2.id);
            match e.take_message() {
                Some(back) => Outcome::Unsent(
                    back,
                    Back::Refused,
                    SendError::NotSent(Some(e.into_error())),
                ),
                None => {
                    let e = e.into_error();
                    match replay.filter(|_| never_processed(&e)) {
                        Some(r) => {
                            Outcome::Unsent(r.request(), Back::Refused, SendError::NotSent(Some(e)))
                        }
                        None => Outcome::Failed(SendError::Lost(e)),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_sent_again_only_when_it_never_reached_the_upstream_a_bounded_number_of_times() {
        use Back::*;
        // (how it came back, reused connection, resends so far) -> next
        let rows = [
            ((Unsent, true, 0), Next::Retry),
            ((Unsent, true, MAX_RESENDS - 1), Next::Retry),
            ((Unsent, true, MAX_RESENDS), Next::Fail),
            ((Unsent, false, 0), Next::Fail),
            ((MayHaveLeft, true, 0), Next::Fail),
            ((MayHaveLeft, false, 0), Next::Fail),
            ((Refused, true, 0), Next::Retry),
            ((Refused, false, 0), Next::Retry),
            ((Refused, true, MAX_REFUSED_RESENDS - 1), Next::Retry),
            ((Refused, true, MAX_REFUSED_RESENDS), Next::Fail),
        ];
        for ((back, reused, resends), want) in rows {
            assert_eq!(
                after_failure(back, reused, resends),
                want,
                "{back:?} reused {reused} resends {resends}"
            );
        }
    }
}
