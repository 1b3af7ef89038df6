//! The supervisor task: runs, waits for, restarts and stops one service's child.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::{mpsc, watch};

use super::child::{pick_port, read_notify};
use super::{
    Command, ExitInfo, LogRing, ProcState, ProcStatus, ProcessSpec, RestartPolicy, STABLE_AFTER,
    backoff,
};
use crate::eventlog::{Event, Kind};

pub(super) struct Task {
    pub(super) spec: ProcessSpec,
    pub(super) status: watch::Sender<ProcStatus>,
    pub(super) logs: Arc<LogRing>,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) stop: watch::Receiver<bool>,
    pub(super) on_port: Box<dyn Fn(u16) + Send>,
    /// How the next start is recorded: a start, or a restart and why.
    pub(super) next_start: (Kind, String),
}

/// What ended a wait.
enum Woke {
    Command(Command),
    Shutdown,
}

impl Task {
    /// Record (and log) an event about this service's process.
    fn note(&self, kind: Kind, reason: String) {
        self.spec
            .events
            .record(Event::new(kind, &self.spec.name, reason));
    }

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

    pub(super) async fn run(mut self, start: bool) {
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
                    Some(Woke::Command(c @ (Command::Start | Command::Restart))) => {
                        want_running = true;
                        self.next_start = by_operator(c);
                    }
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
                    let next = if again {
                        format!(
                            "restarting in {}",
                            humantime::format_duration(backoff(streak))
                        )
                    } else {
                        match self.spec.restart {
                            RestartPolicy::Never => "not restarted (restart = \"never\")",
                            _ => "not restarted (restart = \"on-failure\")",
                        }
                        .to_string()
                    };
                    self.note(
                        Kind::ProcessExit,
                        format!(
                            "{} after {}; {next}",
                            info.describe(),
                            humantime::format_duration(Duration::from_secs(ran.as_secs()))
                        ),
                    );
                    self.next_start = (Kind::ProcessRestart, format!("after: {}", info.describe()));
                    if !again {
                        self.publish(|s| {
                            s.state = ProcState::Crashed;
                            s.pid = None;
                            s.last_exit = Some(info);
                            s.exits += 1;
                        });
                        want_running = false;
                        // Stay "crashed" (not "stopped") until told otherwise.
                        match self.wait(None).await {
                            Some(Woke::Command(c @ (Command::Start | Command::Restart))) => {
                                want_running = true;
                                self.next_start = by_operator(c);
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
                        s.exits += 1;
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
                    self.next_start = by_operator(Command::Restart);
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
        let (kind, why) = std::mem::replace(
            &mut self.next_start,
            (Kind::ProcessStart, "started".to_string()),
        );
        let pid_text = pid.map_or_else(|| "?".to_string(), |p| p.to_string());
        self.note(kind, format!("{why}; pid {pid_text}, port {port}"));
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
        self.note(Kind::ProcessExit, format!("stopped: {}", info.describe()));
        // Grandchildren that outlived the leader.
        if let Some(g) = pgid {
            let _ = killpg(g, Signal::SIGKILL);
        }
        self.publish(|s| {
            s.pid = None;
            s.last_exit = Some(info);
            s.exits += 1;
        });
    }
}

/// How a start an operator asked for is recorded.
fn by_operator(c: Command) -> (Kind, String) {
    match c {
        Command::Restart => (Kind::ProcessRestart, "restart asked".to_string()),
        _ => (Kind::ProcessStart, "start asked".to_string()),
    }
}

enum Ended {
    Exited(ExitInfo),
    Stopped,
    Restart,
    Shutdown,
    FailedToStart(String),
}
