//! Who may read the dashboard (`dashboard_access`, `dashboard_hosts`): a login keeps data from
//! anonymous readers, the default is loopback only and needs a loopback Host, added names are
//! honoured, and the pages escape hostile text.

use crate::common;
use crate::common::{get, get_html, get_with_host, login, request};

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
