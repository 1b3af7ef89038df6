//! The answers both request paths share (the fast path and hyper's): kinfrad's own JSON and
//! HTML responses, what a client gets when forwarding failed (the service's fallback page, or
//! 413/400/408/502/504), the maintenance answer, the refusals made before routing (ambiguous
//! framing, a missing Host, CONNECT), and the Host header parsed as a route key.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderValue};

use crate::app::App;
use crate::proxy::ForwardError;

/// The peer address of the connection a request came in on.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Does the client accept HTML (a browser), rather than an API client?
pub fn wants_html(h: &HeaderMap) -> bool {
    h.get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html") || v.contains("application/xhtml+xml"))
}

pub(crate) fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A page kinfrad renders itself: `text/html; charset=utf-8`, status 200.
pub(crate) fn html_response(body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

pub(crate) fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(
        status,
        &serde_json::json!({"success": false, "error": {"code": code, "message": message}}),
    )
}

/// The request's host, lower-case and without port; "" when the request has none (HTTP/1.0).
pub fn request_host(req: &Request) -> Result<String, String> {
    host_of(req.uri(), req.headers())
}

/// The host a request names, as a route key: its target's authority (absolute-form, or
/// HTTP/2's `:authority`), else its one `Host` header; lower-case, without port. "" when it
/// names none (HTTP/1.0); an error for two `Host` headers or a value that is not a host.
pub fn host_of(uri: &http::Uri, headers: &HeaderMap) -> Result<String, String> {
    let raw = match uri.authority() {
        Some(a) => a.as_str().to_string(),
        None => {
            let mut it = headers.get_all(header::HOST).iter();
            let Some(v) = it.next() else {
                return Ok(String::new());
            };
            if it.next().is_some() {
                return Err("more than one Host header".to_string());
            }
            v.to_str()
                .map_err(|_| "Host header is not text".to_string())?
                .to_string()
        }
    };
    parse_host(&raw)
}

/// A Host header value (or authority) as a route key: lower-case host without port.
pub fn parse_host(raw: &str) -> Result<String, String> {
    let auth: http::uri::Authority = raw.parse().map_err(|_| format!("invalid Host {raw:?}"))?;
    if auth.as_str().contains('@') {
        return Err(format!("invalid Host {raw:?}"));
    }
    let host = auth.host().to_ascii_lowercase();
    let ok = host.starts_with('[')
        || (!host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'));
    if !ok {
        return Err(format!("invalid Host {raw:?}"));
    }
    Ok(host)
}

/// What a client gets when forwarding failed before a response head: 413 for an oversized body;
/// the service's fallback page (503) when fallbacks are on (the default), else 502 / 504.
pub(crate) fn failure_response(
    app: &App,
    up: &Arc<crate::upstream::Upstream>,
    browser: bool,
    gate: bool,
    e: ForwardError,
) -> Response {
    match e {
        ForwardError::TooLarge(n) => error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &format!("request body larger than {n} bytes"),
        ),
        // The client's own fault: its answer alone, nothing about the service (nginx: 400).
        ForwardError::ClientBody(why) => {
            let mut r = error_response(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("the request body could not be read: {why}"),
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        }
        ForwardError::ClientStalled(d) => {
            let mut r = error_response(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                &format!(
                    "the request body stalled: nothing for {}",
                    humantime::format_duration(d)
                ),
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        }
        e if !gate => {
            let (status, code) = match e {
                ForwardError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
                _ => (StatusCode::BAD_GATEWAY, "bad_gateway"),
            };
            error_response(status, code, &format!("{e:?}"))
        }
        e => {
            tracing::debug!(service = %up.name, error = ?e, "serving fallback page");
            fallback_response(app, up, browser)
        }
    }
}

/// The upstream's pre-rendered fallback page (HTML for browsers, JSON otherwise), status 503.
pub(crate) fn fallback_response(
    app: &App,
    up: &Arc<crate::upstream::Upstream>,
    browser: bool,
) -> Response {
    let refresh = up.cfg().fallback.refresh_interval;
    let mut r = if browser {
        let page = app.fallback_page(up);
        let mut r = html_response(page.html.clone());
        r.headers_mut()
            .insert("x-kinfra-fallback", HeaderValue::from_static(page.kind));
        r
    } else {
        let s = up.snapshot(std::time::Instant::now());
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({
                "error": "service_unavailable",
                "service": s.name,
                "service_name": s.display_name,
                "state": s.state,
                "health_status": s.health.label(),
                "status_message": s.status_message,
                "fallback_message": s.fallback_message,
                "error_detail": crate::upstream::public_error(&s.error_detail),
                "circuit_state": s.circuit.as_str(),
                "retry_after": refresh,
                "status": format!("{}?service={}", crate::pages::SERVICE_STATUS_URL, s.name),
            }),
        )
    };
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let h = r.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from(refresh));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    r
}

pub(crate) fn maintenance_response(
    browser: bool,
    html: Bytes,
    status: &crate::protocol::StatusView,
    retry: u64,
) -> Response {
    let mut r = if browser {
        html_response(html)
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"error": "maintenance", "maintenance": status}),
        )
    };
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let h = r.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from(retry));
    h.insert("x-maintenance-mode", HeaderValue::from_static("true"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    r
}

/// A request whose body length is ambiguous (RFC 9112 §6.3) is refused, never forwarded: more
/// than one `Transfer-Encoding` line, or both `Transfer-Encoding` and `Content-Length` should
/// one ever get this far. hyper itself answers 400 to unequal `Content-Length`s and to a
/// `Transfer-Encoding` that does not end in chunked; when a request carries both framings it
/// frames the body by the chunked encoding, drops `Content-Length` (so the upstream sees one
/// unambiguous framing) and closes the client connection after the response, so nothing
/// pipelined behind it is ever read as a request.
pub fn ambiguous_framing(h: &HeaderMap) -> Option<&'static str> {
    let te = h.get_all(header::TRANSFER_ENCODING).iter().count();
    if te > 0 && h.contains_key(header::CONTENT_LENGTH) {
        return Some("ambiguous request framing: both Transfer-Encoding and Content-Length");
    }
    if te > 1 {
        return Some("ambiguous request framing: more than one Transfer-Encoding header");
    }
    None
}

/// RFC 9112 §3.2: an HTTP/1.1 request without a Host header (and no authority) is a 400.
pub fn missing_host<B>(req: &http::Request<B>) -> Option<&'static str> {
    (req.version() == http::Version::HTTP_11
        && req.uri().authority().is_none()
        && !req.headers().contains_key(header::HOST))
    .then_some("an HTTP/1.1 request needs a Host header")
}

/// CONNECT asks for a tunnel to anywhere: kinfrad is not a forward proxy (nginx answers 405 too).
pub fn refused_method(m: &http::Method) -> Option<(StatusCode, &'static str, &'static str)> {
    (m == http::Method::CONNECT).then_some((
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "CONNECT is not supported: kinfrad is not a forward proxy",
    ))
}

/// A request refused before routing; the connection closes after it. A 405 says which
/// methods kinfrad does forward (RFC 9110 §15.5.6).
pub(crate) fn refuse(status: StatusCode, code: &str, why: &str) -> Response {
    let mut r = error_response(status, code, why);
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        h.insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
    }
    r
}
