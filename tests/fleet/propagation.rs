//! A change made through one host reaches every host: fleet-wide maintenance (global and per
//! target), a drain, an operator stop, each entered and left again with `kinfractl --fleet`
//! on host A, while local commands stay local.

use crate::common::etcd::{EtcdCluster, etcd_or_skip};
use crate::common::eventually;
use crate::hosts::{Answer, SPREAD, three, wait_all};

#[test]
fn maintenance_drain_and_stops_reach_every_host_and_leave_again() {
    if !etcd_or_skip("maintenance_drain_and_stops_reach_every_host_and_leave_again") {
        return;
    }
    let cluster = EtcdCluster::start(3);
    let hosts = three(&cluster);
    let a = &hosts[0];
    wait_all(&hosts, "/", Answer::Service);

    // Global maintenance: every host answers with the maintenance page, with the message.
    let out = a.ctl_ok(&[
        "--fleet",
        "maint",
        "enter",
        "--message",
        "Fleet upgrade",
        "--countdown",
        "600",
    ]);
    assert!(out.contains("this change is in effect here"), "{out}");
    wait_all(&hosts, "/", Answer::Maintenance);
    wait_all(&hosts, "/api/x", Answer::Maintenance);
    for h in &hosts {
        let page = crate::common::get_html(h.daemon.addr, "/").text();
        assert!(page.contains("Fleet upgrade"), "{}: {page}", h.name);
        // Written through to the host's own state file.
        let st = std::fs::read_to_string(h.daemon.state_dir.join("state.json")).expect("state");
        assert!(
            st.contains("Fleet upgrade") && st.contains("\"fleet\""),
            "{st}"
        );
    }
    let list = a.fleet_list();
    assert_eq!(list["maintenance"][0]["target"], "ALL");
    assert_eq!(list["changed_by"], "web-1");
    a.ctl_ok(&["--fleet", "maint", "exit"]);
    wait_all(&hosts, "/", Answer::Service);

    // Per target: only api's routes.
    a.ctl_ok(&[
        "--fleet",
        "maint",
        "enter",
        "--target",
        "api",
        "--message",
        "API only",
    ]);
    wait_all(&hosts, "/api/x", Answer::Maintenance);
    for h in &hosts {
        assert!(h.answer("/").untouched(), "{}", h.name);
    }
    a.ctl_ok(&["--fleet", "maint", "exit", "--target", "api"]);
    wait_all(&hosts, "/api/x", Answer::Service);

    // A local command stays on its host.
    hosts[1].ctl_ok(&["maint", "enter", "--message", "only here"]);
    assert_eq!(hosts[1].answer("/"), Answer::Maintenance);
    assert!(hosts[2].answer("/").untouched());
    hosts[1].ctl_ok(&["maint", "exit"]);

    // A drain of web over 1 s: every host refuses web's requests from its end on.
    a.ctl_ok(&[
        "--fleet",
        "drain",
        "start",
        "--target",
        "web",
        "--duration",
        "1s",
    ]);
    wait_all(&hosts, "/", Answer::Drained);
    for h in &hosts {
        assert!(h.answer("/api/x").untouched(), "{}", h.name);
    }
    a.ctl_ok(&["--fleet", "drain", "stop"]);
    wait_all(&hosts, "/", Answer::Service);

    // An operator stop: api's process stops on every host, and starts again.
    a.ctl_ok(&["--fleet", "stop", "api"]);
    for h in &hosts {
        eventually(SPREAD, &format!("api stopped on {}", h.name), || {
            let s = h.status();
            (s["services"]["api"]["state"] == "stopped").then_some(())
        });
    }
    let list = a.fleet_list();
    assert_eq!(list["stopped"], serde_json::json!(["api"]));
    a.ctl_ok(&["--fleet", "start", "api"]);
    for h in &hosts {
        h.wait_services();
    }

    // Every host reports the revision it applied in its presence.
    let rev = a.fleet_list()["revision"].as_i64().expect("revision");
    eventually(SPREAD, "every host to report the last revision", || {
        let out = a.ctl_ok(&["--json", "fleet", "status"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
        (nodes.len() == 3 && nodes.iter().all(|n| n["applied_revision"] == rev)).then_some(())
    });
    let text = a.ctl_ok(&["fleet", "status"]);
    for h in &hosts {
        assert!(text.contains(&h.name), "{text}");
    }
}

#[test]
fn bad_fleet_commands_get_clear_errors() {
    if !etcd_or_skip("bad_fleet_commands_get_clear_errors") {
        return;
    }
    let cluster = EtcdCluster::start(1);
    let a = crate::hosts::Host::start("web-1", &cluster.endpoints(), "");
    let fails = |args: &[&str], want: &str| {
        let o = a.daemon.ctl(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!o.status.success(), "{args:?} succeeded: {text}");
        assert!(text.contains(want), "{args:?}: {text}");
    };
    fails(
        &["--fleet", "maint", "enter", "--countdown", "-5"],
        "countdown",
    );
    fails(&["--fleet", "stop", "no/such"], "service");
    fails(
        &[
            "--fleet",
            "drain",
            "start",
            "--target",
            "a b",
            "--duration",
            "1s",
        ],
        "target",
    );
    fails(&["--fleet", "restart", "api"], "--fleet works with");
    fails(&["--revision", "3", "maint", "exit"], "--fleet");
    // A custom page pointing back at kinfrad loops: refused before anything is written.
    let own = format!("http://{}/", a.daemon.addr);
    fails(&["--fleet", "maint", "enter", "--url", &own], "loop");
    assert_eq!(a.fleet_list()["revision"], 0);

    // A single host has no fleet.
    let single = crate::common::Daemon::start();
    let o = single.ctl(&["--fleet", "maint", "list"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not part of a fleet"));
}

#[test]
fn metrics_and_the_alert_rules_know_the_fleet() {
    if !etcd_or_skip("metrics_and_the_alert_rules_know_the_fleet") {
        return;
    }
    let mut cluster = EtcdCluster::start(1);
    let a = crate::hosts::Host::start("web-1", &cluster.endpoints(), "");
    a.ctl_ok(&["--fleet", "maint", "enter"]);
    let rev = a.fleet_list()["revision"].as_f64().expect("revision");
    let m = crate::common::scrape(a.daemon.addr);
    assert_eq!(m.value("kinfra_fleet_connected", &[]), 1.0, "{}", m.text);
    assert_eq!(m.value("kinfra_fleet_applied_revision", &[]), rev);
    assert_eq!(m.value("kinfra_fleet_hosts", &[]), 1.0);
    // Every kinfra_fleet_ metric the alert rules name is one kinfrad shows.
    let rules = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/kinfra-alerts.yml"),
    )
    .expect("rules");
    for (i, _) in rules.match_indices("kinfra_fleet_") {
        let name: String = rules[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        assert!(!m.matching(&name, &[]).is_empty(), "{name}: {}", m.text);
    }
    cluster.stop_all();
    eventually(SPREAD, "kinfra_fleet_connected 0", || {
        let m = crate::common::scrape(a.daemon.addr);
        let shown = !m.matching("kinfra_fleet_connected", &[]).is_empty();
        (shown && m.value("kinfra_fleet_connected", &[]) == 0.0).then_some(())
    });
    // A single host shows no fleet metrics.
    let single = crate::common::Daemon::start();
    let m = crate::common::scrape(single.addr);
    assert!(m.matching("kinfra_fleet_connected", &[]).is_empty());
}

#[test]
fn a_fleet_stop_of_a_service_kinfrad_does_not_run_is_reported() {
    if !etcd_or_skip("a_fleet_stop_of_a_service_kinfrad_does_not_run_is_reported") {
        return;
    }
    let cluster = EtcdCluster::start(1);
    let config = format!(
        "[[service]]\nname = \"ext\"\nurl = \"http://127.0.0.1:{}\"\nroutes = [\"/\"]\n\n[fleet]\netcd = [{:?}]\nnode = \"edge-1\"\n",
        crate::common::free_port(),
        cluster.endpoint(0)
    );
    let d = crate::common::start_config(tempfile::tempdir().expect("tmp"), &config, &[]);
    d.ctl_ok(&["--fleet", "stop", "ext"]);
    eventually(SPREAD, "the host to say it could not stop ext", || {
        let out = d.ctl_ok(&["fleet", "status"]);
        out.contains("kinfrad does not run it here").then_some(())
    });
}
