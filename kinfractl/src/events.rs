//! `kinfractl events`: kinfrad's recent events (circuit, health, process, maintenance, drain),
//! oldest first like a log, one line each; `-f` keeps following. The follower asks for the
//! events after the last `seq` it printed and kinfrad answers once there are some, so nothing
//! is missed or printed twice; when kinfrad goes away it says so and exits non-zero.

use std::io::Write;
use std::path::Path;

use kinfra_proto::client::{Client, ClientError};
use kinfra_proto::{EventReport, EventsReport, Request, Response};

use crate::request::Failure;

/// One event as a line: time, kind, service, route, reason, failures, latency.
pub fn render_event(e: &EventReport, json: bool) -> String {
    if json {
        return serde_json::to_string(e).unwrap_or_default();
    }
    let mut line = format!("{}  {:<17} {}", e.time, clean(&e.kind), clean(&e.service));
    if let Some(r) = &e.route {
        line.push_str(&format!(" route={}", clean(r)));
    }
    line.push_str(&format!("  {}", clean(&e.reason)));
    if let Some(n) = e.failures {
        line.push_str(&format!("  failures={n}"));
    }
    if let Some(ms) = e.latency_ms {
        line.push_str(&format!("  latency={ms}ms"));
    }
    line
}

/// Text from kinfrad's events (service names, upstream errors) with control characters shown
/// escaped, so none reaches the terminal.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn missed_note(n: u64) -> String {
    format!("({n} events were dropped from kinfrad's ring of 100 before they could be shown)")
}

/// kinfrad went away while this followed (stopped or killed).
fn went_away(path: &Path, why: &str) -> Failure {
    Failure::Client(ClientError::Unreachable {
        path: path.to_path_buf(),
        reason: format!("kinfrad went away while following events ({why})"),
    })
}

async fn page(client: &mut Client, after: u64, wait: bool) -> Result<EventsReport, ClientError> {
    match client
        .call(&Request::Events {
            after: Some(after),
            wait,
        })
        .await?
    {
        Response::Events(r) => Ok(r),
        other => Err(ClientError::Protocol(format!(
            "unexpected answer to events: {other:?}"
        ))),
    }
}

/// `kinfractl events [-f]`.
pub async fn events(path: &Path, follow: bool, json: bool) -> Result<String, Failure> {
    let mut client = Client::connect(path).await?;
    if !follow {
        let mut all: Vec<EventReport> = Vec::new();
        let mut missed = 0;
        let mut after = 0;
        loop {
            let r = page(&mut client, after, false).await?;
            // The first page starts at the oldest kept: what the ring dropped before is no miss.
            if after > 0 {
                missed += r.missed;
            }
            after = r.events.last().map_or(after, |e| e.seq);
            all.extend(r.events);
            if !r.more {
                break;
            }
        }
        if json {
            return Ok(serde_json::to_string_pretty(&all).unwrap_or_default());
        }
        if all.is_empty() {
            return Ok("no events yet".to_string());
        }
        let mut lines: Vec<String> = Vec::new();
        if missed > 0 {
            lines.push(missed_note(missed));
        }
        lines.extend(all.iter().map(|e| render_event(e, false)));
        return Ok(lines.join("\n"));
    }
    let mut after = 0;
    let mut first = true;
    loop {
        let r = match page(&mut client, after, !first).await {
            Ok(r) => r,
            Err(ClientError::Protocol(why)) => return Err(went_away(path, &why)),
            Err(ClientError::Refused { code, message }) if code == "shutting_down" => {
                return Err(went_away(path, &message));
            }
            Err(e) => return Err(e.into()),
        };
        if r.missed > 0 && !first {
            eprintln!("kinfractl: {}", missed_note(r.missed));
        }
        let mut out = std::io::stdout().lock();
        for e in &r.events {
            let _ = writeln!(out, "{}", render_event(e, json));
        }
        let _ = out.flush();
        after = r.events.last().map_or(after, |e| e.seq);
        // Keep reading without waiting while the backlog did not fit one answer.
        first = first && r.more;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_every_field_and_no_control_characters() {
        let e = EventReport {
            seq: 3,
            time: "2026-01-02T03:04:05Z".into(),
            kind: "circuit_open".into(),
            service: "api".into(),
            route: Some("/api".into()),
            reason: "5 consecutive failures\n\u{1b}[31m".into(),
            failures: Some(5),
            latency_ms: Some(12),
        };
        let line = render_event(&e, false);
        assert_eq!(
            line,
            "2026-01-02T03:04:05Z  circuit_open      api route=/api  5 consecutive failures\\n\\u{1b}[31m  failures=5  latency=12ms"
        );
        let back: EventReport = serde_json::from_str(&render_event(&e, true)).expect("json");
        assert_eq!(back, e);
    }
}
