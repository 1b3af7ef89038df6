//! The drain model: taking services out of rotation gradually before a deploy stops them.
//!
//! A drain covers a [`DrainTarget`] (`ALL` or service names) from
//! `start_ms` for `duration_ms`. Its progress is elapsed / duration. Up to half way every request
//! passes; after that a request is refused with a probability rising linearly from 0 at 50 % to
//! 1 at 100 %; from the end on every new request is refused. What is already in flight is never
//! cut: that is the caller's part (it counts requests in flight and calls the drain *drained*
//! once the time is over and that count is zero).
//!
//! Pure: no clock (callers pass `now_ms`), no randomness of its own (the decision takes the
//! random draw as an argument), so every rule here is unit-tested directly.

use serde::{Deserialize, Serialize};

use super::maintenance::{InvalidInput, MAX_TIME_MS};

/// What a drain covers: every service (`ALL`), or a list of service names (`api,web`).
/// Written to the state file as that text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum DrainTarget {
    All,
    Routes(Vec<String>),
}

impl From<DrainTarget> for String {
    fn from(t: DrainTarget) -> String {
        t.to_string()
    }
}

impl TryFrom<String> for DrainTarget {
    type Error = String;
    fn try_from(s: String) -> Result<DrainTarget, String> {
        DrainTarget::parse(&s)
    }
}

impl std::fmt::Display for DrainTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DrainTarget::All => f.write_str("ALL"),
            DrainTarget::Routes(r) => f.write_str(&r.join(",")),
        }
    }
}

impl DrainTarget {
    /// `ALL` (any case) or a comma-separated list of service names.
    pub fn parse(s: &str) -> Result<DrainTarget, String> {
        let s = s.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("all") {
            return Ok(DrainTarget::All);
        }
        let mut ids = Vec::new();
        for id in s.split(',') {
            let id = id.trim();
            if id.is_empty() {
                return Err(format!("target {s:?} has an empty service name"));
            }
            if id.len() > 64
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            {
                return Err(format!(
                    "service name {id:?} may only hold letters, digits, '-', '_' and '.' (64 at most)"
                ));
            }
            if !ids.iter().any(|x| x == id) {
                ids.push(id.to_string());
            }
        }
        Ok(DrainTarget::Routes(ids))
    }

    /// Does the drain cover the service named `id`?
    pub fn covers(&self, id: &str) -> bool {
        match self {
            DrainTarget::All => true,
            DrainTarget::Routes(ids) => ids.iter().any(|x| x == id),
        }
    }
}

/// Longest drain accepted (7 days).
pub const MAX_DURATION_MS: u64 = 7 * 24 * 3600 * 1000;
/// `Retry-After` of a refused request.
pub const RETRY_AFTER_SECS: u64 = 60;
/// Most per-route counters a persisted drain may hold.
pub const MAX_COUNTERS: usize = 4096;

/// Requests a drain refused on one route (`route` is the route as the config writes it; ""
/// for requests on routes that appeared after the drain started).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub service: String,
    pub route: String,
    pub count: u64,
}

/// A drain as the operator started it, with its refusal counters as last persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drain {
    pub target: DrainTarget,
    pub start_ms: u64,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<Rejected>,
}

fn bad(field: &'static str, message: impl Into<String>) -> InvalidInput {
    InvalidInput {
        field,
        message: message.into(),
    }
}

/// Check a requested duration.
pub fn check_duration_ms(duration_ms: u64) -> Result<u64, InvalidInput> {
    if duration_ms > MAX_DURATION_MS {
        return Err(bad(
            "duration",
            format!(
                "{} s is more than the 7 day maximum ({} s)",
                duration_ms / 1000,
                MAX_DURATION_MS / 1000
            ),
        ));
    }
    Ok(duration_ms)
}

impl Drain {
    /// A new drain from `now_ms`, its counters at zero.
    pub fn begin(
        target: DrainTarget,
        duration_ms: u64,
        now_ms: u64,
    ) -> Result<Drain, InvalidInput> {
        Ok(Drain {
            target,
            start_ms: now_ms,
            duration_ms: check_duration_ms(duration_ms)?,
            rejected: Vec::new(),
        })
    }

    /// Check a record that did not come through `begin` (one read from disk).
    pub fn check(&self) -> Result<(), InvalidInput> {
        if self.start_ms > MAX_TIME_MS {
            return Err(bad("start_ms", "is past the year 9999"));
        }
        check_duration_ms(self.duration_ms)?;
        if self.rejected.len() > MAX_COUNTERS {
            return Err(bad(
                "rejected",
                format!("more than {MAX_COUNTERS} counters"),
            ));
        }
        for r in &self.rejected {
            if !super::valid_name(&r.service) {
                return Err(bad(
                    "rejected",
                    format!("{:?} is not a service name", r.service),
                ));
            }
            if r.route.len() > 512 || r.route.chars().any(char::is_control) {
                return Err(bad("rejected", format!("{:?} is not a route", r.route)));
            }
        }
        // `target` is checked by `DrainTarget::parse` when it is deserialized.
        Ok(())
    }

    pub fn end_ms(&self) -> u64 {
        self.start_ms.saturating_add(self.duration_ms)
    }

    /// Elapsed / duration, clamped to 0..=1 (a zero-length drain is over at once).
    pub fn progress(&self, now_ms: u64) -> f64 {
        if now_ms >= self.end_ms() {
            return 1.0;
        }
        if now_ms <= self.start_ms {
            return 0.0;
        }
        ((now_ms - self.start_ms) as f64 / self.duration_ms as f64).clamp(0.0, 1.0)
    }

    /// Milliseconds until the end (0 once over).
    pub fn remaining_ms(&self, now_ms: u64) -> u64 {
        self.end_ms().saturating_sub(now_ms)
    }

    /// The drain's time is over: every new request is refused.
    pub fn is_over(&self, now_ms: u64) -> bool {
        now_ms >= self.end_ms()
    }

    /// Is a new request at `now_ms` refused, given a uniform random `draw` in `[0, 1)`?
    pub fn rejects(&self, now_ms: u64, draw: f64) -> bool {
        rejects(self.progress(now_ms), draw)
    }
}

/// The chance a new request is refused at `progress`: 0 up to one half, then rising linearly
/// to 1 at the end.
pub fn rejection_probability(progress: f64) -> f64 {
    if progress.is_nan() || progress <= 0.5 {
        0.0
    } else if progress >= 1.0 {
        1.0
    } else {
        (progress - 0.5) * 2.0
    }
}

/// Is a request refused at `progress`, given a uniform random `draw` in `[0, 1)`? Never up to
/// half way, always at the end, and in between exactly when the draw falls under the
/// probability.
pub fn rejects(progress: f64, draw: f64) -> bool {
    let p = rejection_probability(progress);
    p >= 1.0 || (p > 0.0 && draw < p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(start: u64, duration: u64) -> Drain {
        Drain::begin(DrainTarget::All, duration, start).expect("valid")
    }

    #[test]
    fn progress_and_remaining() {
        let d = drain(10_000, 4_000);
        assert_eq!(d.end_ms(), 14_000);
        assert_eq!(d.progress(9_000), 0.0);
        assert_eq!(d.progress(10_000), 0.0);
        assert_eq!(d.progress(11_000), 0.25);
        assert_eq!(d.progress(12_000), 0.5);
        assert_eq!(d.progress(14_000), 1.0);
        assert_eq!(d.progress(u64::MAX), 1.0);
        assert_eq!(d.remaining_ms(9_000), 5_000);
        assert_eq!(d.remaining_ms(13_000), 1_000);
        assert_eq!(d.remaining_ms(20_000), 0);
        assert!(!d.is_over(13_999));
        assert!(d.is_over(14_000));
        // A zero-length drain is over at once.
        let z = drain(10_000, 0);
        assert_eq!(z.progress(10_000), 1.0);
        assert!(z.is_over(10_000));
        // A start near the end of time does not overflow.
        let late = Drain {
            target: DrainTarget::All,
            start_ms: u64::MAX - 5,
            duration_ms: 1_000,
            rejected: Vec::new(),
        };
        assert_eq!(late.end_ms(), u64::MAX);
        assert_eq!(late.progress(u64::MAX - 5), 0.0);
    }

    #[test]
    fn the_rejection_curve() {
        assert_eq!(rejection_probability(0.0), 0.0);
        assert_eq!(rejection_probability(0.5), 0.0);
        assert!((rejection_probability(0.75) - 0.5).abs() < 1e-12);
        assert!((rejection_probability(0.6) - 0.2).abs() < 1e-12);
        assert_eq!(rejection_probability(1.0), 1.0);
        assert_eq!(rejection_probability(1.5), 1.0);
        assert_eq!(rejection_probability(f64::NAN), 0.0);
        // Nothing refused up to half way, whatever the draw.
        for p in [0.0, 0.1, 0.49, 0.5] {
            for draw in [0.0, 1e-9, 0.5, 0.999_999] {
                assert!(!rejects(p, draw), "{p} {draw}");
            }
        }
        // Everything refused at and after the end, whatever the draw.
        for p in [1.0, 2.0] {
            for draw in [0.0, 0.5, 0.999_999_999] {
                assert!(rejects(p, draw), "{p} {draw}");
            }
        }
        // In between: exactly the draws under the probability.
        assert!(rejects(0.75, 0.49));
        assert!(!rejects(0.75, 0.5));
        assert!(rejects(0.9, 0.79));
        assert!(!rejects(0.9, 0.81));
        // Over evenly spread draws the refused share is the probability.
        for p in [0.55, 0.7, 0.85, 0.95] {
            let n = 10_000;
            let refused = (0..n)
                .filter(|i| rejects(p, (*i as f64 + 0.5) / n as f64))
                .count();
            let want = rejection_probability(p) * n as f64;
            assert!(
                (refused as f64 - want).abs() <= 1.0,
                "{p}: {refused} vs {want}"
            );
        }
        let d = drain(0, 1_000);
        assert!(!d.rejects(400, 0.0));
        assert!(d.rejects(1_000, 0.999));
    }

    #[test]
    fn limits_and_checks() {
        assert!(Drain::begin(DrainTarget::All, MAX_DURATION_MS, 0).is_ok());
        let e = Drain::begin(DrainTarget::All, MAX_DURATION_MS + 1, 0).expect_err("too long");
        assert_eq!(e.field, "duration");
        let mut d = drain(1_750_000_000_000, 60_000);
        assert!(d.check().is_ok());
        d.rejected.push(Rejected {
            service: "api".into(),
            route: "/v1".into(),
            count: 3,
        });
        assert!(d.check().is_ok());
        d.rejected[0].service = "no way".into();
        assert!(d.check().is_err());
        d.rejected[0].service = "api".into();
        d.rejected[0].route = "a\nb".into();
        assert!(d.check().is_err());
        let far = Drain {
            start_ms: MAX_TIME_MS + 1,
            ..drain(0, 1)
        };
        assert!(far.check().is_err());
    }

    #[test]
    fn record_round_trips() {
        let d = Drain {
            target: DrainTarget::parse("api,web").expect("target"),
            start_ms: 1_750_000_000_000,
            duration_ms: 60_000,
            rejected: vec![Rejected {
                service: "api".into(),
                route: "api.example.com/".into(),
                count: 7,
            }],
        };
        let text = serde_json::to_string(&d).expect("ser");
        assert_eq!(
            text,
            r#"{"target":"api,web","start_ms":1750000000000,"duration_ms":60000,"rejected":[{"service":"api","route":"api.example.com/","count":7}]}"#
        );
        assert_eq!(serde_json::from_str::<Drain>(&text).expect("de"), d);
        let bare: Drain =
            serde_json::from_str(r#"{"target":"ALL","start_ms":1,"duration_ms":2}"#).expect("de");
        assert!(bare.rejected.is_empty());
        assert!(
            serde_json::from_str::<Drain>(r#"{"target":"a b","start_ms":1,"duration_ms":2}"#)
                .is_err()
        );
    }
}
