//! The dashboard's Events panel (`/kinfra`) in a real headless Chromium, against the real
//! kinfrad and a real child process: the event log shows newest first, a new event appears live
//! with no reload (pushed as `kinfraEvent` over `/__events__`), hostile text in an event shows
//! as text, and while the live stream is down the panel is polled from `/api/kinfra/events`.
//! A file of its own so tests/dashboard_browser.rs stays small; the harness is tests/common.

mod common;
#[path = "browser/webdriver.rs"]
mod webdriver;

use std::time::Duration;

use common::{Daemon, dashboard_daemon, pid_of, service, wait_service};
use serde_json::{Value, json};
use webdriver::Browser;

const T: Duration = Duration::from_secs(15);

/// The panel's rows, top to bottom: [seq, kind, service, reason].
fn rows(b: &Browser) -> Vec<Value> {
    b.try_js(
        "return Array.prototype.map.call(document.querySelectorAll('#events-body tr[data-seq]'), \
         function (tr) { var c = tr.cells; return [Number(tr.getAttribute('data-seq')), \
         c[1].textContent, c[2].textContent, c[4].textContent]; });",
        json!([]),
    )
    .ok()
    .and_then(|v| v.as_array().cloned())
    .unwrap_or_default()
}

/// Wait until the top row is a `kind` event of `service`; returns it.
fn wait_top(b: &Browser, kind: &str, service: &str) -> Value {
    common::eventually(T, &format!("a {kind} row of {service} on top"), || {
        rows(b)
            .first()
            .filter(|r| r[1] == kind && r[2] == service)
            .cloned()
    })
}

fn open(b: &Browser, d: &Daemon) {
    b.goto(&format!("http://{}/kinfra", d.addr));
    // The backlog: the web service's first start is in it.
    common::eventually(T, "the backlog in the panel", || {
        rows(b)
            .iter()
            .any(|r| r[1] == "process_start" && r[2] == "web")
            .then_some(())
    });
    // Anything that reloads the page forgets this.
    b.js("window.__noReload = 1; return 1;");
}

#[test]
fn new_events_show_live_newest_first_and_as_text() {
    let Some(b) = Browser::launch(1280, 1000) else {
        return;
    };
    let d = dashboard_daemon("", "Web", "INFO hi");
    open(&b, &d);

    // Hostile text in an event (a maintenance message is its reason).
    let hostile = "<img src=x onerror=\"window.__xss=1\"><b>down</b>";
    d.ctl_ok(&["maint", "enter", "--message", hostile]);
    let top = wait_top(&b, "maintenance_on", "ALL");
    assert_eq!(top[3], hostile, "the reason is not shown as text: {top}");
    assert_eq!(
        b.js("return document.querySelectorAll('#events-body img, #events-body b').length;"),
        0
    );
    assert_eq!(b.js("return window.__xss || 0;"), 0, "hostile text ran");

    // A killed child: its exit shows on top, then its restart, still without a reload.
    let pid = pid_of(&service(&d, "web"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the child");
    common::eventually(T, "the exit row", || {
        rows(&b)
            .iter()
            .find(|r| r[1] == "process_exit" && r[2] == "web")
            .filter(|r| r[3].as_str().is_some_and(|t| t.contains("SIGKILL")))
            .cloned()
    });
    let all = rows(&b);
    let seqs: Vec<u64> = all.iter().filter_map(|r| r[0].as_u64()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first, each once: {seqs:?}"
    );
    assert_eq!(
        b.js("return window.__noReload || 0;"),
        1,
        "the page reloaded"
    );
    assert_eq!(b.text("events-count"), Some(all.len().to_string()));
    b.js("document.getElementById('events').scrollIntoView(); return 1;");
    b.screenshot("dashboard-events.png");
}

#[test]
fn while_the_stream_is_down_the_panel_is_polled() {
    let Some(b) = Browser::launch(1280, 900) else {
        return;
    };
    let d = dashboard_daemon("", "Web", "INFO hi");
    open(&b, &d);
    // Without EventSource the page polls (as in a browser or proxy that has none): reload
    // with it taken away before the page's script runs.
    b.cdp(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({"source": "delete window.EventSource; window.EventSource = undefined;"}),
    );
    b.goto(&format!("http://{}/kinfra", d.addr));
    common::eventually(T, "the backlog, polled", || {
        rows(&b)
            .iter()
            .any(|r| r[1] == "process_start" && r[2] == "web")
            .then_some(())
    });
    b.wait_js(
        T,
        "the page to poll",
        "return window.kinfraDashboard.source === 'poll';",
    );
    d.ctl_ok(&["drain", "start", "--duration", "1h"]);
    let top = wait_top(&b, "drain_started", "ALL");
    assert!(top[3].as_str().is_some_and(|t| t.contains("1h")), "{top}");
    wait_service(&d, "web", "running");
}
