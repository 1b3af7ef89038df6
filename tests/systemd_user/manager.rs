//! The throwaway `systemd --user` manager's world ([`Env`]: its directories, the units generated
//! from units/ for it, systemctl and kinfractl pointed at it) and starting the manager in a
//! cgroup of its own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::cgroups::{Guard, tracking_hierarchies};
use crate::common::{KINFRAD, free_port, kinfractl_at, output_text as text};
use crate::{CG_PREFIX, FALLBACK_BASE, WAIT, WATCHDOG_SECS, which};

/// The throwaway manager's world.
pub struct Env {
    pub dir: PathBuf,
    pub runtime: PathBuf,
    pub config: PathBuf,
    pub state: PathBuf,
    pub log: PathBuf,
    pub control: PathBuf,
    pub addr: SocketAddr,
}

impl Env {
    pub fn new(dir: &Path) -> Env {
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

    pub fn units_dir(&self) -> PathBuf {
        self.config.join("systemd/user")
    }

    /// Add `toml` (e.g. a `[[service]]`) to the end of kinfrad's config file, which
    /// [`write_units`] copied from packaging/kinfra.toml.
    pub fn append_config(&self, toml: &str) {
        let path = self.dir.join("kinfra.toml");
        let mut text = std::fs::read_to_string(&path).expect("read config");
        text.push('\n');
        text.push_str(toml);
        std::fs::write(&path, text).expect("write config");
    }

    pub fn systemctl(&self, args: &[&str]) -> Output {
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

    pub fn systemctl_ok(&self, args: &[&str]) {
        let o = self.systemctl(args);
        assert!(
            o.status.success(),
            "systemctl --user {args:?}: {}\n{}",
            text(&o),
            self.diag()
        );
    }

    pub fn show(&self, unit: &str) -> HashMap<String, String> {
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

    pub fn prop(&self, unit: &str, key: &str) -> String {
        self.show(unit).get(key).cloned().unwrap_or_default()
    }

    /// Wait until `unit`'s property `key` satisfies `pred`.
    pub fn wait_prop(&self, unit: &str, key: &str, what: &str, pred: impl Fn(&str) -> bool) {
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

    pub fn ctl(&self, args: &[&str]) -> Output {
        kinfractl_at(&self.control, args)
    }

    pub fn ctl_ok(&self, args: &[&str]) -> String {
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
    pub fn diag(&self) -> String {
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
pub fn hidden_by_private_tmp(path: &Path) -> bool {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    ["/tmp", "/var/tmp"].iter().any(|t| path.starts_with(t))
}

/// Where the test's directory goes: CARGO_TARGET_TMPDIR (under target/), unless the service
/// could not see it there, then [`FALLBACK_BASE`].
pub fn base_dir() -> PathBuf {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    if hidden_by_private_tmp(&target) {
        PathBuf::from(FALLBACK_BASE)
    } else {
        target
    }
}

/// The kinfrad the unit runs: the built one, or a copy in the test's directory when the service
/// could not see the built one.
pub fn service_binary(env: &Env) -> PathBuf {
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

pub fn rewrite(unit: &str, edits: &[(&str, Option<&str>)]) -> String {
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
pub fn write_units(env: &Env) {
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
pub fn start_manager(env: &Env, guard: &mut Guard, manager: &Path) {
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
