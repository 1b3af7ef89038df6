//! Routing and header handling: which upstream a host and path reach (exact and wildcard
//! hosts, prefixes, `strip_prefix`, `preserve_host`, absolute-form targets), the headers both
//! ways (end-to-end kept, hop-by-hop dropped, X-Forwarded-* added), keep-alive to the client and
//! to the upstream, and kinfrad's own paths winning over a service routed at `/`.

use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

use crate::prelude::*;

#[test]
fn routes_headers_keep_alive_and_own_paths() {
    let root = Upstream::start(0, echo("root"));
    let app = Upstream::start(0, echo("app"));
    let v2 = Upstream::start(0, echo("v2"));
    let exact = Upstream::start(0, echo("exact"));
    let wild = Upstream::start(0, echo("wild"));
    // Probes once at start, then rarely: they must not take the pooled connection.
    let quiet =
        r#"health_check = { path = "/_probe", interval = "60s", timeout = "1s", grace = "0s" }"#;
    let config = [
        service("root", root.port(), &["/"], quiet),
        service("app", app.port(), &["/app/"], quiet),
        service(
            "v2",
            v2.port(),
            &["/app/v2/"],
            &format!("strip_prefix = true\n{quiet}"),
        ),
        service("exact", exact.port(), &["api.example.com/"], quiet),
        service(
            "wild",
            wild.port(),
            &["*.example.com/"],
            &format!("preserve_host = true\n{quiet}"),
        ),
    ]
    .concat();
    let d = start(&config);
    for name in ["root", "app", "v2", "exact", "wild"] {
        wait_running(&d, name);
    }

    // (host, path) → (upstream, target it sees)
    let cases = [
        ("shop.test", "/", "root", "/"),
        (
            "shop.test",
            "/other/page?a=1&b",
            "root",
            "/other/page?a=1&b",
        ),
        ("shop.test", "/appx", "root", "/appx"),
        ("shop.test", "/app", "app", "/app"),
        (
            "shop.test",
            "/app/users?x=1&y=two%20words",
            "app",
            "/app/users?x=1&y=two%20words",
        ),
        ("shop.test", "/app/v2/items?q=1&q=2", "v2", "/items?q=1&q=2"),
        ("shop.test", "/app/v2", "v2", "/"),
        ("shop.test", "/app/v2x", "app", "/app/v2x"),
        ("api.example.com", "/app/users", "exact", "/app/users"),
        ("API.Example.COM:8443", "/x?y=z", "exact", "/x?y=z"),
        ("www.example.com", "/app/v2/items", "wild", "/app/v2/items"),
        ("a.b.example.com", "/", "wild", "/"),
        ("example.com", "/app/", "app", "/app/"),
    ];
    for (host, path, server, target) in cases {
        let r = call(d.addr, "GET", path, Some(host), &[], b"");
        assert_eq!(r.status, 200, "{host}{path}: {r:?} {}", r.text());
        let j = r.json();
        assert_eq!(
            j["server"], server,
            "{host}{path} went to the wrong upstream: {j}"
        );
        assert_eq!(j["target"], target, "{host}{path}: {j}");
        assert_eq!(j["version"], "HTTP/1.1");
    }

    // Host matching ignores case and port; the upstream gets the client's Host as sent only
    // with preserve_host, and X-Forwarded-Host always carries it as sent.
    let r = call(
        d.addr,
        "GET",
        "/as-sent",
        Some("WWW.Example.com:8443"),
        &[],
        b"",
    );
    assert_eq!(r.json()["server"], "wild", "{}", r.text());
    let seen = wild
        .requests()
        .into_iter()
        .find(|s| s.target == "/as-sent")
        .expect("wild saw /as-sent");
    assert_eq!(
        seen.header("host"),
        Some("WWW.Example.com:8443"),
        "{seen:?}"
    );
    assert_eq!(
        seen.header("x-forwarded-host"),
        Some("WWW.Example.com:8443"),
        "{seen:?}"
    );
    let r = call(
        d.addr,
        "GET",
        "/as-sent",
        Some("API.example.com:8443"),
        &[],
        b"",
    );
    assert_eq!(r.json()["server"], "exact", "{}", r.text());
    let seen = exact
        .requests()
        .into_iter()
        .find(|s| s.target == "/as-sent")
        .expect("exact saw /as-sent");
    assert_eq!(
        seen.header("host"),
        Some(format!("127.0.0.1:{}", exact.port()).as_str()),
        "without preserve_host the upstream sees its own address: {seen:?}"
    );
    assert_eq!(
        seen.header("x-forwarded-host"),
        Some("API.example.com:8443"),
        "{seen:?}"
    );

    // Headers both ways: end-to-end ones kept, hop-by-hop ones (and those Connection names)
    // dropped, X-Forwarded-* added.
    let r = call(
        d.addr,
        "POST",
        "/app/echo?k=v",
        Some("www.shop.test"),
        &[
            ("Connection", "close, X-Secret"),
            ("X-Secret", "hop-by-hop"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Proxy-Connection", "keep-alive"),
            ("X-Custom", "hello world"),
            ("X-Multi", "1"),
            ("X-Multi", "2"),
            ("X-Forwarded-For", "203.0.113.7"),
            ("Content-Type", "text/plain"),
            ("Authorization", "Bearer abc"),
        ],
        b"hello body",
    );
    assert_eq!(r.status, 200, "{r:?} {}", r.text());
    assert_eq!(r.header("x-up-kept"), Some("yes"));
    assert_eq!(r.header("x-upstream"), Some("app"));
    assert!(
        r.header("x-up-secret").is_none(),
        "Connection-named response header leaked: {r:?}"
    );
    assert!(
        r.header("keep-alive").is_none(),
        "Keep-Alive leaked to the client: {r:?}"
    );
    assert!(
        !headers_named(&r.headers, "connection")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("x-up-secret")),
        "{r:?}"
    );
    assert_eq!(
        headers_named(&r.headers, "set-cookie"),
        vec!["a=1; Path=/", "b=2; Path=/"],
        "repeated response headers must all arrive"
    );
    let seen = app
        .requests()
        .into_iter()
        .find(|s| s.target == "/app/echo?k=v")
        .expect("upstream saw the POST");
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.body, b"hello body");
    assert_eq!(seen.header("content-type"), Some("text/plain"));
    assert_eq!(seen.header("authorization"), Some("Bearer abc"));
    assert_eq!(seen.header("x-custom"), Some("hello world"));
    assert_eq!(seen.all("x-multi"), vec!["1", "2"]);
    for hop in ["x-secret", "keep-alive", "te", "proxy-connection"] {
        assert!(
            seen.header(hop).is_none(),
            "{hop} reached the upstream: {seen:?}"
        );
    }
    assert!(
        !seen
            .all("connection")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("x-secret")),
        "{seen:?}"
    );
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1"),
        "a loopback peer's X-Forwarded-For is extended: {seen:?}"
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), Some("www.shop.test"));
    assert!(seen.header("host").is_some(), "{seen:?}");

    // Keep-alive: five requests on one client connection, one upstream connection.
    let mut c = Conn::open(d.addr);
    for i in 0..5 {
        c.send(format!("GET /app/ka/{i} HTTP/1.1\r\nHost: shop.test\r\n\r\n").as_bytes());
        let r = c.response();
        assert_eq!(r.status, 200, "keep-alive request {i}: {r:?}");
        assert_eq!(r.json()["target"], format!("/app/ka/{i}"));
        assert!(
            !headers_named(&r.headers, "connection")
                .iter()
                .any(|v| v.eq_ignore_ascii_case("close")),
            "kinfrad closed a keep-alive connection: {r:?}"
        );
        // Let the upstream connection return to kinfrad's pool before the next request.
        thread::sleep(Duration::from_millis(100));
    }
    let ka: Vec<u64> = app
        .requests()
        .iter()
        .filter(|s| s.target.starts_with("/app/ka/"))
        .map(|s| s.conn)
        .collect();
    assert_eq!(ka.len(), 5, "{ka:?}");
    assert!(
        ka.iter().all(|c| *c == ka[0]),
        "keep-alive requests used several upstream connections: {ka:?} (accepted {})",
        app.conns.load(Ordering::SeqCst)
    );

    // kinfrad's own paths win over a service routed at "/".
    let h = get(d.addr, "/health");
    assert_eq!(h.status, 200);
    assert_eq!(h.json()["service"], "kinfrad");
    let s = get(d.addr, "/__status__");
    assert_eq!(s.status, 200);
    assert!(s.json()["services"]["root"].is_object());
    let m = get(d.addr, "/api/maintenance/status");
    assert_eq!(m.status, 200);
    assert_eq!(m.json()["isActive"], false);
    // The dashboard is kinfrad's own page, whatever the routes say.
    let r = get(d.addr, "/kinfra");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("id=\"initial\""), "{}", r.text());
    for own in [
        "/kinfra/x",
        "/api/maintenance/other",
        "/api/dashboard/x",
        "/api/kinfra/x",
        "/__action__/",
        "/__logs__/",
    ] {
        let r = get(d.addr, own);
        assert_eq!(r.status, 404, "{own}: {r:?}");
        assert_eq!(
            r.json()["error"]["code"],
            "not_found",
            "{own}: {}",
            r.text()
        );
    }
    // The rest of /api/ belongs to services (the seeds route "/api/" to backends).
    let r = call(
        d.addr,
        "GET",
        "/api/users?id=7",
        Some("shop.test"),
        &[],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["server"], "root");
    assert_eq!(r.json()["target"], "/api/users?id=7");
    let leaked: Vec<String> = root
        .requests()
        .into_iter()
        .map(|s| s.target)
        .filter(|t| {
            [
                "/health",
                "/__status__",
                "/api/maintenance",
                "/api/dashboard",
                "/api/kinfra",
                "/kinfra",
                "/__events__",
            ]
            .iter()
            .any(|p| t.starts_with(p))
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "kinfrad's own paths reached the upstream: {leaked:?}"
    );
}

#[test]
fn absolute_form_targets_win_over_the_host_header() {
    let up = Upstream::start(0, echo("abs"));
    let other = Upstream::start(0, echo("other"));
    let d = start(&format!(
        "{}{}",
        service(
            "abs",
            up.port(),
            &["abs.test/"],
            &format!("{FAST_HEALTH}\npreserve_host = true")
        ),
        service("other", other.port(), &["other.test/"], FAST_HEALTH)
    ));
    wait_running(&d, "abs");
    wait_running(&d, "other");
    let (out, _) = exchange(
        d.addr,
        b"GET http://abs.test/x HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
        |_| Ok(()),
    );
    assert_eq!(
        first_status(&out),
        Some(200),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let seen = &up.receipts("/x")[0];
    assert_eq!(seen.header("host"), Some("abs.test"), "{:?}", seen.headers);
    assert_eq!(
        seen.header("x-forwarded-host"),
        Some("abs.test"),
        "{:?}",
        seen.headers
    );
    assert!(other.requests().is_empty());
}
