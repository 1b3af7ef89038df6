//! What the browser tests read off kinfrad's pages through WebDriver: the connection pill, the
//! reload marker, horizontal overflow, the fallback pages' steps and their status polls.

use crate::LIVE;
use crate::webdriver::Browser;
use serde_json::{Value, json};

/// Wait until the page's status poll has succeeded (`#conn` says live): the maintenance page
/// and the fallback pages alike.
pub fn wait_live(b: &Browser) {
    b.wait_js(
        LIVE,
        "#conn to report live",
        "var c = document.getElementById('conn'); \
         return !!c && c.classList.contains('live') \
           && document.getElementById('conn-text').textContent === 'live';",
    );
}

pub fn marker(b: &Browser) -> Option<bool> {
    b.try_js("return window.__marker === 1;", json!([]))
        .ok()?
        .as_bool()
}

/// The page has no horizontal overflow; returns (scrollWidth, innerWidth).
pub fn assert_no_overflow(b: &Browser, what: &str) -> (u64, u64) {
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

/// The fallback page's steps as `[text, data-status, icon label]`.
pub fn steps(b: &Browser) -> Option<Value> {
    b.try_js(
        "return Array.prototype.map.call(document.querySelectorAll('#steps li'), function (li) { \
           return [li.querySelector('.txt').textContent, li.getAttribute('data-status'), \
                   li.querySelector('.ico').getAttribute('aria-label')]; });",
        json!([]),
    )
    .ok()
}

pub fn expected_steps(port: u16, connect: &str, check: &str) -> Value {
    json!([
        [format!("Connecting to port {port}"), connect, connect],
        ["Health check GET /health", check, check],
    ])
}

/// Count the status polls the page makes from now on (in `window.__polls`).
pub fn count_polls(b: &Browser) {
    b.js("window.__polls = 0; var f = window.fetch; \
          window.fetch = function () { window.__polls++; return f.apply(this, arguments); }; \
          return 1;");
}

pub fn polls(b: &Browser) -> u64 {
    b.try_js("return window.__polls || 0;", json!([]))
        .ok()
        .and_then(|v| v.as_u64())
        .unwrap_or(0)
}
