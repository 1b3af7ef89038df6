//! `GET /__status__`: the seeds' status JSON, filled from the upstreams.

use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::app::App;
use crate::upstream::Snapshot;

fn service_json(s: &Snapshot, routes: Vec<String>, in_maintenance: bool) -> Value {
    json!({
        "service_name": s.display_name,
        "status_message": s.status_message,
        "port": s.port,
        "pid": s.pid,
        "uptime": s.uptime,
        "uptime_secs": s.uptime_secs,
        "health_status": s.health.label(),
        "state": s.state,
        "steps": s.steps,
        "error_detail": s.error_detail,
        "url": s.url,
        "routes": routes,
        "circuit_state": s.circuit.as_str(),
        "circuit_failures": s.circuit_failures,
        "circuit_opened_secs_ago": s.circuit_opened_secs_ago,
        "requests": s.requests,
        "failures": s.failures,
        "in_maintenance": in_maintenance,
        "maintenance_hits": s.maintenance_hits,
        "fallback_page": s.fallback_page,
        "restarts": s.restarts,
        "last_exit": s.last_exit,
        "logs": s.logs.iter().map(crate::protocol::LogEntry::from).collect::<Vec<_>>(),
    })
}

/// The whole document; `Err` when `service` names no configured service.
pub fn services_json(app: &App, service: Option<&str>) -> Result<Value, String> {
    let now = Instant::now();
    let svc = app.services();
    let maint = app.maint();
    let mut services = Map::new();
    let mut chosen: Option<Value> = None;
    for up in &svc.list {
        let snap = up.snapshot(now);
        let cfg = up.cfg();
        let routes = cfg.routes.iter().map(|r| r.to_string()).collect();
        let in_m = maint
            .record
            .as_ref()
            .is_some_and(|m| m.target.covers(&up.name));
        let v = service_json(&snap, routes, in_m);
        if service == Some(up.name.as_str()) {
            chosen = Some(v.clone());
        }
        services.insert(up.name.clone(), v);
    }
    let timestamp = crate::pages::iso(crate::app::now_ms());
    let mut top = match (service, chosen) {
        (Some(_), Some(v)) => v,
        (Some(name), None) => return Err(format!("no service named {name:?}")),
        (None, _) => {
            let total = svc.list.len();
            let up = svc
                .list
                .iter()
                .filter(|u| u.health() == crate::upstream::Health::Healthy)
                .count();
            let state = if maint.record.is_some() {
                "maintenance"
            } else if up == total {
                "running"
            } else {
                "degraded"
            };
            json!({
                "service_name": "kinfrad",
                "status_message": format!("{up}/{total} services up"),
                "port": app.http_addrs.first().map(|a| a.port().to_string()).unwrap_or_default(),
                "pid": std::process::id().to_string(),
                "uptime": crate::cli::human_secs(app.uptime().as_secs()),
                "health_status": if up == total { "Healthy" } else { "Degraded" },
                "state": state,
            })
        }
    };
    if let Some(o) = top.as_object_mut() {
        o.insert("timestamp".into(), Value::String(timestamp));
        o.insert("services".into(), Value::Object(services));
        o.insert(
            "maintenance".into(),
            serde_json::to_value(app.status_view()).unwrap_or(Value::Null),
        );
    }
    Ok(top)
}
