//! End-to-end: the shipped units under a real, throwaway `systemd --user` manager.
//!
//! PID 1 is not systemd on the machines this runs on, but `systemd --user` runs once
//! /run/systemd/system exists. The test (root only) creates that directory if it is missing and
//! removes it afterwards, under a lock file so concurrent runs never pull it from under each
//! other. Everything else lives in a temp dir: HOME, XDG_RUNTIME_DIR (the manager's private
//! control socket, %t), XDG_CONFIG_HOME (units, user.conf) and XDG_STATE_HOME. The service runs
//! with PrivateTmp=yes, so that dir must not lie under /tmp or /var/tmp: it goes under target/,
//! or under /var/lib when the checkout itself is in a temporary directory, and kinfrad then runs
//! from a copy in it (`base_dir`, `service_binary`).
//!
//! `systemctl --user` finds the manager through $XDG_RUNTIME_DIR/systemd/private, a direct
//! connection with no D-Bus daemon involved, so XDG_RUNTIME_DIR is the only variable it needs
//! (no DBUS_SESSION_BUS_ADDRESS). Running as root works: it simply manages root's "user" units.
//!
//! Things learnt the hard way (systemd 252, cgroup v1/hybrid, PID 1 not systemd):
//! - A manager started in the root cgroup treats the whole tree as its own: at startup it moves
//!   *every* process on the machine into /init.scope (name=systemd, unified, and the memory, pids
//!   and cpu hierarchies). So the manager is started in a fresh cgroup of its own
//!   (`<our cgroup>/kinfra-test-PID` in the name=systemd and unified hierarchies); it then only
//!   migrates itself. user.conf turns resource accounting off so it creates no cgroups in the
//!   controller hierarchies. Teardown kills whatever is left in that cgroup and removes it.
//! - As root, the user manager uses /run/systemd for its own scratch files (unit-root,
//!   systemd-units-load, inaccessible/...): entries of /run/systemd that the test's manager
//!   created are removed at teardown (the list from before is kept in a marker file, so a
//!   crashed run is cleaned up by the next one).
//! - ProtectKernelTunables= and ProtectKernelLogs= mask files with nodes from
//!   /run/systemd/inaccessible, which only a system manager creates: the service fails with
//!   226/NAMESPACE, so the test removes those two lines. SocketGroup=kinfra is removed because the
//!   group need not exist here. Every other hardening line of units/kinfra.service is kept and
//!   applied (a root user manager can: CapabilityBoundingSet, SystemCallFilter, ProtectSystem...).
//! - For a user manager StateDirectory= is $XDG_CONFIG_HOME in systemd 252 (and $XDG_STATE_HOME
//!   in later versions), RuntimeDirectory= is $XDG_RUNTIME_DIR.
//! - RuntimeDirectoryPreserve=no would not visibly delete the directory here: systemd refuses to
//!   rm -rf outside tmpfs, and this temp dir is on disk. The test only shows that with
//!   `yes` the control socket survives a stop and re-activates the service.
//! - The manager logs to /dev/console unless told otherwise (no journal here): its log target
//!   is `null`; kinfrad's output goes to a file in the temp dir (StandardOutput=append:).
//!
//! - journald is not running either: the journal test (journal.rs) starts it by hand when its
//!   socket does not answer, and removes what it created; the service's sandbox gets a fresh
//!   /run here (/run is no mount point), so that test bind-mounts /run/systemd/journal into it.
//!
//! One file a part: the manager's world (manager.rs), the cleanup (cgroups.rs) and the tests
//! (units.rs; journal.rs: events in the journal under their own field names); the harness
//! shared with the other binaries is in tests/common.

#[path = "../common/mod.rs"]
mod common;

mod cgroups;
mod journal;
mod load;
mod manager;
mod restart;
mod units;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cgroups::tracking_hierarchies;

pub const LOCK: &str = "/run/kinfra-test-systemd.lock";
/// Entries of /run/systemd before the test's manager ran (first line `absent` if none).
pub const MARKER: &str = "/run/kinfra-test-systemd.before";
pub const RUN_SYSTEMD: &str = "/run/systemd";
pub const CG_PREFIX: &str = "kinfra-test-";
/// Prefix of the test's directory, made in [`manager::base_dir`].
pub const TMP_PREFIX: &str = "kx-e2e-";
/// Where the test's directory goes when CARGO_TARGET_TMPDIR is hidden from the service: on
/// disk, outside /tmp and /var/tmp, visible under ProtectSystem=strict (read-only is enough).
pub const FALLBACK_BASE: &str = "/var/lib";
/// Short watchdog for the test: kinfrad must ping every second.
pub const WATCHDOG_SECS: u64 = 2;
pub const WAIT: Duration = Duration::from_secs(15);

pub fn manager_binary() -> Option<PathBuf> {
    ["/lib/systemd/systemd", "/usr/lib/systemd/systemd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

pub fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (creates /run/systemd/system)".into());
    }
    if manager_binary().is_none() || which("systemctl").is_none() {
        return Some("systemd is not installed".into());
    }
    if std::fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd") {
        return Some("PID 1 is systemd: a second manager would interfere with it".into());
    }
    if tracking_hierarchies().is_empty() {
        return Some("no writable systemd cgroup hierarchy".into());
    }
    None
}
