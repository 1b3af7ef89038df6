//! Nothing from etcd is trusted more than the control socket: documents written into the
//! fleet's keys by hand (not JSON, a text with control characters, a custom page that loops
//! back to the host, a target the host does not have, a forged presence) are refused or
//! skipped with a reason the operator can read, the host keeps serving what it had, and a
//! proper change afterwards applies as usual.

use crate::common::etcd::{EtcdCluster, etcd_or_skip};
use crate::common::eventually;
use crate::hosts::{Answer, Host, SPREAD, wait_all};

fn fleet_status(h: &Host) -> serde_json::Value {
    serde_json::from_str(&h.ctl_ok(&["--json", "fleet", "status"])).expect("fleet JSON")
}

fn wait_problem(h: &Host, want: &str) {
    eventually(SPREAD, &format!("a problem about {want:?}"), || {
        let v = fleet_status(h);
        v["problems"]
            .as_array()
            .is_some_and(|ps| {
                ps.iter()
                    .any(|p| p.as_str().is_some_and(|p| p.contains(want)))
            })
            .then_some(())
    });
}

fn intent(message: &str, target: &str, url: Option<&str>) -> String {
    let mut rec = serde_json::json!({
        "message": message, "current_issue": "", "start_time_ms": 1_900_000_000_000u64,
        "target": target,
    });
    if let Some(u) = url {
        rec["page_url"] = serde_json::json!(u);
    }
    serde_json::json!({ "version": 1, "maintenance": [rec] }).to_string()
}

#[test]
fn hand_written_documents_are_checked_like_input() {
    if !etcd_or_skip("hand_written_documents_are_checked_like_input") {
        return;
    }
    let cluster = EtcdCluster::start(1);
    let a = Host::start("web-1", &cluster.endpoints(), "");
    a.wait_services();
    eventually(SPREAD, "connected", || {
        (a.fleet_summary()["link"]["connected"] == true).then_some(())
    });

    cluster.put("/kinfra/intent", "{not json");
    wait_problem(&a, "refused");
    assert!(a.answer("/").untouched());

    cluster.put("/kinfra/intent", &intent("bell \u{7} inside", "ALL", None));
    wait_problem(&a, "message");
    assert!(a.answer("/").untouched());

    let own = format!("http://{}/", a.daemon.addr);
    cluster.put("/kinfra/intent", &intent("loops", "ALL", Some(&own)));
    wait_problem(&a, "loop");
    assert!(
        a.answer("/").untouched(),
        "a page that loops is never entered"
    );

    cluster.put("/kinfra/intent", &intent("elsewhere", "billing", None));
    wait_problem(&a, "no such service or route here");
    assert!(a.answer("/").untouched());

    // A forged presence is left out of the list; the real ones stay.
    cluster.put("/kinfra/nodes/ghost", "{\"node\":\"someone-else\"}");
    cluster.put("/kinfra/nodes/bad name", "[]");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let nodes = fleet_status(&a)["nodes"].clone();
    let names: Vec<&str> = nodes
        .as_array()
        .map(|n| n.iter().filter_map(|x| x["node"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["web-1"], "{nodes}");

    // The host is unharmed: a proper change applies.
    a.ctl_ok(&["--fleet", "maint", "enter", "--message", "proper"]);
    wait_all(std::slice::from_ref(&a), "/", Answer::Maintenance);
    assert!(
        crate::common::alive(a.daemon.pid()),
        "kinfrad survived it all"
    );
    assert!(!a.daemon.log_text().contains("panicked"));
}

#[test]
fn two_hosts_under_one_node_name_are_told_apart() {
    if !etcd_or_skip("two_hosts_under_one_node_name_are_told_apart") {
        return;
    }
    let cluster = EtcdCluster::start(1);
    let a = Host::start("web-1", &cluster.endpoints(), "");
    eventually(SPREAD, "connected", || {
        (a.fleet_summary()["link"]["connected"] == true).then_some(())
    });
    let _b = Host::start("web-1", &cluster.endpoints(), "");
    wait_problem(&a, "give each host its own [fleet] node");
}
