//! The warning a proxied response carries before a scheduled maintenance window starts:
//! `X-Maintenance-Scheduled: <start, RFC 3339>`, while a window that covers the request's route
//! is within its warning lead time (`kinfractl maint schedule --warn`). Both request paths (the
//! fast path and the hyper path) add it through here.

use crate::app::App;
use crate::model::routes::Route;
use crate::model::schedule::rfc3339;
use crate::upstream::Upstream;

/// The header's name.
pub const HEADER: &str = "x-maintenance-scheduled";

/// The header's value for a request routed to `route`, if a window warns now.
pub fn warning(app: &App, route: &Route<Upstream>) -> Option<String> {
    app.scheduled_warning(Some((&route.spec, route.target.name.as_str())))
        .map(rfc3339)
}

/// Add the header to a response of the hyper path.
pub fn add_header(app: &App, route: &Route<Upstream>, headers: &mut http::HeaderMap) {
    if let Some(v) = warning(app, route)
        && let Ok(v) = http::HeaderValue::from_str(&v)
    {
        headers.insert(http::HeaderName::from_static(HEADER), v);
    }
}
