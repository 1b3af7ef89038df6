//! The events an upstream records (see `crate::eventlog`): its circuit's moves and its health
//! changes, with the reason. Built while the breaker or detail lock is held (formatting only),
//! recorded after it is released.

use std::time::{Duration, Instant};

use super::{Health, Upstream};
use crate::eventlog::{Event, Kind};
use crate::model::circuit::{Breaker, CircuitState};

impl Upstream {
    /// The event of a circuit that moved from `was` (None when it did not move). `cause`: the
    /// last failure for an opening, what closed it for a closing.
    pub(super) fn circuit_move(
        &self,
        b: &Breaker,
        was: CircuitState,
        now: Instant,
        cause: &str,
    ) -> Option<Event> {
        let to = b.moved_state();
        if to == was {
            return None;
        }
        Some(match to {
            CircuitState::Open => Event::new(
                Kind::CircuitOpen,
                &self.name,
                format!("{} (last: {cause})", b.open_reason(now, was)),
            )
            .failures(b.consecutive_failures()),
            CircuitState::HalfOpen => Event::new(
                Kind::CircuitHalfOpen,
                &self.name,
                format!(
                    "cool-down of {} over; trying requests",
                    humantime::format_duration(b.cooldown())
                ),
            ),
            CircuitState::Closed => Event::new(Kind::CircuitClosed, &self.name, cause),
        })
    }

    /// The event of a health change from `from` to `to`.
    pub(super) fn health_move(
        &self,
        from: Health,
        to: Health,
        reason: String,
        failures: u32,
        latency: Option<Duration>,
    ) -> Option<Event> {
        let kind = match to {
            _ if from == to => return None,
            Health::Healthy => Kind::HealthUp,
            Health::Unhealthy => Kind::HealthDown,
            // Only a process start sets Starting, and that is its own event.
            Health::Starting => return None,
        };
        let mut e = Event::new(kind, &self.name, reason);
        if kind == Kind::HealthDown {
            e = e.failures(failures);
        }
        if let Some(d) = latency {
            e = e.latency(d);
        }
        Some(e)
    }

    /// Record what was noted (none, one or two events).
    pub(super) fn record(&self, events: impl IntoIterator<Item = Option<Event>>) {
        for e in events.into_iter().flatten() {
            self.events.record(e);
        }
    }

    /// The event log this upstream records into.
    pub fn eventlog(&self) -> &std::sync::Arc<crate::eventlog::EventLog> {
        &self.events
    }
}
