//! Supervised services: one task per service owns its child process.
//!
//! The task takes commands over a channel (`Command`) and publishes its `ProcStatus` on a watch
//! channel, so nobody — least of all the request path — ever waits on it. A child:
//! - gets a port (`preferred_port`, else the next free one in its range) as `PORT` and as
//!   `{port}` anywhere in its arguments; none of kinfrad's own systemd variables (NOTIFY_SOCKET,
//!   LISTEN_*, WATCHDOG_*); `KINFRA_INSTANCE` marks it as this kinfrad's;
//! - runs in its own process group, and dies with kinfrad (`PR_SET_PDEATHSIG`); stopping it
//!   signals the whole group, then SIGKILLs the group after `stop_timeout`; when it exits on its
//!   own, what is left of its group is killed too;
//! - has stdout and stderr captured line by line into a bounded ring (`LogRing`), oldest lines
//!   dropped and counted, never blocking the child;
//! - is restarted per its policy with exponential back-off (capped, reset after a stable run).
//!
//! `App::sync_supervisors` starts and stops one per `[[service]]` with a `command`.

mod child;
mod logs;
mod reap;
mod status;
mod task;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::{mpsc, watch};

pub use child::{expand_argv, pick_port, port_free};
pub use logs::{Level, LogLine, LogRing, MAX_LINE, Stream};
pub use reap::{OWNER_ENV, reap_leftovers};
pub use status::{
    BACKOFF_CAP, BACKOFF_FIRST, ChildStep, ExitInfo, MAX_STEPS, ProcState, ProcStatus,
    STABLE_AFTER, backoff,
};
use task::Task;

use crate::eventlog::Kind;

pub use crate::config::service::RestartPolicy;

/// Everything needed to run one service's process.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub name: String,
    /// argv; `{port}` is replaced anywhere inside an argument.
    pub argv: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub preferred_port: u16,
    /// Inclusive range searched upwards from `preferred_port` when it is taken.
    pub port_range: (u16, u16),
    pub restart: RestartPolicy,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    pub log_lines: usize,
    /// Where the child's NOTIFY_SOCKET is created (`<dir>/<name>.notify`); None: no socket.
    pub notify_dir: Option<PathBuf>,
    /// This kinfrad run (`KINFRA_INSTANCE`).
    pub instance: String,
    /// This kinfrad installation, stable across restarts (its state directory):
    /// `KINFRA_OWNER`, how `reap_leftovers` recognises what a crashed kinfrad left behind.
    pub owner: String,
    /// Where process starts and exits are recorded.
    pub events: Arc<crate::eventlog::EventLog>,
}

/// Commands to the supervisor task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Start,
    Stop,
    Restart,
}

impl Command {
    /// The verb as operators write it (`/__action__/VERB/…`, `kinfractl VERB`).
    pub fn parse(verb: &str) -> Option<Command> {
        match verb {
            "start" => Some(Command::Start),
            "stop" => Some(Command::Stop),
            "restart" => Some(Command::Restart),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Start => "start",
            Command::Stop => "stop",
            Command::Restart => "restart",
        }
    }
}

/// The handle the rest of kinfrad holds.
#[derive(Debug, Clone)]
pub struct Handle {
    pub commands: mpsc::Sender<Command>,
    pub status: watch::Receiver<ProcStatus>,
    pub logs: Arc<LogRing>,
}

/// Start the supervisor task for `spec`. `on_port` is told each port a child is started on
/// (the route follows it). The task ends, stopping its child, when `stop` turns true.
pub fn spawn(
    spec: ProcessSpec,
    start: bool,
    on_port: impl Fn(u16) + Send + 'static,
    stop: watch::Receiver<bool>,
) -> Handle {
    let (tx, rx) = mpsc::channel(16);
    let mut first = ProcStatus::stopped();
    if start {
        first.state = ProcState::Starting;
    }
    let (status_tx, status_rx) = watch::channel(first);
    let logs = Arc::new(LogRing::new(spec.log_lines));
    let task = Task {
        spec,
        status: status_tx,
        logs: logs.clone(),
        commands: rx,
        stop,
        on_port: Box::new(on_port),
        next_start: (Kind::ProcessStart, "started".to_string()),
    };
    tokio::spawn(task.run(start));
    Handle {
        commands: tx,
        status: status_rx,
        logs,
    }
}
