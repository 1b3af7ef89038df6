//! The operator's event log: why things changed. Every circuit transition, health change,
//! process exit or start, maintenance and drain edge is recorded here once, as an [`Event`] with
//! a sequence number, the service (and route), and the human-readable reason; it is logged once
//! through `tracing` with structured fields (`event`, `service`, `route`, `reason`, `failures`,
//! `latency_ms`, which the journal shows as `SERVICE=` …), and kept in a ring of the last
//! [`KEEP`] events for the dashboard, `GET /api/kinfra/events` and `kinfractl events`.
//!
//! It sits on the lowest row so the supervisor and the upstreams can record into it without
//! knowing `App`: they are handed an `Arc<EventLog>` when they are built. Followers watch the
//! last sequence number ([`EventLog::subscribe`]) and read what came after their cursor
//! ([`EventLog::since`]), so they never miss or repeat one while it is still kept.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// Events kept in memory; the oldest is dropped first.
pub const KEEP: usize = 100;
/// Longest reason kept (bytes); a longer one is cut at a character boundary with "…".
pub const MAX_REASON: usize = 400;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The breaker opened: requests get the fallback until its cool-down is over.
    CircuitOpen,
    /// The cool-down is over: trial requests go through.
    CircuitHalfOpen,
    /// The breaker closed again (trials succeeded, or the health probe saw it recover).
    CircuitClosed,
    /// The service became healthy.
    HealthUp,
    /// The service became unhealthy.
    HealthDown,
    /// A supervised process was started (first start, or an operator's start).
    ProcessStart,
    /// A supervised process ended (on its own, or stopped).
    ProcessExit,
    /// A supervised process is started again after it ended or on an operator's restart.
    ProcessRestart,
    MaintenanceOn,
    MaintenanceOff,
    DrainStarted,
    /// The drain's time is over and nothing is in flight on its services.
    DrainFinished,
    DrainStopped,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Kind::CircuitOpen,
        Kind::CircuitHalfOpen,
        Kind::CircuitClosed,
        Kind::HealthUp,
        Kind::HealthDown,
        Kind::ProcessStart,
        Kind::ProcessExit,
        Kind::ProcessRestart,
        Kind::MaintenanceOn,
        Kind::MaintenanceOff,
        Kind::DrainStarted,
        Kind::DrainFinished,
        Kind::DrainStopped,
    ];

    /// The name operators see and filter on (`EVENT=` in the journal).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::CircuitOpen => "circuit_open",
            Kind::CircuitHalfOpen => "circuit_half_open",
            Kind::CircuitClosed => "circuit_closed",
            Kind::HealthUp => "health_up",
            Kind::HealthDown => "health_down",
            Kind::ProcessStart => "process_start",
            Kind::ProcessExit => "process_exit",
            Kind::ProcessRestart => "process_restart",
            Kind::MaintenanceOn => "maintenance_on",
            Kind::MaintenanceOff => "maintenance_off",
            Kind::DrainStarted => "drain_started",
            Kind::DrainFinished => "drain_finished",
            Kind::DrainStopped => "drain_stopped",
        }
    }

    /// The log line's message.
    fn sentence(self) -> &'static str {
        match self {
            Kind::CircuitOpen => "circuit opened",
            Kind::CircuitHalfOpen => "circuit half-open: trying requests",
            Kind::CircuitClosed => "circuit closed",
            Kind::HealthUp => "service healthy",
            Kind::HealthDown => "service unhealthy",
            Kind::ProcessStart => "service process started",
            Kind::ProcessExit => "service process ended",
            Kind::ProcessRestart => "service process restarted",
            Kind::MaintenanceOn => "maintenance entered",
            Kind::MaintenanceOff => "maintenance left",
            Kind::DrainStarted => "drain started",
            Kind::DrainFinished => "drain finished",
            Kind::DrainStopped => "drain stopped",
        }
    }

    /// Worth a warning rather than a note.
    fn is_warning(self) -> bool {
        matches!(
            self,
            Kind::CircuitOpen | Kind::HealthDown | Kind::ProcessExit
        )
    }
}

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// 1 for the first event of this kinfrad run, then one more each time.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub kind: Kind,
    /// The service, or the maintenance/drain target (`ALL`, a route).
    pub service: String,
    pub route: Option<String>,
    pub reason: String,
    /// Consecutive failures, where they count.
    pub failures: Option<u32>,
    /// The latency of the probe or request that decided it, where known.
    pub latency_ms: Option<u64>,
}

impl Event {
    /// An event about `service`; `seq` and `at_ms` are set when it is recorded.
    pub fn new(kind: Kind, service: impl Into<String>, reason: impl Into<String>) -> Event {
        Event {
            seq: 0,
            at_ms: 0,
            kind,
            service: service.into(),
            route: None,
            reason: reason.into(),
            failures: None,
            latency_ms: None,
        }
    }

    pub fn route(mut self, route: impl Into<String>) -> Event {
        self.route = Some(route.into());
        self
    }

    pub fn failures(mut self, n: u32) -> Event {
        self.failures = Some(n);
        self
    }

    pub fn latency(mut self, d: Duration) -> Event {
        self.latency_ms = Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self
    }
}

#[derive(Debug, Default)]
struct Ring {
    events: VecDeque<Event>,
    last: u64,
}

/// The ring and its followers' signal.
#[derive(Debug)]
pub struct EventLog {
    ring: Mutex<Ring>,
    last: watch::Sender<u64>,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog {
            ring: Mutex::new(Ring::default()),
            last: watch::channel(0).0,
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `s` cut to at most `max` bytes at a character boundary, "…" added when cut.
fn clip(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

impl EventLog {
    pub fn new() -> EventLog {
        EventLog::default()
    }

    /// Record `e` (logged once, kept, followers woken); returns its sequence number.
    pub fn record(&self, mut e: Event) -> u64 {
        e.at_ms = now_ms();
        e.reason = clip(e.reason, MAX_REASON);
        log(&e);
        let seq = {
            let mut r = self.ring.lock().unwrap_or_else(|p| p.into_inner());
            r.last += 1;
            e.seq = r.last;
            if r.events.len() >= KEEP {
                r.events.pop_front();
            }
            r.events.push_back(e);
            r.last
        };
        self.last.send_replace(seq);
        seq
    }

    /// The sequence number of the newest event (0: none yet).
    pub fn last_seq(&self) -> u64 {
        *self.last.borrow()
    }

    /// Woken whenever an event is recorded (the value is `last_seq`).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.last.subscribe()
    }

    /// Every event kept, oldest first.
    pub fn recent(&self) -> Vec<Event> {
        self.since(0, KEEP).0
    }

    /// At most `max` of the kept events after `after`, oldest first, and how many after
    /// `after` were dropped from the ring before they could be read.
    pub fn since(&self, after: u64, max: usize) -> (Vec<Event>, u64) {
        let r = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let first = r.events.front().map_or(r.last + 1, |e| e.seq);
        let missed = first.saturating_sub(after.saturating_add(1));
        let events = r
            .events
            .iter()
            .filter(|e| e.seq > after)
            .take(max)
            .cloned()
            .collect();
        (events, missed)
    }
}

/// The one log line of an event, with its structured fields. Optional fields are left out
/// when absent.
fn log(e: &Event) {
    let kind = e.kind.as_str();
    let route = e.route.as_deref();
    if e.kind.is_warning() {
        tracing::warn!(event = kind, service = %e.service, route, reason = %e.reason, failures = e.failures, latency_ms = e.latency_ms, "{}", e.kind.sentence());
    } else {
        tracing::info!(event = kind, service = %e.service, route, reason = %e.reason, failures = e.failures, latency_ms = e.latency_ms, "{}", e.kind.sentence());
    }
}

#[cfg(test)]
mod tests;
