//! The maintenance page in the browser: the live countdown and in-place updates, the automatic
//! reload when maintenance ends, hostile text shown as text, a phone-sized viewport, and what the
//! page shows when the countdown runs out or the connection is lost.

use std::time::Duration;

use crate::LIVE;
use crate::common::{Daemon, eventually};
use crate::page::{assert_no_overflow, marker, wait_live};
use crate::webdriver::Browser;
use serde_json::json;

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

/// The countdown as (text, seconds), once it shows a clock.
fn countdown(b: &Browser) -> Option<(String, u64)> {
    let t = b.text("countdown")?;
    let s = clock_secs(&t)?;
    Some((t, s))
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
