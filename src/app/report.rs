//! What `App` reports: the status report, every service's state and the STATUS= line.

use std::sync::atomic::Ordering;

use crate::model::maintenance::{self, Target};
use crate::protocol::{StatusReport, StatusView};

use super::{App, lock_problems, now_ms};

impl App {
    /// The global record's view (`GET /api/maintenance/status`): active, or what is kept for
    /// its next window, or inactive.
    pub fn status_view(&self) -> StatusView {
        let v = self.maint.load();
        if v.global().is_none() && v.prepared_for(&Target::All).is_none() {
            return maintenance::status_view(None, 0, now_ms());
        }
        self.target_view(&Target::All)
    }

    pub fn problems(&self) -> Vec<String> {
        let p = lock_problems(&self.problems);
        p.state.iter().chain(p.reload.iter()).cloned().collect()
    }

    pub fn report(&self) -> StatusReport {
        let cfg = self.config();
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_secs: self.uptime().as_secs(),
            config: cfg.source.to_string(),
            listen: self.http_addrs.iter().map(|a| a.to_string()).collect(),
            control_socket: self.control_path.clone(),
            state_file: cfg
                .state_dir
                .join(crate::paths::STATE_FILE)
                .display()
                .to_string(),
            problems: self.problems(),
            open_connections: self.connections.load(Ordering::Relaxed),
            maintenance: self.status_view(),
            maintenance_records: self.maint_list(),
            services: self.service_reports(),
            drain: Some(Box::new(self.drain_report())).filter(|d| d.active),
            schedules: self.schedule_list(),
            fleet: self.fleet_summary(),
        }
    }

    /// Every service's state, for `kinfractl status`.
    pub fn service_reports(&self) -> Vec<crate::protocol::ServiceReport> {
        let now = std::time::Instant::now();
        let maint = self.maint.load();
        let drain = self.drain_current();
        let progress = drain
            .as_ref()
            .map(|d| d.record.progress(now_ms()))
            .unwrap_or(0.0);
        let svc = self.services.load();
        svc.list
            .iter()
            .map(|up| {
                let s = up.snapshot(now);
                let proc = up.process_status();
                crate::protocol::ServiceReport {
                    name: s.name,
                    url: s.url,
                    routes: up.cfg().routes.iter().map(|r| r.to_string()).collect(),
                    state: s.state.to_string(),
                    health: s.health.label().to_string(),
                    circuit_state: s.circuit.as_str().to_string(),
                    circuit_failures: s.circuit_failures,
                    circuit_opened_secs_ago: s.circuit_opened_secs_ago,
                    requests: s.requests,
                    failures: s.failures,
                    last_error: s.error_detail,
                    in_maintenance: maint.covers_service(&svc, &up.name),
                    supervised: proc.is_some(),
                    pid: proc.as_ref().and_then(|p| p.pid),
                    port: Some(up.cfg().url.port),
                    uptime_secs: match &proc {
                        Some(p) => p
                            .pid
                            .and(p.started_at)
                            .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
                            .map(|d| d.as_secs()),
                        None => (s.uptime_secs > 0).then_some(s.uptime_secs),
                    },
                    restarts: s.restarts,
                    last_exit: s.last_exit,
                    drain_progress: drain
                        .as_ref()
                        .filter(|d| d.covers(&up.name))
                        .map(|_| progress),
                }
            })
            .collect()
    }

    /// The one-line STATUS= text.
    pub fn status_line(&self) -> String {
        let v = self.maint.load();
        let svc = self.services.load();
        let up = if svc.list.is_empty() {
            String::new()
        } else {
            let healthy = svc
                .list
                .iter()
                .filter(|u| u.health() == crate::upstream::Health::Healthy)
                .count();
            format!("; {healthy}/{} services up", svc.list.len())
        };
        let others: Vec<String> = v
            .active
            .iter()
            .filter(|a| a.record.target != Target::All)
            .map(|a| a.record.target.to_string())
            .collect();
        let mut s = match v.global().map(|a| &a.record) {
            None if others.is_empty() => {
                format!("Serving on {}{up}; maintenance off", self.listen_summary())
            }
            None => format!(
                "Serving on {}{up}; maintenance on for {}",
                self.listen_summary(),
                truncate(&others.join(", "), 120)
            ),
            Some(m) => {
                let eta = match m.estimated_completion_ms {
                    Some(e) => format!(", ETA {}", crate::protocol::fmt::iso(e)),
                    None => String::new(),
                };
                let page = if m.page_url.is_some() {
                    ", custom page"
                } else {
                    ""
                };
                let more = match others.len() {
                    0 => String::new(),
                    n => format!(" (+{n} more)"),
                };
                format!(
                    "Maintenance ON ({}){eta}{page}{more}: {}",
                    m.target,
                    truncate(&m.message, 80)
                )
            }
        };
        if let Some(d) = self.drain_current() {
            match d.drained_at() {
                Some(_) => s.push_str(&format!("; drained ({})", d.record.target)),
                None => s.push_str(&format!(
                    "; draining ({}) until {}",
                    d.record.target,
                    crate::protocol::fmt::iso(d.record.end_ms())
                )),
            }
        }
        for p in self.problems() {
            s.push_str(" | PROBLEM: ");
            s.push_str(&truncate(&p, 160));
        }
        s
    }

    pub(super) fn listen_summary(&self) -> String {
        self.http_addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn truncate(s: &str, n: usize) -> String {
    let one: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one.chars().count() <= n {
        one
    } else {
        let mut t: String = one.chars().take(n).collect();
        t.push('…');
        t
    }
}

/// A line as `/__status__` and the control protocol show it: timestamp, level, stream, message.
/// The wire conversion lives here, not in the supervisor, so the code that forks children never
/// names a protocol type.
impl From<&crate::supervisor::LogLine> for crate::protocol::LogEntry {
    fn from(l: &crate::supervisor::LogLine) -> Self {
        let ms =
            l.at.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
        crate::protocol::LogEntry {
            timestamp: crate::protocol::fmt::iso(ms),
            // The status JSON's shape: lower-case levels.
            level: l.level.as_str().to_ascii_lowercase(),
            stream: match l.stream {
                crate::supervisor::Stream::Stdout => "stdout",
                crate::supervisor::Stream::Stderr => "stderr",
            }
            .to_string(),
            message: l.text.clone(),
        }
    }
}
