//! The HTTP front door: kinfrad's own endpoints, then maintenance, then the landing page.
//!
//! Own endpoints always win and never depend on anything behind kinfrad. The accept loop is
//! hand-written over hyper-util so connections can be counted and drained gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bytes::Bytes;
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderValue};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tower::ServiceExt;

use crate::app::{App, MaintRequest, OpError};
use crate::model::now_ms;
use crate::protocol::ErrorCode;
use crate::proxy::ForwardError;

/// Largest JSON body the API accepts.
pub const MAX_API_BODY: usize = 64 * 1024;

/// The peer address of the connection a request came in on.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Build the router (tests call it directly with `oneshot`).
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route(
            "/api/maintenance/status",
            get(get_status)
                .post(post_status)
                .layer(DefaultBodyLimit::max(MAX_API_BODY)),
        )
        // kinfrad's own API namespaces; the rest of /api/ belongs to services that route it.
        .route("/api/maintenance/{*rest}", any(api_not_found))
        .route("/api/dashboard/routes", get(crate::web::dashboard::routes))
        .route(
            "/api/dashboard/maintenance",
            get(crate::web::dashboard::maintenance),
        )
        .route(
            "/api/dashboard/session",
            get(crate::web::dashboard::session),
        )
        .route(
            "/api/dashboard/logs/{service}",
            get(crate::web::dashboard::logs_json),
        )
        .route("/api/dashboard/{*rest}", any(api_not_found))
        .route("/api/kinfra/{*rest}", any(api_not_found))
        .route("/api/{*rest}", any(api_or_route))
        .route("/__status__", get(services_status))
        .route("/kinfra", get(crate::web::dashboard::page))
        .route("/kinfra/", get(crate::web::dashboard::page))
        .route(
            "/kinfra/login",
            get(crate::web::dashboard::login_form)
                .post(crate::web::dashboard::login)
                .layer(DefaultBodyLimit::max(MAX_API_BODY)),
        )
        .route(
            "/kinfra/logout",
            axum::routing::post(crate::web::dashboard::logout),
        )
        .route("/kinfra/{*rest}", any(not_found))
        .route("/__action__", any(not_found))
        .route("/__action__/", any(not_found))
        .route("/__action__/{*rest}", any(crate::web::dashboard::action))
        .route("/__logs__", any(not_found))
        .route("/__logs__/", any(not_found))
        .route("/__logs__/{*rest}", get(crate::web::dashboard::logs_page))
        .route("/__events__", get(crate::web::dashboard::events))
        .fallback(front)
        .with_state(app)
}

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

fn op_error(e: &OpError) -> Response {
    let status = match e.code {
        ErrorCode::InvalidArgument | ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
        ErrorCode::NotInMaintenance => StatusCode::CONFLICT,
        ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error_response(status, e.code.as_str(), &e.message)
}

async fn health(State(app): State<Arc<App>>) -> Response {
    json_response(
        StatusCode::OK,
        &serde_json::json!({
            "status": "ok",
            "service": "kinfrad",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime": app.uptime().as_secs_f64(),
            "connections": app.connections.load(Ordering::Relaxed),
            "maintenance": app.maint().record.is_some(),
        }),
    )
}

async fn get_status(State(app): State<Arc<App>>) -> Response {
    json_response(StatusCode::OK, &app.status_view())
}

/// Seed 004's POST body, plus KInfra's fields.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PostBody {
    is_active: Option<bool>,
    message: Option<String>,
    current_issue: Option<String>,
    countdown: Option<i64>,
    estimated_completion: Option<i64>,
    maintenance_page_url: Option<String>,
    target: Option<String>,
}

async fn post_status(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(d) = crate::web::auth::admin(&app.token(), &headers, crate::model::now_secs()) {
        return crate::web::dashboard::unauthorized(d);
    }
    let body: PostBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("invalid JSON body: {e}"),
            );
        }
    };
    let req = MaintRequest {
        url: body.maintenance_page_url,
        message: body.message,
        issue: body.current_issue,
        countdown_secs: body.countdown,
        eta_ms: body.estimated_completion,
        target: body.target,
    };
    let active = app.maint().record.is_some();
    let result = match body.is_active {
        Some(false) => app.exit().await,
        Some(true) => app.enter(req).await,
        None if active => app.update(req).await,
        None => Err(OpError::new(
            ErrorCode::NotInMaintenance,
            "maintenance is not active; send \"isActive\": true to enter it",
        )),
    };
    match result {
        Ok(state) => json_response(
            StatusCode::OK,
            &serde_json::json!({"success": true, "state": state}),
        ),
        Err(e) => op_error(&e),
    }
}

/// kinfrad's own namespaces (`/kinfra/`, `/__action__/`, `/__logs__/`): never an upstream's.
async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such page or endpoint",
    )
}

#[derive(Debug, Deserialize)]
struct StatusQuery {
    service: Option<String>,
}

/// `GET /__status__`: seed 000/001's JSON (top level: the `?service=` asked for, else kinfrad),
/// or the status grid for browsers.
async fn services_status(
    State(app): State<Arc<App>>,
    uri: http::Uri,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<StatusQuery>,
    peer: Option<axum::Extension<Peer>>,
) -> Response {
    if wants_html(&headers) && q.service.is_none() {
        let mut r = html_response(app.status_page());
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return r;
    }
    // Log lines, upstream URLs and raw errors are for dashboard readers; fallback pages (any
    // visitor) get the rest.
    let reader = crate::web::dashboard::readable(&app, &uri, &headers, peer.map(|p| p.0));
    match crate::web::status::services_json(&app, q.service.as_deref(), reader) {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => error_response(StatusCode::NOT_FOUND, "unknown_service", &e),
    }
}

/// An `/api/...` path outside kinfrad's own namespaces: the service whose route matches it (the
/// seeds route "/api/" to backends), else kinfrad's JSON 404.
async fn api_or_route(State(app): State<Arc<App>>, req: Request) -> Response {
    let routed = request_host(&req)
        .is_ok_and(|h| app.services().table.lookup(&h, req.uri().path()).is_some());
    if routed {
        return front(State(app), req).await;
    }
    api_not_found().await
}

async fn api_not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found", "no such API endpoint")
}

/// The request's host, lower-case and without port; "" when the request has none (HTTP/1.0).
pub fn request_host(req: &Request) -> Result<String, String> {
    let raw = match req.uri().authority() {
        Some(a) => a.as_str().to_string(),
        None => {
            let mut it = req.headers().get_all(header::HOST).iter();
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

/// Everything that is not kinfrad's own: maintenance, a proxied upstream (or its fallback page),
/// or kinfrad's own landing / status page.
async fn front(State(app): State<Arc<App>>, req: Request) -> Response {
    let host = match request_host(&req) {
        Ok(h) => h,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, "bad_request", &e),
    };
    let services = app.services_full();
    let route = services.table.lookup(&host, req.uri().path());
    let Some(route) = route else {
        let covered = app
            .maint()
            .record
            .as_ref()
            .is_some_and(|m| m.target.covers_unrouted());
        if covered {
            return serve_maintenance(&app, req, None).await;
        }
        return unrouted(&app, &req, &services);
    };
    let up = route.target.clone();
    let in_maint = app
        .maint()
        .record
        .as_ref()
        .is_some_and(|m| m.target.covers(&up.name));
    if in_maint {
        return serve_maintenance(&app, req, Some(&up)).await;
    }
    let gate = up.cfg().fallback.enabled;
    let peer = req.extensions().get::<Peer>().map(|p| p.0);
    let browser = wants_html(req.headers());
    match crate::proxy::forward(&up, route, req, peer, gate, services.underscores).await {
        Ok(r) => r,
        Err(e) => failure_response(&app, &up, browser, gate, e),
    }
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

/// A request that matched no route.
fn unrouted(app: &App, req: &Request, services: &crate::app::Services) -> Response {
    let status = if req.uri().path() == "/" && services.list.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    if wants_html(req.headers()) {
        let body = if services.list.is_empty() {
            app.pages().landing.clone()
        } else {
            app.status_page()
        };
        let mut r = html_response(body);
        *r.status_mut() = status;
        r.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Accept"));
        r
    } else {
        json_response(
            status,
            &serde_json::json!({
                "service": "kinfrad",
                "message": if status == StatusCode::OK { "KInfra is running; no services are configured" } else { "no route matches this host and path" },
                "status": crate::pages::SERVICE_STATUS_URL,
                "health": crate::pages::HEALTH_URL,
            }),
        )
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

/// Maintenance for a request (`up`: the upstream it was routed to, if any).
async fn serve_maintenance(
    app: &Arc<App>,
    req: Request,
    up: Option<&Arc<crate::upstream::Upstream>>,
) -> Response {
    let view = app.maint_full();
    let Some(m) = view.record.as_ref() else {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "maintenance",
            "maintenance",
        );
    };
    app.hit();
    if let Some(u) = up {
        u.maintenance_hits.fetch_add(1, Ordering::Relaxed);
    }
    let retry = m.retry_after_secs(now_ms());
    let browser = wants_html(req.headers());
    if let Some(page) = view.page_url.clone() {
        let peer = req.extensions().get::<Peer>().map(|p| p.0);
        let underscores = app.services().underscores;
        match crate::proxy::custom::forward(
            &app.client(),
            &app.instance,
            &page,
            req,
            peer,
            retry,
            underscores,
        )
        .await
        {
            Ok(r) => return r,
            Err(e) => warn_custom_page(&e),
        }
    }
    maintenance_response(browser, view.html.clone(), &app.status_view(), retry)
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

fn warn_custom_page(e: &str) {
    use std::sync::atomic::AtomicU64;
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = now_ms() / 1000;
    let last = LAST.load(Ordering::Relaxed);
    if now >= last + 10
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(error = %e, "custom maintenance page failed; serving the default page");
    } else {
        tracing::debug!(error = %e, "custom maintenance page failed");
    }
}

impl IntoResponse for OpError {
    fn into_response(self) -> Response {
        op_error(&self)
    }
}

struct ConnGuard(Arc<App>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serve HTTP on `listeners` until `shutdown` turns true, then let in-flight requests finish
/// for up to `grace`.
pub async fn serve(
    app: Arc<App>,
    listeners: Vec<tokio::net::TcpListener>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let (tx, mut rx) = mpsc::channel::<(tokio::net::TcpStream, SocketAddr)>(256);
    let mut accept_tasks = Vec::new();
    for l in listeners {
        let tx = tx.clone();
        accept_tasks.push(tokio::spawn(async move {
            loop {
                match l.accept().await {
                    Ok(pair) => {
                        if tx.send(pair).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }));
    }
    drop(tx);
    let router = router(app.clone());
    let mut limits = 0usize;
    let mut builder = Arc::new(conn_builder(limits));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Diagnostics and A/B benchmarks: KINFRA_FAST_PATH=0 serves every connection with hyper.
    let fast = std::env::var("KINFRA_FAST_PATH").map_or(true, |v| v != "0");
    loop {
        tokio::select! {
            got = rx.recv() => {
                let Some((stream, peer)) = got else { break };
                let _ = stream.set_nodelay(true);
                // The head limit follows reloads; the builder is rebuilt only when it moved.
                let want = app.config().max_header_bytes;
                if want != limits {
                    limits = want;
                    builder = Arc::new(conn_builder(limits));
                }
                app.connections.fetch_add(1, Ordering::Relaxed);
                let guard = ConnGuard(app.clone());
                let router = router.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                let mut stop = shutdown.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    let _guard = guard;
                    let outcome = if fast {
                        crate::proxy::h1::serve(&app, &router, stream, peer, &mut stop).await
                    } else {
                        crate::proxy::h1::Outcome::Handoff(stream, Vec::new())
                    };
                    let crate::proxy::h1::Outcome::Handoff(stream, pre) = outcome else { return };
                    if *stop.borrow() {
                        return;
                    }
                    let svc = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(Peer(peer));
                        let refused = ambiguous_framing(req.headers())
                            .or_else(|| missing_host(&req))
                            .map(|why| (StatusCode::BAD_REQUEST, "bad_request", why))
                            .or_else(|| refused_method(req.method()));
                        let router = router.clone();
                        async move {
                            match refused {
                                Some((status, code, why)) => Ok(refuse(status, code, why)),
                                None => router.oneshot(req.map(Body::new)).await,
                            }
                        }
                    });
                    let io = TokioIo::new(crate::proxy::h1::Prefixed::new(stream, pre, send_limit(&app)));
                    let conn = builder.serve_connection_with_upgrades(io, svc);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                });
            }
            _ = crate::stop::stopped(&mut shutdown) => break,
        }
    }
    for t in accept_tasks {
        t.abort();
    }
    // hyper's connections close once idle; the fast path's close between requests (they watch
    // the same stop signal). Wait for both, up to the grace period.
    let drained = async {
        graceful.shutdown().await;
        while app.connections.load(Ordering::Relaxed) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        _ = drained => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!(grace_secs = grace.as_secs_f64(), "grace period over; closing remaining connections"),
    }
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

/// How long a client of a connection hyper serves may take nothing of a response: the longest
/// `timeouts.idle` of the services (the limit the fast path gives a proxied response), or the
/// limit of kinfrad's own responses when no service is configured.
fn send_limit(app: &App) -> Duration {
    app.services()
        .list
        .iter()
        .map(|u| u.cfg().timeouts.idle)
        .max()
        .unwrap_or(crate::proxy::h1::SEND_LIMIT)
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

/// How long a client may take to send a request head (slow-loris guard).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Connection settings for clients: HTTP/1.1 and h2c, heads at most `max_head` bytes (larger
/// ones get 431 from hyper), a deadline for the head.
fn conn_builder(max_head: usize) -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
    let max_head = max_head.max(8192);
    let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(max_head)
        .max_headers(200);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(max_head).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .keep_alive_interval(Duration::from_secs(60));
    b
}
