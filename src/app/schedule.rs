//! Scheduled maintenance windows (`kinfractl maint schedule`): adding, listing and cancelling
//! them, and the one timer task that enters and leaves maintenance on time.
//!
//! The timer goes through the same [`App::enter`] and [`App::exit`] an operator uses, on the
//! window's target, with the occurrence's end as the estimate, so `Retry-After` and the page's
//! countdown come from the window. It sleeps until the next edge (a start or an end, at most
//! [`MAX_NAP`] so a wall clock set meanwhile is noticed) or until a window is added or
//! cancelled, then re-plans; it never polls in a loop. Windows are persisted in `state.json`
//! with the occurrence each has entered, so a restart neither enters twice nor forgets to
//! leave; an occurrence that ended while kinfrad was down is never entered (see
//! [`crate::model::schedule`]).
//!
//! The warning before a start is precomputed at each plan ([`App::scheduled_warning`] is one
//! load and a short scan on the request path).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use jiff::tz::TimeZone;
use tokio::sync::{Notify, watch};

use crate::model::maintenance::Target;
use crate::model::routes::RouteSpec;
use crate::model::schedule::{self, DEFAULT_WARN_SECS, Every, MAX_WINDOWS, Window};
use crate::protocol::{ErrorCode, WindowReport};

use super::{App, MaintRequest, OpError, now_ms, write_state};

/// Longest sleep of the timer (the wall clock may be set meanwhile).
pub const MAX_NAP: Duration = Duration::from_secs(60);
/// Shortest sleep between two plans, so a failing step cannot spin.
const MIN_NAP: Duration = Duration::from_millis(250);

/// A start that is within its warning lead time, for the request path.
#[derive(Debug, Clone)]
struct Upcoming {
    target: Target,
    start_ms: u64,
    end_ms: u64,
    warn_from_ms: u64,
}

/// The windows, the timer's wake-up and the precomputed warnings.
pub(super) struct Schedules {
    windows: Mutex<Vec<Window>>,
    next_id: AtomicU64,
    wake: Notify,
    upcoming: ArcSwap<Vec<Upcoming>>,
}

impl Schedules {
    pub(super) fn load(windows: Vec<Window>) -> Schedules {
        let next = windows.iter().map(|w| w.id).max().unwrap_or(0);
        Schedules {
            windows: Mutex::new(windows),
            next_id: AtomicU64::new(next),
            wake: Notify::new(),
            upcoming: ArcSwap::from_pointee(Vec::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Window>> {
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The windows as they stand (for the state file).
    pub(super) fn windows(&self) -> Vec<Window> {
        self.lock().clone()
    }
}

/// What `kinfractl maint schedule` sends.
#[derive(Debug, Clone, Default)]
pub struct ScheduleRequest {
    pub at: String,
    pub duration_secs: u64,
    pub every: Option<String>,
    pub tz: Option<String>,
    pub target: Option<String>,
    pub warn_secs: Option<u64>,
    pub message: Option<String>,
    pub issue: Option<String>,
}

/// The zone named `name` from the system's tz database.
fn zone(name: &str) -> Result<TimeZone, OpError> {
    TimeZone::get(name).map_err(|e| {
        OpError::new(
            ErrorCode::InvalidArgument,
            format!(
                "tz: unknown time zone {name:?} (an IANA name such as Europe/Berlin or UTC): {e}"
            ),
        )
    })
}

/// The machine's local zone and its IANA name.
fn local_zone() -> Result<(String, TimeZone), OpError> {
    let tz = TimeZone::system();
    match tz.iana_name() {
        Some(n) => Ok((n.to_string(), tz.clone())),
        None => Err(OpError::new(
            ErrorCode::InvalidArgument,
            "tz: the machine's local time zone has no IANA name; give one with --tz",
        )),
    }
}

fn report(w: &Window, now: u64) -> WindowReport {
    let next = zone(&w.tz).ok().and_then(|tz| w.occurrence(&tz, now));
    WindowReport {
        id: w.id,
        target: w.target.to_string(),
        at: w.at.clone(),
        tz: w.tz.clone(),
        duration_secs: w.duration_secs,
        every: w.every.map(|e| e.as_str().to_string()),
        warn_secs: w.warn_secs,
        message: w.message.clone(),
        issue: w.issue.clone(),
        next_start: next.map(|o| o.start_ms),
        next_end: next.map(|o| o.end_ms),
        active: w.entered_ms.is_some(),
    }
}

impl App {
    /// Add a window: checked (target known, start in the future, duration positive, zone
    /// known), persisted, then the timer re-plans.
    pub async fn schedule_add(&self, req: ScheduleRequest) -> Result<WindowReport, OpError> {
        let now = now_ms();
        let active = self.maint.load_full();
        let targets = self.targets(req.target.as_deref(), |t| active.find(t).is_some())?;
        let [target] = <[Target; 1]>::try_from(targets).map_err(|_| {
            OpError::new(
                ErrorCode::InvalidArgument,
                "target: a window has one target (schedule one window per target)",
            )
        })?;
        let (tz_name, tz) = match req.tz.as_deref().map(str::trim) {
            Some(n) if !n.is_empty() => (n.to_string(), zone(n)?),
            _ => local_zone()?,
        };
        let every = req.every.as_deref().map(Every::parse).transpose()?;
        let at = schedule::parse_at(&req.at, &tz)?;
        let store = self.store.lock().await;
        if self.schedule.lock().len() >= MAX_WINDOWS {
            return Err(OpError::new(
                ErrorCode::InvalidArgument,
                format!("at most {MAX_WINDOWS} windows may be scheduled; cancel one first"),
            ));
        }
        let id = self.schedule.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let w = Window::new(
            id,
            target,
            at,
            (&tz_name, &tz),
            req.duration_secs,
            every,
            req.warn_secs.unwrap_or(DEFAULT_WARN_SECS),
            req.message,
            req.issue,
            now,
        )?;
        self.schedule.lock().push(w.clone());
        let state = self.persisted(self.maint_snapshot(), self.stopped_list());
        if let Err(e) = write_state(&store, state).await {
            self.schedule.lock().retain(|x| x.id != id);
            return Err(e);
        }
        drop(store);
        let r = report(&w, now);
        tracing::info!(id, target_routes = %w.target, at = %w.at, tz = %w.tz, duration_secs = w.duration_secs, every = ?w.every, "maintenance window scheduled");
        // The warnings hold from the answer on; the timer re-plans its sleep.
        self.schedule_plan(now_ms());
        self.schedule.wake.notify_one();
        self.publish();
        Ok(r)
    }

    /// Every window, in the order they were scheduled.
    pub fn schedule_list(&self) -> Vec<WindowReport> {
        let now = now_ms();
        self.schedule
            .lock()
            .iter()
            .map(|w| report(w, now))
            .collect()
    }

    /// Forget window `id`. One that is in progress leaves the maintenance it entered.
    pub async fn schedule_cancel(&self, id: u64) -> Result<WindowReport, OpError> {
        let now = now_ms();
        let store = self.store.lock().await;
        let Some(w) = self.schedule.lock().iter().find(|w| w.id == id).cloned() else {
            return Err(OpError::new(
                ErrorCode::InvalidArgument,
                format!("id: no scheduled window {id} (see kinfractl maint schedule list)"),
            ));
        };
        self.schedule.lock().retain(|x| x.id != id);
        let state = self.persisted(self.maint_snapshot(), self.stopped_list());
        if let Err(e) = write_state(&store, state).await {
            self.schedule.lock().push(w);
            return Err(e);
        }
        drop(store);
        tracing::info!(id, target_routes = %w.target, "maintenance window cancelled");
        let held = self
            .schedule
            .lock()
            .iter()
            .any(|o| o.target == w.target && o.holds(now));
        if w.holds(now)
            && !held
            && let Err(e) = self.exit(Some(&w.target.to_string())).await
        {
            tracing::warn!(id, error = %e.message, "could not leave the cancelled window's maintenance");
        }
        self.schedule_plan(now_ms());
        self.schedule.wake.notify_one();
        self.publish();
        Ok(report(&w, now))
    }

    /// The start (Unix ms) of the next window that covers a request routed to `route` of a
    /// service (`None`: unrouted) and is within its warning lead time now. One load, and a clock
    /// read only while some window is ahead.
    pub fn scheduled_warning(&self, route: Option<(&RouteSpec, &str)>) -> Option<u64> {
        let up = self.schedule.upcoming.load();
        if up.is_empty() {
            return None;
        }
        let now = now_ms();
        up.iter()
            .filter(|u| u.warn_from_ms <= now && now < u.start_ms)
            .filter(|u| u.target.rank(route).is_some())
            .map(|u| u.start_ms)
            .min()
    }

    /// The next window (start, end, target) within its warning lead time whose target `pick`
    /// accepts (for the maintenance status API).
    pub fn scheduled_for(&self, pick: impl Fn(&Target) -> bool) -> Option<(u64, u64, String)> {
        let up = self.schedule.upcoming.load();
        let now = now_ms();
        up.iter()
            .filter(|u| u.warn_from_ms <= now && now < u.start_ms && pick(&u.target))
            .min_by_key(|u| u.start_ms)
            .map(|u| (u.start_ms, u.end_ms, u.target.to_string()))
    }

    /// Start the timer task; it ends when `stop` turns true.
    pub fn start_schedule(self: &Arc<Self>, stop: watch::Receiver<bool>) {
        // Warnings hold from the first request on.
        self.schedule_plan(now_ms());
        tokio::spawn(run(self.clone(), stop));
    }

    /// Do what is due at `now` for every window: leave, enter, forget; persist the marks.
    async fn schedule_step(&self, now: u64) {
        let windows = self.schedule.windows();
        for w in windows {
            let tz = match zone(&w.tz) {
                Ok(tz) => tz,
                Err(e) => {
                    tracing::warn!(id = w.id, error = %e.message, "scheduled window skipped");
                    continue;
                }
            };
            let due = w.due(&tz, now);
            if !due.exit && due.enter.is_none() && !due.finished {
                continue;
            }
            let target = w.target.to_string();
            // Another window that holds the same target now keeps it in maintenance.
            let held = |by: &[Window]| {
                by.iter()
                    .any(|o| o.id != w.id && o.target == w.target && o.holds(now))
            };
            if due.exit && held(&self.schedule.lock()) {
                tracing::info!(id = w.id, target_routes = %target, "scheduled window ended; another window goes on");
            } else if due.exit {
                match self.exit(Some(&target)).await {
                    Ok(_) => {
                        tracing::info!(id = w.id, target_routes = %target, "scheduled window ended")
                    }
                    Err(e) => {
                        tracing::warn!(id = w.id, error = %e.message, "scheduled window could not leave maintenance")
                    }
                }
            }
            if let Some(o) = due.enter {
                let req = MaintRequest {
                    message: w.message.clone(),
                    issue: w.issue.clone(),
                    eta_ms: i64::try_from(o.end_ms).ok(),
                    target: Some(target.clone()),
                    ..MaintRequest::default()
                };
                match self.enter(req).await {
                    Ok(_) => {
                        tracing::info!(id = w.id, target_routes = %target, end = %schedule::rfc3339(o.end_ms), "scheduled window started")
                    }
                    Err(e) => {
                        tracing::warn!(id = w.id, error = %e.message, "scheduled window could not enter maintenance")
                    }
                }
            } else if due.finished && w.entered_ms.is_none() {
                tracing::info!(id = w.id, target_routes = %target, "scheduled window is over (it ended while kinfrad was not running); not entered");
            }
            let store = self.store.lock().await;
            {
                let mut list = self.schedule.lock();
                if due.finished {
                    list.retain(|x| x.id != w.id);
                } else if let Some(x) = list.iter_mut().find(|x| x.id == w.id) {
                    x.entered_ms = due.enter.map(|o| o.start_ms);
                }
            }
            let state = self.persisted(self.maint_snapshot(), self.stopped_list());
            if let Err(e) = write_state(&store, state).await {
                tracing::warn!(id = w.id, error = %e.message, "could not persist the scheduled window's state");
            }
        }
    }

    /// The next edge after `now` (Unix ms) and the warnings in effect from now on.
    fn schedule_plan(&self, now: u64) -> Option<u64> {
        let windows = self.schedule.windows();
        let mut next: Option<u64> = None;
        let mut upcoming = Vec::new();
        for w in &windows {
            let Ok(tz) = zone(&w.tz) else { continue };
            if let Some(e) = w.next_edge(&tz, now) {
                next = Some(next.map_or(e, |n| n.min(e)));
            }
            if let Some(o) = w.occurrence(&tz, now)
                && o.start_ms > now
                && w.warn_secs > 0
            {
                // The request path compares with its own clock: no wake-up is needed when the
                // lead time begins.
                let warn_from_ms = o.start_ms.saturating_sub(w.warn_secs * 1000);
                upcoming.push(Upcoming {
                    target: w.target.clone(),
                    start_ms: o.start_ms,
                    end_ms: o.end_ms,
                    warn_from_ms,
                });
            }
        }
        self.schedule.upcoming.store(Arc::new(upcoming));
        next
    }
}

/// The timer: do what is due, plan, sleep until the next edge or a change.
async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    loop {
        let now = now_ms();
        app.schedule_step(now).await;
        let now = now_ms();
        let next = app.schedule_plan(now);
        let nap = next
            .map(|e| Duration::from_millis(e.saturating_sub(now)))
            .unwrap_or(MAX_NAP)
            .clamp(MIN_NAP, MAX_NAP);
        tokio::select! {
            _ = tokio::time::sleep(nap) => {}
            _ = app.schedule.wake.notified() => {}
            _ = crate::stop::stopped(&mut stop) => return,
        }
    }
}
