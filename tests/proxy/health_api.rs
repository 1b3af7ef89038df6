//! The health API (`/api/health`, `liveness`, `readiness`, `startup`, `components/{name}`):
//! its status codes as services go from healthy to degraded (a non-critical one down) to
//! unhealthy (a critical one down) and back; startup held at 503 until the first probe round
//! has answered; and its paths answered by kinfrad even when a service routes `/api/`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use crate::prelude::*;

/// An upstream whose probe answers 200 while `up` is true and 500 otherwise.
fn switchable(tag: &'static str) -> (Upstream, Arc<AtomicBool>) {
    let up = Arc::new(AtomicBool::new(true));
    let flag = up.clone();
    let server = Upstream::start(0, move |s: &Seen| {
        if s.target == PROBE && !flag.load(Ordering::SeqCst) {
            return Reply::text(500, "probe says no");
        }
        Reply::echo(tag, s)
    });
    (server, up)
}

/// `GET path` until `/api/health` shows `status`; returns the answer.
fn wait_overall(d: &Daemon, status: &str) -> Resp {
    eventually(T, &format!("/api/health to be {status}"), || {
        let r = json_get(d.addr, "/api/health");
        (r.json()["status"] == status).then_some(r)
    })
}

fn code(d: &Daemon, path: &str) -> u16 {
    json_get(d.addr, path).status
}

#[test]
fn health_api_goes_from_healthy_to_degraded_to_unhealthy_and_back() {
    let (main, main_up) = switchable("main");
    let (side, side_up) = switchable("side");
    let (web, web_up) = switchable("web");
    let d = start(&format!(
        "{}{}{}",
        service(
            "main",
            main.port(),
            &["/main/"],
            &format!("{FAST_HEALTH}\nenable_fallback = false")
        ),
        service(
            "side",
            side.port(),
            &["/side/"],
            &format!("{FAST_HEALTH}\ncritical = false")
        ),
        service("web", web.port(), &["/"], FAST_HEALTH),
    ));

    // Healthy: every endpoint 200.
    let r = wait_overall(&d, "healthy");
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["version"], env!("CARGO_PKG_VERSION"));
    assert!(j["uptime"].as_f64().is_some(), "{j}");
    assert_eq!(j["ready"], true, "{j}");
    for name in ["kinfrad", "main", "side", "web"] {
        assert_eq!(j["components"][name]["status"], "healthy", "{name}: {j}");
    }
    let m = &j["components"]["main"];
    assert_eq!(m["critical"], true, "{m}");
    assert_eq!(m["circuit_state"], "closed", "{m}");
    assert_eq!(m["consecutive_failures"], 0, "{m}");
    assert!(m["last_check"].is_string(), "{m}");
    assert!(m["latency_ms"].as_f64().is_some(), "{m}");
    assert_eq!(j["components"]["side"]["critical"], false);
    let k = &j["components"]["kinfrad"];
    assert_eq!(k["checks"]["listeners"]["ok"], true, "{k}");
    assert_eq!(k["checks"]["state_file"]["ok"], true, "{k}");
    assert_eq!(k["checks"]["templates"]["ok"], true, "{k}");
    for p in [
        "/api/health/liveness",
        "/api/health/readiness",
        "/api/health/startup",
        "/api/health/components/main",
        "/api/health/components/kinfrad",
    ] {
        assert_eq!(code(&d, p), 200, "{p}");
    }

    // Degraded: a non-critical service down; still ready.
    side_up.store(false, Ordering::SeqCst);
    let r = wait_overall(&d, "degraded");
    assert_eq!(r.status, 200, "{}", r.text());
    let s = r.json()["components"]["side"].clone();
    assert_eq!(s["status"], "unhealthy", "{s}");
    assert!(s["consecutive_failures"].as_u64().unwrap_or(0) >= 1, "{s}");
    // A loopback client reads the dashboard's details: the probe's own words.
    assert!(
        s["error"].as_str().is_some_and(|e| e.contains("500")),
        "{s}"
    );
    assert_eq!(code(&d, "/api/health/readiness"), 200);
    assert_eq!(code(&d, "/api/health/liveness"), 200);
    assert_eq!(code(&d, "/api/health/components/side"), 503);
    assert_eq!(code(&d, "/api/health/components/main"), 200);

    // A critical service with fallback pages down: unhealthy, but ready (its visitors get its
    // fallback page by design).
    web_up.store(false, Ordering::SeqCst);
    let r = wait_overall(&d, "unhealthy");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["components"]["web"]["fallback_by_design"], true);
    let ready = json_get(d.addr, "/api/health/readiness");
    assert_eq!(ready.status, 200, "{}", ready.text());

    // A critical service without a fallback down: not ready, and the answer says which.
    main_up.store(false, Ordering::SeqCst);
    let ready = eventually(T, "readiness 503", || {
        let r = json_get(d.addr, "/api/health/readiness");
        (r.status == 503).then_some(r)
    });
    let j = ready.json();
    assert_eq!(j["status"], "not_ready", "{j}");
    assert_eq!(j["blocking"], serde_json::json!(["main"]), "{j}");
    assert_eq!(j["components"]["main"]["status"], "unhealthy", "{j}");
    assert_eq!(code(&d, "/api/health"), 503);
    assert_eq!(code(&d, "/api/health/liveness"), 200);
    assert_eq!(code(&d, "/api/health/startup"), 200);
    assert_eq!(code(&d, "/api/health/components/main"), 503);

    // Recovered.
    for f in [&main_up, &side_up, &web_up] {
        f.store(true, Ordering::SeqCst);
    }
    let r = wait_overall(&d, "healthy");
    assert_eq!(r.status, 200);
    assert_eq!(code(&d, "/api/health/readiness"), 200);
    assert_eq!(code(&d, "/api/health/components/side"), 200);
}

#[test]
fn health_components_404_lists_the_names() {
    let (api, _up) = switchable("api");
    let d = start(&service("api", api.port(), &["/"], FAST_HEALTH));
    let r = json_get(d.addr, "/api/health/components/nope");
    assert_eq!(r.status, 404, "{}", r.text());
    let j = r.json();
    assert_eq!(j["error"]["code"], "unknown_component", "{j}");
    assert_eq!(
        j["components"],
        serde_json::json!(["kinfrad", "api"]),
        "{j}"
    );
    let k = json_get(d.addr, "/api/health/components/kinfrad").json();
    assert_eq!(k["name"], "kinfrad", "{k}");
    assert_eq!(k["kind"], "kinfrad", "{k}");
}

#[test]
fn health_startup_is_503_until_the_first_probe_round_answers() {
    // An upstream that accepts connections (the kernel does) and never answers: the first
    // probe waits for its long timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let d = start(&service(
        "slow",
        port,
        &["/"],
        r#"health_check = { path = "/_probe", interval = "200ms", timeout = "120s", grace = "0s" }"#,
    ));
    let r = json_get(d.addr, "/api/health/startup");
    assert_eq!(r.status, 503, "{}", r.text());
    let j = r.json();
    assert_eq!(j["status"], "starting", "{j}");
    assert_eq!(j["pending"], serde_json::json!(["slow"]), "{j}");
    assert_eq!(json_get(d.addr, "/api/health").json()["started"], false);
    assert_eq!(code(&d, "/api/health/liveness"), 200);

    // The connection is reset: the probe answers (a failure is an answer too).
    drop(silent);
    eventually(T, "startup 200", || {
        (code(&d, "/api/health/startup") == 200).then_some(())
    });
    let j = json_get(d.addr, "/api/health").json();
    assert_eq!(j["started"], true, "{j}");
    assert_eq!(j["components"]["slow"]["status"], "unhealthy", "{j}");
    // Startup stays done.
    assert_eq!(code(&d, "/api/health/startup"), 200);
}

#[test]
fn health_paths_win_over_a_service_routing_api() {
    let api = Upstream::start(0, echo("api"));
    let d = start(&service("api", api.port(), &["/api/"], FAST_HEALTH));
    wait_running(&d, "api");
    for p in [
        "/api/health",
        "/api/health/liveness",
        "/api/health/readiness",
        "/api/health/startup",
        "/api/health/components/api",
    ] {
        let r = eventually(T, &format!("{p} 200"), || {
            let r = json_get(d.addr, p);
            (r.status == 200).then_some(r)
        });
        assert!(r.header("X-Upstream").is_none(), "{p} reached the service");
        let j: Value = r.json();
        assert!(j.get("status").is_some(), "{p}: {j}");
    }
    let r = json_get(d.addr, "/api/health/nothing");
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.header("X-Upstream").is_none());
    let r = get(d.addr, "/api/health");
    assert_eq!(r.status, 200);
    assert!(r.header("X-Upstream").is_none());
    let seen: Vec<String> = api.requests().into_iter().map(|s| s.target).collect();
    assert!(
        !seen
            .iter()
            .any(|t| t == "/api/health" || t.starts_with("/api/health/")),
        "the service saw a health request: {seen:?}"
    );
    // Not the health API: the service's.
    let r = json_get(d.addr, "/api/healthz");
    assert_eq!(r.header("X-Upstream"), Some("api"), "{}", r.text());
    let r = json_get(d.addr, "/api/users");
    assert_eq!(r.header("X-Upstream"), Some("api"), "{}", r.text());
}

#[test]
fn health_readiness_counts_a_service_in_maintenance_as_served_by_design() {
    let (api, api_up) = switchable("api");
    let d = start(&service(
        "api",
        api.port(),
        &["/"],
        &format!("{FAST_HEALTH}\nenable_fallback = false"),
    ));
    wait_overall(&d, "healthy");
    api_up.store(false, Ordering::SeqCst);
    eventually(T, "readiness 503", || {
        (code(&d, "/api/health/readiness") == 503).then_some(())
    });
    // An operator puts it in maintenance: its visitors get the maintenance page on purpose.
    d.ctl_ok(&["maint", "enter", "--target", "api"]);
    let r = json_get(d.addr, "/api/health/readiness");
    assert_eq!(r.status, 200, "{}", r.text());
    let j = json_get(d.addr, "/api/health").json();
    assert_eq!(j["status"], "unhealthy", "{j}");
    assert_eq!(j["components"]["api"]["fallback_by_design"], true, "{j}");
    d.ctl_ok(&["maint", "exit", "--target", "api"]);
    assert_eq!(code(&d, "/api/health/readiness"), 503);
}

/// kinfrad's own state-file check time in an answer of `/api/health`.
fn state_checked(j: &Value) -> Value {
    j["components"]["kinfrad"]["checks"]["state_file"]["last_check"].clone()
}

#[test]
fn health_answers_are_reused_for_health_cache_ttl_until_something_changes() {
    let up = Upstream::start(0, |s: &Seen| Reply::echo("api", s));
    // Probed once an hour once healthy: nothing changes on its side during the test.
    let probe =
        r#"health_check = { path = "/_probe", interval = "1h", timeout = "2s", grace = "0s" }"#;
    let d = start(&format!(
        "health_cache_ttl = \"5m\"\n{}",
        service("api", up.port(), &["/"], probe)
    ));
    let before = wait_overall(&d, "healthy").json();
    // kinfrad checks its state file every 5 s: the reading moves, but nothing changes, so
    // within the TTL the answer composed first is the one given.
    std::thread::sleep(std::time::Duration::from_millis(6500));
    let again = json_get(d.addr, "/api/health").json();
    assert_eq!(again["components"], before["components"]);
    // A change (here a reload) composes afresh: the state file's newer check shows.
    d.ctl_ok(&["reload"]);
    let fresh = json_get(d.addr, "/api/health").json();
    assert_ne!(
        state_checked(&fresh),
        state_checked(&before),
        "the state-file check did not move in 6.5 s: {fresh}"
    );
    assert_eq!(fresh["status"], "healthy");
}
