//! Forwarding a request to its upstream: pooled keep-alive connections, streamed bodies,
//! hop-by-hop headers removed, `X-Forwarded-*` added, `Upgrade` (WebSocket) tunnelled, timeouts.
//! Any failure before the upstream's response head becomes the upstream's fallback page, never a
//! bare 502.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body::{Frame, SizeHint};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;

use crate::circuit::Admit;
use crate::routes::Route;
use crate::service::ServiceConfig;
use crate::upstream::Upstream;

/// A pooled client for one upstream.
pub struct UpstreamClient {
    client: Client<HttpsConnector<HttpConnector>, Body>,
}

impl UpstreamClient {
    pub fn new(
        cfg: &ServiceConfig,
        extra_ca: Option<&std::path::Path>,
    ) -> Result<UpstreamClient, String> {
        let tls = crate::custom::tls_config(extra_ca)?.config;
        Ok(UpstreamClient {
            client: crate::custom::pooled_client(
                tls,
                cfg.timeouts.connect,
                cfg.timeouts.idle,
                1024,
            ),
        })
    }
}

impl UpstreamClient {
    /// Send a probe and read its status (the body is drained and dropped).
    /// `Err((is_connect_error, text))`.
    pub async fn probe(&self, req: Request<Body>) -> Result<u16, (bool, String)> {
        match self.client.request(req).await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let _ = http_body_util::BodyExt::collect(http_body_util::Limited::new(
                    resp.into_body(),
                    64 * 1024,
                ))
                .await;
                Ok(status)
            }
            Err(e) if e.is_connect() => Err((true, connect_text(&e))),
            Err(e) => Err((false, crate::errors::error_chain(&e))),
        }
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded in either direction.
pub const HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Remove hop-by-hop headers, including those named in `Connection`.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    if h.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            // A message's own framing and Host are never "hop-by-hop by Connection": an
            // upstream's `Connection: content-length` must not unframe its response.
            .filter(|n| *n != header::CONTENT_LENGTH && *n != header::HOST)
            .collect();
        for n in named {
            h.remove(n);
        }
    }
    for n in HOP {
        h.remove(*n);
    }
}

/// A `Cookie` header value without kinfrad's own session cookie (an admin credential that no
/// upstream may see). `None`: the value does not carry it (forward it as it is);
/// `Some(rest)`: the other cookies, `"; "`-joined (empty when it was the only one).
pub fn without_session_cookie(value: &[u8]) -> Option<Vec<u8>> {
    let name = crate::auth::COOKIE.as_bytes();
    memchr::memmem::find(value, name)?;
    let mut out = Vec::with_capacity(value.len());
    let mut dropped = false;
    for pair in value.split(|b| *b == b';') {
        let pair = pair.trim_ascii();
        if pair.is_empty() {
            continue;
        }
        let key = pair
            .split(|b| *b == b'=')
            .next()
            .unwrap_or(pair)
            .trim_ascii();
        if key == name {
            dropped = true;
            continue;
        }
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(pair);
    }
    dropped.then_some(out)
}

/// Remove kinfrad's session cookie from every `Cookie` header (HTTP/2 clients send one header
/// per cookie); a header left empty goes.
pub fn strip_session_cookie(h: &mut HeaderMap) {
    if !h
        .get_all(header::COOKIE)
        .iter()
        .any(|v| without_session_cookie(v.as_bytes()).is_some())
    {
        return;
    }
    let kept: Vec<HeaderValue> = h
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| match without_session_cookie(v.as_bytes()) {
            None => Some(v.clone()),
            Some(rest) if rest.is_empty() => None,
            Some(rest) => HeaderValue::from_bytes(&rest).ok(),
        })
        .collect();
    h.remove(header::COOKIE);
    for v in kept {
        h.append(header::COOKIE, v);
    }
}

/// Drop request headers whose names contain `_` (unless `underscores_in_headers` allows them):
/// `X_Forwarded_For` would pass kinfrad's `X-Forwarded-For` rule and reach an application that
/// maps `_` and `-` to the same CGI variable.
pub fn strip_underscore_names(h: &mut HeaderMap) {
    if !h.keys().any(|k| k.as_str().contains('_')) {
        return;
    }
    let names: Vec<HeaderName> = h
        .keys()
        .filter(|k| k.as_str().contains('_'))
        .cloned()
        .collect();
    for n in names {
        h.remove(n);
    }
}

/// Is this an HTTP/1.1 upgrade request (WebSocket and friends)?
pub fn upgrade_protocol(req: &Request<Body>) -> Option<HeaderValue> {
    let conn_upgrade = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
    if !conn_upgrade {
        return None;
    }
    let proto = req.headers().get(header::UPGRADE)?;
    // h2c (RFC 7540 §3.2, removed by RFC 9113) is refused: kinfrad speaks HTTP/2 to clients
    // itself and upstreams get HTTP/1.1, so an h2c upgrade would only open a raw tunnel past
    // kinfrad's HTTP handling. The request is served as plain HTTP/1.1 instead (RFC 9110 §7.8:
    // a server may ignore Upgrade).
    let h2c = proto
        .to_str()
        .map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("h2c")))
        .unwrap_or(true);
    (!h2c).then(|| proto.clone())
}

/// Why forwarding failed.
#[derive(Debug)]
pub enum ForwardError {
    /// Circuit open or upstream not ready: never sent.
    NotAdmitted,
    /// Connecting failed (refused, unreachable, connect timeout).
    Connect(String),
    /// Connected but no response head in time.
    Timeout(Duration),
    /// Sent, but the connection failed before a response.
    Failed(String),
    /// The request body exceeded the limit.
    TooLarge(u64),
    /// The client's own request body failed (malformed chunked framing, abandoned mid-body):
    /// the client's fault, answered 400 and never counted against the upstream.
    ClientBody(String),
    /// The client stopped sending its request body for longer than the header timeout: 408,
    /// the client's fault.
    ClientStalled(Duration),
}

/// Human text for a connect error ("Connection refused").
fn connect_text(e: &hyper_util::client::legacy::Error) -> String {
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "Connection refused".to_string(),
                std::io::ErrorKind::TimedOut => "Connect timed out".to_string(),
                _ => io.to_string(),
            };
        }
        cur = c.source();
    }
    crate::errors::error_chain(e)
}

/// The URI to send upstream.
fn upstream_uri(cfg: &ServiceConfig, route: &Route<Upstream>, uri: &Uri) -> Result<Uri, String> {
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let pq = if route.strip_prefix {
        crate::routes::strip(&route.spec.prefix, pq)
    } else {
        pq.to_string()
    };
    let full = format!("{}{}", cfg.url.base_path, pq);
    Uri::builder()
        .scheme(if cfg.url.https { "https" } else { "http" })
        .authority(cfg.url.authority.clone())
        .path_and_query(full)
        .build()
        .map_err(|e| format!("cannot build upstream URI: {e}"))
}

/// Set `X-Forwarded-For/-Proto/-Host`. `host` is the client's Host (or HTTP/2 authority) as
/// sent, port and case included.
pub(crate) fn add_forwarded(
    h: &mut HeaderMap,
    peer: Option<SocketAddr>,
    host: Option<&HeaderValue>,
) {
    let trusted = peer.is_some_and(|p| p.ip().is_loopback());
    if let Some(peer) = peer {
        let ip = peer.ip().to_string();
        let v = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prev) if trusted => format!("{prev}, {ip}"),
            _ => ip,
        };
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert("x-forwarded-for", v);
        }
    }
    // A loopback peer (a tunnel or a TLS terminator on this host) may already have set these.
    if !(trusted && h.contains_key("x-forwarded-proto")) {
        h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    }
    if !(trusted && h.contains_key("x-forwarded-host"))
        && let Some(v) = host
    {
        h.insert("x-forwarded-host", v.clone());
    }
}

/// Forward `req` to `up`. `Err` tells the caller to serve the fallback page (or, for a fault
/// of the client's own, an error for that client).
pub async fn forward(
    up: &Arc<Upstream>,
    route: &Route<Upstream>,
    mut req: Request<Body>,
    peer: Option<SocketAddr>,
    gate: bool,
    underscores: bool,
) -> Result<Response<Body>, ForwardError> {
    let now = Instant::now();
    let admit = if gate {
        match up.admit(now) {
            Some(a) => a,
            None => return Err(ForwardError::NotAdmitted),
        }
    } else {
        Admit::Yes
    };
    // Whatever ends this request without the upstream's outcome being recorded (a client
    // fault, this future dropped because the client went away) gives a half-open trial back.
    let mut trial = TrialGuard {
        up,
        armed: admit == Admit::Trial,
    };
    let cfg = up.cfg();
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > cfg.max_request_body
    {
        return Err(ForwardError::TooLarge(cfg.max_request_body));
    }
    let uri = upstream_uri(&cfg, route, req.uri()).map_err(ForwardError::Failed)?;
    let upgrade = upgrade_protocol(&req);
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));

    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    strip_session_cookie(&mut parts.headers);
    if !underscores {
        strip_underscore_names(&mut parts.headers);
    }
    // The client's host: an absolute-form target's authority wins over its Host header
    // (RFC 9112 §3.2.2), as it did for routing; HTTP/2 carries it there too.
    let header_host = parts.headers.remove(header::HOST);
    let client_host = match parts.uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => header_host,
    };
    add_forwarded(&mut parts.headers, peer, client_host.as_ref());
    // By default the upstream sees its own address as Host (as nginx's proxy_pass does);
    // `preserve_host` passes the client's instead (virtual hosts, absolute redirects).
    if cfg.preserve_host
        && let Some(h) = client_host
    {
        parts.headers.insert(header::HOST, h);
    }
    if let Some(proto) = &upgrade {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, proto.clone());
    }
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    let limit = cfg.max_request_body;
    let sent = Arc::new(BodyWatch::default());
    let body = Body::new(ClientBody {
        inner: body,
        left: limit,
        watch: sent.clone(),
    });
    let out = Request::from_parts(parts, body);

    let client = up.client.load_full();
    let result = tokio::time::timeout(cfg.timeouts.header, client.client.request(out)).await;
    // A failure the client's body caused is the client's, whatever hyper made of it.
    let client_fault = |timed_out: bool| match sent.fault() {
        Some(BodyFault::TooLarge) => Some(ForwardError::TooLarge(limit)),
        Some(BodyFault::Client(why)) => Some(ForwardError::ClientBody(why)),
        None if timed_out && sent.waiting_on_client() => {
            Some(ForwardError::ClientStalled(cfg.timeouts.header))
        }
        None => None,
    };
    let resp = match result {
        Err(_) => {
            if let Some(e) = client_fault(true) {
                return Err(e);
            }
            trial.armed = false;
            up.on_error(
                Instant::now(),
                false,
                format!(
                    "No response within {}",
                    humantime::format_duration(cfg.timeouts.header)
                ),
            );
            return Err(ForwardError::Timeout(cfg.timeouts.header));
        }
        Ok(Err(e)) => {
            if let Some(fault) = client_fault(false) {
                return Err(fault);
            }
            trial.armed = false;
            if e.is_connect() {
                let text = connect_text(&e);
                up.on_error(Instant::now(), true, text.clone());
                return Err(ForwardError::Connect(text));
            }
            let text = crate::errors::error_chain(&e);
            up.on_error(Instant::now(), false, text.clone());
            return Err(ForwardError::Failed(text));
        }
        Ok(Ok(r)) => r,
    };
    trial.armed = false;
    up.on_response(Instant::now(), resp.status().is_server_error());

    let mut resp = resp;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_up) = client_upgrade else {
            return Err(ForwardError::Failed(
                "upstream switched protocols unasked".into(),
            ));
        };
        let upstream_up = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            match tokio::try_join!(client_up, upstream_up) {
                Ok((c, u)) => {
                    let mut c = TokioIo::new(c);
                    let mut u = TokioIo::new(u);
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                }
                Err(e) => tracing::debug!(error = %e, "upgrade failed"),
            }
        });
        let mut out = Response::new(Body::empty());
        *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *out.headers_mut() = resp.headers().clone();
        return Ok(out);
    }
    let (mut parts, body) = resp.into_parts();
    // RFC 9112 §6.3: with Transfer-Encoding, a Content-Length is stale (hyper decoded the
    // body by the transfer coding); the client gets the body framed anew.
    if parts.headers.contains_key(header::TRANSFER_ENCODING) {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    strip_hop_by_hop(&mut parts.headers);
    let idle = cfg.timeouts.idle;
    Ok(Response::from_parts(
        parts,
        Body::new(IdleBody::new(body, idle)),
    ))
}

/// Gives a half-open trial back to the breaker unless the outcome was recorded.
struct TrialGuard<'a> {
    up: &'a Upstream,
    armed: bool,
}

impl Drop for TrialGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.up.on_abandoned();
        }
    }
}

/// How the client's request body failed, if it did.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BodyFault {
    TooLarge,
    Client(String),
}

/// What the request path can tell, after the fact, about the client's body: whether it failed,
/// and whether forwarding was waiting for the client (rather than for the upstream) last.
#[derive(Default)]
struct BodyWatch {
    fault: std::sync::Mutex<Option<BodyFault>>,
    waiting: std::sync::atomic::AtomicBool,
}

impl BodyWatch {
    fn fault(&self) -> Option<BodyFault> {
        self.fault.lock().map(|f| f.clone()).unwrap_or(None)
    }

    fn set_fault(&self, f: BodyFault) {
        if let Ok(mut g) = self.fault.lock() {
            g.get_or_insert(f);
        }
    }

    fn waiting_on_client(&self) -> bool {
        self.waiting.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The client's request body on its way upstream: fails once more than `left` bytes went
/// through, and tells `watch` when the client is the one at fault or the one being waited for.
struct ClientBody {
    inner: Body,
    left: u64,
    watch: Arc<BodyWatch>,
}

#[derive(Debug, thiserror::Error)]
#[error("request body length limit exceeded")]
struct TooLarge;

impl http_body::Body for ClientBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        use std::sync::atomic::Ordering::Relaxed;
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        self.watch.waiting.store(polled.is_pending(), Relaxed);
        match polled {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    let n = d.len() as u64;
                    if n > self.left {
                        self.watch.set_fault(BodyFault::TooLarge);
                        return Poll::Ready(Some(Err(Box::new(TooLarge))));
                    }
                    self.left -= n;
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.watch
                    .set_fault(BodyFault::Client(crate::errors::error_chain(&e)));
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that errors when the upstream stalls for longer than `idle`. The timer is
/// armed only when a read has to wait: a body that is already buffered (most small responses)
/// never touches the timer wheel.
struct IdleBody {
    inner: hyper::body::Incoming,
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The timer counts the current wait (cleared when a frame arrives).
    armed: bool,
}

impl IdleBody {
    fn new(inner: hyper::body::Incoming, idle: Duration) -> IdleBody {
        IdleBody {
            inner,
            idle,
            timer: None,
            armed: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("upstream body stalled")]
struct Stalled;

impl http_body::Body for IdleBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                // Progress: the next wait starts a fresh idle period.
                self.armed = false;
                Poll::Ready(r.map(|x| x.map_err(|e| Box::new(e) as Self::Error)))
            }
            Poll::Pending => {
                let this = &mut *self;
                let deadline = tokio::time::Instant::now() + this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if !this.armed {
                    timer.as_mut().reset(deadline);
                    this.armed = true;
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(Stalled)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> SizeHint {
        http_body::Body::size_hint(&self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert!(
            h.get("x-secret").is_none()
                && h.get("keep-alive").is_none()
                && h.get(header::CONNECTION).is_none()
        );
        assert!(h.get("x-kept").is_some());
    }

    #[test]
    fn the_session_cookie_never_leaves() {
        let c = crate::auth::COOKIE;
        assert_eq!(without_session_cookie(b"a=1; b=2"), None);
        assert_eq!(
            without_session_cookie(format!("a=1; {c}=v1.2.x; b=2").as_bytes()),
            Some(b"a=1; b=2".to_vec())
        );
        assert_eq!(
            without_session_cookie(format!("{c}=v1").as_bytes()),
            Some(Vec::new())
        );
        // Cookies whose names only start or end like it are someone else's: left as sent.
        assert_eq!(
            without_session_cookie(format!("{c}x=1;x{c}=2").as_bytes()),
            None
        );
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(
            header::COOKIE,
            HeaderValue::from_str(&format!("{c}=secret")).expect("value"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_str(&format!("b=2; {c}=secret")).expect("value"),
        );
        strip_session_cookie(&mut h);
        let left: Vec<&str> = h
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert_eq!(left, ["a=1", "b=2"]);
    }

    #[test]
    fn underscored_names_and_named_framing() {
        let mut h = HeaderMap::new();
        h.insert("x_forwarded_for", HeaderValue::from_static("6.6.6.6"));
        h.insert("transfer_encoding", HeaderValue::from_static("chunked"));
        h.insert("x-fine", HeaderValue::from_static("1"));
        strip_underscore_names(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-fine"));

        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("content-length, host, x-a"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        h.insert(header::HOST, HeaderValue::from_static("h"));
        h.insert("x-a", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert!(h.contains_key(header::CONTENT_LENGTH) && h.contains_key(header::HOST));
        assert!(!h.contains_key("x-a"));
    }

    #[test]
    fn h2c_upgrades_are_never_tunnelled() {
        let req = |upgrade: &str| {
            Request::builder()
                .header(header::CONNECTION, "Upgrade, HTTP2-Settings")
                .header(header::UPGRADE, upgrade)
                .body(Body::empty())
                .expect("request")
        };
        assert!(upgrade_protocol(&req("h2c")).is_none());
        assert!(upgrade_protocol(&req("websocket, H2C")).is_none());
        assert!(upgrade_protocol(&req("websocket")).is_some());
    }

    #[test]
    fn forwarded_headers_trust_only_loopback() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        add_forwarded(
            &mut h,
            Some("10.0.0.9:5000".parse().expect("addr")),
            Some(&HeaderValue::from_static("Example.com:8443")),
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(
            h["x-forwarded-host"], "Example.com:8443",
            "as the client sent it"
        );
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        add_forwarded(
            &mut h,
            Some("127.0.0.1:5000".parse().expect("addr")),
            Some(&HeaderValue::from_static("example.com")),
        );
        assert_eq!(h["x-forwarded-for"], "6.6.6.6, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "example.com");
    }
}
