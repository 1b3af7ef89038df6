//! Responses kinfrad writes itself: router responses, the cached maintenance page, the Date line.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use http::StatusCode;
use http_body::Body as _;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::SEND_LIMIT;
use super::buf::write_timed;
use super::head::is_hop;

thread_local! {
    static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

pub(super) fn date_line(out: &mut Vec<u8>) {
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs || d.1.is_empty() {
            *d = (secs, httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(d.1.as_bytes());
        out.extend_from_slice(b"\r\n");
    });
}

type MaintCache = Option<(Arc<crate::app::MaintView>, usize, u64, u64, bytes::Bytes)>;

thread_local! {
    /// The maintenance page as sent, for one (published state, record, Retry-After, second).
    static MAINT: RefCell<MaintCache> = const { RefCell::new(None) };
}

/// The whole HTML maintenance response (head and body) of the record `view.active[idx]`.
pub(super) fn maintenance_bytes(view: Arc<crate::app::MaintView>, idx: usize) -> bytes::Bytes {
    let Some(rec) = view.active.get(idx) else {
        return bytes::Bytes::new();
    };
    let now = crate::model::now_ms();
    let retry = rec.record.retry_after_secs(now);
    let sec = now / 1000;
    let hit = MAINT.with(|c| match &*c.borrow() {
        Some((v, i, r, s, b)) if Arc::ptr_eq(v, &view) && *i == idx && *r == retry && *s == sec => {
            Some(b.clone())
        }
        _ => None,
    });
    if let Some(b) = hit {
        return b;
    }
    let status = crate::model::maintenance::status_view(Some(&rec.record), rec.hits(), now);
    let resp = crate::proxy::answers::maintenance_response(true, rec.html.clone(), &status, retry);
    let b = bytes::Bytes::from(serialize_full(resp));
    MAINT.with(|c| *c.borrow_mut() = Some((view, idx, retry, sec, b.clone())));
    b
}

/// The head of a response whose body is `len` bytes long (`None`: chunked).
fn response_head(
    parts: &http::response::Parts,
    len: Option<u64>,
    head_only: bool,
    close: bool,
) -> Vec<u8> {
    let status = parts.status;
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut has_date = false;
    for (k, v) in &parts.headers {
        let n = k.as_str();
        if is_hop(n) || n == "content-length" {
            continue;
        }
        has_date |= n == "date";
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !has_date {
        date_line(&mut out);
    }
    if !bodiless {
        match len {
            Some(n) => out.extend_from_slice(format!("content-length: {n}\r\n").as_bytes()),
            None if !head_only => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
            None => {}
        }
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Write all of `parts` in as few system calls as the kernel allows, within `limit`.
async fn write_vectored_timed(
    stream: &mut TcpStream,
    parts: &[&[u8]],
    limit: Duration,
) -> io::Result<()> {
    let mut slices: Vec<io::IoSlice<'_>> = parts.iter().map(|p| io::IoSlice::new(p)).collect();
    let mut rest: &mut [io::IoSlice<'_>] = &mut slices;
    // Usually the socket takes it all at once: no timer then (as in `write_timed`).
    match stream.try_write_vectored(rest) {
        Ok(n) => io::IoSlice::advance_slices(&mut rest, n),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    if rest.is_empty() {
        return Ok(());
    }
    let all = async {
        while !rest.is_empty() {
            let n = stream.write_vectored(rest).await?;
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::WriteZero));
            }
            io::IoSlice::advance_slices(&mut rest, n);
        }
        Ok(())
    };
    match tokio::time::timeout(limit, all).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "client too slow")),
    }
}

/// Head and body of a response whose body is already in memory (kinfrad's own pages).
fn serialize_full(resp: http::Response<Body>) -> Vec<u8> {
    let (parts, mut body) = resp.into_parts();
    let mut data = Vec::new();
    let mut cx = Context::from_waker(std::task::Waker::noop());
    while let Poll::Ready(Some(Ok(f))) = Pin::new(&mut body).poll_frame(&mut cx) {
        if let Ok(d) = f.into_data() {
            data.extend_from_slice(&d);
        }
    }
    let mut out = response_head(&parts, Some(data.len() as u64), false, false);
    out.extend_from_slice(&data);
    out
}

/// Write a response produced by the router or by kinfrad itself. `Ok(keep)`: the connection
/// may carry another request.
pub(super) async fn write_response(
    stream: &mut TcpStream,
    resp: http::Response<Body>,
    head_only: bool,
    close: bool,
) -> io::Result<bool> {
    let (parts, mut body) = resp.into_parts();
    let status = parts.status;
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let exact = body.size_hint().exact();
    let chunked = !bodiless && exact.is_none();
    let close = close || (chunked && head_only);
    let mut out = response_head(&parts, exact, head_only, close);
    let limit = SEND_LIMIT;
    if head_only || bodiless {
        write_timed(stream, &out, limit).await?;
        return Ok(!close);
    }
    loop {
        // A body that is not ready yet (a live event stream) gets what is buffered sent first,
        // so events reach the client as they happen.
        let ready = {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            Pin::new(&mut body).poll_frame(&mut cx)
        };
        let frame = match ready {
            Poll::Ready(f) => f,
            Poll::Pending => {
                if !out.is_empty() {
                    write_timed(stream, &out, limit).await?;
                    out = Vec::new();
                }
                let f = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
                // A streamed chunk (an event): written as it is, framing around it, no copy.
                if chunked
                    && let Some(Ok(frame)) = &f
                    && let Some(data) = frame.data_ref()
                    && !data.is_empty()
                {
                    let size = format!("{:x}\r\n", data.len());
                    write_vectored_timed(stream, &[size.as_bytes(), data, b"\r\n"], limit).await?;
                    continue;
                }
                f
            }
        };
        match frame {
            None => break,
            Some(Err(e)) => {
                // Head (maybe) sent: the only honest signal left is closing the connection.
                if !out.is_empty() {
                    let _ = write_timed(stream, &out, limit).await;
                }
                return Err(io::Error::other(e.to_string()));
            }
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    if data.is_empty() {
                        continue;
                    }
                    if chunked {
                        out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                        out.extend_from_slice(&data);
                        out.extend_from_slice(b"\r\n");
                    } else {
                        out.extend_from_slice(&data);
                    }
                    if out.len() >= 64 * 1024 {
                        write_timed(stream, &out, limit).await?;
                        out.clear();
                    }
                }
            }
        }
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    if !out.is_empty() {
        write_timed(stream, &out, limit).await?;
    }
    Ok(!close)
}
