//! What the control protocol says about scheduled maintenance windows: one window as kinfrad
//! keeps it, with its next (or current) occurrence, for `kinfractl maint schedule` and its
//! `list` and `cancel`.

use serde::{Deserialize, Serialize};

/// One scheduled window.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WindowReport {
    /// Names the window for `cancel`.
    pub id: u64,
    /// `ALL`, a service name or a route spec.
    pub target: String,
    /// The first occurrence's wall-clock start in `tz` (`YYYY-MM-DDTHH:MM:SS`).
    pub at: String,
    /// IANA time zone name.
    pub tz: String,
    pub duration_secs: u64,
    /// `day` or `week`; absent for a one-off window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// How long before a start the warning shows (0: none).
    #[serde(default)]
    pub warn_secs: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue: Option<String>,
    /// The occurrence in progress or the next one (Unix ms); absent when none is left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_start: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_end: Option<u64>,
    /// The window has entered maintenance and not left it yet.
    #[serde(default)]
    pub active: bool,
}
