//! The operator's `fallback_message` on the fallback pages of a service that was healthy and
//! died: shown beside the live state and error, and kept by the page's live updates.

use crate::LIVE;
use crate::app::*;
use crate::common::eventually;
use crate::page::*;
use crate::webdriver::Browser;

#[test]
fn the_operators_message_survives_a_dead_upstream_and_live_updates() {
    let Some(b) = Browser::launch(1280, 900) else {
        return;
    };
    let msg = "We are moving to a new datacenter; back by 14:00";
    let port = crate::common::free_port();
    let app = AppServer::start(port, 200);
    let d = daemon_with(&[service(
        "shop",
        port,
        "/",
        "0s",
        &[
            format!("fallback_message = {}", toml_str(msg)),
            "fallback_refresh_interval = 30".into(),
        ],
    )]);
    wait_state(&d, "shop", "running");
    drop(app);
    wait_state(&d, "shop", "down");

    b.goto(&format!("http://{}{APP_PATH}", d.addr));
    assert!(
        b.js("return document.title;")
            .as_str()
            .is_some_and(|t| t.starts_with("503 ·")),
        "not the 503 page"
    );
    let shown = |when: &str| {
        assert_eq!(
            b.text("fallback-message").as_deref(),
            Some(msg),
            "{when}: #fallback-message"
        );
        assert_eq!(
            b.js(
                "return [document.getElementById('fallback-message').hidden, \
                          document.getElementById('lead').hidden];"
            ),
            serde_json::json!([false, true]),
            "{when}: [#fallback-message hidden, generic #lead hidden]"
        );
        assert_eq!(
            b.text("status-message").as_deref(),
            Some("Service is not answering"),
            "{when}: #status-message"
        );
    };
    shown("as served");
    assert_eq!(
        b.text("error-detail").as_deref(),
        Some("Connection refused")
    );
    wait_live(&b);
    shown("after the first poll");
    b.js("window.__marker = 1; return 1;");
    count_polls(&b);

    // The upstream listens again but fails its health check: the page changes in place (the
    // error, the steps) and the operator's words stay.
    let _app = AppServer::start(port, 500);
    eventually(LIVE, "#error-detail to change in place", || {
        let e = b.text("error-detail")?;
        (e != "Connection refused").then_some(e)
    });
    let seen = polls(&b);
    eventually(LIVE, "two more polls", || {
        (polls(&b) >= seen + 2).then_some(())
    });
    assert_eq!(marker(&b), Some(true), "the page reloaded");
    shown("after live updates");
    b.screenshot("fallback-503-operator-message.png");
    b.close();
}
