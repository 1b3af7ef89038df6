//! `kinfractl maint schedule`: its arguments, and the text shown for scheduled windows.

use clap::{Args, Subcommand};
use kinfra_proto::fmt::{human_secs, iso};
use kinfra_proto::{Request, WindowReport};

/// Schedule a maintenance window, or list or cancel them.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ScheduleArgs {
    #[command(subcommand)]
    pub cmd: Option<ScheduleCmd>,
    /// When it starts: wall-clock time in the --tz zone (2026-12-24T02:00), or RFC 3339 with an
    /// offset (2026-12-24T01:00:00Z)
    #[arg(long, value_name = "TIME", required = true)]
    pub at: Option<String>,
    /// How long it lasts: 30m, 2h, 90s (a plain number is seconds)
    #[arg(long, value_name = "DURATION", required = true, value_parser = parse_secs)]
    pub duration: Option<u64>,
    /// Repeat it every day or week, at the same wall-clock time in its zone (also across
    /// daylight-saving changes)
    #[arg(long, value_name = "day|week")]
    pub every: Option<String>,
    /// IANA time zone of --at (Europe/Berlin, UTC) [default: kinfrad's local zone]
    #[arg(long, value_name = "ZONE")]
    pub tz: Option<String>,
    /// ALL (the default), a service name or a route as configured; one target per window
    #[arg(long, value_name = "TARGET")]
    pub target: Option<String>,
    /// Warn this long before it starts (X-Maintenance-Scheduled header on proxied responses,
    /// `scheduled` in the maintenance status API); 0 for no warning [default: 1h]
    #[arg(long, value_name = "DURATION", value_parser = parse_secs)]
    pub warn: Option<u64>,
    /// Message shown on the maintenance page during the window
    #[arg(long)]
    pub message: Option<String>,
    /// What is being worked on, shown on the page
    #[arg(long)]
    pub issue: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCmd {
    /// Every scheduled window, with its next start
    List,
    /// Forget a window (one in progress leaves its maintenance now)
    Cancel {
        /// The window's id, from `maint schedule list`
        id: u64,
    },
}

/// A duration in whole seconds (rounded up).
fn parse_secs(s: &str) -> Result<u64, String> {
    kinfra_proto::fmt::parse_duration_ms(s).map(|ms| ms.div_ceil(1000))
}

/// The request `args` ask for.
pub fn request(args: &ScheduleArgs) -> Result<Request, String> {
    match &args.cmd {
        Some(ScheduleCmd::List) => Ok(Request::MaintScheduleList),
        Some(ScheduleCmd::Cancel { id }) => Ok(Request::MaintScheduleCancel { id: *id }),
        None => Ok(Request::MaintSchedule {
            at: args.at.clone().ok_or("--at is required")?,
            duration_secs: args.duration.ok_or("--duration is required")?,
            every: args.every.clone(),
            tz: args.tz.clone(),
            target: args.target.clone(),
            warn_secs: args.warn,
            message: args.message.clone(),
            issue: args.issue.clone(),
        }),
    }
}

/// Windows as a table (times in UTC, as kinfractl prints every time).
pub fn render_windows(list: &[WindowReport]) -> String {
    if list.is_empty() {
        return "no maintenance windows scheduled".to_string();
    }
    let mut out = vec![format!(
        "{:<4} {:<16} {:<22} {:<9} {:<6} {:<24} {:<7} MESSAGE",
        "ID", "TARGET", "NEXT START (UTC)", "DURATION", "EVERY", "AT (LOCAL, ZONE)", "STATE"
    )];
    for w in list {
        out.push(
            format!(
                "{:<4} {:<16} {:<22} {:<9} {:<6} {:<24} {:<7} {}",
                w.id,
                w.target,
                w.next_start.map(iso).unwrap_or_else(|| "-".into()),
                human_secs(w.duration_secs),
                w.every.as_deref().unwrap_or("once"),
                format!("{} {}", w.at, w.tz),
                if w.active { "on" } else { "waiting" },
                w.message
                    .as_deref()
                    .map_or_else(|| "-".into(), |m| m.replace(['\n', '\t'], " ")),
            )
            .trim_end()
            .to_string(),
        );
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command, Maint};

    fn parse(args: &[&str]) -> Result<Request, String> {
        let mut all = vec!["kinfractl", "maint", "schedule"];
        all.extend(args);
        let cli = Cli::try_parse_from(all).map_err(|e| e.to_string())?;
        match cli.command {
            Command::Maint(Maint::Schedule(a)) => request(&a),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn schedule_arguments_become_requests() {
        assert_eq!(parse(&["list"]), Ok(Request::MaintScheduleList));
        assert_eq!(
            parse(&["cancel", "7"]),
            Ok(Request::MaintScheduleCancel { id: 7 })
        );
        let r = parse(&[
            "--at",
            "2026-12-24T02:00",
            "--duration",
            "30m",
            "--every",
            "week",
            "--tz",
            "Europe/Berlin",
            "--warn",
            "0",
        ])
        .expect("parse");
        assert!(matches!(
            r,
            Request::MaintSchedule { duration_secs: 1800, warn_secs: Some(0), ref tz, .. }
                if tz.as_deref() == Some("Europe/Berlin")
        ));
        // --at and --duration are required without a subcommand; not with one.
        assert!(parse(&["--at", "2026-12-24T02:00"]).is_err());
        assert!(parse(&["--duration", "5m"]).is_err());
        assert!(parse(&["cancel", "x"]).is_err());
        assert!(parse(&["--at", "2026-12-24T02:00", "--duration", "soon"]).is_err());
    }
}
