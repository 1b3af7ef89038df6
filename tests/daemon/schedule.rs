//! Scheduled maintenance windows end to end: a short window a few seconds ahead is entered and
//! left on time with Retry-After and the countdown from its end; it survives a kinfrad restart
//! between scheduling and start; one that ended while kinfrad was down is not entered (a daily
//! one moves to its next day); list and cancel; bad input gets a clear error.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::T;
use crate::common::*;

/// A whole second `secs` from now: (RFC 3339 in UTC, the same civil time without the `Z`,
/// Unix ms).
fn ahead(secs: u64) -> (String, String, u64) {
    // kinfractl is built on first use: not between taking the time and scheduling.
    kinfractl();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let at = now + 1 + secs;
    let rfc = jiff::Timestamp::from_second(at as i64)
        .expect("time")
        .to_string();
    let civil = rfc.trim_end_matches('Z').to_string();
    (rfc, civil, at * 1000)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

fn windows(d: &Daemon) -> Vec<serde_json::Value> {
    let out = d.ctl_ok(&["--json", "maint", "schedule", "list"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn active(d: &Daemon) -> bool {
    get(d.addr, "/api/maintenance/status").json()["isActive"] == true
}

#[test]
fn a_short_window_is_entered_and_left_on_time() {
    let d = Daemon::start();
    let (_, civil, start) = ahead(3);
    let out = d.ctl_ok(&[
        "--json",
        "maint",
        "schedule",
        "--at",
        &civil,
        "--tz",
        "UTC",
        "--duration",
        "5s",
        "--message",
        "Scheduled upgrade",
    ]);
    let w: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(w[0]["next_start"], start, "{out}");
    assert_eq!(w[0]["next_end"], start + 5000, "{out}");
    assert_eq!(w[0]["tz"], "UTC");
    let end = start + 5000;
    let text = d.ctl_ok(&["maint", "schedule", "list"]);
    assert!(
        text.contains("Scheduled upgrade") && text.contains("waiting"),
        "{text}"
    );

    // Before: served, with the warning in the status API (the default lead time is 1 h).
    if now_ms() + 500 < start {
        let st = get(d.addr, "/api/maintenance/status").json();
        assert_eq!(st["isActive"], false, "{st}");
        assert_eq!(st["scheduled"]["startTime"], start, "{st}");
        assert_eq!(st["scheduled"]["endTime"], end, "{st}");
        assert_eq!(get_html(d.addr, "/").status, 200);
    }

    // During: the page, with the window's end as the estimate and Retry-After.
    eventually(T, "the window to start", || active(&d).then_some(()));
    let st = get(d.addr, "/api/maintenance/status").json();
    assert_eq!(st["estimatedCompletion"], end, "{st}");
    assert_eq!(st["message"], "Scheduled upgrade");
    assert!(st.get("scheduled").is_none(), "{st}");
    let page = get_html(d.addr, "/");
    if now_ms() + 1000 < end {
        assert_eq!(page.status, 503);
        assert_eq!(page.header("x-maintenance-mode"), Some("true"));
        let retry: u64 = page
            .header("retry-after")
            .expect("retry-after")
            .parse()
            .expect("int");
        assert!((1..=5).contains(&retry), "Retry-After {retry}");
        assert!(page.text().contains("Scheduled upgrade"));
        assert!(windows(&d)[0]["active"] == true);
    }

    // After: served again, and a one-off window is gone.
    eventually(T, "the window to end", || (!active(&d)).then_some(()));
    assert!(now_ms() >= end);
    assert_eq!(get_html(d.addr, "/").status, 200);
    eventually(T, "the window to be forgotten", || {
        windows(&d).is_empty().then_some(())
    });
    let log = d.log_text();
    assert!(
        log.contains("scheduled window started") && log.contains("scheduled window ended"),
        "{log}"
    );
}

#[test]
fn a_window_survives_a_restart_before_it_starts() {
    let d = Daemon::start();
    let (rfc, _, start) = ahead(4);
    d.ctl_ok(&[
        "maint",
        "schedule",
        "--at",
        &rfc,
        "--duration",
        "4s",
        "--message",
        "After the restart",
    ]);
    let dir = d.crash();
    let d = Daemon::start_with(dir, &[], &[]);
    let w = windows(&d);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0]["next_start"], start);
    eventually(T, "the window to start", || active(&d).then_some(()));
    assert_eq!(
        get(d.addr, "/api/maintenance/status").json()["message"],
        "After the restart"
    );
    eventually(T, "the window to end", || (!active(&d)).then_some(()));
    assert!(now_ms() >= start + 4000);
}

#[test]
fn a_window_that_ended_while_kinfrad_was_down_is_not_entered() {
    let d = Daemon::start();
    let (_, civil, start) = ahead(3);
    for every in [None, Some("day")] {
        let mut args = vec![
            "maint",
            "schedule",
            "--at",
            &civil,
            "--tz",
            "UTC",
            "--duration",
            "1s",
        ];
        if let Some(e) = every {
            args.extend(["--every", e]);
        }
        d.ctl_ok(&args);
    }
    assert_eq!(windows(&d).len(), 2);
    let dir = d.crash();
    let wait = (start + 2000).saturating_sub(now_ms());
    std::thread::sleep(Duration::from_millis(wait));
    let d = Daemon::start_with(dir, &[], &[]);
    // The daily window waits for tomorrow; the one-off one is gone, and neither entered.
    let w = eventually(T, "the one-off window to be forgotten", || {
        let w = windows(&d);
        (w.len() == 1).then_some(w)
    });
    assert_eq!(w[0]["every"], "day");
    assert_eq!(w[0]["next_start"], start + 86_400_000);
    assert!(!active(&d));
    assert_eq!(get_html(d.addr, "/").status, 200);
    let log = d.log_text();
    assert!(log.contains("not entered"), "{log}");
    assert!(!log.contains("scheduled window started"), "{log}");
}

#[test]
fn windows_are_listed_and_cancelled() {
    let d = Daemon::start();
    assert!(
        d.ctl_ok(&["maint", "schedule", "list"])
            .contains("no maintenance windows")
    );
    assert!(!d.ctl_ok(&["status"]).contains("scheduled maintenance"));
    let mut ids = Vec::new();
    for (at, every) in [("2099-06-01T02:00", "week"), ("2099-07-01T03:30", "day")] {
        let out = d.ctl_ok(&[
            "--json",
            "maint",
            "schedule",
            "--at",
            at,
            "--tz",
            "Europe/Berlin",
            "--every",
            every,
            "--duration",
            "30m",
            "--message",
            "Weekly",
        ]);
        let w: serde_json::Value = serde_json::from_str(&out).expect("json");
        ids.push(w[0]["id"].as_u64().expect("id"));
    }
    let w = windows(&d);
    assert_eq!(w.len(), 2);
    // `kinfractl status` lists them too, and its JSON carries them.
    let status = d.ctl_ok(&["status"]);
    assert!(
        status.contains("scheduled maintenance:")
            && status.contains("2099-06-01T02:00:00 Europe/Berlin")
            && status.contains("2099-07-01T03:30:00 Europe/Berlin"),
        "{status}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&d.ctl_ok(&["--json", "status"])).expect("status JSON");
    assert_eq!(
        json["schedules"].as_array().map(Vec::len),
        Some(2),
        "{json}"
    );
    assert_eq!(w[0]["at"], "2099-06-01T02:00:00");
    assert_eq!(w[0]["tz"], "Europe/Berlin");
    // 02:00 CEST is 00:00 UTC.
    assert_eq!(
        w[0]["next_start"],
        "2099-06-01T00:00:00Z"
            .parse::<jiff::Timestamp>()
            .expect("t")
            .as_millisecond()
    );
    let cancelled = d.ctl_ok(&["maint", "schedule", "cancel", &ids[0].to_string()]);
    assert!(cancelled.contains("2099-06-01"), "{cancelled}");
    let w = windows(&d);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0]["id"], ids[1]);
    // Cancelled for good: not back after a restart.
    let dir = d.crash();
    let d = Daemon::start_with(dir, &[], &[]);
    assert_eq!(windows(&d).len(), 1);
    let o = d.ctl(&["maint", "schedule", "cancel", &ids[0].to_string()]);
    assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));
    assert!(
        output_text(&o).contains("no scheduled window"),
        "{}",
        output_text(&o)
    );
}

#[test]
fn bad_windows_get_clear_errors() {
    let d = Daemon::start();
    for (args, says) in [
        (
            vec![
                "--at",
                "2020-01-01T00:00",
                "--tz",
                "UTC",
                "--duration",
                "5m",
            ],
            "in the past",
        ),
        (
            vec!["--at", "2099-01-01T00:00", "--tz", "UTC", "--duration", "0"],
            "duration: must be longer than 0",
        ),
        (
            vec![
                "--at",
                "2099-01-01T00:00",
                "--tz",
                "Mars/Olympus",
                "--duration",
                "5m",
            ],
            "unknown time zone \"Mars/Olympus\"",
        ),
        (
            vec!["--at", "next tuesday", "--tz", "UTC", "--duration", "5m"],
            "is not a date and time",
        ),
        (
            vec![
                "--at",
                "2099-01-01T00:00",
                "--every",
                "month",
                "--duration",
                "5m",
            ],
            "use day or week",
        ),
        (
            vec![
                "--at",
                "2099-01-01T00:00",
                "--every",
                "day",
                "--duration",
                "1d",
            ],
            "windows would overlap",
        ),
        (
            vec![
                "--at",
                "2099-01-01T00:00",
                "--target",
                "nosuch",
                "--duration",
                "5m",
            ],
            "unknown route or service nosuch",
        ),
    ] {
        let mut all = vec!["maint", "schedule"];
        all.extend(args.iter().copied());
        let o = d.ctl(&all);
        let text = output_text(&o);
        assert_eq!(o.status.code(), Some(1), "{all:?}: {text}");
        assert!(text.contains(says), "{all:?}: {text}");
    }
    // Usage errors are the CLI's own.
    let o = d.ctl(&["maint", "schedule", "--at", "2099-01-01T00:00"]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(windows(&d).is_empty());
    assert!(!active(&d));
}

#[test]
fn windows_over_http_need_the_admin_token() {
    let d = Daemon::start();
    let token = d.token();
    let auth = format!("Bearer {token}");
    let json = ("Content-Type", "application/json");
    let body =
        r#"{"at":"2099-03-01T02:00","tz":"UTC","duration":"30m","every":"week","message":"HTTP"}"#;
    let r = post(&d, "/api/kinfra/schedule", &[json], body);
    assert_eq!(r.status, 401, "{}", r.text());
    let r = post(
        &d,
        "/api/kinfra/schedule",
        &[json, ("Authorization", &auth)],
        body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["window"]["id"].as_u64().expect("id");
    let list = get(d.addr, "/api/kinfra/schedule").json();
    assert_eq!(list["windows"][0]["message"], "HTTP", "{list}");
    assert_eq!(windows(&d)[0]["id"], id);
    // Bad input: the same clear errors as kinfractl's.
    let r = post(
        &d,
        "/api/kinfra/schedule",
        &[json, ("Authorization", &auth)],
        r#"{"at":"2099-03-01T02:00","tz":"Nowhere/Land","duration":60}"#,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("unknown time zone"), "{}", r.text());
    let path = format!("/api/kinfra/schedule/{id}");
    let r = request(d.addr, "DELETE", &path, &[], b"").expect("delete");
    assert_eq!(r.status, 401);
    let r = request(d.addr, "DELETE", &path, &[("Authorization", &auth)], b"").expect("delete");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(windows(&d).is_empty());
}

#[test]
fn overlapping_windows_of_one_target_keep_it_until_the_last_ends() {
    let d = Daemon::start();
    let (_, first, start) = ahead(2);
    let (_, second, start2) = ahead(4);
    for (at, dur) in [(&first, "3s"), (&second, "4s")] {
        d.ctl_ok(&[
            "maint",
            "schedule",
            "--at",
            at,
            "--tz",
            "UTC",
            "--duration",
            dur,
        ]);
    }
    let (end1, end2) = (start + 3000, start2 + 4000);
    eventually(T, "the first window to start", || active(&d).then_some(()));
    let wait = (end1 + 700).saturating_sub(now_ms());
    std::thread::sleep(Duration::from_millis(wait));
    if now_ms() + 1000 < end2 {
        assert!(active(&d), "the second window still holds ALL");
        let st = get(d.addr, "/api/maintenance/status").json();
        assert_eq!(st["estimatedCompletion"], end2, "{st}");
    }
    eventually(T, "the second window to end", || {
        (!active(&d)).then_some(())
    });
    assert!(now_ms() >= end2);
}
