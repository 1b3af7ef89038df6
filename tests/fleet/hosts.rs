//! Fleet hosts as the fleet tests run them: kinfrads on one etcd cluster, each with its own
//! state directory, port and control socket, and two services it runs itself (`web` on `/`,
//! `api` on `/api/`), so maintenance per target, drains and stops have something to act on.

use std::time::Duration;

use serde_json::Value;

use crate::common::etcd::EtcdCluster;
use crate::common::{Daemon, eventually, free_port, get, start_config};

/// How long a fleet change may take to show on every host before a test gives up (the
/// benchmark, not the tests, measures how long it really takes).
pub const SPREAD: Duration = Duration::from_secs(10);

/// One kinfrad of the fleet.
pub struct Host {
    pub name: String,
    pub daemon: Daemon,
    config: String,
}

/// The config of host `name` on `endpoints`, with `extra` lines in `[fleet]`.
pub fn config(name: &str, endpoints: &[String], extra: &str) -> String {
    let list: Vec<String> = endpoints.iter().map(|e| format!("{e:?}")).collect();
    format!(
        r#"
[[service]]
name = "web"
command = ["python3", "-m", "http.server", "--bind", "127.0.0.1", "{{port}}"]
preferred_port = {web}
routes = ["/"]
health_check = {{ interval = "200ms" }}

[[service]]
name = "api"
command = ["python3", "-m", "http.server", "--bind", "127.0.0.1", "{{port}}"]
preferred_port = {api}
routes = ["/api/"]
health_check = {{ interval = "200ms" }}

[fleet]
etcd = [{}]
node = "{name}"
{extra}
"#,
        list.join(", "),
        web = free_port(),
        api = free_port(),
    )
}

impl Host {
    pub fn start(name: &str, endpoints: &[String], extra: &str) -> Host {
        let config = config(name, endpoints, extra);
        let daemon = start_config(tempfile::tempdir().expect("tmp"), &config, &[]);
        Host {
            name: name.to_string(),
            daemon,
            config,
        }
    }

    /// Kill -9 and start again on the same state directory and config.
    pub fn crash_and_restart(self) -> Host {
        let Host {
            name,
            daemon,
            config,
        } = self;
        let dir = daemon.crash();
        let daemon = start_config(dir, &config, &[]);
        Host {
            name,
            daemon,
            config,
        }
    }

    /// `kinfractl ARGS` through this host; must succeed.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        self.daemon.ctl_ok(args)
    }

    /// `/__status__` (services by name).
    pub fn status(&self) -> Value {
        get(self.daemon.addr, "/__status__").json()
    }

    /// `kinfractl status --json`'s fleet summary.
    pub fn fleet_summary(&self) -> Value {
        let out = self.ctl_ok(&["--json", "status"]);
        let v: Value = serde_json::from_str(&out).expect("status JSON");
        v["fleet"].clone()
    }

    /// `kinfractl --fleet maint list --json`.
    pub fn fleet_list(&self) -> Value {
        let out = self.ctl_ok(&["--fleet", "--json", "maint", "list"]);
        serde_json::from_str(&out).expect("fleet JSON")
    }

    /// How `path` is answered: the maintenance page, a drain's refusal, or anything else.
    pub fn answer(&self, path: &str) -> Answer {
        let r = get(self.daemon.addr, path);
        if r.status == 503 && r.header("x-maintenance-mode") == Some("true") {
            Answer::Maintenance
        } else if r.status == 503 && r.header("x-drain-mode") == Some("true") {
            Answer::Drained
        } else if r.status == 200 || r.status == 404 {
            Answer::Service
        } else {
            Answer::Other(r.status)
        }
    }

    /// Wait until both services run (the fleet's stop has something to stop).
    pub fn wait_services(&self) {
        eventually(SPREAD, "web and api to run", || {
            let s = self.status();
            ["web", "api"]
                .iter()
                .all(|n| s["services"][n]["state"] == "running")
                .then_some(())
        });
    }
}

/// How a host answered. `Other` is anything else, such as the fallback page of a service
/// that is restarting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Maintenance,
    Drained,
    Service,
    Other(u16),
}

/// Three hosts on `cluster`, every one running its services.
pub fn three(cluster: &EtcdCluster) -> Vec<Host> {
    three_on(cluster, cluster.endpoints())
}

/// Three hosts on `cluster`, the first of them given `first_endpoints` (its order is the order
/// kinfrad tries them in), every one running its services.
pub fn three_on(cluster: &EtcdCluster, first_endpoints: Vec<String>) -> Vec<Host> {
    let hosts: Vec<Host> = ["web-1", "web-2", "web-3"]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let e = if i == 0 {
                first_endpoints.clone()
            } else {
                cluster.endpoints()
            };
            Host::start(n, &e, "")
        })
        .collect();
    for h in &hosts {
        h.wait_services();
    }
    // Every host is connected and sees the others.
    for h in &hosts {
        eventually(SPREAD, "every host present", || {
            let f = h.fleet_summary();
            (f["link"]["connected"] == true && f["nodes"] == 3).then_some(())
        });
    }
    hosts
}

impl Answer {
    /// Neither maintenance nor a drain's refusal: what the fleet asked for does not apply.
    pub fn untouched(self) -> bool {
        !matches!(self, Answer::Maintenance | Answer::Drained)
    }
}

/// Wait until every host answers `path` with `want`.
pub fn wait_all(hosts: &[Host], path: &str, want: Answer) {
    for h in hosts {
        eventually(
            SPREAD,
            &format!("{} to answer {path} with {want:?}", h.name),
            || (h.answer(path) == want).then_some(()),
        );
    }
}

/// The intent key's etcd `version` (how many times it was written) and mod revision.
pub fn intent_versions(cluster: &EtcdCluster) -> (i64, i64) {
    let key = crate::common::etcd::b64("/kinfra/intent");
    for i in 0..cluster.len() {
        if let Ok(v) = cluster.post(i, "/v3/kv/range", &serde_json::json!({ "key": key })) {
            let kv = &v["kvs"][0];
            let n = |f: &str| {
                kv[f]
                    .as_str()
                    .and_then(|s| s.parse::<i64>().ok())
                    .unwrap_or(0)
            };
            return (n("version"), n("mod_revision"));
        }
    }
    panic!("no etcd member answered");
}
