//! `/metrics` for services kinfrad runs: every end of a child process is counted as an exit,
//! every start after one (a crash's, or an operator's restart) as a restart.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::prelude::*;

fn counts(d: &Daemon) -> (f64, f64) {
    let m = scrape(d.addr);
    (
        m.value("kinfra_supervised_restarts_total", &[("service", "svc")]),
        m.value("kinfra_supervised_exits_total", &[("service", "svc")]),
    )
}

#[test]
fn restarts_and_exits_of_a_supervised_service_are_counted() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = server_script(dir.path(), "svc", 0.0);
    let d = start(dir, &python_service("svc", &script), &[]);
    let s = wait_state(&d, "svc", "running", |s| s["state"] == "running");
    assert_eq!(counts(&d), (0.0, 0.0));
    let first = pid_of(&s);

    // It crashes (killed): one exit, and kinfrad starts it again.
    kill(Pid::from_raw(first), Signal::SIGKILL).expect("kill the child");
    let s = wait_state(&d, "svc", "running again", |s| {
        s["state"] == "running" && pid_of(s) != first
    });
    assert_eq!(counts(&d), (1.0, 1.0));

    // An operator's restart: the old process ends, a new one starts.
    let second = pid_of(&s);
    d.ctl_ok(&["restart", "svc"]);
    wait_state(&d, "svc", "a new process", |s| {
        s["state"] == "running" && pid_of(s) != second
    });
    assert_eq!(counts(&d), (2.0, 2.0));
    // A stop ends it without a restart.
    d.ctl_ok(&["stop", "svc"]);
    wait_state(&d, "svc", "stopped", |s| s["state"] == "stopped");
    assert_eq!(counts(&d), (2.0, 3.0));
}
