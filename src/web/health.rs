//! The health API: `GET /api/health` (the whole picture), `/api/health/liveness`,
//! `/api/health/readiness`, `/api/health/startup` and `/api/health/components/{name}`, in the
//! status codes orchestrators and load balancers expect. Every answer is read from what the
//! probe tasks and the daemon's periodic state-file check recorded last: a request never
//! probes, writes or renders a page, so monitors may poll it often.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Request, State};
use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};

use crate::app::App;
use crate::model::health::{self, Component, Reading, Status};
use crate::proxy::answers::{Peer, json_response};

/// The name of kinfrad's own component (no service may take it).
pub const OWN: &str = "kinfrad";

fn iso(t: SystemTime) -> String {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    crate::protocol::fmt::iso(ms)
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// kinfrad itself: listeners, the state file's last writability check, templates, the last
/// reload.
fn own(app: &App, reader: bool) -> Component {
    let c = app.own_checks();
    let state_ok = c.state.as_ref().is_none_or(|s| s.error.is_none());
    let status = health::own_status(c.listeners, state_ok, c.reload_error.is_none());
    let shown = |e: &str| {
        if reader {
            e.to_string()
        } else {
            "see the dashboard or kinfractl status".to_string()
        }
    };
    let state_error = c.state.as_ref().and_then(|s| s.error.as_deref()).map(shown);
    let reload_error = c.reload_error.as_deref().map(shown);
    let error = if c.listeners == 0 {
        Some("no HTTP listener bound".to_string())
    } else {
        state_error.clone().or_else(|| reload_error.clone())
    };
    let json = json!({
        "name": OWN,
        "kind": "kinfrad",
        "status": status.as_str(),
        "critical": true,
        "last_check": c.state.as_ref().map(|s| iso(s.at)),
        "latency_ms": c.state.as_ref().map(|s| ms(s.latency)),
        "error": error,
        "circuit_state": Value::Null,
        "consecutive_failures": 0,
        "checks": {
            "listeners": {"ok": c.listeners > 0, "count": c.listeners},
            "state_file": {
                "ok": state_ok,
                "last_check": c.state.as_ref().map(|s| iso(s.at)),
                "error": state_error,
            },
            "templates": {"ok": true, "count": c.templates},
            "config": {"ok": c.reload_error.is_none(), "error": reload_error},
        },
    });
    Component {
        name: OWN.to_string(),
        status,
        critical: true,
        by_design: false,
        checked: true,
        json,
    }
}

/// Every component's name, whether it is up (healthy or degraded: it serves) and whether it is
/// critical, from the same readings the health API answers with (`/metrics` shows them).
pub(crate) fn component_states(app: &App) -> Vec<(String, bool, bool)> {
    components(app, false)
        .iter()
        .map(|c| (c.name.clone(), c.status != Status::Unhealthy, c.critical))
        .collect()
}

/// Every component: kinfrad first, then the services in config order.
fn components(app: &App, reader: bool) -> Arc<Vec<Component>> {
    app.health_components(reader, || compose(app, reader))
}

fn compose(app: &App, reader: bool) -> Vec<Component> {
    let now = Instant::now();
    let services = app.services();
    let mut out = Vec::with_capacity(services.list.len() + 1);
    out.push(own(app, reader));
    for up in &services.list {
        let r = up.reading(now);
        let status = health::service_status(
            r.state,
            r.circuit == crate::model::circuit::CircuitState::HalfOpen,
        );
        // "By design": while it is down, its visitors get kinfrad's fallback page for it
        // (`enable_fallback`, the default) or a maintenance page an operator put up.
        let by_design = status == Status::Unhealthy
            && (r.fallback || app.maint().covers_service(&services, &up.name));
        let error = (!r.error.is_empty()).then(|| {
            if reader {
                r.error.clone()
            } else {
                crate::upstream::public_error(&r.error)
            }
        });
        let json = json!({
            "name": up.name,
            "kind": "service",
            "status": status.as_str(),
            "critical": r.critical,
            "state": r.state,
            "last_check": r.last_check.map(|(t, _)| iso(t)),
            "latency_ms": r.last_check.map(|(_, d)| ms(d)),
            "error": error,
            "circuit_state": r.circuit.as_str(),
            "circuit_failures": r.circuit_failures,
            "consecutive_failures": r.probe_failures,
            "fallback_by_design": by_design,
        });
        out.push(Component {
            name: up.name.clone(),
            status,
            critical: r.critical,
            by_design,
            checked: r.checked,
            json,
        });
    }
    out
}

fn is_reader(app: &App, req: &Request) -> bool {
    let peer = req.extensions().get::<Peer>().copied();
    crate::web::dashboard::readable(app, req.uri(), req.headers(), peer)
}

fn code(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// `GET /api/health`: 200 while healthy or degraded, 503 when unhealthy.
pub(crate) async fn whole(State(app): State<Arc<App>>, req: Request) -> Response {
    let comps = components(&app, is_reader(&app, &req));
    let readings: Vec<Reading<'_>> = comps.iter().map(Component::reading).collect();
    let status = health::overall(&readings);
    let body = json!({
        "status": status.as_str(),
        "service": OWN,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime": app.uptime().as_secs_f64(),
        "timestamp": iso(SystemTime::now()),
        "ready": health::holding_back(&readings).is_empty(),
        "started": app.startup_done(comps.iter().all(|c| c.checked)),
        "components": comps.iter().map(|c| (c.name.clone(), c.json.clone())).collect::<serde_json::Map<_, _>>(),
    });
    json_response(code(status != Status::Unhealthy), &body)
}

/// `GET /api/health/liveness`: 200 whenever kinfrad's event loop answers; nothing else is asked.
pub(crate) async fn liveness(State(app): State<Arc<App>>) -> Response {
    json_response(
        StatusCode::OK,
        &json!({"status": "alive", "uptime": app.uptime().as_secs_f64()}),
    )
}

/// `GET /api/health/readiness`: 200 when no critical component holds kinfrad back, else 503
/// naming the ones that do.
pub(crate) async fn readiness(State(app): State<Arc<App>>, req: Request) -> Response {
    let comps = components(&app, is_reader(&app, &req));
    let readings: Vec<Reading<'_>> = comps.iter().map(Component::reading).collect();
    let held = health::holding_back(&readings);
    let blocking: serde_json::Map<String, Value> = comps
        .iter()
        .filter(|c| held.contains(&c.name.as_str()))
        .map(|c| (c.name.clone(), c.json.clone()))
        .collect();
    let ready = held.is_empty();
    json_response(
        code(ready),
        &json!({
            "status": if ready { "ready" } else { "not_ready" },
            "blocking": held,
            "components": blocking,
        }),
    )
}

/// `GET /api/health/startup`: 503 until every service's state is known from a probe (or its
/// process is not running), then 200 for good.
pub(crate) async fn startup(State(app): State<Arc<App>>) -> Response {
    let now = Instant::now();
    let services = app.services();
    let pending: Vec<&str> = services
        .list
        .iter()
        .filter(|u| !u.reading(now).checked)
        .map(|u| u.name.as_str())
        .collect();
    let done = app.startup_done(pending.is_empty());
    json_response(
        code(done),
        &json!({
            "status": if done { "started" } else { "starting" },
            "pending": if done { Vec::new() } else { pending },
        }),
    )
}

/// `GET /api/health/components/{name}`: one component (503 when it is unhealthy); 404 with
/// the names there are for an unknown one.
pub(crate) async fn component(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let comps = components(&app, is_reader(&app, &req));
    match comps.iter().find(|c| c.name == name) {
        Some(c) => json_response(code(c.status != Status::Unhealthy), &c.json),
        None => json_response(
            StatusCode::NOT_FOUND,
            &json!({
                "success": false,
                "error": {"code": "unknown_component", "message": format!("no component named {name:?}")},
                "components": comps.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            }),
        ),
    }
}
