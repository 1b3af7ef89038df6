//! The test: the shipped units under the throwaway manager, from socket activation to a clean
//! stop, with maintenance surviving a stop of the service.

use std::time::{Duration, Instant};

use crate::cgroups::{Guard, cgroup_pids};
use crate::common::{eventually, get};
use crate::manager::{Env, start_manager, write_units};
use crate::{WATCHDOG_SECS, manager_binary, skip_reason};
use nix::sys::signal::kill;
use nix::unistd::Pid;

#[test]
fn units_work_under_a_real_user_manager() {
    if let Some(why) = skip_reason() {
        println!("SKIP systemd_user: {why}");
        return;
    }
    let manager = manager_binary().expect("manager");
    let mut guard = Guard::acquire();
    let env = Env::new(guard.tmp.path());
    write_units(&env);
    start_manager(&env, &mut guard, &manager);

    // Sockets first; the service waits for its first connection.
    env.systemctl_ok(&["start", "kinfra.socket", "kinfra-control.socket"]);
    assert!(env.control.exists(), "control socket not created");
    assert_eq!(env.prop("kinfra.service", "ActiveState"), "inactive");

    // An HTTP request starts kinfrad, which takes the socket systemd passes ("http").
    let health = get(env.addr, "/health");
    assert_eq!(health.status, 200, "{}", health.text());
    assert_eq!(health.json()["status"], "ok");
    env.wait_prop("kinfra.service", "ActiveState", "active", |v| v == "active");
    let started = Instant::now();
    let st = env.show("kinfra.service");
    assert_eq!(st["SubState"], "running", "{st:?}");
    assert!(
        st["StatusText"].contains("maintenance off"),
        "StatusText: {st:?}"
    );
    assert_eq!(st["WatchdogUSec"], format!("{WATCHDOG_SECS}s"));
    let pid = st["MainPID"].clone();
    assert_ne!(pid, "0");

    // Maintenance through the control socket systemd passed ("control").
    env.ctl_ok(&[
        "maint",
        "enter",
        "--message",
        "E2E upgrade window",
        "--countdown",
        "120",
    ]);
    env.wait_prop("kinfra.service", "StatusText", "maintenance on", |v| {
        v.contains("Maintenance ON") && v.contains("E2E upgrade window")
    });
    let r = get(env.addr, "/some/app/path");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("X-Maintenance-Mode"), Some("true"));
    assert!(r.header("Retry-After").is_some(), "{:?}", r.headers);
    let m = get(env.addr, "/api/maintenance/status").json();
    assert_eq!(m["isActive"], true, "{m}");
    assert_eq!(m["message"], "E2E upgrade window", "{m}");
    assert_eq!(get(env.addr, "/health").status, 200);

    // systemctl reload: SIGHUP, RELOADING=1 then READY=1; same process, state kept.
    env.systemctl_ok(&["reload", "kinfra.service"]);
    env.wait_prop(
        "kinfra.service",
        "ActiveState",
        "active after reload",
        |v| v == "active",
    );
    let st = env.show("kinfra.service");
    assert_eq!(st["MainPID"], pid, "reload must not restart: {st:?}");
    assert!(st["StatusText"].contains("Maintenance ON"), "{st:?}");

    // Watchdog honoured: still the same healthy process after more than two intervals.
    let past = Duration::from_secs(2 * WATCHDOG_SECS) + Duration::from_millis(800);
    if let Some(rest) = past.checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    let st = env.show("kinfra.service");
    assert_eq!(st["ActiveState"], "active", "{st:?}\n{}", env.diag());
    assert_eq!(st["MainPID"], pid, "restarted by the watchdog? {st:?}");
    assert_eq!(st["NRestarts"], "0", "{st:?}");

    // A clean stop: SIGTERM, STOPPING=1, exit 0.
    env.systemctl_ok(&["stop", "kinfra.service"]);
    let st = env.show("kinfra.service");
    assert_eq!(st["ActiveState"], "inactive", "{st:?}");
    assert_eq!(st["Result"], "success", "{st:?}\n{}", env.diag());
    assert_eq!(st["ExecMainStatus"], "0", "{st:?}");
    assert_eq!(env.prop("kinfra-control.socket", "ActiveState"), "active");

    // The control socket outlived the service (RuntimeDirectoryPreserve=yes) and a kinfractl
    // call starts kinfrad again, which restores maintenance from its StateDirectory.
    assert!(
        env.control.exists(),
        "control socket vanished with the service"
    );
    let status = env.ctl_ok(&["status"]);
    assert!(
        status.contains("E2E upgrade window"),
        "maintenance not restored: {status}"
    );
    env.wait_prop("kinfra.service", "ActiveState", "re-activated", |v| {
        v == "active"
    });
    assert_ne!(env.prop("kinfra.service", "MainPID"), pid);
    let state_file = ["config", "state"]
        .iter()
        .map(|d| env.dir.join(d).join("kinfra/state.json"))
        .find(|p| p.is_file());
    assert!(state_file.is_some(), "no state.json in the StateDirectory");

    env.ctl_ok(&["maint", "exit"]);
    env.wait_prop("kinfra.service", "StatusText", "maintenance off", |v| {
        v.contains("maintenance off")
    });
    let r = get(env.addr, "/some/app/path");
    assert_ne!(r.status, 503, "still in maintenance: {}", r.text());

    env.systemctl_ok(&[
        "stop",
        "kinfra.service",
        "kinfra.socket",
        "kinfra-control.socket",
    ]);
    assert_eq!(env.prop("kinfra.service", "Result"), "success");
    assert!(
        !env.control.exists(),
        "RemoveOnStop=yes should remove the socket"
    );

    let pids = eventually(Duration::from_secs(5), "no kinfrad left", || {
        let left: std::collections::BTreeSet<i32> =
            guard.cgroups.iter().flat_map(|d| cgroup_pids(d)).collect();
        // Only the manager itself may remain in the cgroup.
        (left.len() <= 1).then_some(left)
    });
    let tmp = guard.tmp.path().to_path_buf();
    drop(guard);
    for p in pids {
        assert!(
            kill(Pid::from_raw(p), None).is_err(),
            "process {p} survived the teardown"
        );
    }
    assert!(!tmp.exists(), "temp dir left behind");
}
