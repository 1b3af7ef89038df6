//! `GET /__status__`: the status JSON fallback pages, the dashboard and scripts read, filled from
//! the upstreams (and, in a fleet, `fleet`: this host's view of it); and the dashboard's route
//! list (`GET /api/dashboard/routes`).

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::app::{ActiveDrain, App, HitCounters, MaintView, Services};
use crate::protocol::FleetReport;
use crate::upstream::Snapshot;

fn service_json(
    s: &Snapshot,
    routes: Vec<String>,
    in_maintenance: bool,
    maintenance_hits: u64,
    supervised: bool,
    logs: Vec<crate::protocol::LogEntry>,
    reader: bool,
) -> Value {
    let mut v = json!({
        "service_name": s.display_name,
        "status_message": s.status_message,
        "fallback_message": s.fallback_message,
        "port": s.port,
        "pid": s.pid,
        "uptime": s.uptime,
        "uptime_secs": s.uptime_secs,
        "health_status": s.health.label(),
        "state": s.state,
        "steps": s.steps,
        "error_detail": if reader { s.error_detail.clone() } else { crate::upstream::public_error(&s.error_detail) },
        "routes": routes,
        "circuit_state": s.circuit.as_str(),
        "circuit_failures": s.circuit_failures,
        "circuit_opened_secs_ago": s.circuit_opened_secs_ago,
        "requests": s.requests,
        "failures": s.failures,
        "in_maintenance": in_maintenance,
        "maintenance_hits": maintenance_hits,
        "fallback_page": s.fallback_page,
        "restarts": s.restarts,
        "last_exit": s.last_exit,
        "supervised": supervised,
        "logs": logs,
    });
    // Where a service lives is for dashboard readers, not for every visitor.
    if reader && let Some(o) = v.as_object_mut() {
        o.insert("url".into(), Value::String(s.url.clone()));
    }
    v
}

/// The whole document; `Err` when `service` names no configured service. `reader`: a reader
/// of the dashboard, who also gets the services' last log lines, their upstream URLs and raw
/// error texts, and the fleet's etcd endpoint, link error and problems (everyone else: none of
/// these, and a summary of the error).
pub fn services_json(app: &App, service: Option<&str>, reader: bool) -> Result<Value, String> {
    // Read before anything else: the document shows at least every change up to this one, so a
    // page can tell an older document that arrives late (a fetch overtaken by a pushed update).
    let seq = app.change_seq();
    let logs = reader;
    let now = Instant::now();
    let svc = app.services();
    let maint = app.maint();
    let mut services = Map::new();
    let mut chosen: Option<Value> = None;
    // One snapshot per upstream, shared with the route rows below.
    let mut snaps = HashMap::new();
    for up in &svc.list {
        let snap = up.snapshot(now);
        let cfg = up.cfg();
        let routes = cfg.routes.iter().map(|r| r.to_string()).collect();
        let in_m = maint.covers_service(&svc, &up.name);
        // The service's hits: its routes' own counts, added.
        let hits = cfg
            .routes
            .iter()
            .map(|r| app.hit_counters().route_hits(r))
            .sum();
        let process = up.process();
        // Log lines only for dashboard readers: nobody else pays for the ring's lock.
        let lines = match process.as_ref() {
            Some(h) if logs => h.logs.tail(10).iter().map(Into::into).collect(),
            _ => Vec::new(),
        };
        let v = service_json(&snap, routes, in_m, hits, process.is_some(), lines, reader);
        if service == Some(up.name.as_str()) {
            chosen = Some(v.clone());
        }
        services.insert(up.name.clone(), v);
        snaps.insert(up.name.as_str(), snap);
    }
    let timestamp = crate::protocol::fmt::iso(crate::model::now_ms());
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
            let state = if maint.global().is_some() {
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
                "uptime": crate::protocol::fmt::human_secs(app.uptime().as_secs()),
                "health_status": if up == total { "Healthy" } else { "Degraded" },
                "state": state,
            })
        }
    };
    if let Some(o) = top.as_object_mut() {
        o.insert("timestamp".into(), Value::String(timestamp));
        o.insert("seq".into(), Value::from(seq));
        o.insert("services".into(), Value::Object(services));
        o.insert(
            "maintenance".into(),
            serde_json::to_value(app.status_view()).unwrap_or(Value::Null),
        );
        if service.is_none() {
            let drain = app.drain_current();
            o.insert(
                "routes".into(),
                route_rows(
                    &svc,
                    &maint,
                    app.hit_counters(),
                    drain.as_deref(),
                    &snaps,
                    reader,
                ),
            );
            o.insert(
                "drain".into(),
                serde_json::to_value(app.drain_report()).unwrap_or(Value::Null),
            );
            o.insert(
                "maintenance_records".into(),
                serde_json::to_value(app.maint_list()).unwrap_or(Value::Null),
            );
            // A single host has no fleet, and says nothing of one.
            if let Some(f) = app.fleet_local() {
                o.insert(
                    "fleet".into(),
                    serde_json::to_value(fleet_view(f, reader)).unwrap_or(Value::Null),
                );
            }
        }
    }
    Ok(top)
}

/// The fleet as this host knows it. Where etcd lives, raw errors and the problems of applying
/// the intent are for dashboard readers (everyone else: the link's state and since when, the
/// intent, the hosts and their services' health).
fn fleet_view(mut f: FleetReport, reader: bool) -> FleetReport {
    if !reader {
        f.link.endpoint = None;
        f.link.error = None;
        f.problems.clear();
        for n in &mut f.nodes {
            n.problems.clear();
        }
        // Like the route rows: custom page URLs only for readers.
        for m in &mut f.maintenance {
            m.page_url = None;
        }
    }
    f
}

/// Every route with its service's state, maintenance, drain and circuit (the dashboard's
/// `RouteStatus`). `maintenance_hits` counts the route's own hits since the record that answers
/// it was entered; `maintenance` is that record; `drain_rejected` the route's own refusals since
/// the drain started.
pub fn routes_json(app: &App) -> Value {
    let now = Instant::now();
    let svc = app.services();
    let snaps = svc
        .list
        .iter()
        .map(|up| (up.name.as_str(), up.snapshot(now)))
        .collect();
    let drain = app.drain_current();
    route_rows(
        &svc,
        &app.maint(),
        app.hit_counters(),
        drain.as_deref(),
        &snaps,
        true,
    )
}

/// `reader`: include each route's backend URL and custom maintenance page URL.
fn route_rows(
    svc: &Services,
    maint: &MaintView,
    counters: &HitCounters,
    drain: Option<&ActiveDrain>,
    snaps: &HashMap<&str, Snapshot>,
    reader: bool,
) -> Value {
    let now = crate::model::now_ms();
    let rows: Vec<Value> = svc
        .table
        .routes()
        .iter()
        .filter_map(|r| {
            let up = &r.target;
            // Every routed upstream is in the list the snapshots were taken from.
            let snap = snaps.get(up.name.as_str())?;
            let rec = maint.for_route(Some(r)).map(|a| &a.record);
            let drain = drain.filter(|d| d.covers(&up.name));
            let remaining = drain.map_or(0, |d| d.record.remaining_ms(now).div_ceil(1000));
            let domain = match &r.spec.host {
                crate::model::routes::HostMatch::Any => "*".to_string(),
                crate::model::routes::HostMatch::Exact(h) => h.clone(),
                crate::model::routes::HostMatch::Suffix(s) => format!("*{s}"),
            };
            let record = rec.map(|m| {
                let mut v = json!({
                    "target": m.target.to_string(),
                    "message": m.message,
                    "current_issue": m.current_issue,
                    "since": m.start_time_ms,
                    "eta": m.estimated_completion_ms,
                    "countdown": m.countdown_secs(now),
                    "page_url": m.page_url,
                });
                if !reader && let Some(o) = v.as_object_mut() {
                    o.remove("page_url");
                }
                v
            });
            let mut row = json!({
                "domain": domain,
                "path": r.spec.prefix,
                "route": r.spec.to_string(),
                "backend": snap.url,
                "service": up.name,
                "status": if rec.is_some() { "maintenance" } else { snap.state },
                "in_maintenance": rec.is_some(),
                "maintenance_page_url": rec.and_then(|m| m.page_url.clone()),
                "maintenance_hits": counters.route_hits(&r.spec),
                "maintenance": record,
                "draining": drain.is_some(),
                "drain_progress": drain.map_or(0.0, |d| d.record.progress(now)),
                "drain_remaining": crate::protocol::fmt::human_secs(remaining),
                "drain_rejected": drain.map_or(0, |d| d.rejected_on(&up.name, &r.spec)),
                "drained": drain.is_some_and(|d| d.drained_at().is_some()),
                "circuit_state": snap.circuit.as_str(),
                "circuit_failures": snap.circuit_failures,
            });
            if !reader && let Some(o) = row.as_object_mut() {
                o.remove("backend");
                o.remove("maintenance_page_url");
            }
            Some(row)
        })
        .collect();
    Value::Array(rows)
}

/// `GET /api/dashboard/maintenance`: totals, the routes in maintenance, draining, or with hits
/// (each with its own hits and the record that answers it), every record (`records`, with
/// settings kept for later), the global record's `/api/maintenance/status` view
/// (`maintenance`) and the drain's report (`drain`). `total_maintenance_hits` is the listed
/// routes' hits plus `unrouted_hits`.
pub fn maintenance_json(app: &App) -> Value {
    let routes = match routes_json(app) {
        Value::Array(v) => v,
        _ => Vec::new(),
    };
    let in_m = routes
        .iter()
        .filter(|r| r["in_maintenance"] == Value::Bool(true))
        .count();
    let draining = routes
        .iter()
        .filter(|r| r["draining"] == Value::Bool(true))
        .count();
    let listed: Vec<Value> = routes
        .into_iter()
        .filter(|r| {
            r["in_maintenance"] == Value::Bool(true)
                || r["maintenance_hits"].as_u64() > Some(0)
                || r["draining"] == Value::Bool(true)
        })
        .map(|r| {
            json!({
                "domain": r["domain"],
                "path": r["path"],
                "route": r["route"],
                "service": r["service"],
                "in_maintenance": r["in_maintenance"],
                "maintenance_hits": r["maintenance_hits"],
                "maintenance_page_url": r["maintenance_page_url"],
                "maintenance": r["maintenance"],
                "draining": r["draining"],
                "drain_progress": r["drain_progress"],
                "drain_remaining": r["drain_remaining"],
                "drain_rejected": r["drain_rejected"],
            })
        })
        .collect();
    let drain = app.drain_report();
    let unrouted = app.hit_counters().unrouted_hits();
    let total = listed
        .iter()
        .filter_map(|r| r["maintenance_hits"].as_u64())
        .sum::<u64>()
        + unrouted;
    json!({
        "total_in_maintenance": in_m,
        "total_draining": draining,
        "total_maintenance_hits": total,
        "total_drain_rejected": drain.rejected,
        "unrouted_hits": unrouted,
        "routes": listed,
        "records": app.maint_list(),
        "maintenance": app.status_view(),
        "drain": drain,
    })
}
