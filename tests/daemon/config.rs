//! Configuration from outside: `--check-config` naming the bad key, and the embedded default
//! configuration running kinfrad as an unprivileged user with its state under $HOME.

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use crate::T;
use crate::common::*;
use nix::sys::signal::Signal;

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
    let o = kinfractl_at(&sock, &["maint", "enter"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(p.join("state.json").exists());
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    );
    let st = eventually(T, "exit", || child.try_wait().ok().flatten());
    assert!(st.success());
}
