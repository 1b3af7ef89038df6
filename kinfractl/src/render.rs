//! An answer as text for people, or as JSON with `--json`.

use kinfra_proto::fmt::{human_secs, iso};
use kinfra_proto::{
    DrainReport, LogEntry, MAX_FRAME, Response, ServiceReport, StatusReport, StatusView,
};

pub fn render_log_line(l: &LogEntry, json: bool) -> String {
    if json {
        return serde_json::to_string(l).unwrap_or_default();
    }
    format!(
        "{} {:<5} {}",
        l.timestamp,
        l.level.to_ascii_uppercase(),
        l.message
    )
}

pub fn render(resp: &Response, json: bool) -> String {
    match resp {
        Response::Token { token } if !json => token.clone(),
        _ if json => match resp {
            Response::Status(r) => serde_json::to_string_pretty(r).unwrap_or_default(),
            Response::Maintenance(v) => serde_json::to_string_pretty(v).unwrap_or_default(),
            Response::Drain(d) => serde_json::to_string_pretty(d).unwrap_or_default(),
            Response::Fleet(r) => serde_json::to_string_pretty(r).unwrap_or_default(),
            Response::MaintRecords { records } => {
                serde_json::to_string_pretty(records).unwrap_or_default()
            }
            Response::Schedule { windows } => {
                serde_json::to_string_pretty(windows).unwrap_or_default()
            }
            other => serde_json::to_string_pretty(other).unwrap_or_default(),
        },
        Response::Status(r) => render_report(r),
        Response::Maintenance(v) => render_maint(v),
        Response::MaintRecords { records } => render_records(records),
        Response::Schedule { windows } => crate::schedule::render_windows(windows),
        Response::Reloaded { config } => format!("reloaded configuration from {config}"),
        Response::Hello { server, .. } => server.clone(),
        Response::Token { token } => token.clone(),
        Response::Services { services } => render_ps(services),
        Response::ServiceAction { service, action } => format!("{action}: {service}"),
        Response::Logs {
            lines,
            dropped,
            omitted,
            ..
        } => {
            let mut out: Vec<String> = Vec::new();
            if *omitted > 0 {
                out.push(format!(
                    "({omitted} older lines not shown: one answer holds at most {} KiB; ask for fewer with -n)",
                    MAX_FRAME / 1024
                ));
            }
            if *dropped > 0 {
                out.push(format!(
                    "({dropped} older lines were dropped from the buffer)"
                ));
            }
            out.extend(lines.iter().map(|l| render_log_line(l, false)));
            out.join("\n")
        }
        Response::Error { code, message } => format!("error: {message} ({})", code.as_str()),
        Response::Drain(d) => render_drain(d),
        Response::Fleet(r) => crate::fleet::render(r),
        Response::Events(r) => r
            .events
            .iter()
            .map(|e| crate::events::render_event(e, false))
            .collect::<Vec<_>>()
            .join("\n"),
        Response::BypassLink {
            url,
            expires,
            target,
            ..
        } => format!(
            "{url}\n(opens once; bypasses {} until {expires}; a drain still refuses)",
            match target {
                Some(t) => format!("the maintenance of {t}"),
                None => "every maintenance record".to_string(),
            }
        ),
    }
}

/// `kinfractl drain …`, and the drain's lines of `kinfractl status`.
fn render_drain(d: &DrainReport) -> String {
    if !d.active {
        return match d.rejected {
            0 => "drain: off".to_string(),
            n => format!("drain: off (the stopped drain refused {n} requests)"),
        };
    }
    let target = d.target.as_deref().unwrap_or("ALL");
    let services = if d.services.is_empty() {
        "no configured service".to_string()
    } else {
        d.services.join(", ")
    };
    let mut out = match (d.drained, d.drained_at) {
        (true, at) => format!(
            "drain: DRAINED {target} ({services}){}; new requests are refused until 'kinfractl drain stop'\n",
            at.map(|t| format!(" at {}", iso(t))).unwrap_or_default()
        ),
        (false, _) => format!(
            "drain: draining {target} ({services}) since {}, over at {} (in {})\n",
            d.start_time.map(iso).unwrap_or_default(),
            d.end_time.map(iso).unwrap_or_default(),
            human_secs(d.remaining_ms.div_ceil(1000))
        ),
    };
    out.push_str(&format!(
        "  progress:    {:.0}% (new requests refused: {:.0}%)\n",
        d.progress * 100.0,
        d.rejection_probability * 100.0
    ));
    out.push_str(&format!("  refused:     {}\n", d.rejected));
    out.push_str(&format!("  in flight:   {}", d.in_flight));
    out
}

/// A service's state, with the drain's progress while one covers it.
fn with_drain(state: String, s: &ServiceReport) -> String {
    match s.drain_progress {
        Some(p) => format!("{state} (draining {:.0}%)", p * 100.0),
        None => state,
    }
}

/// `kinfractl ps`: one line per service.
fn render_ps(list: &[ServiceReport]) -> String {
    if list.is_empty() {
        return "no services are configured".to_string();
    }
    let head = [
        "NAME",
        "STATE",
        "PID",
        "PORT",
        "UPTIME",
        "RESTARTS",
        "HEALTH",
        "LAST EXIT",
    ];
    let rows: Vec<[String; 8]> = list
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                with_drain(s.state.clone(), s),
                s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                s.port.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                s.uptime_secs.map(human_secs).unwrap_or_else(|| "-".into()),
                if s.supervised {
                    s.restarts.to_string()
                } else {
                    "-".into()
                },
                s.health.clone(),
                if s.last_exit.is_empty() {
                    "-".into()
                } else {
                    s.last_exit.clone()
                },
            ]
        })
        .collect();
    table(&head, &rows)
}

/// "maintenance" for the global record, "maintenance of TARGET" for another.
fn maint_label(v: &StatusView) -> String {
    match v.target.as_deref() {
        None | Some("ALL") => "maintenance".to_string(),
        Some(t) => format!("maintenance of {t}"),
    }
}

fn render_maint(v: &StatusView) -> String {
    let mut out = String::new();
    if !v.is_active {
        out.push_str(&format!("{}: off", maint_label(v)));
        if v.prepared {
            out.push_str(" (kept for the next time it is entered:");
            if let Some(m) = &v.message {
                out.push_str(&format!(" message {m:?}"));
            }
            if let Some(i) = &v.current_issue {
                out.push_str(&format!(" task {i:?}"));
            }
            match (v.estimated_completion, v.countdown) {
                (Some(eta), _) => out.push_str(&format!(" ETA {}", iso(eta))),
                (None, Some(cd)) => out.push_str(&format!(" countdown {}", human_secs(cd))),
                _ => {}
            }
            if let Some(u) = &v.maintenance_page_url {
                out.push_str(&format!(" page {u}"));
            }
            out.push(')');
        }
        return out;
    }
    let since = v.start_time.map(iso).unwrap_or_default();
    out.push_str(&format!(
        "maintenance: ON since {since} (target {})\n",
        v.target.as_deref().unwrap_or("ALL")
    ));
    if !v.routes.is_empty() {
        out.push_str(&format!("  routes:      {}\n", v.routes.join(" ")));
    }
    out.push_str(&format!(
        "  message:     {}\n",
        v.message.as_deref().unwrap_or("")
    ));
    if let Some(i) = v.current_issue.as_deref().filter(|s| !s.is_empty()) {
        out.push_str(&format!("  task:        {i}\n"));
    }
    match (v.estimated_completion, v.countdown) {
        (Some(eta), Some(0)) => out.push_str(&format!("  ETA:         {} (overdue)\n", iso(eta))),
        (Some(eta), Some(cd)) => out.push_str(&format!(
            "  ETA:         {} (in {})\n",
            iso(eta),
            human_secs(cd)
        )),
        _ => out.push_str("  ETA:         none\n"),
    }
    out.push_str(&format!(
        "  page:        {}\n",
        v.maintenance_page_url.as_deref().unwrap_or("built-in")
    ));
    out.push_str(&format!("  hits:        {}", v.hits));
    out
}

/// `kinfractl maint list`: one line per record, and per target with settings kept for later.
fn render_records(list: &[StatusView]) -> String {
    if list.is_empty() {
        return "no maintenance records: every route is served".to_string();
    }
    let head = ["TARGET", "STATE", "SINCE", "ETA", "HITS", "PAGE", "MESSAGE"];
    let rows: Vec<[String; 7]> = list
        .iter()
        .map(|v| {
            let state = if v.is_active {
                "on"
            } else if v.prepared {
                "kept"
            } else {
                "off"
            };
            let eta = match (v.estimated_completion, v.countdown) {
                (Some(_), Some(0)) if v.is_active => "overdue".to_string(),
                (Some(_), Some(cd)) if v.is_active => format!("in {}", human_secs(cd)),
                (Some(eta), _) => iso(eta),
                (None, Some(cd)) => format!("{} after entry", human_secs(cd)),
                _ => "-".to_string(),
            };
            [
                v.target.clone().unwrap_or_else(|| "ALL".into()),
                state.to_string(),
                v.start_time.map(iso).unwrap_or_else(|| "-".into()),
                eta,
                if v.is_active {
                    v.hits.to_string()
                } else {
                    "-".into()
                },
                v.maintenance_page_url
                    .clone()
                    .unwrap_or_else(|| "built-in".into()),
                v.message
                    .as_deref()
                    .map_or_else(|| "-".into(), |m| m.replace(['\n', '\t'], " ")),
            ]
        })
        .collect();
    table(&head, &rows)
}

fn render_report(r: &StatusReport) -> String {
    let mut out = format!(
        "kinfrad {} (pid {}, up {})\n  config:      {}\n  listening:   {}\n  control:     {}\n  state:       {}\n  connections: {}\n",
        r.version,
        r.pid,
        human_secs(r.uptime_secs),
        r.config,
        r.listen.join(", "),
        r.control_socket,
        r.state_file,
        r.open_connections
    );
    out.push_str(&render_maint(&r.maintenance));
    let others: Vec<&StatusView> = r
        .maintenance_records
        .iter()
        .filter(|v| v.target.as_deref() != Some("ALL"))
        .collect();
    if !others.is_empty() {
        out.push_str("\nper-target maintenance:\n");
        let list: Vec<StatusView> = others.into_iter().cloned().collect();
        for l in render_records(&list).lines() {
            out.push_str(&format!("  {l}\n"));
        }
        out.pop();
    }
    if let Some(d) = &r.drain {
        out.push('\n');
        out.push_str(&render_drain(d));
    }
    if !r.schedules.is_empty() {
        out.push_str("\nscheduled maintenance:\n");
        for l in crate::schedule::render_windows(&r.schedules).lines() {
            out.push_str(&format!("  {l}\n"));
        }
        out.pop();
    }
    if let Some(f) = &r.fleet {
        out.push('\n');
        out.push_str(&crate::fleet::status_line(
            &f.node,
            &f.link,
            f.applied_revision,
            f.nodes,
        ));
    }
    out.push_str(&render_services(&r.services));
    for p in &r.problems {
        out.push_str(&format!("\nPROBLEM: {p}"));
    }
    out
}

/// The services table of `kinfractl status` ("" when none are configured).
fn render_services(list: &[ServiceReport]) -> String {
    if list.is_empty() {
        return String::new();
    }
    let rows: Vec<[String; 6]> = list
        .iter()
        .map(|s| {
            let circuit = match s.circuit_opened_secs_ago {
                Some(ago) => format!(
                    "{} ({} failures, opened {} ago)",
                    s.circuit_state,
                    s.circuit_failures,
                    human_secs(ago)
                ),
                None if s.circuit_failures > 0 => {
                    format!("{} ({} failures)", s.circuit_state, s.circuit_failures)
                }
                None => s.circuit_state.clone(),
            };
            let state = if s.in_maintenance {
                format!("{} (maintenance)", s.state)
            } else {
                s.state.clone()
            };
            let state = with_drain(state, s);
            [
                s.name.clone(),
                state,
                s.health.clone(),
                circuit,
                format!("{}/{}", s.failures, s.requests),
                s.routes.join(" "),
            ]
        })
        .collect();
    let head = [
        "SERVICE",
        "STATE",
        "HEALTH",
        "CIRCUIT",
        "FAILED/REQ",
        "ROUTES",
    ];
    let mut width = head.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut l = String::from("\n  ");
        for (i, c) in cells.iter().enumerate() {
            l.push_str(c);
            if i + 1 < cells.len() {
                l.push_str(&" ".repeat(width[i] - c.chars().count() + 2));
            }
        }
        l
    };
    let mut out = String::from("\nservices:");
    out.push_str(&line(&head.map(String::from)));
    for (r, s) in rows.iter().zip(list) {
        out.push_str(&line(r));
        if !s.last_error.is_empty() && s.state != "running" {
            out.push_str(&format!("\n    last error: {}", s.last_error));
        }
    }
    out
}

/// Columns padded to their widest cell, two spaces apart; trailing spaces trimmed.
fn table<const N: usize>(head: &[&str; N], rows: &[[String; N]]) -> String {
    let mut width = head.map(str::len);
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            l.push_str(c);
            if i + 1 < cells.len() {
                l.push_str(&" ".repeat(width[i] - c.chars().count() + 2));
            }
        }
        l.trim_end().to_string()
    };
    let mut out = vec![line(&head.map(String::from))];
    out.extend(rows.iter().map(|r| line(r)));
    out.join("\n")
}

#[cfg(test)]
mod tests;
