//! Fallback answers instead of bare errors: an upstream that dies and comes back, fails
//! mid-request, stalls past its timeout, is still starting (the loading page, no traffic before
//! its first good probe) or sends a broken response; and the public `/__status__`, which shows
//! visitors neither upstream URLs nor raw errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::prelude::*;

#[test]
fn dead_upstream_gets_the_fallback_and_recovery_is_seen() {
    let mut up = Upstream::start(0, echo("first"));
    let port = up.port();
    let d = start(&service("svc", port, &["/"], FAST_HEALTH));
    wait_running(&d, "svc");
    let r = json_get(d.addr, "/page");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["server"], "first");

    up.kill();
    // The very next request: the fallback, never a 502.
    let r = json_get(d.addr, "/page");
    assert_ne!(
        r.status,
        502,
        "bare 502 after the upstream died: {}",
        r.text()
    );
    assert_json_fallback(&r, "svc");
    let kind = assert_html_fallback(&html_get(d.addr, "/page"));
    assert!(!kind.is_empty());

    let s = wait_svc(&d, "svc", "down", |s| s["state"] == "down");
    assert_eq!(s["health_status"], "Unhealthy", "{s}");
    let j = assert_json_fallback(&json_get(d.addr, "/page"), "svc");
    assert_eq!(j["state"], "down", "{j}");
    assert!(
        !j["error_detail"].as_str().unwrap_or("").is_empty(),
        "error_detail should say why: {j}"
    );
    assert_eq!(assert_html_fallback(&html_get(d.addr, "/page")), "503");

    // Back on the same port: proxied again within seconds.
    let _up2 = Upstream::start(port, echo("second"));
    eventually(
        T,
        "requests to be proxied to the restarted upstream",
        || {
            let r = json_get(d.addr, "/page");
            assert_ne!(r.status, 502, "{}", r.text());
            (r.status == 200 && r.json()["server"] == "second").then_some(())
        },
    );
    let s = wait_svc(&d, "svc", "running", |s| s["state"] == "running");
    assert_eq!(s["health_status"], "Healthy", "{s}");
}

/// The `<p id="…">` paragraph of a page as `(hidden, text)`.
fn paragraph(html: &str, id: &str) -> Option<(bool, String)> {
    let at = html.find(&format!("<p id=\"{id}\""))?;
    let rest = &html[at..];
    let open = rest.find('>')?;
    let close = rest.find("</p>")?;
    Some((
        rest[..open].contains(" hidden"),
        rest[open + 1..close].to_string(),
    ))
}

#[test]
fn the_operators_message_stays_once_a_healthy_upstream_dies() {
    let msg = "Upgrading the shop & back by noon";
    let mut up = Upstream::start(0, echo("first"));
    let port = up.port();
    let d = start(&format!(
        "{}{}",
        service(
            "shop",
            port,
            &["/shop/"],
            &format!("{FAST_HEALTH}\nfallback_message = \"{msg}\"")
        ),
        service(
            "look",
            port,
            &["/look/"],
            &format!(
                "{FAST_HEALTH}\nfallback_message = \"{msg}\"\nfallback_page = \"maintenance\""
            )
        )
    ));
    wait_running(&d, "shop");
    wait_running(&d, "look");
    up.kill();
    wait_svc(&d, "shop", "down", |s| s["state"] == "down");
    let s = wait_svc(&d, "look", "down", |s| s["state"] == "down");
    assert_eq!(s["fallback_message"], msg, "{s}");
    assert_eq!(s["status_message"], "Service is not answering", "{s}");

    // JSON: the state's words stay in status_message; the operator's are beside them.
    let j = assert_json_fallback(&json_get(d.addr, "/shop/x"), "shop");
    assert_eq!(j["state"], "down", "{j}");
    assert_eq!(j["fallback_message"], msg, "{j}");
    assert_eq!(j["status_message"], "Service is not answering", "{j}");
    assert_eq!(j["error_detail"], "Connection refused", "{j}");

    // The 503 page: the operator's words instead of the generic lead, the live detail beside.
    let r = html_get(d.addr, "/shop/x");
    assert_eq!(assert_html_fallback(&r), "503");
    let html = r.text();
    let escaped = "Upgrading the shop &amp; back by noon";
    assert_eq!(
        paragraph(&html, "fallback-message"),
        Some((false, escaped.to_string())),
        "{html}"
    );
    assert_eq!(
        paragraph(&html, "status-message"),
        Some((false, "Service is not answering".to_string()))
    );
    assert!(
        html.contains("<p class=\"lead\" id=\"lead\" hidden>"),
        "{html}"
    );
    assert!(html.contains(">Connection refused<"), "{html}");

    // The maintenance look: the operator's words, and it follows the service, not maintenance.
    let r = html_get(d.addr, "/look/x");
    assert_eq!(assert_html_fallback(&r), "maintenance");
    let html = r.text();
    assert_eq!(
        paragraph(&html, "message"),
        Some((false, escaped.to_string()))
    );
    assert!(
        html.contains("data-status-url=\"/__status__?service=look\""),
        "{html}"
    );
    assert!(html.contains("data-served-for=\"fallback\""), "{html}");
    assert_eq!(
        assert_json_fallback(&json_get(d.addr, "/look/x"), "look")["fallback_message"],
        msg
    );
}

#[test]
fn failures_mid_forward_get_the_fallback() {
    let up = Upstream::start(0, |s: &Seen| match s.target.as_str() {
        PROBE => Reply::text(200, "ok"),
        "/close" => Reply::Close,
        "/reset" => Reply::Reset,
        "/partial" => Reply::RawThenClose(b"HTTP/1.1 200 OK\r\nContent-Le".to_vec()),
        "/garbage" => Reply::RawThenClose(b"SPDY/9 what\r\n\r\n".to_vec()),
        _ => Reply::text(200, "fine"),
    });
    let d = start(&service(
        "flaky",
        up.port(),
        &["/"],
        &format!("{FAST_HEALTH}\ncircuit_breaker = {{ failures = 100 }}"),
    ));
    wait_running(&d, "flaky");
    for path in ["/close", "/reset", "/partial", "/garbage"] {
        let r = json_get(d.addr, path);
        assert_ne!(r.status, 502, "{path}: bare 502: {}", r.text());
        assert_json_fallback(&r, "flaky");
        let h = html_get(d.addr, path);
        assert_ne!(h.status, 502, "{path}: bare 502: {}", h.text());
        assert_html_fallback(&h);
        assert!(
            up.requests().iter().any(|s| s.target == path),
            "{path} never reached the upstream: the failure was not mid-forward"
        );
    }
    // The service itself is fine: other requests still go through.
    let r = get(d.addr, "/ok");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "fine");
}

#[test]
fn slow_upstream_times_out_into_the_fallback() {
    let up = Upstream::start(0, |s: &Seen| match s.target.as_str() {
        PROBE => Reply::text(200, "ok"),
        "/slow" => Reply::Delay(Duration::from_secs(30)),
        _ => Reply::text(200, "fast"),
    });
    let d = start(&service(
        "sloth",
        up.port(),
        &["/"],
        &format!(
            "{FAST_HEALTH}\ntimeouts = {{ connect = \"1s\", header = \"500ms\", idle = \"5s\" }}"
        ),
    ));
    wait_running(&d, "sloth");
    // `call` reads for at most 15 s; the upstream would answer after 30 s.
    let r = json_get(d.addr, "/slow");
    let j = assert_json_fallback(&r, "sloth");
    assert!(
        j["error_detail"].as_str().unwrap_or("").contains("500ms"),
        "error_detail should name the timeout: {j}"
    );
    assert_html_fallback(&html_get(d.addr, "/slow"));
    assert!(up.requests().iter().any(|s| s.target == "/slow"));
    let r = get(d.addr, "/quick");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "fast");
}

#[test]
fn starting_upstream_gets_the_loading_page_and_no_traffic_before_ready() {
    let port = free_port();
    let d = start(&service(
        "boot",
        port,
        &["/"],
        r#"health_check = { path = "/_probe", interval = "200ms", timeout = "500ms", grace = "30s" }
fallback_page = "loading"
fallback_message = "Warming up the test service"
fallback_refresh_interval = 2"#,
    ));
    // Nothing listens yet.
    let h = html_get(d.addr, "/dashboard");
    assert_eq!(assert_html_fallback(&h), "loading");
    assert_eq!(h.header("retry-after"), Some("2"));
    assert!(
        h.text().contains("Warming up the test service"),
        "{}",
        h.text()
    );
    let j = assert_json_fallback(&json_get(d.addr, "/dashboard"), "boot");
    assert_eq!(j["state"], "starting", "{j}");
    assert_eq!(j["status_message"], "Warming up the test service", "{j}");
    let s = svc_status(&d, "boot");
    assert_eq!(s["state"], "starting", "{s}");

    // The upstream listens but is not ready: probes fail, visitors keep the loading page.
    let ready = Arc::new(AtomicBool::new(false));
    let early = Arc::new(AtomicU64::new(0));
    let up = {
        let (ready, early) = (ready.clone(), early.clone());
        Upstream::start(port, move |s: &Seen| {
            let is_ready = ready.load(Ordering::SeqCst);
            if s.target == PROBE {
                return if is_ready {
                    Reply::text(200, "ready")
                } else {
                    Reply::text(503, "not yet")
                };
            }
            if !is_ready {
                early.fetch_add(1, Ordering::SeqCst);
            }
            Reply::echo("boot", s)
        })
    };
    eventually(T, "kinfrad to probe the new upstream", || {
        (up.probes() >= 3).then_some(())
    });
    for _ in 0..5 {
        let h = html_get(d.addr, "/dashboard");
        assert_eq!(assert_html_fallback(&h), "loading");
        assert_json_fallback(&json_get(d.addr, "/dashboard"), "boot");
    }
    assert_eq!(svc_status(&d, "boot")["state"], "starting");
    assert!(
        up.requests().is_empty(),
        "requests reached an upstream whose health check fails: {:?}",
        up.requests()
    );

    ready.store(true, Ordering::SeqCst);
    eventually(T, "requests to be proxied once the probe passes", || {
        (json_get(d.addr, "/dashboard").status == 200).then_some(())
    });
    assert_eq!(svc_status(&d, "boot")["state"], "running");
    assert_eq!(
        early.load(Ordering::SeqCst),
        0,
        "a request reached the upstream before its health check passed"
    );
}

/// A response head of about `size` bytes (one long header), with a 2-byte body.
fn huge_head(size: usize) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nX-Huge: {}\r\nContent-Length: 2\r\n\r\nok",
        "h".repeat(size)
    )
    .into_bytes()
}

#[test]
fn broken_upstream_responses_get_the_fallback() {
    let up = Upstream::start(0, |s: &Seen| {
        // Every reply keeps the connection open: kinfrad must not wait for more.
        let keep = |b: &[u8]| Reply::raw(b, After::Keep);
        match s.target.as_str() {
            PROBE => Reply::text(200, "ok"),
            "/b/ok" => Reply::text(200, "fine"),
            "/b/garbage" => keep(b"SPDY/9 what is this\r\n\r\n"),
            "/b/binary" => keep(&[0u8, 1, 2, 3, 0xff, 0xfe, b'\r', b'\n', b'\r', b'\n']),
            "/b/bad-status" => keep(b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok"),
            "/b/bad-header" => keep(b"HTTP/1.1 200 OK\r\nBad Header\r\nContent-Length: 2\r\n\r\nok"),
            "/b/cl-conflict" => {
                keep(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
            }
            "/b/cl-list" => keep(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!"),
            "/b/cl-negative" => keep(b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nhello"),
            "/b/cl-hex" => keep(b"HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\nhello"),
            "/b/switch" => keep(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"),
            // Far over any proxy's limit, in one write.
            "/b/head-1m" => keep(&huge_head(1 << 20)),
            // Just over 64 KiB: in one write, and dribbled in 1 KiB pieces.
            "/b/head-70k" => keep(&huge_head(70 * 1024)),
            "/b/head-70k-slow" => Reply::Raw {
                pieces: huge_head(70 * 1024).chunks(1024).map(<[u8]>::to_vec).collect(),
                pause: Duration::from_millis(1),
                after: After::Keep,
            },
            other => Reply::text(404, other),
        }
    });
    let d = start(&service(
        "broken",
        up.port(),
        &["/"],
        &format!("{FAST_HEALTH}\n{NO_BREAKER}"),
    ));
    wait_running(&d, "broken");

    let mut wrong = Vec::new();
    for path in [
        "/b/garbage",
        "/b/binary",
        "/b/bad-status",
        "/b/bad-header",
        "/b/cl-conflict",
        "/b/cl-list",
        "/b/cl-negative",
        "/b/cl-hex",
        "/b/switch",
        "/b/head-1m",
    ] {
        // `call` gives up after 15 s of silence: a hang fails here.
        let r = json_get(d.addr, path);
        if r.status != 503 || r.header("retry-after").is_none() {
            wrong.push(format!("{path}: {} {:?}", r.status, r.text()));
            continue;
        }
        assert_json_fallback(&r, "broken");
        let h = html_get(d.addr, path);
        if h.status != 503 {
            wrong.push(format!("{path} (HTML): {} {:?}", h.status, h.text()));
            continue;
        }
        assert_html_fallback(&h);
        assert!(
            !up.receipts(path).is_empty(),
            "{path} never reached the upstream"
        );
        // The connection that carried it is not reused: the next request is fine.
        let r = get(d.addr, "/b/ok");
        assert_eq!(r.status, 200, "after {path}: {r:?} {}", r.text());
        assert_eq!(r.text(), "fine", "after {path}");
    }
    assert!(wrong.is_empty(), "not the fallback: {wrong:#?}");

    // A head just over 64 KiB: the fast path's documented limit (MAX_RESPONSE_HEAD); hyper's
    // own limit is higher (~400 KiB), so there it may pass whole.
    for path in ["/b/head-70k-slow", "/b/head-70k"] {
        let r = json_get(d.addr, path);
        eprintln!(
            "{path} ({}): {} x-huge {:?} bytes",
            if fast_path() { "fast path" } else { "hyper" },
            r.status,
            r.header("x-huge").map(str::len)
        );
        if fast_path() || r.status != 200 {
            assert_eq!(
                r.status,
                503,
                "{path}: a response head over the fast path's 64 KiB limit was relayed: {}",
                brief(&r)
            );
            assert_json_fallback(&r, "broken");
        } else {
            assert_eq!(r.header("x-huge").map(str::len), Some(70 * 1024), "{path}");
            assert_eq!(r.text(), "ok");
        }
    }
    assert_alive(&d, "/b/ok");
}

#[test]
fn public_status_shows_no_upstream_urls_or_raw_errors() {
    let up = Upstream::start(
        0,
        echo_but("/garbage", || {
            Reply::raw(
                b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                After::Close,
            )
        }),
    );
    let d = start(&format!(
        "dashboard_access = \"login\"\n{}",
        service(
            "target",
            up.port(),
            &["/"],
            &format!("{FAST_HEALTH}\n{NO_BREAKER}")
        )
    ));
    wait_running(&d, "target");
    let r = json_get(d.addr, "/garbage");
    assert_eq!(r.status, 503, "{}", r.text());
    let public = json_get(d.addr, "/__status__").json();
    let s = &public["services"]["target"];
    let raw_error = {
        let token = d.token();
        let r = call(
            d.addr,
            "GET",
            "/__status__",
            None,
            &[
                ("Accept", "application/json"),
                ("Authorization", &format!("Bearer {token}")),
            ],
            b"",
        );
        let reader = r.json();
        let rs = &reader["services"]["target"];
        assert_eq!(
            rs["url"],
            format!("http://127.0.0.1:{}", up.port()),
            "a reader sees the URL: {rs}"
        );
        assert!(
            reader["routes"][0]["backend"].is_string(),
            "{}",
            reader["routes"]
        );
        rs["error_detail"].as_str().unwrap_or("").to_string()
    };
    assert!(!raw_error.is_empty(), "the reader sees the raw error");
    assert!(
        s.get("url").is_none(),
        "public /__status__ shows the URL: {s}"
    );
    assert!(
        public["routes"][0].get("backend").is_none(),
        "{}",
        public["routes"]
    );
    assert_eq!(s["error_detail"], "The service failed to answer", "{s}");
    let text = public.to_string();
    assert!(
        !text.contains(&format!("127.0.0.1:{}", up.port())),
        "the upstream's address leaks: {text}"
    );
}
