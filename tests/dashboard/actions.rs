//! Dashboard actions and their authorisation: the admin token, the login cookie acting only from
//! kinfrad's own pages (cross-site requests refused), and the answers in the seed's shape.

use std::time::Duration;

use crate::T;
use crate::common;
use crate::common::{eventually, get, login, post};

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
