//! kinfrad as the tests run it: the [`Daemon`] fixture (its own temp dir, state, sockets and
//! log; killed on drop), ways to start it on a configuration, and its status as
//! `/__status__` reports it, waited on instead of slept for.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::http::{Resp, get, request};
use super::python::python_app;
use super::{KINFRAD, eventually, free_port, kinfractl};

/// How long the status waits of the supervisor and dashboard tests may take.
const WAIT: Duration = Duration::from_secs(15);

/// How long the proxy tests' status waits may take.
const T: Duration = Duration::from_secs(10);

/// A kinfrad child process with its own state directory and sockets; killed on drop.
pub struct Daemon {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub control: PathBuf,
    pub state_dir: PathBuf,
    pub log: PathBuf,
}

/// kinfrad listening on `addr`, with its control socket and state directory where given, and
/// none of what systemd would have handed it (so a test run under systemd starts it plain).
pub fn kinfrad_command(addr: SocketAddr, control: &Path, state_dir: &Path) -> Command {
    let mut cmd = Command::new(KINFRAD);
    cmd.arg("--listen")
        .arg(addr.to_string())
        .arg("--control-socket")
        .arg(control)
        .arg("--state-dir")
        .arg(state_dir)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES")
        .env_remove("JOURNAL_STREAM");
    cmd
}

impl Daemon {
    /// Start kinfrad with `--listen`, `--control-socket`, `--state-dir` in a fresh temp dir.
    pub fn start() -> Daemon {
        Self::start_with(tempfile::tempdir().expect("tmp"), &[], &[])
    }

    /// Start in `dir` (reused state), with extra args and env.
    pub fn start_with(dir: tempfile::TempDir, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let control = dir.path().join("control.sock");
        let state_dir = dir.path().join("state");
        let log = dir.path().join(format!("kinfrad-{port}.log"));
        let logf = std::fs::File::create(&log).expect("log file");
        let mut cmd = kinfrad_command(addr, &control, &state_dir);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("dup"))
            .stderr(logf);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn kinfrad");
        let mut d = Daemon {
            child,
            dir,
            addr,
            control,
            state_dir,
            log,
        };
        d.wait_ready();
        d
    }

    pub fn wait_ready(&mut self) {
        let addr = self.addr;
        let control = self.control.clone();
        let log = self.log.clone();
        let child = &mut self.child;
        eventually(Duration::from_secs(15), "kinfrad to listen", || {
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "kinfrad exited early ({st}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            // The control socket must accept, not merely exist: a killed kinfrad leaves its
            // socket file behind, and the new one binds HTTP before it replaces that file.
            (TcpStream::connect(addr).is_ok()
                && std::os::unix::net::UnixStream::connect(&control).is_ok())
            .then_some(())
        });
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        kinfractl_at(&self.control, args)
    }

    /// kinfractl that must succeed; returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let o = self.ctl(args);
        assert!(
            o.status.success(),
            "kinfractl {args:?} failed ({}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    pub fn token(&self) -> String {
        self.ctl_ok(&["token"]).trim().to_string()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).expect("kill");
    }

    /// Wait for exit; returns the status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let child = &mut self.child;
        eventually(timeout, "kinfrad to exit", || {
            child.try_wait().ok().flatten()
        })
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kill -9 and hand back the directory, so a new daemon can reuse the state.
    pub fn crash(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tmp"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kinfractl --json status`, parsed.
pub fn status_json(d: &Daemon) -> Value {
    serde_json::from_str(&d.ctl_ok(&["--json", "status"])).expect("status json")
}

/// kinfractl with `args`, talking to the control socket at `socket` (whatever KINFRA_SOCKET
/// says).
pub fn kinfractl_at(socket: &Path, args: &[&str]) -> Output {
    Command::new(kinfractl())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("KINFRA_SOCKET")
        .output()
        .expect("run kinfractl")
}

/// kinfrad with a supervised `web` (display name `display`) and a url-only `ext`, plus `extra`
/// top-level settings.
pub fn dashboard_daemon(extra: &str, display: &str, banner: &str) -> Daemon {
    let dir = tempfile::tempdir().expect("tmp");
    let script = python_app(dir.path(), banner);
    let config = format!(
        r#"{extra}
[[service]]
name = "web"
display_name = {display:?}
command = ["python3", "{script}", "{{port}}"]
preferred_port = {port}
routes = ["/"]
restart = "never"
health_check = {{ interval = "200ms" }}

[[service]]
name = "ext"
url = "http://127.0.0.1:{dead}"
routes = ["/ext/"]
"#,
        port = free_port(),
        dead = free_port(),
    );
    let d = start_config(dir, &config, &[]);
    wait_service(&d, "web", "running");
    d
}

/// kinfrad on `config` (written to `dir/kinfra.toml`), with `env` added.
pub fn start_config(dir: tempfile::TempDir, config: &str, env: &[(&str, &str)]) -> Daemon {
    let path = dir.path().join("kinfra.toml");
    std::fs::write(&path, config).expect("config");
    let p = path.display().to_string();
    Daemon::start_with(dir, &["--config", &p], env)
}

/// `/__status__?service=NAME`.
pub fn service(d: &Daemon, name: &str) -> serde_json::Value {
    get(d.addr, &format!("/__status__?service={name}")).json()
}

/// The pid of a service's process, from its status.
pub fn pid_of(s: &Value) -> i32 {
    s["pid"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {s}"))
}

/// `/__status__?service=NAME` once its state is `state` (15 s at most).
pub fn wait_service(d: &Daemon, name: &str, state: &str) -> serde_json::Value {
    wait_service_until(d, name, &format!("{name} to be {state}"), WAIT, |s| {
        s["state"] == state
    })
}

/// `/__status__?service=NAME` once it satisfies `pred` (15 s at most; `what` names the wait).
pub fn wait_service_where(
    d: &Daemon,
    name: &str,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_service_until(d, name, what, WAIT, pred)
}

/// `/__status__?service=NAME` once it satisfies `pred`, within `timeout`.
pub fn wait_service_until(
    d: &Daemon,
    name: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    eventually(timeout, what, || {
        let s = service(d, name);
        pred(&s).then_some(s)
    })
}

/// `POST path` to kinfrad with `headers` and `body`.
pub fn post(d: &Daemon, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    request(d.addr, "POST", path, headers, body.as_bytes()).expect("POST")
}

/// Log in to the dashboard through the form; the session cookie's `name=value`.
pub fn login(d: &Daemon) -> String {
    let form = format!("token={}&next=%2F__logs__%2Fweb", d.token());
    let r = post(
        d,
        "/kinfra/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &form,
    );
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/__logs__/web"));
    let c = r
        .header("set-cookie")
        .expect("a session cookie")
        .to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(c.contains(attr), "cookie lacks {attr}: {c}");
    }
    c.split(';').next().expect("name=value").to_string()
}

// ---------------------------------------------------------------------------------------------
// kinfrad in front of test upstreams (the proxy tests).

/// Whether kinfrad's HTTP/1.1 fast path is on for this run: `KINFRA_TEST_FAST_PATH=0` runs the
/// proxy tests against the hyper path (`KINFRA_FAST_PATH=0` on kinfrad); unset means on.
pub fn fast_path() -> bool {
    std::env::var("KINFRA_TEST_FAST_PATH").map_or(true, |v| v != "0")
}

/// Start kinfrad with `config` as its configuration file (fast path as [`fast_path`] says).
pub fn start_proxy(config: &str) -> Daemon {
    let fast = if fast_path() { "1" } else { "0" };
    let d = start_config(
        tempfile::tempdir().expect("tmp"),
        config,
        &[("KINFRA_FAST_PATH", fast)],
    );
    let env = std::fs::read(format!("/proc/{}/environ", d.pid())).expect("kinfrad's environ");
    let want = format!("KINFRA_FAST_PATH={fast}");
    assert!(
        env.split(|b| *b == 0).any(|v| v == want.as_bytes()),
        "kinfrad runs without {want}"
    );
    d
}

/// Service `name` as the whole `/__status__` lists it.
pub fn svc_status(d: &Daemon, name: &str) -> Value {
    let r = get(d.addr, "/__status__");
    assert_eq!(r.status, 200, "/__status__: {}", r.text());
    r.json()["services"][name].clone()
}

/// Poll `/__status__` until service `name` satisfies `pred`.
pub fn wait_svc(d: &Daemon, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let s = svc_status(d, name);
        if pred(&s) {
            return s;
        }
        if start.elapsed() > T {
            panic!("timed out after {T:?} waiting for {name} to be {what}; last status: {s}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

pub fn wait_running(d: &Daemon, name: &str) {
    wait_svc(d, name, "running", |s| s["state"] == "running");
}

/// kinfrad still answers its own endpoint and still proxies `path` of a healthy service.
pub fn assert_alive(d: &Daemon, path: &str) {
    let h = get(d.addr, "/health");
    assert_eq!(h.status, 200, "kinfrad /health: {}", h.text());
    let r = get(d.addr, path);
    assert_eq!(r.status, 200, "proxied {path}: {r:?} {}", r.text());
}

/// kinfrad's count of open client connections (its /health says).
pub fn open_connections(d: &Daemon) -> u64 {
    let h = get(d.addr, "/health");
    assert_eq!(h.status, 200, "{}", h.text());
    // The /health request's own connection is counted too.
    h.json()["connections"].as_u64().expect("connections") - 1
}
