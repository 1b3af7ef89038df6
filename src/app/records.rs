//! The published maintenance state: every active record with its pre-rendered page and its
//! live hit counter, what is kept for targets' next windows, and the per-route hit counters.
//!
//! The request path reads it without a lock: it loads the `MaintView`, asks which record
//! applies to the route it matched (`applying`: route, then service, then global), and bumps
//! atomics (`count_hit`). Pages are rendered here when records change, never per request.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::model::maintenance::{self, Maintenance, PageUrl, Prepared, Target};
use crate::model::routes::{Route, RouteSpec};
use crate::pages::Pages;
use crate::protocol::StatusView;
use crate::state::MaintState;
use crate::upstream::Upstream;

use super::{App, Services};

/// One active record as the request path serves it.
#[derive(Debug)]
pub struct Active {
    /// The record; its `hits` field is stale, `hits` below is live.
    pub record: Maintenance,
    /// Requests this record answered since it was entered.
    pub hits: Arc<AtomicU64>,
    /// Parsed custom page URL, when one is set.
    pub page_url: Option<PageUrl>,
    /// The rendered default maintenance page.
    pub html: Bytes,
}

impl Active {
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

/// The published maintenance state with the records' pre-rendered pages.
#[derive(Debug, Default)]
pub struct MaintView {
    /// Active records, the global one first, then services', then routes' (each by name).
    pub active: Vec<Active>,
    /// Settings kept for targets that are not in maintenance.
    pub prepared: Vec<Prepared>,
}

impl MaintView {
    /// No record is active.
    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    pub fn global(&self) -> Option<&Active> {
        self.find(&Target::All)
    }

    pub fn find(&self, t: &Target) -> Option<&Active> {
        self.active.iter().find(|a| &a.record.target == t)
    }

    pub fn prepared_for(&self, t: &Target) -> Option<&Prepared> {
        self.prepared.iter().find(|p| &p.target == t)
    }

    /// The index in `active` of the record that answers a request routed to `route` of
    /// `service` (`None`: unrouted).
    pub fn applying(&self, route: Option<(&RouteSpec, &str)>) -> Option<usize> {
        if self.active.is_empty() {
            return None;
        }
        maintenance::applying(self.active.iter().map(|a| &a.record.target), route)
    }

    /// The index in `active` of the record that answers a request that matched `route`
    /// (`None`: no route).
    pub fn index_for(&self, route: Option<&Route<Upstream>>) -> Option<usize> {
        self.applying(route.map(|r| (&r.spec, r.target.name.as_str())))
    }

    /// The record that answers a request that matched `route` (`None`: no route).
    pub fn for_route(&self, route: Option<&Route<Upstream>>) -> Option<&Active> {
        self.index_for(route).map(|i| &self.active[i])
    }

    /// Does any record answer at least one route of the service `name` (or all of kinfrad)?
    pub fn covers_service(&self, svc: &Services, name: &str) -> bool {
        svc.table
            .routes()
            .iter()
            .filter(|r| r.target.name == name)
            .any(|r| self.for_route(Some(r)).is_some())
    }
}

/// Build the view of `records` (each with its live counter) and `prepared`, rendering each
/// record's page.
pub(super) fn build_view(
    pages: &Pages,
    mut records: Vec<(Maintenance, Arc<AtomicU64>)>,
    mut prepared: Vec<Prepared>,
    now: u64,
) -> Result<MaintView, String> {
    records.sort_by_key(|(m, _)| m.target.sort_key());
    prepared.sort_by_key(|p| p.target.sort_key());
    let mut active = Vec::with_capacity(records.len());
    for (m, hits) in records {
        let html = pages.render_maintenance_at(&m, now, &status_url(&m.target))?;
        let page_url = match &m.page_url {
            Some(u) => match maintenance::parse_page_url(u) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(url = %u, error = %e, "stored custom page URL is invalid; serving the default page");
                    None
                }
            },
            None => None,
        };
        active.push(Active {
            record: m,
            hits,
            page_url,
            html,
        });
    }
    Ok(MaintView { active, prepared })
}

/// The view of what `state.json` held.
pub(super) fn load_view(pages: &Pages, st: &MaintState, now: u64) -> Result<MaintView, String> {
    let records = st
        .records
        .iter()
        .map(|m| (m.clone(), Arc::new(AtomicU64::new(m.hits))))
        .collect();
    build_view(pages, records, st.prepared.clone(), now)
}

/// The same records and counters, their pages rendered again (new templates).
pub(super) fn rerender(pages: &Pages, cur: &MaintView, now: u64) -> Result<MaintView, String> {
    build_view(
        pages,
        cur.active
            .iter()
            .map(|a| (a.record.clone(), a.hits.clone()))
            .collect(),
        cur.prepared.clone(),
        now,
    )
}

/// Where a record's page polls its status: the global record at the status API itself, every
/// other one with `?target=`.
pub fn status_url(t: &Target) -> String {
    match t {
        Target::All => crate::pages::STATUS_URL.to_string(),
        t => format!(
            "{}?target={}",
            crate::pages::STATUS_URL,
            query_escape(&t.to_string())
        ),
    }
}

/// Percent-encode a query value (everything but unreserved characters, `/`, `:` and `*`).
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/:*".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Hit counters: per route (created at a route's first hit, or from `state.json`), for requests
/// that matched no route, and a tick that says whether anything moved since the last write.
#[derive(Debug, Default)]
pub struct HitCounters {
    routes: ArcSwap<HashMap<RouteSpec, Arc<AtomicU64>>>,
    unrouted: AtomicU64,
    /// Bumped on every hit; `flushed` is its value when the counters were last persisted.
    tick: AtomicU64,
    flushed: AtomicU64,
}

impl HitCounters {
    /// Counters as `state.json` left them (a key that is not a route spec was refused on load).
    pub(super) fn load(st: &MaintState) -> HitCounters {
        let routes = st
            .route_hits
            .iter()
            .filter_map(|(k, v)| {
                RouteSpec::parse(k)
                    .ok()
                    .map(|s| (s, Arc::new(AtomicU64::new(*v))))
            })
            .collect();
        HitCounters {
            routes: ArcSwap::from_pointee(routes),
            unrouted: AtomicU64::new(st.unrouted_hits),
            tick: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
        }
    }

    /// The counter of `spec`, created at its first use.
    fn route(&self, spec: &RouteSpec) -> Arc<AtomicU64> {
        if let Some(c) = self.routes.load().get(spec) {
            return c.clone();
        }
        let mut made = None;
        self.routes.rcu(|m| {
            let mut m = HashMap::clone(m);
            let c = m
                .entry(spec.clone())
                .or_insert_with(|| Arc::new(AtomicU64::new(0)))
                .clone();
            made = Some(c);
            m
        });
        made.unwrap_or_else(|| Arc::new(AtomicU64::new(0)))
    }

    /// Requests answered by maintenance on `spec`.
    pub fn route_hits(&self, spec: &RouteSpec) -> u64 {
        self.routes
            .load()
            .get(spec)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Every route's count (those a hit or `state.json` created), by spec text, sorted.
    pub fn by_route(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self
            .routes
            .load()
            .iter()
            .map(|(k, c)| (k.to_string(), c.load(Ordering::Relaxed)))
            .collect();
        v.sort();
        v
    }

    pub fn unrouted_hits(&self) -> u64 {
        self.unrouted.load(Ordering::Relaxed)
    }

    /// Every route's count by spec, and the unrouted count.
    fn snapshot(&self) -> (std::collections::BTreeMap<String, u64>, u64) {
        let routes = self
            .routes
            .load()
            .iter()
            .map(|(k, v)| (k.to_string(), v.load(Ordering::Relaxed)))
            .filter(|(_, v)| *v > 0)
            .collect();
        (routes, self.unrouted_hits())
    }
}

/// Which counters a change resets: the routes a freshly entered record now answers, and the
/// unrouted count when the global record was entered.
#[derive(Debug, Default)]
pub(super) struct Resets {
    pub routes: Vec<RouteSpec>,
    pub unrouted: bool,
}

impl App {
    /// Count a request answered by `rec`, on the route it matched (`None`: no route).
    pub fn count_hit(&self, rec: &Active, route: Option<&RouteSpec>) {
        rec.hits.fetch_add(1, Ordering::Relaxed);
        match route {
            Some(spec) => {
                self.counters.route(spec).fetch_add(1, Ordering::Relaxed);
            }
            None => {
                self.counters.unrouted.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.counters.tick.fetch_add(1, Ordering::Relaxed);
    }

    /// The hit counters (per route, unrouted).
    pub fn hit_counters(&self) -> &HitCounters {
        &self.counters
    }

    /// What `state.json` should hold of maintenance now, for `view` (with `resets` applied),
    /// and the tick it reflects.
    pub(super) fn maint_state_of(&self, view: &MaintView, resets: &Resets) -> (MaintState, u64) {
        let tick = self.counters.tick.load(Ordering::Relaxed);
        let (mut route_hits, mut unrouted) = self.counters.snapshot();
        for spec in &resets.routes {
            route_hits.remove(&spec.to_string());
        }
        if resets.unrouted {
            unrouted = 0;
        }
        let st = MaintState {
            records: view
                .active
                .iter()
                .map(|a| {
                    let mut m = a.record.clone();
                    m.hits = a.hits();
                    m
                })
                .collect(),
            prepared: view.prepared.clone(),
            route_hits,
            unrouted_hits: unrouted,
        };
        (st, tick)
    }

    /// What `state.json` holds of maintenance now (for writers of other state).
    pub(super) fn maint_snapshot(&self) -> MaintState {
        self.maint_state_of(&self.maint.load(), &Resets::default())
            .0
    }

    /// The counters were persisted as of `tick`.
    pub(super) fn hits_flushed(&self, tick: u64) {
        self.counters.flushed.store(tick, Ordering::Relaxed);
    }

    /// Did a hit land since the counters were last persisted?
    pub(super) fn hits_moved(&self) -> bool {
        self.counters.tick.load(Ordering::Relaxed) != self.counters.flushed.load(Ordering::Relaxed)
    }

    /// Zero the counters `resets` names (after the state that says so was written).
    pub(super) fn apply_resets(&self, resets: &Resets) {
        for spec in &resets.routes {
            self.counters.route(spec).store(0, Ordering::Relaxed);
        }
        if resets.unrouted {
            self.counters.unrouted.store(0, Ordering::Relaxed);
        }
    }

    /// Each active record's view, with the routes it answers now and its live hits.
    pub fn record_views(&self) -> Vec<StatusView> {
        let view = self.maint.load();
        let svc = self.services.load();
        let now = crate::model::now_ms();
        let mut routes: Vec<Vec<String>> = vec![Vec::new(); view.active.len()];
        for r in svc.table.routes() {
            if let Some(i) = maintenance::applying(
                view.active.iter().map(|a| &a.record.target),
                Some((&r.spec, r.target.name.as_str())),
            ) {
                routes[i].push(r.spec.to_string());
            }
        }
        let mut out: Vec<StatusView> = view
            .active
            .iter()
            .zip(routes)
            .map(|(a, mut rs)| {
                rs.sort();
                let mut v = maintenance::status_view(Some(&a.record), a.hits(), now);
                v.routes = rs;
                v
            })
            .collect();
        out.extend(
            view.prepared
                .iter()
                .map(|p| maintenance::prepared_view(p, now)),
        );
        out
    }

    /// The status view of `target`: its record when active, else what is kept for it, else
    /// inactive.
    pub fn target_view(&self, target: &Target) -> StatusView {
        let name = target.to_string();
        self.record_views()
            .into_iter()
            .find(|v| v.target.as_deref() == Some(name.as_str()))
            .unwrap_or_else(|| {
                let mut v = maintenance::status_view(None, 0, crate::model::now_ms());
                v.target = Some(name);
                v
            })
    }
}
