//! The live side of the dashboard: the event stream (`/__events__`: state changes, the
//! countdown, log lines, the event log), open streams not holding up a stop, and the seed-002
//! route and maintenance APIs the page reads.

use std::time::{Duration, Instant};

use crate::T;
use crate::common;
use crate::common::{Sse, eventually, get, get_html, post};

#[test]
fn events_push_state_changes_countdown_and_log_lines() {
    let d = common::dashboard_daemon("", "Web", "INFO hello");
    let bearer = format!("Bearer {}", d.token());
    let auth = [("Authorization", bearer.as_str())];
    let sse = Sse::open(d.addr, "/__events__", &[]);
    let first = sse.wait(T, "statusUpdate", 0, |_| true);
    assert!(sse.head().starts_with("HTTP/1.1 200"), "{}", sse.head());
    assert!(
        sse.head()
            .to_ascii_lowercase()
            .contains("content-type: text/event-stream")
    );
    assert_eq!(first["services"]["web"]["state"], "running");
    assert_eq!(first["services"]["web"]["supervised"], true);
    assert_eq!(first["services"]["ext"]["supervised"], false);
    assert!(first["routes"].as_array().is_some_and(|r| r.len() == 2));

    // A state change arrives pushed, well within the dashboard's 3 s.
    let n = sse.len();
    let t0 = Instant::now();
    assert_eq!(post(&d, "/__action__/stop/web", &auth, "").status, 200);
    sse.wait(Duration::from_secs(3), "statusUpdate", n, |v| {
        v["services"]["web"]["state"] == "stopped"
    });
    eprintln!("stop → pushed in {:?}", t0.elapsed());

    // Maintenance: a countdownUpdate every second, counting down.
    let n = sse.len();
    let r = post(
        &d,
        "/api/maintenance/status",
        &auth,
        r#"{"isActive": true, "countdown": 120, "message": "upgrading"}"#,
    );
    assert_eq!(r.status, 200);
    let s = sse.wait(T, "statusUpdate", n, |v| {
        v["maintenance"]["isActive"] == true
    });
    assert_eq!(s["maintenance"]["message"], "upgrading");
    let a = sse.wait(T, "countdownUpdate", n, |v| v["isActive"] == true);
    let m = sse.len();
    let b = sse.wait(T, "countdownUpdate", m, |v| v["isActive"] == true);
    let (a, b) = (a["countdown"].as_u64(), b["countdown"].as_u64());
    assert!(
        matches!((a, b), (Some(a), Some(b)) if b < a && a <= 120),
        "countdown did not tick: {a:?} then {b:?}"
    );
    let n = sse.len();
    post(
        &d,
        "/api/maintenance/status",
        &auth,
        r#"{"isActive": false}"#,
    );
    sse.wait(T, "countdownUpdate", n, |v| v["isActive"] == false);
    sse.close();

    // The log tail: the whole ring first, then each new line.
    post(&d, "/__action__/start/web", &auth, "");
    common::wait_service(&d, "web", "running");
    let logs = Sse::open(d.addr, "/__events__?logs=web", &[]);
    let first = logs.wait(T, "log", 0, |_| true);
    let text = first["lines"].to_string();
    assert!(text.contains("INFO hello"), "{text}");
    let n = logs.len();
    get(d.addr, "/marker-path-4711");
    let next = logs.wait(T, "log", n, |v| {
        v["lines"].to_string().contains("marker-path-4711")
    });
    let since = first["cursor"]
        .as_u64()
        .expect("a cursor in the first log event");
    assert!(next["cursor"].as_u64().expect("a cursor") > since);
    // The polling fallback reads the same ring from a cursor.
    let r = get(d.addr, &format!("/api/dashboard/logs/web?since={since}"));
    assert!(r.json()["lines"].to_string().contains("marker-path-4711"));
    let r = get(d.addr, "/__events__?logs=ext");
    assert_eq!(r.status, 409);
    let r = get(d.addr, "/api/dashboard/logs/nope");
    assert_eq!(r.status, 404);
    logs.close();
}

#[test]
fn open_event_streams_do_not_hold_up_a_stop() {
    let mut d = common::dashboard_daemon("", "Web", "INFO hello");
    let streams: Vec<Sse> = (0..5)
        .map(|i| {
            let path = if i % 2 == 0 {
                "/__events__"
            } else {
                "/__events__?logs=web"
            };
            Sse::open(d.addr, path, &[])
        })
        .collect();
    for s in &streams {
        eventually(T, "the first event", || (s.len() > 0).then_some(()));
    }
    d.signal(nix::sys::signal::Signal::SIGTERM);
    // The default grace is 10 s: if the streams held the stop up, this would time out.
    let st = d.wait_exit(Duration::from_secs(8));
    assert!(st.success(), "{st}: {}", d.log_text());
}

#[test]
fn route_and_maintenance_apis_have_seed_002_fields() {
    let d = common::dashboard_daemon("", "Web", "INFO hello");
    let bearer = format!("Bearer {}", d.token());
    let auth = [("Authorization", bearer.as_str())];
    let routes = get(d.addr, "/api/dashboard/routes").json();
    let rows = routes.as_array().expect("an array");
    assert_eq!(rows.len(), 2);
    for r in rows {
        for k in [
            "domain",
            "path",
            "backend",
            "status",
            "in_maintenance",
            "maintenance_page_url",
            "maintenance_hits",
            "draining",
            "drain_progress",
            "drain_remaining",
            "drain_rejected",
            "circuit_state",
            "circuit_failures",
        ] {
            assert!(r.get(k).is_some(), "route lacks {k}: {r}");
        }
    }
    let web_row = rows.iter().find(|r| r["service"] == "web").expect("web");
    assert_eq!(web_row["status"], "running");
    assert_eq!(web_row["domain"], "*");

    let r = post(
        &d,
        "/api/maintenance/status",
        &auth,
        r#"{"isActive": true}"#,
    );
    assert_eq!(r.status, 200);
    for _ in 0..3 {
        assert_eq!(get_html(d.addr, "/").status, 503);
    }
    let m = get(d.addr, "/api/dashboard/maintenance").json();
    assert_eq!(m["total_in_maintenance"], 2);
    assert_eq!(m["total_draining"], 0);
    assert_eq!(m["total_drain_rejected"], 0);
    assert_eq!(m["total_maintenance_hits"], 3);
    assert_eq!(m["maintenance"]["isActive"], true);
    let listed = m["routes"].as_array().expect("routes");
    let w = listed
        .iter()
        .find(|r| r["service"] == "web")
        .expect("web listed");
    assert_eq!(w["maintenance_hits"], 3);
    assert_eq!(w["in_maintenance"], true);
    let routes = get(d.addr, "/api/dashboard/routes").json();
    assert!(
        routes
            .as_array()
            .is_some_and(|v| v.iter().all(|r| r["status"] == "maintenance"))
    );
    assert_eq!(get(d.addr, "/api/dashboard/nothing").status, 404);
}

#[test]
fn per_target_records_are_pushed_and_left_over_the_api() {
    let d = common::dashboard_daemon("", "Web", "INFO hello");
    let bearer = format!("Bearer {}", d.token());
    let auth = [("Authorization", bearer.as_str())];
    let sse = Sse::open(d.addr, "/__events__", &[]);
    sse.wait(T, "statusUpdate", 0, |_| true);

    // Entering one service's record over the API: pushed with its own settings.
    let n = sse.len();
    let r = post(
        &d,
        "/api/maintenance/status",
        &auth,
        r#"{"isActive": true, "target": "ext", "message": "ext moves", "countdown": 600}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"]["target"], "ext");
    let s = sse.wait(T, "statusUpdate", n, |v| {
        v["maintenance_records"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x["target"] == "ext"))
    });
    let rec = &s["maintenance_records"][0];
    assert_eq!(rec["message"], "ext moves");
    assert_eq!(rec["isActive"], true);
    assert_eq!(rec["routes"], serde_json::json!(["/ext/"]));
    // The global record is untouched: `web` still serves, and the seed shape says off.
    assert_eq!(s["maintenance"]["isActive"], false);
    assert_eq!(s["services"]["ext"]["in_maintenance"], true);
    assert_eq!(s["services"]["web"]["in_maintenance"], false);
    assert_eq!(get_html(d.addr, "/").status, 200);
    assert_eq!(get_html(d.addr, "/ext/x").status, 503);
    let m = get(d.addr, "/api/dashboard/maintenance").json();
    assert_eq!(m["total_in_maintenance"], 1);
    assert_eq!(m["total_maintenance_hits"], 1);
    assert_eq!(m["records"][0]["hits"], 1);
    assert_eq!(m["routes"][0]["maintenance"]["message"], "ext moves");
    assert_eq!(m["maintenance"]["isActive"], false);

    // Left over the API by its target: pushed too.
    let n = sse.len();
    let r = post(
        &d,
        "/api/maintenance/status",
        &auth,
        r#"{"isActive": false, "target": "ext"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    sse.wait(T, "statusUpdate", n, |v| {
        v["maintenance_records"]
            .as_array()
            .is_some_and(|r| r.is_empty())
    });
    let r = post(
        &d,
        "/api/maintenance/status",
        &auth,
        r#"{"isActive": true, "target": "nope"}"#,
    );
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("unknown route or service nope"),
        "{}",
        r.text()
    );
    sse.close();
}

#[test]
fn the_event_log_is_pushed_as_kinfra_event_backlog_first() {
    let d = common::dashboard_daemon("", "Web", "INFO hello");
    common::wait_event(&d, "process_start", "web", |_| true);
    let sse = Sse::open(d.addr, "/__events__", &[]);
    // The backlog first, marked as the whole log.
    let first = sse.wait(T, "kinfraEvent", 0, |_| true);
    assert_eq!(first["reset"], true, "{first}");
    let backlog = first["events"].as_array().cloned().unwrap_or_default();
    assert!(
        backlog.iter().any(|e| e["kind"] == "process_start"),
        "{first}"
    );
    // Then each new event, once, without the backlog again.
    let n = sse.len();
    d.ctl_ok(&["maint", "enter", "--message", "<b>soon</b>"]);
    let next = sse.wait(T, "kinfraEvent", n, |v| {
        v["events"]
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["kind"] == "maintenance_on"))
    });
    assert_eq!(next["reset"], false, "{next}");
    let events = next["events"].as_array().cloned().unwrap_or_default();
    let on = events
        .iter()
        .find(|e| e["kind"] == "maintenance_on")
        .expect("maintenance_on");
    assert_eq!(on["reason"], "<b>soon</b>");
    // Never one of the backlog again.
    let last = backlog.last().and_then(|e| e["seq"].as_u64()).unwrap_or(0);
    assert!(
        events.iter().all(|e| e["seq"].as_u64() > Some(last)),
        "{next}"
    );
    sse.close();
}
