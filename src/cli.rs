//! kinfractl: the operator's CLI. Each subcommand is one control request of the same name.
//!
//! Exit codes: 0 success; 1 kinfrad refused the request (the message says why); 2 usage error;
//! 3 kinfrad could not be reached; 4 protocol error (version mismatch, garbled answer).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::client::{Client, ClientError};
use crate::maintenance::StatusView;
use crate::protocol::{Request, Response, StatusReport};

pub const EXIT_REFUSED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_UNREACHABLE: u8 = 3;
pub const EXIT_PROTOCOL: u8 = 4;

const EXAMPLES: &str = "\
Examples:
  kinfractl status
  kinfractl status --message \"Upgrading the database\" --countdown 600
  kinfractl status --issue \"Migrating users\" --time 15
  kinfractl maint enter --message \"Back soon\" --countdown 900
  kinfractl maint enter --url http://127.0.0.1:8081/maintenance.html
  kinfractl maint exit
  kinfractl reload
  kinfractl ps
  kinfractl restart web
  kinfractl logs web -n 50
  curl -H \"Authorization: Bearer $(kinfractl token)\" ...

Exit codes: 0 ok, 1 refused by kinfrad, 2 usage error, 3 kinfrad unreachable, 4 protocol error.";

/// Operate kinfrad over its control socket.
#[derive(Debug, Parser)]
#[command(name = "kinfractl", version, after_help = EXAMPLES)]
pub struct Cli {
    /// Control socket of kinfrad [default: /run/kinfra/control.sock for root]
    #[arg(long, global = true, env = crate::paths::SOCKET_ENV, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print machine-readable JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show kinfrad's state; with options, change what the maintenance page shows
    Status(StatusArgs),
    /// Enter or leave maintenance mode
    #[command(subcommand)]
    Maint(Maint),
    /// Reload configuration and templates (like SIGHUP)
    Reload,
    /// Print the admin token for the HTTP API
    Token,
    /// List the services: state, pid, port, uptime, restarts, health, last exit
    Ps,
    /// Start a service kinfrad runs
    Start { service: String },
    /// Stop a service kinfrad runs (its whole process group)
    Stop { service: String },
    /// Restart a service kinfrad runs
    Restart { service: String },
    /// Set what a service's loading page says while it comes up (for deploy scripts)
    Progress {
        service: String,
        /// The status message
        #[arg(long, value_name = "TEXT")]
        message: Option<String>,
        /// A step, "TEXT" or "TEXT:STATUS" (pending, active, completed, failed); repeat in order
        #[arg(long = "step", value_name = "TEXT[:STATUS]")]
        steps: Vec<String>,
        /// Remove what was set
        #[arg(long, conflicts_with_all = ["message", "steps"])]
        clear: bool,
    },
    /// Print a service's captured output
    Logs {
        service: String,
        /// How many of the last lines
        #[arg(short = 'n', long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        lines: u32,
        /// Keep printing new lines as they come (every 500 ms) until interrupted
        #[arg(short = 'f', long)]
        follow: bool,
    },
}

#[derive(Debug, Args, Default)]
pub struct PageArgs {
    /// Message shown on the maintenance page
    #[arg(long, value_name = "TEXT")]
    pub message: Option<String>,
    /// The task currently being performed
    #[arg(long, value_name = "TEXT")]
    pub issue: Option<String>,
    /// Seconds until the estimated completion (0 clears the estimate)
    #[arg(
        long,
        value_name = "SECS",
        allow_negative_numbers = true,
        conflicts_with = "time"
    )]
    pub countdown: Option<i64>,
    /// Minutes until the estimated completion
    #[arg(long, value_name = "MINUTES", allow_negative_numbers = true)]
    pub time: Option<i64>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub page: PageArgs,
}

#[derive(Debug, Subcommand)]
pub enum Maint {
    /// Enter maintenance (or change it when already in)
    Enter {
        /// Proxy visitors to this http(s) page instead of the built-in one
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// ALL, or comma-separated route ids
        #[arg(long, value_name = "ALL|ID,...")]
        target: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Leave maintenance
    Exit,
}

impl PageArgs {
    fn countdown_secs(&self) -> Result<Option<i64>, String> {
        match (self.countdown, self.time) {
            (Some(s), _) => Ok(Some(s)),
            (None, Some(m)) => m
                .checked_mul(60)
                .map(Some)
                .ok_or_else(|| format!("--time {m} is too large")),
            (None, None) => Ok(None),
        }
    }

    fn any(&self) -> bool {
        self.message.is_some()
            || self.issue.is_some()
            || self.countdown.is_some()
            || self.time.is_some()
    }
}

/// Run kinfractl with parsed arguments; returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kinfractl: cannot start: {e}");
            return ExitCode::from(EXIT_PROTOCOL);
        }
    };
    let path = match cli.socket.clone().map_or_else(default_socket, Ok) {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "kinfractl: {e}; give --socket or {}",
                crate::paths::SOCKET_ENV
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match rt.block_on(execute(&cli, &path)) {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(Failure::Usage(m)) => {
            eprintln!("kinfractl: {m}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Client(e)) => {
            let code = match &e {
                ClientError::Unreachable { .. } => EXIT_UNREACHABLE,
                ClientError::Protocol(_) => EXIT_PROTOCOL,
                ClientError::Refused { .. } => EXIT_REFUSED,
            };
            if cli.json {
                let (kind, message) = match &e {
                    ClientError::Refused { code, message } => (code.clone(), message.clone()),
                    ClientError::Unreachable { .. } => ("unreachable".to_string(), e.to_string()),
                    ClientError::Protocol(_) => ("protocol".to_string(), e.to_string()),
                };
                println!(
                    "{}",
                    serde_json::json!({"error": {"code": kind, "message": message}})
                );
            }
            match e {
                ClientError::Unreachable { .. } => eprintln!(
                    "kinfractl: {e}. Is kinfrad running? Try 'systemctl status kinfra', or point --socket / KINFRA_SOCKET at its control socket."
                ),
                ClientError::Refused { code, message } => {
                    eprintln!("kinfractl: {message} ({code})")
                }
                ClientError::Protocol(_) => eprintln!("kinfractl: {e}"),
            }
            ExitCode::from(code)
        }
    }
}

/// The system daemon's socket when it exists (an operator in group `kinfra` is not root but
/// should reach it), else the same default kinfrad itself would use for this user.
fn default_socket() -> Result<PathBuf, String> {
    let system = std::path::Path::new("/run/kinfra/control.sock");
    if !nix::unistd::geteuid().is_root() && system.exists() {
        return Ok(system.to_path_buf());
    }
    crate::paths::default_control_socket()
}

enum Failure {
    Usage(String),
    Client(ClientError),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::Client(e)
    }
}

async fn execute(cli: &Cli, path: &std::path::Path) -> Result<String, Failure> {
    let req = match &cli.command {
        Command::Status(a) if a.page.any() => Request::MaintUpdate {
            message: a.page.message.clone(),
            issue: a.page.issue.clone(),
            countdown_secs: a.page.countdown_secs().map_err(Failure::Usage)?,
        },
        Command::Status(_) => Request::Status,
        Command::Maint(Maint::Enter { url, target, page }) => Request::MaintEnter {
            url: url.clone(),
            message: page.message.clone(),
            issue: page.issue.clone(),
            countdown_secs: page.countdown_secs().map_err(Failure::Usage)?,
            target: target.clone(),
        },
        Command::Maint(Maint::Exit) => Request::MaintExit,
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

/// "Installing:completed" → step; without a status, "active".
fn parse_step(s: &str) -> crate::protocol::StepSpec {
    match s.rsplit_once(':') {
        Some((t, st)) if ["pending", "active", "completed", "failed"].contains(&st) => {
            crate::protocol::StepSpec {
                text: t.to_string(),
                status: st.to_string(),
            }
        }
        _ => crate::protocol::StepSpec {
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
    let mut last: Option<crate::protocol::LogEntry> = None;
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

fn render_log_line(l: &crate::protocol::LogEntry, json: bool) -> String {
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

fn render(resp: &Response, json: bool) -> String {
    match resp {
        Response::Token { token } if !json => token.clone(),
        _ if json => match resp {
            Response::Status(r) => serde_json::to_string_pretty(r).unwrap_or_default(),
            Response::Maintenance(v) => serde_json::to_string_pretty(v).unwrap_or_default(),
            other => serde_json::to_string_pretty(other).unwrap_or_default(),
        },
        Response::Status(r) => render_report(r),
        Response::Maintenance(v) => render_maint(v),
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
                    crate::protocol::MAX_FRAME / 1024
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
    }
}

/// `kinfractl ps`: one line per service.
fn render_ps(list: &[crate::protocol::ServiceReport]) -> String {
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
                s.state.clone(),
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
    let mut width = head.map(str::len);
    for r in &rows {
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

/// "3m 12s"-style durations.
pub fn human_secs(s: u64) -> String {
    let (d, h, m, sec) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn render_maint(v: &StatusView) -> String {
    let mut out = String::new();
    if !v.is_active {
        out.push_str("maintenance: off");
        return out;
    }
    let since = v.start_time.map(crate::pages::iso).unwrap_or_default();
    out.push_str(&format!(
        "maintenance: ON since {since} (target {})\n",
        v.target.as_deref().unwrap_or("ALL")
    ));
    out.push_str(&format!(
        "  message:     {}\n",
        v.message.as_deref().unwrap_or("")
    ));
    if let Some(i) = v.current_issue.as_deref().filter(|s| !s.is_empty()) {
        out.push_str(&format!("  task:        {i}\n"));
    }
    match (v.estimated_completion, v.countdown) {
        (Some(eta), Some(0)) => out.push_str(&format!(
            "  ETA:         {} (overdue)\n",
            crate::pages::iso(eta)
        )),
        (Some(eta), Some(cd)) => out.push_str(&format!(
            "  ETA:         {} (in {})\n",
            crate::pages::iso(eta),
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
    out.push_str(&render_services(&r.services));
    for p in &r.problems {
        out.push_str(&format!("\nPROBLEM: {p}"));
    }
    out
}

/// The services table of `kinfractl status` ("" when none are configured).
fn render_services(list: &[crate::protocol::ServiceReport]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn services_table_shows_circuit_and_errors() {
        let s = crate::protocol::ServiceReport {
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
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_seed_style_flags() {
        let c = Cli::try_parse_from([
            "kinfractl",
            "status",
            "--message",
            "x",
            "--countdown",
            "600",
        ])
        .expect("parse");
        match c.command {
            Command::Status(a) => assert_eq!(a.page.countdown_secs(), Ok(Some(600))),
            _ => panic!("wrong command"),
        }
        let c = Cli::try_parse_from(["kinfractl", "status", "--time", "10"]).expect("parse");
        match c.command {
            Command::Status(a) => assert_eq!(a.page.countdown_secs(), Ok(Some(600))),
            _ => panic!("wrong command"),
        }
        assert!(
            Cli::try_parse_from(["kinfractl", "status", "--countdown", "1", "--time", "1"])
                .is_err()
        );
        let c = Cli::try_parse_from(["kinfractl", "maint", "enter", "--countdown", "-5"])
            .expect("negative parses");
        assert!(matches!(c.command, Command::Maint(Maint::Enter { .. })));
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_secs(5), "5s");
        assert_eq!(human_secs(125), "2m 5s");
        assert_eq!(human_secs(7300), "2h 1m");
        assert_eq!(human_secs(90_000), "1d 1h");
    }
}
