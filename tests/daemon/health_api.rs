//! The health API's view of kinfrad itself: a reload that failed (the old configuration still
//! runs) degrades kinfrad's component and the whole, without holding readiness back; fixing it
//! heals both.

use crate::T;
use crate::common::*;

#[test]
fn a_failed_reload_degrades_kinfrad_in_the_health_api() {
    let d = start_config(tempfile::tempdir().expect("tmp"), "", &[]);
    let cfg = d.dir.path().join("kinfra.toml");
    let j = eventually(T, "/api/health healthy", || {
        let j = json_get(d.addr, "/api/health").json();
        (j["status"] == "healthy").then_some(j)
    });
    let k = &j["components"]["kinfrad"];
    assert_eq!(k["checks"]["config"]["ok"], true, "{k}");
    assert!(
        k["last_check"].is_string(),
        "the state file was checked: {k}"
    );

    std::fs::write(&cfg, "listen = [\"not an address\"]\n").expect("cfg");
    let o = d.ctl(&["reload"]);
    assert_eq!(o.status.code(), Some(1));
    let r = json_get(d.addr, "/api/health");
    assert_eq!(r.status, 200, "degraded still answers 200: {}", r.text());
    let j = r.json();
    assert_eq!(j["status"], "degraded", "{j}");
    let k = &j["components"]["kinfrad"];
    assert_eq!(k["status"], "degraded", "{k}");
    assert_eq!(k["checks"]["config"]["ok"], false, "{k}");
    assert!(
        k["error"]
            .as_str()
            .is_some_and(|e| e.contains("reload failed")),
        "{k}"
    );
    assert_eq!(json_get(d.addr, "/api/health/readiness").status, 200);
    assert_eq!(
        json_get(d.addr, "/api/health/components/kinfrad").status,
        200
    );

    std::fs::write(&cfg, "").expect("cfg");
    d.ctl_ok(&["reload"]);
    let j = json_get(d.addr, "/api/health").json();
    assert_eq!(j["status"], "healthy", "{j}");
    assert_eq!(j["components"]["kinfrad"]["checks"]["config"]["ok"], true);
}
