//! Scheduled maintenance windows: a target enters maintenance at a wall-clock time in a time
//! zone, for a duration, once or every day or week, and the rules that say when.
//!
//! A window is kept as the operator wrote it (a civil date-time and an IANA zone name), not as
//! a Unix time, so a weekly window at 02:00 Europe/Berlin stays at 02:00 local time across a
//! daylight-saving change: occurrence `k` starts at the civil time `at + k days|weeks`, put into
//! the zone (a time that falls in a spring-forward gap moves forward by the gap; one that occurs
//! twice in autumn takes the first, jiff's "compatible" rule, as RFC 5545 does). The duration is
//! real elapsed time.
//!
//! Everything here is pure: the zone is resolved by the caller (reading the tz database is
//! I/O) and passed in as a `jiff::tz::TimeZone`, and `now` is an argument.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use serde::{Deserialize, Serialize};

use super::maintenance::{InvalidInput, MAX_TIME_MS, Target, clean_text};

/// Longest window (30 days, the longest maintenance estimate accepted).
pub const MAX_DURATION_SECS: u64 = 30 * 24 * 3600;
/// Longest warning lead time (7 days).
pub const MAX_WARN_SECS: u64 = 7 * 24 * 3600;
/// Lead time of the warning when the operator names none (one hour).
pub const DEFAULT_WARN_SECS: u64 = 3600;
/// Most windows kept at once.
pub const MAX_WINDOWS: usize = 64;

/// How often a window comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Every {
    Day,
    Week,
}

impl Every {
    /// `day`/`daily` or `week`/`weekly` (any case).
    pub fn parse(s: &str) -> Result<Every, InvalidInput> {
        match s.trim().to_ascii_lowercase().as_str() {
            "day" | "daily" => Ok(Every::Day),
            "week" | "weekly" => Ok(Every::Week),
            other => Err(bad(
                "every",
                format!("{other:?} is not a repetition; use day or week"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Every::Day => "day",
            Every::Week => "week",
        }
    }

    fn days(self) -> i64 {
        match self {
            Every::Day => 1,
            Every::Week => 7,
        }
    }
}

/// One scheduled window, as persisted in `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Assigned by kinfrad, never reused while the window exists.
    pub id: u64,
    pub target: Target,
    /// The first occurrence's start, wall-clock time in `tz` (`YYYY-MM-DDTHH:MM:SS`).
    pub at: String,
    /// IANA time zone name.
    pub tz: String,
    pub duration_secs: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<Every>,
    /// How long before a start the warning shows (0: none).
    #[serde(default)]
    pub warn_secs: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue: Option<String>,
    /// The start (Unix ms) of the occurrence this window entered and has not left yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entered_ms: Option<u64>,
}

/// One occurrence of a window: `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrence {
    pub start_ms: u64,
    pub end_ms: u64,
}

impl Occurrence {
    pub fn is_active_at(&self, now_ms: u64) -> bool {
        self.start_ms <= now_ms && now_ms < self.end_ms
    }
}

/// What the timer must do for one window at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Due {
    /// Leave the maintenance the window entered (its occurrence is over).
    pub exit: bool,
    /// Enter maintenance for this occurrence.
    pub enter: Option<Occurrence>,
    /// The window has no occurrence left: forget it.
    pub finished: bool,
}

fn bad(field: &'static str, message: impl Into<String>) -> InvalidInput {
    InvalidInput {
        field,
        message: message.into(),
    }
}

/// Parse `--at`: a civil date-time (`2026-12-24T02:00`, seconds optional; also with a space)
/// read in `tz`, or an RFC 3339 time with an offset (`2026-12-24T01:00:00Z`), converted to
/// `tz`'s wall-clock time. Answers the civil time in `tz`.
pub fn parse_at(s: &str, tz: &TimeZone) -> Result<DateTime, InvalidInput> {
    let s = s.trim();
    if let Ok(dt) = s.parse::<DateTime>() {
        return Ok(dt);
    }
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Ok(tz.to_datetime(ts));
    }
    Err(bad(
        "at",
        format!(
            "{s:?} is not a date and time; write 2026-12-24T02:00 (in the --tz zone) or an RFC 3339 time such as 2026-12-24T01:00:00Z"
        ),
    ))
}

/// The Unix ms of civil time `dt` in `tz` (a time in a gap moves forward, a repeated one takes
/// the first).
fn to_ms(dt: DateTime, tz: &TimeZone) -> Option<u64> {
    let ts = tz.to_ambiguous_timestamp(dt).compatible().ok()?;
    u64::try_from(ts.as_millisecond()).ok()
}

impl Window {
    /// A new window, checked: `at` in `tz` must start in the future (`now_ms`), the duration
    /// must be positive (and shorter than the repetition), the texts clean.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u64,
        target: Target,
        at: DateTime,
        tz: (&str, &TimeZone),
        duration_secs: u64,
        every: Option<Every>,
        warn_secs: u64,
        message: Option<String>,
        issue: Option<String>,
        now_ms: u64,
    ) -> Result<Window, InvalidInput> {
        let w = Window {
            id,
            target,
            at: at.strftime("%Y-%m-%dT%H:%M:%S").to_string(),
            tz: tz.0.to_string(),
            duration_secs,
            every,
            warn_secs,
            message: message
                .map(|m| clean_text("message", &m))
                .transpose()?
                .filter(|m| !m.is_empty()),
            issue: issue
                .map(|m| clean_text("issue", &m))
                .transpose()?
                .filter(|m| !m.is_empty()),
            entered_ms: None,
        };
        w.check_shape()?;
        let start = w
            .start_of(tz.1, 0)
            .ok_or_else(|| bad("at", format!("{} does not exist in {}", w.at, w.tz)))?;
        if start <= now_ms {
            let ago = (now_ms - start) / 1000;
            return Err(bad(
                "at",
                format!(
                    "{} in {} is in the past ({ago} s ago); a window must start in the future",
                    w.at, w.tz
                ),
            ));
        }
        Ok(w)
    }

    /// The checks that need no time zone (also run on a window read from disk).
    pub fn check_shape(&self) -> Result<(), InvalidInput> {
        self.at
            .parse::<DateTime>()
            .map_err(|_| bad("at", format!("{:?} is not a civil date-time", self.at)))?;
        if self.duration_secs == 0 {
            return Err(bad("duration", "must be longer than 0 s (e.g. 30m or 2h)"));
        }
        if self.duration_secs > MAX_DURATION_SECS {
            return Err(bad(
                "duration",
                format!(
                    "{} s is more than the 30 day maximum ({MAX_DURATION_SECS} s)",
                    self.duration_secs
                ),
            ));
        }
        if let Some(e) = self.every {
            let period = e.days() as u64 * 86_400;
            if self.duration_secs >= period {
                return Err(bad(
                    "duration",
                    format!(
                        "{} s is not shorter than the repetition (every {}: {period} s); windows would overlap",
                        self.duration_secs,
                        e.as_str()
                    ),
                ));
            }
        }
        if self.warn_secs > MAX_WARN_SECS {
            return Err(bad(
                "warn",
                format!(
                    "{} s is more than the 7 day maximum ({MAX_WARN_SECS} s)",
                    self.warn_secs
                ),
            ));
        }
        for (f, t) in [("message", &self.message), ("issue", &self.issue)] {
            if let Some(t) = t {
                clean_text(f, t)?;
            }
        }
        if let Some(e) = self.entered_ms
            && e > MAX_TIME_MS
        {
            return Err(bad(
                "entered_ms",
                format!("{e} is not a time kinfrad writes"),
            ));
        }
        Ok(())
    }

    /// The start (Unix ms) of occurrence `k` (0: the first).
    pub fn start_of(&self, tz: &TimeZone, k: i64) -> Option<u64> {
        let at: DateTime = self.at.parse().ok()?;
        let days = self.every.map_or(0, |e| e.days()).checked_mul(k)?;
        let dt = at.checked_add(Span::new().try_days(days).ok()?).ok()?;
        to_ms(dt, tz).filter(|ms| *ms <= MAX_TIME_MS)
    }

    fn occurrence_k(&self, tz: &TimeZone, k: i64) -> Option<Occurrence> {
        let start_ms = self.start_of(tz, k)?;
        Some(Occurrence {
            start_ms,
            end_ms: start_ms.saturating_add(self.duration_secs * 1000),
        })
    }

    /// The occurrence in progress at `now_ms`, else the next one; `None` when none is left (a
    /// one-off window that has ended).
    pub fn occurrence(&self, tz: &TimeZone, now_ms: u64) -> Option<Occurrence> {
        let first = self.occurrence_k(tz, 0)?;
        let Some(every) = self.every else {
            return (now_ms < first.end_ms).then_some(first);
        };
        if now_ms < first.end_ms {
            return Some(first);
        }
        // An estimate of how many periods have passed (a period is 23 to 25 hours a day across
        // a DST change), one back to be safe; then step forward to the first that has not ended.
        let period_ms = every.days() as u64 * 86_400_000;
        let k0 = i64::try_from(((now_ms - first.start_ms) / period_ms).saturating_sub(1)).ok()?;
        (k0..k0 + 4)
            .map_while(|k| self.occurrence_k(tz, k))
            .find(|o| now_ms < o.end_ms)
    }

    /// Is the window's maintenance due at `now_ms`?
    pub fn is_active_at(&self, tz: &TimeZone, now_ms: u64) -> bool {
        self.occurrence(tz, now_ms)
            .is_some_and(|o| o.is_active_at(now_ms))
    }

    /// What the timer must do at `now_ms`: leave an occurrence that ended (also one that ended
    /// while kinfrad was down), enter one that is in progress and not entered yet, forget a
    /// one-off window that is over. An occurrence that ended while kinfrad was down is never
    /// entered: [`Window::occurrence`] answers only one that has not ended.
    pub fn due(&self, tz: &TimeZone, now_ms: u64) -> Due {
        let mut d = Due::default();
        if let Some(s) = self.entered_ms
            && s.saturating_add(self.duration_secs * 1000) <= now_ms
        {
            d.exit = true;
        }
        match self.occurrence(tz, now_ms) {
            Some(o) if o.is_active_at(now_ms) && self.entered_ms != Some(o.start_ms) => {
                d.enter = Some(o);
            }
            Some(_) => {}
            None => d.finished = true,
        }
        d
    }

    /// Has the window entered maintenance for an occurrence that is not over at `now_ms`? (Its
    /// target must not be left while another window holds it.)
    pub fn holds(&self, now_ms: u64) -> bool {
        self.entered_ms
            .is_some_and(|s| now_ms < s.saturating_add(self.duration_secs * 1000))
    }

    /// When the timer must look again after `now_ms`: the end of the occurrence entered, else
    /// the start of the next one (`None`: nothing left).
    pub fn next_edge(&self, tz: &TimeZone, now_ms: u64) -> Option<u64> {
        let o = self.occurrence(tz, now_ms)?;
        let mut edge = if o.start_ms > now_ms {
            o.start_ms
        } else {
            o.end_ms
        };
        if let Some(s) = self.entered_ms {
            edge = edge.min(s.saturating_add(self.duration_secs * 1000));
        }
        Some(edge)
    }

    /// The next start, when it is within the warning lead time (and not yet begun).
    pub fn warning_at(&self, tz: &TimeZone, now_ms: u64) -> Option<Occurrence> {
        if self.warn_secs == 0 {
            return None;
        }
        let o = self.occurrence(tz, now_ms)?;
        (o.start_ms > now_ms && o.start_ms - now_ms <= self.warn_secs * 1000).then_some(o)
    }
}

/// RFC 3339 (UTC) of a Unix time in ms, for headers and messages.
pub fn rfc3339(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
