//! Drains: an operator takes services out of rotation gradually before a deploy stops them
//! (`kinfractl drain start|stop|status|wait`, `/api/kinfra/drain`).
//!
//! While a drain is set, the request path asks [`App::drain_check`] after routing and
//! maintenance: one atomic load when no drain is set; otherwise the rule of
//! [`crate::model::drain`] with a draw from a per-thread generator (no lock, no system call).
//! Refusals are counted per route, reset when a drain starts, and persisted with the drain in
//! `state.json` (every few seconds while they move, and with every other state write).
//!
//! A drain is *drained* once its time is over and no request (or upgraded connection) is in
//! flight on its services; a watch task per drain finds that moment and announces it (the
//! `Phase` watch that `drain wait` follows, and `App::publish`, which wakes the dashboard's
//! event hub). A drained drain stays set, refusing every request on its services, until it is
//! stopped. A drain restored from `state.json` resumes with its own start time and duration; one
//! whose end passed while kinfrad was down is drained at once (nothing can be in flight in a
//! fresh process), so a deploy script waiting across a restart still gets its answer.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::eventlog::{Event, Kind};
use crate::model::drain::DrainTarget;
use crate::model::drain::{self, Drain};
use crate::model::routes::Route;
use crate::protocol::{DrainReport, ErrorCode};
use crate::upstream::Upstream;

use super::{App, OpError, Services, now_ms, write_state};

mod active;

pub(super) use active::Drains;
use active::draw;
pub use active::{ActiveDrain, Phase};

/// How often the watch looks at the requests in flight once a drain's time is over. It must
/// see none twice in a row: a request admitted just before the end is counted within
/// microseconds, long before the second look.
const SETTLE_POLL: Duration = Duration::from_millis(25);
/// Longest sleep of the watch before the end (the wall clock may be set meanwhile).
const MAX_NAP: Duration = Duration::from_secs(1);

impl App {
    /// The request path's question, after routing and maintenance: is this request refused by
    /// a drain? `Some`: answer it with the drain's refusal (counted); `None`: serve it. One
    /// atomic load while no drain is set.
    #[inline]
    pub fn drain_check(&self, route: &Route<Upstream>) -> Option<Arc<ActiveDrain>> {
        if !self.drain.on.load(Ordering::Acquire) {
            return None;
        }
        self.drain_decide(route)
    }

    #[cold]
    fn drain_decide(&self, route: &Route<Upstream>) -> Option<Arc<ActiveDrain>> {
        let guard = self.drain.current.load();
        let cur = guard.as_ref()?;
        if !cur.covers(&route.target.name) || !cur.record.rejects(now_ms(), draw()) {
            return None;
        }
        cur.count(route);
        Some(cur.clone())
    }

    /// The drain in effect, if any.
    pub fn drain_current(&self) -> Option<Arc<ActiveDrain>> {
        self.drain.current.load_full()
    }

    /// The drain's record for `state.json` (with its counters), if one is set.
    pub(super) fn drain_record(&self) -> Option<Drain> {
        self.drain.current.load().as_ref().map(|a| a.to_record())
    }

    /// The id of the drain, when it is drained (for the `drained` event).
    pub fn drained_id(&self) -> Option<u64> {
        let now = *self.drain.phase.borrow();
        match now {
            Phase::Drained(id) => Some(id),
            _ => None,
        }
    }

    /// Start a drain of `target` (`ALL` when `None`) over `duration_ms`, replacing one already
    /// set (its counters start again at zero). Persisted before it takes effect.
    pub async fn drain_start(
        self: &Arc<Self>,
        target: Option<&str>,
        duration_ms: u64,
    ) -> Result<DrainReport, OpError> {
        let target = self.drain_target(target)?;
        let duration_ms = drain::check_duration_ms(duration_ms)?;
        let record = Drain::begin(target, duration_ms, now_ms())?;
        self.drain_begin(record).await
    }

    /// Set `record` as the drain in effect (its start may lie in the past: a fleet's drain
    /// applied late), replacing one already set. Persisted before it takes effect.
    pub(super) async fn drain_begin(
        self: &Arc<Self>,
        record: Drain,
    ) -> Result<DrainReport, OpError> {
        let duration_ms = record.duration_ms;
        let store = self.store.lock().await;
        let html = self
            .pages
            .load()
            .render_drain(&record)
            .map_err(|e| OpError::new(ErrorCode::Internal, e))?;
        let id = self.drain.ids.fetch_add(1, Ordering::Relaxed) + 1;
        let active = Arc::new(ActiveDrain::new(record, id, html, &self.services.load()));
        let state = self.persisted_state(
            self.maint_to_persist(),
            self.stopped_list(),
            Some(active.to_record()),
        );
        write_state(&store, state).await?;
        let replaced = self.drain.current.load().is_some();
        self.drain.set(Some(active.clone()));
        drop(store);
        tokio::spawn(watch_drain(self.clone(), id));
        let over = crate::protocol::fmt::human_secs(duration_ms / 1000);
        let why = if replaced {
            format!("over {over}, replacing the drain that ran")
        } else {
            format!("over {over}")
        };
        self.eventlog.record(Event::new(
            Kind::DrainStarted,
            active.record.target.to_string(),
            why,
        ));
        self.publish();
        Ok(self.drain_report())
    }

    /// Stop the drain: every request passes again (a no-op success when none is set). The
    /// report says what the stopped drain refused.
    pub async fn drain_stop(&self) -> Result<DrainReport, OpError> {
        let store = self.store.lock().await;
        let Some(cur) = self.drain.current.load_full() else {
            return Ok(DrainReport::default());
        };
        let state = self.persisted_state(self.maint_to_persist(), self.stopped_list(), None);
        write_state(&store, state).await?;
        self.drain.set(None);
        drop(store);
        let rejected = cur.rejected_total();
        let was = if cur.drained_at().is_some() {
            "drained"
        } else {
            "not drained yet"
        };
        self.eventlog.record(Event::new(
            Kind::DrainStopped,
            cur.record.target.to_string(),
            format!("stopped ({was}); {rejected} requests refused"),
        ));
        self.publish();
        Ok(DrainReport {
            rejected,
            ..DrainReport::default()
        })
    }

    /// Wait until the drain is drained (following a drain restarted meanwhile). Refused when
    /// none is set, when it is stopped first, and when kinfrad stops.
    pub async fn drain_wait(&self) -> Result<DrainReport, OpError> {
        let mut phase = self.drain.phase.subscribe();
        let mut closing = self.events().closing();
        if *phase.borrow_and_update() == Phase::Idle {
            return Err(OpError::new(
                ErrorCode::NotDraining,
                "no drain is running; start one with kinfractl drain start",
            ));
        }
        let stopping = || {
            OpError::new(
                ErrorCode::ShuttingDown,
                "kinfrad is stopping; the drain was not over yet",
            )
        };
        loop {
            let now = *phase.borrow_and_update();
            match now {
                Phase::Drained(_) => return Ok(self.drain_report()),
                Phase::Idle => {
                    return Err(OpError::new(
                        ErrorCode::DrainStopped,
                        "the drain was stopped before it was drained",
                    ));
                }
                Phase::Draining(_) => {}
            }
            if *closing.borrow_and_update() {
                return Err(stopping());
            }
            tokio::select! {
                r = phase.changed() => if r.is_err() { return Err(stopping()) },
                r = closing.changed() => if r.is_err() { return Err(stopping()) },
            }
        }
    }

    /// The drain as the CLI and the API show it (inactive when none is set).
    pub fn drain_report(&self) -> DrainReport {
        let Some(cur) = self.drain.current.load_full() else {
            return DrainReport::default();
        };
        let now = now_ms();
        let svc = self.services.load();
        let d = &cur.record;
        let progress = d.progress(now);
        DrainReport {
            active: true,
            target: Some(d.target.to_string()),
            services: svc
                .list
                .iter()
                .filter(|u| cur.covers(&u.name))
                .map(|u| u.name.clone())
                .collect(),
            start_time: Some(d.start_ms),
            duration_ms: Some(d.duration_ms),
            end_time: Some(d.end_ms()),
            progress,
            remaining_ms: d.remaining_ms(now),
            rejection_probability: drain::rejection_probability(progress),
            rejected: cur.rejected_total(),
            in_flight: in_flight(&svc, &cur),
            drained: cur.drained_at().is_some(),
            drained_at: cur.drained_at(),
        }
    }

    /// Persist the refusal counters if they moved (called periodically and at shutdown).
    pub async fn flush_drain(&self) {
        let Some(cur) = self.drain.current.load_full() else {
            return;
        };
        let total = cur.rejected_total();
        if total == cur.persisted.load(Ordering::Relaxed) {
            return;
        }
        let store = self.store.lock().await;
        // Stopped or replaced meanwhile: that write carried what there was.
        if !self
            .drain
            .current
            .load()
            .as_ref()
            .is_some_and(|a| Arc::ptr_eq(a, &cur))
        {
            return;
        }
        let state = self.persisted_state(
            self.maint_to_persist(),
            self.stopped_list(),
            Some(cur.to_record()),
        );
        match write_state(&store, state).await {
            Ok(()) => cur.persisted.store(total, Ordering::Relaxed),
            Err(e) => tracing::warn!(error = %e.message, "could not persist the drain's counters"),
        }
    }

    /// Resume the watch of a drain restored from `state.json` (once, at startup).
    pub fn resume_drain(self: &Arc<Self>) {
        if let Some(cur) = self.drain.current.load_full() {
            tracing::info!(
                target_services = %cur.record.target,
                end = %crate::protocol::fmt::iso(cur.record.end_ms()),
                "drain resumed from the state file"
            );
            tokio::spawn(watch_drain(self.clone(), cur.id));
        }
    }

    /// The maintenance record as it stands, for a state write made by a drain operation.
    fn maint_to_persist(&self) -> crate::state::MaintState {
        self.maint_snapshot()
    }

    /// `ALL` (also for `None` or ""), or service names that are configured.
    pub(super) fn drain_target(&self, t: Option<&str>) -> Result<DrainTarget, OpError> {
        let t = DrainTarget::parse(t.unwrap_or(""))
            .map_err(|m| OpError::new(ErrorCode::InvalidArgument, format!("target: {m}")))?;
        if let DrainTarget::Routes(ids) = &t {
            let svc = self.services.load();
            let unknown: Vec<&str> = ids
                .iter()
                .filter(|id| svc.get(id).is_none())
                .map(String::as_str)
                .collect();
            if !unknown.is_empty() {
                let known: Vec<&str> = svc.list.iter().map(|u| u.name.as_str()).collect();
                return Err(OpError::new(
                    ErrorCode::InvalidArgument,
                    format!(
                        "target: unknown service(s) {} (known: {}; or ALL)",
                        unknown.join(", "),
                        if known.is_empty() {
                            "none configured".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
        }
        Ok(t)
    }
}

/// Requests in flight on the services `cur` covers.
fn in_flight(svc: &Services, cur: &ActiveDrain) -> u64 {
    svc.list
        .iter()
        .filter(|u| cur.covers(&u.name))
        .map(|u| u.in_flight())
        .sum()
}

/// Follow drain `id` until it is drained (then announce it), stopped or replaced.
async fn watch_drain(app: Arc<App>, id: u64) {
    let mut phase = app.drain.phase.subscribe();
    let mut quiet = false;
    loop {
        let cur = match app.drain.current.load_full() {
            Some(c) if c.id == id => c,
            _ => return,
        };
        let now = now_ms();
        let nap = if !cur.record.is_over(now) {
            quiet = false;
            Duration::from_millis(cur.record.remaining_ms(now)).min(MAX_NAP)
        } else if in_flight(&app.services.load(), &cur) == 0 {
            if quiet {
                announce(&app, &cur);
                return;
            }
            quiet = true;
            SETTLE_POLL
        } else {
            quiet = false;
            SETTLE_POLL
        };
        phase.borrow_and_update();
        tokio::select! {
            _ = tokio::time::sleep(nap) => {}
            r = phase.changed() => if r.is_err() { return },
        }
    }
}

fn announce(app: &App, cur: &ActiveDrain) {
    let id = cur.id;
    // Before the phase moves: whoever it wakes reads the time in its report.
    cur.drained_at.store(now_ms().max(1), Ordering::Release);
    let moved = app.drain.phase.send_if_modified(|p| {
        if *p == Phase::Draining(id) {
            *p = Phase::Drained(id);
            true
        } else {
            false
        }
    });
    if !moved {
        return;
    }
    app.eventlog.record(Event::new(
        Kind::DrainFinished,
        cur.record.target.to_string(),
        format!(
            "time over and nothing in flight; {} requests refused",
            cur.rejected_total()
        ),
    ));
    app.publish();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_uniform_enough() {
        let n = 100_000;
        let mut buckets = [0u32; 10];
        for _ in 0..n {
            let d = draw();
            assert!((0.0..1.0).contains(&d), "{d}");
            buckets[(d * 10.0) as usize] += 1;
        }
        for b in buckets {
            assert!((9_000..11_000).contains(&b), "{buckets:?}");
        }
    }
}
