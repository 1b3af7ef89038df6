//! A service's output: `kinfractl logs -f` prints new lines as they come, a flood of output
//! stays bounded in kinfrad's memory, and bad `[[service]]` tables name the key at fault.

use std::time::Duration;

use crate::common;
use crate::prelude::*;
use serde_json::Value;

#[test]
fn logs_follow_prints_new_lines_as_they_come() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tmp");
    let d = start(
        dir,
        &format!(
            r#"
[[service]]
name = "ticker"
command = "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.2; done"
shell = true
preferred_port = {}
routes = ["/"]
"#,
            common::free_port()
        ),
        &[],
    );
    let mut child = std::process::Command::new(common::kinfractl())
        .arg("--socket")
        .arg(&d.control)
        .args(["logs", "ticker", "-n", "1", "-f"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kinfractl logs -f");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut ticks = Vec::new();
    while ticks.len() < 4 {
        let line = rx.recv_timeout(T).expect("a followed line");
        let n: u64 = line
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a tick: {line}"));
        ticks.push(n);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        ticks.windows(2).all(|w| w[1] == w[0] + 1),
        "each line once, in order: {ticks:?}"
    );
}

#[test]
fn a_flood_of_output_stays_bounded() {
    let dir = tempfile::tempdir().expect("tmp");
    // 100 MB as fast as the pipe takes it, in 4,000-byte lines (25,000 of them), then idle.
    let d = start(
        dir,
        &format!(
            r#"
[[service]]
name = "loud"
command = "yes \"$(head -c 3999 /dev/zero | tr '\\0' x)\" | head -c 100000000; exec sleep 600"
shell = true
preferred_port = {}
routes = ["/"]
log_lines = 200
"#,
            common::free_port()
        ),
        &[],
    );
    // 100,000,000 / 4,000 bytes a line = 25,000 lines, of which the ring keeps 200.
    let j = eventually(Duration::from_secs(60), "the flood to be read", || {
        let out = d.ctl_ok(&["--json", "logs", "loud", "-n", "1000"]);
        let j: Value = serde_json::from_str(&out).expect("json");
        (j["dropped"].as_u64().unwrap_or(0) >= 24_800).then_some(j)
    });
    let longest = j["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["message"].as_str())
        .map(str::len)
        .max();
    assert_eq!(longest, Some(3999), "whole lines kept");
    // The ring holds log_lines (200); one answer carries as many of the newest as fit 64 KiB.
    let shown = j["lines"].as_array().map_or(0, |a| a.len()) as u64;
    assert!(shown >= 10, "{shown} lines shown");
    assert_eq!(
        shown + j["omitted"].as_u64().unwrap_or(0),
        200,
        "ring holds log_lines"
    );
    assert!(
        d.ctl_ok(&["logs", "loud", "-n", "3"])
            .contains("older lines were dropped")
    );
    let kb: u64 = vmrss_kib(d.pid()).expect("VmRSS");
    assert!(
        kb < 100_000,
        "kinfrad holds {kb} KiB after 100 MB of output"
    );
}

#[test]
fn bad_service_configs_name_the_key() {
    let cases = [
        ("name = \"a\"\nroutes = [\"/\"]", "(a).url"),
        (
            "name = \"a\"\nurl = \"http://x\"\ncommand = [\"x\"]\nroutes = [\"/\"]",
            "(a).command",
        ),
        (
            "name = \"a\"\ncommand = []\nroutes = [\"/\"]",
            "(a).command",
        ),
        (
            "name = \"a\"\ncommand = \"ls -l\"\nroutes = [\"/\"]",
            "(a).command",
        ),
        (
            "name = \"a\"\ncommand = [\"x\"]\npreferred_port = 70000\nroutes = [\"/\"]",
            "(a).preferred_port",
        ),
        (
            "name = \"a\"\ncommand = [\"x\"]\nrestart = \"sometimes\"\nroutes = [\"/\"]",
            "(a).restart",
        ),
        (
            "name = \"a\"\ncommand = [\"x\"]\nstop_signal = \"SIGNOPE\"\nroutes = [\"/\"]",
            "(a).stop_signal",
        ),
        (
            "name = \"a\"\ncommand = [\"x\"]\ncwd = \"relative\"\nroutes = [\"/\"]",
            "(a).cwd",
        ),
        (
            "name = \"a\"\ncommand = [\"x\"]\nenv = { PORT = \"1\" }\nroutes = [\"/\"]",
            "(a).env.PORT",
        ),
        (
            "name = \"a\"\nurl = \"http://x\"\nrestart = \"always\"\nroutes = [\"/\"]",
            "(a).restart",
        ),
        (
            "name = \"a\"\ncommand = [\"x\"]\nroutes = [\"/\"]\ncomand = 1",
            "comand",
        ),
    ];
    for (body, key) in cases {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("k.toml");
        std::fs::write(&path, format!("[[service]]\n{body}\n")).expect("write");
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_kinfrad"))
            .arg("--check-config")
            .arg("--config")
            .arg(&path)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{body}: {err}");
        assert!(err.contains(key), "{body}: expected {key} in {err}");
    }
}
