//! A running service: a crash backs off and restarts (the 503 page says why), the operator stops,
//! starts and restarts it (a stop survives a restart of kinfrad), and a busy preferred port
//! moves with the route following it.

use std::time::Duration;

use crate::common;
use crate::prelude::*;
use serde_json::Value;

#[test]
fn crash_backs_off_restarts_and_the_503_page_says_why() {
    let dir = tempfile::tempdir().expect("tmp");
    let counter = dir.path().join("runs");
    let script = dir.path().join("crash.sh");
    std::fs::write(
        &script,
        format!(
            "echo run >> {}\necho 'ERROR: database unreachable' >&2\nexit 1\n",
            counter.display()
        ),
    )
    .expect("script");
    let d = start(
        dir,
        &format!(
            r#"
[[service]]
name = "api"
command = ["sh", "{}"]
preferred_port = {}
routes = ["/"]
restart = "on-failure"
health_check = {{ interval = "200ms", grace = "0s" }}
"#,
            script.display(),
            common::free_port()
        ),
        &[],
    );
    let s = wait_state(&d, "api", "restarted twice", |s| {
        s["restarts"].as_u64().unwrap_or(0) >= 2
    });
    assert_eq!(s["last_exit"], "Process exited with code 1", "{s}");
    // The back-off keeps a crash loop slow: 0.5 s, 1 s, 2 s… so a few runs in 3 s, not hundreds.
    std::thread::sleep(Duration::from_secs(3));
    let runs = std::fs::read_to_string(&counter)
        .expect("runs")
        .lines()
        .count();
    assert!((3..=8).contains(&runs), "{runs} runs in ~4 s");
    // Whatever moment of the loop a visitor hits, the answer names the exit.
    for _ in 0..10 {
        let r = get(d.addr, "/");
        assert_eq!(r.status, 503);
        let j = r.json();
        assert!(
            // A run that has started but not answered a probe yet reads "unhealthy" when a
            // probe was refused meanwhile: also a moment of the loop.
            ["backoff", "starting", "crashed", "unhealthy"]
                .contains(&j["state"].as_str().unwrap_or("")),
            "{j}"
        );
        assert_eq!(j["error_detail"], "Process exited with code 1", "{j}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let page = eventually(T, "the 503 page", || {
        let r = get_html(d.addr, "/");
        (r.header("x-kinfra-fallback") == Some("503")).then(|| r.text())
    });
    assert!(
        page.contains("Process exited with code 1"),
        "the 503 page names the exit"
    );
    let logs = d.ctl_ok(&["logs", "api"]);
    assert!(logs.contains("ERROR ERROR: database unreachable"), "{logs}");
}

#[test]
fn operator_stop_start_restart_and_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = server_script(dir.path(), "svc", 0.0);
    let d = start(
        dir,
        &(python_service("svc", &script)
            + r#"
[[service]]
name = "ext"
url = "http://127.0.0.1:1"
routes = ["ext.test/"]
"#),
        &[],
    );
    let s = wait_state(&d, "svc", "running", |s| s["state"] == "running");
    let first = pid_of(&s);
    assert_eq!(d.ctl_ok(&["stop", "svc"]).trim(), "stop: svc");
    wait_state(&d, "svc", "stopped", |s| s["state"] == "stopped");
    eventually(T, "the process to be gone", || {
        (!alive(first)).then_some(())
    });
    assert_eq!(get(d.addr, "/").status, 503);
    d.ctl_ok(&["start", "svc"]);
    let s = wait_state(&d, "svc", "running again", |s| s["state"] == "running");
    let second = pid_of(&s);
    assert_ne!(first, second);
    d.ctl_ok(&["restart", "svc"]);
    let s = wait_state(&d, "svc", "a new process", |s| {
        s["state"] == "running"
            && s["pid"].as_str().and_then(|p| p.parse::<i32>().ok()) != Some(second)
    });
    assert!(!alive(second));
    assert_eq!(s["restarts"], 1, "{s}");

    for (args, want) in [
        (vec!["stop", "nope"], "no service named \"nope\""),
        (vec!["restart", "ext"], "not run by kinfrad"),
        (vec!["logs", "ext"], "not run by kinfrad"),
    ] {
        let o = d.ctl(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {o:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn an_operator_stop_survives_a_restart_of_kinfrad() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = server_script(dir.path(), "kept", 0.0);
    let config = python_service("k", &script);
    let mut d = start(dir, &config, &[]);
    wait_state(&d, "k", "running", |s| s["state"] == "running");
    d.ctl_ok(&["stop", "k"]);
    wait_state(&d, "k", "stopped", |s| s["state"] == "stopped");
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(d.state_dir.join("state.json")).expect("state.json"),
    )
    .expect("json");
    assert_eq!(
        state["stopped_services"],
        serde_json::json!(["k"]),
        "{state}"
    );
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(d.wait_exit(T).success());
    let path = d.dir.path().join("kinfra.toml").display().to_string();
    let dir = d.crash();
    let d = Daemon::start_with(dir, &["--config", &path], &[]);
    std::thread::sleep(Duration::from_millis(800));
    let s = status(&d, "k");
    assert_eq!(s["state"], "stopped", "still stopped after a restart: {s}");
    assert_eq!(s["pid"], "");
    d.ctl_ok(&["start", "k"]);
    wait_state(&d, "k", "running", |s| s["state"] == "running");
    let state = std::fs::read_to_string(d.state_dir.join("state.json")).expect("state.json");
    assert!(!state.contains("stopped_services"), "{state}");
}

#[test]
fn busy_preferred_port_moves_and_the_route_follows() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = server_script(dir.path(), "moved", 0.0);
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = busy.local_addr().expect("addr").port();
    let d = start(
        dir,
        &format!(
            r#"
[[service]]
name = "m"
command = ["python3", "{script}", "{{port}}"]
preferred_port = {taken}
port_range = "{taken}-{}"
routes = ["/"]
health_check = {{ interval = "200ms" }}
"#,
            taken.saturating_add(50)
        ),
        &[],
    );
    let s = wait_state(&d, "m", "running", |s| s["state"] == "running");
    let port: u16 = s["port"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .expect("port");
    assert_ne!(port, taken);
    let r = get(d.addr, "/");
    assert_eq!(r.status, 200);
    assert!(r.text().contains(&format!("port={port}")), "{}", r.text());
    drop(busy);
}
