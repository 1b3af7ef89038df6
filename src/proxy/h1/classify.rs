//! The plan for a parsed request head, and the upstream request head of a proxied one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{HeaderName, HeaderValue, Method, StatusCode};

use crate::app::App;
use crate::model::metrics::{Answer, RequestCounts};
use crate::upstream::Upstream;

use super::buf::scratch;
use super::head::{ConnTokens, Hdr, Lines, parse_len, plain_host};
use super::{Client, MAX_HEADERS};

pub(super) struct ProxyPlan {
    pub(super) up: Arc<Upstream>,
    /// The route's request counters.
    pub(super) counts: Arc<RequestCounts>,
    /// The upstream request head, ready to write.
    pub(super) head: Vec<u8>,
    pub(super) head_len: usize,
    pub(super) body_len: u64,
    pub(super) head_only: bool,
    /// Safe to send again on a fresh connection (bodiless GET/HEAD/OPTIONS).
    pub(super) retryable: bool,
    pub(super) browser: bool,
    pub(super) gate: bool,
    pub(super) close: bool,
    /// The service's limits, read with the route (one config load per request).
    pub(super) max_body: u64,
    pub(super) header_timeout: Duration,
    pub(super) idle: Duration,
    /// `X-Maintenance-Scheduled` for the response, when a window warns.
    pub(super) scheduled: Option<String>,
}

pub(super) enum Plan {
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
    /// The built-in maintenance page for a browser, of the record `view.active[idx]` (the hit
    /// and the request are counted already).
    Maintenance {
        head_len: usize,
        view: Arc<crate::app::MaintView>,
        idx: usize,
    },
    /// Refused by a drain (`consumed`: the request's bytes, head and body; counted already).
    Drained {
        consumed: usize,
        close: bool,
        head_only: bool,
        browser: bool,
        drain: Arc<crate::app::ActiveDrain>,
        up: Arc<Upstream>,
    },
}

/// Paths the router owns (a superset is fine: the router decides).
pub(super) fn is_own_path(path: &str) -> bool {
    path == "/health"
        || path.starts_with("/__")
        || path.starts_with("/kinfra")
        || path.starts_with("/api/maintenance")
        || path.starts_with("/api/dashboard")
        || path.starts_with("/api/kinfra")
        // The health API (not `/api/healthz`, which a service may route).
        || path == "/api/health"
        || path.starts_with("/api/health/")
        // The metrics (not `/metrics/…`, which a service may route).
        || path == "/metrics"
}

/// Decide what to do with a parsed head (`data[..head_len]`; what follows may be its body).
pub(super) fn classify(
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
                match crate::proxy::answers::parse_host(text) {
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
    // The record that answers this route (route, then service, then global), if any.
    if let Some(idx) = maint.index_for(route) {
        // An operator's bypass cookie: the router's front door forwards it (and marks the
        // response), so it is checked here only when a record applies.
        let cookies = req.headers.iter().zip(kinds.iter());
        let cookies = cookies
            .filter(|(_, k)| **k == Hdr::Cookie)
            .map(|(h, _)| h.value);
        if app.bypass_admits(&maint.active[idx], cookies) {
            return local(req);
        }
        // The common case, a browser asking for a page, is answered from a cached response;
        // JSON clients, HEAD and custom pages go through the router (which counts the hit).
        if browser && !head_only && !close && body_len == 0 && maint.active[idx].page_url.is_none()
        {
            app.count_hit(&maint.active[idx], route.map(|r| &r.spec));
            route
                .map_or(app.unrouted_requests(), |r| &*r.counts)
                .count(Answer::Maintenance, 503);
            return Plan::Maintenance {
                head_len,
                view: arc_swap::Guard::into_inner(maint),
                idx,
            };
        }
        return local(req);
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
    if let Some(drain) = app.drain_check(route) {
        route.counts.count(Answer::Drain, 503);
        return Plan::Drained {
            consumed: head_len + body_len as usize,
            close,
            head_only,
            browser,
            drain,
            up,
        };
    }

    // The upstream request head.
    let trusted = peer.ip().is_loopback();
    let mut out = scratch(data.len() + 256);
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(cfg.url.base_path.as_bytes());
    if route.strip_prefix {
        out.extend_from_slice(crate::model::routes::strip(&route.spec.prefix, target).as_bytes());
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
        counts: route.counts.clone(),
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
        scheduled: crate::proxy::schedule::warning(app, route),
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
    r.extensions_mut().insert(crate::proxy::answers::Peer(peer));
    Ok(r)
}
