//! kinfrad's `/metrics`, scraped and parsed by a real OpenMetrics parser: Python's
//! `prometheus_client` (Debian's python3-prometheus-client, which scripts/test.sh installs).
//! The samples come back as (family, type, sample name, labels, value), so tests ask for a
//! value by name and labels, and see exactly what a Prometheus server would.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use super::http::{Resp, call};

/// The parser: every family's samples as JSON, or the parser's error on stderr.
const PARSE: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append([fam.name, fam.type, s.name, s.labels, s.value])
print(json.dumps(out))
"#;

/// A Python 3 that has `prometheus_client`: the one on PATH, else the system's (a Python on
/// PATH from elsewhere does not see Debian's packages).
fn python() -> &'static str {
    static FOUND: OnceLock<&'static str> = OnceLock::new();
    FOUND.get_or_init(|| {
        ["python3", "/usr/bin/python3"]
            .into_iter()
            .find(|py| {
                Command::new(py)
                    .args(["-c", "import prometheus_client"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .expect("no python3 with prometheus_client: install python3-prometheus-client (scripts/test.sh does)")
    })
}

/// One parsed sample.
#[derive(Debug, Clone)]
pub struct Sample {
    pub family: String,
    pub kind: String,
    pub name: String,
    pub labels: serde_json::Map<String, Value>,
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub samples: Vec<Sample>,
    pub text: String,
}

impl Metrics {
    /// Parse an exposition with the OpenMetrics parser (panics with the parser's complaint).
    pub fn parse(text: &str) -> Metrics {
        let mut child = Command::new(python())
            .args(["-c", PARSE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the parser");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write the exposition");
        let out = child.wait_with_output().expect("parser output");
        assert!(
            out.status.success(),
            "the OpenMetrics parser refused the exposition: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("parser JSON");
        let samples = rows
            .into_iter()
            .map(|r| Sample {
                family: r[0].as_str().unwrap_or_default().to_string(),
                kind: r[1].as_str().unwrap_or_default().to_string(),
                name: r[2].as_str().unwrap_or_default().to_string(),
                labels: r[3].as_object().cloned().unwrap_or_default(),
                value: r[4].as_f64().unwrap_or(f64::NAN),
            })
            .collect();
        Metrics {
            samples,
            text: text.to_string(),
        }
    }

    /// Samples called `name` whose labels include every one of `labels`.
    pub fn matching<'a>(&'a self, name: &'a str, labels: &'a [(&str, &str)]) -> Vec<&'a Sample> {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).and_then(Value::as_str) == Some(*v))
            })
            .collect()
    }

    /// The sum of the samples [`Metrics::matching`] finds (0 when none: a counter not yet
    /// moved is absent).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).iter().map(|s| s.value).sum()
    }

    /// The type of family `family` (None: not in the scrape).
    pub fn kind(&self, family: &str) -> Option<&str> {
        let declared = self.text.lines().find_map(|l| {
            l.strip_prefix("# TYPE ")
                .and_then(|r| r.strip_prefix(family))
                .and_then(|r| r.strip_prefix(' '))
        });
        declared.or_else(|| {
            self.samples
                .iter()
                .find(|s| s.family == family)
                .map(|s| s.kind.as_str())
        })
    }
}

/// `GET /metrics` with `headers` (Host: the address, a loopback one); the raw answer.
pub fn metrics_response(addr: SocketAddr, headers: &[(&str, &str)]) -> Resp {
    call(addr, "GET", "/metrics", None, headers, b"")
}

/// Scrape kinfrad at `addr` as a loopback reader and parse the answer, which must be a 200 in
/// the OpenMetrics content type.
pub fn scrape(addr: SocketAddr) -> Metrics {
    let r = metrics_response(addr, &[]);
    assert_eq!(r.status, 200, "/metrics: {}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Metrics::parse(&r.text())
}
