//! The live dashboard (`/kinfra`) and the log page (`/__logs__/`) in a real headless Chromium,
//! driven through ChromeDriver against the real kinfrad and real child processes: cards for the
//! configured services, a killed process turning its card red with no reload, logging in and
//! clicking Restart, the maintenance countdown, a drain's progress, the live log tail and search, hostile text, a
//! phone-sized screen, and the connection pill when kinfrad goes away. Screenshots go to
//! `artifacts/browser/`.

mod common;
#[path = "browser/webdriver.rs"]
mod webdriver;

use std::time::{Duration, Instant};

use common::{Daemon, dashboard_daemon, eventually, pid_of, service, wait_service};
use serde_json::json;
use webdriver::Browser;

/// The bound for a state change to show: 3 s, with no reload.
const PUSHED: Duration = Duration::from_secs(3);
const T: Duration = Duration::from_secs(15);

/// `data-state` of a service's card (None while it isn't there).
fn card_state(b: &Browser, id: &str) -> Option<String> {
    b.try_js(
        "var c = document.getElementById('card-' + arguments[0]); \
         return c ? c.getAttribute('data-state') : null;",
        json!([id]),
    )
    .ok()?
    .as_str()
    .map(str::to_string)
}

fn card_class(b: &Browser, id: &str) -> String {
    b.try_js(
        "var c = document.getElementById('card-' + arguments[0]); return c ? c.className : '';",
        json!([id]),
    )
    .ok()
    .and_then(|v| v.as_str().map(str::to_string))
    .unwrap_or_default()
}

fn wait_card(b: &Browser, id: &str, state: &str, within: Duration) {
    eventually(within, &format!("card {id} to show {state}"), || {
        (card_state(b, id).as_deref() == Some(state)).then_some(())
    });
}

/// [`wait_card`], saying on a timeout what the page and kinfrad show.
fn wait_card_seen(b: &Browser, d: &Daemon, id: &str, state: &str, within: Duration) {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if card_state(b, id).as_deref() == Some(state) {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let page = b
        .try_js(
            "var t = document.getElementById('toast'); \
             return JSON.stringify({toast: t.hidden ? null : t.textContent, \
               source: window.kinfraDashboard && window.kinfraDashboard.source, \
               renders: window.kinfraDashboard && window.kinfraDashboard.renders});",
            json!([]),
        )
        .unwrap_or_default();
    panic!(
        "card {id} shows {:?}, not {state}, after {within:?}; page {page}; kinfrad says {}\n{}",
        card_state(b, id),
        service(d, id),
        d.log_text()
    );
}

/// No element sticks out of the viewport sideways.
fn assert_no_overflow(b: &Browser, what: &str) {
    let v = b.js("return [document.documentElement.scrollWidth, window.innerWidth];");
    let (sw, iw) = (v[0].as_u64().unwrap_or(0), v[1].as_u64().unwrap_or(0));
    assert!(sw <= iw, "{what}: page is {sw}px wide in a {iw}px viewport");
}

/// Load `/kinfra` and wait until the `web` card says running.
fn open_dashboard(b: &Browser, d: &Daemon) {
    b.goto(&format!("http://{}/kinfra", d.addr));
    wait_card(b, "web", "running", T);
}

/// Click a service card's action button, once it is enabled: the page disables a card's buttons
/// while one of its actions is in flight, and the card can show the new state (pushed over SSE)
/// before that action's POST has answered. A click on a disabled button does nothing.
fn click(b: &Browser, id: &str, action: &str) {
    eventually(
        T,
        &format!("the {action} button of {id} to be enabled"),
        || {
            let clicked = b
            .try_js(
                "var e = document.querySelector('#card-' + arguments[0] + ' [data-action=' + arguments[1] + ']'); \
                 if (!e || e.disabled) return 0; e.click(); return 1;",
                json!([id, action]),
            )
            .unwrap_or_else(|e| panic!("click {action} on {id}: {e}"));
            (clicked == 1).then_some(())
        },
    );
}

/// `kill -9` the process kinfrad runs for service `name`.
fn kill9(d: &Daemon, name: &str) {
    let pid = pid_of(&service(d, name));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
}

fn login_in_browser(b: &Browser, d: &Daemon, next: &str) {
    b.goto(&format!("http://{}/kinfra/login?next={next}", d.addr));
    b.js(&format!(
        "document.getElementById('token').value = {}; document.getElementById('login').click(); return 1;",
        json!(d.token())
    ));
    let want = format!("http://{}{next}", d.addr);
    eventually(T, "the login to land back on the page", || {
        (b.url() == want).then_some(())
    });
}

#[test]
fn a_killed_service_turns_red_live_and_restart_after_login_brings_it_back() {
    let Some(b) = Browser::launch(1280, 900) else {
        return;
    };
    let d = dashboard_daemon("", "Web shop", "INFO hello from the shop");
    open_dashboard(&b, &d);
    assert!(
        card_state(&b, "ext").is_some(),
        "no card for the url-only service"
    );
    assert_eq!(b.text("stat-total").as_deref().map(str::trim), Some("2"));
    let card = b.js("return document.getElementById('card-web').textContent;");
    let card = card.as_str().unwrap_or_default();
    for want in ["Web shop", "hello from the shop"] {
        assert!(card.contains(want), "card lacks {want:?}: {card}");
    }
    assert!(card_class(&b, "web").split(' ').any(|c| c == "ok"));
    b.wait_js(
        T,
        "the live event stream",
        "return window.kinfraDashboard && window.kinfraDashboard.source === 'sse';",
    );
    b.screenshot("dashboard.png");

    // kill -9 the service's process: its card turns red within 3 s, with no reload.
    b.js("window.__marker = 1; return 1;");
    let t0 = Instant::now();
    kill9(&d, "web");
    wait_card(&b, "web", "crashed", PUSHED);
    eprintln!("kill -9 → red card in {:?}", t0.elapsed());
    assert!(
        card_class(&b, "web").split(' ').any(|c| c == "bad"),
        "{}",
        card_class(&b, "web")
    );
    assert_eq!(b.js("return window.__marker;"), 1, "the page reloaded");
    let errors: u64 = b
        .text("stat-errors")
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    assert!(errors >= 1, "the stats bar counts no error");
    b.screenshot("dashboard-crashed.png");

    // Restart needs a login: without one the page says so and nothing happens.
    click(&b, "web", "restart");
    b.wait_js(
        T,
        "a 'log in first' notice",
        "var t = document.getElementById('toast'); \
         return !t.hidden && /log in first/i.test(t.textContent);",
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(card_state(&b, "web").as_deref(), Some("crashed"));

    login_in_browser(&b, &d, "/kinfra");
    wait_card(&b, "web", "crashed", T);
    click(&b, "web", "restart");
    wait_card(&b, "web", "running", T);
    assert!(card_class(&b, "web").split(' ').any(|c| c == "ok"));
    wait_service(&d, "web", "running");
    b.screenshot("dashboard-restarted.png");

    // Stop and Start from the page, too.
    click(&b, "web", "stop");
    wait_card_seen(&b, &d, "web", "stopped", T);
    click(&b, "web", "start");
    wait_card_seen(&b, &d, "web", "running", T);
}

#[test]
fn maintenance_countdown_ticks_and_routes_show() {
    let Some(b) = Browser::launch(1280, 900) else {
        return;
    };
    let d = dashboard_daemon("", "Web", "INFO hi");
    open_dashboard(&b, &d);
    let routes = b.text("routes").unwrap_or_default();
    assert!(
        routes.contains("/ext/") && routes.contains("web"),
        "{routes}"
    );
    d.ctl_ok(&[
        "maint",
        "enter",
        "--message",
        "Upgrading the database",
        "--countdown",
        "600",
    ]);
    let first = eventually(T, "the countdown to show", || {
        let t = b.text("maint-countdown")?;
        clock_secs(&t)
    });
    assert!((590..=600).contains(&first), "{first}");
    let later = eventually(PUSHED, "the countdown to tick", || {
        clock_secs(&b.text("maint-countdown")?).filter(|s| *s < first)
    });
    eprintln!("dashboard countdown {first} → {later}");
    let m = b.text("maint").unwrap_or_default();
    assert!(m.contains("Upgrading the database"), "{m}");
    b.screenshot("dashboard-maintenance.png");
    d.ctl_ok(&["maint", "exit"]);
    b.wait_js(
        T,
        "maintenance to end on the page",
        "return !/Upgrading the database/.test(document.getElementById('maint').textContent);",
    );
}

#[test]
fn drain_progress_shows_live() {
    let Some(b) = Browser::launch(1280, 900) else {
        return;
    };
    let d = dashboard_daemon("", "Web", "INFO hi");
    open_dashboard(&b, &d);
    let hidden = "return document.getElementById('drain').hidden;";
    assert_eq!(
        b.js(hidden),
        json!(true),
        "the drain panel shows with no drain"
    );
    d.ctl_ok(&["drain", "start", "--target", "web", "--duration", "4s"]);
    let pct = |b: &Browser| -> Option<u64> {
        let t = b.text("drain-state")?;
        t.strip_prefix("Draining ")?.strip_suffix('%')?.parse().ok()
    };
    let first = eventually(T, "the drain's progress to show", || pct(&b));
    let later = eventually(PUSHED, "the drain's progress to move", || {
        pct(&b).filter(|p| *p > first)
    });
    eprintln!("dashboard drain progress {first}% → {later}%");
    let text = b.text("drain-text").unwrap_or_default();
    assert!(text.starts_with("web (web): "), "{text}");
    let routes = b.text("routes").unwrap_or_default();
    assert!(routes.contains("draining"), "{routes}");
    b.js("document.getElementById('drain').scrollIntoView({block: 'center'}); return true;");
    b.screenshot("dashboard-drain.png");
    b.wait_js(
        T,
        "the drain to show as drained",
        "return document.getElementById('drain-state').textContent === 'Drained';",
    );
    b.screenshot("dashboard-drained.png");
    d.ctl_ok(&["drain", "stop"]);
    b.wait_js(T, "the drain panel to go", hidden);
    // What a visitor's browser gets once a drain refuses everything.
    d.ctl_ok(&["drain", "start", "--target", "web", "--duration", "0s"]);
    b.goto(&format!("http://{}/", d.addr));
    b.wait_js(
        T,
        "the drain page",
        "return /switching to a new version/.test(document.body.textContent);",
    );
    assert_no_overflow(&b, "the drain page");
    b.screenshot("drain-page.png");
    d.ctl_ok(&["drain", "stop"]);
}

/// "09:59", "1:02:03" → seconds.
fn clock_secs(t: &str) -> Option<u64> {
    let t = t.trim();
    let parts: Vec<u64> = t
        .split(':')
        .map(|p| p.trim().parse().ok())
        .collect::<Option<_>>()?;
    match parts[..] {
        [m, s] => Some(m * 60 + s),
        [h, m, s] => Some(h * 3600 + m * 60 + s),
        _ => None,
    }
}

#[test]
fn log_page_tails_live_and_searches() {
    let Some(b) = Browser::launch(1280, 900) else {
        return;
    };
    let d = dashboard_daemon("", "Web", "WARN first line from the app");
    b.goto(&format!("http://{}/__logs__/web", d.addr));
    b.wait_js(
        T,
        "the first line",
        "return /first line from the app/.test(document.getElementById('log').textContent);",
    );
    b.wait_js(
        T,
        "the live tail",
        "return window.kinfraLogs && window.kinfraLogs.source === 'sse';",
    );
    for i in 0..5 {
        common::get(d.addr, &format!("/tail-check-{i}"));
    }
    b.wait_js(
        T,
        "new lines to arrive live",
        "return /tail-check-4/.test(document.getElementById('log').textContent);",
    );
    b.js(
        "var s = document.getElementById('search'); s.value = 'tail-check-3'; \
          s.dispatchEvent(new Event('input', {bubbles: true})); return 1;",
    );
    // Only the matching line stays visible ("1 of N lines").
    b.wait_js(
        T,
        "the search to leave only the matching line",
        "var v = []; document.querySelectorAll('#log > *').forEach(function (e) { \
           if (!e.hidden) v.push(e.textContent); }); \
         return v.length === 1 && /tail-check-3/.test(v[0]) && window.kinfraLogs.shown === 1;",
    );
    let count = b.text("count").unwrap_or_default();
    assert!(count.starts_with("1 of "), "{count}");
    b.screenshot("logs.png");
}

#[test]
fn hostile_names_and_lines_show_as_text_and_the_page_fits_a_phone() {
    let Some(b) = Browser::launch_phone(360, 800) else {
        return;
    };
    let name = "<img src=x onerror=\"window.__xss=1\">Shop";
    let line = "ERROR <script>window.__xss=2</script><b>bold?</b>";
    let d = dashboard_daemon("", name, line);
    open_dashboard(&b, &d);
    let card = b.js("return document.getElementById('card-web').textContent;");
    let card = card.as_str().unwrap_or_default();
    assert!(card.contains(name), "the name is not shown as text: {card}");
    assert!(
        card.contains("<script>window.__xss=2</script>"),
        "the line is not shown as text: {card}"
    );
    assert_eq!(b.js("return document.querySelectorAll('#card-web img, #card-web b, #card-web script').length;"), 0);
    assert_eq!(b.js("return window.__xss || 0;"), 0, "hostile text ran");
    assert_no_overflow(&b, "dashboard on a phone");
    b.screenshot("dashboard-phone.png");
    b.goto(&format!("http://{}/__logs__/web", d.addr));
    b.wait_js(
        T,
        "the log line",
        "return /bold\\?/.test(document.getElementById('log').textContent);",
    );
    assert_eq!(
        b.js("return document.querySelectorAll('#log b, #log script').length;"),
        0
    );
    assert_eq!(b.js("return window.__xss || 0;"), 0, "hostile text ran");
    assert_no_overflow(&b, "log page on a phone");
}

#[test]
fn the_page_says_when_kinfrad_is_gone() {
    let Some(b) = Browser::launch(1280, 900) else {
        return;
    };
    let mut d = dashboard_daemon("", "Web", "INFO hi");
    open_dashboard(&b, &d);
    b.wait_js(
        T,
        "the live event stream",
        "return window.kinfraDashboard.source === 'sse';",
    );
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.wait_exit(T);
    b.wait_js(
        T,
        "the connection pill to say reconnecting or offline",
        "return /reconnecting|offline/i.test(document.getElementById('conn').textContent);",
    );
    b.screenshot("dashboard-offline.png");
}

#[test]
fn a_login_in_one_tab_reaches_the_others() {
    let Some(b) = Browser::launch(1280, 900) else {
        return;
    };
    let d = dashboard_daemon("", "Web", "INFO hi");
    let dash = format!("http://{}/kinfra", d.addr);
    b.goto(&dash);
    wait_card(&b, "web", "running", T);
    let first = b.tab();
    assert!(
        b.js("return !!document.getElementById('login');") == true,
        "no Log in link"
    );
    // Log in in a second tab; the first learns of it (BroadcastChannel) and shows the session.
    let second = b.new_tab();
    login_in_browser(&b, &d, "/kinfra");
    b.switch_to(&first);
    b.wait_js(
        T,
        "the first tab to show the login",
        "return !!document.getElementById('logout') && !document.getElementById('login');",
    );
    // Stop from the second tab: the first shows it live.
    b.switch_to(&second);
    wait_card(&b, "web", "running", T);
    click(&b, "web", "stop");
    b.switch_to(&first);
    wait_card(&b, "web", "stopped", T);
}

#[test]
fn without_event_streams_the_page_polls_and_stays_live() {
    let Some(b) = Browser::launch(1280, 900) else {
        return;
    };
    let d = dashboard_daemon("", "Web", "INFO hi");
    // A proxy in between that won't pass event streams, as some do: block /__events__.
    b.cdp("Network.enable", json!({}));
    b.cdp(
        "Network.setBlockedURLs",
        json!({ "urls": ["*/__events__*"] }),
    );
    open_dashboard(&b, &d);
    b.wait_js(
        T,
        "the page to fall back to polling",
        "return window.kinfraDashboard.source === 'poll' && /polling/i.test(document.getElementById('conn').textContent);",
    );
    kill9(&d, "web");
    // Polls every 2 s: red within one poll or two.
    wait_card(&b, "web", "crashed", Duration::from_secs(6));
    b.screenshot("dashboard-polling.png");
}

#[test]
fn maintenance_is_entered_and_left_from_the_page() {
    let Some(b) = Browser::launch(1280, 900) else {
        return;
    };
    let d = dashboard_daemon("", "Web", "INFO hi");
    login_in_browser(&b, &d, "/kinfra");
    wait_card(&b, "web", "running", T);
    // A refused value shows kinfrad's error on the page.
    b.js(
        "document.getElementById('maint-in-message').value = 'Upgrading'; \
          document.getElementById('maint-in-url').value = 'ftp://nowhere'; \
          document.getElementById('maint-enter').click(); return 1;",
    );
    b.wait_js(
        T,
        "the refusal to show",
        "var e = document.getElementById('maint-error'); return !e.hidden && e.textContent.length > 0;",
    );
    assert_eq!(
        common::get(d.addr, "/api/maintenance/status").json()["isActive"],
        false,
        "a refused request entered maintenance"
    );
    b.js("document.getElementById('maint-in-url').value = ''; \
          document.getElementById('maint-in-countdown').value = '300'; \
          document.getElementById('maint-enter').click(); return 1;");
    b.wait_js(
        T,
        "the page to show maintenance on",
        "return /Upgrading/.test(document.getElementById('maint').textContent) \
           && !document.getElementById('maint-exit').disabled;",
    );
    let v = common::get(d.addr, "/api/maintenance/status").json();
    assert_eq!(v["isActive"], true);
    assert_eq!(v["message"], "Upgrading");
    let cd = v["countdown"].as_u64().unwrap_or(0);
    assert!((290..=300).contains(&cd), "countdown {cd}");
    // Visitors now get the maintenance page.
    assert_eq!(common::get_html(d.addr, "/").status, 503);
    b.js("document.getElementById('maint-exit').click(); return 1;");
    eventually(T, "maintenance to end", || {
        (common::get(d.addr, "/api/maintenance/status").json()["isActive"] == false).then_some(())
    });
    b.wait_js(
        T,
        "the page to show maintenance off",
        "return document.getElementById('maint-exit').disabled;",
    );
}

#[test]
fn maintenance_records_are_listed_and_left_one_by_one() {
    let Some(b) = Browser::launch(1280, 900) else {
        return;
    };
    let d = dashboard_daemon("", "Web", "INFO hi");
    login_in_browser(&b, &d, "/kinfra");
    wait_card(&b, "web", "running", T);
    d.ctl_ok(&[
        "maint",
        "enter",
        "--target",
        "ext",
        "--message",
        "The external service moves",
        "--countdown",
        "900",
    ]);
    // Entered from the page, with a target.
    b.js(
        "document.getElementById('maint-in-message').value = 'Web upgrade'; \
          document.getElementById('maint-in-target').value = 'web'; \
          document.getElementById('maint-enter').click(); return 1;",
    );
    b.wait_js(
        T,
        "both records listed",
        "var t = document.getElementById('maint-records-body'); \
         return t.querySelectorAll('tr').length === 2 \
           && /The external service moves/.test(t.textContent) && /Web upgrade/.test(t.textContent);",
    );
    let rows = b.text("maint-records-body").unwrap_or_default();
    assert!(rows.contains("ext") && rows.contains("/ext/"), "{rows}");
    b.js("document.getElementById('maint').scrollIntoView(); return 1;");
    b.screenshot("dashboard-maintenance-records.png");
    assert_eq!(common::get_html(d.addr, "/").status, 503);
    // Exit one: the other stays.
    b.js("document.querySelector('#maint-records-body button[data-exit=\"web\"]').click(); return 1;");
    eventually(T, "web's record to end", || {
        (common::get_html(d.addr, "/").status == 200).then_some(())
    });
    b.wait_js(
        T,
        "one record left",
        "var t = document.getElementById('maint-records-body'); \
         return t.querySelectorAll('tr').length === 1 && /The external service moves/.test(t.textContent);",
    );
    assert_eq!(
        common::get(d.addr, "/api/maintenance/status?target=ext").json()["isActive"],
        true
    );
}
