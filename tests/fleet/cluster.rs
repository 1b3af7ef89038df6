//! The etcd fixture the fleet tests stand on: a 3-member cluster replicates, survives its
//! leader's death and a full stop with its data, and a TLS cluster tells a client certificate
//! from its CA from one of another CA.

use crate::common::etcd::{EtcdCluster, etcd_or_skip};

#[test]
fn three_members_replicate() {
    if !etcd_or_skip("three_members_replicate") {
        return;
    }
    let cluster = EtcdCluster::start(3);
    assert_eq!(cluster.endpoints().len(), 3);
    let rev = cluster.put_on(0, "fleet/a", "x").expect("put on member 0");
    let got = cluster.get_on(2, "fleet/a").expect("get on member 2");
    assert_eq!(got, Some(("x".to_string(), rev)));
    assert_eq!(
        cluster.get_on(1, "fleet/none").expect("get on member 1"),
        None
    );
}

#[test]
fn leader_death_and_full_restart() {
    if !etcd_or_skip("leader_death_and_full_restart") {
        return;
    }
    let mut cluster = EtcdCluster::start(3);
    let old = cluster.leader();
    cluster.kill(old);
    let killed = std::time::Instant::now();
    let new = cluster.leader();
    assert_ne!(new, old, "the killed member cannot lead");
    eprintln!(
        "leader {old} killed, member {new} leads {:?} later",
        killed.elapsed()
    );
    let rev = cluster.put("fleet/drain", "after-election");
    assert_eq!(
        cluster.get("fleet/drain"),
        Some(("after-election".to_string(), rev))
    );
    assert_eq!(cluster.revision(), rev);

    cluster.stop_all();
    let err = cluster
        .try_get("fleet/drain")
        .expect_err("no member runs, so nothing answers");
    assert!(
        err.contains("member 0") && err.contains("member 2"),
        "{err}"
    );

    cluster.start_all();
    assert_eq!(
        cluster.get("fleet/drain"),
        Some(("after-election".to_string(), rev))
    );
    // Compaction up to the latest revision keeps the latest value.
    cluster.compact(rev);
    assert_eq!(
        cluster.get("fleet/drain"),
        Some(("after-election".to_string(), rev))
    );
}

#[test]
fn tls_cluster_checks_client_certificates() {
    if !etcd_or_skip("tls_cluster_checks_client_certificates") {
        return;
    }
    let cluster = EtcdCluster::start_tls(1);
    assert!(cluster.endpoint(0).starts_with("https://127.0.0.1:"));
    let rev = cluster.put("fleet/tls", "yes");
    assert_eq!(cluster.get("fleet/tls"), Some(("yes".to_string(), rev)));
    let range = serde_json::json!({ "key": crate::common::etcd::b64("fleet/tls") });
    let refused = cluster.post_as(
        0,
        "/v3/kv/range",
        &range,
        cluster.rogue_cert_path(),
        cluster.rogue_key_path(),
    );
    // Refused in the TLS handshake (curl fails), not answered with an HTTP error.
    let err = refused.expect_err("a client certificate from another CA was accepted");
    assert!(err.contains("curl exit status"), "{err}");
    assert!(
        cluster.get("fleet/tls").is_some(),
        "the right certificate still works"
    );
}
