//! Unit tests of one upstream's state machine: health, grace, breaker, and the visitor-safe
//! error text.

use super::*;

#[test]
fn visitors_read_a_summary_of_raw_errors() {
    for kept in [
        "",
        "Connection refused",
        "Connect timed out",
        "No response within 1m",
        "Process exited with code 1",
        "Process killed by signal 9 (SIGKILL)",
    ] {
        assert_eq!(public_error(kept), kept);
    }
    let raw = "client error (Connect): tcp connect error: 10.1.2.3:8080: No route to host";
    assert_eq!(public_error(raw), "The service failed to answer");
    assert_eq!(
        public_error("Health check GET /internal/ping returned 500"),
        "Health check failed"
    );
    assert_eq!(
        public_error("No response within /etc/secret path"),
        "The service failed to answer"
    );
}

fn up(extra: &str) -> Upstream {
    let raw: crate::config::service::RawService = toml::from_str(&format!(
        "name = \"api\"\nurl = \"http://127.0.0.1:1\"\nroutes = [\"/\"]\n{extra}"
    ))
    .expect("raw");
    Upstream::new(
        ServiceConfig::from_raw(0, &raw).expect("cfg"),
        None,
        std::sync::Arc::new(crate::eventlog::EventLog::new()),
    )
    .expect("upstream")
}

#[test]
fn starts_starting_then_healthy_then_down() {
    let u = up("health_check = { path = \"/h\", unhealthy_threshold = 2 }");
    let now = Instant::now();
    assert_eq!(u.state_name(now), "starting");
    assert!(u.admit(now).is_none(), "no traffic before ready");
    assert!(u.on_probe(ProbeOutcome::Ok));
    assert_eq!(u.state_name(now), "running");
    assert_eq!(u.admit(now), Some(Admit::Yes));
    u.on_probe(ProbeOutcome::CheckFailed("status 500".into()));
    assert_eq!(
        u.health(),
        Health::Healthy,
        "one failure is below the threshold"
    );
    assert!(u.on_probe(ProbeOutcome::CheckFailed("status 500".into())));
    assert_eq!(u.state_name(now), "down");
    assert_eq!(u.page_kind(now), "503");
    assert_eq!(u.snapshot(now).error_detail, "status 500");
}

#[test]
fn startup_grace_keeps_loading_page() {
    let u = up("health_check = { grace = \"1h\" }");
    let now = Instant::now();
    u.on_probe(ProbeOutcome::ConnectFailed("Connection refused".into()));
    assert_eq!(u.state_name(now), "starting");
    assert_eq!(u.page_kind(now), "loading");
    let s = u.snapshot(now);
    assert_eq!(s.steps[0].status, "active");
    let u = up("health_check = { grace = \"0s\" }");
    u.on_probe(ProbeOutcome::ConnectFailed("Connection refused".into()));
    assert_eq!(u.state_name(now), "unhealthy");
    assert_eq!(u.snapshot(now).steps[0].status, "failed");
}

#[test]
fn passive_connect_errors_and_breaker() {
    let u = up("circuit_breaker = { failures = 2, cooldown = \"5s\" }");
    let now = Instant::now();
    u.on_probe(ProbeOutcome::Ok);
    u.on_response(now, true);
    u.on_response(now, true);
    assert_eq!(u.state_name(now), "circuit_open");
    assert!(u.admit(now).is_none());
    assert_eq!(u.admit(now + Duration::from_secs(6)), Some(Admit::Trial));
    u.on_error(now, true, "Connection refused".into());
    assert_eq!(u.health(), Health::Unhealthy);
    // The probe seeing it back closes the circuit too.
    u.on_probe(ProbeOutcome::Ok);
    assert_eq!(u.state_name(now + Duration::from_secs(7)), "running");
}

/// (kind, reason, failures) of every event recorded so far.
fn recorded(u: &Upstream) -> Vec<(&'static str, String, Option<u32>)> {
    u.eventlog()
        .recent()
        .into_iter()
        .map(|e| (e.kind.as_str(), e.reason, e.failures))
        .collect()
}

#[test]
fn every_move_is_recorded_once_with_its_reason() {
    let u = up(
        "health_check = { path = \"/h\", unhealthy_threshold = 2 }\ncircuit_breaker = { failures = 2, cooldown = \"5s\", half_open_requests = 1 }",
    );
    let now = Instant::now();
    u.on_probe_timed(ProbeOutcome::Ok, Duration::from_millis(7));
    u.on_probe(ProbeOutcome::Ok);
    u.on_response(now, true);
    u.on_response(now, true);
    u.on_response(now, true);
    assert!(u.admit(now).is_none());
    let later = now + Duration::from_secs(6);
    assert_eq!(u.admit(later), Some(Admit::Trial));
    u.on_response(later, false);
    u.on_probe(ProbeOutcome::CheckFailed("status 500".into()));
    u.on_probe(ProbeOutcome::CheckFailed("status 500".into()));
    u.on_probe(ProbeOutcome::CheckFailed("status 500".into()));
    assert_eq!(
        recorded(&u),
        vec![
            ("health_up", "health check passed".to_string(), None),
            (
                "circuit_open",
                "2 consecutive failures (last: a 5xx response)".to_string(),
                Some(2)
            ),
            (
                "circuit_half_open",
                "cool-down of 5s over; trying requests".to_string(),
                None
            ),
            (
                "circuit_closed",
                "trial requests succeeded".to_string(),
                None
            ),
            ("health_down", "status 500".to_string(), Some(2)),
        ]
    );
    assert_eq!(u.eventlog().recent()[0].latency_ms, Some(7));
}
