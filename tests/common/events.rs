//! kinfrad's event log as the tests read it: `GET /api/kinfra/events`, `kinfractl events
//! --json`, waiting for an event of a kind, and a `kinfractl events -f` follower whose output
//! lines are read as they come.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::daemon::Daemon;
use super::eventually;
use super::http::json_get;
use super::kinfractl;

/// The events of `GET /api/kinfra/events` (oldest first).
pub fn events_http(d: &Daemon) -> Vec<Value> {
    let r = json_get(d.addr, "/api/kinfra/events");
    assert_eq!(r.status, 200, "GET /api/kinfra/events: {}", r.text());
    r.json()["events"].as_array().cloned().unwrap_or_default()
}

/// The events `kinfractl --json events` prints (oldest first).
pub fn events_ctl(d: &Daemon) -> Vec<Value> {
    let out = d.ctl_ok(&["--json", "events"]);
    serde_json::from_str::<Vec<Value>>(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Wait (10 s at most) until the log holds an event of `kind` about `service` for which `pred`
/// holds; returns it.
pub fn wait_event(d: &Daemon, kind: &str, service: &str, pred: impl Fn(&Value) -> bool) -> Value {
    eventually(
        Duration::from_secs(10),
        &format!("a {kind} event of {service}"),
        || {
            events_http(d)
                .into_iter()
                .find(|e| e["kind"] == kind && e["service"] == service && pred(e))
        },
    )
}

/// `kinfractl events -f` running against `d`, its stdout read line by line.
pub struct Follower {
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

impl Follower {
    pub fn start(d: &Daemon, args: &[&str]) -> Follower {
        let mut child = Command::new(kinfractl())
            .arg("--socket")
            .arg(&d.control)
            .args(args)
            .args(["events", "-f"])
            .env_remove("KINFRA_SOCKET")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kinfractl events -f");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { return };
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        Follower { child, lines }
    }

    /// The next line for which `pred` holds (lines before it are passed over), within 10 s.
    pub fn line_where(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if pred(&l) => return l,
                Ok(l) => seen.push(l),
                Err(_) => panic!("kinfractl events -f printed no line with {what}; saw {seen:?}"),
            }
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
