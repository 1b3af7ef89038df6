//! The warning before a scheduled maintenance window: proxied responses of the routes a window
//! covers carry `X-Maintenance-Scheduled: <start>` within its lead time, others do not, and
//! `--warn 0` shows none. Run with the fast path and (KINFRA_TEST_FAST_PATH=0) without it.

use crate::prelude::*;

const API: &str = "api.example.com/";

fn fetch(d: &Daemon, host: &str) -> Resp {
    let h = [("Connection", "keep-alive")];
    let bytes = request_bytes(d.addr, "GET", "/page", Some(host), &h, b"");
    send_and_read(d.addr, &bytes, T).unwrap_or_else(|e| panic!("GET {host}: {e}"))
}

fn schedule(d: &Daemon, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json", "maint", "schedule"];
    all.extend(args);
    let out = d.ctl_ok(&all);
    serde_json::from_str::<serde_json::Value>(&out).expect("json")[0].clone()
}

#[test]
fn proxied_responses_warn_of_a_window_ahead() {
    let api = Upstream::start(0, echo("api"));
    let web = Upstream::start(0, echo("web"));
    let cfg = format!(
        "{}{}",
        service("api", api.port(), &[API], FAST_HEALTH),
        service("web", web.port(), &["/"], FAST_HEALTH)
    );
    let d = start(&cfg);
    wait_running(&d, "api");
    wait_running(&d, "web");
    for host in ["api.example.com", "www.example.com"] {
        let r = fetch(&d, host);
        assert_eq!(r.status, 200);
        assert!(r.header("x-maintenance-scheduled").is_none());
    }

    // A window of `api` in 30 minutes, warned 1 h ahead: api's responses say when.
    let w = schedule(
        &d,
        &[
            "--at",
            "2099-01-01T00:00:00Z",
            "--duration",
            "30m",
            "--target",
            "api",
        ],
    );
    let id = w["id"].as_u64().expect("id").to_string();
    d.ctl_ok(&["maint", "schedule", "cancel", &id]);
    let soon = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_mins(30))
        .expect("time")
        .round(jiff::Unit::Second)
        .expect("round");
    let w = schedule(
        &d,
        &[
            "--at",
            &soon.to_string(),
            "--duration",
            "30m",
            "--target",
            "api",
            "--warn",
            "1h",
        ],
    );
    assert_eq!(w["warn_secs"], 3600);
    let id = w["id"].as_u64().expect("id").to_string();
    let r = fetch(&d, "api.example.com");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-upstream"), Some("api"));
    assert_eq!(
        r.header("x-maintenance-scheduled"),
        Some(soon.to_string().as_str())
    );
    let r = fetch(&d, "www.example.com");
    assert_eq!(r.status, 200);
    assert!(r.header("x-maintenance-scheduled").is_none());
    let st = get(d.addr, "/api/maintenance/status?target=api").json();
    assert_eq!(st["scheduled"]["start"], soon.to_string());
    assert_eq!(st["scheduled"]["target"], "api");
    let st = get(d.addr, "/api/maintenance/status?target=web").json();
    assert!(st.get("scheduled").is_none(), "{st}");

    // Without a warning, or once cancelled: nothing.
    d.ctl_ok(&["maint", "schedule", "cancel", &id]);
    assert!(
        fetch(&d, "api.example.com")
            .header("x-maintenance-scheduled")
            .is_none()
    );
    schedule(
        &d,
        &[
            "--at",
            &soon.to_string(),
            "--duration",
            "30m",
            "--warn",
            "0",
        ],
    );
    assert!(
        fetch(&d, "api.example.com")
            .header("x-maintenance-scheduled")
            .is_none()
    );
    assert!(
        get(d.addr, "/api/maintenance/status")
            .json()
            .get("scheduled")
            .is_none()
    );
}
