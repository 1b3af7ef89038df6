//! The sample Prometheus alerting rules in packaging/kinfra-alerts.yml, checked with the real
//! `promtool` (Debian's `prometheus` package; scripts/test.sh installs it): `check rules` for
//! syntax, and `test rules` with tests/alerts/kinfra-alerts.test.yml, which feeds each rule series
//! shaped like kinfrad's `/metrics` and expects it to fire after its `for:` and only then; and
//! the names and labels the rules use, against a real kinfrad's `/metrics`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn promtool(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool ({e}): install Debian's prometheus package (scripts/test.sh does)")
        })
}

fn text(o: &std::process::Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn alert_rules_pass_promtool_check() {
    let o = promtool(
        &["check", "rules", "kinfra-alerts.yml"],
        &repo().join("packaging"),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("5 rules found"),
        "{}",
        text(&o)
    );
}

#[test]
fn alert_rules_fire_when_they_should_and_only_then() {
    let o = promtool(
        &["test", "rules", "kinfra-alerts.test.yml"],
        &repo().join("tests/alerts"),
    );
    assert!(o.status.success(), "{}", text(&o));
}

/// Every metric the rules name exists in a real kinfrad's `/metrics`, with the labels the rules
/// select and aggregate by: a renamed metric or label would leave an alert that never fires.
#[test]
fn alert_rules_name_metrics_and_labels_kinfrad_exposes() {
    let rules = std::fs::read_to_string(repo().join("packaging/kinfra-alerts.yml")).expect("rules");
    let mut names: Vec<&str> = rules
        .match_indices("kinfra_")
        .map(|(i, _)| {
            let rest = &rules[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    // A fleet's metrics exist only on a fleet host: tests/fleet checks those.
    names.retain(|n| !n.starts_with("kinfra_fleet_"));
    assert!(names.len() >= 4, "{names:?}");

    let up = Upstream::start(0, |s: &Seen| Reply::echo("web", s));
    let d = start_proxy(&url_service("web", up.port(), &["/"], FAST_HEALTH));
    wait_service(&d, "web", "running");
    assert_eq!(get(d.addr, "/x").status, 200);
    let m = scrape(d.addr);
    for name in &names {
        assert!(
            !m.matching(name, &[]).is_empty(),
            "the alert rules use {name}, which /metrics does not show:\n{}",
            m.text
        );
    }
    // The labels the rules read.
    for (name, labels) in [
        ("kinfra_component_up", &["component", "critical"][..]),
        ("kinfra_requests_total", &["service", "class"][..]),
        (
            "kinfra_upstream_response_seconds_bucket",
            &["service", "le"][..],
        ),
        ("kinfra_circuit_transitions_total", &["service", "to"][..]),
    ] {
        let samples = m.matching(name, &[]);
        assert!(
            samples
                .iter()
                .any(|s| labels.iter().all(|l| s.labels.contains_key(*l))),
            "{name} lacks one of the labels {labels:?}: {samples:?}"
        );
    }
    assert!(
        !m.matching("kinfra_component_up", &[("critical", "true")])
            .is_empty()
    );
    assert!(
        !m.matching(
            "kinfra_requests_total",
            &[("service", "web"), ("class", "2xx")]
        )
        .is_empty()
    );
}
