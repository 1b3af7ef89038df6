//! How a supervised service starts: the loading page until it is ready, then proxied traffic;
//! readiness by sd_notify (its STATUS lines become the page's steps) or by an HTTP probe; a
//! deploy script's progress on the loading page; and the demo configuration end to end.

use std::time::Duration;

use crate::common;
use crate::prelude::*;

#[test]
fn starts_shows_loading_then_proxies_and_reports_the_process() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = server_script(dir.path(), "slow", 1.5);
    let port = common::free_port();
    // kinfrad itself has a NOTIFY_SOCKET; its children must not see it.
    let notify = common::NotifyRx::new(dir.path());
    let notify_path = notify.path.display().to_string();
    let d = start(
        dir,
        &format!(
            r#"
[[service]]
name = "web"
command = ["python3", "{script}", "{{port}}"]
preferred_port = {port}
routes = ["/"]
fallback_message = "Warming up"
health_check = {{ interval = "200ms", grace = "30s" }}
"#
        ),
        &[("NOTIFY_SOCKET", &notify_path)],
    );
    // While it sleeps: the loading page, with the process's facts and steps.
    let r = get_html(d.addr, "/some/page");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("x-kinfra-fallback"), Some("loading"));
    assert!(r.text().contains("Warming up"));
    let s = status(&d, "web");
    assert_eq!(s["state"], "starting", "{s}");
    assert_eq!(s["port"], port.to_string());
    let s = wait_state(&d, "web", "a pid", |s| s["pid"] != "");
    assert_eq!(s["state"], "starting", "{s}");
    let pid = pid_of(&s);
    assert!(alive(pid));
    let steps: Vec<(String, String)> = s["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|x| {
            (
                x["text"].as_str().unwrap_or("").to_string(),
                x["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        steps[0],
        (format!("Allocating port ({port})"), "completed".to_string()),
        "{steps:?}"
    );
    assert_eq!(
        steps[1],
        ("Starting process".to_string(), "completed".to_string()),
        "{steps:?}"
    );

    // Ready: proxied; the child got PORT and a NOTIFY_SOCKET of its own, not kinfrad's.
    wait_state(&d, "web", "running", |s| s["state"] == "running");
    let r = get(d.addr, "/x");
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.text();
    assert!(
        body.starts_with(&format!("slow pid={pid} port={port} notify=")),
        "{body}"
    );
    // Its own NOTIFY_SOCKET from kinfrad, never kinfrad's.
    assert!(body.ends_with("/notify/web.notify"), "{body}");
    assert!(!body.contains(&notify_path), "{body}");

    let ps = d.ctl_ok(&["ps"]);
    assert!(
        ps.contains("web") && ps.contains(&pid.to_string()) && ps.contains("running"),
        "{ps}"
    );
    let logs = d.ctl_ok(&["logs", "web", "-n", "5"]);
    assert!(
        logs.contains(&format!("INFO  INFO listening on {port}")),
        "{logs}"
    );
    let s = status(&d, "web");
    assert_eq!(s["logs"][0]["level"], "info", "{s}");
    // Forwarded to kinfrad's log (the journal under systemd) with the service's name as a field.
    let log = d.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("INFO listening on {port}")) && l.contains("service=web")),
        "{log}"
    );
}

#[test]
fn notify_socket_status_lines_are_steps_and_ready_gates_traffic() {
    let dir = tempfile::tempdir().expect("tmp");
    let gate = dir.path().join("go");
    let script = dir.path().join("notify.py");
    std::fs::write(
        &script,
        format!(
            r#"
import http.server, os, socket, sys, threading, time
def notify(msg):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(msg.encode(), os.environ["NOTIFY_SOCKET"])
notify("STATUS=Installing packages")
time.sleep(0.3)
notify("STATUS=Compiling")
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"served"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
notify("STATUS=Warming caches")
while not os.path.exists("{}"):
    time.sleep(0.05)
notify("READY=1\nSTATUS=Serving")
while True:
    time.sleep(1)
"#,
            gate.display()
        ),
    )
    .expect("script");
    let d = start(
        dir,
        &format!(
            r#"
[[service]]
name = "n"
command = ["python3", "{}"]
preferred_port = {}
routes = ["/"]
ready = "notify"
health_check = {{ interval = "200ms", grace = "30s" }}
"#,
            script.display(),
            common::free_port()
        ),
        &[],
    );
    // Listening and healthy by port, but not READY=1: still starting, no traffic.
    let s = wait_state(&d, "n", "the child's third step", |s| {
        s["status_message"] == "Warming caches"
    });
    std::thread::sleep(Duration::from_millis(600));
    let s2 = status(&d, "n");
    assert_eq!(s2["state"], "starting", "{s2}");
    let texts: Vec<(String, String)> = s["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|x| {
            (
                x["text"].as_str().unwrap_or("").to_string(),
                x["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for (t, st) in [
        ("Installing packages", "completed"),
        ("Compiling", "completed"),
        ("Warming caches", "active"),
    ] {
        assert!(
            texts.iter().any(|(a, b)| a == t && b == st),
            "{t}/{st} in {texts:?}"
        );
    }
    let r = get_html(d.addr, "/");
    assert_eq!(r.header("x-kinfra-fallback"), Some("loading"));
    assert!(r.text().contains("Warming caches"));
    std::fs::write(&gate, "").expect("gate");
    wait_state(&d, "n", "running after READY=1", |s| {
        s["state"] == "running"
    });
    assert_eq!(get(d.addr, "/").text(), "served");
}

#[test]
fn ready_by_http_probe_waits_for_a_passing_check() {
    let dir = tempfile::tempdir().expect("tmp");
    let gate = dir.path().join("healthy");
    let script = dir.path().join("probe.py");
    std::fs::write(
        &script,
        format!(
            r#"
import http.server, os, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        ok = self.path != "/healthz" or os.path.exists("{}")
        body = b"ok" if ok else b"warming"
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#,
            gate.display()
        ),
    )
    .expect("script");
    let d = start(
        dir,
        &format!(
            r#"
[[service]]
name = "p"
command = ["python3", "{}"]
preferred_port = {}
routes = ["/"]
health_check = {{ path = "/healthz", interval = "200ms", grace = "30s" }}
"#,
            script.display(),
            common::free_port()
        ),
        &[],
    );
    // The port answers, but the check says 503: starting, no traffic.
    let s = wait_state(&d, "p", "the probe to see 503", |s| {
        s["steps"]
            .to_string()
            .contains(r#""status":"completed","text":"Connecting to"#)
    });
    assert_eq!(s["state"], "starting", "{s}");
    assert_eq!(
        get_html(d.addr, "/").header("x-kinfra-fallback"),
        Some("loading")
    );
    std::fs::write(&gate, "").expect("gate");
    wait_state(&d, "p", "ready by the probe", |s| s["state"] == "running");
    assert_eq!(get(d.addr, "/").text(), "ok");
}

#[test]
fn a_deploy_script_sets_the_loading_page_progress() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = start(
        dir,
        &format!(
            r#"
[[service]]
name = "app"
url = "http://127.0.0.1:{}"
routes = ["/"]
health_check = {{ interval = "200ms", grace = "60s" }}
"#,
            common::free_port()
        ),
        &[],
    );
    d.ctl_ok(&[
        "progress",
        "app",
        "--message",
        "Deploying v2",
        "--step",
        "Pull image:completed",
        "--step",
        "Migrate database",
    ]);
    let s = wait_state(&d, "app", "the progress", |s| {
        s["status_message"] == "Deploying v2"
    });
    let steps = s["steps"].to_string();
    assert!(
        steps.contains(r#"{"status":"completed","text":"Pull image"}"#)
            && steps.contains(r#"{"status":"active","text":"Migrate database"}"#),
        "{steps}"
    );
    let page = get_html(d.addr, "/").text();
    assert!(page.contains("Deploying v2") && page.contains("Migrate database"));
    for (args, want) in [
        (
            vec!["progress", "nope", "--message", "x"],
            "no service named",
        ),
        (vec!["progress", "app"], "give a message"),
    ] {
        let o = d.ctl(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    d.ctl_ok(&["progress", "app", "--clear"]);
    wait_state(&d, "app", "the default message", |s| {
        s["status_message"] != "Deploying v2"
    });
}

#[test]
fn the_demo_shows_steps_serves_and_recovers_from_a_crash() {
    let d = Daemon::start_with(tempfile::tempdir().expect("tmp"), &["--demo"], &[]);
    let s = wait_state(&d, "demo", "a demo step", |s| {
        s["status_message"] == "Installing dependencies"
    });
    assert_eq!(s["state"], "starting", "{s}");
    let r = get_html(d.addr, "/");
    assert_eq!(r.header("x-kinfra-fallback"), Some("loading"));
    wait_state(&d, "demo", "the demo running", |s| s["state"] == "running");
    let page = get_html(d.addr, "/").text();
    assert!(page.contains("Hello from the demo service"), "{page}");
    let r = common::request(d.addr, "POST", "/crash", &[], b"").expect("POST /crash");
    assert_eq!(r.status, 200);
    let s = wait_state(&d, "demo", "the crash noticed", |s| {
        s["last_exit"] == "Process exited with code 1"
    });
    assert_ne!(s["state"], "running", "{s}");
    wait_state(&d, "demo", "the demo back", |s| {
        s["state"] == "running" && s["restarts"] == 1
    });
    assert!(
        get_html(d.addr, "/")
            .text()
            .contains("Hello from the demo service")
    );
}
