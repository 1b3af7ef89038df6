//! What one upstream looks like from outside: its state name, the fallback page that fits, and
//! the `Snapshot` that status JSON and pages are rendered from, with the visitor-safe error text.

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use super::{Health, ProbeOutcome, Upstream, lock};
use crate::config::service::{FallbackPage, ProbeKind};
use crate::model::Step;
use crate::model::circuit::CircuitState;

/// What a visitor may read of a service's error: kinfrad's own fixed-shape texts as they are;
/// anything else (an error chain that can carry internal addresses, paths or library text) as a
/// summary. Dashboard readers and the operator CLI get the raw text.
pub fn public_error(raw: &str) -> String {
    const KEEP_EXACT: &[&str] = &["Connection refused", "Connect timed out", "Process ended"];
    const KEEP_PREFIX: &[&str] = &[
        "No response within ",
        "Process exited with code ",
        "Process killed by signal ",
    ];
    let kept = KEEP_EXACT.contains(&raw)
        || KEEP_PREFIX.iter().any(|p| {
            raw.strip_prefix(p).is_some_and(|rest| {
                rest.len() <= 40
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b" ()".contains(&b))
            })
        });
    if raw.is_empty() || kept {
        raw.to_string()
    } else if raw.starts_with("Health check") {
        "Health check failed".to_string()
    } else {
        "The service failed to answer".to_string()
    }
}

/// A snapshot for status JSON and page rendering.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub name: String,
    pub display_name: String,
    pub url: String,
    pub state: &'static str,
    pub health: Health,
    pub status_message: String,
    /// The operator's `fallback_message`, shown in every fallback state ("" when not set);
    /// `status_message` is what the current state says.
    pub fallback_message: String,
    /// When health last changed, while it is not healthy: since when the service has been
    /// unable to serve (`None` while healthy, or before the first change).
    pub down_since: Option<SystemTime>,
    pub error_detail: String,
    pub port: String,
    pub uptime: String,
    pub uptime_secs: u64,
    pub steps: Vec<Step>,
    pub circuit: CircuitState,
    pub circuit_failures: u64,
    pub circuit_opened_secs_ago: Option<u64>,
    pub requests: u64,
    pub failures: u64,
    pub fallback_page: &'static str,
    pub refresh_interval: u32,
    /// Supervised services only: pid ("" when none), restarts.
    pub pid: String,
    pub restarts: u32,
    pub last_exit: String,
}

impl Upstream {
    pub fn state_name(&self, now: Instant) -> &'static str {
        if let Some(p) = self.process.load().as_ref() {
            use crate::supervisor::ProcState;
            match p.status.borrow().state {
                ProcState::Stopped => return "stopped",
                ProcState::Starting => return "starting",
                ProcState::Stopping => return "stopping",
                ProcState::Crashed => return "crashed",
                ProcState::Backoff => return "backoff",
                ProcState::Started => {}
            }
            if !self.process_up() {
                return "starting";
            }
            if self.health() == Health::Unhealthy {
                return "unhealthy";
            }
        }
        let circuit = lock(&self.breaker).state(now);
        match (self.health(), circuit) {
            (Health::Healthy, CircuitState::Open) => "circuit_open",
            (Health::Healthy, _) => "running",
            (Health::Starting, _) => "starting",
            (Health::Unhealthy, _) => {
                if lock(&self.detail).ever_healthy {
                    "down"
                } else {
                    "unhealthy"
                }
            }
        }
    }

    /// Which fallback page fits the current state.
    pub fn page_kind(&self, now: Instant) -> &'static str {
        let cfg = self.cfg.load();
        match (cfg.fallback.page, self.state_name(now)) {
            (FallbackPage::Maintenance, _) => "maintenance",
            (FallbackPage::Unavailable, _) => "503",
            (FallbackPage::Loading, "starting") => "loading",
            (FallbackPage::Live, "starting") => "live",
            _ => "503",
        }
    }

    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let cfg = self.cfg.load();
        let state = self.state_name(now);
        let (circuit, circuit_failures, opened) = {
            let b = lock(&self.breaker);
            (b.state(now), b.failures_total, b.opened_at())
        };
        let d = lock(&self.detail);
        let health = self.health();
        // Steps are shown on public loading pages: the port, never the upstream's host.
        let target = format!("port {}", cfg.url.port);
        let probe_text = match &cfg.health.kind {
            ProbeKind::Http { path, .. } => format!("Health check GET {path}"),
            ProbeKind::Tcp => "Health check (TCP connect)".to_string(),
        };
        let connect_status = match (&d.last_probe, health) {
            (_, Health::Healthy) | (Some(ProbeOutcome::Ok | ProbeOutcome::CheckFailed(_)), _) => {
                "completed"
            }
            (Some(ProbeOutcome::ConnectFailed(_)), Health::Unhealthy) => "failed",
            _ => "active",
        };
        let check_status = match (&d.last_probe, health) {
            (_, Health::Healthy) => "completed",
            (Some(ProbeOutcome::CheckFailed(_)), Health::Unhealthy) => "failed",
            (Some(ProbeOutcome::CheckFailed(_)), _) => "active",
            _ => "pending",
        };
        let proc = self.process_status();
        let mut steps = Vec::new();
        if let Some(p) = &proc {
            use crate::supervisor::ProcState;
            let (alloc, start) = match p.state {
                ProcState::Started | ProcState::Stopping => ("completed", "completed"),
                ProcState::Crashed => ("completed", "failed"),
                ProcState::Backoff if p.error.is_some() => ("completed", "failed"),
                ProcState::Backoff => ("completed", "active"),
                ProcState::Stopped => ("pending", "pending"),
                ProcState::Starting if p.port.is_some() => ("completed", "active"),
                ProcState::Starting => ("active", "pending"),
            };
            steps.push(Step {
                text: match p.port {
                    Some(port) => format!("Allocating port ({port})"),
                    None => "Allocating port".to_string(),
                },
                status: alloc,
            });
            steps.push(Step {
                text: "Starting process".to_string(),
                status: start,
            });
            if p.state == ProcState::Started {
                steps.extend(p.steps.iter().map(|c| Step {
                    text: c.text.clone(),
                    status: c.status,
                }));
            }
        }
        let probing = proc
            .as_ref()
            .is_none_or(|p| p.state == crate::supervisor::ProcState::Started);
        let progress = lock(&self.progress).clone();
        if let Some((_, extra)) = &progress {
            steps.extend(extra.iter().cloned());
        }
        steps.push(Step {
            text: format!("Connecting to {target}"),
            status: if probing { connect_status } else { "pending" },
        });
        steps.push(Step {
            text: probe_text,
            status: if probing { check_status } else { "pending" },
        });
        let last_exit = proc
            .as_ref()
            .and_then(|p| p.last_exit.as_ref())
            .map(|e| e.describe())
            .unwrap_or_default();
        let status_message = match state {
            "running" => "Service is healthy".to_string(),
            "starting" => progress
                .as_ref()
                .and_then(|(m, _)| m.clone())
                .or_else(|| proc.as_ref().and_then(|p| p.message.clone()))
                .unwrap_or_else(|| cfg.fallback.message.clone()),
            "circuit_open" => "Too many recent failures; retrying shortly".to_string(),
            "stopped" => "Service is stopped".to_string(),
            "stopping" => "Service is stopping".to_string(),
            "crashed" => "Service crashed".to_string(),
            "backoff" => "Service crashed; restarting shortly".to_string(),
            _ => "Service is not answering".to_string(),
        };
        // A process that ended (crashed, backing off, or coming back after it) is explained by
        // its exit, not by the probe's "Connection refused".
        let error_detail = match (state, &proc) {
            ("crashed" | "backoff" | "starting" | "unhealthy", Some(p))
                if p.error.is_some() || p.last_exit.is_some() && p.restarts > 0 =>
            {
                p.error.clone().unwrap_or_else(|| last_exit.clone())
            }
            ("crashed" | "backoff", Some(_)) => last_exit.clone(),
            _ => d.last_error.clone(),
        };
        // A process's uptime runs from its start; an external upstream's from when it was
        // last seen healthy.
        let up_since = match &proc {
            Some(p) => p.pid.and(p.started_at),
            None => d.healthy_since,
        };
        let uptime_secs = up_since
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Snapshot {
            name: self.name.clone(),
            display_name: cfg.display_name.clone(),
            url: cfg.url_text.clone(),
            state,
            // A probe's last verdict says nothing once the process is gone.
            health: match proc.as_ref().map(|p| p.state) {
                None | Some(crate::supervisor::ProcState::Started) => health,
                Some(crate::supervisor::ProcState::Starting) => Health::Starting,
                Some(_) => Health::Unhealthy,
            },
            status_message,
            fallback_message: cfg.fallback.operator_message.clone().unwrap_or_default(),
            down_since: if health == Health::Healthy {
                None
            } else {
                d.changed_at
            },
            error_detail,
            port: cfg.url.port.to_string(),
            uptime: if up_since.is_some() {
                crate::protocol::fmt::human_secs(uptime_secs)
            } else {
                String::new()
            },
            uptime_secs,
            steps,
            circuit,
            circuit_failures,
            circuit_opened_secs_ago: opened.map(|t| now.saturating_duration_since(t).as_secs()),
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            fallback_page: cfg.fallback.page.as_str(),
            refresh_interval: cfg.fallback.refresh_interval,
            pid: proc
                .as_ref()
                .and_then(|p| p.pid)
                .map(|p| p.to_string())
                .unwrap_or_default(),
            restarts: proc.as_ref().map(|p| p.restarts).unwrap_or(0),
            last_exit,
        }
    }
}
