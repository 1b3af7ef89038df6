//! systemd's tools as the tests run them: `systemd-analyze` without the environment systemd would
//! hand kinfrad, and without leaving its stamp file in /run/systemd behind; unit file editing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A command with the environment systemd would have handed kinfrad removed.
pub fn clean(program: &str) -> Command {
    let mut c = Command::new(program);
    for v in [
        "NOTIFY_SOCKET",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "STATE_DIRECTORY",
        "RUNTIME_DIRECTORY",
        "SYSTEMD_COLORS",
    ] {
        c.env_remove(v);
    }
    c.env("SYSTEMD_LOG_COLOR", "0").env("SYSTEMD_PAGER", "");
    c
}

/// Replace the single line starting with `prefix` (panics if there is not exactly one).
pub fn replace_line(unit: &str, prefix: &str, new: &str) -> String {
    let n = unit.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(n, 1, "expected exactly one `{prefix}` line in:\n{unit}");
    let mut out: String = unit
        .lines()
        .map(|l| if l.starts_with(prefix) { new } else { l })
        .collect::<Vec<_>>()
        .join("\n");
    out.push('\n');
    out
}

/// Run `systemd-analyze`. As root it leaves /run/systemd/systemd-units-load behind (a timestamp
/// of its unit loading): remove it again when it was not there before, under the lock
/// tests/systemd_user/ takes for its changes to /run/systemd.
pub fn analyze(dir: &Path, args: &[&str], files: &[PathBuf]) -> Output {
    const STAMP: &str = "/run/systemd/systemd-units-load";
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/run/kinfra-test-systemd.lock")
        .ok()
        .and_then(|f| nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).ok());
    let existed = Path::new(STAMP).exists();
    let o = clean("systemd-analyze")
        .current_dir(dir)
        .args(args)
        .args(files)
        .output()
        .expect("run systemd-analyze");
    if !existed && lock.is_some() {
        let _ = std::fs::remove_file(STAMP);
    }
    o
}

pub fn verify(dir: &Path, files: &[PathBuf]) -> Output {
    analyze(dir, &["verify", "--man=no"], files)
}
