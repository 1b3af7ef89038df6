//! Leaving the machine as it was: the test's manager runs in cgroups of its own, killed and
//! removed at teardown, and /run/systemd is put back to what it held before; [`Guard`] holds the
//! global lock and undoes all of it on drop, panics included, or at the next run after a crash.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::manager::base_dir;
use crate::{CG_PREFIX, LOCK, MARKER, RUN_SYSTEMD, TMP_PREFIX};
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The cgroup hierarchies a systemd manager tracks processes in, as (mount point, our path).
pub fn tracking_hierarchies() -> Vec<(PathBuf, String)> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    // Lines are `ID:CONTROLLERS:PATH`; the cgroup2 line is `0::PATH`.
    let path_of = |controllers: &str| {
        own.lines()
            .map(|l| l.splitn(3, ':').collect::<Vec<_>>())
            .find(|f| f.len() == 3 && f[1] == controllers)
            .map(|f| f[2].trim_end_matches('/').to_string())
    };
    let mut out = Vec::new();
    if Path::new("/sys/fs/cgroup/systemd/cgroup.procs").exists() {
        // Legacy or hybrid: name=systemd, plus the cgroup2 "unified" mount in hybrid mode.
        if let Some(p) = path_of("name=systemd") {
            out.push((PathBuf::from("/sys/fs/cgroup/systemd"), p));
        }
        if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists()
            && let Some(p) = path_of("")
        {
            out.push((PathBuf::from("/sys/fs/cgroup/unified"), p));
        }
    } else if Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
        && let Some(p) = path_of("")
    {
        out.push((PathBuf::from("/sys/fs/cgroup"), p));
    }
    out
}

/// All pids in `dir` and its sub-cgroups.
pub fn cgroup_pids(dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    if let Ok(s) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                pids.extend(cgroup_pids(&e.path()));
            }
        }
    }
    pids
}

/// rmdir a cgroup tree bottom-up (cgroupfs only allows rmdir of empty cgroups).
pub fn remove_cgroup(dir: &Path) -> std::io::Result<()> {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&e.path())?;
            }
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Kill everything in these cgroups (only ever processes this test started) and remove them.
pub fn kill_and_remove_cgroups(dirs: &[PathBuf]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids: Vec<i32> = dirs.iter().flat_map(|d| cgroup_pids(d)).collect();
        if pids.is_empty() {
            break;
        }
        for p in &pids {
            let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
        }
        if Instant::now() > deadline {
            eprintln!("systemd_user: processes still in the test cgroup: {pids:?}");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for d in dirs {
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Err(e) = remove_cgroup(d) {
            if Instant::now() > deadline {
                eprintln!("systemd_user: cannot remove cgroup {}: {e}", d.display());
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn run_systemd_entries() -> Option<Vec<String>> {
    let rd = std::fs::read_dir(RUN_SYSTEMD).ok()?;
    let mut v: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    Some(v)
}

/// Put /run/systemd back to `before` (None: it did not exist).
pub fn restore_run_systemd(before: &Option<Vec<String>>) {
    let Some(now) = run_systemd_entries() else {
        return;
    };
    match before {
        None => {
            if let Err(e) = std::fs::remove_dir_all(RUN_SYSTEMD) {
                eprintln!("systemd_user: cannot remove {RUN_SYSTEMD}: {e}");
            }
        }
        Some(before) => {
            for name in now.iter().filter(|n| !before.contains(n)) {
                let p = Path::new(RUN_SYSTEMD).join(name);
                let r = if p.is_dir() && !p.is_symlink() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                if let Err(e) = r {
                    eprintln!("systemd_user: cannot remove {}: {e}", p.display());
                }
            }
        }
    }
}

/// Holds the global lock and undoes everything on drop, panics included.
pub struct Guard {
    pub manager: Option<Child>,
    pub cgroups: Vec<PathBuf>,
    pub run_systemd_before: Option<Vec<String>>,
    /// Dropped after the manager is gone (fields drop after `Drop::drop`).
    pub tmp: tempfile::TempDir,
    pub _lock: Flock<File>,
}

impl Guard {
    /// Take the lock, clean up after a crashed earlier run, create /run/systemd/system.
    pub fn acquire() -> Guard {
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK)
            .expect("open lock file");
        let lock = Flock::lock(f, FlockArg::LockExclusive).expect("flock");

        // A marker means an earlier run died before its teardown: its snapshot is the truth.
        let run_systemd_before = match std::fs::read_to_string(MARKER) {
            Ok(s) if s.lines().next() == Some("absent") => None,
            Ok(s) => Some(s.lines().map(str::to_string).collect()),
            Err(_) => run_systemd_entries(),
        };
        let stale: Vec<PathBuf> = tracking_hierarchies()
            .iter()
            .flat_map(|(mount, own)| {
                std::fs::read_dir(format!("{}{own}", mount.display()))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(CG_PREFIX))
                    .map(|e| e.path())
            })
            .collect();
        kill_and_remove_cgroups(&stale);
        let base = base_dir();
        let base = base.as_path();
        for e in std::fs::read_dir(base).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let tmp = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .tempdir_in(base)
            .expect("tempdir");

        let marker = match &run_systemd_before {
            None => "absent\n".to_string(),
            Some(v) => v.iter().map(|n| format!("{n}\n")).collect(),
        };
        std::fs::write(MARKER, marker).expect("write marker");
        let guard = Guard {
            manager: None,
            cgroups: Vec::new(),
            run_systemd_before,
            tmp,
            _lock: lock,
        };
        std::fs::create_dir_all("/run/systemd/system").expect("create /run/systemd/system");
        guard
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut m) = self.manager.take() {
            // SIGTERM makes a user manager start exit.target: units are stopped, then it exits.
            let _ = kill(Pid::from_raw(m.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = m.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = m.kill();
            let _ = m.wait();
        }
        kill_and_remove_cgroups(&self.cgroups);
        restore_run_systemd(&self.run_systemd_before);
        let _ = std::fs::remove_file(MARKER);
    }
}
