//! A minimal W3C WebDriver client for the browser tests: starts `chromedriver` on a free loopback
//! port, drives one headless Chromium session over plain HTTP/1.1 (the harness's raw client),
//! and tears everything down again (session, chromedriver and every process in its process
//! group).
// Shared by several test binaries, each using a part of it.
#![allow(dead_code)]

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Resp, eventually, free_port, request_bytes, send_and_read};

/// One browser at a time: the machines running the suite may have two CPUs, and the timing
/// assertions (live updates within a few seconds) should not depend on the test thread count.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

const SKIP_ENV: &str = "KINFRA_SKIP_BROWSER";

/// Find an executable: `$env` if set (and it exists), else the first of `candidates` that
/// exists, else `name` on `PATH`.
fn find_exe(env: &str, name: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let fixed = candidates.iter().map(PathBuf::from);
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect())
        .unwrap_or_default();
    fixed.chain(on_path).find(|p| p.is_file())
}

pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: Option<String>,
    profile: tempfile::TempDir,
    log: PathBuf,
    _one: MutexGuard<'static, ()>,
}

impl Browser {
    /// Start chromedriver + headless Chromium with a `width`x`height` desktop window. When
    /// Chromium or ChromeDriver is missing this fails the test, unless `KINFRA_SKIP_BROWSER=1`
    /// (then `None`).
    pub fn launch(width: u32, height: u32) -> Option<Browser> {
        Self::launch_with(width, height, false)
    }

    /// Like `launch`, but as a phone: ChromeDriver's mobile emulation with a `width`x`height`
    /// CSS-pixel screen (a headless window cannot be narrower than 500 px).
    pub fn launch_phone(width: u32, height: u32) -> Option<Browser> {
        Self::launch_with(width, height, true)
    }

    fn launch_with(width: u32, height: u32, phone: bool) -> Option<Browser> {
        let chromium = find_exe("KINFRA_CHROMIUM", "chromium", &["/usr/bin/chromium"]);
        let driver = find_exe(
            "KINFRA_CHROMEDRIVER",
            "chromedriver",
            &["/usr/bin/chromedriver"],
        );
        let (Some(chromium), Some(driver)) = (chromium.clone(), driver.clone()) else {
            let missing = [
                ("chromium", chromium.is_none()),
                ("chromedriver", driver.is_none()),
            ]
            .iter()
            .filter(|(_, m)| *m)
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(" and ");
            if std::env::var(SKIP_ENV).as_deref() == Ok("1") {
                eprintln!("SKIPPED browser test: {missing} not installed and {SKIP_ENV}=1");
                return None;
            }
            panic!(
                "{missing} not found: the browser tests need Chromium (/usr/bin/chromium) and \
                 ChromeDriver (/usr/bin/chromedriver). Run scripts/test.sh, which installs the \
                 Debian packages `chromium` and `chromium-driver` (as CI does), or set \
                 {SKIP_ENV}=1 to skip these tests"
            );
        };
        let one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
        let profile = tempfile::tempdir().expect("profile dir");
        let log = profile.path().join("chromedriver.log");
        let mut last_err = String::new();
        for _ in 0..3 {
            match start_driver(&driver, &log) {
                Ok((child, addr)) => {
                    let mut b = Browser {
                        driver: child,
                        addr,
                        session: None,
                        profile,
                        log,
                        _one: one,
                    };
                    b.new_session(&chromium, width, height, phone);
                    return Some(b);
                }
                // Most likely the port was taken in between: try another one.
                Err(e) => last_err = e,
            }
        }
        panic!("chromedriver did not become ready: {last_err}");
    }

    fn new_session(&mut self, chromium: &Path, width: u32, height: u32, phone: bool) {
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            format!(
                "--user-data-dir={}",
                self.profile.path().join("chrome").display()
            ),
            format!("--window-size={width},{height}"),
        ];
        let mut chrome = json!({"binary": chromium.to_string_lossy(), "args": args});
        if phone {
            chrome["mobileEmulation"] = json!({"deviceMetrics": {
                "width": width, "height": height, "pixelRatio": 2.0, "touch": true, "mobile": true,
            }});
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": {"pageLoad": 20000, "script": 10000, "implicit": 0},
            "goog:chromeOptions": chrome,
        }}});
        let v = self
            .call("POST", "/session", Some(caps))
            .unwrap_or_else(|e| panic!("create WebDriver session: {e}\n{}", self.log_text()));
        let id = v["sessionId"].as_str().expect("sessionId").to_string();
        self.session = Some(id);
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One WebDriver command; returns the `value` of the answer, or the WebDriver error.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("Content-Type", "application/json; charset=utf-8")]
        };
        let r = request(self.addr, method, path, headers, &body)
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let mut v: Value = serde_json::from_slice(&r.body).map_err(|e| {
            format!(
                "{method} {path}: HTTP {}, not JSON ({e}): {}",
                r.status,
                r.text()
            )
        })?;
        let value = v["value"].take();
        if r.status != 200 {
            return Err(format!(
                "{method} {path}: HTTP {}: {}: {}",
                r.status, value["error"], value["message"]
            ));
        }
        Ok(value)
    }

    fn sid(&self) -> &str {
        self.session.as_deref().expect("session")
    }

    fn cmd(&self, method: &str, what: &str, body: Option<Value>) -> Result<Value, String> {
        self.call(method, &format!("/session/{}/{what}", self.sid()), body)
    }

    /// A Chrome DevTools Protocol command through ChromeDriver (`goog/cdp/execute`).
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.cmd(
            "POST",
            "goog/cdp/execute",
            Some(json!({ "cmd": cmd, "params": params })),
        )
        .unwrap_or_else(|e| panic!("CDP {cmd}: {e}"))
    }

    /// The current tab's handle.
    pub fn tab(&self) -> String {
        let v = self.cmd("GET", "window", None).expect("window handle");
        v.as_str().expect("handle string").to_string()
    }

    /// Open a new tab (same browser profile, so same cookies) and switch to it; its handle.
    pub fn new_tab(&self) -> String {
        let v = self
            .cmd("POST", "window/new", Some(json!({ "type": "tab" })))
            .expect("new tab");
        let h = v["handle"].as_str().expect("handle").to_string();
        self.switch_to(&h);
        h
    }

    pub fn switch_to(&self, handle: &str) {
        self.cmd("POST", "window", Some(json!({ "handle": handle })))
            .unwrap_or_else(|e| panic!("switch to tab {handle}: {e}"));
    }

    /// Navigate and wait for the load event.
    pub fn goto(&self, url: &str) {
        self.cmd("POST", "url", Some(json!({ "url": url })))
            .unwrap_or_else(|e| panic!("navigate to {url}: {e}"));
    }

    pub fn url(&self) -> String {
        let v = self.cmd("GET", "url", None).expect("current URL");
        v.as_str().expect("url string").to_string()
    }

    /// Run `script` (a function body; `arguments[i]` are `args`) in the page.
    pub fn try_js(&self, script: &str, args: Value) -> Result<Value, String> {
        self.cmd(
            "POST",
            "execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    pub fn js(&self, script: &str) -> Value {
        self.try_js(script, json!([]))
            .unwrap_or_else(|e| panic!("script {script:?}: {e}"))
    }

    /// `textContent` of the element with this id, `None` if there is none (or the page is
    /// between two documents).
    pub fn text(&self, id: &str) -> Option<String> {
        let v = self
            .try_js(
                "var e = document.getElementById(arguments[0]); return e ? e.textContent : null;",
                json!([id]),
            )
            .ok()?;
        v.as_str().map(str::to_string)
    }

    /// Poll until `f` says yes; the page may be reloading meanwhile, so errors just mean "not yet".
    pub fn wait_js(&self, timeout: Duration, what: &str, script: &str) -> Value {
        eventually(timeout, what, || {
            self.try_js(script, json!([]))
                .ok()
                .filter(|v| !v.is_null() && *v != false)
        })
    }

    /// Save a PNG of the viewport under `artifacts/browser/` at the repository root.
    /// Finite CSS animations (the card's fade-in) are finished first, so the picture is final.
    /// CSS transitions are not waited for: a countdown's progress bar eases its width every
    /// second, so one is nearly always running.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        self.wait_js(
            Duration::from_secs(5),
            "CSS animations to finish before a screenshot",
            "return document.readyState === 'complete' && document.getAnimations().every(\
               function (a) { return a.playState !== 'running' \
                 || (window.CSSTransition && a instanceof CSSTransition) \
                 || a.effect.getComputedTiming().iterations === Infinity; });",
        );
        let v = self.cmd("GET", "screenshot", None).expect("screenshot");
        let png = base64_decode(v.as_str().expect("base64 string")).expect("valid base64");
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "screenshot is not a PNG"
        );
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts/browser");
        std::fs::create_dir_all(&dir).expect("mkdir artifacts/browser");
        let path = dir.join(name);
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// End the session and chromedriver; idempotent, never panics (also runs from `Drop`).
    fn shutdown(&mut self) {
        if let Some(id) = self.session.take() {
            let _ = self.call("DELETE", &format!("/session/{id}"), None);
        }
        if self.driver.try_wait().ok().flatten().is_none() {
            let _ = self.driver.kill();
        }
        let _ = self.driver.wait();
        // Whatever Chromium left behind in chromedriver's process group.
        let pgid = nix::unistd::Pid::from_raw(self.driver.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    }

    /// Shut down and check that no process of this browser is left (zombies aside).
    pub fn close(mut self) {
        self.shutdown();
        let pgid = self.driver.id() as i32;
        let profile = self.profile.path().to_string_lossy().to_string();
        eventually(Duration::from_secs(10), "no Chromium process left", || {
            let left = leftovers(pgid, &profile);
            left.is_empty().then_some(())
        });
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One HTTP/1.1 exchange with chromedriver. It answers `Connection: close` but keeps the socket
/// open for a while, so the response is read by its framing instead of waiting for EOF.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Resp> {
    let req = request_bytes(addr, method, path, None, headers, body);
    send_and_read(addr, &req, Duration::from_secs(30))
}

/// Start chromedriver on a free loopback port and wait until `/status` says ready.
fn start_driver(driver: &Path, log: &Path) -> Result<(Child, SocketAddr), String> {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let logf = File::create(log).expect("chromedriver log");
    let mut child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(logf.try_clone().expect("dup"))
        .stderr(logf)
        // Its own process group, so teardown can reach every Chromium helper it started.
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", driver.display()));
    let start = Instant::now();
    let log_text = || std::fs::read_to_string(log).unwrap_or_default();
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("chromedriver exited ({st}): {}", log_text()));
        }
        if let Ok(r) = request(addr, "GET", "/status", &[], b"")
            && r.status == 200
            && serde_json::from_slice::<Value>(&r.body).is_ok_and(|v| v["value"]["ready"] == true)
        {
            return Ok((child, addr));
        }
        if start.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("not ready after 15 s: {}", log_text()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Live (non-zombie) processes in process group `pgid` or with `profile` on their command line.
fn leftovers(pgid: i32, profile: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let p = e.path();
        let Ok(stat) = std::fs::read_to_string(p.join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.first() == Some(&"Z") || f.first() == Some(&"X") {
            continue;
        }
        let cmdline = std::fs::read(p.join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if f.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid) || cmdline.contains(profile) {
            out.push(format!("{}: {cmdline}", p.display()));
        }
    }
    out
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        let take = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        out.extend_from_slice(&n.to_be_bytes()[1..1 + take]);
    }
    Some(out)
}
