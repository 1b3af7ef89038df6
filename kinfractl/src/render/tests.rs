//! Unit tests of kinfractl's text and JSON rendering.

use super::*;

#[test]
fn services_table_shows_circuit_and_errors() {
    let s = ServiceReport {
        name: "api".into(),
        url: "http://127.0.0.1:8000".into(),
        routes: vec!["/api/".into()],
        state: "circuit_open".into(),
        health: "Healthy".into(),
        circuit_state: "open".into(),
        circuit_failures: 5,
        circuit_opened_secs_ago: Some(3),
        requests: 10,
        failures: 5,
        last_error: "Connection refused".into(),
        in_maintenance: false,
        supervised: true,
        pid: Some(4242),
        port: Some(8000),
        uptime_secs: Some(65),
        restarts: 2,
        last_exit: "Process exited with code 1".into(),
        drain_progress: None,
    };
    let t = render_services(std::slice::from_ref(&s));
    assert!(t.contains("SERVICE") && t.contains("circuit_open"), "{t}");
    assert!(t.contains("open (5 failures, opened 3s ago)"), "{t}");
    assert!(t.contains("last error: Connection refused"), "{t}");
    assert_eq!(render_services(&[]), "");
    let ps = render_ps(std::slice::from_ref(&s));
    let mut lines = ps.lines();
    assert!(
        lines
            .next()
            .is_some_and(|h| h.starts_with("NAME") && h.contains("LAST EXIT")),
        "{ps}"
    );
    let row = lines.next().unwrap_or_default();
    for cell in [
        "api",
        "circuit_open",
        "4242",
        "8000",
        "1m 5s",
        "2",
        "Process exited with code 1",
    ] {
        assert!(row.contains(cell), "{cell} missing: {ps}");
    }
    let draining = ServiceReport {
        drain_progress: Some(0.42),
        ..s
    };
    assert!(render_ps(std::slice::from_ref(&draining)).contains("circuit_open (draining 42%)"));
}

#[test]
fn drains_read_as_text() {
    assert_eq!(render_drain(&DrainReport::default()), "drain: off");
    let stopped = DrainReport {
        rejected: 7,
        ..DrainReport::default()
    };
    assert!(render_drain(&stopped).contains("refused 7 requests"));
    let mut d = DrainReport {
        active: true,
        target: Some("ALL".into()),
        services: vec!["api".into(), "web".into()],
        start_time: Some(1_750_000_000_000),
        duration_ms: Some(60_000),
        end_time: Some(1_750_000_060_000),
        progress: 0.75,
        remaining_ms: 15_000,
        rejection_probability: 0.5,
        rejected: 12,
        in_flight: 3,
        drained: false,
        drained_at: None,
    };
    let t = render_drain(&d);
    assert!(
        t.starts_with("drain: draining ALL (api, web) since 2025-06-15T"),
        "{t}"
    );
    assert!(
        t.contains("(in 15s)") && t.contains("75% (new requests refused: 50%)"),
        "{t}"
    );
    assert!(
        t.contains("refused:     12") && t.contains("in flight:   3"),
        "{t}"
    );
    d.drained = true;
    d.drained_at = Some(1_750_000_060_100);
    assert!(render_drain(&d).starts_with("drain: DRAINED ALL (api, web) at "));
}
