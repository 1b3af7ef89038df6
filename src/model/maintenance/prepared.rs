//! What an operator set for a target while it was not in maintenance: kept for the next time
//! that target enters it. Scripts written for the status API set the message and countdown
//! first and start the maintenance window after; nothing of that is lost, and nobody is cut off
//! by a message update.
//!
//! A countdown is kept as seconds and counts from the moment maintenance is entered; an absolute
//! estimate stays absolute (and is dropped at entry if it has passed by then).

use serde::{Deserialize, Serialize};

use super::validate::{bad, check_time};
use super::{Change, InvalidInput, MAX_COUNTDOWN_SECS, Target, clean_text, parse_page_url};

/// A change stored for `target`'s next maintenance window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepared {
    pub target: Target,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_issue: Option<String>,
    /// Seconds from entering maintenance to the estimate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub countdown_secs: Option<u64>,
    /// An absolute estimate (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_completion_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_url: Option<String>,
}

impl Prepared {
    pub fn new(target: Target) -> Prepared {
        Prepared {
            target,
            message: None,
            current_issue: None,
            countdown_secs: None,
            estimated_completion_ms: None,
            page_url: None,
        }
    }

    /// Take in a validated change: what it sets replaces what was stored.
    pub fn absorb(&mut self, c: &Change) {
        if let Some(m) = &c.message {
            self.message = Some(m.clone());
        }
        if let Some(i) = &c.current_issue {
            self.current_issue = Some(i.clone());
        }
        match (c.countdown_secs, c.eta_ms) {
            (Some(s), _) if s > 0 => {
                self.countdown_secs = Some(s);
                self.estimated_completion_ms = None;
            }
            (_, Some(Some(eta))) => {
                self.countdown_secs = None;
                self.estimated_completion_ms = Some(eta);
            }
            (Some(_), _) | (_, Some(None)) => {
                self.countdown_secs = None;
                self.estimated_completion_ms = None;
            }
            (None, None) => {}
        }
        if let Some(u) = &c.page_url {
            self.page_url = u.clone();
        }
    }

    /// The change to apply when maintenance is entered at `now_ms`.
    pub fn to_change(&self, now_ms: u64) -> Change {
        let eta = match (self.countdown_secs, self.estimated_completion_ms) {
            (Some(s), _) => Some(Some(now_ms + s * 1000)),
            (None, Some(e)) if e > now_ms => Some(Some(e)),
            _ => None,
        };
        Change {
            message: self.message.clone(),
            current_issue: self.current_issue.clone(),
            eta_ms: eta,
            countdown_secs: self.countdown_secs,
            page_url: self.page_url.clone().map(Some),
        }
    }

    /// Seconds the estimate lies ahead: the stored countdown, or the time to the absolute
    /// estimate at `now_ms` (0 once passed).
    pub fn countdown_at(&self, now_ms: u64) -> Option<u64> {
        match (self.countdown_secs, self.estimated_completion_ms) {
            (Some(s), _) => Some(s),
            (None, Some(e)) => Some(e.saturating_sub(now_ms).div_ceil(1000)),
            (None, None) => None,
        }
    }

    /// Nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.message.is_none()
            && self.current_issue.is_none()
            && self.countdown_secs.is_none()
            && self.estimated_completion_ms.is_none()
            && self.page_url.is_none()
    }

    /// Check one read from disk, like input.
    pub fn check(&self) -> Result<(), InvalidInput> {
        if let Some(m) = &self.message {
            clean_text("message", m)?;
        }
        if let Some(i) = &self.current_issue {
            clean_text("current_issue", i)?;
        }
        if let Some(s) = self.countdown_secs
            && s > MAX_COUNTDOWN_SECS as u64
        {
            return Err(bad(
                "countdown_secs",
                format!("{s} s is more than the 30 day maximum"),
            ));
        }
        if let Some(e) = self.estimated_completion_ms {
            check_time("estimated_completion_ms", e)?;
        }
        if let Some(u) = &self.page_url {
            parse_page_url(u).map_err(|e| bad("page_url", e.message))?;
        }
        Ok(())
    }
}
