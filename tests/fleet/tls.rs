//! etcd over TLS with client certificates: kinfrad with the fleet's CA and a client
//! certificate joins and applies the intent; one with a certificate of another CA is refused
//! by etcd, says so, and serves on as a disconnected host.

use crate::common::etcd::{EtcdCluster, etcd_or_skip};
use crate::common::eventually;
use crate::hosts::{Answer, Host, SPREAD, wait_all};

#[test]
fn client_certificates_let_a_host_in_and_keep_a_stranger_out() {
    if !etcd_or_skip("client_certificates_let_a_host_in_and_keep_a_stranger_out") {
        return;
    }
    let cluster = EtcdCluster::start_tls(1);
    let tls = |cert: &std::path::Path, key: &std::path::Path| {
        format!(
            "ca = {:?}\ncert = {:?}\nkey = {:?}",
            cluster.ca_path(),
            cert,
            key
        )
    };
    let good = tls(cluster.client_cert_path(), cluster.client_key_path());
    let a = Host::start("web-1", &cluster.endpoints(), &good);
    let b = Host::start("web-2", &cluster.endpoints(), &good);
    a.ctl_ok(&["--fleet", "maint", "enter", "--message", "over TLS"]);
    wait_all(&[a, b], "/", Answer::Maintenance);

    let rogue = tls(cluster.rogue_cert_path(), cluster.rogue_key_path());
    let c = Host::start("web-3", &cluster.endpoints(), &rogue);
    let link = eventually(SPREAD, "web-3 to report why it is not connected", || {
        let f = c.fleet_summary();
        let err = f["link"]["error"].as_str().unwrap_or("").to_string();
        (f["link"]["connected"] == false && !err.contains("not connected yet")).then_some(err)
    });
    assert!(!link.is_empty());
    assert!(c.answer("/").untouched(), "a stranger learns nothing");
    // Missing or unreadable TLS files stop kinfrad at start with a clear error.
    let cfg = crate::hosts::config(
        "web-4",
        &cluster.endpoints(),
        "ca = \"/nonexistent/ca.pem\"",
    );
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("kinfra.toml");
    std::fs::write(&path, cfg).expect("config");
    let o = std::process::Command::new(crate::common::KINFRAD)
        .args(["--check-config", "--config"])
        .arg(&path)
        .output()
        .expect("kinfrad");
    let text = crate::common::output_text(&o);
    assert!(!o.status.success(), "{text}");
    assert!(text.contains("/nonexistent/ca.pem"), "{text}");
}
