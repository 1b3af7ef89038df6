//! Per-upstream circuit breaker: closed → open after N consecutive failures or an error ratio over
//! a sliding window → half-open after a cool-down, letting a few trial requests through → closed
//! on success (or open again on a trial failure).
//!
//! Pure state machine: every method takes `now`, so tests drive the clock.

use std::time::{Duration, Instant};

/// Tuning, validated by `config`.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit.
    pub failures: u32,
    /// Error ratio over `window` that opens the circuit (once `min_requests` were seen).
    pub error_ratio: f64,
    pub window: Duration,
    pub min_requests: u32,
    /// Time an open circuit waits before letting trial requests through.
    pub cooldown: Duration,
    /// Trial requests allowed at once while half-open; this many successes close it.
    pub half_open_requests: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            error_ratio: 0.5,
            window: Duration::from_secs(30),
            min_requests: 20,
            cooldown: Duration::from_secs(10),
            half_open_requests: 3,
        }
    }
}

/// The circuit's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
        }
    }

    /// Every state, in the order of [`CircuitState::index`].
    pub const ALL: [CircuitState; 3] = [
        CircuitState::Closed,
        CircuitState::Open,
        CircuitState::HalfOpen,
    ];

    /// The state's position in [`CircuitState::ALL`].
    pub fn index(self) -> usize {
        match self {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
        }
    }
}

const BUCKETS: usize = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Index of the time slice this bucket currently counts.
    slice: u64,
    ok: u32,
    failed: u32,
}

/// One upstream's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    cfg: BreakerConfig,
    state: CircuitState,
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    /// Trials admitted while half-open, and how many succeeded.
    trials_in_flight: u32,
    trial_successes: u32,
    buckets: [Bucket; BUCKETS],
    epoch: Instant,
    /// Failures recorded since the circuit last closed (shown in status).
    pub failures_total: u64,
    /// State changes made, by the state entered (`CircuitState::index`).
    transitions: [u64; 3],
}

/// What the breaker decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Go ahead (closed).
    Yes,
    /// Go ahead as a half-open trial; report the outcome.
    Trial,
    /// Circuit open: don't send it.
    No,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig, now: Instant) -> Breaker {
        Breaker {
            cfg,
            state: CircuitState::Closed,
            consecutive_failures: 0,
            opened_at: None,
            trials_in_flight: 0,
            trial_successes: 0,
            buckets: [Bucket::default(); BUCKETS],
            epoch: now,
            failures_total: 0,
            transitions: [0; 3],
        }
    }

    /// Replace the tuning (on reload), keeping the state.
    pub fn reconfigure(&mut self, cfg: BreakerConfig) {
        self.cfg = cfg;
    }

    /// The state as of `now` (an open circuit past its cool-down reads as half-open).
    pub fn state(&self, now: Instant) -> CircuitState {
        match (self.state, self.opened_at) {
            (CircuitState::Open, Some(t))
                if now.saturating_duration_since(t) >= self.cfg.cooldown =>
            {
                CircuitState::HalfOpen
            }
            (s, _) => s,
        }
    }

    /// The state as it last moved: an open circuit past its cool-down still reads open here
    /// until a request is admitted as a trial (compare before and after a call to see a move).
    pub fn moved_state(&self) -> CircuitState {
        self.state
    }

    /// Why the circuit is open, said right after a failure opened it (from `was`).
    pub fn open_reason(&self, now: Instant, was: CircuitState) -> String {
        if was == CircuitState::HalfOpen {
            return "a trial request failed".to_string();
        }
        match self.consecutive_failures {
            n if n < self.cfg.failures => {}
            1 => return "a failure".to_string(),
            n => return format!("{n} consecutive failures"),
        }
        let (n, f) = self.window_counts(now);
        format!(
            "{f} of {n} requests failed in the last {}",
            humantime::format_duration(self.cfg.window)
        )
    }

    /// The cool-down an open circuit waits out.
    pub fn cooldown(&self) -> Duration {
        self.cfg.cooldown
    }

    pub fn opened_at(&self) -> Option<Instant> {
        self.opened_at
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// State changes so far, by the state entered (indexed as [`CircuitState::ALL`]). Entering
    /// half-open is counted when the first trial is admitted after the cool-down.
    pub fn transitions(&self) -> [u64; 3] {
        self.transitions
    }

    fn entered(&mut self, s: CircuitState) {
        self.transitions[s.index()] += 1;
    }

    /// May a request go through now?
    pub fn admit(&mut self, now: Instant) -> Admit {
        if self.state(now) == CircuitState::HalfOpen && self.state == CircuitState::Open {
            self.state = CircuitState::HalfOpen;
            self.entered(CircuitState::HalfOpen);
            self.trials_in_flight = 0;
            self.trial_successes = 0;
        }
        match self.state {
            CircuitState::Closed => Admit::Yes,
            CircuitState::Open => Admit::No,
            CircuitState::HalfOpen => {
                if self.trials_in_flight < self.cfg.half_open_requests.max(1) {
                    self.trials_in_flight += 1;
                    Admit::Trial
                } else {
                    Admit::No
                }
            }
        }
    }

    fn slice_len(&self) -> Duration {
        (self.cfg.window / BUCKETS as u32).max(Duration::from_millis(1))
    }

    fn record(&mut self, now: Instant, ok: bool) {
        let slice = (now.saturating_duration_since(self.epoch).as_nanos()
            / self.slice_len().as_nanos()) as u64;
        let b = &mut self.buckets[(slice % BUCKETS as u64) as usize];
        if b.slice != slice {
            *b = Bucket {
                slice,
                ok: 0,
                failed: 0,
            };
        }
        if ok {
            b.ok += 1;
        } else {
            b.failed += 1;
        }
    }

    /// (requests, failures) within the window ending at `now`.
    pub fn window_counts(&self, now: Instant) -> (u32, u32) {
        let cur = (now.saturating_duration_since(self.epoch).as_nanos()
            / self.slice_len().as_nanos()) as u64;
        self.buckets
            .iter()
            .filter(|b| b.slice + (BUCKETS as u64) > cur && b.slice <= cur)
            .fold((0, 0), |(n, f), b| (n + b.ok + b.failed, f + b.failed))
    }

    /// A request succeeded.
    pub fn on_success(&mut self, now: Instant) {
        self.record(now, true);
        self.consecutive_failures = 0;
        if self.state == CircuitState::HalfOpen {
            self.trial_successes += 1;
            self.trials_in_flight = self.trials_in_flight.saturating_sub(1);
            if self.trial_successes >= self.cfg.half_open_requests.max(1) {
                self.close();
            }
        }
    }

    /// A request failed (connect error, timeout, 5xx).
    pub fn on_failure(&mut self, now: Instant) {
        self.record(now, false);
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.failures_total += 1;
        match self.state {
            CircuitState::HalfOpen => self.open(now),
            CircuitState::Open => {}
            CircuitState::Closed => {
                let (n, f) = self.window_counts(now);
                let ratio_trip = n >= self.cfg.min_requests
                    && n > 0
                    && f64::from(f) / f64::from(n) >= self.cfg.error_ratio;
                if self.consecutive_failures >= self.cfg.failures || ratio_trip {
                    self.open(now);
                }
            }
        }
    }

    /// A trial that was admitted but never produced an outcome (client went away).
    pub fn on_abandoned(&mut self) {
        if self.state == CircuitState::HalfOpen {
            self.trials_in_flight = self.trials_in_flight.saturating_sub(1);
        }
    }

    fn open(&mut self, now: Instant) {
        if self.state != CircuitState::Open {
            self.entered(CircuitState::Open);
        }
        self.state = CircuitState::Open;
        self.opened_at = Some(now);
        self.trials_in_flight = 0;
        self.trial_successes = 0;
    }

    fn close(&mut self) {
        if self.state != CircuitState::Closed {
            self.entered(CircuitState::Closed);
        }
        self.state = CircuitState::Closed;
        self.opened_at = None;
        self.consecutive_failures = 0;
        self.failures_total = 0;
        self.buckets = [Bucket::default(); BUCKETS];
    }

    /// Force the circuit closed (the active health probe saw the upstream recover).
    pub fn reset(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            failures: 3,
            error_ratio: 0.5,
            window: Duration::from_secs(10),
            min_requests: 10,
            cooldown: Duration::from_secs(5),
            half_open_requests: 2,
        }
    }

    #[test]
    fn opens_after_consecutive_failures_and_half_opens_on_schedule() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0);
        for i in 0..2 {
            assert_eq!(b.admit(t0), Admit::Yes);
            b.on_failure(t0 + Duration::from_millis(i));
        }
        assert_eq!(b.state(t0), CircuitState::Closed);
        b.on_failure(t0 + Duration::from_millis(3));
        assert_eq!(b.state(t0 + Duration::from_millis(3)), CircuitState::Open);
        assert_eq!(b.admit(t0 + Duration::from_secs(1)), Admit::No);
        // Just before the cool-down: still open.
        assert_eq!(b.admit(t0 + Duration::from_millis(5002)), Admit::No);
        // After it: two trials, no more.
        let t1 = t0 + Duration::from_millis(5004);
        assert_eq!(b.state(t1), CircuitState::HalfOpen);
        assert_eq!(b.admit(t1), Admit::Trial);
        assert_eq!(b.admit(t1), Admit::Trial);
        assert_eq!(b.admit(t1), Admit::No);
        b.on_success(t1);
        assert_eq!(b.state(t1), CircuitState::HalfOpen);
        b.on_success(t1);
        assert_eq!(b.state(t1), CircuitState::Closed);
        assert_eq!(b.admit(t1), Admit::Yes);
        assert_eq!(b.failures_total, 0);
        // Closed → open → half-open → closed, each counted once.
        assert_eq!(b.transitions(), [1, 1, 1]);
        b.reset();
        assert_eq!(
            b.transitions(),
            [1, 1, 1],
            "resetting a closed circuit changes nothing"
        );
    }

    #[test]
    fn a_failed_trial_reopens_with_a_fresh_cooldown() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0);
        for _ in 0..3 {
            b.on_failure(t0);
        }
        let t1 = t0 + Duration::from_secs(6);
        assert_eq!(b.admit(t1), Admit::Trial);
        b.on_failure(t1);
        assert_eq!(b.state(t1 + Duration::from_secs(4)), CircuitState::Open);
        assert_eq!(b.state(t1 + Duration::from_secs(5)), CircuitState::HalfOpen);
        assert_eq!(b.opened_at(), Some(t1));
    }

    #[test]
    fn opens_on_error_ratio_over_the_window() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0);
        // Alternate: never 3 in a row, but 50 % failures once 10 requests were seen.
        for i in 0..9u64 {
            let t = t0 + Duration::from_millis(100 * i);
            if i % 2 == 0 {
                b.on_success(t);
            } else {
                b.on_failure(t);
            }
        }
        assert_eq!(b.state(t0 + Duration::from_secs(1)), CircuitState::Closed);
        b.on_failure(t0 + Duration::from_millis(950));
        assert_eq!(b.state(t0 + Duration::from_secs(1)), CircuitState::Open);
    }

    #[test]
    fn old_failures_leave_the_window() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0);
        // One failure in three: under the ratio, never three in a row.
        for i in 0..6u64 {
            b.on_failure(t0 + Duration::from_millis(i));
            b.on_success(t0 + Duration::from_millis(i));
            b.on_success(t0 + Duration::from_millis(i));
        }
        assert_eq!(b.window_counts(t0 + Duration::from_millis(10)), (18, 6));
        assert_eq!(
            b.state(t0 + Duration::from_millis(10)),
            CircuitState::Closed
        );
        // 11 s later the window is empty again.
        let later = t0 + Duration::from_secs(11);
        assert_eq!(b.window_counts(later), (0, 0));
        b.on_failure(later);
        assert_eq!(b.state(later), CircuitState::Closed);
    }

    #[test]
    fn the_reason_says_what_opened_it() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0);
        for _ in 0..3 {
            b.on_failure(t0);
        }
        assert_eq!(b.moved_state(), CircuitState::Open);
        assert_eq!(
            b.open_reason(t0, CircuitState::Closed),
            "3 consecutive failures"
        );
        let t1 = t0 + Duration::from_secs(6);
        // Past the cool-down it reads half-open, but has not moved until a trial is admitted.
        assert_eq!(b.moved_state(), CircuitState::Open);
        assert_eq!(b.admit(t1), Admit::Trial);
        assert_eq!(b.moved_state(), CircuitState::HalfOpen);
        b.on_failure(t1);
        assert_eq!(
            b.open_reason(t1, CircuitState::HalfOpen),
            "a trial request failed"
        );
        let mut r = Breaker::new(cfg(), t0);
        for i in 0..10u64 {
            let t = t0 + Duration::from_millis(10 * i);
            if i % 2 == 0 {
                r.on_success(t);
            } else {
                r.on_failure(t);
            }
        }
        assert_eq!(r.moved_state(), CircuitState::Open);
        assert_eq!(
            r.open_reason(t0 + Duration::from_millis(100), CircuitState::Closed),
            "5 of 10 requests failed in the last 10s"
        );
    }

    #[test]
    fn abandoned_trials_free_their_slot() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0);
        for _ in 0..3 {
            b.on_failure(t0);
        }
        let t1 = t0 + Duration::from_secs(6);
        assert_eq!(b.admit(t1), Admit::Trial);
        assert_eq!(b.admit(t1), Admit::Trial);
        b.on_abandoned();
        assert_eq!(b.admit(t1), Admit::Trial);
    }
}
