//! Scheduled maintenance windows over HTTP, and the warning before one starts.
//!
//! `/api/kinfra/schedule` is `kinfractl maint schedule` over HTTP: `GET` lists the windows
//! (whoever may read the dashboard), `POST` adds one (`{"at": "2026-12-24T02:00", "duration":
//! "30m", "tz": "Europe/Berlin", "every": "week", "target": "api", "warn": "1h", "message": …}`),
//! `DELETE /api/kinfra/schedule/ID` cancels one; both need the admin token (or a dashboard
//! session with its CSRF header).
//!
//! The `scheduled` field of `GET /api/maintenance/status` is the next window while it is within
//! its warning lead time, so a page or script can warn before it starts; absent otherwise, so
//! the seed's shape is unchanged when nothing is scheduled.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use http::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::{App, ScheduleRequest};
use crate::model::maintenance::Target;
use crate::model::now_secs;
use crate::model::schedule::rfc3339;
use crate::protocol::StatusView;
use crate::proxy::answers::{Peer, error_response, json_response};

/// `view` as JSON, with `scheduled` when a window of `target` warns now: for the global view
/// any window, for a target's view its own windows and global ones.
pub fn with_scheduled(app: &App, target: &Target, view: StatusView) -> Value {
    let mut v = serde_json::to_value(view).unwrap_or(Value::Null);
    let next = app.scheduled_for(|w| *target == Target::All || w == target || *w == Target::All);
    if let (Some((start, end, t)), Some(obj)) = (next, v.as_object_mut()) {
        obj.insert(
            "scheduled".into(),
            json!({
                "start": rfc3339(start),
                "startTime": start,
                "endTime": end,
                "target": t,
            }),
        );
    }
    v
}

/// `GET /api/kinfra/schedule`.
pub async fn list(State(app): State<Arc<App>>, req: Request) -> Response {
    let peer = req.extensions().get::<Peer>().copied();
    if !crate::web::dashboard::readable(&app, req.uri(), req.headers(), peer) {
        return crate::web::dashboard::unauthorized(crate::web::auth::Denied::Unauthenticated);
    }
    json_response(StatusCode::OK, &json!({"windows": app.schedule_list()}))
}

/// The body of `POST /api/kinfra/schedule`; durations as `kinfractl` takes them ("30m", or a
/// number of seconds).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    at: String,
    duration: Value,
    every: Option<String>,
    tz: Option<String>,
    target: Option<String>,
    warn: Option<Value>,
    message: Option<String>,
    issue: Option<String>,
}

/// Whole seconds (rounded up) of a duration text or a number of seconds.
fn secs(field: &str, v: &Value) -> Result<u64, String> {
    match v {
        Value::String(s) => crate::protocol::fmt::parse_duration_ms(s)
            .map(|ms| ms.div_ceil(1000))
            .map_err(|e| format!("{field}: {e}")),
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("{field}: {n} is not a whole number of seconds")),
        other => Err(format!(
            "{field}: {other} is neither a duration text (\"30m\") nor seconds"
        )),
    }
}

fn refused(why: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, "bad_request", why)
}

/// `POST /api/kinfra/schedule`: add a window.
pub async fn add(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(d) = crate::web::auth::admin(&app.token(), &headers, now_secs()) {
        return crate::web::dashboard::unauthorized(d);
    }
    let b: AddBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return refused(&format!("invalid JSON body: {e}")),
    };
    let duration_secs = match secs("duration", &b.duration) {
        Ok(s) => s,
        Err(e) => return refused(&e),
    };
    let warn_secs = match b.warn.as_ref().map(|w| secs("warn", w)).transpose() {
        Ok(s) => s,
        Err(e) => return refused(&e),
    };
    let req = ScheduleRequest {
        at: b.at,
        duration_secs,
        every: b.every,
        tz: b.tz,
        target: b.target,
        warn_secs,
        message: b.message,
        issue: b.issue,
    };
    match app.schedule_add(req).await {
        Ok(w) => json_response(StatusCode::OK, &json!({"success": true, "window": w})),
        Err(e) => e.into_response(),
    }
}

/// `DELETE /api/kinfra/schedule/ID`: cancel a window.
pub async fn cancel(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(d) = crate::web::auth::admin(&app.token(), &headers, now_secs()) {
        return crate::web::dashboard::unauthorized(d);
    }
    let Ok(id) = id.parse::<u64>() else {
        return refused(&format!("id: {id:?} is not a window id (a number)"));
    };
    match app.schedule_cancel(id).await {
        Ok(w) => json_response(StatusCode::OK, &json!({"success": true, "window": w})),
        Err(e) => e.into_response(),
    }
}
