//! How the fallback pages look: hostile service names and messages shown as text, and every page
//! fitting a phone-sized viewport.

use crate::LIVE;
use crate::app::*;
use crate::common::{eventually, free_port};
use crate::page::*;
use crate::webdriver::Browser;
use serde_json::json;

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
                STARTING,
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
    wait_live(&b);
    b.js("window.__marker = 1; return 1;");
    count_polls(&b);
    eventually(LIVE, "two polls", || (polls(&b) >= 2).then_some(()));
    check(Some(msg), "live page after polls");

    // A reload of the config changes the message; the poll writes it into the page.
    let cfg = d.dir.path().join("kinfra.toml");
    std::fs::write(&cfg, services(msg2).concat()).expect("rewrite kinfra.toml");
    d.ctl_ok(&["reload"]);
    // The reload re-renders and the text arrives with the next poll after it: on a loaded
    // machine (the whole suite beside Chromium) that took more than LIVE twice, so it gets
    // three times as long; it is a wait, not a promise of speed.
    eventually(
        LIVE * 3,
        "#status-message to take the new hostile text",
        || (b.text("status-message")? == msg2).then_some(()),
    );
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
    wait_live(&b);
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
            STARTING,
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
    wait_live(&b);
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
    wait_live(&b);
    assert_eq!(
        steps(&b).expect("steps"),
        expected_steps(boot_port, "active", "pending")
    );
    let (sw, iw) = assert_no_overflow(&b, "loading page");
    eprintln!("phone loading: scrollWidth {sw}, innerWidth {iw}");
    b.screenshot("fallback-loading-phone.png");
    b.close();
}
