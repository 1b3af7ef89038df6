//! The pure model: the maintenance record and its rules, the drain and its rejection curve, the
//! circuit breaker, the route table, the metrics' counters, and the few plain values the layers above share. Nothing
//! here does I/O or reads a clock on its own: the rules take `now` as an argument, and
//! [`now_ms`] is the one clock read, for callers to pass in.

use std::time::{SystemTime, UNIX_EPOCH};

pub mod bypass;
pub mod circuit;
pub mod drain;
pub mod fleet;
pub mod health;
pub mod maintenance;
pub mod metrics;
pub mod routes;
pub mod schedule;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    now_ms() / 1000
}

/// A progress step shown on the loading page.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Step {
    pub text: String,
    pub status: &'static str,
}

/// Is `s` a valid service name (also used as route id, in URLs and in the state file)?
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}
