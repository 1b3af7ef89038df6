//! The state directory and `state.json` as kinfrad finds them on disk: values out of range, files
//! that are not regular files, links planted where kinfrad writes, directories others control,
//! and the default location without `$HOME`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(15);

/// Files in `dir` named `state.json.corrupt-*`.
fn kept_aside(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("ls")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.json.corrupt-")
        })
        .map(|e| e.path())
        .collect()
}

/// Run kinfrad on `state_dir` when it is expected to refuse to start: its output once it exited.
/// A kinfrad still running after 10 s started after all: killed, and the test fails.
fn kinfrad_refuses(dir: &Path, state_dir: &Path) -> Output {
    let addr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let child = kinfrad_command(addr, &dir.join("control.sock"), state_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kinfrad");
    let mut child = child;
    let start = Instant::now();
    loop {
        match child.try_wait().expect("try_wait") {
            None if start.elapsed() < T => std::thread::sleep(Duration::from_millis(25)),
            None => {
                let _ = child.kill();
                let o = child.wait_with_output().expect("output");
                panic!(
                    "kinfrad started on {}: {}",
                    state_dir.display(),
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            Some(_) => {
                // Exited; its output is still in the pipes.
                let o = child.wait_with_output().expect("output");
                assert_eq!(
                    o.status.code(),
                    Some(1),
                    "{}",
                    String::from_utf8_lossy(&o.stderr)
                );
                return o;
            }
        }
    }
}

#[test]
fn a_time_past_the_year_9999_is_kept_aside_not_a_crash() {
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("mkdir");
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    // 10000-01-01T00:00:00Z: this panicked in the maintenance page's rendering at start.
    let body = br#"{"version":1,"maintenance":{"message":"far future","start_time_ms":253402300800000,"target":"ALL"}}"#;
    std::fs::write(state.join("state.json"), body).expect("seed");
    let d = Daemon::start_with(dir, &[], &[]);
    let st = d.ctl_ok(&["status"]);
    assert!(
        st.contains("PROBLEM")
            && st.contains("maintenance.start_time_ms")
            && st.contains("kept as"),
        "{st}"
    );
    assert!(d.log_text().contains("state file problem"));
    let kept = kept_aside(&d.state_dir);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(&kept[0]).expect("kept"), body);
    let m = get(d.addr, "/api/maintenance/status").json();
    assert_eq!(m["isActive"], false, "{m}");
    // Serving and accepting changes, which land in a fresh state.json.
    d.ctl_ok(&["maint", "enter", "--message", "fresh start"]);
    assert_eq!(
        get(d.addr, "/api/maintenance/status").json()["message"],
        "fresh start"
    );
    assert_eq!(std::fs::read(&kept[0]).expect("kept"), body);
}

#[test]
fn a_fifo_as_state_file_does_not_hold_up_the_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("mkdir");
    nix::unistd::mkfifo(
        &state.join("state.json"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("mkfifo");
    let started = Instant::now();
    // Daemon::start_with gives up after 15 s; an open() waiting for a FIFO's writer never ends.
    let d = Daemon::start_with(dir, &[], &[]);
    assert!(started.elapsed() < Duration::from_secs(10));
    let st = d.ctl_ok(&["status"]);
    assert!(st.contains("FIFO") && st.contains("kept as"), "{st}");
    let kept = kept_aside(&d.state_dir);
    assert_eq!(kept.len(), 1);
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::symlink_metadata(&kept[0])
            .expect("meta")
            .file_type()
            .is_fifo()
    );
    d.ctl_ok(&["maint", "enter", "--message", "after the fifo"]);
    let meta = std::fs::symlink_metadata(d.state_dir.join("state.json")).expect("meta");
    assert!(meta.file_type().is_file());
}

#[test]
fn a_link_planted_at_the_old_temp_name_is_not_written_through() {
    let d = Daemon::start();
    let victim = d.dir.path().join("victim");
    std::fs::write(&victim, b"precious").expect("victim");
    // Until now the temp file was `.state.json.tmp-<pid of kinfrad>`: anyone who could write the
    // directory could point it anywhere kinfrad may write.
    let planted = d.state_dir.join(format!(".state.json.tmp-{}", d.pid()));
    std::os::unix::fs::symlink(&victim, &planted).expect("ln");
    d.ctl_ok(&["maint", "enter", "--message", "through no link"]);
    assert_eq!(std::fs::read(&victim).expect("victim"), b"precious");
    let state = d.state_dir.join("state.json");
    assert!(
        std::fs::symlink_metadata(&state)
            .expect("meta")
            .file_type()
            .is_file()
    );
    let text = std::fs::read_to_string(&state).expect("state");
    assert!(text.contains("through no link"), "{text}");
    // The planted link is left as it was; no temp file is left behind.
    assert!(
        std::fs::symlink_metadata(&planted)
            .expect("still there")
            .file_type()
            .is_symlink()
    );
    let temps: Vec<String> = std::fs::read_dir(&d.state_dir)
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".state.json.tmp-") && !planted.ends_with(n))
        .collect();
    assert!(temps.is_empty(), "{temps:?}");
}

#[test]
fn a_state_directory_others_can_write_or_own_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("mkdir");
    let me = nix::unistd::geteuid().as_raw();
    let check = |o: &Output, what: &str| {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&state.display().to_string()) && err.contains(what),
            "{err}"
        );
        assert!(
            !state.join("admin-token").exists(),
            "kinfrad wrote into a directory it refused"
        );
    };
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let o = kinfrad_refuses(dir.path(), &state);
    check(&o, "writable by group or others (mode 0777)");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o770)).expect("chmod");
    let o = kinfrad_refuses(dir.path(), &state);
    check(&o, "writable by group or others (mode 0770)");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).expect("chmod");

    // A link to a directory: whoever can change the link decides where kinfrad writes.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&state, &link).expect("ln");
    let o = kinfrad_refuses(dir.path(), &link);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&link.display().to_string()) && err.contains("symbolic link"),
        "{err}"
    );

    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: cannot give the directory to another user");
        return;
    }
    nix::unistd::chown(
        &state,
        Some(nix::unistd::Uid::from_raw(65534)),
        Some(nix::unistd::Gid::from_raw(65534)),
    )
    .expect("chown");
    let o = kinfrad_refuses(dir.path(), &state);
    check(
        &o,
        &format!("owned by uid 65534, not by kinfrad's uid {me}"),
    );
}

#[test]
fn without_home_the_defaults_come_from_the_passwd_entry() {
    let Some(dir) = dir_for_other_users("run as a user without HOME") else {
        return;
    };
    // An empty config file: the built-in defaults, whatever /etc/kinfra holds on this machine.
    let cfg = dir.path().join("kinfra.toml");
    std::fs::write(&cfg, "").expect("cfg");
    let as_user = |uid: u32, prog: &str, args: &[&str]| {
        Command::new("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"))
            .arg("--clear-groups")
            .arg(prog)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .expect("setpriv")
    };
    let cfg_s = cfg.display().to_string();
    let check = ["--config", cfg_s.as_str(), "--check-config"];

    // A user with a passwd entry: its home directory, as if HOME were set.
    let nobody = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(65534))
        .expect("getpwuid")
        .filter(|u| u.dir.is_absolute());
    if let Some(u) = nobody {
        let o = as_user(65534, KINFRAD, &check);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let state = u.dir.join(".local/state/kinfra");
        let sock = state.join("control.sock");
        assert!(
            out.contains(&format!("state directory: {}", state.display())),
            "{out}"
        );
        assert!(
            out.contains(&format!("control socket:  {}", sock.display())),
            "{out}"
        );
        assert!(!out.contains("kinfra-65534"), "{out}");
        // kinfractl looks for the same socket (unless a system kinfrad's socket exists).
        if !Path::new("/run/kinfra/control.sock").exists() {
            let o = as_user(65534, kinfractl(), &["status"]);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(3), "{err}");
            assert!(err.contains(&sock.display().to_string()), "{err}");
        }
    }

    // A uid without a passwd entry and without HOME: no default at all, and both say so.
    let orphan = (40_000..41_000)
        .find(|&u| {
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(u)).is_ok_and(|x| x.is_none())
        })
        .expect("a free uid");
    let o = as_user(orphan, KINFRAD, &check);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no default state directory") && err.contains("HOME"),
        "{err}"
    );
    let tmp_guess = std::env::temp_dir().join(format!("kinfra-{orphan}"));
    assert!(!tmp_guess.exists());
    if !Path::new("/run/kinfra/control.sock").exists() {
        let o = as_user(orphan, kinfractl(), &["status"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("--socket") && err.contains("HOME"), "{err}");
    }
}
