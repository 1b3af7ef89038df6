//! Shared helpers for integration tests: run the real binaries, speak raw HTTP/1.1 over loopback,
//! receive sd_notify datagrams, and wait for conditions instead of sleeping.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const KINFRAD: &str = env!("CARGO_BIN_EXE_kinfrad");

/// Poll `f` until it returns `Some`, or panic with `what` after `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A free loopback TCP port (bound then released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind :0");
    l.local_addr().expect("addr").port()
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Send raw bytes and read the whole answer (the request should say `Connection: close`).
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    s.write_all(bytes)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

/// Parse an HTTP/1.1 response with Content-Length or chunked body.
pub fn parse_response(buf: &[u8]) -> Option<Resp> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &buf[end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        let mut body = Vec::new();
        let mut r = rest;
        loop {
            let nl = r.windows(2).position(|w| w == b"\r\n")?;
            let size = usize::from_str_radix(String::from_utf8_lossy(&r[..nl]).trim(), 16).ok()?;
            r = &r[nl + 2..];
            if size == 0 {
                break;
            }
            body.extend_from_slice(&r[..size]);
            r = &r[size + 2..];
        }
        body
    } else {
        rest.to_vec()
    };
    Some(Resp {
        status,
        headers,
        body,
    })
}

/// One HTTP request over a fresh connection.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Resp> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    let out = raw(addr, &bytes)?;
    parse_response(&out).ok_or_else(|| {
        std::io::Error::other(format!(
            "unparseable response: {:?}",
            String::from_utf8_lossy(&out)
        ))
    })
}

pub fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, &[], b"").unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

pub fn get_html(addr: SocketAddr, path: &str) -> Resp {
    request(
        addr,
        "GET",
        path,
        &[("Accept", "text/html,application/xhtml+xml")],
        b"",
    )
    .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// A bound NOTIFY_SOCKET receiver.
pub struct NotifyRx {
    pub path: PathBuf,
    sock: UnixDatagram,
    pub seen: Vec<String>,
}

impl NotifyRx {
    pub fn new(dir: &Path) -> NotifyRx {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        NotifyRx {
            path,
            sock,
            seen: Vec::new(),
        }
    }

    /// Read datagrams until one satisfies `pred`; returns it. All are kept in `seen`.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        if let Some(m) = self.seen.iter().find(|m| pred(m)) {
            return m.clone();
        }
        let start = Instant::now();
        let mut buf = vec![0u8; 8192];
        while start.elapsed() < timeout {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).to_string();
                self.seen.push(m.clone());
                if pred(&m) {
                    return m;
                }
            }
        }
        panic!(
            "no sd_notify message for {what} within {timeout:?}; seen: {:?}",
            self.seen
        );
    }

    /// Drain what has arrived so far (without waiting: with a 100 ms read timeout, a sender
    /// pinging every 100 ms would keep a blocking drain from ever returning).
    pub fn drain(&mut self) {
        let mut buf = vec![0u8; 8192];
        self.sock.set_nonblocking(true).expect("nonblocking");
        while let Ok(n) = self.sock.recv(&mut buf) {
            self.seen
                .push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
        self.sock.set_nonblocking(false).expect("blocking");
    }
}

/// A kinfrad child process with its own state directory and sockets; killed on drop.
pub struct Daemon {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub control: PathBuf,
    pub state_dir: PathBuf,
    pub log: PathBuf,
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
        let mut cmd = Command::new(KINFRAD);
        cmd.arg("--listen")
            .arg(addr.to_string())
            .arg("--control-socket")
            .arg(&control)
            .arg("--state-dir")
            .arg(&state_dir)
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES")
            .env_remove("JOURNAL_STREAM")
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
        Command::new(kinfractl())
            .arg("--socket")
            .arg(&self.control)
            .args(args)
            .output()
            .expect("run kinfractl")
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

/// A Server-Sent Events subscriber (`GET path` on its own connection), read by a thread.
pub struct Sse {
    events: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
    head: std::sync::Arc<std::sync::Mutex<String>>,
    stream: TcpStream,
}

impl Sse {
    pub fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Sse {
        let mut stream = TcpStream::connect(addr).expect("connect");
        let mut req =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).expect("send");
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let head = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut r = stream.try_clone().expect("clone");
        let (ev, hd) = (events.clone(), head.clone());
        std::thread::spawn(move || {
            let mut text = String::new();
            let mut buf = [0u8; 65536];
            let mut in_body = false;
            let mut event = String::new();
            loop {
                let n = match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                text.push_str(&String::from_utf8_lossy(&buf[..n]));
                if !in_body {
                    let Some(i) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    *hd.lock().expect("lock") = text[..i].to_string();
                    text.drain(..i + 4);
                    in_body = true;
                }
                // Whole lines only; chunk-size lines never start with "event:" or "data:".
                while let Some(i) = text.find('\n') {
                    let line: String = text.drain(..=i).collect();
                    let line = line.trim_end_matches(['\r', '\n']);
                    if let Some(e) = line.strip_prefix("event: ") {
                        event = e.to_string();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        ev.lock()
                            .expect("lock")
                            .push((event.clone(), d.to_string()));
                    }
                }
            }
        });
        Sse {
            events,
            head,
            stream,
        }
    }

    /// The response head (status line and headers), once received.
    pub fn head(&self) -> String {
        self.head.lock().expect("lock").clone()
    }

    /// Every `(event, data)` so far.
    pub fn events(&self) -> Vec<(String, String)> {
        self.events.lock().expect("lock").clone()
    }

    /// The first event named `name` after the first `skip` events whose data satisfies `f`.
    pub fn wait(
        &self,
        timeout: Duration,
        name: &str,
        skip: usize,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        eventually(timeout, &format!("a {name} event"), || {
            self.events()
                .into_iter()
                .skip(skip)
                .filter(|(e, _)| e == name)
                .filter_map(|(_, d)| serde_json::from_str(&d).ok())
                .find(|v| f(v))
        })
    }

    pub fn len(&self) -> usize {
        self.events.lock().expect("lock").len()
    }

    pub fn close(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// A Python HTTP service that prints `banner` at start and a line per request.
pub fn python_app(dir: &Path, banner: &str) -> String {
    let path = dir.join("app.py");
    std::fs::write(
        &path,
        format!(
            r#"
import http.server, os, sys
print({banner:?}, flush=True)
print("INFO listening on", os.environ["PORT"], flush=True)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        print("INFO served", self.path, flush=True)
        body = b"app pid=%d" % os.getpid()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#
        ),
    )
    .expect("write app");
    path.display().to_string()
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

/// `/__status__?service=NAME` once its state is `state` (15 s at most).
pub fn wait_service(d: &Daemon, name: &str, state: &str) -> serde_json::Value {
    eventually(
        Duration::from_secs(15),
        &format!("{name} to be {state}"),
        || {
            let s = service(d, name);
            (s["state"] == state).then_some(s)
        },
    )
}

/// `GET target` on a fresh connection with `Host: host` (any text, as a client could send it)
/// and `Connection: close`; `target` may be absolute-form (`http://name/path`).
pub fn get_with_host(addr: SocketAddr, target: &str, host: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let out = raw(addr, req.as_bytes()).unwrap_or_else(|e| panic!("GET {target} ({host}): {e}"));
    parse_response(&out).unwrap_or_else(|| {
        panic!(
            "GET {target} ({host}): unparseable response {:?}",
            String::from_utf8_lossy(&out)
        )
    })
}

/// kinfractl, as built from this checkout: the path next to [`KINFRAD`] (same target directory
/// and profile). kinfractl is another package of the workspace (it depends on kinfra-proto, not
/// on this one), and cargo sets `CARGO_BIN_EXE_*` only for the test's own package and builds only
/// that package's binaries for `cargo test --test NAME`. So the first call in each test binary
/// has cargo build it (`cargo build -p kinfractl --locked`, a no-op when it is up to date): never
/// a missing or stale kinfractl, however the tests were started.
pub fn kinfractl() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(build_kinfractl)
}

fn build_kinfractl() -> String {
    let kinfrad = Path::new(KINFRAD);
    let profile_dir = kinfrad.parent().expect("kinfrad has a directory");
    // The target directory is where cargo left its CACHEDIR.TAG, above the profile directory:
    // target/debug, or target/<triple>/debug with --target.
    let target_dir = profile_dir
        .ancestors()
        .find(|d| d.join("CACHEDIR.TAG").is_file())
        .unwrap_or_else(|| profile_dir.parent().expect("a target directory"));
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut build = Command::new(cargo);
    build
        .args([
            "build",
            "--locked",
            "--quiet",
            "--message-format=json-render-diagnostics",
        ])
        .args([
            "-p",
            "kinfractl",
            "--bin",
            "kinfractl",
            "--profile",
            profile,
        ])
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    if let Some(triple) = profile_dir
        .parent()
        .filter(|d| *d != target_dir)
        .and_then(|d| d.file_name())
    {
        build.arg("--target").arg(triple);
    }
    let out = build
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo to build kinfractl");
    assert!(
        out.status.success(),
        "cargo build -p kinfractl: {}",
        out.status
    );
    // cargo names the executable it built (or found up to date) in its JSON messages.
    let built = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "kinfractl")
        .and_then(|m| m["executable"].as_str().map(String::from))
        .expect("cargo names the kinfractl executable");
    let beside = profile_dir.join("kinfractl");
    assert_eq!(
        Path::new(&built),
        beside,
        "kinfractl was built elsewhere than beside kinfrad"
    );
    built
}

/// A temporary directory other users may enter (0755), when this run can act as them (root,
/// and `setpriv` present); otherwise `None`, after printing `SKIP: needs root and setpriv to
/// {why}`.
pub fn dir_for_other_users(why: &str) -> Option<tempfile::TempDir> {
    if !nix::unistd::geteuid().is_root()
        || Command::new("setpriv").arg("--version").output().is_err()
    {
        eprintln!("SKIP: needs root and setpriv to {why}");
        return None;
    }
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    Some(dir)
}
