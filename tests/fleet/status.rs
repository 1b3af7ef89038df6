//! `/__status__` in a fleet: `fleet` carries this host's view (its link to etcd, the intent, every
//! host present) for every reader, but etcd's address, raw link errors and the problems of
//! applying the intent only for dashboard readers; a single host has no `fleet` at all.

use std::time::Duration;

use serde_json::Value;

use crate::common::etcd::{EtcdCluster, etcd_or_skip};
use crate::common::{Daemon, eventually, get, login, request, start_config};

/// Fleet changes travel through etcd's watch; presence is rewritten every 2 s.
const T: Duration = Duration::from_secs(15);

fn status_as(d: &Daemon, cookie: Option<&str>) -> Value {
    match cookie {
        Some(c) => request(d.addr, "GET", "/__status__", &[("Cookie", c)], b"")
            .expect("GET /__status__")
            .json(),
        None => get(d.addr, "/__status__").json(),
    }
}

/// Wait until the fleet as `cookie`'s reader sees it satisfies `pred`; returns the document.
fn wait_fleet(
    d: &Daemon,
    cookie: Option<&str>,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    eventually(T, what, || {
        let s = status_as(d, cookie);
        pred(&s["fleet"]).then_some(s)
    })
}

/// Nothing an anonymous reader may not see: no endpoint, no link error, no problems list at
/// the top or on any host, and etcd's address nowhere in the document.
fn assert_anonymous(s: &Value, etcd: &str) {
    let f = s["fleet"].as_object().expect("a fleet object");
    let link = f["link"].as_object().expect("a link object");
    assert!(!link.contains_key("endpoint"), "endpoint shown: {link:?}");
    assert!(!link.contains_key("error"), "link error shown: {link:?}");
    assert!(!f.contains_key("problems"), "problems shown: {f:?}");
    for n in f["nodes"].as_array().expect("nodes") {
        assert!(n.get("problems").is_none(), "a host's problems shown: {n}");
    }
    assert!(
        !s.to_string().contains(etcd),
        "etcd's address {etcd} is in the document"
    );
}

#[test]
fn status_shows_the_fleet_and_keeps_etcd_and_errors_from_anonymous_readers() {
    if !etcd_or_skip("status_shows_the_fleet_and_keeps_etcd_and_errors_from_anonymous_readers") {
        return;
    }
    let mut cluster = EtcdCluster::start(1);
    let endpoint = cluster.endpoint(0);
    let hostport = endpoint.trim_start_matches("http://").to_string();
    let config = format!(
        "dashboard_access = \"login\"\n\n[fleet]\netcd = [{endpoint:?}]\nnode = \"web-1\"\n"
    );
    let d = start_config(tempfile::tempdir().expect("tmp"), &config, &[]);
    let cookie = login(&d);
    let reader = Some(cookie.as_str());

    let s = wait_fleet(&d, reader, "web-1 connected and present", |f| {
        f["link"]["connected"] == true
            && f["nodes"]
                .as_array()
                .is_some_and(|n| n.iter().any(|n| n["node"] == "web-1"))
    });
    let f = &s["fleet"];
    assert_eq!(f["node"], "web-1");
    assert_eq!(f["prefix"], "/kinfra");
    assert_eq!(f["link"]["endpoint"], endpoint.as_str());
    assert!(f["link"].get("error").is_none(), "{f}");
    assert!(
        f["link"]["since"].is_string() && f["link"]["since_ms"].is_u64(),
        "{f}"
    );
    let me = &f["nodes"][0];
    assert_eq!(me["this"], true, "{f}");
    assert_eq!(me["version"], env!("CARGO_PKG_VERSION"));

    // An intent this host refuses: a problem for readers, on this host and in its presence.
    cluster.put("/kinfra/intent", "not an intent");
    let s = wait_fleet(&d, reader, "the refusal in both problem lists", |f| {
        f["problems"].as_array().is_some_and(|p| !p.is_empty())
            && f["nodes"][0]["problems"]
                .as_array()
                .is_some_and(|p| !p.is_empty())
    });
    let problem = s["fleet"]["problems"][0].as_str().unwrap_or_default();
    assert!(problem.contains("refused"), "{problem}");

    let anon = status_as(&d, None);
    assert_eq!(anon["fleet"]["node"], "web-1");
    assert_eq!(anon["fleet"]["link"]["connected"], true);
    assert_eq!(anon["fleet"]["nodes"][0]["node"], "web-1");
    assert!(anon["fleet"]["nodes"][0]["services"].is_array(), "{anon}");
    assert_anonymous(&anon, &hostport);

    // etcd gone: readers get the error and the endpoint tried; nobody else does.
    cluster.stop_all();
    let s = wait_fleet(&d, reader, "the link down, with its error", |f| {
        f["link"]["connected"] == false && f["link"]["error"].is_string()
    });
    assert_eq!(s["fleet"]["link"]["endpoint"], endpoint.as_str());
    let anon = wait_fleet(&d, None, "the link down for anonymous readers", |f| {
        f["link"]["connected"] == false
    });
    assert!(anon["fleet"]["link"]["since"].is_string(), "{anon}");
    assert_anonymous(&anon, &hostport);
}

#[test]
fn a_single_host_has_no_fleet_in_its_status() {
    let d = Daemon::start();
    let s = get(d.addr, "/__status__").json();
    assert!(s["services"].is_object(), "not a status document: {s}");
    assert!(s.get("fleet").is_none(), "a single host shows a fleet: {s}");
}
