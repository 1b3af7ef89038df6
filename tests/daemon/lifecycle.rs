//! kinfrad's life under systemd: socket activation by name (in either order), sd_notify
//! (READY, STATUS, RELOADING, STOPPING), SIGHUP reloads that keep the old configuration when the
//! new one is bad, SIGTERM draining in-flight requests and closing idle connections, and the
//! watchdog.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::T;
use crate::common::*;
use nix::sys::signal::Signal;

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
