//! The sample Prometheus alerting rules in packaging/kinfra-alerts.yml, checked with the real
//! `promtool` (Debian's `prometheus` package; scripts/test.sh installs it): `check rules` for
//! syntax, and `test rules` with tests/alerts/kinfra-alerts.test.yml, which feeds each rule series
//! shaped like kinfrad's `/metrics` and expects it to fire after its `for:` and only then.

use std::path::PathBuf;
use std::process::Command;

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
        String::from_utf8_lossy(&o.stdout).contains("4 rules found"),
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
