//! One upstream's live state: health (active probes and passive signals), its circuit breaker,
//! the last error, counters, and its pre-rendered fallback page. Shared by the request path
//! (reads atomics, takes the breaker's short mutex) and its health task.
//!
//! This file holds the core (health, breaker, counters, admission, the idle pool); the
//! supervised child is followed in `process`, and the status view is built in `snapshot`.

pub mod client;
mod flight;
pub mod health;
mod notes;
mod process;
mod reading;
mod snapshot;
#[cfg(test)]
mod tests;

pub use flight::InFlight;
pub use reading::Reading;
pub use snapshot::{Snapshot, public_error};

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::config::service::ServiceConfig;
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
    /// When the last active probe finished, and how long it took.
    last_check: Option<(SystemTime, Duration)>,
}

/// A rendered fallback page and the state it was rendered for.
#[derive(Debug, Default)]
pub struct Rendered {
    pub kind: &'static str,
    pub html: Bytes,
    pub version: u64,
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
    /// From sending a request to its response head (both request paths).
    pub latency: crate::model::metrics::Histogram,
    /// Active probes that passed and failed, and how long each took.
    pub probes_ok: AtomicU64,
    pub probes_failed: AtomicU64,
    pub probe_latency: crate::model::metrics::Histogram,
    /// Requests being served now (see `InFlight`).
    in_flight: AtomicU64,
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
    /// Where circuit moves and health changes are recorded (`notes`).
    events: std::sync::Arc<crate::eventlog::EventLog>,
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
    pub fn new(
        cfg: ServiceConfig,
        extra_ca: Option<&std::path::Path>,
        events: std::sync::Arc<crate::eventlog::EventLog>,
    ) -> Result<Upstream, String> {
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
            latency: Default::default(),
            probes_ok: AtomicU64::new(0),
            probes_failed: AtomicU64::new(0),
            probe_latency: Default::default(),
            in_flight: AtomicU64::new(0),
            starts: AtomicU64::new(0),
            idle: Mutex::new(Vec::new()),
            process: arc_swap::ArcSwapOption::empty(),
            proc_up: std::sync::atomic::AtomicBool::new(true),
            refreshing: Mutex::new(()),
            progress: Mutex::new(None),
            events,
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

    /// Record an active probe that took `latency`; returns true when the visible state changed.
    pub fn on_probe_timed(&self, outcome: ProbeOutcome, latency: Duration) -> bool {
        lock(&self.detail).last_check = Some((SystemTime::now(), latency));
        self.probe_latency.observe(latency);
        let passed = if outcome == ProbeOutcome::Ok {
            &self.probes_ok
        } else {
            &self.probes_failed
        };
        passed.fetch_add(1, Ordering::Relaxed);
        self.probed(outcome, Some(latency))
    }

    /// Record an active probe; returns true when the visible state changed.
    pub fn on_probe(&self, outcome: ProbeOutcome) -> bool {
        self.probed(outcome, None)
    }

    fn probed(&self, outcome: ProbeOutcome, latency: Option<Duration>) -> bool {
        let cfg = self.cfg.load();
        let before = self.health();
        let mut notes = [None, None];
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
                    let passed = match d.consecutive_ok {
                        1 => "health check passed".to_string(),
                        n => format!("health check passed {n} times in a row"),
                    };
                    notes[0] =
                        self.health_move(before, Health::Healthy, passed.clone(), 0, latency);
                    // The upstream is back: close the circuit rather than wait out its cool-down.
                    let mut b = lock(&self.breaker);
                    let was = b.moved_state();
                    b.reset();
                    notes[1] = self.circuit_move(&b, was, Instant::now(), &passed);
                }
            }
            ProbeOutcome::ConnectFailed(e) | ProbeOutcome::CheckFailed(e) => {
                d.consecutive_ok = 0;
                d.consecutive_fail = d.consecutive_fail.saturating_add(1);
                d.last_error = e.clone();
                let from = d.grace_from.unwrap_or(self.started);
                // A child may extend its startup (EXTEND_TIMEOUT_USEC).
                let extended = self
                    .process
                    .load()
                    .as_ref()
                    .and_then(|h| h.status.borrow().extend_until)
                    .is_some_and(|t| Instant::now() < t);
                let in_grace = !d.ever_healthy && (from.elapsed() < cfg.health.grace || extended);
                let reason = match self.health() {
                    Health::Healthy if d.consecutive_fail >= cfg.health.unhealthy_threshold => e,
                    Health::Starting if !in_grace => {
                        format!("{e} (not healthy within the startup grace period)")
                    }
                    _ => String::new(),
                };
                if !reason.is_empty() {
                    changed |= self.set_health(Health::Unhealthy, &mut d);
                    let n = d.consecutive_fail;
                    notes[0] = self.health_move(before, Health::Unhealthy, reason, n, latency);
                }
            }
        }
        drop(d);
        self.record(notes);
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
        let mut b = lock(&self.breaker);
        let was = b.moved_state();
        let a = b.admit(now);
        if was == CircuitState::Open {
            let note = self.circuit_move(&b, was, now, "");
            drop(b);
            self.record([note]);
        }
        match a {
            Admit::No => None,
            a => Some(a),
        }
    }

    /// A forwarded request got a response (5xx counts as a failure for the breaker).
    pub fn on_response(&self, now: Instant, server_error: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut b = lock(&self.breaker);
        let was = b.moved_state();
        if server_error {
            self.failures.fetch_add(1, Ordering::Relaxed);
            let before = b.state(now);
            b.on_failure(now);
            let after = b.state(now);
            let note = self.circuit_move(&b, was, now, "a 5xx response");
            drop(b);
            self.record([note]);
            if before != after {
                self.bump();
            }
        } else if b.consecutive_failures() > 0 || b.state(now) != CircuitState::Closed {
            let before = b.state(now);
            b.on_success(now);
            let after = b.state(now);
            let note = self.circuit_move(&b, was, now, "trial requests succeeded");
            drop(b);
            self.record([note]);
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
        let (mut changed, circuit, failures) = {
            let mut b = lock(&self.breaker);
            let before = b.state(now);
            let was = b.moved_state();
            b.on_failure(now);
            let note = self.circuit_move(&b, was, now, &what);
            (before != b.state(now), note, b.consecutive_failures())
        };
        let before = self.health();
        let mut d = lock(&self.detail);
        let mut health = None;
        if connect {
            d.consecutive_ok = 0;
            changed |= self.set_health(Health::Unhealthy, &mut d);
            let reason = format!("request failed: {what}");
            health = self.health_move(before, Health::Unhealthy, reason, failures, None);
        }
        d.last_error = what;
        drop(d);
        self.record([circuit, health]);
        if changed {
            self.bump();
        }
        changed
    }

    /// A half-open trial whose client went away before an outcome.
    pub fn on_abandoned(&self) {
        lock(&self.breaker).on_abandoned();
    }
}
