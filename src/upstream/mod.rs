//! One upstream's live state: health (active probes and passive signals), its circuit breaker,
//! the last error, counters, and its pre-rendered fallback page. Shared by the request path
//! (reads atomics, takes the breaker's short mutex) and its health task.

pub mod client;
pub mod health;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::config::service::{FallbackPage, ProbeKind, ServiceConfig};
use crate::model::Step;
use crate::model::circuit::{Admit, Breaker, CircuitState};

/// Readiness as kinfrad sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Health {
    /// Not yet seen healthy, within the startup grace period.
    Starting = 0,
    Healthy = 1,
    Unhealthy = 2,
}

impl Health {
    fn from_u8(v: u8) -> Health {
        match v {
            1 => Health::Healthy,
            2 => Health::Unhealthy,
            _ => Health::Starting,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Health::Starting => "Starting",
            Health::Healthy => "Healthy",
            Health::Unhealthy => "Unhealthy",
        }
    }
}

/// What one active probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    Ok,
    /// TCP connect failed (refused, unreachable, timeout).
    ConnectFailed(String),
    /// Connected, but the check failed (bad status, timeout, reset).
    CheckFailed(String),
}

#[derive(Debug, Default)]
struct Detail {
    consecutive_ok: u32,
    consecutive_fail: u32,
    last_probe: Option<ProbeOutcome>,
    last_error: String,
    ever_healthy: bool,
    healthy_since: Option<SystemTime>,
    changed_at: Option<SystemTime>,
    /// The startup grace period runs from here (kinfrad's start, or the process's last start).
    grace_from: Option<Instant>,
}

/// A rendered fallback page and the state it was rendered for.
#[derive(Debug, Default)]
pub struct Rendered {
    pub kind: &'static str,
    pub html: Bytes,
    pub version: u64,
}

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
    pub maintenance_hits: u64,
    pub fallback_page: &'static str,
    pub refresh_interval: u32,
    /// Supervised services only: pid ("" when none), restarts.
    pub pid: String,
    pub restarts: u32,
    pub last_exit: String,
}

/// Live state of one `[[service]]` (`url`, or `command` with its supervisor).
pub struct Upstream {
    pub name: String,
    cfg: ArcSwap<ServiceConfig>,
    pub client: ArcSwap<crate::upstream::client::UpstreamClient>,
    health: AtomicU8,
    breaker: Mutex<Breaker>,
    detail: Mutex<Detail>,
    started: Instant,
    /// Bumped on every visible change; the fallback page is re-rendered when it moves.
    version: AtomicU64,
    pub rendered: ArcSwap<Rendered>,
    pub requests: AtomicU64,
    pub failures: AtomicU64,
    pub maintenance_hits: AtomicU64,
    /// Processes started by the supervisor (see `starts`).
    starts: AtomicU64,
    /// Idle keep-alive connections of the HTTP/1.1 fast path (`h1`), most recent last.
    idle: Mutex<Vec<(tokio::net::TcpStream, Instant)>>,
    /// The supervisor of a service kinfrad runs (`command`); attach with `set_process`.
    process: arc_swap::ArcSwapOption<crate::supervisor::Handle>,
    /// Derived from `process`: no supervisor, or its process is started (and ready, with
    /// `ready = "notify"`).
    proc_up: std::sync::atomic::AtomicBool,
    /// Serialises `refresh_process` (never taken on the request path).
    refreshing: Mutex<()>,
    /// Message and steps an operator or deploy script set (`kinfractl progress`), shown while
    /// the service is not running; cleared when it becomes healthy or its process restarts.
    progress: Mutex<Option<(Option<String>, Vec<Step>)>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Upstream {
    pub fn new(cfg: ServiceConfig, extra_ca: Option<&std::path::Path>) -> Result<Upstream, String> {
        let client = crate::upstream::client::UpstreamClient::new(&cfg, extra_ca)?;
        let now = Instant::now();
        Ok(Upstream {
            name: cfg.name.clone(),
            breaker: Mutex::new(Breaker::new(cfg.breaker.clone(), now)),
            cfg: ArcSwap::from_pointee(cfg),
            client: ArcSwap::from_pointee(client),
            health: AtomicU8::new(Health::Starting as u8),
            detail: Mutex::new(Detail::default()),
            started: now,
            version: AtomicU64::new(1),
            rendered: ArcSwap::from_pointee(Rendered::default()),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            maintenance_hits: AtomicU64::new(0),
            starts: AtomicU64::new(0),
            idle: Mutex::new(Vec::new()),
            process: arc_swap::ArcSwapOption::empty(),
            proc_up: std::sync::atomic::AtomicBool::new(true),
            refreshing: Mutex::new(()),
            progress: Mutex::new(None),
        })
    }

    /// Most idle upstream connections kept per upstream.
    pub const MAX_IDLE: usize = 512;

    /// An idle pooled connection that is still open and younger than the idle timeout.
    /// A pooled connection idle for less than `idle` (the service's idle timeout, which the
    /// caller already holds).
    pub fn take_idle(&self, now: Instant, idle: Duration) -> Option<tokio::net::TcpStream> {
        let mut pool = lock(&self.idle);
        while let Some((conn, since)) = pool.pop() {
            if now.saturating_duration_since(since) >= idle {
                continue;
            }
            // Closed by the upstream (EOF) or holding unexpected bytes: not reusable. This is
            // a readiness check, not a syscall, unless the reactor saw the socket wake.
            let mut probe = [0u8; 1];
            match conn.try_read(&mut probe) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Some(conn),
                _ => continue,
            }
        }
        None
    }

    /// Return a connection whose last response was read completely (`now`: about when).
    pub fn put_idle(&self, conn: tokio::net::TcpStream, now: Instant, idle: Duration) {
        let mut pool = lock(&self.idle);
        // The oldest sit at the front: drop expired ones as others come back. (Stamps are about
        // when each request began, so the order is oldest-first only to within a request's
        // length: an expired connection may wait behind a fresher one that long.)
        while pool
            .first()
            .is_some_and(|(_, t)| now.saturating_duration_since(*t) >= idle)
        {
            pool.remove(0);
        }
        if pool.len() < Self::MAX_IDLE {
            pool.push((conn, now));
        }
    }

    pub fn cfg(&self) -> arc_swap::Guard<std::sync::Arc<ServiceConfig>> {
        self.cfg.load()
    }

    /// Apply a reloaded config for the same service, keeping health and breaker state.
    pub fn reconfigure(
        &self,
        cfg: ServiceConfig,
        extra_ca: Option<&std::path::Path>,
    ) -> Result<(), String> {
        self.client.store(std::sync::Arc::new(
            crate::upstream::client::UpstreamClient::new(&cfg, extra_ca)?,
        ));
        lock(&self.breaker).reconfigure(cfg.breaker.clone());
        if cfg.url != self.cfg.load().url {
            // Pooled connections lead to the old address.
            lock(&self.idle).clear();
        }
        self.cfg.store(std::sync::Arc::new(cfg));
        self.refresh_process();
        self.bump();
        Ok(())
    }

    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Acquire))
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    fn set_health(&self, h: Health, d: &mut Detail) -> bool {
        let prev = Health::from_u8(self.health.swap(h as u8, Ordering::AcqRel));
        if prev != h {
            d.changed_at = Some(SystemTime::now());
            if h == Health::Healthy {
                d.ever_healthy = true;
                d.healthy_since = Some(SystemTime::now());
            } else {
                d.healthy_since = None;
            }
            true
        } else {
            false
        }
    }

    /// Record an active probe; returns true when the visible state changed.
    pub fn on_probe(&self, outcome: ProbeOutcome) -> bool {
        let cfg = self.cfg.load();
        let mut d = lock(&self.detail);
        let probe_changed = d.last_probe.as_ref() != Some(&outcome);
        d.last_probe = Some(outcome.clone());
        let mut changed = probe_changed;
        match outcome {
            ProbeOutcome::Ok => {
                d.consecutive_fail = 0;
                d.consecutive_ok = d.consecutive_ok.saturating_add(1);
                if self.health() != Health::Healthy
                    && d.consecutive_ok >= cfg.health.healthy_threshold
                {
                    changed |= self.set_health(Health::Healthy, &mut d);
                    d.last_error.clear();
                    *lock(&self.progress) = None;
                    // The upstream is back: close the circuit rather than wait out its cool-down.
                    lock(&self.breaker).reset();
                }
            }
            ProbeOutcome::ConnectFailed(e) | ProbeOutcome::CheckFailed(e) => {
                d.consecutive_ok = 0;
                d.consecutive_fail = d.consecutive_fail.saturating_add(1);
                d.last_error = e;
                let from = d.grace_from.unwrap_or(self.started);
                // A child may extend its startup (EXTEND_TIMEOUT_USEC).
                let extended = self
                    .process
                    .load()
                    .as_ref()
                    .and_then(|h| h.status.borrow().extend_until)
                    .is_some_and(|t| Instant::now() < t);
                let in_grace = !d.ever_healthy && (from.elapsed() < cfg.health.grace || extended);
                match self.health() {
                    Health::Healthy if d.consecutive_fail >= cfg.health.unhealthy_threshold => {
                        changed |= self.set_health(Health::Unhealthy, &mut d);
                    }
                    Health::Starting if !in_grace => {
                        changed |= self.set_health(Health::Unhealthy, &mut d);
                    }
                    _ => {}
                }
            }
        }
        drop(d);
        if changed {
            self.bump();
        }
        changed
    }

    /// Should a request be sent? (`None`: no, serve the fallback.)
    pub fn admit(&self, now: Instant) -> Option<Admit> {
        if self.health() != Health::Healthy || !self.process_up() {
            return None;
        }
        match lock(&self.breaker).admit(now) {
            Admit::No => None,
            a => Some(a),
        }
    }

    /// A forwarded request got a response (5xx counts as a failure for the breaker).
    pub fn on_response(&self, now: Instant, server_error: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut b = lock(&self.breaker);
        if server_error {
            self.failures.fetch_add(1, Ordering::Relaxed);
            let before = b.state(now);
            b.on_failure(now);
            let after = b.state(now);
            drop(b);
            if before != after {
                self.bump();
            }
        } else if b.consecutive_failures() > 0 || b.state(now) != CircuitState::Closed {
            let before = b.state(now);
            b.on_success(now);
            let after = b.state(now);
            drop(b);
            if before != after {
                self.bump();
            }
        }
    }

    /// A forwarded request failed without a response. `connect` failures also mark the upstream
    /// unhealthy at once, so the next visitor gets the fallback page without waiting.
    pub fn on_error(&self, now: Instant, connect: bool, what: String) -> bool {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut changed = {
            let mut b = lock(&self.breaker);
            let before = b.state(now);
            b.on_failure(now);
            before != b.state(now)
        };
        let mut d = lock(&self.detail);
        d.last_error = what;
        if connect {
            d.consecutive_ok = 0;
            changed |= self.set_health(Health::Unhealthy, &mut d);
        }
        drop(d);
        if changed {
            self.bump();
        }
        changed
    }

    /// A half-open trial whose client went away before an outcome.
    pub fn on_abandoned(&self) {
        lock(&self.breaker).on_abandoned();
    }

    /// The supervisor of a service kinfrad runs (none for a `url` service).
    pub fn process(&self) -> arc_swap::Guard<Option<std::sync::Arc<crate::supervisor::Handle>>> {
        self.process.load()
    }

    /// The supervisor's state, for a service kinfrad runs.
    pub fn process_status(&self) -> Option<crate::supervisor::ProcStatus> {
        self.process
            .load()
            .as_ref()
            .map(|h| h.status.borrow().clone())
    }

    /// No supervisor, or its process is started (and, with `ready = "notify"`, said READY=1).
    /// Read by the request path: an atomic kept by `refresh_process`, never the watch.
    fn process_up(&self) -> bool {
        self.proc_up.load(Ordering::Acquire)
    }

    /// Recompute `proc_up` from the supervisor's published status and the config. The status
    /// watcher and a reload may both call this: one at a time, so the last store is computed
    /// from the newest handle, config and status (never an older read stored late).
    fn refresh_process(&self) {
        let _one = lock(&self.refreshing);
        let needs_notify = self
            .cfg
            .load()
            .process
            .as_ref()
            .is_some_and(|p| p.ready == crate::config::service::Ready::Notify);
        let up = self.process.load().as_ref().is_none_or(|h| {
            let s = h.status.borrow();
            s.state == crate::supervisor::ProcState::Started && (s.ready || !needs_notify)
        });
        self.proc_up.store(up, Ordering::Release);
    }

    /// Attach (or detach) the supervisor of a service kinfrad runs.
    pub fn set_process(&self, h: Option<std::sync::Arc<crate::supervisor::Handle>>) {
        self.process.store(h);
        self.refresh_process();
    }

    /// Set (or, with `None`, clear) the message and steps an operator announced.
    pub fn set_progress(&self, p: Option<(Option<String>, Vec<Step>)>) {
        *lock(&self.progress) = p;
        self.bump();
    }

    /// How many processes the supervisor has started: a probe that began under another count
    /// probed a process (or port) that is gone, and its verdict is void.
    pub fn starts(&self) -> u64 {
        self.starts.load(Ordering::Acquire)
    }

    /// Worth probing: a `url` service, or a supervised one whose process is started.
    pub fn probe_wanted(&self) -> bool {
        self.process
            .load()
            .as_ref()
            .is_none_or(|h| h.status.borrow().state == crate::supervisor::ProcState::Started)
    }

    /// The supervisor started a process on `port`: traffic follows the port, and health starts
    /// over (the loading page shows while it comes up).
    pub fn process_started(&self, port: u16) {
        self.starts.fetch_add(1, Ordering::AcqRel);
        *lock(&self.progress) = None;
        let cur = self.cfg.load_full();
        if cur.url.port != port {
            let mut next = (*cur).clone();
            let text = format!("http://127.0.0.1:{port}");
            if let Ok(u) = crate::config::service::parse_upstream_url(&text) {
                next.url = u;
                next.url_text = text;
                self.cfg.store(std::sync::Arc::new(next));
            }
        }
        let mut d = lock(&self.detail);
        d.consecutive_ok = 0;
        d.consecutive_fail = 0;
        d.last_probe = None;
        d.ever_healthy = false;
        d.grace_from = Some(Instant::now());
        self.set_health(Health::Starting, &mut d);
        drop(d);
        lock(&self.idle).clear();
        self.bump();
    }

    /// Something about the process changed (state, exit, readiness): traffic and pages follow.
    pub fn process_changed(&self) {
        self.refresh_process();
        self.bump();
    }

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
            maintenance_hits: self.maintenance_hits.load(Ordering::Relaxed),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visitors_read_a_summary_of_raw_errors() {
        for kept in [
            "",
            "Connection refused",
            "Connect timed out",
            "No response within 1m",
            "Process exited with code 1",
            "Process killed by signal 9 (SIGKILL)",
        ] {
            assert_eq!(public_error(kept), kept);
        }
        let raw = "client error (Connect): tcp connect error: 10.1.2.3:8080: No route to host";
        assert_eq!(public_error(raw), "The service failed to answer");
        assert_eq!(
            public_error("Health check GET /internal/ping returned 500"),
            "Health check failed"
        );
        assert_eq!(
            public_error("No response within /etc/secret path"),
            "The service failed to answer"
        );
    }

    fn up(extra: &str) -> Upstream {
        let raw: crate::config::service::RawService = toml::from_str(&format!(
            "name = \"api\"\nurl = \"http://127.0.0.1:1\"\nroutes = [\"/\"]\n{extra}"
        ))
        .expect("raw");
        Upstream::new(ServiceConfig::from_raw(0, &raw).expect("cfg"), None).expect("upstream")
    }

    #[test]
    fn starts_starting_then_healthy_then_down() {
        let u = up("health_check = { path = \"/h\", unhealthy_threshold = 2 }");
        let now = Instant::now();
        assert_eq!(u.state_name(now), "starting");
        assert!(u.admit(now).is_none(), "no traffic before ready");
        assert!(u.on_probe(ProbeOutcome::Ok));
        assert_eq!(u.state_name(now), "running");
        assert_eq!(u.admit(now), Some(Admit::Yes));
        u.on_probe(ProbeOutcome::CheckFailed("status 500".into()));
        assert_eq!(
            u.health(),
            Health::Healthy,
            "one failure is below the threshold"
        );
        assert!(u.on_probe(ProbeOutcome::CheckFailed("status 500".into())));
        assert_eq!(u.state_name(now), "down");
        assert_eq!(u.page_kind(now), "503");
        assert_eq!(u.snapshot(now).error_detail, "status 500");
    }

    #[test]
    fn startup_grace_keeps_loading_page() {
        let u = up("health_check = { grace = \"1h\" }");
        let now = Instant::now();
        u.on_probe(ProbeOutcome::ConnectFailed("Connection refused".into()));
        assert_eq!(u.state_name(now), "starting");
        assert_eq!(u.page_kind(now), "loading");
        let s = u.snapshot(now);
        assert_eq!(s.steps[0].status, "active");
        let u = up("health_check = { grace = \"0s\" }");
        u.on_probe(ProbeOutcome::ConnectFailed("Connection refused".into()));
        assert_eq!(u.state_name(now), "unhealthy");
        assert_eq!(u.snapshot(now).steps[0].status, "failed");
    }

    #[test]
    fn passive_connect_errors_and_breaker() {
        let u = up("circuit_breaker = { failures = 2, cooldown = \"5s\" }");
        let now = Instant::now();
        u.on_probe(ProbeOutcome::Ok);
        u.on_response(now, true);
        u.on_response(now, true);
        assert_eq!(u.state_name(now), "circuit_open");
        assert!(u.admit(now).is_none());
        assert_eq!(u.admit(now + Duration::from_secs(6)), Some(Admit::Trial));
        u.on_error(now, true, "Connection refused".into());
        assert_eq!(u.health(), Health::Unhealthy);
        // The probe seeing it back closes the circuit too.
        u.on_probe(ProbeOutcome::Ok);
        assert_eq!(u.state_name(now + Duration::from_secs(7)), "running");
    }
}
