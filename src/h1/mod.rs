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
//! - kinfrad's own paths, maintenance, unrouted requests and https upstreams: the request goes
//!   through the same axum `router` as hyper's requests (bodiless ones here; with a body, handoff),
//!   and its response is written by `write_response`.
//!
//! Failures before the upstream's response head get exactly what the hyper path gives
//! (`http::failure_response`: the fallback page). Limits match hyper's configuration:
//! `max_header_bytes` (431), the 30 s head timeout, a keep-alive idle timeout.

use std::cell::RefCell;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::app::App;
use crate::circuit::Admit;
use crate::proxy::ForwardError;
use crate::upstream::Upstream;

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
    /// Serve the rest of the connection with hyper, replaying these bytes first.
    Handoff(TcpStream, Vec<u8>),
}

// ------------------------------------------------------------------------------------ buffers

thread_local! {
    /// Head and body buffers of finished requests, reused so an idle connection holds none
    /// and a busy one allocates (and zeroes) none.
    static HEADS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static BODIES: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

fn take_buf(len: usize) -> Vec<u8> {
    let pooled = match len {
        HEAD_CHUNK => HEADS.with(|p| p.borrow_mut().pop()),
        BODY_CHUNK => BODIES.with(|p| p.borrow_mut().pop()),
        _ => None,
    };
    pooled.unwrap_or_else(|| vec![0; len])
}

thread_local! {
    /// Scratch vectors for the heads kinfrad writes (upstream request, client response head),
    /// so a proxied request allocates none in the steady state.
    static SCRATCH: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty vector with room for `cap` bytes, reused when one is at hand.
fn scratch(cap: usize) -> Vec<u8> {
    let mut v = SCRATCH.with(|p| p.borrow_mut().pop()).unwrap_or_default();
    v.reserve(cap);
    v
}

/// Give a scratch vector back (small ones only: a large body never stays around).
fn give_scratch(mut v: Vec<u8>) {
    if v.capacity() <= 16 * 1024 {
        v.clear();
        SCRATCH.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < POOL_SCRATCH {
                p.push(v);
            }
        });
    }
}

/// Scratch vectors kept per worker thread (each at most 16 KiB).
const POOL_SCRATCH: usize = 64;

/// Buffers kept per worker thread: enough for a few hundred requests in flight (1 MiB of
/// heads), small enough that a burst of thousands of connections leaves little behind.
const POOL_HEADS: usize = 256;
const POOL_BODIES: usize = 8;

fn give_buf(v: Vec<u8>) {
    let (pool, cap) = match v.len() {
        HEAD_CHUNK => (&HEADS, POOL_HEADS),
        BODY_CHUNK => (&BODIES, POOL_BODIES),
        _ => return,
    };
    pool.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < cap {
            p.push(v);
        }
    });
}

/// Bytes read but not yet used: `data[start..end]`. `data` is allocated only while needed.
struct Buf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl Buf {
    fn new() -> Buf {
        Buf {
            data: Vec::new(),
            start: 0,
            end: 0,
        }
    }

    fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    fn len(&self) -> usize {
        self.end - self.start
    }

    fn consume(&mut self, n: usize) {
        self.start += n.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Room for at least `min` more bytes at the end.
    fn spare(&mut self, min: usize) -> &mut [u8] {
        if self.data.is_empty() {
            self.data = take_buf(HEAD_CHUNK.max(min));
        }
        if self.data.len() - self.end < min && self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.data.len() - self.end < min {
            let n = (self.end + min).max(self.data.len() * 2);
            self.data.resize(n, 0);
        }
        &mut self.data[self.end..]
    }

    /// Give the memory back while nothing is buffered.
    fn release(&mut self) {
        if self.len() == 0 && !self.data.is_empty() {
            give_buf(std::mem::take(&mut self.data));
            self.start = 0;
            self.end = 0;
        }
    }

    fn into_vec(mut self) -> Vec<u8> {
        let v = self.filled().to_vec();
        self.consume(usize::MAX);
        self.release();
        v
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        self.start = 0;
        self.end = 0;
        self.release();
    }
}

/// Read what is available into `buf`, waiting if nothing is. `Ok(0)`: EOF.
///
/// `AsyncRead` rather than `try_read`: tokio clears a socket's readiness after a short read, so
/// the next read waits for the reactor instead of costing a syscall that returns EAGAIN.
async fn fill(stream: &mut TcpStream, buf: &mut Buf, min: usize) -> io::Result<usize> {
    let spare = buf.spare(min);
    let n = stream.read(spare).await?;
    buf.end += n;
    Ok(n)
}

/// Write all of `bytes`, failing if the peer stops reading for `limit`. The common case (the
/// socket takes everything at once) needs no timer.
/// `fill` for a request head. While nothing is buffered (an idle keep-alive connection) it
/// waits with `first`, a small array in the caller's frame, instead of a pooled buffer: most
/// heads fit it. (The caller's: an array in this future would be copied each time the future
/// moves into a select.)
async fn fill_head(
    stream: &mut TcpStream,
    buf: &mut Buf,
    first: &mut [u8; 512],
) -> io::Result<usize> {
    if buf.len() > 0 {
        return fill(stream, buf, 1024).await;
    }
    let n = stream.read(first).await?;
    if n > 0 {
        buf.spare(n)[..n].copy_from_slice(&first[..n]);
        buf.end += n;
    }
    Ok(n)
}

async fn write_timed(stream: &mut TcpStream, bytes: &[u8], limit: Duration) -> io::Result<()> {
    let done = match stream.try_write(bytes) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e),
    };
    if done == bytes.len() {
        return Ok(());
    }
    match tokio::time::timeout(limit, stream.write_all(&bytes[done..])).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write stalled")),
    }
}

/// A connection's one timer for its waits (the next request head, an upstream's response
/// head). A wait asks for "no later than `limit` from now"; the timer is re-armed only when it
/// would fire too late for the wait at hand, or when it fired early for it — so the steady
/// request/response rhythm of a connection leaves tokio's timer wheel alone.
struct Deadline {
    sleep: Pin<Box<tokio::time::Sleep>>,
    armed: tokio::time::Instant,
}

impl Deadline {
    fn new() -> Deadline {
        let far = tokio::time::Instant::now() + Duration::from_secs(365 * 86_400);
        Deadline {
            sleep: Box::pin(tokio::time::sleep_until(far)),
            armed: far,
        }
    }

    /// `fut`'s output, or `None` once `limit` has passed.
    async fn within<F: std::future::Future>(
        &mut self,
        limit: Duration,
        fut: F,
    ) -> Option<F::Output> {
        self.until(tokio::time::Instant::now() + limit, fut).await
    }

    /// `fut`'s output, or `None` once `due` has passed (no clock read unless the timer fires).
    async fn until<F: std::future::Future>(
        &mut self,
        due: tokio::time::Instant,
        fut: F,
    ) -> Option<F::Output> {
        if self.armed > due {
            self.sleep.as_mut().reset(due);
            self.armed = due;
        }
        let mut fut = std::pin::pin!(fut);
        loop {
            tokio::select! {
                biased;
                out = &mut fut => return Some(out),
                () = &mut self.sleep => {
                    if tokio::time::Instant::now() >= due {
                        return None;
                    }
                    // Armed for an earlier wait: now count this one.
                    self.sleep.as_mut().reset(due);
                    self.armed = due;
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------ connection loop

// Moved once per request; boxing the plan would cost an allocation per request instead.
#[allow(clippy::large_enum_variant)]
enum HeadRead {
    /// A whole head, parsed once and classified.
    Complete(Plan),
    Closed,
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
            Some(t) => crate::http::HEADER_READ_TIMEOUT.saturating_sub(t.elapsed()),
        };
        // Biased, the read first: a request already there is taken without polling the stop
        // wait (or drawing a random branch order).
        tokio::select! {
            biased;
            r = timer.within(wait, fill_head(stream, buf, &mut first)) => match r {
                Some(Ok(0)) | Some(Err(_)) | None => return HeadRead::Closed,
                Some(Ok(_)) => {}
            },
            _ = stopping.as_mut(), if idle => return HeadRead::Closed,
        }
    }
}

/// Answer a request that cannot be served with an error, and close the connection.
async fn refuse(stream: &mut TcpStream, status: StatusCode, code: &str, why: &str) -> Outcome {
    let r = crate::http::refuse(status, code, why);
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
        return Outcome::Closed;
    }
    loop {
        // The stop signal only ever changes to true: a change seen here is the stop (checked
        // without the watch's lock, once per request).
        if stop.has_changed().unwrap_or(true) && *stop.borrow() {
            return Outcome::Closed;
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
            HeadRead::Handoff => return Outcome::Handoff(stream, buf.into_vec()),
            HeadRead::TooLarge => {
                let why =
                    format!("request head larger than {max_head} bytes or with too many lines");
                return refuse(
                    &mut stream,
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "header_too_large",
                    &why,
                )
                .await;
            }
            HeadRead::Bad(e) => {
                let why = format!("malformed request: {e}");
                return refuse(&mut stream, StatusCode::BAD_REQUEST, "bad_request", &why).await;
            }
        };
        let keep = match plan {
            Plan::Handoff => return Outcome::Handoff(stream, buf.into_vec()),
            Plan::Reject(status, code, msg) => {
                return refuse(&mut stream, status, code, &msg).await;
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
                let resp = match router.clone().oneshot(*req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                matches!(
                    write_response(&mut stream, resp, head_only, close).await,
                    Ok(true)
                )
            }
            Plan::Maintenance { head_len, up } => {
                buf.consume(head_len);
                let bytes = maintenance_bytes(app, up.as_deref());
                write_timed(&mut stream, &bytes, SEND_LIMIT).await.is_ok()
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

// ------------------------------------------------------------------------------ classification

struct ProxyPlan {
    up: Arc<Upstream>,
    /// The upstream request head, ready to write.
    head: Vec<u8>,
    head_len: usize,
    body_len: u64,
    head_only: bool,
    /// Safe to send again on a fresh connection (bodiless GET/HEAD/OPTIONS).
    retryable: bool,
    browser: bool,
    gate: bool,
    close: bool,
    /// The service's limits, read with the route (one config load per request).
    max_body: u64,
    header_timeout: Duration,
    idle: Duration,
}

enum Plan {
    Handoff,
    Reject(StatusCode, &'static str, String),
    Local {
        /// Boxed: the plan moves with every request, and a proxied one should not carry this.
        req: Box<http::Request<Body>>,
        head_len: usize,
        close: bool,
        head_only: bool,
    },
    Proxy(ProxyPlan),
    /// The built-in maintenance page for a browser (`up`: the route's service, if any).
    Maintenance {
        head_len: usize,
        up: Option<Arc<Upstream>>,
    },
}

/// The route key of the common Host value, without allocating: a lower-case name or IPv4
/// address (letters, digits, '-', '.', '_') with an optional numeric port. Anything else
/// (upper case, IPv6, odd characters) is for `http::parse_host`.
fn plain_host(h: &[u8]) -> Option<&str> {
    let name_len = h
        .iter()
        .position(|b| !matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_'))
        .unwrap_or(h.len());
    if name_len == 0 {
        return None;
    }
    if let Some(rest) = h.get(name_len..).filter(|r| !r.is_empty()) {
        let port = rest.strip_prefix(b":")?;
        if port.is_empty() || port.len() > 5 {
            return None;
        }
        let value = port.iter().try_fold(0u32, |v, &b| {
            b.is_ascii_digit().then(|| v * 10 + u32::from(b - b'0'))
        })?;
        if value > u32::from(u16::MAX) {
            return None;
        }
    }
    // ASCII by construction.
    std::str::from_utf8(&h[..name_len]).ok()
}

/// Paths the router owns (a superset is fine: the router decides).
fn is_own_path(path: &str) -> bool {
    path == "/health"
        || path.starts_with("/__")
        || path.starts_with("/kinfra")
        || path.starts_with("/api/maintenance")
        || path.starts_with("/api/dashboard")
        || path.starts_with("/api/kinfra")
}

/// The header names the fast path acts on, told apart by length first: most names match no
/// length here and cost one comparison.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Hdr {
    Other,
    Host,
    Date,
    Accept,
    Expect,
    Cookie,
    ContentLength,
    XForwardedFor,
    XForwardedHost,
    XForwardedProto,
    Connection,
    TransferEncoding,
    Upgrade,
    /// The other hop-by-hop names (RFC 9110 §7.6.1): keep-alive, te, trailer, proxy-*.
    Hop,
}

impl Hdr {
    fn of(name: &str) -> Hdr {
        let Some(&c) = name.as_bytes().first() else {
            return Hdr::Other;
        };
        // Length and first letter pick the one name worth comparing.
        let (kind, want) = match (name.len(), c | 0x20) {
            (2, b't') => (Hdr::Hop, "te"),
            (4, b'h') => (Hdr::Host, "host"),
            (4, b'd') => (Hdr::Date, "date"),
            (6, b'a') => (Hdr::Accept, "accept"),
            (6, b'e') => (Hdr::Expect, "expect"),
            (6, b'c') => (Hdr::Cookie, "cookie"),
            (7, b'u') => (Hdr::Upgrade, "upgrade"),
            (7, b't') => (Hdr::Hop, "trailer"),
            (10, b'c') => (Hdr::Connection, "connection"),
            (10, b'k') => (Hdr::Hop, "keep-alive"),
            (14, b'c') => (Hdr::ContentLength, "content-length"),
            (15, b'x') => (Hdr::XForwardedFor, "x-forwarded-for"),
            (16, b'x') => (Hdr::XForwardedHost, "x-forwarded-host"),
            (16, b'p') => (Hdr::Hop, "proxy-connection"),
            (17, b't') => (Hdr::TransferEncoding, "transfer-encoding"),
            (17, b'x') => (Hdr::XForwardedProto, "x-forwarded-proto"),
            (18, b'p') => (Hdr::Hop, "proxy-authenticate"),
            (19, b'p') => (Hdr::Hop, "proxy-authorization"),
            _ => return Hdr::Other,
        };
        // `want` is lower case; OR-ing 0x20 lower-cases a letter and changes no other token
        // character into a letter or '-' (header names are tokens, checked by the parser).
        let differ = name
            .bytes()
            .zip(want.bytes())
            .fold(0u8, |acc, (a, b)| acc | ((a | 0x20) ^ b));
        if differ == 0 { kind } else { Hdr::Other }
    }

    /// Hop-by-hop: never forwarded in either direction.
    fn hop(self) -> bool {
        matches!(
            self,
            Hdr::Hop | Hdr::Connection | Hdr::TransferEncoding | Hdr::Upgrade
        )
    }
}

/// Hop-by-hop header names (RFC 9110 §7.6.1), never forwarded in either direction.
fn is_hop(name: &str) -> bool {
    Hdr::of(name).hop()
}

/// The tokens of a message's `Connection` headers: `close` and `upgrade` noted, and every
/// token other than `keep-alive` (a hop-by-hop name anyway) kept as a header name to drop.
/// Most messages say only `keep-alive` or `close`, so the per-header check is usually empty.
#[derive(Default)]
struct ConnTokens<'a> {
    close: bool,
    upgrade: bool,
    named: Vec<&'a [u8]>,
}

impl<'a> ConnTokens<'a> {
    fn add(&mut self, value: &'a [u8]) {
        // The usual values, as most clients and servers spell them.
        match value {
            b"keep-alive" | b"Keep-Alive" => return,
            b"close" => {
                self.close = true;
                self.named.push(value);
                return;
            }
            _ => {}
        }
        for t in value.split(|b| *b == b',') {
            let t = t.trim_ascii();
            if t.eq_ignore_ascii_case(b"keep-alive") || t.is_empty() {
                continue;
            }
            if t.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if t.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            }
            self.named.push(t);
        }
    }

    /// Is `name` listed (so hop-by-hop for this message)?
    fn names(&self, name: &str) -> bool {
        !self.named.is_empty()
            && self
                .named
                .iter()
                .any(|t| t.eq_ignore_ascii_case(name.as_bytes()))
    }
}

/// Copies kept header lines from the raw head they were parsed from: neighbouring lines go out
/// in one copy (the CRLF between them verified), instead of four small copies per line.
struct Lines<'a> {
    raw: &'a [u8],
    /// The span of raw lines not yet copied (without the last line's CRLF).
    run: Option<(usize, usize)>,
}

impl<'a> Lines<'a> {
    fn new(raw: &'a [u8]) -> Lines<'a> {
        Lines { raw, run: None }
    }

    /// Where `h`'s line (name to end of value) sits in `raw`, if it does.
    fn span(&self, h: &httparse::Header<'_>) -> Option<(usize, usize)> {
        let base = self.raw.as_ptr() as usize;
        let start = (h.name.as_ptr() as usize).checked_sub(base)?;
        let end = (h.value.as_ptr() as usize)
            .checked_sub(base)?
            .checked_add(h.value.len())?;
        (!h.value.is_empty() && start < end && end <= self.raw.len()).then_some((start, end))
    }

    /// Forward `h` (after those kept before it).
    fn keep(&mut self, out: &mut Vec<u8>, h: &httparse::Header<'_>) {
        let Some((start, end)) = self.span(h) else {
            self.flush(out);
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value);
            out.extend_from_slice(b"\r\n");
            return;
        };
        if let Some((from, to)) = self.run {
            if start == to + 2 && self.raw.get(to..start) == Some(&b"\r\n"[..]) {
                self.run = Some((from, end));
                return;
            }
            self.flush(out);
        }
        self.run = Some((start, end));
    }

    /// Copy what is kept so far; before anything else is written to `out`.
    fn flush(&mut self, out: &mut Vec<u8>) {
        if let Some((from, to)) = self.run.take() {
            out.extend_from_slice(&self.raw[from..to]);
            out.extend_from_slice(b"\r\n");
        }
    }
}

fn parse_len(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    // At most 19 digits: no overflow.
    v.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// Decide what to do with a parsed head (`data[..head_len]`; what follows may be its body).
fn classify(
    app: &Arc<App>,
    req: &httparse::Request<'_, '_>,
    data: &[u8],
    head_len: usize,
    client: &Client,
) -> Plan {
    let peer = client.addr;
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        // HTTP/1.0 (different keep-alive and body rules): hyper.
        return Plan::Handoff;
    };
    if method == "CONNECT" {
        return Plan::Reject(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "CONNECT is not supported: kinfrad is not a forward proxy".into(),
        );
    }
    if !target.starts_with('/') {
        return Plan::Handoff;
    }
    if !target
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b'#')
    {
        return Plan::Reject(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "invalid request target".into(),
        );
    }

    let mut host: Option<&[u8]> = None;
    let mut hosts = 0;
    let mut len: Option<u64> = None;
    let mut browser = false;
    let mut connection = ConnTokens::default();
    // Each header's kind, for the second pass that writes the upstream head.
    let mut kinds = [Hdr::Other; MAX_HEADERS];
    for (h, k) in req.headers.iter().zip(kinds.iter_mut()) {
        *k = Hdr::of(h.name);
        match *k {
            Hdr::Host => {
                hosts += 1;
                host = Some(h.value);
            }
            Hdr::ContentLength => {
                let Some(v) = parse_len(h.value) else {
                    return Plan::Reject(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        "invalid Content-Length".into(),
                    );
                };
                if len.is_some_and(|l| l != v) {
                    return Plan::Reject(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        "conflicting Content-Length headers".into(),
                    );
                }
                len = Some(v);
            }
            Hdr::TransferEncoding | Hdr::Upgrade | Hdr::Expect => return Plan::Handoff,
            Hdr::Connection => connection.add(h.value),
            Hdr::Accept => {
                let v = h.value;
                browser |= memchr::memmem::find(v, b"text/html").is_some()
                    || memchr::memmem::find(v, b"application/xhtml+xml").is_some();
            }
            _ => {}
        }
    }
    if connection.upgrade {
        return Plan::Handoff;
    }
    let close = connection.close;
    if hosts > 1 {
        return Plan::Reject(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "more than one Host header".into(),
        );
    }
    if hosts == 0 {
        // RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400.
        return Plan::Reject(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "an HTTP/1.1 request needs a Host header".into(),
        );
    }
    let host_key: std::borrow::Cow<'_, str> = match host {
        None => "".into(),
        Some(h) => match plain_host(h) {
            Some(k) => k.into(),
            None => {
                let Ok(text) = std::str::from_utf8(h) else {
                    return Plan::Reject(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        "Host header is not text".into(),
                    );
                };
                match crate::http::parse_host(text) {
                    Ok(k) => k.into(),
                    Err(e) => return Plan::Reject(StatusCode::BAD_REQUEST, "bad_request", e),
                }
            }
        },
    };
    let body_len = len.unwrap_or(0);
    // A body still on its way is hyper's: it streams both directions at once, so an upstream
    // that answers (or echoes) before reading the whole body is served correctly.
    if body_len > (data.len() - head_len) as u64 {
        return Plan::Handoff;
    }
    let head_only = method == "HEAD";
    let path = target.find('?').map_or(target, |q| &target[..q]);

    let local = |req: &httparse::Request<'_, '_>| -> Plan {
        if body_len > 0 {
            return Plan::Handoff;
        }
        match local_request(req, peer) {
            Ok(r) => Plan::Local {
                req: Box::new(r),
                head_len,
                close,
                head_only,
            },
            Err(e) => Plan::Reject(StatusCode::BAD_REQUEST, "bad_request", e),
        }
    };
    if is_own_path(path) {
        return local(req);
    }
    let services = app.services();
    let route = services.table.lookup(&host_key, path);
    let maint = app.maint();
    if let Some(m) = &maint.record {
        let covered = match route {
            Some(r) => m.target.covers(&r.target.name),
            None => m.target.covers_unrouted(),
        };
        if covered {
            // The common case, a browser asking for a page, is answered from a cached response;
            // JSON clients, HEAD and custom pages go through the router.
            if browser && !head_only && !close && body_len == 0 && maint.page_url.is_none() {
                return Plan::Maintenance {
                    head_len,
                    up: route.map(|r| r.target.clone()),
                };
            }
            return local(req);
        }
    }
    drop(maint);
    let Some(route) = route else {
        return local(req);
    };
    let up = route.target.clone();
    let cfg = up.cfg();
    if cfg.url.https {
        return local(req);
    }

    // The upstream request head.
    let trusted = peer.ip().is_loopback();
    let mut out = scratch(data.len() + 256);
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(cfg.url.base_path.as_bytes());
    if route.strip_prefix {
        out.extend_from_slice(crate::routes::strip(&route.spec.prefix, target).as_bytes());
    } else {
        out.extend_from_slice(target.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    match host {
        Some(h) if cfg.preserve_host => out.extend_from_slice(h),
        _ => out.extend_from_slice(cfg.url.authority.as_str().as_bytes()),
    }
    out.extend_from_slice(b"\r\n");
    let mut xff: Vec<&[u8]> = Vec::new();
    let mut keep_xfp = false;
    let mut keep_xfh = false;
    let underscores = services.underscores;
    let mut lines = Lines::new(&data[..head_len]);
    for (h, &kind) in req.headers.iter().zip(kinds.iter()) {
        let n = h.name;
        if kind == Hdr::Host || kind.hop() || connection.names(n) {
            continue;
        }
        match kind {
            // nginx's `underscores_in_headers off`: `X_Forwarded_For` is not `X-Forwarded-For`
            // here, but is to an application that maps both to one CGI variable.
            Hdr::Other if !underscores && n.as_bytes().contains(&b'_') => continue,
            // kinfrad's admin session is never an upstream's business.
            Hdr::Cookie => {
                if let Some(rest) = crate::proxy::without_session_cookie(h.value) {
                    lines.flush(&mut out);
                    if !rest.is_empty() {
                        out.extend_from_slice(b"cookie: ");
                        out.extend_from_slice(&rest);
                        out.extend_from_slice(b"\r\n");
                    }
                    continue;
                }
            }
            Hdr::XForwardedFor => {
                if trusted {
                    xff.push(h.value);
                }
                continue;
            }
            Hdr::XForwardedProto if !trusted => continue,
            Hdr::XForwardedProto => keep_xfp = true,
            Hdr::XForwardedHost if !trusted => continue,
            Hdr::XForwardedHost => keep_xfh = true,
            Hdr::ContentLength => continue,
            _ => {}
        }
        lines.keep(&mut out, h);
    }
    lines.flush(&mut out);
    out.extend_from_slice(b"x-forwarded-for: ");
    for v in &xff {
        out.extend_from_slice(v);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(client.ip.as_bytes());
    out.extend_from_slice(b"\r\n");
    if !keep_xfp {
        out.extend_from_slice(b"x-forwarded-proto: http\r\n");
    }
    if !keep_xfh && let Some(h) = host {
        out.extend_from_slice(b"x-forwarded-host: ");
        out.extend_from_slice(h);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(l) = len {
        out.extend_from_slice(format!("content-length: {l}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    // The body (all of it already read) goes out in the same write as the head.
    let body_end = head_len + body_len as usize;
    out.extend_from_slice(&data[head_len..body_end]);

    Plan::Proxy(ProxyPlan {
        gate: cfg.fallback.enabled,
        up: up.clone(),
        head: out,
        head_len: body_end,
        body_len,
        head_only,
        retryable: body_len == 0 && matches!(method, "GET" | "HEAD" | "OPTIONS"),
        browser,
        close,
        max_body: cfg.max_request_body,
        header_timeout: cfg.timeouts.header,
        idle: cfg.timeouts.idle,
    })
}

/// The parsed head as an `http::Request` for the router (no body).
fn local_request(
    req: &httparse::Request<'_, '_>,
    peer: SocketAddr,
) -> Result<http::Request<Body>, String> {
    let method = Method::from_bytes(req.method.unwrap_or("GET").as_bytes())
        .map_err(|_| "invalid method".to_string())?;
    let uri: http::Uri = req
        .path
        .unwrap_or("/")
        .parse()
        .map_err(|_| "invalid request target".to_string())?;
    let mut r = http::Request::new(Body::empty());
    *r.method_mut() = method;
    *r.uri_mut() = uri;
    *r.version_mut() = http::Version::HTTP_11;
    let h = r.headers_mut();
    h.reserve(req.headers.len());
    for x in req.headers.iter() {
        let n = HeaderName::from_bytes(x.name.as_bytes())
            .map_err(|_| format!("invalid header name {:?}", x.name))?;
        let v =
            HeaderValue::from_bytes(x.value).map_err(|_| format!("invalid value of {}", x.name))?;
        h.append(n, v);
    }
    r.extensions_mut().insert(crate::http::Peer(peer));
    Ok(r)
}

// ------------------------------------------------------------------------------ forwarding

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// The upstream's response head, rewritten for the client.
struct RespHead {
    out: Vec<u8>,
    len: usize,
    status: u16,
    framing: Framing,
    /// The upstream connection may carry another request afterwards.
    reusable: bool,
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
            // Uninitialised header slots: no 4 KB memset per response.
            let mut headers =
                [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut []);
            let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut resp,
                rbuf.filled(),
                &mut headers,
            );
            match parsed {
                Ok(httparse::Status::Complete(n)) if n > MAX_RESPONSE_HEAD => {
                    return Err(ForwardError::Failed(
                        "upstream response head too large".into(),
                    ));
                }
                Ok(httparse::Status::Complete(n)) => {
                    let status = resp.code.unwrap_or(0);
                    if (100..200).contains(&status) && status != 101 {
                        // RFC 9110 §15.2: interim responses (103 Early Hints, 102) go on to
                        // the HTTP/1.1 client, hop-by-hop headers removed.
                        let interim = rewrite_interim(&resp, rbuf.filled(), n);
                        rbuf.consume(n);
                        let sent = write_timed(client, &interim, send_limit).await;
                        give_scratch(interim);
                        if let Err(e) = sent {
                            return Ok(Got::ClientGone(e));
                        }
                        continue;
                    }
                    if status == 101 {
                        return Err(ForwardError::Failed(
                            "upstream switched protocols unasked".into(),
                        ));
                    }
                    return rewrite_response(&resp, rbuf.filled(), n, head_only).map(Got::Head);
                }
                Ok(httparse::Status::Partial) if rbuf.len() > MAX_RESPONSE_HEAD => {
                    return Err(ForwardError::Failed(
                        "upstream response head too large".into(),
                    ));
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => {
                    return Err(ForwardError::Failed(format!(
                        "invalid upstream response: {e}"
                    )));
                }
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
fn rewrite_interim(resp: &httparse::Response<'_, '_>, raw: &[u8], head_len: usize) -> Vec<u8> {
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

fn rewrite_response(
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
async fn proxy(
    app: &Arc<App>,
    client: &mut TcpStream,
    buf: &mut Buf,
    p: ProxyPlan,
    timer: &mut Deadline,
) -> io::Result<bool> {
    let up = p.up.clone();
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
    // The breaker's clock needs no precision finer than a request: `start` saves a clock read.
    up.on_response(start, head.status >= 500);

    let close = p.close || head.framing == Framing::UntilClose;
    let mut out = head.out;
    if close {
        out.extend_from_slice(b"connection: close\r\n");
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
    let r = crate::http::failure_response(app, &p.up, p.browser, p.gate, e);
    write_response(client, r, p.head_only, p.close).await
}

/// Copy exactly `n` bytes from `from` to `to`.
async fn relay_fixed(
    from: &mut TcpStream,
    to: &mut TcpStream,
    mut n: u64,
    idle: Duration,
) -> io::Result<()> {
    let mut b = take_buf(BODY_CHUNK);
    let r = async {
        while n > 0 {
            let want = (n.min(b.len() as u64)) as usize;
            let got = read_timed(from, &mut b[..want], idle).await?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "body ended early",
                ));
            }
            write_timed(to, &b[..got], idle).await?;
            n -= got as u64;
        }
        Ok(())
    }
    .await;
    give_buf(b);
    r
}

/// Relay a chunked body verbatim until its end; `Ok(true)` when bytes followed it.
async fn relay_chunked(
    from: &mut TcpStream,
    to: &mut TcpStream,
    mut c: Chunked,
    idle: Duration,
) -> io::Result<bool> {
    let mut b = take_buf(BODY_CHUNK);
    let r = async {
        loop {
            let got = read_timed(from, &mut b, idle).await?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "chunked body ended early",
                ));
            }
            let (used, end) = c.feed(&b[..got]).map_err(io::Error::other)?;
            write_timed(to, &b[..used], idle).await?;
            if end {
                return Ok(used < got);
            }
        }
    }
    .await;
    give_buf(b);
    r
}

async fn relay_to_eof(from: &mut TcpStream, to: &mut TcpStream, idle: Duration) -> io::Result<()> {
    let mut b = take_buf(BODY_CHUNK);
    let r = async {
        loop {
            let got = read_timed(from, &mut b, idle).await?;
            if got == 0 {
                return Ok(());
            }
            write_timed(to, &b[..got], idle).await?;
        }
    }
    .await;
    give_buf(b);
    r
}

async fn read_timed(from: &mut TcpStream, b: &mut [u8], idle: Duration) -> io::Result<usize> {
    match tokio::time::timeout(idle, from.read(b)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "body stalled")),
    }
}

// ------------------------------------------------------------------------------ chunked framing

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum ChunkState {
    #[default]
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLineLf,
    EndLf,
    Done,
}

/// Finds where a chunked body ends, without changing it.
#[derive(Debug, Default)]
struct Chunked {
    state: ChunkState,
    size: u64,
    digits: u32,
    /// Bytes of extensions or trailers seen (bounded).
    meta: usize,
}

const MAX_CHUNK_META: usize = 16 * 1024;

impl Chunked {
    /// Consume `data`; returns (bytes that belong to the body, whether the body ended there).
    fn feed(&mut self, data: &[u8]) -> Result<(usize, bool), &'static str> {
        let mut i = 0;
        while i < data.len() {
            if self.state == ChunkState::Data {
                let take = (self.size.min((data.len() - i) as u64)) as usize;
                i += take;
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = ChunkState::DataCr;
                }
                continue;
            }
            let b = data[i];
            i += 1;
            self.state = match (self.state, b) {
                (ChunkState::Size, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                    let d = (b as char).to_digit(16).ok_or("bad chunk size")? as u64;
                    if self.digits >= 15 {
                        return Err("chunk size too large");
                    }
                    self.size = self.size * 16 + d;
                    self.digits += 1;
                    ChunkState::Size
                }
                (ChunkState::Size, b';' | b' ' | b'\t') if self.digits > 0 => ChunkState::Ext,
                (ChunkState::Size, b'\r') if self.digits > 0 => ChunkState::SizeLf,
                (ChunkState::Size, _) => return Err("bad chunk size"),
                (ChunkState::Ext, b'\r') => ChunkState::SizeLf,
                (ChunkState::Ext, b'\n') => return Err("bare LF in chunk extension"),
                (ChunkState::Ext, _) => {
                    self.meta += 1;
                    if self.meta > MAX_CHUNK_META {
                        return Err("chunk extensions too long");
                    }
                    ChunkState::Ext
                }
                (ChunkState::SizeLf, b'\n') => {
                    self.digits = 0;
                    if self.size == 0 {
                        ChunkState::TrailerStart
                    } else {
                        ChunkState::Data
                    }
                }
                (ChunkState::DataCr, b'\r') => ChunkState::DataLf,
                (ChunkState::DataLf, b'\n') => ChunkState::Size,
                (ChunkState::TrailerStart, b'\r') => ChunkState::EndLf,
                (ChunkState::TrailerStart | ChunkState::TrailerLine, b'\n') => {
                    return Err("bare LF in trailer");
                }
                (ChunkState::TrailerLine, b'\r') => ChunkState::TrailerLineLf,
                (ChunkState::TrailerStart | ChunkState::TrailerLine, _) => {
                    self.meta += 1;
                    if self.meta > MAX_CHUNK_META {
                        return Err("trailers too long");
                    }
                    ChunkState::TrailerLine
                }
                (ChunkState::TrailerLineLf, b'\n') => ChunkState::TrailerStart,
                (ChunkState::EndLf, b'\n') => {
                    self.state = ChunkState::Done;
                    return Ok((i, true));
                }
                _ => return Err("malformed chunked body"),
            };
        }
        Ok((i, self.state == ChunkState::Done))
    }
}

// ------------------------------------------------------------------------------ local responses

thread_local! {
    static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

fn date_line(out: &mut Vec<u8>) {
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

type MaintCache = Option<(Arc<crate::app::MaintView>, u64, u64, bytes::Bytes)>;

thread_local! {
    /// The maintenance page as sent, for one (published state, Retry-After, second).
    static MAINT: RefCell<MaintCache> = const { RefCell::new(None) };
}

/// The whole HTML maintenance response (head and body), counted as a hit.
fn maintenance_bytes(app: &App, up: Option<&Upstream>) -> bytes::Bytes {
    app.hit();
    if let Some(u) = up {
        u.maintenance_hits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let view = app.maint_full();
    let retry = view
        .record
        .as_ref()
        .map(|m| m.retry_after_secs(crate::app::now_ms()))
        .unwrap_or(0);
    let sec = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let hit = MAINT.with(|c| match &*c.borrow() {
        Some((v, r, s, b)) if Arc::ptr_eq(v, &view) && *r == retry && *s == sec => Some(b.clone()),
        _ => None,
    });
    if let Some(b) = hit {
        return b;
    }
    let resp =
        crate::http::maintenance_response(true, view.html.clone(), &app.status_view(), retry);
    let b = bytes::Bytes::from(serialize_full(resp));
    MAINT.with(|c| *c.borrow_mut() = Some((view, retry, sec, b.clone())));
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
async fn write_response(
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

// ------------------------------------------------------------------------------ handoff IO

/// A connection with bytes already read from it, replayed before reading on; and whose writes
/// fail once the peer has taken nothing for `send_limit` (the fast path's `write_timed`, for
/// what hyper serves: a client that stops reading must not pin its connection, and the
/// upstream connection streaming to it, forever).
pub struct Prefixed {
    pre: Vec<u8>,
    pos: usize,
    inner: TcpStream,
    send_limit: Duration,
    /// Armed while a write waits for the peer; created on the first such wait.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    waiting: bool,
}

impl Prefixed {
    pub fn new(inner: TcpStream, pre: Vec<u8>, send_limit: Duration) -> Prefixed {
        Prefixed {
            pre,
            pos: 0,
            inner,
            send_limit,
            stall: None,
            waiting: false,
        }
    }

    /// After a write-side poll: progress disarms the stall timer; a wait arms it (once per
    /// wait) and fails the write when it fires.
    fn track<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.waiting = false;
            return r;
        }
        let due = tokio::time::Instant::now() + self.send_limit;
        let timer = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        if !self.waiting {
            timer.as_mut().reset(due);
            self.waiting = true;
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.pre.len() {
            let n = (self.pre.len() - self.pos).min(out.remaining());
            let start = self.pos;
            out.put_slice(&self.pre[start..start + n]);
            self.pos += n;
            if self.pos == self.pre.len() {
                self.pre = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, out)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, b);
        self.track(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.track(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.track(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.track(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(parts: &[&[u8]]) -> Result<(usize, bool), &'static str> {
        let mut c = Chunked::default();
        let mut total = 0;
        for p in parts {
            let (used, end) = c.feed(p)?;
            total += used;
            if end {
                return Ok((total, true));
            }
        }
        Ok((total, false))
    }

    #[test]
    fn chunked_end_is_found_across_splits() {
        let body =
            b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let end = body.len() - 4;
        assert_eq!(feed_all(&[body]), Ok((end, true)));
        // Every split point gives the same answer.
        for cut in 1..body.len() {
            let (a, b) = body.split_at(cut);
            let r = feed_all(&[a, b]).expect("valid");
            assert_eq!(r, (end, true), "cut at {cut}");
        }
        assert_eq!(feed_all(&[b"0\r\n\r\n"]), Ok((5, true)));
        assert_eq!(feed_all(&[b"5\r\nhel"]), Ok((6, false)));
    }

    #[test]
    fn chunked_garbage_is_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\nhello",
            b"5\r\nhelloXY",
            b"ffffffffffffffffff\r\n",
            b"0\r\nbad\ntrailer",
        ] {
            assert!(
                feed_all(&[bad]).is_err(),
                "{:?} accepted",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn content_length_values() {
        assert_eq!(parse_len(b"12"), Some(12));
        assert_eq!(parse_len(b" 7 "), Some(7));
        assert_eq!(
            parse_len(b"9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
        for bad in [
            &b""[..],
            b"-1",
            b"1,2",
            b"+5",
            b"0x10",
            b"99999999999999999999",
        ] {
            assert_eq!(parse_len(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn hop_by_hop_and_connection_named() {
        assert!(is_hop("Connection") && is_hop("TE") && is_hop("transfer-encoding"));
        for h in crate::proxy::HOP {
            assert!(is_hop(h) && is_hop(&h.to_ascii_uppercase()), "{h}");
        }
        assert!(!is_hop("user-agent") && !is_hop("accept"));
        assert!(!is_hop("x-forwarded-for"));
        let mut c = ConnTokens::default();
        c.add(b"keep-alive, X-Secret");
        assert!(c.names("x-secret") && !c.close && !c.upgrade);
        let mut c = ConnTokens::default();
        c.add(b"keep-alive");
        assert!(!c.names("x-secret") && c.named.is_empty());
        c.add(b" Close ,Upgrade");
        assert!(c.close && c.upgrade && c.names("close"));
        for h in crate::proxy::HOP {
            assert!(Hdr::of(h).hop(), "{h}");
        }
        assert_eq!(Hdr::of("Content-Length"), Hdr::ContentLength);
        assert_eq!(Hdr::of("X-FORWARDED-PROTO"), Hdr::XForwardedProto);
        assert_eq!(Hdr::of("content-lengtH"), Hdr::ContentLength);
        assert_eq!(Hdr::of("content-lengths"), Hdr::Other);
    }

    #[test]
    fn plain_hosts_agree_with_the_full_parser() {
        for h in [
            "example.com",
            "example.com:8080",
            "127.0.0.1:9100",
            "a_b-c.d",
            "localhost:65535",
        ] {
            let full = crate::http::parse_host(h).expect("valid");
            assert_eq!(plain_host(h.as_bytes()), Some(full.as_str()), "{h}");
        }
        // Left to the full parser (which lower-cases, or refuses).
        for h in [
            "Example.com",
            "[::1]:80",
            "host:",
            "host:99999",
            "a@b",
            "",
            ":80",
            "a b",
            "host:80:80",
            "host:8a",
            "hö",
        ] {
            assert_eq!(plain_host(h.as_bytes()), None, "{h}");
        }
    }

    #[test]
    fn own_paths_go_to_the_router() {
        for p in [
            "/health",
            "/__status__",
            "/__events__",
            "/kinfra",
            "/kinfra/x",
            "/api/maintenance/status",
            "/api/dashboard/routes",
        ] {
            assert!(is_own_path(p), "{p}");
        }
        for p in ["/", "/api/users", "/healthz/x", "/app"] {
            assert!(!is_own_path(p), "{p}");
        }
    }

    fn rewrite(raw: &[u8]) -> Result<RespHead, ForwardError> {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut r = httparse::Response::new(&mut headers);
        match r.parse(raw) {
            Ok(httparse::Status::Complete(n)) => rewrite_response(&r, raw, n, false),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn response_heads_are_rewritten() {
        let h = rewrite(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive, X-Up\r\nX-Up: 1\r\nKeep-Alive: timeout=5\r\nX-Kept: 2\r\n\r\nhello")
            .expect("ok");
        let text = String::from_utf8(h.out).expect("utf8");
        assert_eq!(h.framing, Framing::Length(5));
        assert!(h.reusable);
        assert!(
            text.contains("X-Kept: 2") && text.contains("Content-Length: 5"),
            "{text}"
        );
        assert!(
            !text.contains("X-Up") && !text.contains("Keep-Alive") && !text.contains("Connection"),
            "{text}"
        );
        assert!(text.contains("date: "), "a Date is added: {text}");

        let h =
            rewrite(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
                .expect("ok");
        let text = String::from_utf8(h.out).expect("utf8");
        assert_eq!(h.framing, Framing::Chunked);
        assert!(
            !text.contains("Content-Length"),
            "both framings never reach the client: {text}"
        );

        assert!(
            rewrite(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n").is_err()
        );
        let h = rewrite(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").expect("ok");
        assert!(!h.reusable, "an HTTP/1.0 upstream connection closes");
        let h = rewrite(b"HTTP/1.1 200 OK\r\n\r\n").expect("ok");
        assert_eq!(h.framing, Framing::UntilClose);
    }

    #[test]
    fn connection_never_names_away_the_framing() {
        // An upstream's `Connection: content-length` would leave the client no way to find the
        // body's end: the Content-Length stays, and so does the framing.
        let h = rewrite(
            b"HTTP/1.1 200 OK\r\nConnection: content-length, x-gone\r\nContent-Length: 5\r\nX-Gone: 1\r\n\r\nhello",
        )
        .expect("ok");
        let text = String::from_utf8(h.out).expect("utf8");
        assert_eq!(h.framing, Framing::Length(5));
        assert!(text.contains("Content-Length: 5"), "{text}");
        assert!(!text.contains("X-Gone"), "{text}");
    }

    #[test]
    fn interim_responses_are_rewritten_for_the_client() {
        let raw = b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\nConnection: x-hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut r = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(n)) = r.parse(raw) else {
            panic!("parse")
        };
        let out = String::from_utf8(rewrite_interim(&r, raw, n)).expect("utf8");
        assert_eq!(
            out,
            "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
        );
    }

    #[test]
    fn kept_lines_are_copied_exactly_and_always_end_in_crlf() {
        // Neighbours go out in one piece; a dropped line, a bare LF, an empty value and odd
        // whitespace each end a piece, and every line leaves with CRLF.
        let raw = b"HTTP/1.1 200 OK\r\nA: 1\r\nB:2\r\nConnection: close\r\nC:  3\nD: 4\r\nE:\r\nF: 6\r\nDate: x\r\nContent-Length: 0\r\n\r\n";
        let h = rewrite(raw).expect("ok");
        assert_eq!(
            String::from_utf8(h.out).expect("utf8"),
            "HTTP/1.1 200 OK\r\nA: 1\r\nB:2\r\nC:  3\r\nD: 4\r\nE: \r\nF: 6\r\nDate: x\r\nContent-Length: 0\r\n"
        );
        assert!(!h.reusable, "Connection: close");
    }
}

// ------------------------------------------------------------------------------ fuzzing

/// Entry points for the fuzz targets in `fuzz/`, built only with `--cfg fuzzing` (cargo-fuzz
/// sets it). They run the real head parse and `classify`, `rewrite_response` and `Chunked` on
/// bytes, without sockets, parsing exactly as `read_head` and `read_response_head` do.
#[cfg(any(fuzzing, test))]
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// What the fast path does with the bytes a client sent.
    #[derive(Debug)]
    pub enum Decision {
        /// No whole head yet: the loop reads more.
        Partial,
        /// 431: the head is too large or has too many lines.
        TooLarge,
        /// 400 from the parser.
        Malformed,
        Handoff,
        Reject(u16),
        Local {
            head_len: usize,
        },
        Maintenance {
            head_len: usize,
        },
        /// `upstream`: what is written to the service (head and body); `consumed`: the client
        /// bytes that request used.
        Proxy {
            service: String,
            upstream: Vec<u8>,
            consumed: usize,
            body_len: u64,
        },
    }

    /// `read_head`'s parse of `data`, then `classify` for a client at `peer`.
    pub fn request(app: &Arc<App>, data: &[u8], peer: SocketAddr, max_head: usize) -> Decision {
        if data.starts_with(b"PRI ") {
            return Decision::Handoff;
        }
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let n = match req.parse_with_uninit_headers(data, &mut headers) {
            Ok(httparse::Status::Complete(n)) if n > max_head => return Decision::TooLarge,
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if data.len() > max_head => return Decision::TooLarge,
            Ok(httparse::Status::Partial) => return Decision::Partial,
            Err(httparse::Error::TooManyHeaders) => return Decision::TooLarge,
            Err(_) => return Decision::Malformed,
        };
        let client = Client {
            addr: peer,
            ip: peer.ip().to_string(),
        };
        match classify(app, &req, data, n, &client) {
            Plan::Handoff => Decision::Handoff,
            Plan::Reject(status, _, _) => Decision::Reject(status.as_u16()),
            Plan::Local { head_len, .. } => Decision::Local { head_len },
            Plan::Maintenance { head_len, .. } => Decision::Maintenance { head_len },
            Plan::Proxy(p) => Decision::Proxy {
                service: p.up.name.clone(),
                upstream: p.head,
                consumed: p.head_len,
                body_len: p.body_len,
            },
        }
    }

    /// How the rewritten response's body is delimited.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum BodyFraming {
        None,
        Length(u64),
        Chunked,
        UntilClose,
    }

    /// A response head as `proxy` gets it: `head` without its final CRLF, `consumed` the
    /// upstream bytes it used (after skipped 1xx heads).
    #[derive(Debug)]
    pub struct Rewritten {
        /// The 1xx heads passed on to the client before it (`rewrite_interim`), whole.
        pub interim: Vec<Vec<u8>>,
        pub head: Vec<u8>,
        pub consumed: usize,
        pub status: u16,
        pub framing: BodyFraming,
        pub reusable: bool,
    }

    /// `read_response_head`'s parse of `raw` (1xx heads rewritten as for the client), then
    /// `rewrite_response`.
    /// `Ok(None)`: no whole head yet.
    pub fn response(raw: &[u8], head_only: bool) -> Result<Option<Rewritten>, String> {
        let mut skipped = 0;
        let mut interim = Vec::new();
        loop {
            let data = &raw[skipped..];
            let mut headers =
                [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut []);
            let n = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut resp,
                data,
                &mut headers,
            ) {
                Ok(httparse::Status::Complete(n)) if n > MAX_RESPONSE_HEAD => {
                    return Err("too large".into());
                }
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) if data.len() > MAX_RESPONSE_HEAD => {
                    return Err("too large".into());
                }
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => return Err(e.to_string()),
            };
            let status = resp.code.unwrap_or(0);
            if (100..200).contains(&status) && status != 101 {
                interim.push(rewrite_interim(&resp, data, n));
                skipped += n;
                continue;
            }
            if status == 101 {
                return Err("switched protocols".into());
            }
            let h = rewrite_response(&resp, data, n, head_only).map_err(|e| format!("{e:?}"))?;
            return Ok(Some(Rewritten {
                interim,
                head: h.out,
                consumed: skipped + h.len,
                status: h.status,
                framing: match h.framing {
                    Framing::None => BodyFraming::None,
                    Framing::Length(l) => BodyFraming::Length(l),
                    Framing::Chunked => BodyFraming::Chunked,
                    Framing::UntilClose => BodyFraming::UntilClose,
                },
                reusable: h.reusable,
            }));
        }
    }

    /// A chunked body fed to one decoder in `parts`, as `proxy` and `relay_chunked` feed it:
    /// (body bytes, whether it ended), counted from the first part.
    pub fn chunked(parts: &[&[u8]]) -> Result<(usize, bool), &'static str> {
        let mut c = Chunked::default();
        let mut total = 0;
        for p in parts {
            let (used, end) = c.feed(p)?;
            total += used;
            if end {
                return Ok((total, true));
            }
        }
        Ok((total, false))
    }
}
