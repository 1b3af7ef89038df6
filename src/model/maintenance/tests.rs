//! The maintenance model's tests: targets, countdowns and `Retry-After`, texts and URLs, and
//! records read back from disk.

use super::*;

const NOW: u64 = 1_750_000_000_000;

#[test]
fn target_parse() {
    assert_eq!(Target::parse("ALL"), Ok(Target::All));
    assert_eq!(Target::parse("all"), Ok(Target::All));
    assert_eq!(Target::parse(""), Ok(Target::All));
    assert_eq!(Target::parse(" api "), Ok(Target::Service("api".into())));
    assert_eq!(
        Target::parse("service:all"),
        Ok(Target::Service("all".into()))
    );
    let spec = |s: &str| crate::model::routes::RouteSpec::parse(s).expect(s);
    assert_eq!(
        Target::parse("API.example.com/v1"),
        Ok(Target::Route(spec("api.example.com/v1")))
    );
    assert_eq!(Target::parse("route:/"), Ok(Target::Route(spec("/"))));
    assert_eq!(Target::parse("Route:/x"), Ok(Target::Route(spec("/x"))));
    assert_eq!(
        Target::parse_list("api, web,api"),
        Ok(vec![
            Target::Service("api".into()),
            Target::Service("web".into())
        ])
    );
    assert_eq!(Target::parse_list(""), Ok(vec![Target::All]));
    assert!(Target::parse_list("api,,web").is_err());
    assert!(Target::parse("a b").is_err());
    assert!(Target::parse("route:").is_err());
    assert!(Target::parse("service:a/b").is_err());
    assert!(Target::parse("host:80/x").is_err(), "a port in a route");
    // Display reads back as the same target.
    for t in [
        "ALL",
        "api",
        "service:all",
        "api.example.com/v1",
        "*.example.com/static/",
        "/",
    ] {
        let parsed = Target::parse(t).expect(t);
        assert_eq!(parsed.to_string(), t);
        assert_eq!(Target::parse(&parsed.to_string()), Ok(parsed));
    }
}

#[test]
fn the_most_specific_record_applies() {
    let spec = |s: &str| crate::model::routes::RouteSpec::parse(s).expect(s);
    let v1 = spec("api.example.com/v1");
    let v2 = spec("api.example.com/v2");
    let all = Target::All;
    let svc = Target::Service("api".into());
    let route = Target::Route(v1.clone());
    let web = Target::Service("web".into());
    let req1 = Some((&v1, "api"));
    let req2 = Some((&v2, "api"));
    // Route beats service beats global, whatever the order of the records.
    assert_eq!(applying([&all, &svc, &route], req1), Some(2));
    assert_eq!(applying([&route, &svc, &all], req1), Some(0));
    assert_eq!(applying([&all, &svc, &route], req2), Some(1));
    assert_eq!(applying([&all, &route], req2), Some(0));
    assert_eq!(applying([&web, &route], req2), None);
    assert_eq!(applying([&web], Some((&v1, "web"))), Some(0));
    // Unrouted requests: only the global record.
    assert_eq!(applying([&svc, &route], None), None);
    assert_eq!(applying([&svc, &all], None), Some(1));
    assert_eq!(applying(std::iter::empty::<&Target>(), req1), None);
    // The list order: global, services, routes.
    let mut ts = vec![route.clone(), web.clone(), all.clone(), svc.clone()];
    ts.sort_by_key(Target::sort_key);
    assert_eq!(ts, vec![all, svc, web, route]);
}

#[test]
fn prepared_changes_wait_for_the_window() {
    let mut p = Prepared::new(Target::Service("api".into()));
    assert!(p.is_empty());
    p.absorb(&Change {
        message: Some("soon".into()),
        countdown_secs: Some(600),
        eta_ms: Some(Some(NOW + 600_000)),
        ..Change::default()
    });
    assert_eq!(p.countdown_secs, Some(600));
    assert_eq!(p.estimated_completion_ms, None);
    // The countdown counts from entering, however late that is.
    let later = NOW + 3_600_000;
    let m = Maintenance::begin_for(p.target.clone(), p.to_change(later), later);
    assert_eq!(m.message, "soon");
    assert_eq!(m.estimated_completion_ms, Some(later + 600_000));
    assert_eq!(m.target, Target::Service("api".into()));
    // An absolute estimate stays absolute, and is dropped once it has passed.
    p.absorb(&Change {
        eta_ms: Some(Some(NOW + 5000)),
        ..Change::default()
    });
    assert_eq!(p.countdown_secs, None);
    assert_eq!(p.to_change(NOW).eta_ms, Some(Some(NOW + 5000)));
    assert_eq!(p.to_change(NOW + 5000).eta_ms, None);
    // 0 clears the estimate; an empty URL the custom page.
    p.absorb(&Change {
        countdown_secs: Some(0),
        eta_ms: Some(None),
        page_url: Some(Some("http://127.0.0.1:8081/".into())),
        ..Change::default()
    });
    assert_eq!((p.countdown_secs, p.estimated_completion_ms), (None, None));
    assert!(p.page_url.is_some());
    p.absorb(&Change {
        page_url: Some(None),
        ..Change::default()
    });
    assert_eq!(p.page_url, None);
    let v = prepared_view(&p, NOW);
    assert!(!v.is_active && v.prepared);
    assert_eq!(v.message.as_deref(), Some("soon"));
    assert_eq!(v.target.as_deref(), Some("api"));
    assert_eq!(p.check(), Ok(()));
    p.message = Some("a\u{7}".into());
    assert_eq!(p.check().expect_err("bell").field, "message");
}

#[test]
fn countdown_rules() {
    assert_eq!(
        countdown_to_eta("countdown", 600, NOW),
        Ok(Some(NOW + 600_000))
    );
    assert_eq!(countdown_to_eta("countdown", 0, NOW), Ok(None));
    assert!(countdown_to_eta("countdown", -1, NOW).is_err());
    assert!(countdown_to_eta("countdown", MAX_COUNTDOWN_SECS + 1, NOW).is_err());
    assert!(check_eta_ms("estimatedCompletion", (NOW - 1) as i64, NOW).is_err());
    assert!(check_eta_ms("estimatedCompletion", (NOW + 40 * 86_400_000) as i64, NOW).is_err());
    assert_eq!(
        check_eta_ms("e", (NOW + 5000) as i64, NOW),
        Ok(Some(NOW + 5000))
    );
}

#[test]
fn urls() {
    assert!(parse_page_url("http://127.0.0.1:8081/maint").is_ok());
    let u = parse_page_url("HTTPS://status.example.com").expect("https");
    assert!(u.https);
    assert_eq!(u.port, 443);
    for bad in [
        "javascript:alert(1)",
        "file:///etc/passwd",
        "ftp://x",
        "http://",
        "//x",
        "http://user:pw@x/",
        "data:text/html,hi",
    ] {
        assert!(parse_page_url(bad).is_err(), "{bad} accepted");
    }
    let e = parse_page_url("javascript:alert(1)").expect_err("js");
    assert!(e.message.contains("javascript"), "{e}");
    let v6 = parse_page_url("http://[::1]:9000/").expect("v6");
    assert_eq!(v6.host, "::1");
    assert_eq!(v6.port, 9000);
}

#[test]
fn url_ports_and_hosts_are_checked_whole() {
    let ok = |s: &str| parse_page_url(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    let u = ok("http://Status.Example.COM:8081/x");
    assert_eq!((u.host.as_str(), u.port), ("status.example.com", 8081));
    assert_eq!(ok("http://127.0.0.1:65535/").port, 65535);
    assert_eq!(ok("http://127.0.0.1:1/").port, 1);
    assert_eq!(ok("http://localhost/").port, 80);
    assert_eq!(ok("https://[::1]/").port, 443);
    let mapped = ok("http://[::ffff:127.0.0.1]:9100/");
    assert_eq!(mapped.host, "::ffff:127.0.0.1");
    assert_eq!(mapped.port, 9100);
    assert_eq!(ok("http://[::FFFF:7F00:1]/").host, "::ffff:127.0.0.1");
    assert_eq!(ok("http://my_host.lan/").host, "my_host.lan");
    for (bad_url, says) in [
        // Beyond u16: http's parser takes it, and it used to mean port 80.
        ("http://127.0.0.1:70000/", "port"),
        ("http://127.0.0.1:65536/", "port"),
        ("http://127.0.0.1:99999999999999999999/", "port"),
        ("http://127.0.0.1:0/", "port"),
        ("http://127.0.0.1:/", "port"),
        ("http://127.0.0.1:+80/", ""),
        ("http://[::1]:70000/", "port"),
        ("http://[::1]x/", ""),
        ("http://[fe80::1%25eth0]/", ""),
        ("http://[127.0.0.1]/", "IPv6"),
        ("http://:8080/", "no host"),
        ("http://@x/", "credentials"),
        ("http://u@127.0.0.1/", "credentials"),
        ("http://a!b/", ""),
        ("http://a%41b/", ""),
    ] {
        let e = parse_page_url(bad_url).expect_err(bad_url);
        assert!(e.message.contains(says), "{bad_url}: {e}");
    }
}

#[test]
fn text_rules() {
    assert_eq!(clean_text("message", "  hi  "), Ok("hi".into()));
    assert!(clean_text("message", &"x".repeat(MAX_TEXT_CHARS + 1)).is_err());
    assert!(clean_text("message", "a\u{7}b").is_err());
}

#[test]
fn countdown_and_retry_after() {
    let mut m = Maintenance::begin(Change::default(), NOW);
    assert_eq!(m.message, DEFAULT_MESSAGE);
    assert_eq!(m.retry_after_secs(NOW), DEFAULT_RETRY_AFTER);
    m.apply(Change {
        eta_ms: Some(Some(NOW + 1500)),
        ..Change::default()
    });
    assert_eq!(m.countdown_secs(NOW), Some(2));
    assert_eq!(m.retry_after_secs(NOW), 2);
    assert_eq!(m.retry_after_secs(NOW + 10_000), OVERDUE_RETRY_AFTER);
    let v = status_view(Some(&m), 7, NOW);
    assert!(v.is_active);
    assert_eq!(v.countdown, Some(2));
    assert_eq!(v.hits, 7);
    let json = serde_json::to_value(&v).expect("json");
    for key in [
        "isActive",
        "message",
        "currentIssue",
        "countdown",
        "startTime",
        "estimatedCompletion",
        "lastBroadcast",
    ] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
}

#[test]
fn stored_records_are_checked_like_input() {
    let good = Maintenance::begin(
        Change {
            message: Some("db".into()),
            eta_ms: Some(Some(MAX_TIME_MS)),
            page_url: Some(Some("http://127.0.0.1:8081/m".into())),
            ..Change::default()
        },
        NOW,
    );
    assert_eq!(good.check(), Ok(()));
    let with = |f: &dyn Fn(&mut Maintenance)| {
        let mut m = good.clone();
        f(&mut m);
        m.check()
    };
    let e = with(&|m| m.start_time_ms = MAX_TIME_MS + 1).expect_err("start");
    assert_eq!(e.field, "start_time_ms");
    assert!(e.message.contains("9999"), "{e}");
    assert!(with(&|m| m.start_time_ms = u64::MAX).is_err());
    let e = with(&|m| m.estimated_completion_ms = Some(u64::MAX)).expect_err("eta");
    assert_eq!(e.field, "estimated_completion_ms");
    let e = with(&|m| m.message = "x".repeat(MAX_TEXT_CHARS + 1)).expect_err("long");
    assert_eq!(e.field, "message");
    let e = with(&|m| m.current_issue = "a\u{1b}[2Jb".into()).expect_err("ctl");
    assert_eq!(e.field, "current_issue");
    let e = with(&|m| m.page_url = Some("javascript:alert(1)".into())).expect_err("url");
    assert_eq!(e.field, "page_url");
    assert_eq!(with(&|m| m.estimated_completion_ms = None), Ok(()));
    assert_eq!(with(&|m| m.page_url = None), Ok(()));
}

#[test]
fn record_round_trips() {
    let m = Maintenance::begin_for(
        Target::Service("api".into()),
        Change {
            message: Some("db".into()),
            ..Change::default()
        },
        NOW,
    );
    let s = serde_json::to_string(&m).expect("ser");
    assert!(s.contains("\"target\":\"api\""), "{s}");
    let back: Maintenance = serde_json::from_str(&s).expect("de");
    assert_eq!(back, m);
}
