//! `/metrics`, scraped from the real kinfrad and read by Python's OpenMetrics parser: requests
//! are counted by service, route, status class and how they were answered (proxied, fallback,
//! maintenance, own, refused) the same way on both request paths; upstream latency and probe
//! histograms grow; a tripped breaker's transition is counted; access follows
//! `metrics_access`; `/metrics` is kinfrad's even when a service routes `/`; counters survive a
//! reload.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::prelude::*;

/// `kinfra_requests_total` for these labels.
fn requests(m: &Metrics, service: &str, route: &str, class: &str, path: &str) -> f64 {
    m.value(
        "kinfra_requests_total",
        &[
            ("service", service),
            ("route", route),
            ("class", class),
            ("path", path),
        ],
    )
}

#[test]
fn requests_are_counted_by_route_class_and_path() {
    let up = Upstream::start(0, |s: &Seen| {
        if s.target.ends_with("/missing") {
            Reply::text(404, "no such thing")
        } else {
            Reply::echo("web", s)
        }
    });
    let d = start(&service("web", up.port(), &["/app/"], FAST_HEALTH));
    wait_running(&d, "web");
    let before = scrape(d.addr);
    assert_eq!(before.kind("kinfra_requests"), Some("counter"));
    assert_eq!(
        before.kind("kinfra_upstream_response_seconds"),
        Some("histogram")
    );
    let n = 5;
    for i in 0..n {
        let r = get(d.addr, &format!("/app/x{i}"));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(get(d.addr, "/app/missing").status, 404);
    // Unrouted, kinfrad's own, and refused before routing (two Host headers).
    assert_eq!(json_get(d.addr, "/elsewhere").status, 404);
    assert_eq!(get(d.addr, "/health").status, 200);
    let r = send_and_read(
        d.addr,
        b"GET /app/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        std::time::Duration::from_secs(2),
    )
    .expect("answer");
    assert_eq!(r.status, 400);

    let after = scrape(d.addr);
    let grew = |service: &str, route: &str, class: &str, path: &str| {
        requests(&after, service, route, class, path)
            - requests(&before, service, route, class, path)
    };
    assert_eq!(
        grew("web", "/app/", "2xx", "proxied"),
        f64::from(n),
        "{}",
        after.text
    );
    assert_eq!(
        grew("web", "/app/", "4xx", "proxied"),
        1.0,
        "{}",
        after.text
    );
    assert_eq!(grew("", "", "4xx", "refused"), 2.0, "{}", after.text);
    // /health, and the first scrape itself.
    assert_eq!(grew("", "", "2xx", "own"), 2.0, "{}", after.text);
    assert_eq!(grew("web", "/app/", "5xx", "fallback"), 0.0);
    // Latency was observed for every proxied request.
    let count = |m: &Metrics| {
        m.value(
            "kinfra_upstream_response_seconds_count",
            &[("service", "web")],
        )
    };
    assert_eq!(count(&after) - count(&before), f64::from(n + 1));
    let inf = after.value(
        "kinfra_upstream_response_seconds_bucket",
        &[("service", "web"), ("le", "+Inf")],
    );
    assert_eq!(
        inf,
        count(&after),
        "the +Inf bucket holds every observation"
    );
    // The probe loop counts too.
    assert!(
        after.value(
            "kinfra_health_probes_total",
            &[("service", "web"), ("result", "ok")]
        ) >= 1.0
    );
    assert!(after.value("kinfra_health_probe_seconds_count", &[("service", "web")]) >= 1.0);
    assert_eq!(
        after.value(
            "kinfra_component_up",
            &[("component", "kinfrad"), ("critical", "true")]
        ),
        1.0
    );
    assert_eq!(
        after.value("kinfra_component_up", &[("component", "web")]),
        1.0
    );
    assert_eq!(
        after.value(
            "kinfra_circuit_state",
            &[("service", "web"), ("state", "closed")]
        ),
        1.0
    );
    assert_eq!(after.value("kinfra_build_info", &[]), 1.0);
    assert!(after.value("kinfra_open_connections", &[]) >= 1.0);
    assert_eq!(after.matching("process_cpu_seconds_total", &[]).len(), 1);
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(after.value(name, &[]) > 0.0, "{name}: {}", after.text);
    }
}

#[test]
fn fallback_and_maintenance_answers_are_counted_as_such() {
    let mut up = Upstream::start(0, echo("web"));
    let d = start(&service("web", up.port(), &["/"], FAST_HEALTH));
    wait_running(&d, "web");
    let before = scrape(d.addr);

    d.ctl_ok(&["maint", "enter"]);
    let m = scrape(d.addr);
    assert_eq!(
        m.value("kinfra_maintenance_active", &[("target", "*")]),
        1.0,
        "{}",
        m.text
    );
    assert_eq!(html_get(d.addr, "/page").status, 503);
    assert_eq!(json_get(d.addr, "/api/thing").status, 503);
    let m = scrape(d.addr);
    assert_eq!(
        requests(&m, "web", "/", "5xx", "maintenance")
            - requests(&before, "web", "/", "5xx", "maintenance"),
        2.0,
        "{}",
        m.text
    );
    assert_eq!(
        m.value("kinfra_maintenance_hits_total", &[("route", "/")]),
        2.0,
        "{}",
        m.text
    );
    d.ctl_ok(&["maint", "exit"]);
    let m = scrape(d.addr);
    assert!(
        m.matching("kinfra_maintenance_active", &[]).is_empty(),
        "{}",
        m.text
    );

    // The upstream dies: its visitors get the fallback page, counted as such.
    up.kill();
    let n = 3;
    for _ in 0..n {
        let r = json_get(d.addr, "/x");
        assert_json_fallback(&r, "web");
    }
    assert_eq!(assert_html_fallback(&html_get(d.addr, "/x")), "503");
    let after = eventually(T, "web down, and a probe of it failed", || {
        let m = scrape(d.addr);
        let failed = m.value(
            "kinfra_health_probes_total",
            &[("service", "web"), ("result", "fail")],
        );
        (m.value("kinfra_component_up", &[("component", "web")]) == 0.0 && failed >= 1.0)
            .then_some(m)
    });
    assert_eq!(
        requests(&after, "web", "/", "5xx", "fallback")
            - requests(&before, "web", "/", "5xx", "fallback"),
        f64::from(n + 1),
        "{}",
        after.text
    );
    assert_eq!(
        requests(&after, "web", "/", "2xx", "proxied"),
        requests(&before, "web", "/", "2xx", "proxied")
    );
}

#[test]
fn a_tripped_breaker_counts_its_transitions() {
    let broken = Arc::new(AtomicBool::new(true));
    let up = {
        let broken = broken.clone();
        Upstream::start(0, move |s: &Seen| {
            if s.target == PROBE || !broken.load(Ordering::SeqCst) {
                Reply::text(200, "ok")
            } else {
                Reply::text(500, "broken")
            }
        })
    };
    let d = start(&service(
        "cb",
        up.port(),
        &["/"],
        &format!("{FAST_HEALTH}\ncircuit_breaker = {{ failures = 3, cooldown = \"30s\" }}"),
    ));
    wait_running(&d, "cb");
    let to = |m: &Metrics, state: &str| {
        m.value(
            "kinfra_circuit_transitions_total",
            &[("service", "cb"), ("to", state)],
        )
    };
    let before = scrape(d.addr);
    assert_eq!(to(&before, "open"), 0.0, "{}", before.text);
    for _ in 0..3 {
        assert_eq!(json_get(d.addr, "/x").status, 500);
    }
    assert_json_fallback(&json_get(d.addr, "/x"), "cb");
    let m = scrape(d.addr);
    assert_eq!(to(&m, "open"), 1.0, "{}", m.text);
    assert_eq!(
        m.value(
            "kinfra_circuit_state",
            &[("service", "cb"), ("state", "open")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "kinfra_circuit_state",
            &[("service", "cb"), ("state", "closed")]
        ),
        0.0
    );
    assert_eq!(requests(&m, "cb", "/", "5xx", "proxied"), 3.0, "{}", m.text);
    assert_eq!(
        requests(&m, "cb", "/", "5xx", "fallback"),
        1.0,
        "{}",
        m.text
    );
}

#[test]
fn metrics_need_a_reader_off_loopback() {
    let up = Upstream::start(0, echo("web"));
    let d = start(&service("web", up.port(), &["/"], FAST_HEALTH));
    wait_running(&d, "web");
    // A loopback client naming another host (a tunnel, DNS rebinding) is not a local reader.
    let r = get_with_host(d.addr, "/metrics", "metrics.example.com", &[]);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.header("X-Upstream").is_none(), "the service answered");
    let auth = format!("Bearer {}", d.token());
    let r = get_with_host(
        d.addr,
        "/metrics",
        "metrics.example.com",
        &[("Authorization", &auth)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    Metrics::parse(&r.text());
    let r = get_with_host(
        d.addr,
        "/metrics",
        "metrics.example.com",
        &[("Authorization", "Bearer wrong")],
    );
    assert_eq!(r.status, 401);

    // `metrics_access = "login"`: loopback readers need the token too.
    let d = start(&format!(
        "metrics_access = \"login\"\n{}",
        service("web", up.port(), &["/"], FAST_HEALTH)
    ));
    assert_eq!(metrics_response(d.addr, &[]).status, 401);
    let auth = format!("Bearer {}", d.token());
    assert_eq!(
        metrics_response(d.addr, &[("Authorization", &auth)]).status,
        200
    );
    // …while the dashboard's own default still lets them read it.
    assert_eq!(get(d.addr, "/api/dashboard/routes").status, 200);
}

#[test]
fn metrics_win_over_a_service_routed_at_the_root() {
    let up = Upstream::start(0, echo("root"));
    let d = start(&service("root", up.port(), &["/"], FAST_HEALTH));
    wait_running(&d, "root");
    let r = metrics_response(d.addr, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("X-Upstream").is_none(),
        "the service answered /metrics"
    );
    let r = metrics_response(d.addr, &[("Accept", "text/html")]);
    assert!(r.header("X-Upstream").is_none());
    assert!(
        !up.requests().iter().any(|s| s.target == "/metrics"),
        "the service saw /metrics"
    );
    // Below it, the path is the service's.
    let r = get(d.addr, "/metrics/custom");
    assert_eq!(r.header("X-Upstream"), Some("root"), "{}", r.text());
}

#[test]
fn route_counters_survive_a_reload() {
    let up = Upstream::start(0, echo("web"));
    let other = Upstream::start(0, echo("other"));
    let web = service("web", up.port(), &["/"], FAST_HEALTH);
    let d = start(&web);
    wait_running(&d, "web");
    for _ in 0..3 {
        assert_eq!(get(d.addr, "/x").status, 200);
    }
    assert_eq!(requests(&scrape(d.addr), "web", "/", "2xx", "proxied"), 3.0);
    // Another service joins; web and its route stay.
    std::fs::write(
        d.dir.path().join("kinfra.toml"),
        format!(
            "{web}{}",
            service("other", other.port(), &["/other/"], FAST_HEALTH)
        ),
    )
    .expect("config");
    d.ctl_ok(&["reload"]);
    wait_running(&d, "other");
    assert_eq!(get(d.addr, "/x").status, 200);
    assert_eq!(get(d.addr, "/other/y").status, 200);
    let m = scrape(d.addr);
    assert_eq!(
        requests(&m, "web", "/", "2xx", "proxied"),
        4.0,
        "{}",
        m.text
    );
    assert_eq!(
        requests(&m, "other", "/other/", "2xx", "proxied"),
        1.0,
        "{}",
        m.text
    );
}

#[test]
fn drain_refusals_and_live_streams_are_shown() {
    let up = Upstream::start(0, echo("web"));
    let d = start(&service("web", up.port(), &["/"], FAST_HEALTH));
    wait_running(&d, "web");
    let m = scrape(d.addr);
    assert_eq!(m.value("kinfra_drain_active", &[]), 0.0, "{}", m.text);
    let streams = m.value("kinfra_sse_subscribers", &[]);

    // A drain of no length refuses every request on its services at once.
    d.ctl_ok(&["drain", "start", "--target", "web", "--duration", "0s"]);
    let n = 4;
    for _ in 0..n {
        let r = json_get(d.addr, "/x");
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.header("X-Drain-Mode"), Some("true"));
    }
    let m = scrape(d.addr);
    assert_eq!(m.value("kinfra_drain_active", &[]), 1.0, "{}", m.text);
    assert_eq!(
        requests(&m, "web", "/", "5xx", "drain"),
        f64::from(n),
        "{}",
        m.text
    );
    assert_eq!(
        m.value("kinfra_drain_refused_total", &[("route", "/")]),
        f64::from(n),
        "{}",
        m.text
    );
    d.ctl_ok(&["drain", "stop"]);
    assert_eq!(scrape(d.addr).value("kinfra_drain_active", &[]), 0.0);

    // A dashboard reader's live stream is a subscriber while it is open.
    let sse = Sse::open(d.addr, "/__events__", &[]);
    eventually(T, "the stream to be counted", || {
        (scrape(d.addr).value("kinfra_sse_subscribers", &[]) == streams + 1.0).then_some(())
    });
    // (A closed stream is noticed when kinfrad next writes to it: not waited for here.)
    sse.close();
}
