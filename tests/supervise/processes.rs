//! Child processes when kinfrad itself goes away: a kill -9 of kinfrad leaves no child, the
//! grandchildren left behind are reaped at the next start, and a second kinfrad on the same
//! state directory leaves the first one's children alone.

use crate::common;
use crate::prelude::*;

#[test]
fn kill_9_of_kinfrad_leaves_no_child() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = server_script(dir.path(), "orphan", 0.0);
    let d = start(dir, &python_service("o", &script), &[]);
    let s = wait_state(&d, "o", "running", |s| s["state"] == "running");
    let pid = pid_of(&s);
    let _dir = d.crash();
    eventually(T, "the child to die with kinfrad", || {
        (!alive(pid)).then_some(())
    });
}

#[test]
fn grandchildren_left_by_a_killed_kinfrad_are_reaped_at_the_next_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = server_script(dir.path(), "parent", 0.0);
    let pidfile = dir.path().join("grandchild.pid");
    let config = format!(
        r#"
[[service]]
name = "g"
command = "sleep 300 & echo $! > {}; exec python3 {script} $PORT"
shell = true
preferred_port = {}
routes = ["/"]
health_check = {{ interval = "200ms" }}
"#,
        pidfile.display(),
        common::free_port()
    );
    let d = start(dir, &config, &[]);
    let s = wait_state(&d, "g", "running", |s| s["state"] == "running");
    let child = pid_of(&s);
    let grandchild: i32 = eventually(T, "the grandchild's pid", || {
        std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|t| t.trim().parse().ok())
    });
    let dir = d.crash();
    eventually(T, "the child to die with kinfrad", || {
        (!alive(child)).then_some(())
    });
    assert!(
        alive(grandchild),
        "kill -9 leaves the grandchild (its group outlives the child)"
    );
    let path = dir.path().join("kinfra.toml").display().to_string();
    let d = Daemon::start_with(dir, &["--config", &path], &[]);
    eventually(T, "the leftover to be reaped", || {
        (!alive(grandchild)).then_some(())
    });
    wait_state(&d, "g", "running again", |s| s["state"] == "running");
    // A graceful stop takes the whole group along, the new grandchild too.
    let second: i32 = eventually(T, "the new grandchild's pid", || {
        std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .filter(|p| *p != grandchild)
    });
    let mut d = d;
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(d.wait_exit(T).success());
    // (A killed process may linger as a zombie until its new parent reaps it.)
    eventually(
        T,
        "SIGTERM to kinfrad to stop its services' whole groups",
        || (!alive(second)).then_some(()),
    );
}

#[test]
fn a_second_kinfrad_on_the_same_state_dir_leaves_the_first_ones_children_alone() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = server_script(dir.path(), "first", 0.0);
    let d = start(dir, &python_service("f", &script), &[]);
    let pid = pid_of(&wait_state(&d, "f", "running", |s| s["state"] == "running"));
    let control = d.dir.path().join("second.sock");
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_kinfrad"))
        .arg("--config")
        .arg(d.dir.path().join("kinfra.toml"))
        .arg("--state-dir")
        .arg(&d.state_dir)
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", common::free_port()))
        .arg("--control-socket")
        .arg(&control)
        .env_remove("NOTIFY_SOCKET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("second kinfrad");
    // Its control socket answers only once its supervisors (and the leftover reaping that
    // comes first) have run.
    eventually(
        T,
        "the second kinfrad to answer on its control socket",
        || {
            std::process::Command::new(common::kinfractl())
                .arg("--socket")
                .arg(&control)
                .arg("status")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|_| ())
        },
    );
    let _ = second.kill();
    let _ = second.wait();
    assert!(
        alive(pid),
        "the first kinfrad's child was killed by the second"
    );
    assert_eq!(status(&d, "f")["state"], "running");
}
