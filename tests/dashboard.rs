//! The dashboard's HTTP side, through the real kinfrad over loopback: actions and their
//! authorisation (token, login cookie, cross-site refusal), the live event stream
//! (`/__events__`: state changes, countdown, log tail), the seed-002 route and maintenance
//! APIs, `dashboard_access`, escaping, and shutdown with streams open. The page itself is
//! tested in Chromium (tests/dashboard_browser.rs).

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, Sse, eventually, get, get_html, get_with_host, request};

const T: Duration = Duration::from_secs(15);

fn post(d: &Daemon, path: &str, headers: &[(&str, &str)], body: &str) -> common::Resp {
    request(d.addr, "POST", path, headers, body.as_bytes()).expect("POST")
}

/// Log in through the form; the session cookie's `name=value`.
fn login(d: &Daemon) -> String {
    let form = format!("token={}&next=%2F__logs__%2Fweb", d.token());
    let r = post(
        d,
        "/kinfra/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &form,
    );
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/__logs__/web"));
    let c = r
        .header("set-cookie")
        .expect("a session cookie")
        .to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(c.contains(attr), "cookie lacks {attr}: {c}");
    }
    c.split(';').next().expect("name=value").to_string()
}

#[test]
fn actions_need_the_token_and_answer_in_the_seed_shape() {
    let d = common::dashboard_daemon("", "Web", "INFO hello");
    let token = d.token();
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];

    let r = post(&d, "/__action__/restart/web", &[], "");
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    assert_eq!(r.json()["success"], false);
    assert_eq!(r.json()["service"], "web");
    let r = post(
        &d,
        "/__action__/restart/web",
        &[("Authorization", "Bearer nope")],
        "",
    );
    assert_eq!(r.status, 401);
    let r = get(d.addr, "/__action__/restart/web");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));

    let before = common::service(&d, "web")["pid"].clone();
    let r = post(&d, "/__action__/restart/web", &auth, "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"success": true, "service": "web"})
    );
    eventually(T, "a new pid after restart", || {
        let s = common::service(&d, "web");
        (s["state"] == "running" && s["pid"] != before).then_some(())
    });

    let r = post(&d, "/__action__/stop/web", &auth, "");
    assert_eq!(r.json()["success"], true);
    let s = common::wait_service(&d, "web", "stopped");
    assert_eq!(s["pid"], "");
    assert_eq!(
        s["health_status"], "Unhealthy",
        "a stopped process is no longer healthy"
    );
    let r = post(&d, "/__action__/start/web", &auth, "");
    assert_eq!(r.json()["success"], true);
    common::wait_service(&d, "web", "running");

    for (path, status, code) in [
        ("/__action__/restart/nope", 404, "unknown_service"),
        ("/__action__/explode/web", 404, "unknown_action"),
        ("/__action__/restart/ext", 409, "not_supervised"),
    ] {
        let r = post(&d, path, &auth, "");
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], code, "{path}");
        assert_eq!(r.json()["success"], false);
    }
    for path in [
        "/__action__/restart",
        "/__action__/restart/web/x",
        "/__action__/",
    ] {
        let r = post(&d, path, &auth, "");
        assert_eq!(r.status, 404, "{path}");
        assert!(!r.text().contains("app pid="), "{path} reached the service");
    }
}

#[test]
fn login_cookie_acts_only_from_kinfrads_own_pages() {
    let d = common::dashboard_daemon("", "Web", "INFO hello");
    let r = post(
        &d,
        "/kinfra/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "token=wrong-token-wrong-token&next=%2Fkinfra",
    );
    assert_eq!(r.status, 401);
    assert!(r.header("set-cookie").is_none());
    assert!(r.text().contains("not the admin token"), "{}", r.text());
    let r = post(
        &d,
        "/kinfra/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "nonsense",
    );
    assert_eq!(r.status, 400);

    // next= never leaves kinfrad.
    let form = format!("token={}&next=%2F%2Fevil.example%2F", d.token());
    let r = post(
        &d,
        "/kinfra/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &form,
    );
    assert_eq!(r.header("location"), Some("/kinfra"));

    let cookie = login(&d);
    let host = d.addr.to_string();
    let same_origin = format!("http://{host}");
    let ok_headers = [
        ("Cookie", cookie.as_str()),
        ("X-Requested-With", "kinfra"),
        ("Origin", same_origin.as_str()),
        ("Sec-Fetch-Site", "same-origin"),
    ];
    let r = post(&d, "/__action__/restart/web", &ok_headers, "");
    assert_eq!(r.status, 200, "{}", r.text());

    // What a cross-site page could send: refused, and nothing restarts.
    let pid = common::wait_service(&d, "web", "running")["pid"].clone();
    for (what, headers) in [
        ("a plain form post", vec![("Cookie", cookie.as_str())]),
        (
            "another origin",
            vec![
                ("Cookie", cookie.as_str()),
                ("X-Requested-With", "kinfra"),
                ("Origin", "http://evil.example"),
            ],
        ),
        (
            "a cross-site fetch",
            vec![
                ("Cookie", cookie.as_str()),
                ("X-Requested-With", "kinfra"),
                ("Sec-Fetch-Site", "cross-site"),
            ],
        ),
    ] {
        let r = post(&d, "/__action__/stop/web", &headers, "");
        assert_eq!(r.status, 403, "{what}: {}", r.text());
        let body = r#"{"isActive": true}"#;
        let r = post(&d, "/api/maintenance/status", &headers, body);
        assert_eq!(r.status, 403, "{what} (maintenance): {}", r.text());
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        common::service(&d, "web")["pid"],
        pid,
        "a refused action changed something"
    );

    // The dashboard's maintenance controls use the same session.
    let r = post(
        &d,
        "/api/maintenance/status",
        &ok_headers,
        r#"{"isActive": true, "message": "from the dashboard", "countdown": 60}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"]["message"], "from the dashboard");

    // A forged or expired cookie is no session.
    let forged = format!("{}0", cookie);
    let r = post(
        &d,
        "/__action__/stop/web",
        &[("Cookie", forged.as_str()), ("X-Requested-With", "kinfra")],
        "",
    );
    assert_eq!(r.status, 401);

    let r = post(&d, "/kinfra/logout", &[("Cookie", cookie.as_str())], "");
    assert_eq!(r.status, 303);
    assert!(
        r.header("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=0"))
    );
}

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
fn dashboard_access_login_keeps_data_from_anonymous_readers() {
    let d = common::dashboard_daemon(
        "dashboard_access = \"login\"",
        "Web",
        "INFO secret-log-line",
    );
    let r = get_html(d.addr, "/kinfra");
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/kinfra/login?next=/kinfra"));
    let r = get_html(d.addr, "/kinfra/login?next=/kinfra");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("name=\"token\""));
    for path in [
        "/kinfra",
        "/__events__",
        "/api/dashboard/routes",
        "/api/dashboard/maintenance",
        "/api/dashboard/logs/web",
    ] {
        assert_eq!(get(d.addr, path).status, 401, "{path}");
    }
    let r = get_html(d.addr, "/__logs__/web");
    assert_eq!(r.status, 303);
    // /__status__ stays public (fallback pages read it) but without log lines.
    let s = get(d.addr, "/__status__").json();
    assert_eq!(s["services"]["web"]["logs"], serde_json::json!([]));
    assert!(
        !get(d.addr, "/__status__?service=web")
            .text()
            .contains("secret-log-line")
    );

    let cookie = login(&d);
    let r = request(
        d.addr,
        "GET",
        "/kinfra",
        &[("Cookie", &cookie), ("Accept", "text/html")],
        b"",
    )
    .expect("GET");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("secret-log-line"));
    let r = request(d.addr, "GET", "/__status__", &[("Cookie", &cookie)], b"").expect("GET");
    assert!(r.text().contains("secret-log-line"));
    let bearer = format!("Bearer {}", d.token());
    let r = request(
        d.addr,
        "GET",
        "/api/dashboard/routes",
        &[("Authorization", &bearer)],
        b"",
    )
    .expect("GET");
    assert_eq!(r.status, 200);
    let s = request(
        d.addr,
        "GET",
        "/api/dashboard/session",
        &[("Cookie", &cookie)],
        b"",
    )
    .expect("GET")
    .json();
    assert_eq!(s["logged_in"], true);
    assert_eq!(s["access"], "login");
}

#[test]
fn default_access_is_loopback_and_pages_escape_hostile_text() {
    let name = "<script>alert(1)</script>";
    let line = "ERROR <img src=x onerror=alert(2)> & </script><!--";
    let d = common::dashboard_daemon("", name, line);
    assert_eq!(
        get(d.addr, "/api/dashboard/session").json()["access"],
        "loopback"
    );
    let r = get_html(d.addr, "/kinfra");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    let html = r.text();
    assert!(!html.contains("<script>alert(1)"), "raw name in the page");
    assert!(!html.contains("<img src=x"), "raw log line in the page");
    assert!(
        html.contains("\\u003cscript\\u003ealert(1)"),
        "data not embedded"
    );
    let r = get_html(d.addr, "/__logs__/web");
    assert_eq!(r.status, 200);
    let html = r.text();
    assert!(!html.contains("<img src=x"));
    assert!(!html.contains("<script>alert(1)"));
    assert!(html.contains("onerror=alert(2)"), "the line is missing");
    assert_eq!(get_html(d.addr, "/__logs__/nope").status, 404);
    assert_eq!(get_html(d.addr, "/__logs__/web/x").status, 404);
    assert_eq!(get_html(d.addr, "/kinfra/nothing").status, 404);
}

/// DNS rebinding: a page of evil.example, its name pointed at 127.0.0.1, reads kinfrad from
/// the browser with `Host: evil.example`. Loopback access needs a loopback Host as well.
#[test]
fn loopback_access_needs_a_loopback_host() {
    let d = common::dashboard_daemon("", "Web", "INFO secret-log-line");
    let port = d.addr.port();
    let reads = [
        "/api/dashboard/routes",
        "/api/dashboard/maintenance",
        "/api/dashboard/logs/web",
        "/__events__",
        "/__events__?logs=web",
    ];
    let foreign = [
        "evil.example".to_string(),
        format!("evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
        format!("127.0.0.1.evil.example:{port}"),
        format!("0.0.0.0:{port}"),
        format!("192.0.2.1:{port}"),
    ];
    for host in &foreign {
        for path in reads {
            let r = get_with_host(d.addr, path, host, &[]);
            assert_eq!(r.status, 401, "{host} {path}: {}", r.text());
        }
        let html = [("Accept", "text/html")];
        for (path, next) in [("/kinfra", "/kinfra"), ("/__logs__/web", "/__logs__/web")] {
            let r = get_with_host(d.addr, path, host, &html);
            assert_eq!(r.status, 303, "{host} {path}: {}", r.text());
            let to = format!("/kinfra/login?next={next}");
            assert_eq!(r.header("location"), Some(to.as_str()), "{host} {path}");
        }
        // /__status__ answers (fallback pages read it), without the log lines.
        let r = get_with_host(d.addr, "/__status__", host, &[]);
        assert_eq!(r.status, 200, "{host}");
        assert!(
            !r.text().contains("secret-log-line"),
            "{host}: {}",
            r.text()
        );
        let s = get_with_host(d.addr, "/api/dashboard/session", host, &[]).json();
        assert_eq!(s["read"], false, "{host}: {s}");
    }
    // The authority of an absolute-form target is the request's host (RFC 9112 §3.2.2), not
    // the Host header beside it.
    let r = get_with_host(
        d.addr,
        &format!("http://evil.example:{port}/api/dashboard/routes"),
        &format!("localhost:{port}"),
        &[],
    );
    assert_eq!(r.status, 401, "{}", r.text());
    // The token still opens the door, whatever the Host.
    let bearer = format!("Bearer {}", d.token());
    let r = get_with_host(
        d.addr,
        "/api/dashboard/routes",
        "evil.example",
        &[("Authorization", &bearer)],
    );
    assert_eq!(r.status, 200, "{}", r.text());

    for host in [
        format!("localhost:{port}"),
        "localhost".to_string(),
        format!("LocalHost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("127.0.0.2:{port}"),
        format!("[::1]:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
    ] {
        // (Not /__events__: an event stream that is let in never ends.)
        for path in reads.iter().filter(|p| !p.starts_with("/__events__")) {
            let r = get_with_host(d.addr, path, &host, &[]);
            assert_eq!(r.status, 200, "{host} {path}: {}", r.text());
        }
        let s = get_with_host(d.addr, "/api/dashboard/session", &host, &[]).json();
        assert_eq!(s["read"], true, "{host}: {s}");
        let r = get_with_host(d.addr, "/kinfra", &host, &[("Accept", "text/html")]);
        assert_eq!(r.status, 200, "{host}");
        let r = get_with_host(d.addr, "/__status__", &host, &[]);
        assert!(r.text().contains("secret-log-line"), "{host}: {}", r.text());
    }
}

/// `dashboard_hosts` names more hosts loopback readers may use (a name in /etc/hosts).
#[test]
fn dashboard_hosts_adds_names_for_loopback_readers() {
    let d = common::dashboard_daemon(
        "dashboard_hosts = [\"kinfra.test\", \"Box.Local\"]",
        "Web",
        "INFO hello",
    );
    let port = d.addr.port();
    for host in [
        format!("kinfra.test:{port}"),
        "box.local".to_string(),
        format!("localhost:{port}"),
    ] {
        let r = get_with_host(d.addr, "/api/dashboard/routes", &host, &[]);
        assert_eq!(r.status, 200, "{host}: {}", r.text());
    }
    for host in [
        "evil.example",
        "sub.kinfra.test",
        "kinfra.test.evil.example",
    ] {
        let r = get_with_host(d.addr, "/api/dashboard/routes", host, &[]);
        assert_eq!(r.status, 401, "{host}: {}", r.text());
    }
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
