//! Forwarding visitors to an operator's own maintenance page (`maint enter --url`).
//!
//! Page navigations (GET/HEAD that accept HTML) are sent to the URL itself; other requests (the
//! page's scripts, styles, images) keep their path on the custom page's origin. The answer comes
//! back with `X-Maintenance-Mode: true` and `Retry-After` added. Any failure returns `Err` and the
//! caller serves the default page. A loop marker header stops a request that comes back to us.
//! https pages are verified against the system's CA store plus `upstream_ca_file`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use http::header::{self, HeaderValue};
use http::{Request, Response, Uri};

use crate::model::maintenance::PageUrl;
use crate::upstream::client::CustomClient;

/// Header carrying this daemon's instance id on forwarded requests.
pub const LOOP_HEADER: &str = "x-kinfra-loop";
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Is this a browser navigation (rather than a sub-resource)?
pub fn is_navigation(req: &Request<Body>) -> bool {
    (req.method() == http::Method::GET || req.method() == http::Method::HEAD)
        && crate::proxy::answers::wants_html(req.headers())
}

/// Forward `req` to the custom page. `Err` means: serve the default page instead.
pub async fn forward(
    client: &CustomClient,
    instance: &str,
    page: &PageUrl,
    mut req: Request<Body>,
    peer: Option<SocketAddr>,
    retry_after: u64,
    underscores: bool,
) -> Result<Response<Body>, String> {
    if req
        .headers()
        .get(LOOP_HEADER)
        .is_some_and(|v| v.as_bytes() == instance.as_bytes())
    {
        return Err("request looped back to this kinfrad".to_string());
    }
    let auth = page
        .uri
        .authority()
        .ok_or_else(|| "custom page URL has no host".to_string())?
        .clone();
    let path_and_query = if is_navigation(&req) {
        page.uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into())
    } else {
        req.uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into())
    };
    let uri = Uri::builder()
        .scheme(if page.https { "https" } else { "http" })
        .authority(auth.clone())
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| format!("cannot build upstream URI: {e}"))?;
    // The visitor's host: an absolute-form target's authority wins (RFC 9112 §3.2.2).
    let orig_host = match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => req.headers().get(header::HOST).cloned(),
    };
    let h = req.headers_mut();
    crate::proxy::strip_hop_by_hop(h);
    // The operator's page is another party: it gets neither kinfrad's admin session nor the
    // visitor's credentials for the site.
    crate::proxy::strip_session_cookie(h);
    h.remove(header::AUTHORIZATION);
    if !underscores {
        crate::proxy::strip_underscore_names(h);
    }
    h.remove(header::HOST);
    if let Ok(v) = HeaderValue::from_str(auth.as_str()) {
        h.insert(header::HOST, v);
    }
    // The same trust rule as forwarding to a service: only a loopback peer's X-Forwarded-*
    // are kept.
    crate::proxy::add_forwarded(h, peer, orig_host.as_ref());
    h.insert("x-maintenance-mode", HeaderValue::from_static("true"));
    if let Ok(v) = HeaderValue::from_str(instance) {
        h.insert(LOOP_HEADER, v);
    }
    *req.uri_mut() = uri;
    *req.version_mut() = http::Version::HTTP_11;

    let resp = tokio::time::timeout(HEAD_TIMEOUT, client.client.request(req))
        .await
        .map_err(|_| {
            format!(
                "custom page {} did not answer within {}s",
                page.uri,
                HEAD_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| {
            format!(
                "custom page {} unreachable: {}",
                page.uri,
                crate::errors::error_chain(&e)
            )
        })?;
    let (mut parts, body) = resp.into_parts();
    crate::proxy::strip_hop_by_hop(&mut parts.headers);
    parts
        .headers
        .insert("x-maintenance-mode", HeaderValue::from_static("true"));
    parts
        .headers
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    Ok(Response::from_parts(parts, Body::new(body)))
}
