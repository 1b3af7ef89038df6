//! The maintenance model: what the operator asked for, validated, and the JSON view of it that
//! `GET /api/maintenance/status` serves.
//!
//! This module is pure: no I/O, no clocks of its own (callers pass `now_ms`), so every rule here is
//! unit-tested directly.
//!
//! The rules each piece of input must pass (text, times, the custom page URL) are in `validate`;
//! what a record covers and which record answers a request in `target`; what is kept for a
//! target's next window in `prepared`. This file holds the record, how a change applies to it,
//! and what it means for `Retry-After`.

mod prepared;
mod target;
#[cfg(test)]
mod tests;
mod validate;

use serde::{Deserialize, Serialize};

use crate::protocol::StatusView;

pub use validate::{
    InvalidInput, MAX_COUNTDOWN_SECS, MAX_TEXT_CHARS, MAX_TIME_MS, MAX_URL_LEN, PageUrl,
    check_eta_ms, clean_text, countdown_to_eta, parse_page_url,
};
use validate::{bad, check_time};

pub use prepared::Prepared;
pub use target::{Target, applying};

/// `Retry-After` when no estimate is known.
pub const DEFAULT_RETRY_AFTER: u64 = 300;
/// `Retry-After` once the estimate has passed.
pub const OVERDUE_RETRY_AFTER: u64 = 30;
/// Message shown when the operator gave none.
pub const DEFAULT_MESSAGE: &str = "Scheduled maintenance in progress";

/// Persisted maintenance record: everything needed to show the same page after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Maintenance {
    pub message: String,
    #[serde(default)]
    pub current_issue: String,
    pub start_time_ms: u64,
    #[serde(default)]
    pub estimated_completion_ms: Option<u64>,
    #[serde(default)]
    pub page_url: Option<String>,
    pub target: Target,
    #[serde(default)]
    pub hits: u64,
}

/// A validated change requested by an operator (all fields optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    pub message: Option<String>,
    pub current_issue: Option<String>,
    /// `Some(None)` clears the estimate.
    pub eta_ms: Option<Option<u64>>,
    /// The countdown (seconds) `eta_ms` was computed from, when it was given as one: a change
    /// kept for the next window counts from then.
    pub countdown_secs: Option<u64>,
    /// `Some(None)` switches back to the default page.
    pub page_url: Option<Option<String>>,
}

impl Maintenance {
    /// Check a record that did not come through `begin`/`apply` (one read from disk): every
    /// field must be one an operator could have entered, so nothing downstream meets a value it
    /// cannot render or count with.
    pub fn check(&self) -> Result<(), InvalidInput> {
        clean_text("message", &self.message)?;
        clean_text("current_issue", &self.current_issue)?;
        check_time("start_time_ms", self.start_time_ms)?;
        if let Some(eta) = self.estimated_completion_ms {
            check_time("estimated_completion_ms", eta)?;
        }
        if let Some(u) = &self.page_url {
            parse_page_url(u).map_err(|e| bad("page_url", e.message))?;
        }
        // `target` is checked by `Target::parse` when it is deserialized.
        Ok(())
    }

    /// Start global maintenance with `change` applied to defaults.
    pub fn begin(change: Change, now_ms: u64) -> Maintenance {
        Maintenance::begin_for(Target::All, change, now_ms)
    }

    /// Start maintenance of `target` with `change` applied to defaults.
    pub fn begin_for(target: Target, change: Change, now_ms: u64) -> Maintenance {
        let mut m = Maintenance {
            message: DEFAULT_MESSAGE.to_string(),
            current_issue: String::new(),
            start_time_ms: now_ms,
            estimated_completion_ms: None,
            page_url: None,
            target,
            hits: 0,
        };
        m.apply(change);
        m
    }

    /// Apply an operator's change; start time and hits are kept.
    pub fn apply(&mut self, change: Change) {
        if let Some(msg) = change.message {
            self.message = if msg.is_empty() {
                DEFAULT_MESSAGE.to_string()
            } else {
                msg
            };
        }
        if let Some(issue) = change.current_issue {
            self.current_issue = issue;
        }
        if let Some(eta) = change.eta_ms {
            self.estimated_completion_ms = eta;
        }
        if let Some(url) = change.page_url {
            self.page_url = url;
        }
    }

    /// Whole seconds left until the estimate (0 once passed); `None` without an estimate.
    pub fn countdown_secs(&self, now_ms: u64) -> Option<u64> {
        self.estimated_completion_ms
            .map(|eta| eta.saturating_sub(now_ms).div_ceil(1000))
    }

    /// `Retry-After` seconds: time to the estimate, 300 without one, 30 once it has passed.
    pub fn retry_after_secs(&self, now_ms: u64) -> u64 {
        match self.countdown_secs(now_ms) {
            None => DEFAULT_RETRY_AFTER,
            Some(0) => OVERDUE_RETRY_AFTER,
            Some(s) => s,
        }
    }
}

/// What `GET /api/maintenance/status` and kinfractl show of `m` (None: not in maintenance) at
/// `now_ms`, with the page's `hits`.
pub fn status_view(m: Option<&Maintenance>, hits: u64, now_ms: u64) -> StatusView {
    match m {
        None => StatusView {
            is_active: false,
            message: None,
            current_issue: None,
            countdown: None,
            start_time: None,
            estimated_completion: None,
            last_broadcast: None,
            maintenance_page_url: None,
            target: None,
            hits,
            retry_after: None,
            routes: Vec::new(),
            prepared: false,
        },
        Some(m) => {
            let cd = m.countdown_secs(now_ms);
            StatusView {
                is_active: true,
                message: Some(m.message.clone()),
                current_issue: Some(m.current_issue.clone()),
                countdown: cd,
                start_time: Some(m.start_time_ms),
                estimated_completion: m.estimated_completion_ms,
                last_broadcast: cd,
                maintenance_page_url: m.page_url.clone(),
                target: Some(m.target.to_string()),
                hits,
                retry_after: Some(m.retry_after_secs(now_ms)),
                routes: Vec::new(),
                prepared: false,
            }
        }
    }
}

/// What the status API shows of a target that is not in maintenance but has settings stored
/// for its next window.
pub fn prepared_view(p: &Prepared, now_ms: u64) -> StatusView {
    StatusView {
        is_active: false,
        message: p.message.clone(),
        current_issue: p.current_issue.clone(),
        countdown: p.countdown_at(now_ms),
        start_time: None,
        estimated_completion: p.estimated_completion_ms,
        last_broadcast: None,
        maintenance_page_url: p.page_url.clone(),
        target: Some(p.target.to_string()),
        hits: 0,
        retry_after: None,
        routes: Vec::new(),
        prepared: true,
    }
}
