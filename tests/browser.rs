//! End-to-end tests of the maintenance, landing and fallback pages in a real headless Chromium,
//! driven through ChromeDriver: the live countdown, in-place updates, the automatic reload when
//! maintenance ends or a proxied upstream comes back, hostile text, and a phone-sized viewport.
//! Screenshots go to `artifacts/browser/`.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (scripts/test.sh installs them); without
//! them the tests fail, unless `KINFRA_SKIP_BROWSER=1`.

mod common;
#[path = "browser/webdriver.rs"]
mod webdriver;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Daemon, eventually, free_port};
use serde_json::{Value, json};
use webdriver::Browser;

/// Generous: the browser polls every 2 s, and CI machines can be slow.
const LIVE: Duration = Duration::from_secs(5);
const RELOAD: Duration = Duration::from_secs(6);

/// "01:59" or "1:02:03" as seconds.
fn clock_secs(t: &str) -> Option<u64> {
    let parts: Vec<&str> = t.trim().split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts[1..].iter().any(|p| p.len() != 2) {
        return None;
    }
    parts.iter().try_fold(0u64, |acc, p| {
        (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| acc * 60 + p.parse::<u64>().expect("digits"))
    })
}

/// Wait until the maintenance page's status poll has succeeded (`#conn` says live).
fn wait_live(b: &Browser) {
    b.wait_js(
        LIVE,
        "#conn to report live",
        "var c = document.getElementById('conn'); \
         return !!c && c.classList.contains('live') \
           && document.getElementById('conn-text').textContent === 'live';",
    );
}

/// The countdown as (text, seconds), once it shows a clock.
fn countdown(b: &Browser) -> Option<(String, u64)> {
    let t = b.text("countdown")?;
    let s = clock_secs(&t)?;
    Some((t, s))
}

fn marker(b: &Browser) -> Option<bool> {
    b.try_js("return window.__marker === 1;", json!([]))
        .ok()?
        .as_bool()
}

/// The page has no horizontal overflow; returns (scrollWidth, innerWidth).
fn assert_no_overflow(b: &Browser, what: &str) -> (u64, u64) {
    let v = b.js(
        "return [document.documentElement.scrollWidth, window.innerWidth, \
                 document.body.scrollWidth];",
    );
    let (sw, iw, bw) = (
        v[0].as_u64().expect("n"),
        v[1].as_u64().expect("n"),
        v[2].as_u64().expect("n"),
    );
    assert!(
        sw <= iw && bw <= iw,
        "{what}: horizontal overflow: scrollWidth {sw} (body {bw}) > innerWidth {iw}"
    );
    (sw, iw)
}

#[test]
fn maintenance_page_live_in_a_real_browser() {
    let Some(b) = Browser::launch(1280, 900) else {
        return;
    };
    let d = Daemon::start();
    d.ctl_ok(&[
        "maint",
        "enter",
        "--message",
        "Upgrading the database",
        "--issue",
        "Migrating users",
        "--countdown",
        "120",
    ]);
    let url = format!("http://{}/some/deep/path", d.addr);
    b.goto(&url);
    assert_eq!(
        b.js("return document.title;"),
        "Down for maintenance · KInfra"
    );
    assert_eq!(b.text("message").as_deref(), Some("Upgrading the database"));
    assert_eq!(b.text("current-issue").as_deref(), Some("Migrating users"));
    assert_eq!(
        b.js("return document.getElementById('issue-row').hidden;"),
        false
    );
    let start = b.text("start-time").expect("#start-time");
    assert!(!start.trim().is_empty(), "#start-time is empty");

    // The countdown shows a clock close to 2:00 and ticks down.
    let (first, secs) = eventually(LIVE, "#countdown to show mm:ss", || countdown(&b));
    assert!((100..=120).contains(&secs), "#countdown {first:?}");
    let (second, secs2) = eventually(LIVE, "#countdown to tick", || {
        countdown(&b).filter(|(t, _)| *t != first)
    });
    assert!(secs2 < secs, "#countdown went {first:?} -> {second:?}");
    wait_live(&b);
    assert_eq!(
        b.js("return document.getElementById('bar').className;"),
        "bar",
        "progress bar should be determinate with an ETA"
    );
    b.screenshot("maintenance.png");

    // A live update changes the text in place, without reloading the page.
    b.js("window.__marker = 1; return 1;");
    d.ctl_ok(&["status", "--message", "Almost done", "--countdown", "30"]);
    eventually(LIVE, "#message to become \"Almost done\"", || {
        (b.text("message")? == "Almost done").then_some(())
    });
    assert_eq!(marker(&b), Some(true), "page reloaded on a status update");
    let (cd, _) = eventually(LIVE, "#countdown to follow the new ETA", || {
        countdown(&b).filter(|(_, s)| (20..=30).contains(s))
    });
    assert_eq!(b.text("current-issue").as_deref(), Some("Migrating users"));
    assert_eq!(marker(&b), Some(true), "page reloaded on a status update");
    b.screenshot("maintenance-updated.png");
    eprintln!("after update: #countdown {cd:?}");

    // Ending maintenance reloads the page on its own, at the same URL, into the landing page.
    d.ctl_ok(&["maint", "exit"]);
    eventually(
        RELOAD,
        "the page to reload itself into the landing page",
        || {
            let v = b
                .try_js(
                    "return [window.__marker === 1, document.readyState, \
                         !!document.getElementById('maint'), \
                         !!document.getElementById('countdown')];",
                    json!([]),
                )
                .ok()?;
            (v == json!([false, "complete", true, false])).then_some(())
        },
    );
    assert_eq!(b.url(), url, "reload kept the URL");
    assert_eq!(b.js("return document.title;"), "KInfra");
    assert!(b.text("message").is_none(), "maintenance page still shown");
    // The landing page's own poll sees maintenance off.
    b.wait_js(
        LIVE,
        "landing page to report maintenance off",
        "return document.getElementById('maint-text').textContent === 'Maintenance: off' \
           && document.getElementById('conn-text').textContent === 'live';",
    );
    let note = b.text("path-note").expect("#path-note");
    assert!(note.contains("/some/deep/path"), "#path-note {note:?}");
    b.screenshot("landing.png");
    b.close();
}

#[test]
fn hostile_text_is_shown_as_text() {
    let Some(b) = Browser::launch(1280, 900) else {
        return;
    };
    let d = Daemon::start();
    let hostile = r#"<img src=x onerror="window.__xss=1">"#;
    let issue = r#"<script>window.__xss=2</script>"#;
    d.ctl_ok(&[
        "maint",
        "enter",
        "--message",
        hostile,
        "--issue",
        issue,
        "--countdown",
        "300",
    ]);
    b.goto(&format!("http://{}/", d.addr));
    // Server-rendered, then rewritten by the first status poll: both must be plain text.
    wait_live(&b);
    let check = |msg: &str, iss: &str, when: &str| {
        assert_eq!(b.text("message").as_deref(), Some(msg), "{when}: #message");
        assert_eq!(
            b.text("current-issue").as_deref(),
            Some(iss),
            "{when}: #current-issue"
        );
        assert_eq!(
            b.js("return document.querySelectorAll('#message *, #current-issue *').length;"),
            0,
            "{when}: markup was parsed into elements"
        );
        assert_eq!(
            b.js("return document.querySelectorAll('img').length;"),
            0,
            "{when}: an <img> made it into the page"
        );
        assert_eq!(
            b.js("return typeof window.__xss;"),
            "undefined",
            "{when}: injected script ran"
        );
    };
    check(hostile, issue, "initial page");

    let hostile2 = r#"</p><script>window.__xss=3</script><img src=y onerror="window.__xss=4"> & &amp; "quoted""#;
    b.js("window.__marker = 1; return 1;");
    d.ctl_ok(&["status", "--message", hostile2, "--issue", hostile]);
    eventually(LIVE, "#message to take the new hostile text", || {
        (b.text("message")? == hostile2).then_some(())
    });
    // Let an injected image fail to load (and fire onerror) if there was one.
    wait_live(&b);
    check(hostile2, hostile, "after a live update");
    assert_eq!(marker(&b), Some(true), "page reloaded on a status update");
    b.close();
}

#[test]
fn phone_width_has_no_horizontal_overflow() {
    let Some(b) = Browser::launch_phone(390, 844) else {
        return;
    };
    let d = Daemon::start();
    d.ctl_ok(&[
        "maint",
        "enter",
        "--message",
        "Replacing the primary database node db-01.eu-central.internal.example.com-with-a-much-longer-name-than-usual",
        "--issue",
        "Copying /var/lib/postgresql/16/main/base/16384/2619_fsm_vm_init_and_friends",
        "--countdown",
        "5400",
    ]);
    let url = format!(
        "http://{}/a/rather/long/path/that/goes/on/and/on/and/on/and/on",
        d.addr
    );
    b.goto(&url);
    wait_live(&b);
    let (t, secs) = eventually(LIVE, "#countdown to show h:mm:ss", || countdown(&b));
    assert!((5300..=5400).contains(&secs), "#countdown {t:?}");
    let (sw, iw) = assert_no_overflow(&b, "maintenance page");
    assert_eq!(iw, 390, "viewport is not phone-sized");
    eprintln!("phone maintenance: scrollWidth {sw}, innerWidth {iw}");
    b.screenshot("maintenance-phone.png");

    d.ctl_ok(&["maint", "exit"]);
    b.wait_js(
        RELOAD,
        "the landing page after maintenance",
        "return document.readyState === 'complete' && !!document.getElementById('maint');",
    );
    b.wait_js(
        LIVE,
        "landing page to report maintenance off",
        "return document.getElementById('maint-text').textContent === 'Maintenance: off';",
    );
    assert_no_overflow(&b, "landing page");
    b.screenshot("landing-phone.png");
    b.close();
}

#[test]
fn countdown_runs_out_clears_and_connection_loss_shows() {
    let Some(b) = Browser::launch(1280, 900) else {
        return;
    };
    let mut d = Daemon::start();
    d.ctl_ok(&[
        "maint",
        "enter",
        "--message",
        "Short one",
        "--countdown",
        "3",
    ]);
    b.goto(&format!("http://{}/x", d.addr));
    wait_live(&b);
    assert_eq!(
        b.js("return document.getElementById('issue-row').hidden;"),
        true,
        "no current task: its row is hidden"
    );
    b.wait_js(
        Duration::from_secs(8),
        "#countdown to say \"Any moment now\" once the ETA passed",
        "var c = document.getElementById('countdown'); \
         return c.textContent === 'Any moment now' && c.className === 'text';",
    );
    let eta = b.text("eta-time").expect("#eta-time");
    assert!(eta.starts_with("Was expected at"), "#eta-time {eta:?}");

    // `--countdown 0` clears the estimate: no clock, an indeterminate bar.
    d.ctl_ok(&["status", "--countdown", "0", "--issue", "Vacuuming"]);
    b.wait_js(
        LIVE,
        "#countdown to say \"No estimate yet\"",
        "return document.getElementById('countdown').textContent === 'No estimate yet' \
           && document.getElementById('bar').className === 'bar indet' \
           && document.getElementById('current-issue').textContent === 'Vacuuming' \
           && !document.getElementById('issue-row').hidden;",
    );

    // The daemon goes away: the page says so instead of pretending to be live.
    b.js("window.__marker = 1; return 1;");
    d.child.kill().expect("kill kinfrad");
    d.child.wait().expect("wait kinfrad");
    b.wait_js(
        RELOAD,
        "#conn to report the lost connection",
        "var c = document.getElementById('conn'); \
         return c.classList.contains('down') \
           && document.getElementById('conn-text').textContent === 'reconnecting…';",
    );
    assert_eq!(
        marker(&b),
        Some(true),
        "page must stay, not reload into an error"
    );
    assert_eq!(b.text("message").as_deref(), Some("Short one"));
    b.close();
}

// ---------------------------------------------------------------------------------------------
// Fallback pages of a proxied upstream: 503, loading and live.
// ---------------------------------------------------------------------------------------------

/// How long a fallback page may take to bring the visitor back once the upstream is healthy:
/// probes run every 200 ms while it is not, the 503 and loading pages poll every 1.5 s, the live
/// page every 2 s.
const RECOVER: Duration = Duration::from_secs(4);

/// What the visitor asks for, and what the upstream's real page looks like.
const APP_PATH: &str = "/app/page?x=1";
const APP_TITLE: &str = "Upstream app";
const APP_MARKER: &str = "served-by-the-upstream-7c1e";

/// A small HTTP upstream on 127.0.0.1: `GET /health` answers with a status the test sets,
/// `GET /app/page?x=1` with an HTML page holding `#app-marker`, anything else 404. Every
/// request target is recorded. Stops (and frees its port) on drop.
struct AppServer {
    health: Arc<AtomicU16>,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AppServer {
    /// Listen on 127.0.0.1:`port`, answering `/health` with `health`.
    fn start(port: u16, health: u16) -> AppServer {
        let l = eventually(
            Duration::from_secs(5),
            "the upstream's port to bind",
            || TcpListener::bind(("127.0.0.1", port)).ok(),
        );
        l.set_nonblocking(true).expect("nonblocking listener");
        let health = Arc::new(AtomicU16::new(health));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s, st) = (health.clone(), seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((conn, _)) => {
                        let (h, s) = (h.clone(), s.clone());
                        std::thread::spawn(move || serve_app(conn, &h, &s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        AppServer {
            health,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn set_health(&self, status: u16) {
        self.health.store(status, Ordering::Relaxed);
    }

    /// How many requests for exactly `target` (path and query) arrived.
    fn hits(&self, target: &str) -> usize {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter().filter(|t| *t == target).count()
    }
}

impl Drop for AppServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One request on `conn`, answered with `Connection: close`.
fn serve_app(mut conn: TcpStream, health: &AtomicU16, seen: &Mutex<Vec<String>>) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let target = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    seen.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(target.clone());
    let (status, ctype, body) = if target == "/health" {
        let code = health.load(Ordering::Relaxed);
        (code, "text/plain", format!("health {code}"))
    } else if target == APP_PATH {
        let body = format!(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\">\
             <title>{APP_TITLE}</title></head><body><h1 id=\"app-marker\">{APP_MARKER}</h1>\
             <p>The upstream saw <code id=\"app-target\">{}</code></p></body></html>",
            html_escape(&target)
        );
        (200, "text/html; charset=utf-8", body)
    } else {
        (404, "text/plain", "not found".to_string())
    };
    let resp = format!(
        "HTTP/1.1 {status} Test\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(resp.as_bytes());
    let _ = conn.shutdown(Shutdown::Write);
}

/// A TOML basic string holding `s` (JSON's escapes are a subset of TOML's).
fn toml_str(s: &str) -> String {
    Value::from(s).to_string()
}

/// One `[[service]]` table for an upstream on 127.0.0.1:`port`, probed at `/health` every
/// 200 ms with a startup `grace`; `extra` are more `key = value` lines.
fn service(name: &str, port: u16, route: &str, grace: &str, extra: &[String]) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nurl = \"http://127.0.0.1:{port}\"\nroutes = [\"{route}\"]\n\
         health_check = {{ path = \"/health\", interval = \"200ms\", timeout = \"500ms\", grace = \"{grace}\" }}\n\
         {}\n\n",
        extra.join("\n")
    )
}

/// kinfrad with a `--config` file in its temp dir holding `services`.
fn daemon_with(services: &[String]) -> Daemon {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("kinfra.toml");
    std::fs::write(&path, services.concat()).expect("write kinfra.toml");
    let path = path.to_str().expect("UTF-8 temp path").to_string();
    Daemon::start_with(dir, &["--config", &path], &[])
}

/// `/__status__?service=NAME` once `state` is what it reports.
fn wait_state(d: &Daemon, name: &str, state: &str) -> Value {
    eventually(
        LIVE,
        &format!("/__status__ to say {name} is {state}"),
        || {
            let v = common::get(d.addr, &format!("/__status__?service={name}")).json();
            (v["state"] == state).then_some(v)
        },
    )
}

/// The fallback page's steps as `[text, data-status, icon label]`.
fn steps(b: &Browser) -> Option<Value> {
    b.try_js(
        "return Array.prototype.map.call(document.querySelectorAll('#steps li'), function (li) { \
           return [li.querySelector('.txt').textContent, li.getAttribute('data-status'), \
                   li.querySelector('.ico').getAttribute('aria-label')]; });",
        json!([]),
    )
    .ok()
}

fn expected_steps(port: u16, connect: &str, check: &str) -> Value {
    json!([
        [format!("Connecting to port {port}"), connect, connect],
        ["Health check GET /health", check, check],
    ])
}

/// The auto-retry countdown of the 503 and loading pages, in whole seconds.
fn retry_countdown(b: &Browser) -> Option<u64> {
    b.text("countdown")?.trim().parse().ok()
}

/// Count the status polls the page makes from now on (in `window.__polls`).
fn count_polls(b: &Browser) {
    b.js("window.__polls = 0; var f = window.fetch; \
          window.fetch = function () { window.__polls++; return f.apply(this, arguments); }; \
          return 1;");
}

fn polls(b: &Browser) -> u64 {
    b.try_js("return window.__polls || 0;", json!([]))
        .ok()
        .and_then(|v| v.as_u64())
        .unwrap_or(0)
}

/// Watch the tab, which shows a document marked with `window.__marker`, until it shows the
/// upstream's page. Returns the titles of the documents that replaced the marked one, in order
/// (each once), so a test can tell whether anything showed up in between.
fn follow_to_app(b: &Browser, timeout: Duration) -> Vec<String> {
    let start = Instant::now();
    let mut titles: Vec<String> = Vec::new();
    loop {
        let v = b.try_js(
            "return [window.__marker === 1, document.readyState, document.title, \
                     !!document.getElementById('app-marker')];",
            json!([]),
        );
        if let Ok(v) = v
            && v[0] == false
        {
            let title = v[2].as_str().unwrap_or_default().to_string();
            if !title.is_empty() && titles.last() != Some(&title) {
                titles.push(title);
            }
            if v[3] == true && v[1] == "complete" {
                return titles;
            }
        }
        assert!(
            start.elapsed() <= timeout,
            "the upstream's page did not show within {timeout:?}; documents seen: {titles:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Once back on the upstream's page: same URL, reached by `location.reload()`, nothing pushed
/// on the history, and the upstream got the path and query the visitor asked for.
fn assert_back_on_app(b: &Browser, url: &str, history_before: &Value, what: &str) {
    assert_eq!(b.url(), url, "{what}: the URL changed");
    assert_eq!(b.text("app-marker").as_deref(), Some(APP_MARKER), "{what}");
    assert_eq!(
        b.text("app-target").as_deref(),
        Some(APP_PATH),
        "{what}: the upstream saw another path or query"
    );
    assert_eq!(
        b.js("return performance.getEntriesByType('navigation')[0].type;"),
        "reload",
        "{what}: the page should have come back through location.reload()"
    );
    assert_eq!(
        &b.js("return history.length;"),
        history_before,
        "{what}: the return added a history entry"
    );
}

fn wait_conn_live(b: &Browser) {
    b.wait_js(
        LIVE,
        "#conn to report live",
        "return document.getElementById('conn-text').textContent === 'live' \
           && document.getElementById('conn').classList.contains('live');",
    );
}

#[test]
fn unavailable_page_returns_to_the_same_url_when_the_upstream_is_back() {
    let Some(b) = Browser::launch(1280, 900) else {
        return;
    };
    let port = free_port();
    // No fallback_page: the default (loading) gives way to the 503 page once the service is
    // unhealthy, which with no grace is at the first failed probe. A long auto-retry interval,
    // so the countdown's own reload cannot land between the upstream's return and the poll.
    let d = daemon_with(&[service(
        "web",
        port,
        "/",
        "0s",
        &[
            "display_name = \"Web shop\"".into(),
            "fallback_refresh_interval = 30".into(),
        ],
    )]);
    let st = wait_state(&d, "web", "unhealthy");
    assert_eq!(st["error_detail"], "Connection refused", "{st}");

    let url = format!("http://{}{APP_PATH}", d.addr);
    b.goto(&url);
    assert_eq!(
        b.js("return document.title;"),
        "503 · Web shop is unavailable · KInfra"
    );
    assert_eq!(b.url(), url);
    assert_eq!(b.text("service-name").as_deref(), Some("Web shop"));
    assert_eq!(
        b.text("error-detail").as_deref(),
        Some("Connection refused")
    );
    assert_eq!(
        b.js("return document.getElementById('error-detail-row').hidden;"),
        false
    );
    wait_conn_live(&b);
    assert_eq!(b.text("state-text").as_deref(), Some("Unhealthy"));
    assert_eq!(b.text("health").as_deref(), Some("Unhealthy"));
    assert_eq!(b.text("port"), Some(port.to_string()));
    assert_eq!(
        steps(&b).expect("steps"),
        expected_steps(port, "failed", "pending")
    );
    let first = eventually(LIVE, "#countdown to show seconds", || retry_countdown(&b));
    assert!((27..=30).contains(&first), "#countdown {first}");
    let second = eventually(LIVE, "#countdown to tick", || {
        retry_countdown(&b).filter(|s| *s < first)
    });
    eprintln!("503 countdown: {first} -> {second}");
    b.screenshot("fallback-503.png");

    // The upstream comes back on the same port; the test does nothing else.
    let history = b.js("return history.length;");
    b.js("window.__marker = 1; return 1;");
    let started = Instant::now();
    let app = AppServer::start(port, 200);
    let titles = follow_to_app(&b, RECOVER);
    eprintln!("503 page -> upstream page in {:?}", started.elapsed());
    assert_eq!(
        titles,
        [APP_TITLE],
        "something else showed between the 503 page and the upstream's page"
    );
    assert_back_on_app(&b, &url, &history, "after the 503 page");
    assert_eq!(
        app.hits(APP_PATH),
        1,
        "the upstream page was asked for once"
    );
    // The ready-reload keeps a counter to back off when it lands on a fallback page again;
    // 0 means this was the first and only one.
    assert_eq!(
        b.js(
            "var v = JSON.parse(sessionStorage.getItem('kinfra-reload:web') || 'null'); \
              return v && v.n;"
        ),
        0,
        "the page reloaded into a fallback page again before reaching the upstream"
    );
    b.screenshot("fallback-503-recovered.png");
    b.close();
}

#[test]
fn loading_page_shows_progress_and_returns_when_the_upstream_is_ready() {
    let Some(b) = Browser::launch(1280, 900) else {
        return;
    };
    let port = free_port();
    let d = daemon_with(&[service(
        "goapi",
        port,
        "/",
        "30s",
        &[
            "display_name = \"Go API\"".into(),
            "fallback_page = \"loading\"".into(),
            format!("fallback_message = {}", toml_str("Building Go binary…")),
            "fallback_refresh_interval = 3".into(),
        ],
    )]);
    wait_state(&d, "goapi", "starting");

    let url = format!("http://{}{APP_PATH}", d.addr);
    b.goto(&url);
    let loading_title = "Go API is starting · KInfra";
    assert_eq!(b.js("return document.title;"), loading_title);
    assert_eq!(b.text("service-name").as_deref(), Some("Go API"));
    assert_eq!(
        b.text("status-message").as_deref(),
        Some("Building Go binary…")
    );
    assert_eq!(b.text("port"), Some(port.to_string()));
    wait_conn_live(&b);
    assert_eq!(b.text("state-text").as_deref(), Some("Starting"));
    assert_eq!(b.text("health").as_deref(), Some("Starting"));
    assert_eq!(
        steps(&b).expect("steps"),
        expected_steps(port, "active", "pending"),
        "connection refused within the grace period is still 'connecting'"
    );
    assert_eq!(
        b.js("return document.getElementById('steps-box').hidden;"),
        false
    );
    let first = eventually(LIVE, "#countdown to show seconds", || retry_countdown(&b));
    assert!((1..=3).contains(&first), "#countdown {first}");
    b.wait_js(
        LIVE,
        "#countdown to tick down to 1 second",
        "return document.getElementById('countdown').textContent === '1' \
           && document.getElementById('cd-unit').textContent === 'second';",
    );
    b.screenshot("fallback-loading.png");

    // The countdown running out reloads the same URL, into the loading page again.
    b.js("window.__marker = 1; return 1;");
    b.wait_js(
        LIVE,
        "the countdown's reload",
        "return window.__marker !== 1 && document.readyState === 'complete';",
    );
    assert_eq!(b.url(), url);
    assert_eq!(b.js("return document.title;"), loading_title);
    assert_eq!(
        b.js("return performance.getEntriesByType('navigation')[0].type;"),
        "reload"
    );

    // The upstream starts but is not ready yet: connected, health check in progress.
    let history = b.js("return history.length;");
    b.js("window.__marker = 1; return 1;");
    let app = AppServer::start(port, 503);
    eventually(LIVE, "the steps to show the health check running", || {
        (steps(&b)? == expected_steps(port, "completed", "active")).then_some(())
    });
    assert_eq!(
        b.text("status-message").as_deref(),
        Some("Building Go binary…")
    );
    assert_eq!(
        app.hits(APP_PATH),
        0,
        "visitors reached an unready upstream"
    );
    b.screenshot("fallback-loading-checking.png");

    // Ready: the page takes the visitor to the URL they asked for. The countdown may reload
    // into the loading page once more on the way, but nothing else may show.
    let started = Instant::now();
    app.set_health(200);
    let titles = follow_to_app(&b, RECOVER);
    eprintln!(
        "loading page -> upstream page in {:?} via {titles:?}",
        started.elapsed()
    );
    assert!(
        titles.iter().all(|t| t == loading_title || t == APP_TITLE),
        "only the loading page may show before the upstream's page: {titles:?}"
    );
    assert_back_on_app(&b, &url, &history, "after the loading page");
    assert_eq!(app.hits(APP_PATH), 1);
    b.close();
}

#[test]
fn live_page_updates_in_place_then_returns_to_the_url() {
    let Some(b) = Browser::launch(1280, 900) else {
        return;
    };
    let port = free_port();
    let d = daemon_with(&[service(
        "web",
        port,
        "/",
        "30s",
        &[
            "fallback_page = \"live\"".into(),
            format!("fallback_message = {}", toml_str("Warming the caches…")),
        ],
    )]);
    wait_state(&d, "web", "starting");

    let url = format!("http://{}{APP_PATH}", d.addr);
    b.goto(&url);
    assert_eq!(b.js("return document.title;"), "web · live status · KInfra");
    assert_eq!(
        b.text("status-message").as_deref(),
        Some("Warming the caches…")
    );
    wait_conn_live(&b);
    assert_eq!(
        steps(&b).expect("steps"),
        expected_steps(port, "active", "pending")
    );
    assert_eq!(
        b.js("return document.querySelectorAll('#countdown').length;"),
        0,
        "the live page has no reload countdown"
    );
    let history = b.js("return history.length;");
    b.js("window.__marker = 1; return 1;");
    count_polls(&b);

    // The upstream accepts connections but is not healthy: the steps change in place.
    let app = AppServer::start(port, 500);
    eventually(LIVE, "the steps to change in place", || {
        (steps(&b)? == expected_steps(port, "completed", "active")).then_some(())
    });
    assert_eq!(marker(&b), Some(true), "the live page reloaded");
    let after_change = polls(&b);
    eventually(
        Duration::from_secs(8),
        "three more polls with the page kept",
        || (polls(&b) >= after_change + 3).then_some(()),
    );
    assert_eq!(marker(&b), Some(true), "the live page reloaded");
    assert_eq!(
        steps(&b).expect("steps"),
        expected_steps(port, "completed", "active")
    );
    assert_eq!(b.text("state-text").as_deref(), Some("Starting"));
    assert_eq!(b.text("conn-text").as_deref(), Some("live"));
    assert_eq!(
        app.hits(APP_PATH),
        0,
        "visitors reached an unready upstream"
    );
    eprintln!("live page: {} polls, no reload", polls(&b));
    b.screenshot("fallback-live.png");

    let started = Instant::now();
    app.set_health(200);
    let titles = follow_to_app(&b, RECOVER);
    eprintln!("live page -> upstream page in {:?}", started.elapsed());
    assert_eq!(
        titles,
        [APP_TITLE],
        "something else showed between the live page and the upstream's page"
    );
    assert_back_on_app(&b, &url, &history, "after the live page");
    assert_eq!(app.hits(APP_PATH), 1);
    b.close();
}

#[test]
fn fallback_pages_show_hostile_names_and_messages_as_text() {
    let Some(b) = Browser::launch(1280, 900) else {
        return;
    };
    let name = "<img src=x onerror=alert(1)><script>window.__pwned=1</script>";
    let msg = r#"</p><script>window.__pwned=2</script><img src=y onerror="window.__pwned=3"> & &amp; "q""#;
    let msg2 =
        r#"<b onmouseover=x>bold?</b><iframe src="javascript:window.parent.__pwned=4"></iframe>"#;
    let (live_port, down_port) = (free_port(), free_port());
    let services = |message: &str| {
        [
            service(
                "boot",
                live_port,
                "/boot/",
                "30s",
                &[
                    format!("display_name = {}", toml_str(name)),
                    "fallback_page = \"live\"".into(),
                    format!("fallback_message = {}", toml_str(message)),
                ],
            ),
            service(
                "down",
                down_port,
                "/down/",
                "0s",
                &[
                    format!("display_name = {}", toml_str(name)),
                    format!("fallback_message = {}", toml_str(message)),
                    "fallback_refresh_interval = 30".into(),
                ],
            ),
        ]
    };
    let d = daemon_with(&services(msg));
    wait_state(&d, "down", "unhealthy");

    let check = |message: Option<&str>, when: &str| {
        assert_eq!(
            b.text("service-name").as_deref(),
            Some(name),
            "{when}: #service-name"
        );
        if let Some(m) = message {
            assert_eq!(
                b.text("status-message").as_deref(),
                Some(m),
                "{when}: #status-message"
            );
        }
        let title = b.js("return document.title;");
        assert!(
            title.as_str().is_some_and(|t| t.contains(name)),
            "{when}: title {title}"
        );
        assert_eq!(
            b.js(
                "return document.querySelectorAll('#service-name *, #status-message *, \
                  #error-detail *').length;"
            ),
            0,
            "{when}: markup was parsed into elements"
        );
        assert_eq!(
            b.js("return [document.images.length, document.scripts.length, \
                          document.querySelectorAll('iframe').length];"),
            json!([0, 1, 0]),
            "{when}: [images, scripts, frames] in the page"
        );
        assert_eq!(
            b.js("return typeof window.__pwned;"),
            "undefined",
            "{when}: injected script ran"
        );
    };

    // The live page: server-rendered, then kept by the polls.
    b.goto(&format!("http://{}/boot/x", d.addr));
    check(Some(msg), "live page");
    wait_conn_live(&b);
    b.js("window.__marker = 1; return 1;");
    count_polls(&b);
    eventually(LIVE, "two polls", || (polls(&b) >= 2).then_some(()));
    check(Some(msg), "live page after polls");

    // A reload of the config changes the message; the poll writes it into the page.
    let cfg = d.dir.path().join("kinfra.toml");
    std::fs::write(&cfg, services(msg2).concat()).expect("rewrite kinfra.toml");
    d.ctl_ok(&["reload"]);
    eventually(LIVE, "#status-message to take the new hostile text", || {
        (b.text("status-message")? == msg2).then_some(())
    });
    // Let an injected image or frame load (and fail) if there was one.
    let seen = polls(&b);
    eventually(LIVE, "another poll", || (polls(&b) > seen).then_some(()));
    check(Some(msg2), "live page after a live update");
    assert_eq!(marker(&b), Some(true), "the live page reloaded");
    b.screenshot("fallback-live-hostile.png");

    // The 503 page of the other service (its message is kinfrad's own, not the fallback one).
    b.goto(&format!("http://{}/down/x", d.addr));
    assert_eq!(
        b.js("return document.title;"),
        json!(format!("503 · {name} is unavailable · KInfra"))
    );
    wait_conn_live(&b);
    check(None, "503 page");
    assert_eq!(
        b.text("error-detail").as_deref(),
        Some("Connection refused")
    );
    b.screenshot("fallback-503-hostile.png");
    b.close();
}

#[test]
fn fallback_pages_fit_a_phone() {
    let Some(b) = Browser::launch_phone(390, 844) else {
        return;
    };
    let long_name = "Customer-accounts-and-billing-reconciliation-worker-eu-central-1-primary";
    let long_msg = "Compiling /srv/build/cmd/billing-reconciliation-worker/internal/ledger/\
                    postgres_migrations_v2024_11_03_add_partitioned_indexes.go and friends…";
    let (down_port, boot_port) = (free_port(), free_port());
    let d = daemon_with(&[
        service(
            "billing-reconciliation-worker-eu-central-1",
            down_port,
            "/down/",
            "0s",
            &[
                format!("display_name = {}", toml_str(long_name)),
                "fallback_refresh_interval = 30".into(),
            ],
        ),
        service(
            "boot",
            boot_port,
            "/boot/",
            "30s",
            &[
                format!("display_name = {}", toml_str(long_name)),
                "fallback_page = \"loading\"".into(),
                format!("fallback_message = {}", toml_str(long_msg)),
                "fallback_refresh_interval = 30".into(),
            ],
        ),
    ]);
    wait_state(
        &d,
        "billing-reconciliation-worker-eu-central-1",
        "unhealthy",
    );
    let path = "/a/rather/long/path/that/goes/on/and/on/and/on/and/on?with=a&long=query";

    b.goto(&format!("http://{}/down{path}", d.addr));
    assert!(
        b.js("return document.title;")
            .as_str()
            .is_some_and(|t| t.starts_with("503 ·")),
        "not the 503 page"
    );
    wait_conn_live(&b);
    assert_eq!(
        b.text("error-detail").as_deref(),
        Some("Connection refused")
    );
    let (sw, iw) = assert_no_overflow(&b, "503 page");
    assert_eq!(iw, 390, "viewport is not phone-sized");
    eprintln!("phone 503: scrollWidth {sw}, innerWidth {iw}");
    b.screenshot("fallback-503-phone.png");

    b.goto(&format!("http://{}/boot{path}", d.addr));
    assert_eq!(b.text("status-message").as_deref(), Some(long_msg));
    wait_conn_live(&b);
    assert_eq!(
        steps(&b).expect("steps"),
        expected_steps(boot_port, "active", "pending")
    );
    let (sw, iw) = assert_no_overflow(&b, "loading page");
    eprintln!("phone loading: scrollWidth {sw}, innerWidth {iw}");
    b.screenshot("fallback-loading-phone.png");
    b.close();
}
