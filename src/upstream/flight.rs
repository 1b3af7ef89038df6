//! Requests in flight on an upstream: a counter every forwarded request (and every upgraded
//! connection) holds a guard on while it is served, so a drain can tell when nothing is left
//! running on a service before a deploy stops it.

use std::ops::Deref;
use std::sync::atomic::Ordering;

use super::Upstream;

/// Counts one request in flight on an upstream while it lives. `U` is `&Upstream` where the
/// request's future holds the upstream, `Arc<Upstream>` where the guard outlives it (a response
/// body still streaming, an upgraded connection's tunnel task).
pub struct InFlight<U: Deref<Target = Upstream>>(U);

impl<U: Deref<Target = Upstream>> InFlight<U> {
    pub fn enter(up: U) -> InFlight<U> {
        up.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(up)
    }
}

impl<U: Deref<Target = Upstream>> Drop for InFlight<U> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Upstream {
    /// Requests (and upgraded connections) being served now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }
}
