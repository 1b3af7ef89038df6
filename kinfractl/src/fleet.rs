//! `kinfractl --fleet …` and `kinfractl fleet status`: the commands that change or show the
//! intent every kinfrad of a fleet shares through etcd (kinfrad does the etcd work; this only
//! builds the request and renders the answer).

use kinfra_proto::fmt::human_secs;
use kinfra_proto::{FleetChange, FleetLink, FleetReport, Request};

use crate::args::{Cli, Command, Drain, FleetCmd, Maint};

const FLEET_VERBS: &str = "--fleet works with: maint enter, maint exit, maint list, drain start, \
drain stop, stop SERVICE, start SERVICE (and `kinfractl fleet status`)";

/// The request of a `--fleet` command line.
pub fn request(cli: &Cli) -> Result<Request, String> {
    let change = |change| Request::Fleet {
        change,
        revision: cli.revision,
    };
    let req = match &cli.command {
        Command::Maint(Maint::Enter { url, target, page }) => change(FleetChange::MaintEnter {
            url: url.clone(),
            message: page.message.clone(),
            issue: page.issue.clone(),
            countdown_secs: page.countdown_secs()?,
            target: target.clone(),
        }),
        Command::Maint(Maint::Exit { target, all }) => change(FleetChange::MaintExit {
            target: target.clone(),
            all: *all,
        }),
        Command::Maint(Maint::List) if cli.revision.is_none() => Request::FleetList,
        Command::Drain(Drain::Start { target, duration }) => change(FleetChange::DrainStart {
            target: target.clone(),
            duration_ms: *duration,
        }),
        Command::Drain(Drain::Stop) => change(FleetChange::DrainStop),
        Command::Stop { service } => change(FleetChange::Stop {
            service: service.clone(),
        }),
        Command::Start { service } => change(FleetChange::Start {
            service: service.clone(),
        }),
        Command::Fleet(FleetCmd::Status) if cli.revision.is_none() => Request::FleetStatus,
        Command::Maint(Maint::List) | Command::Fleet(_) => {
            return Err("--revision is for commands that change the fleet's intent".to_string());
        }
        _ => return Err(FLEET_VERBS.to_string()),
    };
    Ok(req)
}

fn link_line(l: &FleetLink) -> String {
    let at = l.endpoint.as_deref().unwrap_or("etcd");
    if l.connected {
        format!("connected to {at} since {}", l.since)
    } else {
        format!(
            "disconnected since {} ({}); serving the last fleet state known",
            l.since,
            l.error.as_deref().unwrap_or("no answer")
        )
    }
}

/// `kinfractl status`'s fleet line.
pub fn status_line(node: &str, l: &FleetLink, applied: i64, nodes: usize) -> String {
    format!(
        "  fleet:       {}\n               this host {node}, intent revision {applied} applied, {nodes} host{} present",
        link_line(l),
        if nodes == 1 { "" } else { "s" }
    )
}

pub fn render(r: &FleetReport) -> String {
    let mut out = vec![format!(
        "fleet {} (this host: {}): {}",
        r.prefix,
        r.node,
        link_line(&r.link)
    )];
    let by = match (&r.changed_by, &r.changed_at) {
        (Some(b), Some(a)) => format!(", changed by {b} at {a}"),
        _ => String::new(),
    };
    out.push(format!(
        "intent: revision {}{by}; applied here: revision {}{}",
        r.revision,
        r.applied_revision,
        match r.applied_here {
            Some(true) => " (this change is in effect here)",
            Some(false) => " (this change is not in effect here yet)",
            None => "",
        }
    ));
    if r.maintenance.is_empty() {
        out.push("maintenance: none".to_string());
    } else {
        out.push("maintenance:".to_string());
        for m in &r.maintenance {
            let mut line = format!("  {:<24} {:?}", m.target, m.message);
            if !m.issue.is_empty() {
                line.push_str(&format!(" issue {:?}", m.issue));
            }
            if let Some(e) = &m.eta {
                line.push_str(&format!(" until {e}"));
            }
            if let Some(u) = &m.page_url {
                line.push_str(&format!(" page {u}"));
            }
            line.push_str(&format!(" (since {})", m.since));
            out.push(line);
        }
    }
    match &r.drain {
        Some(d) => out.push(format!(
            "drain: {} from {} over {}",
            d.target,
            d.start,
            human_secs(d.duration_secs)
        )),
        None => out.push("drain: none".to_string()),
    }
    if !r.stopped.is_empty() {
        out.push(format!("stopped: {}", r.stopped.join(", ")));
    }
    if !r.nodes.is_empty() {
        out.push(format!("hosts ({}):", r.nodes.len()));
        out.push(format!(
            "  {:<20} {:<10} {:>8}  {:<24}  SERVICES",
            "NODE", "VERSION", "APPLIED", "UPDATED"
        ));
        for n in &r.nodes {
            let services: Vec<String> = n
                .services
                .iter()
                .map(|s| format!("{} {}", s.name, s.health))
                .collect();
            let name = if n.this {
                format!("{} (this)", n.node)
            } else {
                n.node.clone()
            };
            out.push(format!(
                "  {:<20} {:<10} {:>8}  {:<24}  {}",
                name,
                n.version,
                n.applied_revision,
                n.updated,
                if services.is_empty() {
                    "-".to_string()
                } else {
                    services.join(", ")
                }
            ));
            for p in &n.problems {
                out.push(format!("    not applied there: {p}"));
            }
        }
    }
    for p in &r.problems {
        out.push(format!("PROBLEM here: {p}"));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn req(args: &[&str]) -> Result<Request, String> {
        let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
        request(&cli)
    }

    #[test]
    fn fleet_verbs_become_fleet_requests() {
        match req(&[
            "kinfractl",
            "--fleet",
            "maint",
            "enter",
            "--countdown",
            "600",
        ]) {
            Ok(Request::Fleet {
                change: FleetChange::MaintEnter { countdown_secs, .. },
                revision: None,
            }) => assert_eq!(countdown_secs, Some(600)),
            o => panic!("{o:?}"),
        }
        match req(&[
            "kinfractl",
            "maint",
            "exit",
            "--all",
            "--fleet",
            "--revision",
            "7",
        ]) {
            Ok(Request::Fleet {
                change: FleetChange::MaintExit { all: true, .. },
                revision: Some(7),
            }) => {}
            o => panic!("{o:?}"),
        }
        assert_eq!(
            req(&["kinfractl", "--fleet", "maint", "list"]),
            Ok(Request::FleetList)
        );
        assert_eq!(
            req(&["kinfractl", "fleet", "status"]),
            Ok(Request::FleetStatus)
        );
        assert!(matches!(
            req(&["kinfractl", "--fleet", "stop", "api"]),
            Ok(Request::Fleet {
                change: FleetChange::Stop { .. },
                ..
            })
        ));
        let e = req(&["kinfractl", "--fleet", "restart", "api"]).expect_err("not a fleet verb");
        assert!(e.contains("--fleet works with"), "{e}");
        assert!(req(&["kinfractl", "--fleet", "--revision", "3", "maint", "list"]).is_err());
        // --revision needs --fleet.
        assert!(req(&["kinfractl", "--revision", "3", "maint", "exit"]).is_err());
    }
}
