//! The small reading of one upstream that the health API serves: state, breaker, the last
//! probe's time, latency and error. Cheaper than a `Snapshot` (no steps, no texts to build), as
//! health endpoints may be polled many times a second; it reads what the probe task recorded
//! and never probes.

use std::time::{Duration, Instant, SystemTime};

use super::{Upstream, lock};
use crate::model::circuit::CircuitState;

/// One upstream as the health API sees it.
#[derive(Debug, Clone)]
pub struct Reading {
    /// The state name `/__status__` shows (`running`, `down`, `circuit_open`, `stopped`, …).
    pub state: &'static str,
    pub circuit: CircuitState,
    /// The breaker's state changes so far, by the state entered (`CircuitState::ALL` order).
    pub circuit_transitions: [u64; 3],
    /// Consecutive failed requests the breaker counts.
    pub circuit_failures: u32,
    /// Consecutive failed active probes.
    pub probe_failures: u32,
    /// When the last active probe finished, and how long it took.
    pub last_check: Option<(SystemTime, Duration)>,
    /// The last error seen (probe or request), "" when none.
    pub error: String,
    /// Its state is known: a probe has answered since it (or its process) started, or its
    /// process is not running (stopped, crashed, backing off), which needs no probe to tell.
    pub checked: bool,
    pub critical: bool,
    /// Its fallback pages are on (`enable_fallback`): visitors get them while it is down.
    pub fallback: bool,
}

impl Upstream {
    pub fn reading(&self, now: Instant) -> Reading {
        let state = self.state_name(now);
        let (circuit, circuit_failures, circuit_transitions) = {
            let b = lock(&self.breaker);
            (b.state(now), b.consecutive_failures(), b.transitions())
        };
        let cfg = self.cfg.load();
        let not_running = self.process.load().as_ref().is_some_and(|h| {
            use crate::supervisor::ProcState;
            matches!(
                h.status.borrow().state,
                ProcState::Stopped | ProcState::Crashed | ProcState::Backoff
            )
        });
        let d = lock(&self.detail);
        Reading {
            state,
            circuit,
            circuit_transitions,
            circuit_failures,
            probe_failures: d.consecutive_fail,
            last_check: d.last_check,
            error: d.last_error.clone(),
            checked: d.last_probe.is_some() || not_running,
            critical: cfg.critical,
            fallback: cfg.fallback.enabled,
        }
    }
}
