//! The command line: clap's description of every subcommand and flag (what `--help` prints).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  kinfractl status
  kinfractl status --message \"Upgrading the database\" --countdown 600
  kinfractl status --issue \"Migrating users\" --time 15
  kinfractl maint enter --message \"Back soon\" --countdown 900
  kinfractl maint enter --url http://127.0.0.1:8081/maintenance.html
  kinfractl maint enter --target api --message \"API upgrade\" --countdown 600
  kinfractl maint enter --target api.example.com/v1 --url https://status.example.com/
  kinfractl maint update --target api --countdown 300
  kinfractl maint list
  kinfractl maint exit --target api
  kinfractl maint exit --all
  kinfractl maint schedule --at 2026-12-24T02:00 --duration 30m --tz Europe/Berlin --message \"Upgrade\"
  kinfractl maint schedule --at 2027-01-03T03:00 --every week --duration 1h --target api --warn 2h
  kinfractl maint schedule list
  kinfractl maint schedule cancel 3
  kinfractl reload
  kinfractl ps
  kinfractl restart web
  kinfractl logs web -n 50
  kinfractl drain start --target web --duration 60s && kinfractl drain wait
  kinfractl --fleet maint enter --message \"Upgrade\" --countdown 600
  kinfractl --fleet maint list
  kinfractl --fleet maint exit --revision 42
  kinfractl fleet status
  curl -H \"Authorization: Bearer $(kinfractl token)\" ...

Exit codes: 0 ok, 1 refused by kinfrad, 2 usage error, 3 kinfrad unreachable, 4 protocol error.";

/// Operate kinfrad over its control socket.
#[derive(Debug, Parser)]
#[command(name = "kinfractl", version, after_help = EXAMPLES)]
pub struct Cli {
    /// Control socket of kinfrad [default: /run/kinfra/control.sock for root]
    #[arg(long, global = true, env = kinfra_proto::paths::SOCKET_ENV, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print machine-readable JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,
    /// Change or show the whole fleet's intent (in etcd, through this kinfrad) instead of this
    /// host's: maint enter|exit|list, drain start|stop, stop|start SERVICE
    #[arg(long, global = true)]
    pub fleet: bool,
    /// With --fleet: write only if the fleet's intent is still at this revision (the one
    /// `kinfractl --fleet maint list` showed); otherwise fail with a conflict
    #[arg(long, global = true, value_name = "REV", requires = "fleet")]
    pub revision: Option<i64>,
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
    /// Take services out of rotation gradually before a deploy stops them
    #[command(subcommand)]
    Drain(Drain),
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
    /// The fleet this host is part of (`fleet status`: every host, its link to etcd)
    #[command(subcommand)]
    Fleet(FleetCmd),
    /// Print kinfrad's recent events (circuit, health, process, maintenance, drain): why
    /// things changed, oldest first
    Events {
        /// Keep printing new events as they happen until interrupted
        #[arg(short = 'f', long)]
        follow: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum FleetCmd {
    /// Every host of the fleet (node, version, revision applied, services' health) and this
    /// host's link to etcd
    Status,
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

/// What `--target` names (`kinfractl maint … --target`).
const TARGET_HELP: &str = "Which record: ALL (the global one, the default), a service name \
(every route of it), or a route as configured (\"api.example.com/v1\", \"/static/\"; anything \
with a '/'); \"service:NAME\" and \"route:SPEC\" say it explicitly; a comma-separated list \
names several. For one request a route's record beats its service's, which beats the global one";

#[derive(Debug, Subcommand)]
pub enum Maint {
    /// Enter maintenance for a target (or change it when already in)
    Enter {
        /// Proxy visitors to this http(s) page instead of the built-in one
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        #[arg(long, value_name = "TARGET", help = TARGET_HELP)]
        target: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Change what a target's maintenance page shows; when it is not in maintenance, keep the
    /// change for the next time it enters
    Update {
        /// Proxy visitors to this http(s) page instead of the built-in one ("" for the built-in)
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        #[arg(long, value_name = "TARGET", help = TARGET_HELP)]
        target: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Leave maintenance: the global record, or --target's, or --all of them
    Exit {
        #[arg(long, value_name = "TARGET", help = TARGET_HELP, conflicts_with = "all")]
        target: Option<String>,
        /// Leave every record (global, services', routes')
        #[arg(long)]
        all: bool,
    },
    /// List every maintenance record, and settings kept for a target's next window
    List,
    /// Print a link that lets its holder past maintenance (staff checking an upgrade)
    ///
    /// Opened once in a browser, the link sets a signed cookie that lives until the link's
    /// expiry and redirects to --path; with it, requests reach the real service while a
    /// maintenance record would answer them (a drain still refuses). Anyone holding the link
    /// before it is opened can use it: send it like a password.
    BypassLink {
        /// How long the link and its cookie live: 30m, 1h, 2d (a plain number is seconds; a
        /// week at most)
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
        ttl: u64,
        /// Bypass only this target's record (as for `maint enter --target`); default: every
        /// record
        #[arg(long, value_name = "TARGET")]
        target: Option<String>,
        /// The origin visitors reach kinfrad at, like https://www.example.com (kinfrad cannot
        /// know its public name); default: its first listen address
        #[arg(long, value_name = "URL")]
        base: Option<String>,
        /// Where the link leads once the cookie is set
        #[arg(long, value_name = "PATH", default_value = "/")]
        path: String,
    },
    /// Schedule a maintenance window (kinfrad enters and leaves on time), or `schedule list`,
    /// `schedule cancel ID`
    Schedule(crate::schedule::ScheduleArgs),
}

#[derive(Debug, Subcommand)]
pub enum Drain {
    /// Start draining (a drain already running starts over)
    ///
    /// Past half the duration new requests are refused with rising probability (503,
    /// X-Drain-Mode), all of them from the end on, until 'drain stop'. Requests in flight
    /// finish.
    Start {
        /// ALL (the default), or comma-separated service names
        #[arg(long, value_name = "ALL|NAME,...")]
        target: Option<String>,
        /// How long until every new request is refused: 60s, 5m, 1h30m (a plain number is
        /// seconds)
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        duration: u64,
    },
    /// Stop draining: every request passes again
    Stop,
    /// Show the drain: progress, refused requests, requests in flight
    Status,
    /// Wait until drained (time over, nothing in flight), then exit 0
    ///
    /// Exits non-zero when no drain is running or it is stopped first (1), or when kinfrad goes
    /// away (3).
    Wait,
}

fn parse_duration(s: &str) -> Result<u64, String> {
    kinfra_proto::fmt::parse_duration_ms(s)
}

impl PageArgs {
    pub fn countdown_secs(&self) -> Result<Option<i64>, String> {
        match (self.countdown, self.time) {
            (Some(s), _) => Ok(Some(s)),
            (None, Some(m)) => m
                .checked_mul(60)
                .map(Some)
                .ok_or_else(|| format!("--time {m} is too large")),
            (None, None) => Ok(None),
        }
    }

    pub fn any(&self) -> bool {
        self.message.is_some()
            || self.issue.is_some()
            || self.countdown.is_some()
            || self.time.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

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
    fn drain_verbs() {
        let c = Cli::try_parse_from([
            "kinfractl",
            "drain",
            "start",
            "--target",
            "web",
            "--duration",
            "1m30s",
        ])
        .expect("parse");
        match c.command {
            Command::Drain(Drain::Start { target, duration }) => {
                assert_eq!(target.as_deref(), Some("web"));
                assert_eq!(duration, 90_000);
            }
            _ => panic!("wrong command"),
        }
        assert!(Cli::try_parse_from(["kinfractl", "drain", "start"]).is_err());
        assert!(
            Cli::try_parse_from(["kinfractl", "drain", "start", "--duration", "soon"]).is_err()
        );
        for verb in ["stop", "status", "wait"] {
            assert!(
                Cli::try_parse_from(["kinfractl", "drain", verb]).is_ok(),
                "{verb}"
            );
        }
    }

    #[test]
    fn parses_per_target_verbs() {
        let c = Cli::try_parse_from(["kinfractl", "maint", "exit"]).expect("parse");
        assert!(matches!(
            c.command,
            Command::Maint(Maint::Exit {
                target: None,
                all: false
            })
        ));
        let c =
            Cli::try_parse_from(["kinfractl", "maint", "exit", "--target", "api"]).expect("parse");
        assert!(matches!(
            c.command,
            Command::Maint(Maint::Exit { target: Some(t), all: false }) if t == "api"
        ));
        assert!(
            Cli::try_parse_from(["kinfractl", "maint", "exit", "--target", "a", "--all"]).is_err()
        );
        let c = Cli::try_parse_from([
            "kinfractl",
            "maint",
            "update",
            "--target",
            "/v1",
            "--time",
            "5",
        ])
        .expect("parse");
        match c.command {
            Command::Maint(Maint::Update { target, page, .. }) => {
                assert_eq!(target.as_deref(), Some("/v1"));
                assert_eq!(page.countdown_secs(), Ok(Some(300)));
            }
            _ => panic!("wrong command"),
        }
        let c = Cli::try_parse_from(["kinfractl", "--json", "maint", "list"]).expect("parse");
        assert!(c.json && matches!(c.command, Command::Maint(Maint::List)));
    }
}
