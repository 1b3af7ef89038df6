//! The route table of kinfrad's own HTTP endpoints; everything else falls through to the
//! request path's front door (`proxy::front`). Own endpoints always win and never depend on
//! anything behind kinfrad.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get};

use crate::app::App;
use crate::proxy::front::front;
use crate::web::api::{
    api_not_found, api_or_route, get_status, health, not_found, post_status, services_status,
};

/// Largest JSON body the API accepts.
pub const MAX_API_BODY: usize = 64 * 1024;

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
        .route(
            "/api/kinfra/drain",
            get(crate::web::drain::status)
                .post(crate::web::drain::start)
                .delete(crate::web::drain::stop)
                .layer(DefaultBodyLimit::max(MAX_API_BODY)),
        )
        .route(
            "/api/kinfra/schedule",
            get(crate::web::schedule::list)
                .post(crate::web::schedule::add)
                .layer(DefaultBodyLimit::max(MAX_API_BODY)),
        )
        .route(
            "/api/kinfra/schedule/{id}",
            axum::routing::delete(crate::web::schedule::cancel),
        )
        .route("/api/kinfra/events", get(crate::web::eventlog::list))
        .route("/api/kinfra/{*rest}", any(api_not_found))
        // The health API: kinfrad's own, whatever service routes /api/.
        .route("/api/health", get(crate::web::health::whole))
        .route("/api/health/liveness", get(crate::web::health::liveness))
        .route("/api/health/readiness", get(crate::web::health::readiness))
        .route("/api/health/startup", get(crate::web::health::startup))
        .route(
            "/api/health/components/{name}",
            get(crate::web::health::component),
        )
        .route("/api/health/", any(api_not_found))
        .route("/api/health/{*rest}", any(api_not_found))
        .route("/api/{*rest}", any(api_or_route))
        .route("/__status__", get(services_status))
        // kinfrad's metrics, whatever service routes `/`.
        .route("/metrics", get(crate::web::metrics::metrics))
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
        .route(crate::app::BYPASS_LINK_PATH, get(crate::web::bypass::open))
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
