//! Two operators changing the fleet at once never overwrite each other unseen: a change based
//! on a revision that is no longer current fails with a conflict that says who changed what;
//! changes racing without a revision either land or fail, and whatever landed is in the intent.

use crate::common::etcd::{EtcdCluster, etcd_or_skip};
use crate::common::{kinfractl_at, output_text};
use crate::hosts::Host;

#[test]
fn a_stale_revision_is_a_conflict_not_an_overwrite() {
    if !etcd_or_skip("a_stale_revision_is_a_conflict_not_an_overwrite") {
        return;
    }
    let cluster = EtcdCluster::start(3);
    let a = Host::start("web-1", &cluster.endpoints(), "");
    let b = Host::start("web-2", &cluster.endpoints(), "");
    // Both operators look first.
    let rev = a.fleet_list()["revision"].as_i64().expect("revision");
    assert_eq!(b.fleet_list()["revision"].as_i64(), Some(rev));
    let r = rev.to_string();
    a.ctl_ok(&[
        "--fleet",
        "--revision",
        &r,
        "maint",
        "enter",
        "--message",
        "A's window",
    ]);
    let o = b.daemon.ctl(&[
        "--fleet",
        "--revision",
        &r,
        "drain",
        "start",
        "--duration",
        "1m",
    ]);
    let text = output_text(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("conflict") && text.contains("changed by web-1"),
        "{text}"
    );
    let list = b.fleet_list();
    assert_eq!(list["maintenance"][0]["message"], "A's window");
    assert!(list["drain"].is_null(), "the loser wrote nothing: {list}");
    // With the revision read again, B's change goes through.
    let now = list["revision"].as_i64().expect("revision").to_string();
    b.ctl_ok(&[
        "--fleet",
        "--revision",
        &now,
        "drain",
        "start",
        "--duration",
        "1m",
    ]);
    assert!(!a.fleet_list()["drain"].is_null());
}

#[test]
fn racing_changes_land_or_fail_but_are_never_lost() {
    if !etcd_or_skip("racing_changes_land_or_fail_but_are_never_lost") {
        return;
    }
    let cluster = EtcdCluster::start(1);
    let a = Host::start("web-1", &cluster.endpoints(), "");
    let b = Host::start("web-2", &cluster.endpoints(), "");
    let mut landed = Vec::new();
    for round in 0..5 {
        let runs: Vec<_> = [(&a, "web"), (&b, "api")]
            .into_iter()
            .map(|(h, svc)| {
                let control = h.daemon.control.clone();
                let svc = svc.to_string();
                let verb = if round % 2 == 0 { "stop" } else { "start" };
                std::thread::spawn(move || {
                    let o = kinfractl_at(&control, &["--fleet", verb, &svc]);
                    (svc, verb, o)
                })
            })
            .collect();
        for r in runs {
            let (svc, verb, o) = r.join().expect("thread");
            if o.status.success() {
                landed.push((svc, verb));
            } else {
                let text = output_text(&o);
                assert!(text.contains("conflict"), "{text}");
            }
        }
        let stopped = a.fleet_list()["stopped"].clone();
        for (svc, verb) in landed.drain(..) {
            let listed = stopped
                .as_array()
                .is_some_and(|l| l.iter().any(|s| s == svc.as_str()));
            assert_eq!(
                listed,
                verb == "stop",
                "round {round}: {svc} {verb}: {stopped}"
            );
        }
    }
}
