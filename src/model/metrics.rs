//! The counters behind kinfrad's `/metrics`, shaped so the request path pays only relaxed
//! atomic adds: a request's labels are array indexes (how it was answered, the class of its
//! status), never strings to format or hash, and a latency goes into a fixed array of buckets.
//! The owners keep them where the data lives (a route, an upstream, `App`); `web::metrics`
//! reads them at scrape time and names the labels.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How a request was answered: the `path` label of `kinfra_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The upstream's response, relayed.
    Proxied,
    /// kinfrad's fallback page (or 502/504) because the upstream could not answer.
    Fallback,
    /// A maintenance record answered.
    Maintenance,
    /// A drain refused it.
    Drain,
    /// kinfrad's own endpoints.
    Own,
    /// Refused before routing (400, 405, 431, …), a client fault after it (413, 408), or
    /// unrouted (404).
    Refused,
}

impl Answer {
    pub const ALL: [Answer; 6] = [
        Answer::Proxied,
        Answer::Fallback,
        Answer::Maintenance,
        Answer::Drain,
        Answer::Own,
        Answer::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Proxied => "proxied",
            Answer::Fallback => "fallback",
            Answer::Maintenance => "maintenance",
            Answer::Drain => "drain",
            Answer::Own => "own",
            Answer::Refused => "refused",
        }
    }
}

/// The `class` label values, by index.
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The class index of a status code: its first digit, kept within 1xx..5xx (an upstream's
/// 6xx-9xx, which HTTP does not define, counts as 5xx; below 100 as 1xx).
#[inline]
pub fn class_index(status: u16) -> usize {
    (usize::from(status / 100)).clamp(1, 5) - 1
}

/// Requests answered, by how (`Answer`) and by status class: one route's, or those that matched
/// no route.
#[derive(Debug, Default)]
pub struct RequestCounts {
    n: [[AtomicU64; 5]; 6],
}

impl RequestCounts {
    /// One request answered `how` with `status`.
    #[inline]
    pub fn count(&self, how: Answer, status: u16) {
        self.n[how as usize][class_index(status)].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests answered `how` in the class `CLASSES[class]`.
    pub fn get(&self, how: Answer, class: usize) -> u64 {
        self.n[how as usize]
            .get(class)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Every (answer, class, count) that is not zero.
    pub fn readings(&self) -> Vec<(Answer, &'static str, u64)> {
        let mut out = Vec::new();
        for how in Answer::ALL {
            for (i, class) in CLASSES.iter().enumerate() {
                let v = self.get(how, i);
                if v > 0 {
                    out.push((how, *class, v));
                }
            }
        }
        out
    }
}

/// The upper bounds of latency buckets, in seconds (the last bucket, `+Inf`, is implied).
pub const LATENCY_BOUNDS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// `LATENCY_BOUNDS` in nanoseconds, for the comparison on the hot path.
const BOUNDS_NS: [u64; 11] = [
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_000_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// A latency histogram: a fixed array of bucket counters and the sum, in nanoseconds. An
/// observation is two relaxed adds; the count is the buckets' sum.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; 12],
    sum_ns: AtomicU64,
}

/// What a histogram held when read: per-bucket counts (not cumulative; the last bound is
/// infinity), the sum in seconds, and the count.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramReading {
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    #[inline]
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NS
            .iter()
            .position(|b| ns <= *b)
            .unwrap_or(BOUNDS_NS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub fn reading(&self) -> HistogramReading {
        let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        HistogramReading {
            buckets,
            sum: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_the_first_digit() {
        assert_eq!(CLASSES[class_index(101)], "1xx");
        assert_eq!(CLASSES[class_index(200)], "2xx");
        assert_eq!(CLASSES[class_index(304)], "3xx");
        assert_eq!(CLASSES[class_index(431)], "4xx");
        assert_eq!(CLASSES[class_index(503)], "5xx");
        assert_eq!(CLASSES[class_index(999)], "5xx");
        assert_eq!(CLASSES[class_index(0)], "1xx");
    }

    #[test]
    fn counts_land_on_their_labels() {
        let c = RequestCounts::default();
        c.count(Answer::Proxied, 200);
        c.count(Answer::Proxied, 204);
        c.count(Answer::Fallback, 503);
        assert_eq!(
            c.readings(),
            vec![(Answer::Proxied, "2xx", 2), (Answer::Fallback, "5xx", 1)]
        );
        assert_eq!(c.get(Answer::Own, 1), 0);
    }

    #[test]
    fn histogram_buckets_are_upper_bounds() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(7));
        h.observe(Duration::from_secs(60));
        let r = h.reading();
        assert_eq!(r.count, 3);
        assert_eq!(r.buckets.len(), 12);
        assert_eq!(r.buckets[0], (0.005, 1));
        assert_eq!(r.buckets[1], (0.01, 1));
        assert_eq!(r.buckets[11].1, 1);
        assert!(r.buckets[11].0.is_infinite());
        assert!((r.sum - 60.012).abs() < 1e-9);
        for (b, ns) in LATENCY_BOUNDS.iter().zip(BOUNDS_NS) {
            assert_eq!((b * 1e9).round() as u64, ns);
        }
    }
}
