//! `GET /api/kinfra/events[?after=SEQ]`: kinfrad's event log for dashboard readers (the same
//! access rule as the dashboard's data): the kept events after `after` (none: all, up to the
//! last 100), oldest first, with `last`, `missed` and `more` as `kinfractl events --json`
//! reads them over the control socket. The dashboard's Events panel starts from here, then
//! follows the `kinfraEvent` events of `/__events__`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use http::StatusCode;

use crate::app::App;
use crate::proxy::answers::{Peer, error_response, json_response};

/// `after` of the query (absent: 0); `None` when it is there and not a number.
fn after(query: Option<&str>) -> Option<u64> {
    let Some(q) = query else { return Some(0) };
    match q.split('&').find_map(|kv| kv.strip_prefix("after=")) {
        None => Some(0),
        Some(v) => v.parse().ok(),
    }
}

/// `GET /api/kinfra/events`.
pub async fn list(State(app): State<Arc<App>>, req: Request) -> Response {
    let peer = req.extensions().get::<Peer>().copied();
    if !crate::web::dashboard::readable(&app, req.uri(), req.headers(), peer) {
        return crate::web::dashboard::unauthorized(crate::web::auth::Denied::Unauthenticated);
    }
    let Some(after) = after(req.uri().query()) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "after must be an event's seq (a whole number)",
        );
    };
    json_response(StatusCode::OK, &app.events_report(after, None))
}

#[cfg(test)]
mod tests {
    #[test]
    fn after_is_read_from_the_query() {
        assert_eq!(super::after(None), Some(0));
        assert_eq!(super::after(Some("after=12")), Some(12));
        assert_eq!(super::after(Some("x=1&after=3")), Some(3));
        assert_eq!(super::after(Some("token=abc")), Some(0));
        assert_eq!(super::after(Some("after=-1")), None);
    }
}
