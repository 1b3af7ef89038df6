//! End-to-end tests of the real kinfrad and kinfractl binaries over loopback: socket activation
//! by name, sd_notify, signals, persistence across kill -9, corrupt state, hostile control input,
//! the HTTP API and the custom maintenance page.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

const T: Duration = Duration::from_secs(10);

fn status_json(d: &Daemon) -> serde_json::Value {
    serde_json::from_str(&d.ctl_ok(&["--json", "status"])).expect("status json")
}

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
    // Updating while not in maintenance is refused with a clear error.
    let o = d.ctl(&["status", "--message", "x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not active"));
}

fn socket_activated(fdnames: &str, reversed: bool) {
    let dir = tempfile::tempdir().expect("tmp");
    let mut notify = NotifyRx::new(dir.path());
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let control = dir.path().join("control.sock");
    let state = dir.path().join("state");
    let mut cmd = Command::new("systemd-socket-activate");
    let tcp = format!("127.0.0.1:{port}");
    let (first, second) = if reversed {
        (control.to_str().expect("utf8"), tcp.as_str())
    } else {
        (tcp.as_str(), control.to_str().expect("utf8"))
    };
    cmd.arg("-l")
        .arg(first)
        .arg("-l")
        .arg(second)
        .arg(format!("--fdname={fdnames}"))
        .arg("-E")
        .arg(format!("NOTIFY_SOCKET={}", notify.path.display()))
        .arg("-E")
        .arg(format!("STATE_DIRECTORY={}", state.display()))
        .arg(KINFRAD)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("systemd-socket-activate");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    eventually(T, "socket to be bound", || {
        std::net::TcpStream::connect(addr).ok()
    });
    // The first connection starts kinfrad; it is then served by kinfrad itself.
    let health = get(addr, "/health");
    assert_eq!(health.status, 200);
    let ready = notify.wait_for(T, "READY=1", |m| m.contains("READY=1"));
    assert!(
        ready.contains("STATUS=") && ready.contains("maintenance off"),
        "{ready}"
    );
    let stderr = child.stderr.take().expect("stderr");
    let guard = Kill(child);

    let ctl = |args: &[&str]| {
        let o = Command::new(kinfractl())
            .arg("--socket")
            .arg(&control)
            .args(args)
            .output()
            .expect("kinfractl");
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    ctl(&[
        "maint",
        "enter",
        "--message",
        "Socket activated maintenance",
        "--countdown",
        "300",
    ]);
    notify.wait_for(T, "STATUS with maintenance", |m| {
        m.contains("STATUS=Maintenance ON")
    });
    let page = get_html(addr, "/");
    assert_eq!(page.status, 503);
    assert_eq!(page.header("x-maintenance-mode"), Some("true"));
    assert!(page.text().contains("Socket activated maintenance"));
    ctl(&["maint", "exit"]);
    notify.wait_for(T, "STATUS maintenance off", |m| {
        m.contains("STATUS=Serving") && !m.contains("READY")
    });
    assert_eq!(get_html(addr, "/").status, 200);
    // State landed in $STATE_DIRECTORY.
    assert!(state.join("state.json").exists());

    // The log says what was received from systemd.
    let mut child = guard;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        Signal::SIGTERM,
    )
    .expect("term");
    let st = eventually(T, "exit", || child.0.try_wait().ok().flatten());
    assert!(st.success(), "{st}");
    let mut log = String::new();
    let mut stderr = stderr;
    stderr.read_to_string(&mut log).expect("read log");
    assert!(
        log.contains("http socket") && log.contains("from systemd") && log.contains("name http"),
        "{log}"
    );
    assert!(
        log.contains("control socket") && log.contains("name control"),
        "{log}"
    );
}

#[test]
fn socket_activation_by_name() {
    socket_activated("http:control", false);
}

#[test]
fn socket_activation_by_name_in_the_other_order() {
    socket_activated("control:http", true);
}

#[test]
fn sigterm_drains_in_flight_requests_and_says_stopping() {
    // A slow custom maintenance page keeps a request in flight across SIGTERM.
    let slow = TcpListener::bind("127.0.0.1:0").expect("bind");
    let slow_addr = slow.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in slow.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                std::thread::sleep(Duration::from_millis(1500));
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nslow page",
                );
            });
        }
    });
    let dir = tempfile::tempdir().expect("tmp");
    let mut notify = NotifyRx::new(dir.path());
    let sock = notify.path.display().to_string();
    let mut d = Daemon::start_with(dir, &[], &[("NOTIFY_SOCKET", sock.as_str())]);
    notify.wait_for(T, "READY", |m| m.contains("READY=1"));
    d.ctl_ok(&["maint", "enter", "--url", &format!("http://{slow_addr}/")]);
    let addr = d.addr;
    let inflight = std::thread::spawn(move || get(addr, "/slow"));
    std::thread::sleep(Duration::from_millis(400));
    d.signal(Signal::SIGTERM);
    notify.wait_for(T, "STOPPING=1", |m| m.contains("STOPPING=1"));
    let r = inflight.join().expect("join");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "slow page");
    let st = d.wait_exit(T);
    assert_eq!(st.code(), Some(0), "{}", d.log_text());
    assert!(!d.control.exists(), "own control socket removed on exit");
}

#[test]
fn sighup_reloads_and_a_bad_config_keeps_the_old_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let tpl = dir.path().join("templates");
    std::fs::create_dir_all(&tpl).expect("mkdir");
    let cfg = dir.path().join("kinfra.toml");
    std::fs::write(&cfg, "shutdown_grace = \"2s\"\n").expect("cfg");
    let mut notify = NotifyRx::new(dir.path());
    let sock = notify.path.display().to_string();
    let cfg_s = cfg.display().to_string();
    let d = Daemon::start_with(
        dir,
        &["--config", &cfg_s],
        &[("NOTIFY_SOCKET", sock.as_str())],
    );
    notify.wait_for(T, "READY", |m| m.contains("READY=1"));
    notify.drain();
    let before = notify.seen.len();

    // A good change: templates_dir now overrides the landing page.
    std::fs::write(
        tpl.join("landing.html"),
        "<h1>Custom landing {{ version }}</h1>",
    )
    .expect("tpl");
    std::fs::write(
        &cfg,
        format!(
            "shutdown_grace = \"2s\"\ntemplates_dir = \"{}\"\n",
            tpl.display()
        ),
    )
    .expect("cfg");
    d.signal(Signal::SIGHUP);
    let reloading = notify.wait_for(T, "RELOADING=1", |m| m.contains("RELOADING=1"));
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    let idx = notify
        .seen
        .iter()
        .position(|m| m.contains("RELOADING=1"))
        .expect("pos");
    assert!(idx >= before);
    eventually(T, "READY=1 after RELOADING=1", || {
        notify.drain();
        notify.seen[idx + 1..]
            .iter()
            .any(|m| m.contains("READY=1"))
            .then_some(())
    });
    assert!(get_html(d.addr, "/").text().contains("Custom landing"));

    // A bad change: the old config stays, and the problem is visible.
    std::fs::write(&cfg, "listen = [\"not an address\"]\n").expect("cfg");
    let o = d.ctl(&["reload"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        err.contains("`listen`") && err.contains("kinfra.toml"),
        "{err}"
    );
    notify.wait_for(T, "STATUS with the reload problem", |m| {
        m.contains("reload failed")
    });
    assert!(
        get_html(d.addr, "/").text().contains("Custom landing"),
        "old templates kept"
    );
    let st = d.ctl_ok(&["status"]);
    assert!(st.contains("PROBLEM: reload failed"), "{st}");
    // Fixing it clears the problem.
    std::fs::write(&cfg, "").expect("cfg");
    d.ctl_ok(&["reload"]);
    assert!(!d.ctl_ok(&["status"]).contains("PROBLEM"));
    assert!(get_html(d.addr, "/").text().contains("KInfra is running"));
}

#[test]
fn watchdog_pings_arrive() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut notify = NotifyRx::new(dir.path());
    let sock = notify.path.display().to_string();
    let _d = Daemon::start_with(
        dir,
        &[],
        &[
            ("NOTIFY_SOCKET", sock.as_str()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    eventually(T, "three WATCHDOG=1 pings", || {
        notify.drain();
        (notify
            .seen
            .iter()
            .filter(|m| m.contains("WATCHDOG=1"))
            .count()
            >= 3)
            .then_some(())
    });
}

#[test]
fn watchdog_for_another_pid_is_ignored() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut notify = NotifyRx::new(dir.path());
    let sock = notify.path.display().to_string();
    let _d = Daemon::start_with(
        dir,
        &[],
        &[
            ("NOTIFY_SOCKET", sock.as_str()),
            ("WATCHDOG_USEC", "100000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    notify.wait_for(T, "READY", |m| m.contains("READY=1"));
    std::thread::sleep(Duration::from_millis(500));
    notify.drain();
    assert!(
        !notify.seen.iter().any(|m| m.contains("WATCHDOG=1")),
        "{:?}",
        notify.seen
    );
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

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

fn read_answer(s: &mut UnixStream) -> serde_json::Value {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("len");
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).expect("body");
    serde_json::from_slice(&buf).expect("json")
}

fn hello(s: &mut UnixStream) {
    s.write_all(&frame(br#"{"type":"hello","protocol":1,"client":"test"}"#))
        .expect("w");
    assert_eq!(read_answer(s)["type"], "hello");
}

#[test]
fn hostile_control_input_gets_errors_and_the_daemon_keeps_serving() {
    let d = Daemon::start();
    let connect = || {
        let s = UnixStream::connect(&d.control).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s
    };

    // No hello first.
    let mut s = connect();
    s.write_all(&frame(br#"{"type":"status"}"#)).expect("w");
    assert_eq!(read_answer(&mut s)["code"], "handshake_required");

    // Wrong version.
    let mut s = connect();
    s.write_all(&frame(
        br#"{"type":"hello","protocol":99,"client":"future"}"#,
    ))
    .expect("w");
    let a = read_answer(&mut s);
    assert_eq!(a["code"], "unsupported_version");

    // Garbage, unknown type, wrong field types: errors, and the connection stays usable.
    let mut s = connect();
    hello(&mut s);
    s.write_all(&frame(b"\x00\xffnot json")).expect("w");
    assert_eq!(read_answer(&mut s)["code"], "bad_request");
    s.write_all(&frame(br#"{"type":"format_disk"}"#))
        .expect("w");
    let a = read_answer(&mut s);
    assert_eq!(a["code"], "bad_request");
    assert!(
        a["message"].as_str().expect("msg").contains("format_disk"),
        "{a}"
    );
    s.write_all(&frame(br#"{"no_type":true}"#)).expect("w");
    assert_eq!(read_answer(&mut s)["code"], "bad_request");
    s.write_all(&frame(br#"{"type":"maint_enter","countdown_secs":"soon"}"#))
        .expect("w");
    assert_eq!(read_answer(&mut s)["code"], "bad_request");
    s.write_all(&frame(br#"{"type":"maint_enter","countdown_secs":-10}"#))
        .expect("w");
    assert_eq!(read_answer(&mut s)["code"], "invalid_argument");
    s.write_all(&frame(
        br#"{"type":"maint_enter","url":"file:///etc/passwd"}"#,
    ))
    .expect("w");
    assert_eq!(read_answer(&mut s)["code"], "invalid_argument");
    s.write_all(&frame(br#"{"type":"status"}"#)).expect("w");
    assert_eq!(read_answer(&mut s)["type"], "status");

    // Oversized frame: error, then the connection is closed.
    let mut s = connect();
    hello(&mut s);
    s.write_all(&(10_000_000u32).to_be_bytes()).expect("w");
    assert_eq!(read_answer(&mut s)["code"], "frame_too_large");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty());

    // Error messages that would echo more than one frame holds are cut, not dropped: the
    // connection answers and stays usable. (Each '"' is escaped twice on the way back: once in
    // the message, once in the JSON, so these 60 KB requests would make 120 KB answers.)
    let mut s = connect();
    hello(&mut s);
    let quotes = "\\\"".repeat(30_000);
    for (payload, needle) in [
        (format!(r#"{{"type":"{quotes}"}}"#), "unknown request type"),
        (
            format!(r#"{{"type":"maint_enter","countdown_secs":"{quotes}"}}"#),
            "malformed request",
        ),
    ] {
        assert!(payload.len() < 65_536, "{}", payload.len());
        s.write_all(&frame(payload.as_bytes())).expect("w");
        let a = read_answer(&mut s);
        assert_eq!(a["code"], "bad_request", "{a}");
        let msg = a["message"].as_str().expect("message");
        assert!(msg.starts_with(needle), "{msg:.200}");
        assert!(msg.len() < 4096, "{} bytes", msg.len());
    }
    s.write_all(&frame(br#"{"type":"status"}"#)).expect("w");
    assert_eq!(read_answer(&mut s)["type"], "status");

    // Truncated frame then hang-up, and a silent connection: nothing breaks.
    let mut s = connect();
    s.write_all(&[0, 0, 0, 50, b'{']).expect("w");
    drop(s);
    let _idle = connect();

    // Still serving both doors, and no maintenance was entered by any of it.
    assert_eq!(get(d.addr, "/health").status, 200);
    let st = status_json(&d);
    assert_eq!(st["maintenance"]["isActive"], false);
}

#[test]
fn cli_refuses_bad_values_with_clear_errors() {
    let d = Daemon::start();
    let self_url = format!("http://{}/maint", d.addr);
    let self_localhost = format!("http://localhost:{}/", d.addr.port());
    let self_mapped = format!("http://[::ffff:127.0.0.1]:{}/", d.addr.port());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["maint", "enter", "--countdown", "-1"], "negative"),
        (
            vec!["maint", "enter", "--countdown", "99999999999"],
            "30 day",
        ),
        (vec!["maint", "enter", "--time", "100000"], "30 day"),
        (
            vec!["maint", "enter", "--url", "javascript:alert(1)"],
            "http://",
        ),
        (
            vec!["maint", "enter", "--url", "file:///etc/passwd"],
            "http://",
        ),
        (vec!["maint", "enter", "--url", &self_url], "itself"),
        (vec!["maint", "enter", "--url", &self_localhost], "itself"),
        // An IPv4-mapped IPv6 address is the IPv4 address it maps.
        (vec!["maint", "enter", "--url", &self_mapped], "itself"),
        // Beyond u16: once taken for port 80.
        (
            vec!["maint", "enter", "--url", "http://127.0.0.1:70000/"],
            "port",
        ),
        (
            vec!["maint", "enter", "--url", "http://127.0.0.1:0/"],
            "port",
        ),
        // A name that does not resolve cannot be checked, nor fetched.
        (
            vec!["maint", "enter", "--url", "http://no-such-host.invalid/"],
            "does not resolve",
        ),
        (vec!["maint", "enter", "--target", "api"], "unknown route"),
        (
            vec!["maint", "enter", "--message", "bell\u{7}"],
            "control characters",
        ),
    ];
    for (args, needle) in cases {
        let o = d.ctl(&args);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    // Usage errors exit 2.
    assert_eq!(
        d.ctl(&["maint", "enter", "--countdown", "ten"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(d.ctl(&["frobnicate"]).status.code(), Some(2));
    // --json errors are JSON on stdout.
    let o = d.ctl(&["--json", "maint", "enter", "--countdown", "-1"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json error");
    assert_eq!(j["error"]["code"], "invalid_argument");
    assert_eq!(
        get(d.addr, "/api/maintenance/status").json()["isActive"],
        false
    );

    // Unreachable daemon: exit 3, one line naming where it looked and what to try.
    let o = Command::new(kinfractl())
        .args(["--socket", "/nonexistent/kinfra.sock", "status"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("/nonexistent/kinfra.sock") && err.contains("systemctl status kinfra"),
        "{err}"
    );
    // KINFRA_SOCKET is honoured.
    let o = Command::new(kinfractl())
        .env("KINFRA_SOCKET", &d.control)
        .arg("status")
        .output()
        .expect("run");
    assert!(o.status.success());
}

#[test]
fn http_api_needs_the_token_and_validates_input() {
    let d = Daemon::start();
    let token = d.token();
    assert_eq!(token.len(), 64);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(d.state_dir.join("admin-token"))
            .expect("meta")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let auth = format!("Bearer {token}");
    let post = |body: &str, auth: Option<&str>| {
        let mut h = vec![("Content-Type", "application/json")];
        if let Some(a) = auth {
            h.push(("Authorization", a));
        }
        request(
            d.addr,
            "POST",
            "/api/maintenance/status",
            &h,
            body.as_bytes(),
        )
        .expect("post")
    };
    let r = post(r#"{"isActive":true}"#, None);
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    assert_eq!(
        post(r#"{"isActive":true}"#, Some("Bearer wrong")).status,
        401
    );
    assert_eq!(
        post(r#"{"message":"x"}"#, Some(&auth)).status,
        409,
        "update while inactive"
    );
    assert_eq!(post("{not json", Some(&auth)).status, 400);
    assert_eq!(
        post(r#"{"isActive":true,"countdown":-5}"#, Some(&auth)).status,
        400
    );
    assert_eq!(
        post(r#"{"isActive":true,"bogus":1}"#, Some(&auth)).status,
        400
    );
    assert_eq!(
        post(
            r#"{"isActive":true,"maintenancePageUrl":"javascript:x"}"#,
            Some(&auth)
        )
        .status,
        400
    );
    // The HTTP API validates a page URL as kinfractl does.
    for url in [
        "http://127.0.0.1:70000/".to_string(),
        "http://no-such-host.invalid/".to_string(),
        format!("http://[::ffff:127.0.0.1]:{}/", d.addr.port()),
    ] {
        let body = serde_json::json!({"isActive": true, "maintenancePageUrl": url}).to_string();
        let r = post(&body, Some(&auth));
        assert_eq!(r.status, 400, "{url}: {}", r.text());
        assert_eq!(
            r.json()["error"]["code"],
            "invalid_argument",
            "{}",
            r.text()
        );
    }
    assert_eq!(
        get(d.addr, "/api/maintenance/status").json()["isActive"],
        false,
        "nothing changed"
    );
    let big = format!(r#"{{"isActive":true,"message":"{}"}}"#, "x".repeat(100_000));
    assert_eq!(post(&big, Some(&auth)).status, 413);

    let r = post(
        r#"{"isActive":true,"message":"Via API","currentIssue":"Task","countdown":300}"#,
        Some(&auth),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["success"], true);
    for key in [
        "isActive",
        "message",
        "currentIssue",
        "countdown",
        "startTime",
        "estimatedCompletion",
    ] {
        assert!(j["state"].get(key).is_some(), "state lacks {key}: {j}");
    }
    assert_eq!(j["state"]["message"], "Via API");
    let eta = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("now")
        .as_millis() as u64)
        + 120_000;
    let r = post(&format!(r#"{{"estimatedCompletion":{eta}}}"#), Some(&auth));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["state"]["estimatedCompletion"], eta);
    assert_eq!(
        post(r#"{"estimatedCompletion":1000}"#, Some(&auth)).status,
        400,
        "past ETA"
    );
    assert_eq!(post(r#"{"isActive":false}"#, Some(&auth)).status, 200);
    assert_eq!(
        get(d.addr, "/api/maintenance/status").json()["isActive"],
        false
    );

    let h = get(d.addr, "/health").json();
    assert_eq!(h["status"], "ok");
    assert!(h["uptime"].as_f64().is_some() && h["connections"].as_u64().is_some());
    assert_eq!(get(d.addr, "/api/nope").status, 404);
}

/// A tiny upstream that records request lines and answers 200 with its own page.
fn custom_page_server() -> (
    SocketAddr,
    Arc<Mutex<Vec<String>>>,
    std::sync::mpsc::Sender<()>,
) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    l.set_nonblocking(true).expect("nb");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        loop {
            if stop_rx.try_recv().is_ok() {
                return;
            }
            match l.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).expect("blocking");
                    let mut buf = vec![0u8; 8192];
                    let n = s.read(&mut buf).unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]).to_string();
                    seen2.lock().expect("lock").push(req);
                    let body = "<h1>Our own maintenance page</h1>";
                    let _ = s.write_all(
                    format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes(),
                );
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    (addr, seen, stop_tx)
}

#[test]
fn custom_maintenance_url_is_proxied_and_falls_back_when_down() {
    let d = Daemon::start();
    let (up, seen, stop) = custom_page_server();
    d.ctl_ok(&[
        "maint",
        "enter",
        "--url",
        &format!("http://{up}/maintenance.html?lang=en"),
        "--countdown",
        "120",
    ]);
    let r = get_html(d.addr, "/shop/cart");
    assert_eq!(r.status, 200, "the custom page's own status is kept");
    assert_eq!(r.header("x-maintenance-mode"), Some("true"));
    assert!(r.header("retry-after").is_some());
    assert!(r.text().contains("Our own maintenance page"));
    // A sub-resource keeps its path on the custom page's origin.
    let _ = get(d.addr, "/static/site.css");
    {
        let seen = seen.lock().expect("lock");
        assert!(
            seen[0].starts_with("GET /maintenance.html?lang=en HTTP/1.1"),
            "{}",
            seen[0]
        );
        assert!(
            seen[0]
                .to_ascii_lowercase()
                .contains("x-maintenance-mode: true")
        );
        assert!(
            seen[0]
                .to_ascii_lowercase()
                .contains("x-forwarded-for: 127.0.0.1")
        );
        assert!(
            seen[1].starts_with("GET /static/site.css HTTP/1.1"),
            "{}",
            seen[1]
        );
    }
    let st = get(d.addr, "/api/maintenance/status").json();
    assert_eq!(
        st["maintenancePageUrl"],
        format!("http://{up}/maintenance.html?lang=en")
    );

    // The custom page goes away: visitors get the default page, not an error.
    stop.send(()).expect("stop");
    std::thread::sleep(Duration::from_millis(100));
    let r = eventually(T, "default page after the custom page died", || {
        let r = get_html(d.addr, "/shop/cart");
        (r.status == 503).then_some(r)
    });
    assert_eq!(r.header("x-maintenance-mode"), Some("true"));
    assert!(r.text().contains("id=\"countdown\""));

    // An empty --url switches back to the built-in page.
    d.ctl_ok(&["maint", "enter", "--url", ""]);
    assert_eq!(
        get(d.addr, "/api/maintenance/status").json()["maintenancePageUrl"],
        serde_json::Value::Null
    );
}

#[test]
fn check_config_validates_and_names_the_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "listen = [\"127.0.0.1:9999\"]\nshutdown_grace = \"5s\"\n",
    )
    .expect("w");
    let o = Command::new(KINFRAD)
        .args(["--check-config", "--config"])
        .arg(&good)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("config OK"));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "shutdown_grace = \"forever\"\n").expect("w");
    let o = Command::new(KINFRAD)
        .args(["--check-config", "--config"])
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("`shutdown_grace`"),
        "{err}"
    );
    // A config error at startup: exit 1 with the same clear message.
    let o = Command::new(KINFRAD)
        .arg("--config")
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("`shutdown_grace`"));
    // A missing explicit file is an error, not the embedded default.
    let o = Command::new(KINFRAD)
        .args(["--check-config", "--config", "/nonexistent.toml"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn embedded_default_runs_as_an_unprivileged_user() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: the whole suite already runs unprivileged");
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("SKIP: setpriv missing");
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("mkdir");
    nix::unistd::chown(
        &home,
        Some(nix::unistd::Uid::from_raw(65534)),
        Some(nix::unistd::Gid::from_raw(65534)),
    )
    .expect("chown");
    let mut p = dir.path().to_path_buf();
    // nobody must be able to traverse into the temp dir.
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let port = free_port();
    let mut child = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            KINFRAD,
            "--listen",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .env_clear()
        .env("HOME", &home)
        .env("PATH", "/usr/bin:/bin")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    eventually(T, "unprivileged kinfrad to listen", || {
        if let Ok(Some(st)) = child.try_wait() {
            let mut e = String::new();
            let _ = child.stderr.take().map(|mut s| s.read_to_string(&mut e));
            panic!("exited {st}: {e}");
        }
        std::net::TcpStream::connect(addr).ok()
    });
    assert_eq!(get(addr, "/health").status, 200);
    p.push("home/.local/state/kinfra");
    let sock = p.join("control.sock");
    assert!(p.join("admin-token").exists(), "state dir under $HOME");
    assert!(sock.exists(), "control socket in the state dir");
    let o = Command::new(kinfractl())
        .arg("--socket")
        .arg(&sock)
        .args(["maint", "enter"])
        .output()
        .expect("ctl");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(p.join("state.json").exists());
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    );
    let st = eventually(T, "exit", || child.try_wait().ok().flatten());
    assert!(st.success());
}

fn sh(dir: &std::path::Path, script: &str) {
    let o = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("sh");
    assert!(
        o.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn https_custom_page_verified_against_upstream_ca_file() {
    if Command::new("openssl").arg("version").output().is_err() {
        panic!("openssl is needed for this test (Debian package openssl)");
    }
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path();
    // A private CA and a leaf for 127.0.0.1, as an operator's internal status page would have.
    sh(
        p,
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=KInfra Test CA' 2>/dev/null
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout leaf.key -out leaf.csr -subj '/CN=localhost' 2>/dev/null
         printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext.cnf
         openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem -days 1 -extfile ext.cnf 2>/dev/null
         mkdir -p www && printf '<h1>TLS status page</h1>' > www/maint.html",
    );
    let port = free_port();
    let mut server = Command::new("openssl")
        .args(["s_server", "-quiet", "-WWW", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-cert", "../leaf.pem", "-key", "../leaf.key"])
        .current_dir(p.join("www"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Kill(&mut server);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    eventually(T, "TLS server", || std::net::TcpStream::connect(addr).ok());
    let url = format!("https://127.0.0.1:{port}/maint.html");

    // Without the CA the certificate is not trusted: the default page is served instead.
    let plain = Daemon::start();
    plain.ctl_ok(&["maint", "enter", "--url", &url]);
    let r = get_html(plain.addr, "/");
    assert_eq!(r.status, 503);
    assert!(r.text().contains("id=\"countdown\""));

    let cfg = p.join("kinfra.toml");
    std::fs::write(
        &cfg,
        format!("upstream_ca_file = \"{}\"\n", p.join("ca.pem").display()),
    )
    .expect("cfg");
    let cfg_s = cfg.display().to_string();
    let d = Daemon::start_with(
        tempfile::tempdir().expect("tmp"),
        &["--config", &cfg_s],
        &[],
    );
    d.ctl_ok(&["maint", "enter", "--url", &url]);
    let r = get_html(d.addr, "/anything");
    assert_eq!(r.status, 200, "{}", d.log_text());
    assert!(r.text().contains("TLS status page"));
    assert_eq!(r.header("x-maintenance-mode"), Some("true"));
}

#[test]
fn control_socket_checks_peer_credentials() {
    let Some(dir) = dir_for_other_users("act as other users") else {
        return;
    };
    let cfg = dir.path().join("kinfra.toml");
    std::fs::write(&cfg, "control_group = \"nogroup\"\n").expect("cfg");
    let cfg_s = cfg.display().to_string();
    let d = Daemon::start_with(dir, &["--config", &cfg_s], &[]);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&d.control).expect("meta").permissions(),
    );
    assert_eq!(mode & 0o777, 0o660, "control socket mode");
    // Open the file mode so that only the SO_PEERCRED check stands in the way.
    std::fs::set_permissions(
        &d.control,
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .expect("chmod");
    let as_user = |uid: &str, gid: &str| {
        Command::new("setpriv")
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={gid}"),
                "--clear-groups",
                kinfractl(),
                "--socket",
            ])
            .arg(&d.control)
            .arg("status")
            .output()
            .expect("setpriv")
    };
    let stranger = as_user("12345", "12345");
    assert_eq!(stranger.status.code(), Some(1), "{stranger:?}");
    let err = String::from_utf8_lossy(&stranger.stderr);
    assert!(
        err.contains("permission denied") && err.contains("nogroup"),
        "{err}"
    );
    let member = as_user("12345", "65534");
    assert!(
        member.status.success(),
        "{}",
        String::from_utf8_lossy(&member.stderr)
    );
    assert!(d.log_text().contains("control connection refused"));
}

#[test]
fn idle_keep_alive_connections_close_on_sigterm() {
    let mut d = Daemon::start();
    // Keep-alive connections that carried a request and now sit idle (120 s keep-alive).
    let mut conns: Vec<std::net::TcpStream> = (0..3)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(d.addr).expect("connect");
            let req = format!("GET /health HTTP/1.1\r\nHost: {}\r\n\r\n", d.addr);
            c.write_all(req.as_bytes()).expect("send");
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = c.read(&mut buf).expect("read");
                assert!(n > 0, "closed before answering");
                got.extend_from_slice(&buf[..n]);
            }
            c
        })
        .collect();
    d.signal(Signal::SIGTERM);
    // Well before the keep-alive timeout and the 10 s grace: kinfrad closes the idle
    // connections (EOF within 2 s, while it is still draining) and exits.
    for c in &mut conns {
        c.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut rest = Vec::new();
        let r = c.read_to_end(&mut rest);
        assert!(
            r.is_ok(),
            "an idle connection stayed open after SIGTERM: {r:?}"
        );
    }
    let st = d.wait_exit(Duration::from_secs(8));
    assert!(st.success(), "{st}");
}
