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

mod common;

use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{KINFRAD, eventually, free_port, get, kinfractl};
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const LOCK: &str = "/run/kinfra-test-systemd.lock";
/// Entries of /run/systemd before the test's manager ran (first line `absent` if none).
const MARKER: &str = "/run/kinfra-test-systemd.before";
const RUN_SYSTEMD: &str = "/run/systemd";
const CG_PREFIX: &str = "kinfra-test-";
/// Prefix of the test's directory, made in [`base_dir`].
const TMP_PREFIX: &str = "kx-e2e-";
/// Where the test's directory goes when CARGO_TARGET_TMPDIR is hidden from the service: on
/// disk, outside /tmp and /var/tmp, visible under ProtectSystem=strict (read-only is enough).
const FALLBACK_BASE: &str = "/var/lib";
/// Short watchdog for the test: kinfrad must ping every second.
const WATCHDOG_SECS: u64 = 2;
const WAIT: Duration = Duration::from_secs(15);

fn manager_binary() -> Option<PathBuf> {
    ["/lib/systemd/systemd", "/usr/lib/systemd/systemd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

fn text(o: &Output) -> String {
    format!(
        "exit {}; stdout: {}; stderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout).trim(),
        String::from_utf8_lossy(&o.stderr).trim()
    )
}

/// The cgroup hierarchies a systemd manager tracks processes in, as (mount point, our path).
fn tracking_hierarchies() -> Vec<(PathBuf, String)> {
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
fn cgroup_pids(dir: &Path) -> Vec<i32> {
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
fn remove_cgroup(dir: &Path) -> std::io::Result<()> {
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
fn kill_and_remove_cgroups(dirs: &[PathBuf]) {
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

fn run_systemd_entries() -> Option<Vec<String>> {
    let rd = std::fs::read_dir(RUN_SYSTEMD).ok()?;
    let mut v: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    Some(v)
}

/// Put /run/systemd back to `before` (None: it did not exist).
fn restore_run_systemd(before: &Option<Vec<String>>) {
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
struct Guard {
    manager: Option<Child>,
    cgroups: Vec<PathBuf>,
    run_systemd_before: Option<Vec<String>>,
    /// Dropped after the manager is gone (fields drop after `Drop::drop`).
    tmp: tempfile::TempDir,
    _lock: Flock<File>,
}

impl Guard {
    /// Take the lock, clean up after a crashed earlier run, create /run/systemd/system.
    fn acquire() -> Guard {
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

/// The throwaway manager's world.
struct Env {
    dir: PathBuf,
    runtime: PathBuf,
    config: PathBuf,
    state: PathBuf,
    log: PathBuf,
    control: PathBuf,
    addr: SocketAddr,
}

impl Env {
    fn new(dir: &Path) -> Env {
        let port = free_port();
        let e = Env {
            dir: dir.to_path_buf(),
            runtime: dir.join("run"),
            config: dir.join("config"),
            state: dir.join("state"),
            log: dir.join("kinfrad.log"),
            control: dir.join("run/kinfra/control.sock"),
            addr: format!("127.0.0.1:{port}").parse().expect("addr"),
        };
        for d in [&e.runtime, &e.config, &e.state, &dir.join("home")] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&e.runtime, std::fs::Permissions::from_mode(0o700))
            .expect("chmod runtime dir");
        assert!(
            e.control.as_os_str().len() < 108,
            "control socket path too long: {}",
            e.control.display()
        );
        e
    }

    fn units_dir(&self) -> PathBuf {
        self.config.join("systemd/user")
    }

    fn systemctl(&self, args: &[&str]) -> Output {
        Command::new("systemctl")
            .arg("--user")
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("XDG_RUNTIME_DIR", &self.runtime)
            .env("SYSTEMD_PAGER", "")
            .env("SYSTEMD_COLORS", "0")
            .stdin(Stdio::null())
            .output()
            .expect("run systemctl")
    }

    fn systemctl_ok(&self, args: &[&str]) {
        let o = self.systemctl(args);
        assert!(
            o.status.success(),
            "systemctl --user {args:?}: {}\n{}",
            text(&o),
            self.diag()
        );
    }

    fn show(&self, unit: &str) -> HashMap<String, String> {
        let o = self.systemctl(&[
            "show",
            "-p",
            "ActiveState,SubState,Result,StatusText,MainPID,NRestarts,ExecMainStatus,WatchdogUSec",
            unit,
        ]);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn prop(&self, unit: &str, key: &str) -> String {
        self.show(unit).get(key).cloned().unwrap_or_default()
    }

    /// Wait until `unit`'s property `key` satisfies `pred`.
    fn wait_prop(&self, unit: &str, key: &str, what: &str, pred: impl Fn(&str) -> bool) {
        let start = Instant::now();
        loop {
            let v = self.prop(unit, key);
            if pred(&v) {
                return;
            }
            if start.elapsed() > WAIT {
                panic!("{unit} {key}={v:?}, wanted {what}\n{}", self.diag());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ctl(&self, args: &[&str]) -> Output {
        Command::new(kinfractl())
            .arg("--socket")
            .arg(&self.control)
            .args(args)
            .env_remove("KINFRA_SOCKET")
            .output()
            .expect("run kinfractl")
    }

    fn ctl_ok(&self, args: &[&str]) -> String {
        let o = self.ctl(args);
        assert!(
            o.status.success(),
            "kinfractl {args:?}: {}\n{}",
            text(&o),
            self.diag()
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    /// What to print when something fails.
    fn diag(&self) -> String {
        let st = self.systemctl(&[
            "status",
            "--no-pager",
            "kinfra.service",
            "kinfra.socket",
            "kinfra-control.socket",
        ]);
        format!(
            "--- systemctl --user status\n{}\n--- kinfrad log\n{}",
            String::from_utf8_lossy(&st.stdout),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }
}

/// Would the service not see `path`? With PrivateTmp=yes it gets /tmp and /var/tmp of its own,
/// so a checkout (and its target/) under either is invisible to it: exit status 203/EXEC for
/// the binary, a missing file for the config.
fn hidden_by_private_tmp(path: &Path) -> bool {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    ["/tmp", "/var/tmp"].iter().any(|t| path.starts_with(t))
}

/// Where the test's directory goes: CARGO_TARGET_TMPDIR (under target/), unless the service
/// could not see it there, then [`FALLBACK_BASE`].
fn base_dir() -> PathBuf {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    if hidden_by_private_tmp(&target) {
        PathBuf::from(FALLBACK_BASE)
    } else {
        target
    }
}

/// The kinfrad the unit runs: the built one, or a copy in the test's directory when the service
/// could not see the built one.
fn service_binary(env: &Env) -> PathBuf {
    let built = Path::new(KINFRAD);
    if !hidden_by_private_tmp(built) {
        return built.to_path_buf();
    }
    let copy = env.dir.join("bin/kinfrad");
    std::fs::create_dir_all(env.dir.join("bin")).expect("mkdir bin");
    std::fs::copy(built, &copy).expect("copy kinfrad");
    assert!(
        !hidden_by_private_tmp(&copy),
        "the test's directory {} is hidden from the service too",
        env.dir.display()
    );
    copy
}

fn rewrite(unit: &str, edits: &[(&str, Option<&str>)]) -> String {
    let mut out = String::new();
    for line in unit.lines() {
        match edits.iter().find(|(prefix, _)| line.starts_with(prefix)) {
            Some((_, Some(new))) => out.push_str(new),
            Some((_, None)) => continue,
            None => out.push_str(line),
        }
        out.push('\n');
    }
    for (prefix, _) in edits {
        assert!(
            unit.lines().any(|l| l.starts_with(prefix)),
            "expected a `{prefix}` line in the unit"
        );
    }
    out
}

/// Generate the user units from units/ for this environment.
fn write_units(env: &Env) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |n: &str| std::fs::read_to_string(repo.join("units").join(n)).expect("read unit");
    let dir = env.units_dir();
    std::fs::create_dir_all(&dir).expect("mkdir units");

    let config = env.dir.join("kinfra.toml");
    std::fs::copy(repo.join("packaging/kinfra.toml"), &config).expect("copy config");
    let exec = format!(
        "ExecStart={} --config {}",
        service_binary(env).display(),
        config.display()
    );
    let watchdog = format!("WatchdogSec={WATCHDOG_SECS}s");
    let output = format!("[Service]\nStandardOutput=append:{}", env.log.display());
    let service = rewrite(
        &read("kinfra.service"),
        &[
            ("[Service]", Some(&output)),
            ("ExecStart=", Some(&exec)),
            ("WatchdogSec=", Some(&watchdog)),
            // Need /run/systemd/inaccessible, which only a system manager creates.
            ("ProtectKernelTunables=", None),
            ("ProtectKernelLogs=", None),
        ],
    );
    let listen = format!("ListenStream={}", env.addr);
    let http = rewrite(&read("kinfra.socket"), &[("ListenStream=", Some(&listen))]);
    // %t is $XDG_RUNTIME_DIR: the socket shares %t/kinfra with RuntimeDirectory=kinfra, exactly
    // like /run/kinfra on a real system.
    let control = rewrite(
        &read("kinfra-control.socket"),
        &[
            ("ListenStream=", Some("ListenStream=%t/kinfra/control.sock")),
            // The kinfra group need not exist on the test machine.
            ("SocketGroup=", None),
        ],
    );
    std::fs::write(dir.join("kinfra.service"), service).expect("write");
    std::fs::write(dir.join("kinfra.socket"), http).expect("write");
    std::fs::write(dir.join("kinfra-control.socket"), control).expect("write");
    // The manager's default unit: nothing, so no other user units (dbus, gpg-agent...) start.
    std::fs::write(
        dir.join("kinfra-test.target"),
        "[Unit]\nDescription=kinfra test root\n",
    )
    .expect("write");
    // No accounting: the manager then makes no cgroups in the memory/pids/cpu hierarchies.
    std::fs::write(
        env.config.join("systemd/user.conf"),
        "[Manager]\nDefaultCPUAccounting=no\nDefaultIOAccounting=no\n\
         DefaultMemoryAccounting=no\nDefaultTasksAccounting=no\nDefaultTimeoutStopSec=10s\n",
    )
    .expect("write user.conf");
}

/// Start `systemd --user` in its own cgroup; returns once it is running.
fn start_manager(env: &Env, guard: &mut Guard, manager: &Path) {
    let name = format!("{CG_PREFIX}{}", std::process::id());
    let mut procs = Vec::new();
    for (mount, own) in tracking_hierarchies() {
        let d = PathBuf::from(format!("{}{own}/{name}", mount.display()));
        std::fs::create_dir(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        procs.push(d.join("cgroup.procs").display().to_string());
        guard.cgroups.push(d);
    }
    // The shell moves itself into the cgroup, then becomes the manager. --pdeathsig: if this
    // test process dies without its teardown, the manager still gets SIGTERM and stops kinfrad.
    let mut exec = vec![manager.display().to_string()];
    if let Some(setpriv) = which("setpriv") {
        exec = vec![
            setpriv.display().to_string(),
            "--pdeathsig".into(),
            "TERM".into(),
            "--".into(),
            manager.display().to_string(),
        ];
    }
    exec.extend(["--user".into(), "--unit=kinfra-test.target".into()]);
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(
            "for f in $CG_PROCS; do echo $$ > \"$f\" || exit 97; done; unset CG_PROCS; exec \"$@\"",
        )
        .arg("sh")
        .args(&exec)
        .current_dir(&env.dir)
        .env_clear()
        .env("CG_PROCS", procs.join(" "))
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C.UTF-8")
        .env("HOME", env.dir.join("home"))
        .env("XDG_RUNTIME_DIR", &env.runtime)
        .env("XDG_CONFIG_HOME", &env.config)
        .env("XDG_STATE_HOME", &env.state)
        .env("XDG_DATA_HOME", env.dir.join("data"))
        .env("XDG_CACHE_HOME", env.dir.join("cache"))
        .env("SYSTEMD_LOG_TARGET", "null")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn systemd --user");
    guard.manager = Some(child);

    let start = Instant::now();
    loop {
        if let Some(Ok(Some(st))) = guard.manager.as_mut().map(|m| m.try_wait()) {
            panic!("systemd --user exited early: {st}");
        }
        let o = env.systemctl(&["is-system-running"]);
        let state = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if state == "running" || state == "degraded" {
            return;
        }
        if start.elapsed() > WAIT {
            panic!("systemd --user not running after {WAIT:?}: {}", text(&o));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn skip_reason() -> Option<String> {
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
