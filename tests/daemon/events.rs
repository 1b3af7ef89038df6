//! The event log end to end: a service whose upstream fails or dies records why its circuit
//! opened and its health went down, and its recovery; a killed child records its signal and its
//! restart; `GET /api/kinfra/events`, `kinfractl events` (text and `--json`) and `kinfractl
//! events -f` show them, the follower as they happen and until kinfrad goes away.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use crate::T;
use crate::common::*;

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().filter_map(|e| e["seq"].as_u64()).collect()
}

/// An upstream that answers 500 while `fail` is set, and its probe 503 while `probe_fail` is.
fn flaky(fail: &Arc<AtomicBool>, probe_fail: &Arc<AtomicBool>) -> Upstream {
    let (fail, probe_fail) = (fail.clone(), probe_fail.clone());
    Upstream::start(0, move |s: &Seen| {
        if s.target == PROBE {
            if probe_fail.load(Ordering::SeqCst) {
                return Reply::text(503, "probe says no");
            }
            return Reply::text(200, "ok");
        }
        if fail.load(Ordering::SeqCst) {
            Reply::text(500, "broken")
        } else {
            Reply::text(200, "fine")
        }
    })
}

#[test]
fn circuit_and_health_events_say_why_and_show_the_recovery() {
    let fail = Arc::new(AtomicBool::new(true));
    let probe_fail = Arc::new(AtomicBool::new(false));
    let up = flaky(&fail, &probe_fail);
    let d = start_proxy(&url_service(
        "api",
        up.port(),
        &["/"],
        &format!(
            "{FAST_HEALTH}\ncircuit_breaker = {{ failures = 3, cooldown = \"1s\", half_open_requests = 1 }}"
        ),
    ));
    wait_running(&d, "api");
    wait_event(&d, "health_up", "api", |_| true);
    for _ in 0..3 {
        assert_eq!(json_get(d.addr, "/x").status, 500);
    }
    let open = wait_event(&d, "circuit_open", "api", |_| true);
    assert_eq!(open["failures"], 3, "{open}");
    let reason = open["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("3 consecutive failures") && reason.contains("5xx"),
        "{open}"
    );

    // The upstream answers again: after the cool-down a trial goes through and closes it.
    fail.store(false, Ordering::SeqCst);
    let closed = eventually(T, "a trial to close the circuit", || {
        json_get(d.addr, "/x");
        events_http(&d)
            .into_iter()
            .find(|e| e["kind"] == "circuit_closed")
    });
    assert_eq!(closed["reason"], "trial requests succeeded", "{closed}");
    let half = wait_event(&d, "circuit_half_open", "api", |_| true);
    assert!(
        half["reason"]
            .as_str()
            .is_some_and(|r| r.contains("cool-down of 1s over")),
        "{half}"
    );
    assert!(
        open["seq"].as_u64() < half["seq"].as_u64()
            && half["seq"].as_u64() < closed["seq"].as_u64()
    );

    // The probe fails: the health goes down with the probe's own words.
    fail.store(true, Ordering::SeqCst);
    probe_fail.store(true, Ordering::SeqCst);
    let down = wait_event(&d, "health_down", "api", |_| true);
    assert!(
        down["reason"]
            .as_str()
            .is_some_and(|r| r.contains("returned 503")),
        "{down}"
    );
    assert!(down["failures"].as_u64().is_some_and(|n| n >= 1), "{down}");
    assert!(down["latency_ms"].is_u64(), "a probe's latency: {down}");

    // Recovery: healthy again.
    fail.store(false, Ordering::SeqCst);
    probe_fail.store(false, Ordering::SeqCst);
    let up_again = wait_event(&d, "health_up", "api", |e| {
        e["seq"].as_u64() > down["seq"].as_u64()
    });
    assert!(
        up_again["reason"]
            .as_str()
            .is_some_and(|r| r.contains("health check passed"))
    );

    // Once each, in order, the same through the JSON endpoint and kinfractl --json.
    let http = events_http(&d);
    let s = seqs(&http);
    assert!(s.windows(2).all(|w| w[1] == w[0] + 1), "{s:?}");
    assert_eq!(
        http.iter().filter(|e| e["kind"] == "circuit_open").count(),
        1,
        "{http:?}"
    );
    let ctl = events_ctl(&d);
    assert_eq!(
        ctl[..http.len()],
        http[..],
        "kinfractl --json events and the API agree"
    );
    // And as text: one line each, oldest first.
    let text = d.ctl_ok(&["events"]);
    let lines: Vec<&str> = text.lines().collect();
    let at = |kind: &str| {
        lines
            .iter()
            .position(|l| l.contains(kind) && l.contains(" api"))
            .unwrap_or_else(|| panic!("no {kind} line in:\n{text}"))
    };
    assert!(at("circuit_open") < at("health_down"), "{text}");
    assert!(lines[at("circuit_open")].contains("failures=3"), "{text}");
    assert!(lines[at("health_down")].contains("latency="), "{text}");
}

#[test]
fn a_dead_upstream_opens_the_circuit_and_its_return_closes_it() {
    let mut up = Upstream::start(0, echo("api"));
    let port = up.port();
    let d = start_proxy(&url_service(
        "api",
        port,
        &["/"],
        "health_check = { path = \"/_probe\", interval = \"200ms\", timeout = \"500ms\", grace = \"0s\", unhealthy_threshold = 100 }\ncircuit_breaker = { failures = 1, cooldown = \"1s\", half_open_requests = 1 }",
    ));
    wait_running(&d, "api");
    up.kill();
    drop(up);
    // The request that finds it dead: the circuit opens and the service is down at once.
    assert_ne!(json_get(d.addr, "/x").status, 200);
    let open = wait_event(&d, "circuit_open", "api", |_| true);
    let down = wait_event(&d, "health_down", "api", |_| true);
    for e in [&open, &down] {
        let r = e["reason"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(r.contains("refused") || r.contains("connect"), "{e}");
    }
    // It comes back: the probe sees it, and the circuit closes with the health. (The probe
    // alone would never call it down: its threshold is out of reach.)
    let _up = Upstream::start(port, echo("api"));
    wait_event(&d, "health_up", "api", |e| {
        e["seq"].as_u64() > down["seq"].as_u64()
    });
    let closed = wait_event(&d, "circuit_closed", "api", |_| true);
    assert!(
        closed["reason"]
            .as_str()
            .is_some_and(|r| r.contains("health check passed"))
    );
    let text = d.ctl_ok(&["events"]);
    // Healthy at the start and again at the end; the rest once.
    for (kind, n) in [
        ("circuit_open", 1),
        ("health_down", 1),
        ("health_up", 2),
        ("circuit_closed", 1),
    ] {
        assert_eq!(
            text.lines().filter(|l| l.contains(kind)).count(),
            n,
            "{kind} once:\n{text}"
        );
    }
}

#[test]
fn a_killed_child_records_its_signal_and_its_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = server_script(dir.path(), "kid", 0.0);
    let d = start_config(dir, &python_service("kid", &script), &[]);
    let s = wait_service(&d, "kid", "running");
    let started = wait_event(&d, "process_start", "kid", |_| true);
    let pid = pid_of(&s);
    assert!(
        started["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&format!("pid {pid}")))
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the child");
    let exit = wait_event(&d, "process_exit", "kid", |_| true);
    let reason = exit["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("SIGKILL") && reason.contains("restarting"),
        "{exit}"
    );
    let again = wait_event(&d, "process_restart", "kid", |_| true);
    assert!(again["seq"].as_u64() > exit["seq"].as_u64());
    assert!(
        again["reason"]
            .as_str()
            .is_some_and(|r| r.contains("SIGKILL")),
        "{again}"
    );
    let text = d.ctl_ok(&["events"]);
    assert!(
        text.lines()
            .any(|l| l.contains("process_exit") && l.contains("kid") && l.contains("SIGKILL")),
        "{text}"
    );
}

#[test]
fn a_follower_prints_what_happens_after_it_started_and_notices_kinfrad_going() {
    let mut d = Daemon::start();
    d.ctl_ok(&["maint", "enter", "--message", "first"]);
    let f = Follower::start(&d, &[]);
    // The backlog first.
    f.line_where("the backlog's maintenance_on", |l| {
        l.contains("maintenance_on")
    });
    // Then what happens after it started.
    d.ctl_ok(&["maint", "exit"]);
    let l = f.line_where("maintenance_off", |l| l.contains("maintenance_off"));
    assert!(l.contains("ALL"), "{l}");
    let j = Follower::start(&d, &["--json"]);
    j.line_where("the backlog as JSON", |l| l.contains("\"maintenance_off\""));
    d.ctl_ok(&["drain", "start", "--duration", "1h"]);
    let line = j.line_where("drain_started", |l| l.contains("drain_started"));
    let e: Value = serde_json::from_str(&line).expect("one JSON object a line");
    assert!(e["seq"].as_u64() > Some(2), "{e}");
    // kinfrad goes away: the follower says so and fails.
    d.signal(nix::sys::signal::Signal::SIGKILL);
    d.wait_exit(T);
    let mut f = f;
    let out = eventually(T, "the follower to exit", || {
        f.child.try_wait().ok().flatten()
    });
    assert!(!out.success(), "{out}");
    let mut err = String::new();
    if let Some(mut e) = f.child.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut err).expect("stderr");
    }
    assert!(err.contains("kinfrad went away"), "{err}");
}

#[test]
fn the_events_path_is_kinfrads_own_on_both_request_paths() {
    let up = Upstream::start(0, echo("svc"));
    let d = start_proxy(&url_service("svc", up.port(), &["/"], ""));
    d.ctl_ok(&[
        "maint",
        "enter",
        "--target",
        "svc",
        "--message",
        "<b>hi</b>",
    ]);
    // HTTP/1.1 (the fast path) and HTTP/1.0 (always hyper): kinfrad answers, not the service.
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        let req = format!(
            "GET /api/kinfra/events {version}\r\nHost: {}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
            d.addr
        );
        let r = parse_response(&raw(d.addr, req.as_bytes()).expect("request")).expect("response");
        assert_eq!(r.status, 200, "{version}: {}", r.text());
        let v = r.json();
        assert!(
            v["events"]
                .as_array()
                .is_some_and(|a| a.iter().any(|e| e["kind"] == "maintenance_on")),
            "{v}"
        );
    }
    assert!(up.receipts("/api/kinfra/events").is_empty());
    // Dashboard readers only: a foreign Host is no local reader (the dashboard's rule).
    let r = get_with_host(d.addr, "/api/kinfra/events", "example.com", &[]);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(json_get(d.addr, "/api/kinfra/events?after=x").status, 400);
    let after = json_get(d.addr, "/api/kinfra/events?after=1").json();
    assert!(
        after["events"]
            .as_array()
            .is_some_and(|a| a.iter().all(|e| e["seq"].as_u64() > Some(1)))
    );
}
