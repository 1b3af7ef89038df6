//! The HTTP/1.1 fast path: kinfrad's own request loop for plain HTTP/1.1 connections.
//!
//! Most traffic through a front door is HTTP/1.1 requests without a body (or with a
//! `Content-Length` one) to a healthy upstream. For those, this loop parses the head with
//! `httparse`, writes the upstream request head itself over a pooled keep-alive connection of the
//! upstream (`Upstream::take_idle`), and relays the response head and body as they come — no
//! `HeaderMap`, no per-request tasks or channels, one read and one write per direction for small
//! messages, and no buffer held by an idle client connection.
//!
//! Everything else is not handled here, so its semantics stay hyper's:
//! - HTTP/2 (the h2c preface), HTTP/1.0, `Transfer-Encoding` (chunked request bodies, and the
//!   Content-Length + Transfer-Encoding normalisation), `Upgrade`, `Expect`, absolute-form and
//!   `*` targets: the connection is handed to hyper (`Outcome::Handoff`) with the bytes read so
//!   far, for the rest of its life.
//! - a request a drain refuses gets the drain's answer, written here (`write_response`).
//! - kinfrad's own paths, maintenance, unrouted requests and https upstreams: the request goes
//!   through the same axum `router` as hyper's requests (bodiless ones here; with a body, handoff),
//!   and its response is written by `write_response`.
//!
//! Failures before the upstream's response head get exactly what the hyper path gives
//! (`answers::failure_response`: the fallback page). Limits match hyper's configuration:
//! `max_header_bytes` (431), the 30 s head timeout, a keep-alive idle timeout.

use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use http::StatusCode;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::app::App;

mod buf;
mod classify;
mod exchange;
mod head;
mod prefixed;
mod relay;
mod respond;
#[cfg(test)]
mod tests;

use buf::{Buf, Deadline, fill_head, write_timed};
use classify::{Plan, classify};
use exchange::proxy;
pub use prefixed::Prefixed;
use respond::{maintenance_bytes, write_response};

/// Most header lines in a request or response head.
const MAX_HEADERS: usize = 128;
/// How long an idle keep-alive client connection is kept.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(120);
/// First read buffer for a head.
const HEAD_CHUNK: usize = 4 * 1024;
/// Relay buffer for bodies.
const BODY_CHUNK: usize = 64 * 1024;
/// How long a client may take nothing of a response kinfrad writes itself (its pages, errors,
/// event streams) before its connection is closed.
pub const SEND_LIMIT: Duration = Duration::from_secs(60);
/// Largest response head accepted from an upstream.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// How a connection left the fast path.
pub enum Outcome {
    Closed,
    /// kinfrad stops while the connection is idle between two requests (nothing of a next
    /// request read): the caller may hand it over to the next kinfrad, or close it.
    Idle(TcpStream),
    /// Serve the rest of the connection with hyper, replaying these bytes first.
    Handoff(TcpStream, Vec<u8>),
}

// Moved once per request; boxing the plan would cost an allocation per request instead.
#[allow(clippy::large_enum_variant)]
enum HeadRead {
    /// A whole head, parsed once and classified.
    Complete(Plan),
    Closed,
    /// kinfrad stops and nothing of a next request has come.
    Stopping,
    TooLarge,
    Bad(httparse::Error),
    Handoff,
}

/// The client of a connection: its address, and the address as `X-Forwarded-For` text
/// (formatted once per connection, not per request).
struct Client {
    addr: SocketAddr,
    ip: String,
}

async fn read_head(
    app: &Arc<App>,
    peer: &Client,
    stream: &mut TcpStream,
    buf: &mut Buf,
    max_head: usize,
    stopping: &mut Pin<&mut impl std::future::Future<Output = ()>>,
    timer: &mut Deadline,
) -> HeadRead {
    let mut started: Option<Instant> = None;
    let mut first = [0u8; 512];
    loop {
        if buf.len() > 0 {
            let data = buf.filled();
            if data.starts_with(b"PRI ") {
                return HeadRead::Handoff;
            }
            let mut headers =
                [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut []);
            match req.parse_with_uninit_headers(data, &mut headers) {
                Ok(httparse::Status::Complete(n)) if n > max_head => return HeadRead::TooLarge,
                Ok(httparse::Status::Complete(n)) => {
                    return HeadRead::Complete(classify(app, &req, data, n, peer));
                }
                Ok(httparse::Status::Partial) if data.len() > max_head => {
                    return HeadRead::TooLarge;
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => return HeadRead::TooLarge,
                Err(e) => return HeadRead::Bad(e),
            }
            started.get_or_insert_with(Instant::now);
        } else {
            buf.release();
        }
        let idle = buf.len() == 0;
        let wait = match started {
            None => KEEPALIVE_IDLE,
            Some(t) => crate::proxy::HEADER_READ_TIMEOUT.saturating_sub(t.elapsed()),
        };
        // Biased, the read first: a request already there is taken without polling the stop
        // wait (or drawing a random branch order).
        tokio::select! {
            biased;
            r = timer.within(wait, fill_head(stream, buf, &mut first)) => match r {
                Some(Ok(0)) | Some(Err(_)) | None => return HeadRead::Closed,
                Some(Ok(_)) => {}
            },
            _ = stopping.as_mut(), if idle => return HeadRead::Stopping,
        }
    }
}

/// Answer a request that cannot be served with an error (counted as refused before routing),
/// and close the connection.
async fn refuse(
    app: &App,
    stream: &mut TcpStream,
    status: StatusCode,
    code: &str,
    why: &str,
) -> Outcome {
    app.unrouted_requests()
        .count(crate::model::metrics::Answer::Refused, status.as_u16());
    let r = crate::proxy::answers::refuse(status, code, why);
    let _ = write_response(stream, r, false, true).await;
    Outcome::Closed
}

/// Serve `stream` until it closes, or until a request needs hyper.
pub async fn serve(
    app: &Arc<App>,
    router: &Router,
    mut stream: TcpStream,
    peer: SocketAddr,
    stop: &mut watch::Receiver<bool>,
) -> Outcome {
    let mut buf = Buf::new();
    let mut timer = Deadline::new();
    let client = Client {
        addr: peer,
        ip: peer.ip().to_string(),
    };
    // One wait for the stop signal per connection, polled between requests: registered once,
    // not once per request.
    let mut stop_rx = stop.clone();
    let stopping = crate::stop::stopped(&mut stop_rx);
    let mut stopping = std::pin::pin!(stopping);
    // As in nginx, a reload's new head limit applies to connections accepted after it.
    let max_head = app.config().max_header_bytes;
    if *stop.borrow() {
        return Outcome::Idle(stream);
    }
    loop {
        // The stop signal only ever changes to true: a change seen here is the stop (checked
        // without the watch's lock, once per request). A request already read (pipelined) is
        // served first.
        if buf.len() == 0 && stop.has_changed().unwrap_or(true) && *stop.borrow() {
            return Outcome::Idle(stream);
        }
        let plan = match read_head(
            app,
            &client,
            &mut stream,
            &mut buf,
            max_head,
            &mut stopping,
            &mut timer,
        )
        .await
        {
            HeadRead::Complete(plan) => plan,
            HeadRead::Closed => return Outcome::Closed,
            HeadRead::Stopping => return Outcome::Idle(stream),
            HeadRead::Handoff => return Outcome::Handoff(stream, buf.into_vec()),
            HeadRead::TooLarge => {
                let why =
                    format!("request head larger than {max_head} bytes or with too many lines");
                return refuse(
                    app,
                    &mut stream,
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "header_too_large",
                    &why,
                )
                .await;
            }
            HeadRead::Bad(e) => {
                let why = format!("malformed request: {e}");
                return refuse(
                    app,
                    &mut stream,
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    &why,
                )
                .await;
            }
        };
        let keep = match plan {
            Plan::Handoff => return Outcome::Handoff(stream, buf.into_vec()),
            Plan::Reject(status, code, msg) => {
                return refuse(app, &mut stream, status, code, &msg).await;
            }
            Plan::Local {
                req,
                head_len,
                close,
                head_only,
            } => {
                buf.consume(head_len);
                // A local response may be a long-lived event stream: hold no buffer meanwhile.
                buf.release();
                let resp = crate::proxy::tally::routed(app, async {
                    match router.clone().oneshot(*req).await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    }
                })
                .await;
                matches!(
                    write_response(&mut stream, resp, head_only, close).await,
                    Ok(true)
                )
            }
            Plan::Maintenance {
                head_len,
                view,
                idx,
            } => {
                buf.consume(head_len);
                let bytes = maintenance_bytes(view, idx);
                write_timed(&mut stream, &bytes, SEND_LIMIT).await.is_ok()
            }
            Plan::Drained {
                consumed,
                close,
                head_only,
                browser,
                drain,
                up,
            } => {
                buf.consume(consumed);
                let resp = crate::proxy::drain::drain_response(browser, &drain, &up.name);
                matches!(
                    write_response(&mut stream, resp, head_only, close).await,
                    Ok(true)
                )
            }
            Plan::Proxy(p) => match proxy(app, &mut stream, &mut buf, p, &mut timer).await {
                Ok(keep) => keep,
                Err(e) => {
                    tracing::debug!(error = %e, %peer, "connection ended during a forwarded request");
                    false
                }
            },
        };
        if !keep {
            return Outcome::Closed;
        }
    }
}

/// Entry points for the fuzz targets in `fuzz/`, built only with `--cfg fuzzing` (cargo-fuzz
/// sets it). They run the real head parse and `classify`, `rewrite_response` and `Chunked` on
/// bytes, without sockets, parsing exactly as `read_head` and `read_response_head` do.
#[cfg(any(fuzzing, test))]
#[doc(hidden)]
pub mod fuzzing;
