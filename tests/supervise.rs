//! Services kinfrad runs itself (`[[service]] command`): real child processes written by the
//! tests, driven through the real kinfrad and kinfractl binaries over loopback.

mod common;

use std::path::Path;
use std::time::Duration;

// `status` and `start` as this file has always called them.
use common::{Daemon, eventually, get, get_html, service as status, start_config as start};
use serde_json::Value;

const T: Duration = Duration::from_secs(15);

/// A small HTTP server in Python that answers every GET with `tag` and its pid, after
/// `delay` seconds of "startup".
fn server_script(dir: &Path, tag: &str, delay: f32) -> String {
    let path = dir.join(format!("{tag}.py"));
    std::fs::write(
        &path,
        format!(
            r#"
import http.server, os, sys, time
time.sleep({delay})
print("INFO listening on", os.environ["PORT"], flush=True)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ("{tag} pid=%d port=%s notify=%s" % (os.getpid(), os.environ["PORT"], os.environ.get("NOTIFY_SOCKET", "none"))).encode()
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
    .expect("write server");
    path.display().to_string()
}

/// A `[[service]]` running a `server_script` on a free port at `/`, probed every 200 ms.
fn python_service(name: &str, script: &str) -> String {
    format!(
        r#"
[[service]]
name = "{name}"
command = ["python3", "{script}", "{{port}}"]
preferred_port = {}
routes = ["/"]
health_check = {{ interval = "200ms" }}
"#,
        common::free_port()
    )
}

fn wait_state(d: &Daemon, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    eventually(T, what, || {
        let s = status(d, name);
        f(&s).then_some(s)
    })
}

/// Running: neither gone nor a zombie waiting for its new parent to reap it.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|st| {
            st.rsplit(')')
                .next()
                .map(|r| r.trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

fn pid_of(s: &Value) -> i32 {
    s["pid"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {s}"))
}

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
fn crash_backs_off_restarts_and_the_503_page_says_why() {
    let dir = tempfile::tempdir().expect("tmp");
    let counter = dir.path().join("runs");
    let script = dir.path().join("crash.sh");
    std::fs::write(
        &script,
        format!(
            "echo run >> {}\necho 'ERROR: database unreachable' >&2\nexit 1\n",
            counter.display()
        ),
    )
    .expect("script");
    let d = start(
        dir,
        &format!(
            r#"
[[service]]
name = "api"
command = ["sh", "{}"]
preferred_port = {}
routes = ["/"]
restart = "on-failure"
health_check = {{ interval = "200ms", grace = "0s" }}
"#,
            script.display(),
            common::free_port()
        ),
        &[],
    );
    let s = wait_state(&d, "api", "restarted twice", |s| {
        s["restarts"].as_u64().unwrap_or(0) >= 2
    });
    assert_eq!(s["last_exit"], "Process exited with code 1", "{s}");
    // The back-off keeps a crash loop slow: 0.5 s, 1 s, 2 s… so a few runs in 3 s, not hundreds.
    std::thread::sleep(Duration::from_secs(3));
    let runs = std::fs::read_to_string(&counter)
        .expect("runs")
        .lines()
        .count();
    assert!((3..=8).contains(&runs), "{runs} runs in ~4 s");
    // Whatever moment of the loop a visitor hits, the answer names the exit.
    for _ in 0..10 {
        let r = get(d.addr, "/");
        assert_eq!(r.status, 503);
        let j = r.json();
        assert!(
            // A run that has started but not answered a probe yet reads "unhealthy" when a
            // probe was refused meanwhile: also a moment of the loop.
            ["backoff", "starting", "crashed", "unhealthy"]
                .contains(&j["state"].as_str().unwrap_or("")),
            "{j}"
        );
        assert_eq!(j["error_detail"], "Process exited with code 1", "{j}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let page = eventually(T, "the 503 page", || {
        let r = get_html(d.addr, "/");
        (r.header("x-kinfra-fallback") == Some("503")).then(|| r.text())
    });
    assert!(
        page.contains("Process exited with code 1"),
        "the 503 page names the exit"
    );
    let logs = d.ctl_ok(&["logs", "api"]);
    assert!(logs.contains("ERROR ERROR: database unreachable"), "{logs}");
}

#[test]
fn operator_stop_start_restart_and_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = server_script(dir.path(), "svc", 0.0);
    let d = start(
        dir,
        &(python_service("svc", &script)
            + r#"
[[service]]
name = "ext"
url = "http://127.0.0.1:1"
routes = ["ext.test/"]
"#),
        &[],
    );
    let s = wait_state(&d, "svc", "running", |s| s["state"] == "running");
    let first = pid_of(&s);
    assert_eq!(d.ctl_ok(&["stop", "svc"]).trim(), "stop: svc");
    wait_state(&d, "svc", "stopped", |s| s["state"] == "stopped");
    eventually(T, "the process to be gone", || {
        (!alive(first)).then_some(())
    });
    assert_eq!(get(d.addr, "/").status, 503);
    d.ctl_ok(&["start", "svc"]);
    let s = wait_state(&d, "svc", "running again", |s| s["state"] == "running");
    let second = pid_of(&s);
    assert_ne!(first, second);
    d.ctl_ok(&["restart", "svc"]);
    let s = wait_state(&d, "svc", "a new process", |s| {
        s["state"] == "running"
            && s["pid"].as_str().and_then(|p| p.parse::<i32>().ok()) != Some(second)
    });
    assert!(!alive(second));
    assert_eq!(s["restarts"], 1, "{s}");

    for (args, want) in [
        (vec!["stop", "nope"], "no service named \"nope\""),
        (vec!["restart", "ext"], "not run by kinfrad"),
        (vec!["logs", "ext"], "not run by kinfrad"),
    ] {
        let o = d.ctl(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {o:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn an_operator_stop_survives_a_restart_of_kinfrad() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = server_script(dir.path(), "kept", 0.0);
    let config = python_service("k", &script);
    let mut d = start(dir, &config, &[]);
    wait_state(&d, "k", "running", |s| s["state"] == "running");
    d.ctl_ok(&["stop", "k"]);
    wait_state(&d, "k", "stopped", |s| s["state"] == "stopped");
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(d.state_dir.join("state.json")).expect("state.json"),
    )
    .expect("json");
    assert_eq!(
        state["stopped_services"],
        serde_json::json!(["k"]),
        "{state}"
    );
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(d.wait_exit(T).success());
    let path = d.dir.path().join("kinfra.toml").display().to_string();
    let dir = d.crash();
    let d = Daemon::start_with(dir, &["--config", &path], &[]);
    std::thread::sleep(Duration::from_millis(800));
    let s = status(&d, "k");
    assert_eq!(s["state"], "stopped", "still stopped after a restart: {s}");
    assert_eq!(s["pid"], "");
    d.ctl_ok(&["start", "k"]);
    wait_state(&d, "k", "running", |s| s["state"] == "running");
    let state = std::fs::read_to_string(d.state_dir.join("state.json")).expect("state.json");
    assert!(!state.contains("stopped_services"), "{state}");
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
fn logs_follow_prints_new_lines_as_they_come() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tmp");
    let d = start(
        dir,
        &format!(
            r#"
[[service]]
name = "ticker"
command = "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.2; done"
shell = true
preferred_port = {}
routes = ["/"]
"#,
            common::free_port()
        ),
        &[],
    );
    let mut child = std::process::Command::new(common::kinfractl())
        .arg("--socket")
        .arg(&d.control)
        .args(["logs", "ticker", "-n", "1", "-f"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kinfractl logs -f");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut ticks = Vec::new();
    while ticks.len() < 4 {
        let line = rx.recv_timeout(T).expect("a followed line");
        let n: u64 = line
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a tick: {line}"));
        ticks.push(n);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        ticks.windows(2).all(|w| w[1] == w[0] + 1),
        "each line once, in order: {ticks:?}"
    );
}

#[test]
fn busy_preferred_port_moves_and_the_route_follows() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = server_script(dir.path(), "moved", 0.0);
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = busy.local_addr().expect("addr").port();
    let d = start(
        dir,
        &format!(
            r#"
[[service]]
name = "m"
command = ["python3", "{script}", "{{port}}"]
preferred_port = {taken}
port_range = "{taken}-{}"
routes = ["/"]
health_check = {{ interval = "200ms" }}
"#,
            taken.saturating_add(50)
        ),
        &[],
    );
    let s = wait_state(&d, "m", "running", |s| s["state"] == "running");
    let port: u16 = s["port"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .expect("port");
    assert_ne!(port, taken);
    let r = get(d.addr, "/");
    assert_eq!(r.status, 200);
    assert!(r.text().contains(&format!("port={port}")), "{}", r.text());
    drop(busy);
}

#[test]
fn kill_9_of_kinfrad_leaves_no_child() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = server_script(dir.path(), "orphan", 0.0);
    let d = start(dir, &python_service("o", &script), &[]);
    let s = wait_state(&d, "o", "running", |s| s["state"] == "running");
    let pid = pid_of(&s);
    let _dir = d.crash();
    eventually(T, "the child to die with kinfrad", || {
        (!alive(pid)).then_some(())
    });
}

#[test]
fn grandchildren_left_by_a_killed_kinfrad_are_reaped_at_the_next_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = server_script(dir.path(), "parent", 0.0);
    let pidfile = dir.path().join("grandchild.pid");
    let config = format!(
        r#"
[[service]]
name = "g"
command = "sleep 300 & echo $! > {}; exec python3 {script} $PORT"
shell = true
preferred_port = {}
routes = ["/"]
health_check = {{ interval = "200ms" }}
"#,
        pidfile.display(),
        common::free_port()
    );
    let d = start(dir, &config, &[]);
    let s = wait_state(&d, "g", "running", |s| s["state"] == "running");
    let child = pid_of(&s);
    let grandchild: i32 = eventually(T, "the grandchild's pid", || {
        std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|t| t.trim().parse().ok())
    });
    let dir = d.crash();
    eventually(T, "the child to die with kinfrad", || {
        (!alive(child)).then_some(())
    });
    assert!(
        alive(grandchild),
        "kill -9 leaves the grandchild (its group outlives the child)"
    );
    let path = dir.path().join("kinfra.toml").display().to_string();
    let d = Daemon::start_with(dir, &["--config", &path], &[]);
    eventually(T, "the leftover to be reaped", || {
        (!alive(grandchild)).then_some(())
    });
    wait_state(&d, "g", "running again", |s| s["state"] == "running");
    // A graceful stop takes the whole group along, the new grandchild too.
    let second: i32 = eventually(T, "the new grandchild's pid", || {
        std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .filter(|p| *p != grandchild)
    });
    let mut d = d;
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(d.wait_exit(T).success());
    // (A killed process may linger as a zombie until its new parent reaps it.)
    eventually(
        T,
        "SIGTERM to kinfrad to stop its services' whole groups",
        || (!alive(second)).then_some(()),
    );
}

#[test]
fn a_flood_of_output_stays_bounded() {
    let dir = tempfile::tempdir().expect("tmp");
    // 100 MB as fast as the pipe takes it, in 4,000-byte lines (25,000 of them), then idle.
    let d = start(
        dir,
        &format!(
            r#"
[[service]]
name = "loud"
command = "yes \"$(head -c 3999 /dev/zero | tr '\\0' x)\" | head -c 100000000; exec sleep 600"
shell = true
preferred_port = {}
routes = ["/"]
log_lines = 200
"#,
            common::free_port()
        ),
        &[],
    );
    // 100,000,000 / 4,000 bytes a line = 25,000 lines, of which the ring keeps 200.
    let j = eventually(Duration::from_secs(60), "the flood to be read", || {
        let out = d.ctl_ok(&["--json", "logs", "loud", "-n", "1000"]);
        let j: Value = serde_json::from_str(&out).expect("json");
        (j["dropped"].as_u64().unwrap_or(0) >= 24_800).then_some(j)
    });
    let longest = j["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["message"].as_str())
        .map(str::len)
        .max();
    assert_eq!(longest, Some(3999), "whole lines kept");
    // The ring holds log_lines (200); one answer carries as many of the newest as fit 64 KiB.
    let shown = j["lines"].as_array().map_or(0, |a| a.len()) as u64;
    assert!(shown >= 10, "{shown} lines shown");
    assert_eq!(
        shown + j["omitted"].as_u64().unwrap_or(0),
        200,
        "ring holds log_lines"
    );
    assert!(
        d.ctl_ok(&["logs", "loud", "-n", "3"])
            .contains("older lines were dropped")
    );
    let rss = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).expect("status");
    let kb: u64 = rss
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    assert!(
        kb < 100_000,
        "kinfrad holds {kb} KiB after 100 MB of output"
    );
}

#[test]
fn bad_service_configs_name_the_key() {
    let cases = [
        ("name = \"a\"\nroutes = [\"/\"]", "(a).url"),
        (
            "name = \"a\"\nurl = \"http://x\"\ncommand = [\"x\"]\nroutes = [\"/\"]",
            "(a).command",
        ),
        (
            "name = \"a\"\ncommand = []\nroutes = [\"/\"]",
            "(a).command",
        ),
        (
            "name = \"a\"\ncommand = \"ls -l\"\nroutes = [\"/\"]",
            "(a).command",
        ),
        (
            "name = \"a\"\ncommand = [\"x\"]\npreferred_port = 70000\nroutes = [\"/\"]",
            "(a).preferred_port",
        ),
        (
            "name = \"a\"\ncommand = [\"x\"]\nrestart = \"sometimes\"\nroutes = [\"/\"]",
            "(a).restart",
        ),
        (
            "name = \"a\"\ncommand = [\"x\"]\nstop_signal = \"SIGNOPE\"\nroutes = [\"/\"]",
            "(a).stop_signal",
        ),
        (
            "name = \"a\"\ncommand = [\"x\"]\ncwd = \"relative\"\nroutes = [\"/\"]",
            "(a).cwd",
        ),
        (
            "name = \"a\"\ncommand = [\"x\"]\nenv = { PORT = \"1\" }\nroutes = [\"/\"]",
            "(a).env.PORT",
        ),
        (
            "name = \"a\"\nurl = \"http://x\"\nrestart = \"always\"\nroutes = [\"/\"]",
            "(a).restart",
        ),
        (
            "name = \"a\"\ncommand = [\"x\"]\nroutes = [\"/\"]\ncomand = 1",
            "comand",
        ),
    ];
    for (body, key) in cases {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("k.toml");
        std::fs::write(&path, format!("[[service]]\n{body}\n")).expect("write");
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_kinfrad"))
            .arg("--check-config")
            .arg("--config")
            .arg(&path)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{body}: {err}");
        assert!(err.contains(key), "{body}: expected {key} in {err}");
    }
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

#[test]
fn a_second_kinfrad_on_the_same_state_dir_leaves_the_first_ones_children_alone() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = server_script(dir.path(), "first", 0.0);
    let d = start(dir, &python_service("f", &script), &[]);
    let pid = pid_of(&wait_state(&d, "f", "running", |s| s["state"] == "running"));
    let control = d.dir.path().join("second.sock");
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_kinfrad"))
        .arg("--config")
        .arg(d.dir.path().join("kinfra.toml"))
        .arg("--state-dir")
        .arg(&d.state_dir)
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", common::free_port()))
        .arg("--control-socket")
        .arg(&control)
        .env_remove("NOTIFY_SOCKET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("second kinfrad");
    // Its control socket answers only once its supervisors (and the leftover reaping that
    // comes first) have run.
    eventually(
        T,
        "the second kinfrad to answer on its control socket",
        || {
            std::process::Command::new(common::kinfractl())
                .arg("--socket")
                .arg(&control)
                .arg("status")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|_| ())
        },
    );
    let _ = second.kill();
    let _ = second.wait();
    assert!(
        alive(pid),
        "the first kinfrad's child was killed by the second"
    );
    assert_eq!(status(&d, "f")["state"], "running");
}
