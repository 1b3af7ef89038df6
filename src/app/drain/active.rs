//! The drain in effect, as the request path reads it: its record, its rendered page, the
//! per-route refusal counters and the phase `drain wait` follows; the per-thread random draw.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use tokio::sync::watch;

use crate::model::drain::{Drain, Rejected};
use crate::model::routes::{Route, RouteSpec};
use crate::pages::Pages;
use crate::upstream::Upstream;

use super::super::Services;

/// Where the drain stands, for `drain wait` and the event stream (`u64`: the drain's id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Idle,
    Draining(u64),
    Drained(u64),
}

/// Refusals on one route of a covered service.
pub(crate) struct RouteCount {
    pub(crate) service: String,
    /// `None`: the service's routes that appeared after the drain started.
    pub(crate) spec: Option<RouteSpec>,
    pub(crate) route: String,
    pub(crate) count: AtomicU64,
}

/// The drain in effect: the record, its pre-rendered page and its counters.
pub struct ActiveDrain {
    /// As started (its `rejected` is empty: the live counters are below).
    pub record: Drain,
    pub id: u64,
    /// The page refused browsers get, rendered when the drain started.
    pub html: Bytes,
    pub(crate) counts: Vec<RouteCount>,
    /// Refusals on services not configured when the drain started (a reload added them), and
    /// restored ones of routes no longer configured: in the total, not persisted again.
    pub(crate) stray: AtomicU64,
    /// The total last written to `state.json`.
    pub(crate) persisted: AtomicU64,
    /// When it was drained (Unix ms; 0: not yet).
    pub(crate) drained_at: AtomicU64,
}

impl ActiveDrain {
    pub(crate) fn new(mut record: Drain, id: u64, html: Bytes, services: &Services) -> ActiveDrain {
        let restored = std::mem::take(&mut record.rejected);
        let mut counts = Vec::new();
        for r in services.table.routes() {
            if record.target.covers(&r.target.name) {
                counts.push(RouteCount {
                    service: r.target.name.clone(),
                    route: r.spec.to_string(),
                    spec: Some(r.spec.clone()),
                    count: AtomicU64::new(0),
                });
            }
        }
        for up in &services.list {
            if record.target.covers(&up.name) {
                counts.push(RouteCount {
                    service: up.name.clone(),
                    spec: None,
                    route: String::new(),
                    count: AtomicU64::new(0),
                });
            }
        }
        // Counters persisted by an earlier kinfrad: back on their routes, or, for routes no
        // longer configured, kept in the total.
        let mut stray = 0u64;
        for r in &restored {
            match counts
                .iter()
                .find(|c| c.service == r.service && c.route == r.route)
            {
                Some(c) => {
                    c.count.fetch_add(r.count, Ordering::Relaxed);
                }
                None => stray = stray.saturating_add(r.count),
            }
        }
        let a = ActiveDrain {
            record,
            id,
            html,
            counts,
            stray: AtomicU64::new(stray),
            persisted: AtomicU64::new(0),
            drained_at: AtomicU64::new(0),
        };
        a.persisted.store(a.rejected_total(), Ordering::Relaxed);
        a
    }

    /// Does the drain cover the service `name`?
    pub fn covers(&self, name: &str) -> bool {
        self.record.target.covers(name)
    }

    /// Count a refusal of a request routed by `route`.
    pub(crate) fn count(&self, route: &Route<Upstream>) {
        let name = route.target.name.as_str();
        let exact = self
            .counts
            .iter()
            .find(|c| c.service == name && c.spec.as_ref() == Some(&route.spec));
        let slot = exact.or_else(|| {
            self.counts
                .iter()
                .find(|c| c.service == name && c.spec.is_none())
        });
        match slot {
            Some(c) => c.count.fetch_add(1, Ordering::Relaxed),
            None => self.stray.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// Refusals on the route `spec` of service `name`.
    pub fn rejected_on(&self, name: &str, spec: &RouteSpec) -> u64 {
        self.counts
            .iter()
            .find(|c| c.service == name && c.spec.as_ref() == Some(spec))
            .map_or(0, |c| c.count.load(Ordering::Relaxed))
    }

    /// Refusals by route text, summed over services; a service's routes that appeared after
    /// the drain started, and counts of routes no longer configured, under "".
    pub fn refused_by_route(&self) -> Vec<(String, u64)> {
        let mut by: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
        for c in &self.counts {
            let n = by.entry(c.route.clone()).or_default();
            *n = n.saturating_add(c.count.load(Ordering::Relaxed));
        }
        let stray = by.entry(String::new()).or_default();
        *stray = stray.saturating_add(self.stray.load(Ordering::Relaxed));
        by.into_iter().collect()
    }

    /// Every refusal since the drain started.
    pub fn rejected_total(&self) -> u64 {
        self.counts
            .iter()
            .map(|c| c.count.load(Ordering::Relaxed))
            .fold(self.stray.load(Ordering::Relaxed), u64::saturating_add)
    }

    /// Drained: its time is over and nothing was left in flight (Unix ms when).
    pub fn drained_at(&self) -> Option<u64> {
        match self.drained_at.load(Ordering::Acquire) {
            0 => None,
            t => Some(t),
        }
    }

    /// The record as `state.json` keeps it: the counters that moved.
    pub(crate) fn to_record(&self) -> Drain {
        let mut d = self.record.clone();
        d.rejected = self
            .counts
            .iter()
            .filter_map(|c| {
                let n = c.count.load(Ordering::Relaxed);
                (n > 0).then(|| Rejected {
                    service: c.service.clone(),
                    route: c.route.clone(),
                    count: n,
                })
            })
            .collect();
        d
    }
}

/// `App`'s drain state. `on` mirrors `current.is_some()` so the request path pays one atomic
/// load while no drain is set.
pub(crate) struct Drains {
    pub(crate) on: AtomicBool,
    pub(crate) current: ArcSwapOption<ActiveDrain>,
    pub(crate) phase: watch::Sender<Phase>,
    pub(crate) ids: AtomicU64,
}

impl Drains {
    /// The drain `state.json` held, if any, set again as it was.
    pub(crate) fn load(
        record: Option<Drain>,
        pages: &Pages,
        services: &Services,
    ) -> Result<Drains, String> {
        let d = Drains {
            on: AtomicBool::new(false),
            current: ArcSwapOption::empty(),
            phase: watch::channel(Phase::Idle).0,
            ids: AtomicU64::new(0),
        };
        if let Some(record) = record {
            let html = pages.render_drain(&record)?;
            let id = d.ids.fetch_add(1, Ordering::Relaxed) + 1;
            d.set(Some(Arc::new(ActiveDrain::new(record, id, html, services))));
        }
        Ok(d)
    }

    pub(crate) fn set(&self, next: Option<Arc<ActiveDrain>>) {
        let phase = match &next {
            Some(a) => Phase::Draining(a.id),
            None => Phase::Idle,
        };
        self.on.store(next.is_some(), Ordering::Release);
        self.current.store(next);
        self.phase.send_replace(phase);
    }
}

thread_local! {
    /// This thread's generator state (xorshift64*), seeded once from the standard library's
    /// per-thread random keys.
    static RNG: Cell<u64> = Cell::new({
        use std::hash::BuildHasher;
        std::collections::hash_map::RandomState::new().hash_one(std::thread::current().id()) | 1
    });
}

/// A uniform draw in `[0, 1)`: no lock, no system call.
pub(crate) fn draw() -> f64 {
    RNG.with(|c| {
        let mut x = c.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        c.set(x);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    })
}
