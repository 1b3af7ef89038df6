//! `GET /metrics`: kinfrad's metrics in the OpenMetrics text format, for Prometheus. The
//! counters live where the data does (a route's request counts, an upstream's latency and
//! probe histograms, its breaker's transitions, the maintenance hit counters, the drain's
//! refusals, the supervisor's status) and are only read here, at scrape time (`gather`); the
//! health of each component is the health API's own reading. `encode` turns the readings into
//! metric families with `prometheus-client`; `process` reads `/proc/self`.
//!
//! Who may read it follows `metrics_access` (by default `dashboard_access`), like the
//! dashboard's data.

mod encode;
mod process;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::StatusCode;
use http::header::{self, HeaderValue};

use crate::app::App;
use crate::model::maintenance::Target;
use crate::proxy::answers::{Peer, error_response};
use crate::web::auth::{self, Denied};

pub use encode::{FleetReading, RouteRequests, Scrape, ServiceReadings, circuit_label, render};
pub use process::Process;

/// The OpenMetrics text format's content type.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every reading, now.
pub fn gather(app: &App) -> Scrape {
    let now = Instant::now();
    let services = app.services();
    let mut requests: Vec<RouteRequests> = services
        .table
        .routes()
        .iter()
        .map(|r| RouteRequests {
            service: r.target.name.clone(),
            route: r.spec.to_string(),
            counts: r.counts.readings(),
        })
        .collect();
    requests.push(RouteRequests {
        service: String::new(),
        route: String::new(),
        counts: app.unrouted_requests().readings(),
    });
    let readings = services
        .list
        .iter()
        .map(|up| {
            let r = up.reading(now);
            let supervised = up.process().as_ref().map(|h| {
                let s = h.status.borrow();
                (u64::from(s.restarts), s.exits)
            });
            ServiceReadings {
                name: up.name.clone(),
                upstream_latency: up.latency.reading(),
                probes_ok: up.probes_ok.load(Ordering::Relaxed),
                probes_failed: up.probes_failed.load(Ordering::Relaxed),
                probe_latency: up.probe_latency.reading(),
                circuit: r.circuit,
                circuit_transitions: r.circuit_transitions,
                supervised,
            }
        })
        .collect();
    let view = app.maint();
    let maintenance = view
        .active
        .iter()
        .map(|a| match &a.record.target {
            Target::All => "*".to_string(),
            t => t.to_string(),
        })
        .collect();
    let mut maintenance_hits = app.hit_counters().by_route();
    maintenance_hits.push((String::new(), app.hit_counters().unrouted_hits()));
    let drain = app.drain_current();
    let drain_refused = drain
        .as_ref()
        .map(|d| d.refused_by_route())
        .unwrap_or_default();
    Scrape {
        version: env!("CARGO_PKG_VERSION"),
        requests,
        services: readings,
        components: crate::web::health::component_states(app),
        maintenance,
        maintenance_hits,
        drain_active: drain.is_some(),
        drain_refused,
        open_connections: app.connections.load(Ordering::Relaxed),
        sse_subscribers: (app.events().subscribers() + app.events().log_followers()) as u64,
        process: Process::read(),
        fleet: app.fleet_summary().map(|f| FleetReading {
            connected: f.link.connected,
            applied_revision: f.applied_revision,
            hosts: f.nodes as u64,
        }),
    }
}

/// `GET /metrics`.
pub async fn metrics(State(app): State<Arc<App>>, req: Request) -> Response {
    let cfg = app.config();
    let peer = req.extensions().get::<Peer>().map(|p| p.0);
    if !auth::can_read(
        cfg.metrics_access,
        &cfg.dashboard_hosts,
        &app.token(),
        req.uri(),
        req.headers(),
        peer,
        crate::model::now_secs(),
    ) {
        return crate::web::dashboard::unauthorized(Denied::Unauthenticated);
    }
    match render(gather(&app)) {
        Ok(text) => {
            let mut r = Response::new(Body::from(text));
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "metrics failed to encode");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "metrics failed to encode (see kinfrad's log)",
            )
        }
    }
}
