//! kinfrad's JSON API: `/health`, `/api/maintenance/status` (read and change maintenance),
//! `/__status__` (JSON, or the status grid for browsers), the API's 404s, and how an operation's
//! error becomes an HTTP status.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderValue};
use serde::Deserialize;

use crate::app::{App, MaintRequest, OpError};
use crate::protocol::ErrorCode;
use crate::proxy::answers::*;
use crate::proxy::front::front;

fn op_error(e: &OpError) -> Response {
    let status = match e.code {
        ErrorCode::InvalidArgument | ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
        ErrorCode::NotInMaintenance => StatusCode::CONFLICT,
        ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error_response(status, e.code.as_str(), &e.message)
}

pub(crate) async fn health(State(app): State<Arc<App>>) -> Response {
    json_response(
        StatusCode::OK,
        &serde_json::json!({
            "status": "ok",
            "service": "kinfrad",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime": app.uptime().as_secs_f64(),
            "connections": app.connections.load(Ordering::Relaxed),
            "maintenance": app.maint().global().is_some(),
            "maintenance_records": app.maint().active.len(),
        }),
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct TargetQuery {
    target: Option<String>,
}

/// `GET /api/maintenance/status`: the global record (seed 004's shape); `?target=` one
/// service's or route's record (a maintenance page polls its own record so).
pub(crate) async fn get_status(
    State(app): State<Arc<App>>,
    axum::extract::Query(q): axum::extract::Query<TargetQuery>,
) -> Response {
    use crate::model::maintenance::Target;
    match q.target.as_deref().map(Target::parse) {
        None | Some(Ok(Target::All)) => json_response(
            StatusCode::OK,
            &crate::web::schedule::with_scheduled(&app, &Target::All, app.status_view()),
        ),
        Some(Ok(t)) => json_response(
            StatusCode::OK,
            &crate::web::schedule::with_scheduled(&app, &t, app.target_view(&t)),
        ),
        Some(Err(e)) => error_response(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            &format!("target: {e}"),
        ),
    }
}

/// The body of `POST /api/maintenance/status` (camelCase, as its `GET` answers), plus KInfra's
/// fields.
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

pub(crate) async fn post_status(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
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
    // Without `isActive`, a change: to the record when it is active, else kept for the
    // target's next window (seed 004 scripts set the message before the window starts).
    let result = match body.is_active {
        Some(false) => app.exit(req.target.as_deref()).await,
        Some(true) => app.enter(req).await,
        None => app.update(req).await,
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
pub(crate) async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such page or endpoint",
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct StatusQuery {
    service: Option<String>,
}

/// `GET /__status__`: the services' status JSON (top level: the `?service=` asked for, else kinfrad),
/// or the status grid for browsers.
pub(crate) async fn services_status(
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
/// usual setup routes "/api/" to backends), else kinfrad's JSON 404.
pub(crate) async fn api_or_route(State(app): State<Arc<App>>, req: Request) -> Response {
    let routed = request_host(&req)
        .is_ok_and(|h| app.services().table.lookup(&h, req.uri().path()).is_some());
    if routed {
        return front(State(app), req).await;
    }
    // Unrouted: counted as a refusal, like the front door's 404s.
    crate::proxy::tally::answered(
        &app,
        api_not_found().await,
        crate::model::metrics::Answer::Refused,
        None,
    )
}

pub(crate) async fn api_not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found", "no such API endpoint")
}

impl IntoResponse for OpError {
    fn into_response(self) -> Response {
        op_error(&self)
    }
}
