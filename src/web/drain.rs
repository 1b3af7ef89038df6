//! `/api/kinfra/drain`: the drain over HTTP, as `kinfractl drain` has it over the control
//! socket. `GET` reads it (whoever may read the dashboard), `POST` starts one
//! (`{"duration": "60s", "target": "ALL"}`), `DELETE` stops it; both need the admin token (or a
//! dashboard session with its CSRF header).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use http::header::HeaderMap;
use serde::Deserialize;

use crate::app::App;
use crate::model::now_secs;
use crate::proxy::answers::{Peer, error_response, json_response};

/// `GET /api/kinfra/drain`.
pub async fn status(State(app): State<Arc<App>>, req: Request) -> Response {
    let peer = req.extensions().get::<Peer>().copied();
    if !crate::web::dashboard::readable(&app, req.uri(), req.headers(), peer) {
        return crate::web::dashboard::unauthorized(crate::web::auth::Denied::Unauthenticated);
    }
    json_response(StatusCode::OK, &app.drain_report())
}

/// The body of `POST /api/kinfra/drain`: `duration` as `kinfractl --duration` takes it (a
/// string such as "90s" or "1m30s", or a number of seconds), or `duration_ms`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    duration: Option<serde_json::Value>,
    duration_ms: Option<u64>,
    target: Option<String>,
}

fn duration_ms(b: &StartBody) -> Result<u64, String> {
    match (&b.duration, b.duration_ms) {
        (Some(_), Some(_)) => Err("give either duration or duration_ms, not both".into()),
        (None, None) => Err("duration is required, e.g. {\"duration\": \"60s\"}".into()),
        (None, Some(ms)) => Ok(ms),
        (Some(serde_json::Value::String(s)), None) => {
            crate::protocol::fmt::parse_duration_ms(s).map_err(|e| format!("duration: {e}"))
        }
        (Some(serde_json::Value::Number(n)), None) => match n.as_f64() {
            Some(secs) if (0.0..1e15).contains(&secs) => Ok((secs * 1000.0).round() as u64),
            _ => Err(format!("duration: {n} is not a number of seconds")),
        },
        (Some(other), None) => Err(format!(
            "duration: {other} is neither a duration text (\"60s\") nor seconds"
        )),
    }
}

fn refused(why: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, "bad_request", why)
}

/// `POST /api/kinfra/drain`: start (or restart) a drain.
pub async fn start(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(d) = crate::web::auth::admin(&app.token(), &headers, now_secs()) {
        return crate::web::dashboard::unauthorized(d);
    }
    let body: StartBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return refused(&format!("invalid JSON body: {e}")),
    };
    let ms = match duration_ms(&body) {
        Ok(ms) => ms,
        Err(e) => return refused(&e),
    };
    match app.drain_start(body.target.as_deref(), ms).await {
        Ok(d) => json_response(
            StatusCode::OK,
            &serde_json::json!({"success": true, "drain": d}),
        ),
        Err(e) => e.into_response(),
    }
}

/// `DELETE /api/kinfra/drain`: stop the drain.
pub async fn stop(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(d) = crate::web::auth::admin(&app.token(), &headers, now_secs()) {
        return crate::web::dashboard::unauthorized(d);
    }
    match app.drain_stop().await {
        Ok(d) => json_response(
            StatusCode::OK,
            &serde_json::json!({"success": true, "drain": d}),
        ),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: serde_json::Value) -> StartBody {
        serde_json::from_value(v).expect("body")
    }

    #[test]
    fn durations_in_every_spelling() {
        use serde_json::json;
        assert_eq!(duration_ms(&body(json!({"duration": "90s"}))), Ok(90_000));
        assert_eq!(duration_ms(&body(json!({"duration": 5}))), Ok(5_000));
        assert_eq!(duration_ms(&body(json!({"duration": 1.5}))), Ok(1_500));
        assert_eq!(duration_ms(&body(json!({"duration_ms": 250}))), Ok(250));
        for bad in [
            json!({}),
            json!({"duration": "soon"}),
            json!({"duration": -1}),
            json!({"duration": true}),
            json!({"duration": "1s", "duration_ms": 1}),
        ] {
            assert!(duration_ms(&body(bad.clone())).is_err(), "{bad}");
        }
        assert!(serde_json::from_value::<StartBody>(json!({"duration": 1, "extra": 1})).is_err());
    }
}
