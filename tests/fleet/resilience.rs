//! The fleet when etcd fails: the leader killed during a change (the change lands once,
//! everywhere), all of etcd stopped (hosts keep serving their state, say they are
//! disconnected, and a host killed and started again meanwhile comes back in it), and one host
//! cut off while the others change the intent (it catches up when it reconnects, also after the
//! revisions it missed were compacted).

use crate::common::etcd::{EtcdCluster, etcd_or_skip};
use crate::common::eventually;
use crate::hosts::{Answer, Host, SPREAD, intent_versions, three, three_on, wait_all};

fn connected(h: &Host) -> bool {
    h.fleet_summary()["link"]["connected"] == true
}

#[test]
fn a_change_while_the_leader_dies_lands_once_everywhere() {
    if !etcd_or_skip("a_change_while_the_leader_dies_lands_once_everywhere") {
        return;
    }
    let mut cluster = EtcdCluster::start(3);
    // Host A talks to the leader first, so the change goes to the member that dies.
    let mut order = cluster.endpoints();
    order.rotate_left(cluster.leader());
    let hosts = three_on(&cluster, order);
    hosts[0].ctl_ok(&["--fleet", "maint", "enter", "--target", "web"]);
    wait_all(&hosts, "/", Answer::Maintenance);
    let (before, _) = intent_versions(&cluster);
    // Whoever leads now dies (an election under load may have moved it from the first).
    let leader = cluster.leader();
    let control = hosts[0].daemon.control.clone();
    let change = std::thread::spawn(move || {
        crate::common::kinfractl_at(
            &control,
            &[
                "--fleet",
                "maint",
                "enter",
                "--message",
                "During the election",
            ],
        )
    });
    cluster.kill(leader);
    let out = change.join().expect("kinfractl thread");
    assert!(out.status.success(), "{}", crate::common::output_text(&out));

    wait_all(&hosts, "/api/x", Answer::Maintenance);
    for h in &hosts {
        eventually(SPREAD, "the new message everywhere", || {
            let page = crate::common::get_html(h.daemon.addr, "/api/x").text();
            page.contains("During the election").then_some(())
        });
    }
    let (after, _) = intent_versions(&cluster);
    assert_eq!(after, before + 1, "the intent was written exactly once");
    let list = hosts[1].fleet_list();
    assert_eq!(
        list["maintenance"].as_array().map(Vec::len),
        Some(2),
        "{list}"
    );
}

#[test]
fn with_etcd_down_hosts_serve_their_last_state_and_come_back_in_it() {
    if !etcd_or_skip("with_etcd_down_hosts_serve_their_last_state_and_come_back_in_it") {
        return;
    }
    let mut cluster = EtcdCluster::start(3);
    let mut hosts = three(&cluster);
    hosts[0].ctl_ok(&[
        "--fleet",
        "maint",
        "enter",
        "--message",
        "Kept without etcd",
    ]);
    wait_all(&hosts, "/", Answer::Maintenance);

    cluster.stop_all();
    for h in &hosts {
        eventually(SPREAD, &format!("{} to say disconnected", h.name), || {
            (!connected(h)).then_some(())
        });
        assert_eq!(h.answer("/"), Answer::Maintenance, "{}", h.name);
        let text = h.ctl_ok(&["status"]);
        assert!(text.contains("fleet:       disconnected since"), "{text}");
    }
    // Local commands still work.
    hosts[1].ctl_ok(&["maint", "enter", "--target", "api", "--message", "local"]);
    hosts[1].ctl_ok(&["maint", "exit", "--target", "api"]);
    // A fleet change cannot be made, and says why.
    let o = hosts[1].daemon.ctl(&["--fleet", "maint", "exit"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("out of reach"),
        "{}",
        crate::common::output_text(&o)
    );
    // The last known intent is still listed, marked as such.
    let list = hosts[1].fleet_list();
    assert_eq!(list["link"]["connected"], false);
    assert_eq!(list["maintenance"][0]["message"], "Kept without etcd");

    // Kill -9 a host and start it again while etcd is down: same maintenance.
    let c = hosts.pop().expect("host");
    let c = c.crash_and_restart();
    assert_eq!(c.answer("/"), Answer::Maintenance);
    assert!(!connected(&c));
    hosts.push(c);

    cluster.start_all();
    for h in &hosts {
        eventually(SPREAD, &format!("{} to reconnect", h.name), || {
            connected(h).then_some(())
        });
    }
    hosts[0].ctl_ok(&["--fleet", "maint", "exit"]);
    wait_all(&hosts, "/", Answer::Service);
}

#[test]
fn a_host_cut_off_catches_up_with_what_changed_meanwhile() {
    if !etcd_or_skip("a_host_cut_off_catches_up_with_what_changed_meanwhile") {
        return;
    }
    let mut cluster = EtcdCluster::start(3);
    let e = cluster.endpoints();
    // A and B reach members 0 and 1; C only member 2.
    let a = Host::start("web-1", &e[..2], "");
    let b = Host::start("web-2", &e[..2], "");
    let c = Host::start("web-3", &e[2..], "");
    for h in [&a, &b, &c] {
        h.wait_services();
        eventually(SPREAD, "connected", || connected(h).then_some(()));
    }
    cluster.kill(2);
    eventually(SPREAD, "web-3 to say disconnected", || {
        (!connected(&c)).then_some(())
    });

    a.ctl_ok(&[
        "--fleet",
        "maint",
        "enter",
        "--target",
        "api",
        "--message",
        "meanwhile",
    ]);
    a.ctl_ok(&["--fleet", "stop", "web"]);
    wait_all(&[a, b], "/api/x", Answer::Maintenance);
    assert!(
        c.answer("/api/x").untouched(),
        "cut off, web-3 cannot know yet"
    );
    // The revisions web-3 missed are compacted away: it must read everything again.
    let rev = cluster.revision();
    cluster.compact(rev);

    cluster.restart(2);
    eventually(SPREAD, "web-3 to reconnect", || connected(&c).then_some(()));
    wait_all(std::slice::from_ref(&c), "/api/x", Answer::Maintenance);
    eventually(SPREAD, "web stopped on web-3", || {
        (c.status()["services"]["web"]["state"] == "stopped").then_some(())
    });
    assert!(c.daemon.log_text().contains("fleet: intent applied"));
}
