//! From arguments to one control request, sent and answered (`logs -f` keeps asking).

use std::path::Path;

use kinfra_proto::client::{Client, ClientError};
use kinfra_proto::{LogEntry, Request, Response, StatusView, StepSpec};

use crate::args::{Cli, Command, Drain, FleetCmd, Maint};
use crate::render::{render, render_log_line};

/// Why a command failed before or while talking to kinfrad.
pub enum Failure {
    Usage(String),
    Client(ClientError),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::Client(e)
    }
}

/// Send what `cli` asks for to kinfrad at `path`; the answer rendered for printing.
pub async fn execute(cli: &Cli, path: &Path) -> Result<String, Failure> {
    let req = match &cli.command {
        _ if cli.fleet => crate::fleet::request(cli).map_err(Failure::Usage)?,
        Command::Fleet(FleetCmd::Status) => Request::FleetStatus,
        Command::Status(a) if a.page.any() => Request::MaintUpdate {
            message: a.page.message.clone(),
            issue: a.page.issue.clone(),
            countdown_secs: a.page.countdown_secs().map_err(Failure::Usage)?,
            target: None,
            url: None,
        },
        Command::Status(_) => Request::Status,
        Command::Maint(Maint::Enter { url, target, page }) => Request::MaintEnter {
            url: url.clone(),
            message: page.message.clone(),
            issue: page.issue.clone(),
            countdown_secs: page.countdown_secs().map_err(Failure::Usage)?,
            target: target.clone(),
        },
        Command::Maint(Maint::Update { url, target, page }) => Request::MaintUpdate {
            message: page.message.clone(),
            issue: page.issue.clone(),
            countdown_secs: page.countdown_secs().map_err(Failure::Usage)?,
            target: target.clone(),
            url: url.clone(),
        },
        Command::Maint(Maint::Exit { target, all }) => {
            let req = Request::MaintExit {
                target: target.clone(),
                all: *all,
            };
            let mut client = Client::connect(path).await?;
            let resp = client.call(&req).await?;
            let mut out = render(&resp, cli.json);
            // The global record left, others may stay: say so, so nobody thinks all is open.
            if !cli.json
                && target.is_none()
                && !*all
                && let Ok(Response::MaintRecords { records }) =
                    client.call(&Request::MaintList).await
            {
                out.push_str(&still_active(&records));
            }
            return Ok(out);
        }
        Command::Maint(Maint::List) => Request::MaintList,
        Command::Maint(Maint::BypassLink {
            ttl,
            target,
            base,
            path,
        }) => Request::MaintBypassLink {
            // `parse_duration` gives milliseconds; a link lives whole seconds (at least one).
            ttl_secs: Some(ttl.div_ceil(1000)),
            target: target.clone(),
            base: base.clone(),
            path: Some(path.clone()),
        },
        Command::Maint(Maint::Schedule(a)) => {
            crate::schedule::request(a).map_err(Failure::Usage)?
        }
        Command::Reload => Request::Reload,
        Command::Token => Request::Token,
        Command::Ps => Request::Ps,
        Command::Start { service } => Request::ServiceStart {
            service: service.clone(),
        },
        Command::Stop { service } => Request::ServiceStop {
            service: service.clone(),
        },
        Command::Restart { service } => Request::ServiceRestart {
            service: service.clone(),
        },
        Command::Progress {
            service,
            message,
            steps,
            clear,
        } => Request::ServiceProgress {
            service: service.clone(),
            message: message.clone(),
            steps: steps.iter().map(|s| parse_step(s)).collect(),
            clear: *clear,
        },
        Command::Drain(Drain::Start { target, duration }) => Request::DrainStart {
            target: target.clone(),
            duration_ms: *duration,
        },
        Command::Drain(Drain::Stop) => Request::DrainStop,
        Command::Drain(Drain::Status) => Request::DrainStatus,
        Command::Drain(Drain::Wait) => {
            let mut client = Client::connect(path).await?;
            return match client.call(&Request::DrainWait).await {
                Ok(resp) => Ok(render(&resp, cli.json)),
                // kinfrad stopped (it said so) or was killed (the connection ended with no
                // answer): either way it went away, exit 3.
                Err(ClientError::Protocol(why)) => Err(went_away(path, &why)),
                Err(ClientError::Refused { code, message }) if code == "shutting_down" => {
                    Err(went_away(path, &message))
                }
                Err(e) => Err(e.into()),
            };
        }
        Command::Events { follow } => {
            return crate::events::events(path, *follow, cli.json).await;
        }
        Command::Logs {
            service,
            lines,
            follow,
        } => {
            let req = Request::Logs {
                service: service.clone(),
                lines: *lines,
            };
            let mut client = Client::connect(path).await?;
            let resp = client.call(&req).await?;
            if !*follow {
                return Ok(render(&resp, cli.json));
            }
            return follow_logs(&mut client, service, resp, cli.json).await;
        }
    };
    let mut client = Client::connect(path).await?;
    let resp = client.call(&req).await?;
    Ok(render(&resp, cli.json))
}

/// kinfrad went away while `drain wait` waited (stopped or killed).
fn went_away(path: &Path, why: &str) -> Failure {
    Failure::Client(ClientError::Unreachable {
        path: path.to_path_buf(),
        reason: format!("kinfrad went away while waiting for the drain ({why})"),
    })
}

/// The records still active after the global one left ("" when none).
fn still_active(records: &[StatusView]) -> String {
    let names: Vec<&str> = records
        .iter()
        .filter(|r| r.is_active)
        .filter_map(|r| r.target.as_deref())
        .collect();
    if names.is_empty() {
        return String::new();
    }
    format!(
        "\nstill in maintenance: {} (leave with --target TARGET, or --all)",
        names.join(", ")
    )
}

/// "Installing:completed" → step; without a status, "active".
fn parse_step(s: &str) -> StepSpec {
    match s.rsplit_once(':') {
        Some((t, st)) if ["pending", "active", "completed", "failed"].contains(&st) => StepSpec {
            text: t.to_string(),
            status: st.to_string(),
        },
        _ => StepSpec {
            text: s.to_string(),
            status: "active".to_string(),
        },
    }
}

/// `logs -f`: print what is there, then whatever comes after the last line seen.
async fn follow_logs(
    client: &mut Client,
    service: &str,
    first: Response,
    json: bool,
) -> Result<String, Failure> {
    use std::io::Write;
    let mut last: Option<LogEntry> = None;
    let mut resp = first;
    loop {
        if let Response::Logs { lines, .. } = &resp {
            // New lines are those after the last one printed (same timestamp and text).
            let start = match &last {
                None => 0,
                Some(l) => lines.iter().rposition(|x| x == l).map_or(0, |i| i + 1),
            };
            let mut out = std::io::stdout().lock();
            for l in &lines[start..] {
                let _ = writeln!(out, "{}", render_log_line(l, json));
            }
            let _ = out.flush();
            if let Some(l) = lines.last() {
                last = Some(l.clone());
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        resp = client
            .call(&Request::Logs {
                service: service.to_string(),
                lines: 1000,
            })
            .await?;
    }
}
