//! Maintenance records per target on the request path: a service's and a route's records live
//! beside the global one and are entered and left alone; for a request the most specific record
//! answers (route, then service, then global) with its own page, custom URL and Retry-After;
//! hits are counted on the route that matched, start again when its record is entered, and
//! survive a restart. Run with the fast path and (KINFRA_TEST_FAST_PATH=0) without it.

use crate::prelude::*;
use nix::sys::signal::Signal;
use serde_json::Value;

const V1: &str = "api.example.com/v1";
const V2: &str = "api.example.com/v2";
const BROWSER: &[(&str, &str)] = &[("Accept", "text/html,application/xhtml+xml")];
const JSON: &[(&str, &str)] = &[("Accept", "application/json")];

/// Service `api` on two routes of api.example.com, service `web` on every other host.
fn config(api: &Upstream, web: &Upstream) -> String {
    format!(
        "{}{}",
        service("api", api.port(), &[V1, V2], FAST_HEALTH),
        service("web", web.port(), &["/"], FAST_HEALTH)
    )
}

fn setup() -> (Upstream, Upstream, Daemon, String) {
    let api = Upstream::start(0, echo("api"));
    let web = Upstream::start(0, echo("web"));
    let cfg = config(&api, &web);
    let d = start(&cfg);
    wait_running(&d, "api");
    wait_running(&d, "web");
    (api, web, d, cfg)
}

/// A request to one of the hosts and paths below, with these headers.
type Req = fn(&Daemon, &[(&str, &str)]) -> Resp;

/// `GET path` on `host` on a kept-alive connection: a browser's request may then take the fast
/// path's cached page (one that says `Connection: close` goes through the router).
fn fetch(d: &Daemon, host: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut h = headers.to_vec();
    h.push(("Connection", "keep-alive"));
    let bytes = request_bytes(d.addr, "GET", path, Some(host), &h, b"");
    send_and_read(d.addr, &bytes, T).unwrap_or_else(|e| panic!("GET {host}{path}: {e}"))
}

fn v1(d: &Daemon, headers: &[(&str, &str)]) -> Resp {
    fetch(d, "api.example.com", "/v1/item", headers)
}

fn v2(d: &Daemon, headers: &[(&str, &str)]) -> Resp {
    fetch(d, "api.example.com", "/v2/item", headers)
}

fn www(d: &Daemon, headers: &[(&str, &str)]) -> Resp {
    fetch(d, "www.example.com", "/page", headers)
}

/// The upstream answered (not maintenance).
fn served_by(r: &Resp, tag: &str) {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-upstream"), Some(tag), "{}", r.text());
    assert!(r.header("x-maintenance-mode").is_none());
}

/// kinfrad's maintenance answer, with `msg` on the page (browsers) or in the JSON.
fn maintenance_says(r: &Resp, msg: &str) {
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("x-maintenance-mode"), Some("true"));
    if r.header("content-type")
        .unwrap_or("")
        .starts_with("text/html")
    {
        assert!(r.text().contains(msg), "page lacks {msg:?}: {}", r.text());
    } else {
        assert_eq!(r.json()["maintenance"]["message"], msg, "{}", r.text());
    }
}

fn retry_after(r: &Resp) -> u64 {
    r.header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After: {r:?}"))
}

fn list(d: &Daemon) -> Vec<Value> {
    let out = d.ctl_ok(&["--json", "maint", "list"]);
    serde_json::from_str::<Value>(&out)
        .unwrap_or_else(|e| panic!("{e}: {out}"))
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("not an array: {out}"))
}

fn record<'a>(records: &'a [Value], target: &str) -> &'a Value {
    records
        .iter()
        .find(|r| r["target"] == target)
        .unwrap_or_else(|| panic!("no record {target}: {records:?}"))
}

/// `/api/dashboard/routes`' row of the route `spec`.
fn route_row(d: &Daemon, spec: &str) -> Value {
    let rows = get(d.addr, "/api/dashboard/routes").json();
    rows.as_array()
        .and_then(|v| v.iter().find(|r| r["route"] == spec).cloned())
        .unwrap_or_else(|| panic!("no route {spec}: {rows}"))
}

#[test]
fn per_target_records_are_entered_and_left_alone() {
    let (_api, _web, d, _) = setup();
    let page = Upstream::start(0, |_| Reply::text(200, "the api's own maintenance page"));
    let url = format!("http://127.0.0.1:{}/api-maint.html", page.port());

    d.ctl_ok(&["maint", "enter", "--target", "api", "--url", &url]);
    let r = v1(&d, BROWSER);
    assert!(r.text().contains("the api's own maintenance page"), "{r:?}");
    assert_eq!(r.header("x-maintenance-mode"), Some("true"));
    served_by(&www(&d, BROWSER), "web");

    // Entering another target leaves the api's record (and its URL) as it was.
    d.ctl_ok(&[
        "maint",
        "enter",
        "--target",
        "web",
        "--message",
        "Web is moving",
    ]);
    let r = v2(&d, BROWSER);
    assert!(r.text().contains("the api's own maintenance page"), "{r:?}");
    maintenance_says(&www(&d, BROWSER), "Web is moving");
    maintenance_says(&www(&d, JSON), "Web is moving");

    // Both are listed, each with its own settings and the routes it answers.
    let recs = list(&d);
    assert_eq!(recs.len(), 2, "{recs:?}");
    let a = record(&recs, "api");
    assert_eq!(a["isActive"], true);
    assert_eq!(a["maintenancePageUrl"], url.as_str());
    assert_eq!(a["routes"], serde_json::json!([V1, V2]));
    let w = record(&recs, "web");
    assert_eq!(w["message"], "Web is moving");
    assert_eq!(w["routes"], serde_json::json!(["/"]));
    assert!(
        w.get("maintenancePageUrl").is_none_or(Value::is_null),
        "{w}"
    );
    let table = d.ctl_ok(&["maint", "list"]);
    let head = table.lines().next().unwrap_or_default();
    for col in ["TARGET", "STATE", "SINCE", "ETA", "HITS", "PAGE", "MESSAGE"] {
        assert!(head.contains(col), "{table}");
    }
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("api ") && l.contains(&url)),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("web ") && l.contains("Web is moving")),
        "{table}"
    );

    // The status API: the global record by default, one target's on request.
    assert_eq!(
        get(d.addr, "/api/maintenance/status").json()["isActive"],
        false
    );
    let s = get(d.addr, "/api/maintenance/status?target=api").json();
    assert_eq!(s["isActive"], true);
    assert_eq!(s["maintenancePageUrl"], url.as_str());
    assert_eq!(
        get(d.addr, "/api/maintenance/status?target=bad%20name").status,
        400
    );

    // Leaving one target: the other stays, with its URL.
    d.ctl_ok(&["maint", "exit", "--target", "web"]);
    served_by(&www(&d, BROWSER), "web");
    assert!(
        v1(&d, BROWSER)
            .text()
            .contains("the api's own maintenance page")
    );

    // `maint exit` without a target leaves the global record only, and says what stays.
    let out = d.ctl_ok(&["maint", "exit"]);
    assert!(out.contains("still in maintenance: api"), "{out}");
    assert!(
        v1(&d, BROWSER)
            .text()
            .contains("the api's own maintenance page")
    );

    // An unknown target is refused, naming what there is.
    let o = d.ctl(&["maint", "enter", "--target", "api.example.com/v3"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("unknown route or service api.example.com/v3") && err.contains(V1),
        "{err}"
    );

    d.ctl_ok(&["maint", "exit", "--all"]);
    served_by(&v1(&d, BROWSER), "api");
    served_by(&v2(&d, JSON), "api");
    assert!(list(&d).is_empty());
}

#[test]
fn route_beats_service_beats_global() {
    let (_api, _web, d, _) = setup();
    d.ctl_ok(&[
        "maint",
        "enter",
        "--message",
        "Everything",
        "--countdown",
        "300",
    ]);
    d.ctl_ok(&[
        "maint",
        "enter",
        "--target",
        "api",
        "--message",
        "The API",
        "--countdown",
        "200",
    ]);
    d.ctl_ok(&[
        "maint",
        "enter",
        "--target",
        V1,
        "--message",
        "Version one",
        "--countdown",
        "100",
    ]);
    let cases: [(Req, &str, &str, u64); 3] = [
        (v1, "Version one", V1, 100),
        (v2, "The API", "api", 200),
        (www, "Everything", "ALL", 300),
    ];
    for (req, msg, target, retry) in cases {
        // Browsers (the fast path's cached page) and API clients (the router) alike.
        let page = req(&d, BROWSER);
        maintenance_says(&page, msg);
        let ra = retry_after(&page);
        assert!(
            (retry - 10..=retry).contains(&ra),
            "{msg}: Retry-After {ra}"
        );
        let j = req(&d, JSON);
        maintenance_says(&j, msg);
        assert_eq!(j.json()["maintenance"]["target"], target);
        let ra = retry_after(&j);
        assert!(
            (retry - 10..=retry).contains(&ra),
            "{msg}: Retry-After {ra}"
        );
    }
    // A browser that closes, and HEAD, go through the router on both paths (HEAD read raw: no
    // body follows its head).
    maintenance_says(
        &get_with_host(d.addr, "/v2/item", "api.example.com", BROWSER),
        "The API",
    );
    let head = raw(
        d.addr,
        &request_bytes(
            d.addr,
            "HEAD",
            "/v1/x",
            Some("api.example.com"),
            BROWSER,
            b"",
        ),
    )
    .expect("HEAD");
    assert_eq!(first_status(&head), Some(503));
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let ra: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After: {text}"));
    assert!((90..=100).contains(&ra), "the route's Retry-After: {ra}");
    // A route's page follows its own record, not the global one.
    let page = v1(&d, BROWSER).text();
    assert!(
        page.contains("/api/maintenance/status?target=api.example.com/v1"),
        "{page}"
    );
    let own = get(d.addr, "/api/maintenance/status?target=api.example.com/v1").json();
    assert_eq!(own["message"], "Version one");
    assert_eq!(own["isActive"], true);
    let global = get(d.addr, "/api/maintenance/status").json();
    assert_eq!(global["message"], "Everything");

    // The dashboard's routes say which record answers each.
    assert_eq!(route_row(&d, V1)["maintenance"]["target"], V1);
    assert_eq!(route_row(&d, V2)["maintenance"]["target"], "api");
    assert_eq!(route_row(&d, "/")["maintenance"]["target"], "ALL");

    // Leaving the route's record hands the route to its service's; then to the global one.
    d.ctl_ok(&["maint", "exit", "--target", V1]);
    maintenance_says(&v1(&d, BROWSER), "The API");
    maintenance_says(&v1(&d, JSON), "The API");
    d.ctl_ok(&["maint", "exit", "--target", "api"]);
    maintenance_says(&v1(&d, BROWSER), "Everything");
    maintenance_says(&v2(&d, JSON), "Everything");
    d.ctl_ok(&["maint", "exit"]);
    served_by(&v1(&d, BROWSER), "api");
}

#[test]
fn hits_are_counted_per_route_reset_on_entry_and_kept_across_a_restart() {
    let (_api, _web, d, cfg) = setup();
    d.ctl_ok(&["maint", "enter", "--target", "api"]);
    for _ in 0..3 {
        assert_eq!(v1(&d, BROWSER).status, 503);
    }
    assert_eq!(v2(&d, BROWSER).status, 503);
    assert_eq!(v2(&d, JSON).status, 503);
    served_by(&www(&d, JSON), "web");

    // Each route its own count; the record counts what it answered.
    assert_eq!(route_row(&d, V1)["maintenance_hits"], 3);
    assert_eq!(route_row(&d, V2)["maintenance_hits"], 2);
    assert_eq!(route_row(&d, "/")["maintenance_hits"], 0);
    let m = get(d.addr, "/api/dashboard/maintenance").json();
    assert_eq!(m["total_maintenance_hits"], 5, "{m}");
    assert_eq!(m["total_in_maintenance"], 2, "{m}");
    assert_eq!(record(&list(&d), "api")["hits"], 5);
    assert_eq!(svc_status(&d, "api")["maintenance_hits"], 5);

    // A record entered for one route starts that route again from 0; the other keeps its count.
    d.ctl_ok(&["maint", "enter", "--target", V1]);
    assert_eq!(route_row(&d, V1)["maintenance_hits"], 0);
    assert_eq!(v1(&d, JSON).status, 503);
    assert_eq!(route_row(&d, V1)["maintenance_hits"], 1);
    assert_eq!(route_row(&d, V2)["maintenance_hits"], 2);
    let recs = list(&d);
    assert_eq!(record(&recs, V1)["hits"], 1);
    assert_eq!(record(&recs, "api")["hits"], 5);
    // Changing a record that is already in maintenance is no new entry: nothing resets.
    d.ctl_ok(&["maint", "enter", "--target", "api", "--message", "still"]);
    assert_eq!(route_row(&d, V2)["maintenance_hits"], 2);

    // A graceful restart keeps every count.
    d.signal(Signal::SIGTERM);
    let mut d = d;
    assert!(d.wait_exit(T).success());
    let fast = if fast_path() { "1" } else { "0" };
    let d = start_config(d.crash(), &cfg, &[("KINFRA_FAST_PATH", fast)]);
    wait_running(&d, "api");
    assert_eq!(route_row(&d, V1)["maintenance_hits"], 1);
    assert_eq!(route_row(&d, V2)["maintenance_hits"], 2);
    let recs = list(&d);
    assert_eq!(record(&recs, V1)["hits"], 1);
    assert_eq!(record(&recs, "api")["hits"], 5);
    assert_eq!(record(&recs, "api")["message"], "still");

    // Left and entered again, the service's record starts from 0 on the routes it answers.
    d.ctl_ok(&["maint", "exit", "--target", "api"]);
    assert_eq!(
        route_row(&d, V2)["maintenance_hits"],
        2,
        "kept after leaving"
    );
    d.ctl_ok(&["maint", "enter", "--target", "api"]);
    assert_eq!(route_row(&d, V2)["maintenance_hits"], 0);
    assert_eq!(
        route_row(&d, V1)["maintenance_hits"],
        1,
        "its own record answers v1"
    );
    assert_eq!(record(&list(&d), "api")["hits"], 0);
}
