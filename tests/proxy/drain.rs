//! Drains (`kinfractl drain`, `/api/kinfra/drain`): nothing refused in the first half, then
//! refusals along the linear curve, every new request refused from the end on (on a kept-alive
//! connection too); the refusal's answer for browsers and API clients; requests in flight
//! finishing and holding back the `drained` event and `drain wait`; stop; the drain across a
//! restart; and the statistics as readings (per route, reset by a new start). Under
//! `KINFRA_TEST_FAST_PATH=0` all of it runs against the hyper path.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::prelude::*;

/// Probes once at start, then rarely: the upstream's log holds the tests' requests.
const QUIET: &str =
    r#"health_check = { path = "/_probe", interval = "60s", timeout = "1s", grace = "0s" }"#;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `web` (two routes, "/" and "www.test/") and `api` ("/api/") in front of echo upstreams.
fn two_services() -> (Upstream, Upstream, String) {
    let web = Upstream::start(
        0,
        echo_but("/slow", || Reply::Delay(Duration::from_secs(4))),
    );
    let api = Upstream::start(0, echo("api"));
    let config = [
        service("web", web.port(), &["/", "www.test/"], QUIET),
        service("api", api.port(), &["/api/"], QUIET),
    ]
    .concat();
    (web, api, config)
}

fn started(config: &str) -> Daemon {
    let d = start(config);
    wait_running(&d, "web");
    wait_running(&d, "api");
    d
}

/// `kinfractl --json drain status`.
fn drain_status(d: &Daemon) -> serde_json::Value {
    serde_json::from_str(&d.ctl_ok(&["--json", "drain", "status"])).expect("drain status json")
}

fn get_req(path: &str, host: &str, accept: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: {accept}\r\n\r\n").into_bytes()
}

fn is_refusal(r: &Resp) -> bool {
    r.status == 503 && r.header("x-drain-mode") == Some("true")
}

fn route_row<'a>(rows: &'a serde_json::Value, route: &str) -> &'a serde_json::Value {
    rows.as_array()
        .and_then(|v| v.iter().find(|r| r["route"] == route))
        .unwrap_or_else(|| panic!("no route {route} in {rows}"))
}

#[test]
fn drain_refuses_along_the_linear_curve() {
    let (_web, _api, config) = two_services();
    let d = started(&config);
    let host = d.addr.to_string();
    let mut conn = Conn::open(d.addr);
    conn.send(&get_req("/before", &host, "application/json"));
    assert_eq!(conn.response().status, 200);

    let duration_ms: u64 = 5_000;
    d.ctl_ok(&["drain", "start", "--target", "web", "--duration", "5s"]);
    let st = drain_status(&d);
    assert_eq!(st["active"], true, "{st}");
    assert_eq!(st["duration_ms"], duration_ms, "{st}");
    assert_eq!(st["services"], serde_json::json!(["web"]), "{st}");
    let start = st["start_time"].as_u64().expect("start_time");
    let end = start + duration_ms;

    // One kept-alive connection for the whole window and a little after it (bounded both by
    // time and by count); every tenth request goes to `api`, which the drain does not cover.
    struct Sample {
        sent: u64,
        got: u64,
        refused: bool,
    }
    let mut samples = Vec::new();
    let mut i = 0u64;
    while now_ms() < end + 700 && i < 200_000 {
        i += 1;
        let other = i % 10 == 0;
        let path = if other { "/api/x" } else { "/x" };
        let sent = now_ms();
        conn.send(&get_req(path, &host, "application/json"));
        let r = conn.response();
        let got = now_ms();
        if other {
            assert_eq!(r.status, 200, "api is not drained: {}", r.text());
            continue;
        }
        let refused = is_refusal(&r);
        assert!(
            refused || (r.status == 200 && r.json()["server"] == "target"),
            "neither served nor refused: {r:?} {}",
            r.text()
        );
        samples.push(Sample { sent, got, refused });
    }
    // Nothing refused before half way (measured at the answer, the latest the decision can
    // have been made); everything sent after the end refused.
    for s in &samples {
        if s.refused {
            assert!(
                2 * s.got.saturating_sub(start) > duration_ms,
                "refused at {} ms of {duration_ms}",
                s.got.saturating_sub(start)
            );
        }
        if s.sent >= end {
            assert!(s.refused, "served {} ms after the end", s.sent - end);
        }
    }
    assert!(
        samples.iter().any(|s| s.sent >= end),
        "no request after the end"
    );
    // Each tenth of the second half: the refused share within a tolerance of the mean of the
    // rule over that tenth ((a + b) - 1 for progress a..b).
    for k in 5..10 {
        let (a, b) = (k as f64 / 10.0, (k + 1) as f64 / 10.0);
        let in_decile: Vec<&Sample> = samples
            .iter()
            .filter(|s| {
                let mid = (s.sent + s.got) as f64 / 2.0;
                let p = (mid - start as f64) / duration_ms as f64;
                (a..b).contains(&p)
            })
            .collect();
        let n = in_decile.len();
        assert!(n >= 20, "only {n} requests in {a:.1}..{b:.1}");
        let share = in_decile.iter().filter(|s| s.refused).count() as f64 / n as f64;
        let want = a + b - 1.0;
        let tolerance = 0.1 + 2.5 * (0.25 / n as f64).sqrt();
        eprintln!("progress {a:.1}..{b:.1}: {n} requests, {share:.3} refused (rule: {want:.2})");
        assert!(
            (share - want).abs() <= tolerance,
            "{a:.1}..{b:.1}: {share:.3} refused of {n}, want {want:.2} ± {tolerance:.3}"
        );
    }

    // The statistics are readings: the refusals seen, on the route they came by.
    let refused = samples.iter().filter(|s| s.refused).count() as u64;
    let rows = get(d.addr, "/api/dashboard/routes").json();
    let root = route_row(&rows, "/");
    assert_eq!(root["draining"], true, "{root}");
    assert_eq!(root["drain_rejected"], refused, "{root}");
    assert_eq!(root["drain_progress"], 1.0, "{root}");
    assert_eq!(root["drain_remaining"], "0s", "{root}");
    let api = route_row(&rows, "/api/");
    assert_eq!(api["draining"], false, "{api}");
    assert_eq!(api["drain_rejected"], 0, "{api}");
    // Another route of the same service counts its own refusals.
    let www = "www.test";
    for _ in 0..3 {
        let r = call(
            d.addr,
            "GET",
            "/",
            Some(www),
            &[("Accept", "application/json")],
            b"",
        );
        assert!(is_refusal(&r), "{r:?}");
    }
    let rows = get(d.addr, "/api/dashboard/routes").json();
    assert_eq!(route_row(&rows, "www.test/")["drain_rejected"], 3);
    assert_eq!(route_row(&rows, "/")["drain_rejected"], refused);
    let m = get(d.addr, "/api/dashboard/maintenance").json();
    assert_eq!(m["total_draining"], 2, "{m}");
    assert_eq!(m["total_drain_rejected"], refused + 3, "{m}");
    assert_eq!(drain_status(&d)["rejected"], refused + 3);
    let status = get(d.addr, "/__status__").json();
    assert_eq!(status["drain"]["rejected"], refused + 3, "{status}");
    let text = d.ctl_ok(&["status"]);
    assert!(text.contains("drain: DRAINED web (web)"), "{text}");
    assert!(d.ctl_ok(&["ps"]).contains("running (draining 100%)"));

    // A new start resets the counters; nothing is refused in its first half.
    d.ctl_ok(&["drain", "start", "--target", "web", "--duration", "10m"]);
    let rows = get(d.addr, "/api/dashboard/routes").json();
    assert_eq!(route_row(&rows, "/")["drain_rejected"], 0);
    assert_eq!(route_row(&rows, "www.test/")["drain_rejected"], 0);
    assert_eq!(
        get(d.addr, "/api/dashboard/maintenance").json()["total_drain_rejected"],
        0
    );
    conn.send(&get_req("/x", &host, "application/json"));
    assert_eq!(conn.response().status, 200);

    // Stopped: requests pass again, the readings say so.
    assert!(d.ctl_ok(&["drain", "stop"]).contains("drain: off"));
    conn.send(&get_req("/x", &host, "application/json"));
    assert_eq!(conn.response().status, 200);
    let rows = get(d.addr, "/api/dashboard/routes").json();
    assert_eq!(route_row(&rows, "/")["draining"], false);
    assert_eq!(drain_status(&d)["active"], false);
}

#[test]
fn refused_requests_get_the_drain_answer() {
    let (web, _api, config) = two_services();
    let d = started(&config);
    // A zero-length drain is over at once: everything on `web` is refused.
    d.ctl_ok(&["drain", "start", "--target", "web", "--duration", "0s"]);
    let browser = html_get(d.addr, "/page");
    assert_eq!(browser.status, 503);
    assert_eq!(browser.header("x-drain-mode"), Some("true"));
    assert_eq!(browser.header("retry-after"), Some("60"));
    assert_eq!(browser.header("cache-control"), Some("no-store"));
    assert!(
        browser
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{browser:?}"
    );
    let page = browser.text();
    assert!(page.contains("switching to a new version"), "{page}");
    assert!(page.contains("--accent"), "the theme: {page}");

    let api = json_get(d.addr, "/page");
    assert_eq!(api.status, 503);
    assert_eq!(api.header("x-drain-mode"), Some("true"));
    assert_eq!(api.header("retry-after"), Some("60"));
    assert_eq!(api.header("cache-control"), Some("no-store"));
    let j = api.json();
    assert_eq!(j["error"], "draining", "{j}");
    assert_eq!(j["service"], "web", "{j}");
    assert_eq!(j["retry_after"], 60, "{j}");

    // HEAD and a request with a body, then another on the same connection: the refused
    // request's bytes are all consumed.
    let host = d.addr.to_string();
    let mut conn = Conn::open(d.addr);
    conn.send(format!("HEAD /h HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
    let head = conn.head_response();
    assert_eq!(head.status, 503);
    assert_eq!(head.header("x-drain-mode"), Some("true"));
    conn.send(
        format!("POST /form HTTP/1.1\r\nHost: {host}\r\nContent-Length: 11\r\n\r\nhello=world")
            .as_bytes(),
    );
    assert!(is_refusal(&conn.response()));
    conn.send(&get_req("/api/after", &host, "application/json"));
    let after = conn.response();
    assert_eq!(after.status, 200, "{}", after.text());
    assert_eq!(after.json()["target"], "/api/after");
    // Nothing refused reached the upstream.
    assert!(web.requests().is_empty(), "{:?}", web.requests());
}

#[test]
fn in_flight_requests_finish_before_drained() {
    let (web, _api, config) = two_services();
    let d = started(&config);
    let events = Sse::open(d.addr, "/__events__", &[]);
    eventually(T, "the first event", || (events.len() > 0).then_some(()));
    // A slow request (the upstream answers after 4 s) in flight before the drain starts.
    let addr = d.addr;
    let slow = std::thread::spawn(move || get(addr, "/slow"));
    eventually(T, "the slow request upstream", || {
        (!web.receipts("/slow").is_empty()).then_some(())
    });
    d.ctl_ok(&["drain", "start", "--duration", "1s"]);
    let mut wait = std::process::Command::new(kinfractl())
        .arg("--socket")
        .arg(&d.control)
        .args(["drain", "wait"])
        .env_remove("KINFRA_SOCKET")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kinfractl drain wait");
    // The time is over while the slow request is still in flight: not drained yet.
    let st = eventually(T, "the drain's time to be over", || {
        let st = drain_status(&d);
        (st["remaining_ms"] == 0).then_some(st)
    });
    if !slow.is_finished() {
        assert!(st["in_flight"].as_u64() >= Some(1), "{st}");
        assert_eq!(st["drained"], false, "{st}");
        assert!(
            !events.events().iter().any(|(e, _)| e == "drained"),
            "drained while a request was in flight"
        );
        assert!(
            wait.try_wait().expect("try_wait").is_none(),
            "drain wait returned while a request was in flight"
        );
        // New requests are refused meanwhile.
        assert!(is_refusal(&json_get(d.addr, "/new")));
    } else {
        eprintln!("NOTE: the slow request finished before the drain's end was seen");
    }
    // The request in flight finishes with the upstream's answer.
    let r = slow.join().expect("slow request");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "late");
    // Then: drained, on the event stream and for `drain wait`.
    let ev = events.wait(T, "drained", 0, |v| v["drained"] == true);
    assert_eq!(ev["active"], true, "{ev}");
    assert!(ev["drained_at"].as_u64().is_some(), "{ev}");
    let status = eventually(T, "drain wait to return", || wait.try_wait().expect("wait"));
    let out = wait.wait_with_output().expect("output");
    assert!(
        status.success(),
        "drain wait: {status} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("DRAINED ALL"));
    assert_eq!(drain_status(&d)["drained"], true);
    // A wait after the fact returns at once.
    assert!(d.ctl_ok(&["drain", "wait"]).contains("DRAINED"));
    events.close();
}

#[test]
fn drain_wait_refuses_when_stopped_or_gone() {
    let (_web, _api, config) = two_services();
    let d = started(&config);
    let o = d.ctl(&["drain", "wait"]);
    assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no drain is running"),
        "{}",
        output_text(&o)
    );
    let spawn_wait = |d: &Daemon| {
        std::process::Command::new(kinfractl())
            .arg("--socket")
            .arg(&d.control)
            .args(["drain", "wait"])
            .env_remove("KINFRA_SOCKET")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kinfractl drain wait")
    };
    // Stopped before it was drained.
    d.ctl_ok(&["drain", "start", "--duration", "10m"]);
    let mut w = spawn_wait(&d);
    std::thread::sleep(Duration::from_millis(300));
    assert!(w.try_wait().expect("try_wait").is_none(), "returned early");
    d.ctl_ok(&["drain", "stop"]);
    eventually(T, "drain wait to return", || w.try_wait().expect("wait"));
    let o = w.wait_with_output().expect("output");
    assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("stopped before it was drained"),
        "{}",
        output_text(&o)
    );
    // kinfrad goes away: stopped (it says so), then killed (it says nothing): exit 3.
    let fast = if fast_path() { "1" } else { "0" };
    let mut d = d;
    for graceful in [true, false] {
        d.ctl_ok(&["drain", "start", "--duration", "10m"]);
        let mut w = spawn_wait(&d);
        std::thread::sleep(Duration::from_millis(300));
        assert!(w.try_wait().expect("try_wait").is_none(), "returned early");
        if graceful {
            d.signal(nix::sys::signal::Signal::SIGTERM);
            assert!(d.wait_exit(T).success(), "{}", d.log_text());
        }
        let dir = d.crash();
        eventually(T, "drain wait to return", || w.try_wait().expect("wait"));
        let o = w.wait_with_output().expect("output");
        assert_eq!(o.status.code(), Some(3), "{}", output_text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("went away"),
            "{}",
            output_text(&o)
        );
        d = start_config(dir, &config, &[("KINFRA_FAST_PATH", fast)]);
    }
}

#[test]
fn drain_over_the_http_api() {
    let (_web, _api, config) = two_services();
    let d = started(&config);
    let bearer = format!("Bearer {}", d.token());
    let auth = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let r = post(&d, "/api/kinfra/drain", &[], r#"{"duration": "30s"}"#);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(drain_status(&d)["active"], false);
    for (body, why) in [
        (r#"{"duration": "soon"}"#, "duration"),
        (
            r#"{"duration": "30s", "target": "nope"}"#,
            "unknown service",
        ),
        (r#"{"target": "web"}"#, "duration is required"),
        (r#"{"duration": "30s", "colour": 1}"#, "unknown field"),
    ] {
        let r = post(&d, "/api/kinfra/drain", &auth, body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(r.text().contains(why), "{body}: {}", r.text());
    }
    let r = post(
        &d,
        "/api/kinfra/drain",
        &auth,
        r#"{"duration": "30s", "target": "web"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["success"], true);
    assert_eq!(j["drain"]["active"], true);
    assert_eq!(j["drain"]["target"], "web");
    assert_eq!(j["drain"]["duration_ms"], 30_000);
    let g = call(d.addr, "GET", "/api/kinfra/drain", None, &auth, b"");
    assert_eq!(g.status, 200);
    assert_eq!(g.json()["start_time"], j["drain"]["start_time"]);
    assert_eq!(drain_status(&d)["target"], "web");
    let del = call(d.addr, "DELETE", "/api/kinfra/drain", None, &[], b"");
    assert_eq!(del.status, 401);
    let del = call(d.addr, "DELETE", "/api/kinfra/drain", None, &auth, b"");
    assert_eq!(del.status, 200, "{}", del.text());
    assert_eq!(del.json()["drain"]["active"], false);
    assert_eq!(drain_status(&d)["active"], false);
}

#[test]
fn a_drain_survives_a_restart() {
    let (_web, _api, config) = two_services();
    let fast = if fast_path() { "1" } else { "0" };
    let restart = |d: Daemon, graceful: bool| {
        let mut d = d;
        if graceful {
            d.signal(nix::sys::signal::Signal::SIGTERM);
            assert!(d.wait_exit(T).success(), "{}", d.log_text());
        }
        let dir = d.crash();
        let d = start_config(dir, &config, &[("KINFRA_FAST_PATH", fast)]);
        wait_running(&d, "web");
        d
    };
    let d = started(&config);
    // A long drain, killed mid-way: back with the same start and duration, still draining.
    d.ctl_ok(&["drain", "start", "--target", "web", "--duration", "10m"]);
    let before = drain_status(&d);
    let d = restart(d, false);
    let after = drain_status(&d);
    assert_eq!(after["active"], true, "{after}");
    assert_eq!(after["start_time"], before["start_time"]);
    assert_eq!(after["duration_ms"], before["duration_ms"]);
    assert_eq!(after["target"], "web");
    assert_eq!(after["drained"], false);
    assert_eq!(json_get(d.addr, "/x").status, 200);

    // A drain whose end passed while kinfrad was down: drained at once, refusing, its
    // counters kept (persisted at the graceful stop).
    d.ctl_ok(&["drain", "start", "--target", "web", "--duration", "0s"]);
    for _ in 0..3 {
        assert!(is_refusal(&json_get(d.addr, "/x")));
    }
    let d = restart(d, true);
    let st = eventually(T, "the restored drain to read as drained", || {
        let st = drain_status(&d);
        (st["drained"] == true).then_some(st)
    });
    assert_eq!(st["rejected"], 3, "{st}");
    assert!(d.ctl_ok(&["drain", "wait"]).contains("DRAINED web"));
    assert!(is_refusal(&json_get(d.addr, "/x")));
    assert_eq!(drain_status(&d)["rejected"], 4);
    let rows = get(d.addr, "/api/dashboard/routes").json();
    assert_eq!(route_row(&rows, "/")["drain_rejected"], 4);
    d.ctl_ok(&["drain", "stop"]);
    let d = restart(d, false);
    assert_eq!(drain_status(&d)["active"], false);
    assert_eq!(json_get(d.addr, "/x").status, 200);
}
