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
//! Not wired into `[[service]]` and the daemon yet: see the closing note of the session that
//! added it.

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{mpsc, watch};

/// When a stopped-by-itself child is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn parse(s: &str) -> Result<RestartPolicy, String> {
        match s {
            "always" => Ok(RestartPolicy::Always),
            "on-failure" => Ok(RestartPolicy::OnFailure),
            "never" => Ok(RestartPolicy::Never),
            o => Err(format!("{o:?} must be one of always, on-failure, never")),
        }
    }
}

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
}

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
    fn of(status: std::process::ExitStatus) -> ExitInfo {
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
    fn stopped() -> ProcStatus {
        ProcStatus {
            state: ProcState::Stopped,
            pid: None,
            port: None,
            started_at: None,
            restarts: 0,
            last_exit: None,
            error: None,
            message: None,
            steps: Vec::new(),
            ready: false,
            extend_until: None,
        }
    }
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

// ------------------------------------------------------------------------------------ logs

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }

    /// The level a line announces with a common prefix ("ERROR", "[warn]", "level=info", "E "),
    /// else the stream's default (stderr: warn, stdout: info).
    pub fn of(line: &str, stream: Stream) -> Level {
        let head: String = line
            .trim_start()
            .chars()
            .take(24)
            .collect::<String>()
            .to_ascii_lowercase();
        let head = head
            .trim_start_matches(['[', '(', '<'])
            .trim_start_matches("level=");
        let starts = |w: &str| {
            head.starts_with(w)
                && !head[w.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric())
        };
        if starts("error")
            || starts("err")
            || starts("fatal")
            || starts("critical")
            || starts("panic")
        {
            Level::Error
        } else if starts("warning") || starts("warn") {
            Level::Warn
        } else if starts("info") {
            Level::Info
        } else if starts("debug") || starts("trace") {
            Level::Debug
        } else if stream == Stream::Stderr {
            Level::Warn
        } else {
            Level::Info
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub at: SystemTime,
    pub stream: Stream,
    pub level: Level,
    pub text: String,
}

/// A line as `/__status__` and the control protocol show it (seed shape: timestamp, level,
/// stream, message).
impl From<&LogLine> for crate::protocol::LogEntry {
    fn from(l: &LogLine) -> Self {
        let ms =
            l.at.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
        crate::protocol::LogEntry {
            timestamp: crate::protocol::fmt::iso(ms),
            // Seed 001's shape: lower-case levels.
            level: l.level.as_str().to_ascii_lowercase(),
            stream: match l.stream {
                Stream::Stdout => "stdout",
                Stream::Stderr => "stderr",
            }
            .to_string(),
            message: l.text.clone(),
        }
    }
}

/// Longest line kept; longer ones are cut (and say so).
pub const MAX_LINE: usize = 16 * 1024;

/// A bounded ring of a service's output. Writers never wait for readers.
#[derive(Debug)]
pub struct LogRing {
    cap: usize,
    inner: Mutex<(VecDeque<LogLine>, u64)>,
    /// Bumped on every line, for followers (`kinfractl logs -f`).
    pub seq: watch::Sender<u64>,
}

impl LogRing {
    pub fn new(cap: usize) -> LogRing {
        LogRing {
            cap: cap.max(1),
            inner: Mutex::new((VecDeque::new(), 0)),
            seq: watch::channel(0).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (VecDeque<LogLine>, u64)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, line: LogLine) {
        {
            let mut g = self.lock();
            if g.0.len() == self.cap {
                g.0.pop_front();
                g.1 += 1;
            }
            g.0.push_back(line);
        }
        self.seq.send_modify(|n| *n += 1);
    }

    /// The last `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<LogLine> {
        let g = self.lock();
        g.0.iter()
            .skip(g.0.len().saturating_sub(n))
            .cloned()
            .collect()
    }

    /// Up to `max` lines after absolute position `cursor` (lines ever pushed before them), oldest
    /// first; the cursor to ask with next; and how many lines after `cursor` were already gone.
    /// A cursor beyond the end (another ring) starts over from the oldest line kept.
    pub fn since(&self, cursor: u64, max: usize) -> (Vec<LogLine>, u64, u64) {
        let g = self.lock();
        let first = g.1;
        let end = first + g.0.len() as u64;
        let cursor = if cursor > end { first } else { cursor };
        let start = cursor.max(first);
        let skipped = start - cursor;
        let from = (start - first) as usize;
        let lines: Vec<LogLine> = g.0.iter().skip(from).take(max).cloned().collect();
        let next = start + lines.len() as u64;
        (lines, next, skipped)
    }

    /// Lines dropped because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.lock().1
    }

    pub fn len(&self) -> usize {
        self.lock().0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Read `from` line by line into `ring` (and the journal) until EOF. Lines longer than
/// `MAX_LINE` are cut; invalid UTF-8 is replaced.
async fn capture(name: String, stream: Stream, from: impl AsyncRead + Unpin, ring: Arc<LogRing>) {
    let mut r = BufReader::with_capacity(8 * 1024, from);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        // Read up to a newline, but never hold more than MAX_LINE of one line.
        let mut cut = false;
        loop {
            let buf = match r.fill_buf().await {
                Ok(b) => b,
                Err(_) => return,
            };
            if buf.is_empty() {
                if line.is_empty() {
                    return;
                }
                break;
            }
            let (take, end) = match buf.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            let room = MAX_LINE.saturating_sub(line.len());
            line.extend_from_slice(&buf[..take.min(room)]);
            cut |= take > room;
            r.consume(take);
            if end {
                break;
            }
        }
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        let mut text = String::from_utf8_lossy(&line).into_owned();
        if cut {
            text.push_str(" …[cut]");
        }
        let level = Level::of(&text, stream);
        match level {
            Level::Error => tracing::error!(service = %name, "{text}"),
            Level::Warn => tracing::warn!(service = %name, "{text}"),
            Level::Info => tracing::info!(service = %name, "{text}"),
            Level::Debug => tracing::debug!(service = %name, "{text}"),
        }
        ring.push(LogLine {
            at: SystemTime::now(),
            stream,
            level,
            text,
        });
    }
}

// ------------------------------------------------------------------------------------ ports

/// Is `port` free on 127.0.0.1 right now?
pub fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// `preferred`, or the next free port above it within `range` (wrapping to its start).
pub fn pick_port(preferred: u16, range: (u16, u16)) -> Option<u16> {
    let (lo, hi) = range;
    let start = preferred.clamp(lo, hi);
    (start..=hi)
        .chain(lo..start)
        .find(|p| *p != 0 && port_free(*p))
}

/// `{port}` replaced in every argument.
pub fn expand_argv(argv: &[String], port: u16) -> Vec<String> {
    let p = port.to_string();
    argv.iter().map(|a| a.replace("{port}", &p)).collect()
}

// ------------------------------------------------------------------------------------ leftovers

/// The environment variable that marks a child (and what it starts) as a kinfrad's.
pub const OWNER_ENV: &str = "KINFRA_OWNER";

/// Kill the process groups of processes a previous kinfrad with the same `owner` left behind.
/// A child dies with kinfrad (PDEATHSIG), but after `kill -9` its own children, in its process
/// group, would live on. Called before this kinfrad starts any child, so every process carrying
/// the mark is a leftover. Returns how many processes were found.
pub fn reap_leftovers(owner: &str) -> usize {
    let mark = format!("{OWNER_ENV}={owner}");
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut found = 0;
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        // Other users' processes are unreadable: skipped.
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if !env.split(|b| *b == 0).any(|v| v == mark.as_bytes()) {
            continue;
        }
        let pgid = nix::unistd::getpgid(Some(Pid::from_raw(pid as i32)));
        // A group whose leader is still the child of a running kinfrad belongs to that kinfrad
        // (a second instance started by mistake on the same state directory): not a leftover.
        if let Ok(g) = pgid
            && owned_by_live_kinfrad(g.as_raw())
        {
            continue;
        }
        found += 1;
        tracing::warn!(pid, pgid = ?pgid.ok().map(|g| g.as_raw()), "killing a process a previous kinfrad left behind");
        match pgid {
            // Never our own group (a child always has its own).
            Ok(g) if g != nix::unistd::getpgrp() => {
                let _ = killpg(g, Signal::SIGKILL);
            }
            _ => {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    }
    found
}

/// Is process `leader` alive with a parent named kinfrad?
fn owned_by_live_kinfrad(leader: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{leader}/stat")) else {
        return false;
    };
    // "pid (comm) state ppid …": comm may hold spaces and parentheses; split at the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return false;
    };
    let mut f = rest.split_whitespace();
    let (Some(state), Some(ppid)) = (f.next(), f.next()) else {
        return false;
    };
    if state == "Z" {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{ppid}/comm")).is_ok_and(|c| c.trim() == "kinfrad")
}

// ------------------------------------------------------------------------------------ task

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
    };
    tokio::spawn(task.run(start));
    Handle {
        commands: tx,
        status: status_rx,
        logs,
    }
}

struct Task {
    spec: ProcessSpec,
    status: watch::Sender<ProcStatus>,
    logs: Arc<LogRing>,
    commands: mpsc::Receiver<Command>,
    stop: watch::Receiver<bool>,
    on_port: Box<dyn Fn(u16) + Send>,
}

/// What ended a wait.
enum Woke {
    Command(Command),
    Shutdown,
}

impl Task {
    fn publish(&self, f: impl FnOnce(&mut ProcStatus)) {
        self.status.send_modify(f);
    }

    /// Wait for a command or shutdown, at most `limit` (None: forever).
    async fn wait(&mut self, limit: Option<Duration>) -> Option<Woke> {
        let sleep = async {
            match limit {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            c = self.commands.recv() => Some(c.map_or(Woke::Shutdown, Woke::Command)),
            _ = crate::stop::stopped(&mut self.stop) => Some(Woke::Shutdown),
            _ = sleep => None,
        }
    }

    /// Publish `Backoff` (with `note`'s changes, in the same update) and wait out the next
    /// delay of the crash streak. `Some(want_running)` (a Stop meanwhile makes it false),
    /// `None` on shutdown.
    async fn back_off(
        &mut self,
        streak: &mut u32,
        note: impl FnOnce(&mut ProcStatus),
    ) -> Option<bool> {
        let delay = backoff(*streak);
        *streak = streak.saturating_add(1);
        self.publish(|s| {
            s.state = ProcState::Backoff;
            s.pid = None;
            note(s);
        });
        match self.wait(Some(delay)).await {
            None | Some(Woke::Command(Command::Start | Command::Restart)) => Some(true),
            Some(Woke::Command(Command::Stop)) => Some(false),
            Some(Woke::Shutdown) => None,
        }
    }

    async fn run(mut self, start: bool) {
        let mut want_running = start;
        // Consecutive quick crashes, for the back-off.
        let mut streak = 0u32;
        loop {
            if *self.stop.borrow() {
                return;
            }
            if !want_running {
                self.publish(|s| {
                    s.state = ProcState::Stopped;
                    s.pid = None;
                });
                match self.wait(None).await {
                    Some(Woke::Command(Command::Start | Command::Restart)) => want_running = true,
                    Some(Woke::Command(Command::Stop)) | None => {}
                    Some(Woke::Shutdown) => return,
                }
                continue;
            }
            let started = Instant::now();
            match self.run_once().await {
                Ended::Exited(info) => {
                    let ran = started.elapsed();
                    if ran >= STABLE_AFTER {
                        streak = 0;
                    }
                    let again = match self.spec.restart {
                        RestartPolicy::Always => true,
                        RestartPolicy::OnFailure => !info.success(),
                        RestartPolicy::Never => false,
                    };
                    tracing::warn!(service = %self.spec.name, exit = %info.describe(), ran_secs = ran.as_secs_f64(), restart = again, "service process ended");
                    if !again {
                        self.publish(|s| {
                            s.state = ProcState::Crashed;
                            s.pid = None;
                            s.last_exit = Some(info);
                        });
                        want_running = false;
                        // Stay "crashed" (not "stopped") until told otherwise.
                        match self.wait(None).await {
                            Some(Woke::Command(Command::Start | Command::Restart)) => {
                                want_running = true;
                            }
                            Some(Woke::Command(Command::Stop)) | None => {
                                self.publish(|s| s.state = ProcState::Stopped);
                            }
                            Some(Woke::Shutdown) => return,
                        }
                        continue;
                    }
                    let noted = |s: &mut ProcStatus| {
                        s.last_exit = Some(info);
                        s.restarts = s.restarts.saturating_add(1);
                    };
                    match self.back_off(&mut streak, noted).await {
                        Some(w) => want_running = w,
                        None => return,
                    }
                }
                Ended::Stopped => want_running = false,
                Ended::Restart => {
                    streak = 0;
                    self.publish(|s| s.restarts = s.restarts.saturating_add(1));
                }
                Ended::Shutdown => return,
                Ended::FailedToStart(e) => {
                    tracing::error!(service = %self.spec.name, error = %e, "cannot start service");
                    match self.back_off(&mut streak, |s| s.error = Some(e)).await {
                        Some(w) => want_running = w,
                        None => return,
                    }
                }
            }
        }
    }

    /// Start the child once and wait until it ends or is told to.
    async fn run_once(&mut self) -> Ended {
        self.publish(|s| s.state = ProcState::Starting);
        let Some(port) = pick_port(self.spec.preferred_port, self.spec.port_range) else {
            return Ended::FailedToStart(format!(
                "no free port in {}-{}",
                self.spec.port_range.0, self.spec.port_range.1
            ));
        };
        let notify = match self.notify_socket() {
            Ok(n) => n,
            Err(e) => return Ended::FailedToStart(e),
        };
        // A fresh start forgets what the previous process said.
        self.publish(|s| {
            s.message = None;
            s.steps.clear();
            s.ready = false;
            s.extend_until = None;
        });
        let child = match self.start_child(port, notify.as_ref().map(|(_, p)| p.as_path())) {
            Ok(c) => c,
            Err(e) => return Ended::FailedToStart(e),
        };
        let pid = child.id();
        (self.on_port)(port);
        self.publish(|s| {
            s.state = ProcState::Started;
            s.pid = pid;
            s.port = Some(port);
            s.started_at = Some(SystemTime::now());
            s.error = None;
        });
        if let Some((sock, _)) = notify {
            tokio::spawn(read_notify(sock, self.status.clone(), pid));
        }
        let pgid = pid.map(|p| Pid::from_raw(p as i32));
        tracing::info!(service = %self.spec.name, pid = ?pid, port, "service process started");
        self.wait_child(child, pgid).await
    }

    /// Wait until the child ends (it takes its group along) or is told to stop or restart (then
    /// it is stopped). A Start while it runs changes nothing.
    async fn wait_child(&mut self, mut child: tokio::process::Child, pgid: Option<Pid>) -> Ended {
        let why = loop {
            tokio::select! {
                st = child.wait() => {
                    let info = match st {
                        Ok(s) => ExitInfo::of(s),
                        Err(_) => ExitInfo { code: None, signal: None, at: SystemTime::now() },
                    };
                    // What it left behind in its group goes with it.
                    if let Some(g) = pgid {
                        let _ = killpg(g, Signal::SIGKILL);
                    }
                    return Ended::Exited(info);
                }
                c = self.commands.recv() => match c {
                    Some(Command::Stop) => break Ended::Stopped,
                    Some(Command::Restart) => break Ended::Restart,
                    Some(Command::Start) => continue,
                    None => break Ended::Shutdown,
                },
                _ = crate::stop::stopped(&mut self.stop) => break Ended::Shutdown,
            }
        };
        self.stop_child(&mut child, pgid).await;
        why
    }

    /// The stop signal to the whole group; SIGKILL to the group after `stop_timeout`.
    async fn stop_child(&mut self, child: &mut tokio::process::Child, pgid: Option<Pid>) {
        self.publish(|s| s.state = ProcState::Stopping);
        if let Some(g) = pgid {
            let _ = killpg(g, self.spec.stop_signal);
        }
        let info = match tokio::time::timeout(self.spec.stop_timeout, child.wait()).await {
            Ok(Ok(s)) => ExitInfo::of(s),
            _ => {
                tracing::warn!(service = %self.spec.name, timeout_secs = self.spec.stop_timeout.as_secs_f64(), "service ignored its stop signal; killing it");
                if let Some(g) = pgid {
                    let _ = killpg(g, Signal::SIGKILL);
                }
                match child.wait().await {
                    Ok(s) => ExitInfo::of(s),
                    Err(_) => ExitInfo {
                        code: None,
                        signal: Some(Signal::SIGKILL as i32),
                        at: SystemTime::now(),
                    },
                }
            }
        };
        // Grandchildren that outlived the leader.
        if let Some(g) = pgid {
            let _ = killpg(g, Signal::SIGKILL);
        }
        self.publish(|s| {
            s.pid = None;
            s.last_exit = Some(info);
        });
    }

    /// A datagram socket for this start's NOTIFY_SOCKET (a stale one is replaced).
    fn notify_socket(&self) -> Result<Option<(tokio::net::UnixDatagram, PathBuf)>, String> {
        let Some(dir) = &self.spec.notify_dir else {
            return Ok(None);
        };
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(format!("{}.notify", self.spec.name));
        let _ = std::fs::remove_file(&path);
        let sock = tokio::net::UnixDatagram::bind(&path)
            .map_err(|e| format!("NOTIFY_SOCKET {}: {e}", path.display()))?;
        Ok(Some((sock, path)))
    }

    fn start_child(
        &self,
        port: u16,
        notify: Option<&std::path::Path>,
    ) -> Result<tokio::process::Child, String> {
        let argv = expand_argv(&self.spec.argv, port);
        let Some((prog, args)) = argv.split_first() else {
            return Err("empty command".to_string());
        };
        let mut cmd = tokio::process::Command::new(prog);
        cmd.args(args)
            .env("PORT", port.to_string())
            .env("KINFRA_INSTANCE", &self.spec.instance)
            .env(OWNER_ENV, &self.spec.owner)
            .env("KINFRA_SERVICE", &self.spec.name)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        for v in [
            "NOTIFY_SOCKET",
            "LISTEN_FDS",
            "LISTEN_PID",
            "LISTEN_FDNAMES",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
        ] {
            cmd.env_remove(v);
        }
        for (k, v) in &self.spec.env {
            cmd.env(k, v);
        }
        if let Some(p) = notify {
            cmd.env("NOTIFY_SOCKET", p);
        }
        if let Some(d) = &self.spec.cwd {
            cmd.current_dir(d);
        }
        let parent = std::process::id();
        // SAFETY: runs in the forked child before exec; it only calls the async-signal-safe
        // prctl and getppid and builds an io::Error from errno.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // kinfrad died between fork and prctl: don't outlive it.
                if libc::getppid() as u32 != parent {
                    return Err(io::Error::other("kinfrad is gone"));
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {prog:?}: {e}"))?;
        if let Some(out) = child.stdout.take() {
            tokio::spawn(capture(
                self.spec.name.clone(),
                Stream::Stdout,
                out,
                self.logs.clone(),
            ));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(capture(
                self.spec.name.clone(),
                Stream::Stderr,
                err,
                self.logs.clone(),
            ));
        }
        Ok(child)
    }
}

/// Read a child's sd_notify datagrams into its status while it is the published process
/// (published before this starts).
async fn read_notify(
    sock: tokio::net::UnixDatagram,
    status: watch::Sender<ProcStatus>,
    pid: Option<u32>,
) {
    let mut rx = status.subscribe();
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            r = sock.recv(&mut buf) => {
                let Ok(n) = r else { return };
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                status.send_modify(|s| s.apply_notify(&text));
            }
            // This start is over once another pid (or none) is published.
            _ = rx.wait_for(|s| s.pid != pid) => return,
        }
    }
}

enum Ended {
    Exited(ExitInfo),
    Stopped,
    Restart,
    Shutdown,
    FailedToStart(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(argv: &[&str], restart: RestartPolicy) -> ProcessSpec {
        ProcessSpec {
            name: "t".into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            cwd: None,
            env: vec![("EXTRA".into(), "1".into())],
            preferred_port: 0,
            port_range: (20_000, 60_000),
            restart,
            stop_signal: Signal::SIGTERM,
            stop_timeout: Duration::from_millis(500),
            log_lines: 5,
            notify_dir: None,
            instance: "test".into(),
            owner: "unit-test-owner".into(),
        }
    }

    async fn until(h: &Handle, what: &str, f: impl Fn(&ProcStatus) -> bool) -> ProcStatus {
        let mut rx = h.status.clone();
        let r = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| f(s))).await;
        match r {
            Ok(Ok(s)) => s.clone(),
            _ => panic!("{what}: last status {:?}", h.status.borrow()),
        }
    }

    #[test]
    fn levels_from_prefixes() {
        assert_eq!(Level::of("ERROR: boom", Stream::Stdout), Level::Error);
        assert_eq!(Level::of("[warn] careful", Stream::Stdout), Level::Warn);
        assert_eq!(Level::of("level=info msg=x", Stream::Stderr), Level::Info);
        assert_eq!(Level::of("DEBUG x", Stream::Stdout), Level::Debug);
        assert_eq!(Level::of("errorless text", Stream::Stdout), Level::Info);
        assert_eq!(Level::of("plain", Stream::Stderr), Level::Warn);
    }

    #[test]
    fn ring_is_bounded_and_counts_drops() {
        let r = LogRing::new(3);
        for i in 0..5 {
            r.push(LogLine {
                at: SystemTime::now(),
                stream: Stream::Stdout,
                level: Level::Info,
                text: i.to_string(),
            });
        }
        let t: Vec<String> = r.tail(10).into_iter().map(|l| l.text).collect();
        assert_eq!(t, ["2", "3", "4"]);
        assert_eq!(r.dropped(), 2);
        assert_eq!(r.tail(1)[0].text, "4");
        // Followers: cursor 0 lost two lines; from 3 on, one line at a time; the end waits.
        let texts = |v: Vec<LogLine>| v.into_iter().map(|l| l.text).collect::<Vec<_>>();
        let (l, next, skipped) = r.since(0, 10);
        assert_eq!(
            (texts(l), next, skipped),
            (vec!["2".into(), "3".into(), "4".into()], 5, 2)
        );
        let (l, next, skipped) = r.since(3, 1);
        assert_eq!((texts(l), next, skipped), (vec!["3".to_string()], 4, 0));
        assert_eq!(r.since(5, 10), (Vec::new(), 5, 0));
        // A cursor from another (longer-lived) ring starts over.
        let (l, next, _) = r.since(99, 10);
        assert_eq!((l.len(), next), (3, 5));
    }

    #[test]
    fn notify_lines_become_message_steps_and_readiness() {
        let mut s = ProcStatus::stopped();
        s.apply_notify("STATUS=Installing packages");
        s.apply_notify("STATUS=Installing packages\nEXTEND_TIMEOUT_USEC=5000000");
        s.apply_notify("STATUS=Compiling\x07");
        assert_eq!(s.message.as_deref(), Some("Compiling"));
        let steps: Vec<(&str, &str)> = s
            .steps
            .iter()
            .map(|x| (x.text.as_str(), x.status))
            .collect();
        assert_eq!(
            steps,
            [
                ("Installing packages", "completed"),
                ("Compiling", "active")
            ]
        );
        assert!(!s.ready && s.extend_until.is_some());
        s.apply_notify("READY=1\nSTATUS=Serving");
        assert!(s.ready);
        assert!(
            s.steps.iter().all(|x| x.status == "completed"),
            "{:?}",
            s.steps
        );
        for i in 0..30 {
            s.apply_notify(&format!("STATUS=step {i}"));
        }
        assert_eq!(s.steps.len(), MAX_STEPS);
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        assert_eq!(backoff(0), Duration::from_millis(500));
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(20), BACKOFF_CAP);
        assert_eq!(backoff(u32::MAX), BACKOFF_CAP);
    }

    #[test]
    fn ports_and_argv() {
        assert_eq!(
            expand_argv(&["--bind=127.0.0.1:{port}".into(), "x".into()], 8001),
            ["--bind=127.0.0.1:8001", "x"]
        );
        let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = busy.local_addr().expect("addr").port();
        let got = pick_port(p, (1024, 65535)).expect("a port");
        assert_ne!(got, p, "a taken port is skipped");
        assert!(pick_port(p, (p, p)).is_none());
    }

    #[test]
    fn exit_descriptions() {
        let e = ExitInfo {
            code: Some(1),
            signal: None,
            at: SystemTime::now(),
        };
        assert_eq!(e.describe(), "Process exited with code 1");
        let e = ExitInfo {
            code: None,
            signal: Some(9),
            at: SystemTime::now(),
        };
        assert_eq!(e.describe(), "Process killed by signal 9 (SIGKILL)");
    }

    #[tokio::test]
    async fn runs_captures_crashes_backs_off_and_stops() {
        let (_stop_tx, stop) = watch::channel(false);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let h = spawn(
            spec(
                &[
                    "sh",
                    "-c",
                    "echo port=$PORT arg={port} extra=$EXTRA notify=${NOTIFY_SOCKET:-none}; echo ERROR bad >&2; exit 3",
                ],
                RestartPolicy::OnFailure,
            ),
            true,
            move |p| seen2.lock().expect("lock").push(p),
            stop,
        );
        let s = until(&h, "a crash and a restart", |s| s.restarts >= 2).await;
        assert_eq!(
            s.last_exit.as_ref().map(|e| e.describe()),
            Some("Process exited with code 3".into())
        );
        let lines = h.logs.tail(10);
        let out = lines
            .iter()
            .find(|l| l.stream == Stream::Stdout)
            .expect("stdout line");
        let ports = seen.lock().expect("lock").clone();
        assert!(
            ports
                .iter()
                .any(|p| out.text == format!("port={p} arg={p} extra=1 notify=none")),
            "{out:?} (ports {ports:?})"
        );
        let err = lines
            .iter()
            .find(|l| l.stream == Stream::Stderr)
            .expect("stderr line");
        assert_eq!((err.level, err.text.as_str()), (Level::Error, "ERROR bad"));
        h.commands.send(Command::Stop).await.expect("send");
        until(&h, "stopped", |s| s.state == ProcState::Stopped).await;
    }

    #[tokio::test]
    async fn stop_kills_the_group_and_a_stubborn_child() {
        let (_stop_tx, stop) = watch::channel(false);
        let dir = tempfile::tempdir().expect("tmp");
        let pidfile = dir.path().join("grandchild");
        // The child ignores SIGTERM and leaves a grandchild that ignores it too.
        let script = format!(
            "trap '' TERM; (trap '' TERM; sleep 300) & echo $! > {}; while :; do sleep 1; done",
            pidfile.display()
        );
        let h = spawn(
            spec(&["sh", "-c", &script], RestartPolicy::Always),
            true,
            |_| {},
            stop,
        );
        let s = until(&h, "started", |s| s.state == ProcState::Started).await;
        let pid = s.pid.expect("pid");
        let t0 = Instant::now();
        while !pidfile.exists() && t0.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let grandchild: i32 = std::fs::read_to_string(&pidfile)
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        h.commands.send(Command::Stop).await.expect("send");
        let s = until(&h, "stopped", |s| s.state == ProcState::Stopped).await;
        assert_eq!(
            s.last_exit.and_then(|e| e.signal),
            Some(9),
            "SIGKILL after stop_timeout"
        );
        let alive = |p: i32| nix::sys::signal::kill(Pid::from_raw(p), None).is_ok();
        let t0 = Instant::now();
        while (alive(pid as i32) || alive(grandchild)) && t0.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive(pid as i32), "child {pid} survived");
        assert!(!alive(grandchild), "grandchild {grandchild} survived");
    }

    #[tokio::test]
    async fn a_bad_command_is_reported_not_retried_in_a_tight_loop() {
        let (_stop_tx, stop) = watch::channel(false);
        let h = spawn(
            spec(&["/nonexistent/binary"], RestartPolicy::Always),
            true,
            |_| {},
            stop,
        );
        let s = until(&h, "an error", |s| s.error.is_some()).await;
        assert!(
            s.error
                .as_deref()
                .is_some_and(|e| e.contains("/nonexistent/binary")),
            "{s:?}"
        );
        assert_eq!(s.state, ProcState::Backoff);
    }
}
