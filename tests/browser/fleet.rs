//! The dashboard's Fleet panel in a real headless Chromium: two kinfrads on one real etcd, the
//! panel of one listing both hosts and the link, a fleet-wide maintenance record arriving live,
//! and etcd's death turning the panel to "disconnected" without a reload while the page keeps
//! working.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::etcd::{EtcdCluster, etcd_or_skip};
use crate::common::{Daemon, eventually, free_port, start_config};
use crate::webdriver::Browser;

/// Fleet changes travel through etcd's watch and the dashboard's event stream.
const T: Duration = Duration::from_secs(15);

/// The fleet's maintenance message, with markup that must stay text.
const MESSAGE: &str = "Fleet upgrade <img src=x onerror=\"window.__xss=1\">";

/// A kinfrad named `node` in the fleet of `etcd`, with one url-only service on a dead port.
fn fleet_daemon(etcd: &str, node: &str) -> Daemon {
    let config = format!(
        "[fleet]\netcd = [{etcd:?}]\nnode = {node:?}\n\n\
         [[service]]\nname = \"shop\"\nurl = \"http://127.0.0.1:{}\"\nroutes = [\"/\"]\n",
        free_port()
    );
    start_config(tempfile::tempdir().expect("tmp"), &config, &[])
}

/// What the panel shows: hidden, the pill, the link line, the intent, the fleet-wide line and
/// one `[host cell, applied revision, services]` per host row.
fn panel(b: &Browser) -> Value {
    b.try_js(
        "var t = function (id) { return document.getElementById(id).textContent; }; \
         return { hidden: document.getElementById('fleet').hidden, state: t('fleet-state'), \
           link: t('fleet-link'), intent: t('fleet-intent'), shared: t('fleet-shared'), \
           off: document.getElementById('fleet').classList.contains('off'), \
           nodes: Array.prototype.map.call(document.querySelectorAll('#fleet-nodes-body tr[data-node]'), \
             function (tr) { return [tr.getAttribute('data-node'), tr.cells[0].textContent, \
               tr.cells[2].textContent, tr.cells[4].textContent]; }) };",
        json!([]),
    )
    .unwrap_or(Value::Null)
}

fn wait_panel(b: &Browser, d: &Daemon, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let t0 = std::time::Instant::now();
    loop {
        let p = panel(b);
        if pred(&p) {
            return p;
        }
        if t0.elapsed() > T {
            panic!(
                "the Fleet panel never showed {what}: {p}\nkinfrad log:\n{}",
                d.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_fleet_panel_lists_hosts_and_follows_the_link_live() {
    if !etcd_or_skip("the_fleet_panel_lists_hosts_and_follows_the_link_live") {
        return;
    }
    let Some(b) = Browser::launch(1280, 900) else {
        return;
    };
    let mut cluster = EtcdCluster::start(1);
    let endpoint = cluster.endpoint(0);
    let web1 = fleet_daemon(&endpoint, "web-1");
    let _web2 = fleet_daemon(&endpoint, "web-2");

    b.goto(&format!("http://{}/kinfra", web1.addr));
    let p = wait_panel(&b, &web1, "both hosts, connected", |p| {
        p["hidden"] == false
            && p["state"] == "connected"
            && p["nodes"].as_array().map(Vec::len) == Some(2)
    });
    let link = p["link"].as_str().unwrap_or_default();
    for want in [
        "Fleet /kinfra",
        "this host web-1",
        "connected to",
        &endpoint,
    ] {
        assert!(link.contains(want), "link line lacks {want:?}: {link}");
    }
    assert_eq!(p["nodes"][0][0], "web-1");
    assert_eq!(p["nodes"][0][1], "web-1 (this host)");
    assert_eq!(p["nodes"][1][1], "web-2", "only this host is marked: {p}");
    assert!(
        p["nodes"][1][3]
            .as_str()
            .is_some_and(|s| s.contains("shop")),
        "web-2's services: {p}"
    );
    assert_eq!(p["shared"], "Fleet-wide: none");
    b.wait_js(
        T,
        "the live event stream",
        "return window.kinfraDashboard && window.kinfraDashboard.source === 'sse';",
    );
    b.js("window.__marker = 1; return 1;");

    // A fleet-wide maintenance record, written through web-1's control socket, reaches the
    // panel live (its text as text), and every host applies its revision.
    web1.ctl_ok(&["--fleet", "maint", "enter", "--message", MESSAGE]);
    let p = wait_panel(&b, &web1, "the fleet's maintenance record", |p| {
        p["shared"]
            .as_str()
            .is_some_and(|s| s.contains(&format!("maintenance of ALL: {MESSAGE}")))
    });
    assert_eq!(b.js("return window.__xss || 0;"), 0, "hostile text ran");
    let intent = p["intent"].as_str().unwrap_or_default();
    assert!(
        intent.starts_with("Intent revision ") && intent.contains("changed by"),
        "{intent}"
    );
    let rev = intent
        .trim_start_matches("Intent revision ")
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_string();
    wait_panel(&b, &web1, "both hosts at the new revision", |p| {
        p["nodes"]
            .as_array()
            .is_some_and(|n| n.len() == 2 && n.iter().all(|r| r[2] == rev.as_str()))
    });
    b.js("document.getElementById('fleet').scrollIntoView(); return 1;");
    b.screenshot("dashboard-fleet.png");

    // etcd goes away: the panel says so, live, and the page keeps serving its data.
    cluster.stop_all();
    let p = wait_panel(&b, &web1, "disconnected", |p| {
        p["state"] == "disconnected" && p["off"] == true
    });
    let link = p["link"].as_str().unwrap_or_default();
    assert!(
        link.starts_with("fleet: disconnected since ")
            && link.ends_with("— serving the last fleet state known"),
        "{link}"
    );
    assert!(
        p["shared"]
            .as_str()
            .is_some_and(|s| s.contains("Fleet upgrade")),
        "the last fleet state known is still shown: {p}"
    );
    assert_eq!(b.js("return window.__marker;"), 1, "the page reloaded");
    eventually(T, "the page's service card", || {
        b.try_js(
            "var c = document.getElementById('card-shop'); return c ? c.getAttribute('data-state') : null;",
            json!([]),
        )
        .ok()
        .filter(|v| v.is_string())
    });
    b.wait_js(
        T,
        "the live event stream after etcd's death",
        "return window.kinfraDashboard.source === 'sse' && document.getElementById('conn-text').textContent === 'live';",
    );
    b.js("document.getElementById('fleet').scrollIntoView(); return 1;");
    b.screenshot("dashboard-fleet-disconnected.png");
    b.close();
}
