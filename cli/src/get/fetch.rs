//! One request under `get`'s limits: the whole exchange (connect, every handshake, the request
//! and the body) within `--timeout-ms`, the body capped at `--max-body` and streamed to where
//! it goes (memory, a file, or nowhere for `--repeat`), never held whole unless it is printed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http::HeaderMap;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use tls_fallback::TlsInfo;
use tokio::io::AsyncWriteExt;

use super::CliClient;
use crate::output::{error_chain, CliError};

/// The request `get` sends, built once from the flags.
#[derive(Debug, Clone)]
pub struct Request {
    /// `-X`.
    pub method: http::Method,
    /// The URL.
    pub uri: http::Uri,
    /// `-H`, in order.
    pub headers: HeaderMap,
    /// `-d`.
    pub body: Bytes,
}

/// `--timeout-ms` and `--max-body`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The whole exchange, body included.
    pub timeout: Duration,
    /// The largest body read, in bytes.
    pub max_body: u64,
}

/// Where the response body goes.
#[derive(Debug, Clone)]
pub enum Sink {
    /// Kept (it is printed).
    Memory,
    /// Counted and dropped (`--repeat`).
    Discard,
    /// Streamed to this file (`-o`); removed again if the body does not complete.
    File(PathBuf),
}

/// One response.
pub struct Outcome {
    /// The status code.
    pub status: u16,
    /// From sending the request to the end of the body.
    pub ms: f64,
    /// The connection's TLS facts (none over plain HTTP).
    pub tls: Option<TlsInfo>,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body, with [`Sink::Memory`] only.
    pub body: Bytes,
    /// The body's length, whatever the sink.
    pub body_len: u64,
}

/// How far an exchange got: what a timeout message reports.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Connecting, handshaking, sending, or waiting for the response head.
    Head,
    /// Reading the body; this many bytes so far.
    Body(u64),
}

/// Sends `req` and reads the whole response within `limits`.
pub async fn fetch(
    client: &CliClient,
    req: &Request,
    limits: Limits,
    sink: &Sink,
) -> Result<Outcome, CliError> {
    let started = Instant::now();
    let mut phase = Phase::Head;
    let result = match tokio::time::timeout(
        limits.timeout,
        exchange(client, req, limits, sink, &mut phase),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(timeout_error(limits.timeout, phase)),
    };
    match result {
        Ok(mut out) => {
            out.ms = started.elapsed().as_secs_f64() * 1000.0;
            Ok(out)
        }
        Err(e) => {
            // A partial body must not pass for the whole one.
            if let (Sink::File(path), Phase::Body(_)) = (sink, phase) {
                let _ = std::fs::remove_file(path);
            }
            Err(e)
        }
    }
}

async fn exchange(
    client: &CliClient,
    req: &Request,
    limits: Limits,
    sink: &Sink,
    phase: &mut Phase,
) -> Result<Outcome, CliError> {
    let mut builder = http::Request::builder()
        .method(req.method.clone())
        .uri(req.uri.clone());
    if let Some(h) = builder.headers_mut() {
        h.extend(req.headers.clone());
    }
    let request = builder
        .body(Full::new(req.body.clone()))
        .map_err(|e| CliError::bad_input(e.to_string()))?;
    let res = client
        .request(request)
        .await
        .map_err(|e| CliError::from_client(&e))?;
    let (parts, body) = res.into_parts();
    if let Some(len) = announced_len(&parts.headers).filter(|&n| n > limits.max_body) {
        return Err(too_large(
            limits.max_body,
            format!("the server announced {len} bytes"),
        ));
    }
    *phase = Phase::Body(0);
    let (body, body_len) = read_body(body, limits.max_body, sink, phase).await?;
    Ok(Outcome {
        status: parts.status.as_u16(),
        ms: 0.0,
        tls: parts.extensions.get::<TlsInfo>().cloned(),
        headers: parts.headers,
        body,
        body_len,
    })
}

/// Reads the body frame by frame into `sink`, failing past `max` bytes.
async fn read_body(
    mut body: Incoming,
    max: u64,
    sink: &Sink,
    phase: &mut Phase,
) -> Result<(Bytes, u64), CliError> {
    let mut file = match sink {
        Sink::File(path) => Some(create(path).await?),
        _ => None,
    };
    let mut kept = Vec::new();
    let mut read: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            CliError::failed(
                "http",
                format!(
                    "reading the response body after {read} bytes: {}",
                    error_chain(&e)
                ),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // Trailers.
        };
        let len = data.len() as u64;
        if read.saturating_add(len) > max {
            return Err(too_large(
                max,
                format!("stopped reading after {read} bytes"),
            ));
        }
        read += len;
        *phase = Phase::Body(read);
        match (sink, file.as_mut()) {
            (Sink::Memory, _) => kept.extend_from_slice(&data),
            (Sink::File(path), Some(f)) => f
                .write_all(&data)
                .await
                .map_err(|e| write_error(path, &e))?,
            _ => {}
        }
    }
    if let (Sink::File(path), Some(f)) = (sink, file.as_mut()) {
        f.flush().await.map_err(|e| write_error(path, &e))?;
    }
    Ok((Bytes::from(kept), read))
}

async fn create(path: &Path) -> Result<tokio::fs::File, CliError> {
    tokio::fs::File::create(path).await.map_err(|e| {
        CliError::bad_input(format!(
            "-o {}: cannot create the file: {e}; expected a writable path",
            path.display()
        ))
    })
}

fn write_error(path: &Path, e: &std::io::Error) -> CliError {
    CliError::failed(
        "io",
        format!("-o {}: cannot write the body: {e}", path.display()),
    )
}

/// The `Content-Length` the server announced, if it is a number.
fn announced_len(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn too_large(max: u64, what: String) -> CliError {
    CliError::failed(
        "http",
        format!(
            "the response body is larger than --max-body ({max} bytes): {what}; expected at \
             most {max} bytes: raise --max-body (e.g. --max-body 1G) if this response is \
             legitimate"
        ),
    )
}

fn timeout_error(limit: Duration, phase: Phase) -> CliError {
    let ms = limit.as_millis();
    let what = match phase {
        Phase::Head => "no response head arrived (connect, handshakes, request and the \
                        server's answer together)"
            .to_string(),
        Phase::Body(n) => format!("the response body did not finish ({n} bytes read)"),
    };
    CliError::failed(
        "timeout",
        format!(
            "the request did not complete within --timeout-ms {ms}: {what}; raise --timeout-ms \
             if the server is just slow"
        ),
    )
}
