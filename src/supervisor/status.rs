//! What a supervisor publishes: process state, exit info, the child's notify lines, back-off.

use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;

/// First back-off delay, its cap, and the run time after which a child counts as stable.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(500);
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);
pub const STABLE_AFTER: Duration = Duration::from_secs(60);

/// The delay before restart number `n` (0-based) of a crash loop.
pub fn backoff(n: u32) -> Duration {
    BACKOFF_FIRST
        .checked_mul(1u32 << n.min(16))
        .unwrap_or(BACKOFF_CAP)
        .min(BACKOFF_CAP)
}

/// The process side of a service's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcState {
    Stopped,
    /// About to start (choosing a port, spawning).
    Starting,
    /// Spawned; whether it is ready is the health probe's call.
    Started,
    /// Exited and waiting out its back-off.
    Backoff,
    /// Exited and not restarted (policy, or too early to tell).
    Crashed,
    Stopping,
}

impl ProcState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcState::Stopped => "stopped",
            ProcState::Starting => "starting",
            ProcState::Started => "started",
            ProcState::Backoff => "backoff",
            ProcState::Crashed => "crashed",
            ProcState::Stopping => "stopping",
        }
    }
}

/// How a child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub at: SystemTime,
}

impl ExitInfo {
    pub(super) fn of(status: std::process::ExitStatus) -> ExitInfo {
        use std::os::unix::process::ExitStatusExt;
        ExitInfo {
            code: status.code(),
            signal: status.signal(),
            at: SystemTime::now(),
        }
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// "Process exited with code 1", "Process killed by signal 9 (SIGKILL)".
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("Process exited with code {c}"),
            (None, Some(s)) => match Signal::try_from(s) {
                Ok(sig) => format!("Process killed by signal {s} ({})", sig.as_str()),
                Err(_) => format!("Process killed by signal {s}"),
            },
            (None, None) => "Process ended".to_string(),
        }
    }
}

/// What the supervisor publishes.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcStatus {
    pub state: ProcState,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    pub started_at: Option<SystemTime>,
    pub restarts: u32,
    /// Times a child process ended, for whatever reason (crash, exit, stop, restart).
    pub exits: u64,
    pub last_exit: Option<ExitInfo>,
    /// A problem starting the process (bad command, no free port).
    pub error: Option<String>,
    /// What the child said over its NOTIFY_SOCKET: `STATUS=` lines (the last is the message,
    /// all of them the steps), `READY=1`, and how far `EXTEND_TIMEOUT_USEC=` pushed its startup.
    pub message: Option<String>,
    pub steps: Vec<ChildStep>,
    pub ready: bool,
    pub extend_until: Option<Instant>,
}

/// A step a child announced with `STATUS=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildStep {
    pub text: String,
    /// "active" | "completed"
    pub status: &'static str,
}

/// Most steps kept per start.
pub const MAX_STEPS: usize = 20;

impl ProcStatus {
    /// Apply one sd_notify datagram (`KEY=VALUE` lines) from the child.
    pub fn apply_notify(&mut self, datagram: &str) {
        for line in datagram.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k {
                "READY" if v == "1" => {
                    self.ready = true;
                    if let Some(last) = self.steps.last_mut() {
                        last.status = "completed";
                    }
                }
                "STATUS" => {
                    let text: String = v.chars().filter(|c| !c.is_control()).take(200).collect();
                    if text.is_empty() || self.message.as_deref() == Some(text.as_str()) {
                        continue;
                    }
                    if let Some(last) = self.steps.last_mut() {
                        last.status = "completed";
                    }
                    if self.steps.len() == MAX_STEPS {
                        self.steps.remove(0);
                    }
                    self.steps.push(ChildStep {
                        text: text.clone(),
                        status: if self.ready { "completed" } else { "active" },
                    });
                    self.message = Some(text);
                }
                "EXTEND_TIMEOUT_USEC" => {
                    if let Ok(us) = v.parse::<u64>() {
                        let until = Instant::now() + Duration::from_micros(us.min(3_600_000_000));
                        self.extend_until = Some(self.extend_until.map_or(until, |t| t.max(until)));
                    }
                }
                _ => {}
            }
        }
    }
}

impl ProcStatus {
    pub(super) fn stopped() -> ProcStatus {
        ProcStatus {
            state: ProcState::Stopped,
            pid: None,
            port: None,
            started_at: None,
            restarts: 0,
            exits: 0,
            last_exit: None,
            error: None,
            message: None,
            steps: Vec::new(),
            ready: false,
            extend_until: None,
        }
    }
}
