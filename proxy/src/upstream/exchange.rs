//! One request to an upstream: take a connection (the one the app connection holds, the shared
//! h2 one, a parked one, or a new one through the fallback layer), send the request, and hand
//! the response back with how the connection was made.
//!
//! A request is sent at most once: it goes on another connection only when hyper hands it back
//! unsent (a parked or shared connection that the upstream had closed), see [`after_failure`].

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response};

use super::conn::{ConnInfo, Connections, Fresh, SendError, H2};
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

/// The retry rule: only a request hyper handed back unsent, from a connection that was parked,
/// shared or used before (one the upstream may have closed while idle), at most
/// [`MAX_RESENDS`] times. A new connection that fails is the answer.
pub fn after_failure(unsent: bool, reused: bool, resends: u32) -> Next {
    if unsent && reused && resends < MAX_RESENDS {
        Next::Retry
    } else {
        Next::Fail
    }
}

/// How one try went.
enum Outcome {
    Done(Response<Relay>),
    /// Handed back unsent, with the error to answer if it is not sent again.
    Unsent(Request<Incoming>, SendError),
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
/// its `Host`; `uri` the absolute `https://` one.
pub async fn send(
    pool: &Arc<Connections>,
    slot: &Slot,
    uri: http::Uri,
    dest: &Dest,
    mut req: Request<Incoming>,
) -> Result<Answer, Failed> {
    let authority = dest.authority.as_str();
    let mut resends = 0;
    let origin = uri.path_and_query().map_or_else(
        || http::Uri::from_static("/"),
        |pq| http::Uri::from(pq.clone()),
    );
    loop {
        let checked_out = checkout(pool, slot, uri.clone(), authority).await;
        let (outcome, reused, info) = match checked_out.map_err(|e| (e, None))? {
            Checkout::H2(h2) => {
                let info = h2.info.clone();
                (send_h2(pool, h2, &uri, authority, req).await, true, info)
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
            Outcome::Unsent(back, e) => {
                if after_failure(true, reused, resends) == Next::Fail {
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

/// One try on the held HTTP/1.1 connection `id`.
async fn send_h1(slot: &Slot, id: u64, req: Request<Incoming>) -> (Outcome, Option<Arc<ConnInfo>>) {
    if !slot.ready(id).await {
        // Closed before it took the request: nothing was sent.
        return (Outcome::Unsent(req, SendError::NotSent(None)), None);
    }
    let mut pending = Some(req);
    let (result, info) = match slot.send(id, &mut pending) {
        Some((sending, info)) => (sending.await, info),
        // The connection went away between `ready` and now: the request is still here.
        None => {
            return match pending {
                Some(back) => (Outcome::Unsent(back, SendError::NotSent(None)), None),
                None => (Outcome::Failed(SendError::NotSent(None)), None),
            };
        }
    };
    let outcome = match result {
        Ok(res) => Outcome::Done(res.map(|b| Relay::held(b, slot.handback(), id))),
        Err(mut e) => match e.take_message() {
            Some(back) => Outcome::Unsent(back, SendError::NotSent(Some(e.into_error()))),
            None => Outcome::Failed(SendError::Lost(e.into_error())),
        },
    };
    (outcome, info)
}

/// One try on a shared h2 connection. A request it hands back unsent (the connection ended,
/// say after a GOAWAY) can go on another one; the dead connection leaves the pool.
async fn send_h2(
    pool: &Connections,
    mut h2: H2,
    uri: &http::Uri,
    authority: &str,
    mut req: Request<Incoming>,
) -> Outcome {
    *req.uri_mut() = uri.clone();
    *req.version_mut() = http::Version::HTTP_2;
    req.headers_mut().remove(http::header::HOST);
    if let Err(e) = h2.send.ready().await {
        pool.forget_h2(authority, h2.id);
        return Outcome::Unsent(req, SendError::NotSent(Some(e)));
    }
    match h2.send.try_send_request(req).await {
        Ok(res) => Outcome::Done(res.map(Relay::shared)),
        Err(mut e) => {
            pool.forget_h2(authority, h2.id);
            match e.take_message() {
                Some(back) => Outcome::Unsent(back, SendError::NotSent(Some(e.into_error()))),
                None => Outcome::Failed(SendError::Lost(e.into_error())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_sent_again_only_when_it_never_left_a_reused_connection_a_few_times() {
        // (unsent, reused, resends so far) -> next
        let rows = [
            ((true, true, 0), Next::Retry),
            ((true, true, MAX_RESENDS - 1), Next::Retry),
            ((true, true, MAX_RESENDS), Next::Fail),
            ((true, false, 0), Next::Fail),
            ((false, true, 0), Next::Fail),
            ((false, false, 0), Next::Fail),
        ];
        for ((unsent, reused, resends), want) in rows {
            assert_eq!(
                after_failure(unsent, reused, resends),
                want,
                "unsent {unsent} reused {reused} resends {resends}"
            );
        }
    }
}
