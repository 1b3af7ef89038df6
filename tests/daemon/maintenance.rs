//! Maintenance mode end to end: entered, updated and left with kinfractl, what browsers and API
//! clients get meanwhile, and maintenance, its countdown and the hit count surviving a kill -9,
//! a graceful restart and a corrupt state file; a state file of the previous format; seed 004
//! scripts setting the message before the window starts.

use crate::T;
use crate::common::*;
use nix::sys::signal::Signal;

#[test]
fn maintenance_on_and_off_with_kinfractl() {
    let d = Daemon::start();
    let landing = get_html(d.addr, "/");
    assert_eq!(landing.status, 200);
    assert!(landing.text().contains("KInfra"));
    assert!(landing.header("x-maintenance-mode").is_none());

    d.ctl_ok(&[
        "maint",
        "enter",
        "--message",
        "Upgrading the database",
        "--issue",
        "Migrating users",
        "--countdown",
        "600",
    ]);
    let page = get_html(d.addr, "/shop/cart?x=1");
    assert_eq!(page.status, 503);
    assert_eq!(page.header("x-maintenance-mode"), Some("true"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let retry: u64 = page
        .header("retry-after")
        .expect("retry-after")
        .parse()
        .expect("int");
    assert!((590..=600).contains(&retry), "Retry-After {retry}");
    assert!(
        page.header("content-type")
            .unwrap_or("")
            .starts_with("text/html")
    );
    let html = page.text();
    assert!(html.contains("Upgrading the database") && html.contains("Migrating users"));

    // API clients get JSON with the same facts.
    let api = get(d.addr, "/shop/cart");
    assert_eq!(api.status, 503);
    let j = api.json();
    assert_eq!(j["maintenance"]["message"], "Upgrading the database");
    assert_eq!(j["maintenance"]["isActive"], true);

    // Own endpoints are never in maintenance.
    assert_eq!(get(d.addr, "/health").status, 200);
    let st = get(d.addr, "/api/maintenance/status").json();
    assert_eq!(st["isActive"], true);
    assert_eq!(st["currentIssue"], "Migrating users");
    assert!(st["countdown"].as_u64().expect("countdown") <= 600);
    assert!(st["hits"].as_u64().expect("hits") >= 2);

    // Updating what the page shows (seed 004's status flags).
    d.ctl_ok(&["status", "--message", "Almost there", "--time", "2"]);
    let st = get(d.addr, "/api/maintenance/status").json();
    assert_eq!(st["message"], "Almost there");
    assert_eq!(st["currentIssue"], "Migrating users");
    assert!(st["countdown"].as_u64().expect("cd") <= 120);
    let human = d.ctl_ok(&["status"]);
    assert!(
        human.contains("maintenance: ON") && human.contains("Almost there"),
        "{human}"
    );

    d.ctl_ok(&["maint", "exit"]);
    let after = get_html(d.addr, "/shop/cart");
    assert_eq!(
        after.status, 404,
        "landing page answers unknown paths with 404"
    );
    assert!(after.header("x-maintenance-mode").is_none());
    assert_eq!(
        get(d.addr, "/api/maintenance/status").json()["isActive"],
        false
    );
    // Updating while not in maintenance keeps the change for the next window (seed 004's
    // scripts set the message first); nobody is cut off by it.
    let out = d.ctl_ok(&["status", "--message", "x"]);
    assert!(
        out.contains("maintenance: off") && out.contains("kept for the next time"),
        "{out}"
    );
    assert_eq!(get_html(d.addr, "/shop/cart").status, 404);
}

#[test]
fn seed_004_scripts_prepare_the_next_window() {
    let d = Daemon::start();
    let token = d.token();
    let auth = format!("Bearer {token}");
    let post = |body: &str| {
        request(
            d.addr,
            "POST",
            "/api/maintenance/status",
            &[
                ("Content-Type", "application/json"),
                ("Authorization", auth.as_str()),
            ],
            body.as_bytes(),
        )
        .expect("post")
    };
    // A seed 004 script sets the message and countdown while maintenance is off: accepted, kept,
    // and shown by GET, while visitors still reach kinfrad.
    let r =
        post(r#"{"message":"Bambi is upgrading servers","currentIssue":"Step 1","countdown":600}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["success"], true);
    assert_eq!(j["state"]["isActive"], false);
    assert_eq!(j["state"]["prepared"], true);
    assert_eq!(j["state"]["message"], "Bambi is upgrading servers");
    let st = get(d.addr, "/api/maintenance/status").json();
    assert_eq!(st["isActive"], false);
    assert_eq!(st["message"], "Bambi is upgrading servers");
    assert_eq!(st["countdown"], 600);
    assert_eq!(get_html(d.addr, "/").status, 200, "not in maintenance yet");

    // kinfractl's seed flags do the same, and agree with the API.
    let out = d.ctl_ok(&["status", "--issue", "Step 2", "--time", "5"]);
    assert!(out.contains("kept for the next time"), "{out}");
    let st = get(d.addr, "/api/maintenance/status").json();
    assert_eq!(st["currentIssue"], "Step 2");
    assert_eq!(st["message"], "Bambi is upgrading servers");
    assert_eq!(st["countdown"], 300);

    // The window starts with what was prepared; the countdown counts from now.
    d.ctl_ok(&["maint", "enter"]);
    let st = get(d.addr, "/api/maintenance/status").json();
    assert_eq!(st["isActive"], true);
    assert_eq!(st["message"], "Bambi is upgrading servers");
    assert_eq!(st["currentIssue"], "Step 2");
    let cd = st["countdown"].as_u64().expect("countdown");
    assert!((290..=300).contains(&cd), "countdown {cd}");
    assert!(st.get("prepared").is_none(), "{st}");
    let page = get_html(d.addr, "/");
    assert_eq!(page.status, 503);
    assert!(page.text().contains("Bambi is upgrading servers"));

    // While it is on, the same POST changes the page at once.
    let r = post(r#"{"message":"Almost done"}"#);
    assert_eq!(r.json()["state"]["isActive"], true);
    assert_eq!(
        get(d.addr, "/api/maintenance/status").json()["message"],
        "Almost done"
    );
    // Used up: the next window starts from the defaults.
    assert_eq!(post(r#"{"isActive":false}"#).status, 200);
    d.ctl_ok(&["maint", "enter"]);
    let st = get(d.addr, "/api/maintenance/status").json();
    assert_eq!(st["message"], "Scheduled maintenance in progress");
    assert!(st["countdown"].is_null(), "{st}");
}

#[test]
fn a_state_file_of_the_previous_format_loads() {
    // state.json as kinfrad wrote it with one maintenance record (format 1).
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("mkdir");
    let eta = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("now")
        .as_millis() as u64
        + 900_000;
    let v1 = format!(
        r#"{{"version":1,"maintenance":{{"message":"From the old file","current_issue":"Migrating","start_time_ms":1750000000000,"estimated_completion_ms":{eta},"page_url":null,"target":"ALL","hits":5}}}}"#
    );
    std::fs::write(state.join("state.json"), v1).expect("write");
    let mut d = Daemon::start_with(dir, &[], &[]);
    assert!(
        !d.log_text().contains("state file problem"),
        "{}",
        d.log_text()
    );
    let st = get(d.addr, "/api/maintenance/status").json();
    assert_eq!(st["isActive"], true);
    assert_eq!(st["message"], "From the old file");
    assert_eq!(st["currentIssue"], "Migrating");
    assert_eq!(st["startTime"], 1_750_000_000_000u64);
    assert_eq!(st["estimatedCompletion"], eta);
    assert_eq!(st["hits"], 5);
    let page = get_html(d.addr, "/");
    assert_eq!(page.status, 503);
    assert!(page.text().contains("From the old file"));
    let table = d.ctl_ok(&["maint", "list"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("ALL ") && l.contains("From the old file")),
        "{table}"
    );
    // Written again in today's format (the hit above moved the counter), and still read back.
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(T).success());
    let dir = d.crash();
    let text = std::fs::read_to_string(dir.path().join("state/state.json")).expect("read");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["version"], 2, "{text}");
    assert_eq!(v["maintenance"]["records"][0]["hits"], 6, "{text}");
    let d2 = Daemon::start_with(dir, &[], &[]);
    let st = get(d2.addr, "/api/maintenance/status").json();
    assert_eq!(st["message"], "From the old file");
    assert_eq!(st["hits"], 6);
}

#[test]
fn kill_9_in_maintenance_keeps_maintenance_and_eta() {
    let d = Daemon::start();
    d.ctl_ok(&[
        "maint",
        "enter",
        "--message",
        "Crash-proof",
        "--issue",
        "Step 2",
        "--countdown",
        "900",
    ]);
    for _ in 0..3 {
        assert_eq!(get_html(d.addr, "/").status, 503);
    }
    let before = get(d.addr, "/api/maintenance/status").json();
    let dir = d.crash();
    let d2 = Daemon::start_with(dir, &[], &[]);
    let after = get(d2.addr, "/api/maintenance/status").json();
    assert_eq!(after["isActive"], true);
    assert_eq!(after["message"], "Crash-proof");
    assert_eq!(after["currentIssue"], "Step 2");
    assert_eq!(after["estimatedCompletion"], before["estimatedCompletion"]);
    assert_eq!(after["startTime"], before["startTime"]);
    let page = get_html(d2.addr, "/");
    assert_eq!(page.status, 503);
    assert!(page.text().contains("Crash-proof"));
}

#[test]
fn hits_survive_a_graceful_restart() {
    let mut d = Daemon::start();
    d.ctl_ok(&["maint", "enter"]);
    for _ in 0..5 {
        get(d.addr, "/x");
    }
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(T).success());
    let dir = d.crash();
    let d2 = Daemon::start_with(dir, &[], &[]);
    assert_eq!(get(d2.addr, "/api/maintenance/status").json()["hits"], 5);
}

#[test]
fn corrupt_state_file_is_kept_and_reported() {
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("mkdir");
    std::fs::write(
        state.join("state.json"),
        b"{\"version\": 1, \"maintenance\": {\"mess",
    )
    .expect("w");
    let mut notify = NotifyRx::new(dir.path());
    let sock = notify.path.display().to_string();
    let d = Daemon::start_with(dir, &[], &[("NOTIFY_SOCKET", sock.as_str())]);
    let ready = notify.wait_for(T, "READY", |m| m.contains("READY=1"));
    assert!(
        ready.contains("PROBLEM") && ready.contains("kept as"),
        "{ready}"
    );
    let kept: Vec<_> = std::fs::read_dir(&d.state_dir)
        .expect("ls")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.json.corrupt-")
        })
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        std::fs::read(kept[0].path()).expect("r"),
        b"{\"version\": 1, \"maintenance\": {\"mess"
    );
    let st = d.ctl_ok(&["status"]);
    assert!(
        st.contains("PROBLEM") && st.contains("not valid state JSON"),
        "{st}"
    );
    assert!(d.log_text().contains("state file problem"));
    assert!(!d.log_text().contains('\x1b'), "no ANSI colours in a pipe");
    // Still serving and still accepting changes.
    assert_eq!(get(d.addr, "/health").status, 200);
    d.ctl_ok(&["maint", "enter", "--message", "fresh"]);
    assert_eq!(
        get(d.addr, "/api/maintenance/status").json()["message"],
        "fresh"
    );
}

/// `/__status__`'s `seq` counts kinfrad's published changes: it only grows, and a change moves
/// it (the dashboard drops a late answer with a smaller one).
#[test]
fn status_seq_grows_with_every_change() {
    let d = Daemon::start();
    let seq = |d: &Daemon| {
        json_get(d.addr, "/__status__").json()["seq"]
            .as_u64()
            .expect("a numeric seq")
    };
    let a = seq(&d);
    assert_eq!(seq(&d), a, "nothing changed, the seq moved");
    d.ctl_ok(&["maint", "enter", "--message", "seq"]);
    let b = seq(&d);
    assert!(b > a, "{a} -> {b}");
    d.ctl_ok(&["maint", "exit"]);
    assert!(seq(&d) > b);
}
