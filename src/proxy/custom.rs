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
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::model::maintenance::PageUrl;

/// Header carrying this daemon's instance id on forwarded requests.
pub const LOOP_HEADER: &str = "x-kinfra-loop";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Pooled client for custom pages, http and https (system roots plus `upstream_ca_file`).
#[derive(Clone)]
pub struct CustomClient {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    /// How many certificates are trusted, for the log.
    pub roots: usize,
}

impl CustomClient {
    /// Build a client trusting the system's CA store and the PEM certificates in `extra_ca`.
    pub fn new(extra_ca: Option<&std::path::Path>) -> Result<CustomClient, String> {
        let tls = tls_config(extra_ca)?;
        Ok(CustomClient {
            client: pooled_client(tls.config, CONNECT_TIMEOUT, Duration::from_secs(30), 8),
            roots: tls.root_count,
        })
    }
}

/// A pooled HTTP/1.1 client for http and https URLs over `tls`.
pub fn pooled_client(
    tls: rustls::ClientConfig,
    connect: Duration,
    idle: Duration,
    max_idle_per_host: usize,
) -> Client<HttpsConnector<HttpConnector>, Body> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect));
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_keepalive(Some(Duration::from_secs(60)));
    let conn = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(idle)
        .pool_max_idle_per_host(max_idle_per_host)
        .build(conn)
}

/// A TLS client configuration and how many roots it trusts.
pub struct Tls {
    pub config: rustls::ClientConfig,
    pub root_count: usize,
}

/// TLS for outgoing connections: the system's CA store plus the PEM certificates in `extra_ca`.
pub fn tls_config(extra_ca: Option<&std::path::Path>) -> Result<Tls, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = extra_ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("{}: cannot read certificates: {e}", path.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: bad PEM: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no PEM certificates found", path.display()));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("{}: unusable certificate: {e}", path.display()))?;
        }
    }
    let root_count = roots.len();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS setup: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Tls { config, root_count })
}

/// Is this a browser navigation (rather than a sub-resource)?
pub fn is_navigation(req: &Request<Body>) -> bool {
    (req.method() == http::Method::GET || req.method() == http::Method::HEAD)
        && crate::web::http::wants_html(req.headers())
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
