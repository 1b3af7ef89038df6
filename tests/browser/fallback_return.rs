//! Fallback pages of a proxied upstream that bring the visitor back: the 503, loading and live
//! pages poll, show their steps and return to the very URL asked for once the upstream is
//! healthy, by a reload and with nothing pushed on the history. The maintenance-look fallback
//! (`fallback_page = "maintenance"`) does the same, and never reloads before.

use std::time::{Duration, Instant};

use crate::LIVE;
use crate::app::*;
use crate::common::{eventually, free_port};
use crate::page::*;
use crate::webdriver::Browser;
use serde_json::{Value, json};

/// How long a fallback page may take to bring the visitor back once the upstream is healthy:
/// probes run every 200 ms while it is not, the 503 and loading pages poll every 1.5 s, the live
/// page every 2 s.
const RECOVER: Duration = Duration::from_secs(4);

/// The auto-retry countdown of the 503 and loading pages, in whole seconds.
fn retry_countdown(b: &Browser) -> Option<u64> {
    b.text("countdown")?.trim().parse().ok()
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
    wait_live(&b);
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
        STARTING,
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
    wait_live(&b);
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
        STARTING,
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
    wait_live(&b);
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

/// Counts the documents the tab loads (each navigation or reload) in sessionStorage, from a
/// script Chromium runs at the start of every new document.
const LOAD_COUNTER: &str = "try { sessionStorage.setItem('test-loads', \
     String(Number(sessionStorage.getItem('test-loads') || 0) + 1)); } catch (e) {}";

fn loads(b: &Browser) -> Value {
    b.js("return Number(sessionStorage.getItem('test-loads') || 0);")
}

#[test]
fn maintenance_look_fallback_stays_put_then_returns_when_the_service_is_back() {
    let Some(b) = Browser::launch(1280, 900) else {
        return;
    };
    let port = free_port();
    let msg = "Moving the shop to a bigger server";
    let d = daemon_with(&[service(
        "web",
        port,
        "/",
        "0s",
        &[
            "fallback_page = \"maintenance\"".into(),
            format!("fallback_message = {}", toml_str(msg)),
        ],
    )]);
    wait_state(&d, "web", "unhealthy");
    b.cdp(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({ "source": LOAD_COUNTER }),
    );

    let url = format!("http://{}{APP_PATH}", d.addr);
    b.goto(&url);
    assert_eq!(
        b.js("return document.title;"),
        "Down for maintenance · KInfra"
    );
    assert_eq!(b.text("message").as_deref(), Some(msg));
    wait_live(&b);
    assert_eq!(loads(&b), 1);
    b.js("window.__marker = 1; return 1;");
    count_polls(&b);

    // Maintenance is off, and that is no reason to leave: the page follows the service, which
    // stays down, so for 10 s nothing reloads.
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(marker(&b), Some(true), "the page reloaded");
    assert_eq!(loads(&b), 1, "documents loaded in the tab");
    let seen = polls(&b);
    assert!(seen >= 3, "the page polled {seen} times in 10 s");
    let urls = b.js(
        "return performance.getEntriesByType('resource').map(function (e) { \
           return new URL(e.name).pathname + new URL(e.name).search; });",
    );
    let urls: Vec<&str> = urls
        .as_array()
        .expect("resource list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        urls.contains(&"/__status__?service=web"),
        "the page does not poll its service: {urls:?}"
    );
    assert!(
        !urls.iter().any(|u| u.starts_with("/api/maintenance/")),
        "the page polls the maintenance status: {urls:?}"
    );
    assert_eq!(b.text("message").as_deref(), Some(msg));
    assert_eq!(b.text("conn-text").as_deref(), Some("live"));
    eprintln!("maintenance-look fallback: {seen} polls in 10 s, 1 load");
    b.screenshot("fallback-maintenance-look.png");

    // The service starts: the page takes the visitor back to the URL they asked for.
    let history = b.js("return history.length;");
    let started = Instant::now();
    let app = AppServer::start(port, 200);
    let titles = follow_to_app(&b, RECOVER);
    eprintln!(
        "maintenance-look page -> upstream page in {:?}",
        started.elapsed()
    );
    assert_eq!(
        titles,
        [APP_TITLE],
        "something else showed between the fallback page and the upstream's page"
    );
    assert_back_on_app(&b, &url, &history, "after the maintenance-look page");
    assert_eq!(app.hits(APP_PATH), 1);
    assert_eq!(loads(&b), 2, "documents loaded in the tab");
    b.close();
}
