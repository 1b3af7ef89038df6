//! The HTTP clients kinfrad forwards with: one pooled client per upstream (probes and the hyper
//! path's requests) and one for the operator's custom maintenance pages. Both speak http and
//! https; https is verified against the system's CA store plus `upstream_ca_file`.

use std::time::Duration;

use axum::body::Body;
use http::Request;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::config::service::ServiceConfig;

/// How long connecting to a custom page may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A pooled client for one upstream.
pub struct UpstreamClient {
    pub(crate) client: Client<HttpsConnector<HttpConnector>, Body>,
}

impl UpstreamClient {
    pub fn new(
        cfg: &ServiceConfig,
        extra_ca: Option<&std::path::Path>,
    ) -> Result<UpstreamClient, String> {
        let tls = tls_config(extra_ca)?.config;
        Ok(UpstreamClient {
            client: pooled_client(tls, cfg.timeouts.connect, cfg.timeouts.idle, 1024),
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

/// Pooled client for custom pages, http and https (system roots plus `upstream_ca_file`).
#[derive(Clone)]
pub struct CustomClient {
    pub(crate) client: Client<HttpsConnector<HttpConnector>, Body>,
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
        for c in read_pem_certs(path)? {
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

/// The certificates of a PEM file (at least one), with errors that name the file.
pub fn read_pem_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: cannot read certificates: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: bad PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificates found", path.display()));
    }
    Ok(certs)
}

/// Human text for a connect error ("Connection refused").
pub(crate) fn connect_text(e: &hyper_util::client::legacy::Error) -> String {
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
