//! The event log as the front ends read it: a page of events after a cursor (for the control
//! socket cut to one frame), and the wait of a follower (`kinfractl events -f`) for the next.

use crate::eventlog::{Event, KEEP};
use crate::protocol::{ErrorCode, EventReport, EventsReport};

use super::{App, OpError};

/// An event as the wire carries it.
pub fn event_report(e: &Event) -> EventReport {
    EventReport {
        seq: e.seq,
        time: crate::protocol::fmt::iso(e.at_ms),
        kind: e.kind.as_str().to_string(),
        service: e.service.clone(),
        route: e.route.clone(),
        reason: e.reason.clone(),
        failures: e.failures,
        latency_ms: e.latency_ms,
    }
}

impl App {
    /// The kept events after `after`, oldest first; with `budget`, only as many as fit that
    /// many bytes of JSON (`more` says some were left for the next call).
    pub fn events_report(&self, after: u64, budget: Option<usize>) -> EventsReport {
        let (events, missed) = self.eventlog.since(after, KEEP);
        let total = events.len();
        let mut used = 0usize;
        let mut out = Vec::with_capacity(total);
        for e in &events {
            let r = event_report(e);
            if let Some(b) = budget {
                used = used.saturating_add(
                    serde_json::to_vec(&r)
                        .map(|v| v.len() + 1)
                        .unwrap_or(usize::MAX),
                );
                // At least one always goes (a reason is cut short, so one fits any frame).
                if used > b && !out.is_empty() {
                    break;
                }
            }
            out.push(r);
        }
        EventsReport {
            more: out.len() < total,
            events: out,
            last: self.eventlog.last_seq(),
            missed,
        }
    }

    /// As `events_report`, but when nothing came after `after` yet, wait until something does.
    /// Ends with `shutting_down` when kinfrad stops first.
    pub async fn events_wait(
        &self,
        after: u64,
        budget: Option<usize>,
    ) -> Result<EventsReport, OpError> {
        let mut last = self.eventlog.subscribe();
        let mut closing = self.events().closing();
        loop {
            if *last.borrow_and_update() > after {
                return Ok(self.events_report(after, budget));
            }
            if *closing.borrow_and_update() {
                break;
            }
            tokio::select! {
                r = last.changed() => if r.is_err() { break },
                r = closing.changed() => if r.is_err() { break },
            }
        }
        Err(OpError::new(ErrorCode::ShuttingDown, "kinfrad is stopping"))
    }
}
