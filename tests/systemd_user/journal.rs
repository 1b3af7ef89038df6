//! kinfrad's events in the journal, under the throwaway manager: with `StandardOutput=journal`
//! the manager hands kinfrad a journal stream (JOURNAL_STREAM), kinfrad logs through journald's
//! native socket, and an event's fields arrive under their own names (`SERVICE=`, `EVENT=`,
//! `REASON=`, `FAILURES=`), not `F_SERVICE=`: `journalctl SERVICE=api` finds them.
//!
//! journald is not running on the machines this runs on. [`Journald`] starts
//! /lib/systemd/systemd-journald by hand when its socket does not answer, and at the end stops
//! it and removes what it created (/run/systemd/journal, /run/log/journal, a journal directory
//! under /var/log/journal); a journald that was already running is used and left alone.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use crate::cgroups::Guard;
use crate::common::{eventually, free_port, get};
use crate::manager::{Env, start_manager, write_units};
use crate::{WAIT, manager_binary, skip_reason};

const JOURNALD: &str = "/lib/systemd/systemd-journald";
const SOCKET: &str = "/run/systemd/journal/socket";
/// What journald may create, and the test removes if it did.
const CREATES: &[&str] = &["/run/systemd/journal", "/run/log/journal", "/run/log"];

/// journald for the test: the running one, or one started here and cleaned up on drop.
struct Journald {
    child: Option<Child>,
    created: Vec<PathBuf>,
    /// What /var/log/journal held before it started.
    var_before: Vec<PathBuf>,
}

fn answers() -> bool {
    UnixDatagram::unbound().is_ok_and(|s| s.connect(SOCKET).is_ok())
}

/// Entries of /var/log/journal (journald writes there once it exists and is flushed).
fn var_journals() -> Vec<PathBuf> {
    std::fs::read_dir("/var/log/journal")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect()
}

impl Journald {
    /// `None` (with the reason printed) when there is none to be had.
    fn ensure() -> Option<Journald> {
        if answers() {
            return Some(Journald {
                child: None,
                created: Vec::new(),
                var_before: Vec::new(),
            });
        }
        if !Path::new(JOURNALD).is_file() {
            println!("SKIP journal: {JOURNALD} is not installed");
            return None;
        }
        let var_before = var_journals();
        let created: Vec<PathBuf> = CREATES
            .iter()
            .map(PathBuf::from)
            .filter(|p| !p.exists())
            .collect();
        let child = Command::new(JOURNALD)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start systemd-journald");
        // Dropped (stopped, cleaned up) also when the wait below fails.
        let j = Journald {
            child: Some(child),
            created,
            var_before,
        };
        eventually(WAIT, "journald's socket", || answers().then_some(()));
        Some(j)
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = eventually(Duration::from_secs(5), "journald to stop", || {
            c.try_wait().ok().flatten()
        });
        let _ = c.kill();
        let _ = c.wait();
        // Journal files it made under /var/log/journal (once flushed there).
        let before = &self.var_before;
        self.created
            .extend(var_journals().into_iter().filter(|p| !before.contains(p)));
        for p in &self.created {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// `journalctl -o json` entries matching `matches` (FIELD=VALUE).
fn journal(matches: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new("journalctl")
        .args(["--no-pager", "-o", "json"])
        .args(matches)
        .output()
        .expect("run journalctl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn events_reach_the_journal_under_their_own_field_names() {
    if let Some(why) = skip_reason() {
        println!("SKIP systemd_user journal: {why}");
        return;
    }
    let manager = manager_binary().expect("manager");
    let mut guard = Guard::acquire();
    let Some(journald) = Journald::ensure() else {
        return;
    };
    let env = Env::new(guard.tmp.path());
    write_units(&env);
    // This run's own service name: a journald that was running keeps older runs' entries.
    let name = format!("ev-{}-{}", std::process::id(), free_port());
    env.append_config(&format!(
        "[[service]]\nname = \"{name}\"\nurl = \"http://127.0.0.1:{}\"\nroutes = [\"/ev/\"]\n\
         health_check = {{ interval = \"200ms\", grace = \"0s\" }}\n",
        free_port()
    ));
    // The journal for output and logs. Here /run is no mount point of its own, and the
    // service's sandbox gets a fresh /run without journald's sockets; on a real system /run is
    // a tmpfs the sandbox keeps. The bind mount gives the sandbox what a real /run has.
    let unit = env.units_dir().join("kinfra.service");
    let text = std::fs::read_to_string(&unit).expect("unit");
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("StandardOutput=") {
                "StandardOutput=journal\nStandardError=journal\nBindReadOnlyPaths=/run/systemd/journal".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&unit, text).expect("write unit");
    start_manager(&env, &mut guard, &manager);
    env.systemctl_ok(&["start", "kinfra.socket", "kinfra-control.socket"]);
    assert_eq!(get(env.addr, "/health").status, 200);

    // Its upstream is not there: health_down, with the probe's reason, in the journal.
    let field = format!("SERVICE={name}");
    let found = eventually(WAIT, "the health_down event in the journal", || {
        journal(&[&field, "EVENT=health_down"]).into_iter().next()
    });
    assert_eq!(found["SYSLOG_IDENTIFIER"], "kinfrad", "{found}");
    assert!(
        found["REASON"]
            .as_str()
            .is_some_and(|r| r.to_ascii_lowercase().contains("refused")),
        "{found}"
    );
    assert!(found["FAILURES"].is_string(), "{found}");
    assert!(found.get("F_SERVICE").is_none(), "prefixed fields: {found}");
    assert!(
        found["MESSAGE"]
            .as_str()
            .is_some_and(|m| m.contains("unhealthy")),
        "{found}"
    );
    env.systemctl_ok(&[
        "stop",
        "kinfra.service",
        "kinfra.socket",
        "kinfra-control.socket",
    ]);
    drop(journald);
    drop(guard);
}
