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
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tower::ServiceExt;

use crate::app::{App, MaintRequest, OpError, now_ms};
use crate::protocol::ErrorCode;

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
        .route("/api/{*rest}", any(api_not_found))
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

fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
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

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
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

fn authorized(app: &App, h: &HeaderMap) -> bool {
    let Some(v) = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(given) = v.strip_prefix("Bearer ").map(str::trim) else {
        return false;
    };
    crate::token::constant_time_eq(given.as_bytes(), app.token().as_bytes())
}

async fn post_status(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&app, &headers) {
        let mut r = error_response(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send the admin token as 'Authorization: Bearer TOKEN' (kinfractl token prints it)",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"kinfra\""),
        );
        return r;
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

async fn api_not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found", "no such API endpoint")
}

/// Everything that is not kinfrad's own: maintenance, or the landing page.
async fn front(State(app): State<Arc<App>>, req: Request) -> Response {
    let view = app.maint();
    if let Some(m) = view.record.as_ref().filter(|m| m.target.covers_unrouted()) {
        app.hit();
        let now = now_ms();
        let retry = m.retry_after_secs(now);
        if let Some(page) = view.page_url.clone() {
            let html = view.html.clone();
            let status = app.status_view();
            drop(view);
            let peer = req.extensions().get::<Peer>().map(|p| p.0);
            let browser = wants_html(req.headers());
            return match crate::custom::forward(
                &app.client(),
                &app.instance,
                &page,
                req,
                peer,
                retry,
            )
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    warn_custom_page(&e);
                    maintenance_response(browser, html, &status, retry)
                }
            };
        }
        let browser = wants_html(req.headers());
        let html = view.html.clone();
        drop(view);
        return maintenance_response(browser, html, &app.status_view(), retry);
    }
    drop(view);
    let status = if req.uri().path() == "/" {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    if wants_html(req.headers()) {
        let mut r = Response::new(Body::from(app.pages().landing.clone()));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        r.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Accept"));
        r
    } else {
        json_response(
            status,
            &serde_json::json!({
                "service": "kinfrad",
                "message": if status == StatusCode::OK { "KInfra is running; no services are configured" } else { "not found" },
                "status": crate::pages::STATUS_URL,
                "health": crate::pages::HEALTH_URL,
            }),
        )
    }
}

fn maintenance_response(
    browser: bool,
    html: Bytes,
    status: &crate::maintenance::StatusView,
    retry: u64,
) -> Response {
    let mut r = if browser {
        let mut r = Response::new(Body::from(html));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        r
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
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            got = rx.recv() => {
                let Some((stream, peer)) = got else { break };
                let _ = stream.set_nodelay(true);
                app.connections.fetch_add(1, Ordering::Relaxed);
                let guard = ConnGuard(app.clone());
                let router = router.clone();
                let svc = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(Peer(peer));
                    router.clone().oneshot(req.map(Body::new))
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    let _guard = guard;
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                });
            }
            _ = stopped(&mut shutdown) => break,
        }
    }
    for t in accept_tasks {
        t.abort();
    }
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!(grace_secs = grace.as_secs_f64(), "grace period over; closing remaining connections"),
    }
}

/// Resolves once `rx` turns true (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let ok = rx.wait_for(|v| *v).await.is_ok();
    let _ = ok;
}
