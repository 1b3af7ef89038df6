//! What the health API reads of kinfrad itself: the state file's last writability check (run
//! by the daemon's periodic tick, never per request), the last reload's outcome, and whether the
//! first full round of probes has finished (a latch: once done, startup stays done), and the
//! components' last composed answer, reused for `health_cache_ttl` so that monitors polling
//! often cost one composition per interval.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::{App, lock_problems};
use crate::model::health::Component;

/// The components as composed at an instant, for a dashboard reader (slot 1) or anyone (0).
type Composed = [Option<(Instant, Arc<Vec<Component>>)>; 2];

/// The state file's last check: when, how long it took, and the error if it failed.
#[derive(Debug, Clone)]
pub struct StateCheck {
    pub at: SystemTime,
    pub latency: Duration,
    pub error: Option<String>,
}

/// The health API's own bookkeeping in `App`.
#[derive(Debug, Default)]
pub struct HealthBook {
    state: Mutex<Option<StateCheck>>,
    started: AtomicBool,
    composed: Mutex<Composed>,
}

/// kinfrad's own checks as last seen.
#[derive(Debug, Clone)]
pub struct OwnChecks {
    pub listeners: usize,
    /// `None` before the first check.
    pub state: Option<StateCheck>,
    /// The last reload's failure (the previous config still runs), if it failed.
    pub reload_error: Option<String>,
    /// Templates in effect (embedded or overridden).
    pub templates: usize,
}

impl App {
    /// Check that the state file could be written (no write): called at start and on the
    /// daemon's periodic tick. Skipped while a write holds the file (that write tells).
    pub fn check_state_file(&self) {
        let Ok(store) = self.store.try_lock() else {
            return;
        };
        let began = Instant::now();
        let result = store.check_writable();
        drop(store);
        let check = StateCheck {
            at: SystemTime::now(),
            latency: began.elapsed(),
            error: result.err(),
        };
        *self.health.state.lock().unwrap_or_else(|p| p.into_inner()) = Some(check);
    }

    /// kinfrad's own checks, as last recorded.
    pub fn own_checks(&self) -> OwnChecks {
        OwnChecks {
            listeners: self.http_addrs.len(),
            state: self
                .health
                .state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            reload_error: lock_problems(&self.problems).reload.clone(),
            templates: self.pages().sources.len(),
        }
    }

    /// The health API's components for a dashboard reader or not: composed by `make` at most
    /// once per `health_cache_ttl` (every time when it is 0), and afresh after any change
    /// (`publish` and reload forget them). Callers that arrive while one composes wait for its
    /// answer rather than composing again.
    pub fn health_components(
        &self,
        reader: bool,
        make: impl FnOnce() -> Vec<Component>,
    ) -> Arc<Vec<Component>> {
        let ttl = self.config().health_cache_ttl;
        if ttl.is_zero() {
            return Arc::new(make());
        }
        let mut slots = self
            .health
            .composed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let slot = &mut slots[usize::from(reader)];
        if let Some((at, v)) = slot.as_ref()
            && at.elapsed() < ttl
        {
            return v.clone();
        }
        let v = Arc::new(make());
        *slot = Some((Instant::now(), v.clone()));
        v
    }

    /// Forget the composed answers (a reload may change the services or the TTL).
    pub fn forget_health_components(&self) {
        *self
            .health
            .composed
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = [None, None];
    }

    /// Wait until every service kinfrad does not run itself has had its first probe answered,
    /// for at most the longest probe timeout among them (plus a little, at most 2 s): the HTTP
    /// server accepts only then, so that a kinfrad that just (re)started proxies to a healthy
    /// service rather than answering with its loading page while it finds out. Connections
    /// wait in the listening socket's backlog meanwhile. Services kinfrad runs are not waited
    /// for: their processes start anew. A first probe's answer is a published change, so this
    /// waits on the change counter rather than polling.
    pub async fn first_probes(&self) {
        let limit = self
            .services()
            .list
            .iter()
            .filter(|u| u.cfg().process.is_none())
            .map(|u| u.cfg().health.timeout + Duration::from_millis(100))
            .max()
            .unwrap_or_default()
            .min(Duration::from_secs(2));
        let deadline = tokio::time::Instant::now() + limit;
        let mut changed = self.subscribe();
        loop {
            let now = Instant::now();
            let pending = self
                .services()
                .list
                .iter()
                .filter(|u| u.cfg().process.is_none() && !u.reading(now).checked)
                .count();
            if pending == 0 {
                return;
            }
            let woke = tokio::time::timeout_at(deadline, changed.changed()).await;
            if !matches!(woke, Ok(Ok(()))) {
                tracing::info!(
                    pending,
                    "serving before every service's first probe answered"
                );
                return;
            }
        }
    }

    /// Has the first full round of probes finished? `all_checked_now` says whether every
    /// service's state is known now; once it was, this stays true (a service added by a
    /// reload does not send kinfrad back to "starting").
    pub fn startup_done(&self, all_checked_now: bool) -> bool {
        if self.health.started.load(Ordering::Acquire) {
            return true;
        }
        if all_checked_now {
            self.health.started.store(true, Ordering::Release);
        }
        all_checked_now
    }
}
