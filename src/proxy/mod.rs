//! Forwarding a request to its upstream: pooled keep-alive connections, streamed bodies,
//! hop-by-hop headers removed, `X-Forwarded-*` added, `Upgrade` (WebSocket) tunnelled, timeouts.
//! Any failure before the upstream's response head becomes the upstream's fallback page, never a
//! bare 502.

pub mod answers;
mod body;
pub mod bypass;
pub mod custom;
pub mod drain;
pub mod front;
pub mod h1;
mod headers;
pub mod schedule;
pub mod tally;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;

use crate::config::service::ServiceConfig;
use crate::model::circuit::Admit;
use crate::model::routes::Route;
use crate::upstream::Upstream;
use crate::upstream::client::connect_text;

use body::{BodyFault, BodyWatch, ClientBody, IdleBody, TrialGuard};
pub(crate) use headers::add_forwarded;
pub use headers::{
    HOP, strip_hop_by_hop, strip_session_cookie, strip_underscore_names, upgrade_protocol,
    without_session_cookie,
};

/// How long a client may take to send a request head (slow-loris guard).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

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

/// The URI to send upstream.
fn upstream_uri(cfg: &ServiceConfig, route: &Route<Upstream>, uri: &Uri) -> Result<Uri, String> {
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let pq = if route.strip_prefix {
        crate::model::routes::strip(&route.spec.prefix, pq)
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
    // Counted in flight (for drains) until the response body is done, or the tunnel closed.
    let flight = crate::upstream::InFlight::enter(up.clone());
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
    let went = Instant::now();
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
    let got = Instant::now();
    up.latency.observe(got.saturating_duration_since(went));
    up.on_response(got, resp.status().is_server_error());

    let mut resp = resp;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_up) = client_upgrade else {
            return Err(ForwardError::Failed(
                "upstream switched protocols unasked".into(),
            ));
        };
        let upstream_up = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            let _flight = flight;
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
        Body::new(drain::Held {
            inner: IdleBody::new(body, idle),
            _flight: flight,
        }),
    ))
}
