//! One exchange with an upstream: connect, send, read and rewrite the response head, relay.

use std::io;
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::app::App;
use crate::model::circuit::Admit;
use crate::proxy::ForwardError;
use crate::upstream::Upstream;

use super::buf::{Buf, Deadline, fill, give_scratch, scratch, write_timed};
use super::classify::ProxyPlan;
use super::head::{ConnTokens, Hdr, Lines, is_hop, parse_len};
use super::relay::{Chunked, relay_chunked, relay_fixed, relay_to_eof};
use super::respond::{date_line, write_response};
use super::{MAX_HEADERS, MAX_RESPONSE_HEAD};

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// The upstream's response head, rewritten for the client.
pub(super) struct RespHead {
    pub(super) out: Vec<u8>,
    pub(super) len: usize,
    pub(super) status: u16,
    pub(super) framing: Framing,
    /// The upstream connection may carry another request afterwards.
    pub(super) reusable: bool,
}

enum Got {
    Head(RespHead),
    /// Nothing at all came back on a reused connection: it was stale.
    Stale,
    /// The client stopped taking what was passed on (an interim response): not the
    /// upstream's fault.
    ClientGone(io::Error),
}

async fn connect(up: &Upstream) -> Result<TcpStream, ForwardError> {
    let cfg = up.cfg();
    let addr = (cfg.url.host.clone(), cfg.url.port);
    let limit = cfg.timeouts.connect;
    drop(cfg);
    match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            Err(ForwardError::Connect("Connection refused".into()))
        }
        Ok(Err(e)) => Err(ForwardError::Connect(e.to_string())),
        Err(_) => Err(ForwardError::Connect("Connect timed out".into())),
    }
}

/// Read and rewrite the response head; 1xx interim responses are passed on to `client` as
/// they come.
#[allow(clippy::too_many_arguments)]
async fn read_response_head(
    upc: &mut TcpStream,
    client: &mut TcpStream,
    send_limit: Duration,
    rbuf: &mut Buf,
    head_only: bool,
    reused: bool,
    deadline: Duration,
    sent_at: Instant,
    timer: &mut Deadline,
) -> Result<Got, ForwardError> {
    let due = tokio::time::Instant::from_std(sent_at) + deadline;
    let mut seen_any = false;
    loop {
        if rbuf.len() > 0 {
            seen_any = true;
            // Parsed in a block of its own: the 4 KiB of header slots must not be alive across
            // the interim write's await, or they would sit in every connection's future (and
            // double the memory of an idle keep-alive connection).
            let interim =
                {
                    // Uninitialised header slots: no 4 KB memset per response.
                    let mut headers =
                        [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
                    let mut resp = httparse::Response::new(&mut []);
                    let parsed = httparse::ParserConfig::default()
                        .parse_response_with_uninit_headers(&mut resp, rbuf.filled(), &mut headers);
                    match parsed {
                        Ok(httparse::Status::Complete(n)) if n > MAX_RESPONSE_HEAD => {
                            return Err(ForwardError::Failed(
                                "upstream response head too large".into(),
                            ));
                        }
                        Ok(httparse::Status::Complete(n)) => {
                            let status = resp.code.unwrap_or(0);
                            if status == 101 {
                                return Err(ForwardError::Failed(
                                    "upstream switched protocols unasked".into(),
                                ));
                            }
                            if !(100..200).contains(&status) {
                                return rewrite_response(&resp, rbuf.filled(), n, head_only)
                                    .map(Got::Head);
                            }
                            // RFC 9110 §15.2: interim responses (103 Early Hints, 102) go on to
                            // the HTTP/1.1 client, hop-by-hop headers removed.
                            let out = rewrite_interim(&resp, rbuf.filled(), n);
                            rbuf.consume(n);
                            Some(out)
                        }
                        Ok(httparse::Status::Partial) if rbuf.len() > MAX_RESPONSE_HEAD => {
                            return Err(ForwardError::Failed(
                                "upstream response head too large".into(),
                            ));
                        }
                        Ok(httparse::Status::Partial) => None,
                        Err(e) => {
                            return Err(ForwardError::Failed(format!(
                                "invalid upstream response: {e}"
                            )));
                        }
                    }
                };
            if let Some(interim) = interim {
                let sent = write_timed(client, &interim, send_limit).await;
                give_scratch(interim);
                if let Err(e) = sent {
                    return Ok(Got::ClientGone(e));
                }
                continue;
            }
        }
        match timer.until(due, fill(upc, rbuf, 4096)).await {
            None => return Err(ForwardError::Timeout(deadline)),
            Some(Ok(0)) if reused && !seen_any => return Ok(Got::Stale),
            Some(Err(e)) if reused && !seen_any && is_reset(&e) => return Ok(Got::Stale),
            Some(Ok(0)) => {
                return Err(ForwardError::Failed(
                    "connection closed before message completed".into(),
                ));
            }
            Some(Err(e)) => return Err(ForwardError::Failed(e.to_string())),
            Some(Ok(_)) => {}
        }
    }
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

/// An interim (1xx) response head for the client: status line and end-to-end headers.
pub(super) fn rewrite_interim(
    resp: &httparse::Response<'_, '_>,
    raw: &[u8],
    head_len: usize,
) -> Vec<u8> {
    let mut connection = ConnTokens::default();
    for h in resp.headers.iter() {
        if Hdr::of(h.name) == Hdr::Connection {
            connection.add(h.value);
        }
    }
    let mut out = scratch(head_len + 16);
    status_line(&mut out, resp);
    let mut lines = Lines::new(&raw[..head_len.min(raw.len())]);
    for h in resp.headers.iter() {
        if !is_hop(h.name) && !connection.names(h.name) {
            lines.keep(&mut out, h);
        }
    }
    lines.flush(&mut out);
    out.extend_from_slice(b"\r\n");
    out
}

/// `HTTP/1.1 <code> <reason>\r\n` for a parsed upstream response.
fn status_line(out: &mut Vec<u8>, resp: &httparse::Response<'_, '_>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    // httparse accepts only three-digit codes.
    let code = resp.code.unwrap_or(0).min(999);
    out.extend_from_slice(&[
        b'0' + (code / 100) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
    ]);
    out.push(b' ');
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

pub(super) fn rewrite_response(
    resp: &httparse::Response<'_, '_>,
    raw: &[u8],
    head_len: usize,
    head_only: bool,
) -> Result<RespHead, ForwardError> {
    let status = resp.code.unwrap_or(0);
    let mut len: Option<u64> = None;
    let mut chunked = false;
    let mut te = false;
    let mut dated = false;
    let mut connection = ConnTokens::default();
    let mut kinds = [Hdr::Other; MAX_HEADERS];
    for (h, k) in resp.headers.iter().zip(kinds.iter_mut()) {
        *k = Hdr::of(h.name);
        match *k {
            Hdr::ContentLength => {
                let v = parse_len(h.value).ok_or_else(|| {
                    ForwardError::Failed("invalid upstream Content-Length".into())
                })?;
                if len.is_some_and(|l| l != v) {
                    return Err(ForwardError::Failed(
                        "conflicting upstream Content-Length".into(),
                    ));
                }
                len = Some(v);
            }
            Hdr::TransferEncoding => {
                te = true;
                // Chunked must be the final coding; only the last header line counts.
                chunked = h
                    .value
                    .rsplit(|b| *b == b',')
                    .next()
                    .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
            Hdr::Connection => connection.add(h.value),
            Hdr::Date => dated = true,
            _ => {}
        }
    }
    let close = resp.version != Some(1) || connection.close;
    let bodiless = head_only || status == 204 || status == 304;
    let framing = if bodiless {
        Framing::None
    } else if te && chunked {
        Framing::Chunked
    } else if te {
        Framing::UntilClose
    } else if let Some(l) = len {
        Framing::Length(l)
    } else {
        Framing::UntilClose
    };
    let mut out = scratch(head_len + 64);
    status_line(&mut out, resp);
    let mut lines = Lines::new(&raw[..head_len.min(raw.len())]);
    for (h, &kind) in resp.headers.iter().zip(kinds.iter()) {
        let n = h.name;
        if kind == Hdr::ContentLength {
            // The framing the body is relayed by: kept whatever `Connection` names (an
            // upstream's `Connection: content-length` must not leave the client unable to
            // find the body's end); dropped only where it does not frame the body.
            if te || status == 204 {
                continue;
            }
        } else if kind.hop() || connection.names(n) {
            continue;
        }
        lines.keep(&mut out, h);
    }
    lines.flush(&mut out);
    if framing == Framing::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    // RFC 9110 §6.6.1: a response forwarded without a Date gets one.
    if !dated {
        date_line(&mut out);
    }
    Ok(RespHead {
        out,
        len: head_len,
        status,
        framing,
        reusable: !close && framing != Framing::UntilClose,
    })
}

/// Forward one planned request. `Ok(keep)`: whether the client connection stays open.
pub(super) async fn proxy(
    app: &Arc<App>,
    client: &mut TcpStream,
    buf: &mut Buf,
    p: ProxyPlan,
    timer: &mut Deadline,
) -> io::Result<bool> {
    let up = p.up.clone();
    // Counted in flight (for drains) for the whole exchange.
    let _flight = crate::upstream::InFlight::enter(&*up);
    buf.consume(p.head_len);
    let start = Instant::now();
    let admit = if p.gate {
        match up.admit(start) {
            Some(a) => a,
            None => return fail(app, client, &p, ForwardError::NotAdmitted).await,
        }
    } else {
        Admit::Yes
    };
    let (limit, header_timeout, idle) = (p.max_body, p.header_timeout, p.idle);
    if p.body_len > limit {
        if admit == Admit::Trial {
            up.on_abandoned();
        }
        return fail(app, client, &p, ForwardError::TooLarge(limit)).await;
    }

    let mut attempt = 0;
    // When the request went out (the last attempt's), for the upstream's latency.
    let mut sent;
    let (mut upc, head, mut rbuf) = loop {
        attempt += 1;
        let (mut upc, reused) = match up.take_idle(start, idle) {
            Some(c) if attempt == 1 => (c, true),
            _ => match connect(&up).await {
                Ok(c) => (c, false),
                Err(ForwardError::Connect(text)) => {
                    up.on_error(Instant::now(), true, text.clone());
                    return fail(app, client, &p, ForwardError::Connect(text)).await;
                }
                Err(e) => return fail(app, client, &p, e).await,
            },
        };
        // Head and body, in one write.
        sent = Instant::now();
        if let Err(e) = write_timed(&mut upc, &p.head, idle).await {
            if reused && p.retryable && is_reset(&e) {
                continue;
            }
            let text = e.to_string();
            up.on_error(Instant::now(), false, text.clone());
            return fail(app, client, &p, ForwardError::Failed(text)).await;
        }
        let mut rbuf = Buf::new();
        match read_response_head(
            &mut upc,
            client,
            idle,
            &mut rbuf,
            p.head_only,
            reused,
            header_timeout,
            start,
            timer,
        )
        .await
        {
            Ok(Got::Head(h)) => break (upc, h, rbuf),
            Ok(Got::ClientGone(e)) => {
                if admit == Admit::Trial {
                    up.on_abandoned();
                }
                return Err(e);
            }
            Ok(Got::Stale) if p.retryable && attempt == 1 => continue,
            Ok(Got::Stale) => {
                let text = "connection closed before message completed".to_string();
                up.on_error(Instant::now(), false, text.clone());
                return fail(app, client, &p, ForwardError::Failed(text)).await;
            }
            Err(e) => {
                let text = match &e {
                    ForwardError::Timeout(d) => {
                        format!("No response within {}", humantime::format_duration(*d))
                    }
                    ForwardError::Failed(t) | ForwardError::Connect(t) => t.clone(),
                    other => format!("{other:?}"),
                };
                up.on_error(Instant::now(), false, text);
                return fail(app, client, &p, e).await;
            }
        }
    };
    rbuf.consume(head.len);
    // A chunked body that is malformed from its first bytes: nothing has reached the client
    // yet, so it still gets the fallback page.
    let mut chunks = Chunked::default();
    let first_chunks = if head.framing == Framing::Chunked {
        match chunks.feed(rbuf.filled()) {
            Ok(r) => Some(r),
            Err(e) => {
                let text = format!("invalid chunked body from upstream: {e}");
                up.on_error(Instant::now(), false, text.clone());
                return fail(app, client, &p, ForwardError::Failed(text)).await;
            }
        }
    } else {
        None
    };
    let got = Instant::now();
    up.latency.observe(got.saturating_duration_since(sent));
    up.on_response(got, head.status >= 500);
    p.counts
        .count(crate::model::metrics::Answer::Proxied, head.status);

    let close = p.close || head.framing == Framing::UntilClose;
    let mut out = head.out;
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if let Some(v) = &p.scheduled {
        out.extend_from_slice(crate::proxy::schedule::HEADER.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    // The first body bytes go out with the head.
    let mut done = false;
    let mut extra = false;
    let mut remaining = 0u64;
    match head.framing {
        Framing::None => {
            done = true;
            extra = rbuf.len() > 0;
        }
        Framing::Length(n) => {
            let take = (n.min(rbuf.len() as u64)) as usize;
            out.extend_from_slice(&rbuf.filled()[..take]);
            rbuf.consume(take);
            remaining = n - take as u64;
            done = remaining == 0;
            extra = done && rbuf.len() > 0;
        }
        Framing::Chunked => {
            let (used, end) = first_chunks.unwrap_or((0, false));
            out.extend_from_slice(&rbuf.filled()[..used]);
            rbuf.consume(used);
            done = end;
            extra = done && rbuf.len() > 0;
        }
        Framing::UntilClose => {
            out.extend_from_slice(rbuf.filled());
            rbuf.consume(usize::MAX);
        }
    }
    drop(rbuf);
    write_timed(client, &out, idle).await?;
    give_scratch(out);
    if !done {
        match head.framing {
            Framing::Length(_) => relay_fixed(&mut upc, client, remaining, idle).await?,
            Framing::Chunked => extra = relay_chunked(&mut upc, client, chunks, idle).await?,
            Framing::UntilClose => relay_to_eof(&mut upc, client, idle).await?,
            Framing::None => {}
        }
    }
    give_scratch(p.head);
    if head.reusable && !extra {
        // Idle since about when this request began (after a long body: now), close enough for
        // an idle timeout of seconds.
        up.put_idle(upc, if done { start } else { Instant::now() }, idle);
    } else {
        let _ = upc.shutdown().await;
    }
    Ok(!close)
}

/// Answer a request that could not be forwarded (fallback page, 413, 502/504).
async fn fail(
    app: &Arc<App>,
    client: &mut TcpStream,
    p: &ProxyPlan,
    e: ForwardError,
) -> io::Result<bool> {
    // Head and body were consumed when forwarding began: the connection stays usable.
    let how = crate::proxy::tally::failure_answer(&e);
    let r = crate::proxy::answers::failure_response(app, &p.up, p.browser, p.gate, e);
    p.counts.count(how, r.status().as_u16());
    write_response(client, r, p.head_only, p.close).await
}
