//! `App`: the daemon's shared state and the operations both front ends (HTTP API and control
//! socket) call. Read-mostly data is behind `ArcSwap`, so the request path never takes a lock;
//! writers are serialized by the state-file mutex and persist before they publish.

mod bypass;
mod drain;
mod eventlog;
mod feed;
pub mod fleet;
mod health;
mod maint;
mod pages;
mod records;
mod reload;
mod report;
mod schedule;
mod services;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::config::{Config, Overrides};
use crate::eventlog::EventLog;
use crate::model::maintenance::InvalidInput;
use crate::model::now_ms;
use crate::model::routes::{Route, RouteTable};
use crate::pages::Pages;
use crate::protocol::ErrorCode;
use crate::state::{MaintState, PersistedState, StateFile};
use crate::systemd::notify::Notifier;
use crate::upstream::Upstream;

pub use bypass::{LINK_PATH as BYPASS_LINK_PATH, MintedLink, OpenedLink};
pub use drain::ActiveDrain;
pub use eventlog::event_report;
pub use feed::{Feed, Hub};
pub use health::{OwnChecks, StateCheck};
pub use maint::{MaintRequest, PAGE_LOOKUP_TIMEOUT};
pub use records::{Active, HitCounters, MaintView, status_url};
pub use schedule::ScheduleRequest;
pub use services::NotSupervised;
use services::Supervised;

/// The name of the dashboard's session cookie. The dashboard sets it; the request path takes it
/// out of every request it forwards, so no service ever sees an admin session.
pub const SESSION_COOKIE: &str = "kinfra_session";

/// An operation's failure: a stable code and a sentence for humans.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OpError {
    pub code: ErrorCode,
    pub message: String,
}

impl OpError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> OpError {
        OpError {
            code,
            message: message.into(),
        }
    }
}

impl From<InvalidInput> for OpError {
    fn from(e: InvalidInput) -> OpError {
        OpError::new(ErrorCode::InvalidArgument, e.to_string())
    }
}

#[derive(Debug, Default)]
struct Problems {
    state: Option<String>,
    reload: Option<String>,
}

/// Shared daemon state.
pub struct App {
    started: Instant,
    /// Random per-process id, used to detect requests that loop back to this kinfrad.
    pub instance: String,
    config: ArcSwap<Config>,
    overrides: Overrides,
    pages: ArcSwap<Pages>,
    maint: ArcSwap<MaintView>,
    /// Maintenance hit counters (per route, unrouted; the records hold their own).
    counters: HitCounters,
    /// Open HTTP connections.
    pub connections: AtomicU64,
    /// Requests answered that matched no route (a route's are on the route).
    requests: crate::model::metrics::RequestCounts,
    token: ArcSwap<String>,
    store: tokio::sync::Mutex<StateFile>,
    problems: Mutex<Problems>,
    notifier: Notifier,
    /// Addresses the HTTP listeners are bound to.
    pub http_addrs: Vec<SocketAddr>,
    pub control_path: String,
    changed: watch::Sender<u64>,
    /// Live-update frames for `/__events__` (built by `web::events::run`).
    events: Hub,
    /// The operator's event log: circuit, health, process, maintenance and drain events.
    eventlog: Arc<EventLog>,
    client: ArcSwap<crate::upstream::client::CustomClient>,
    services: ArcSwap<Services>,
    /// Stop switches of the running health tasks, by service name.
    probes: Mutex<std::collections::HashMap<String, watch::Sender<bool>>>,
    /// Supervisors of the services kinfrad runs: the spec they run and their stop switch.
    supervisors: Mutex<std::collections::HashMap<String, Supervised>>,
    /// Leftovers of a previous kinfrad were looked for (once, before the first child).
    reaped: std::sync::atomic::AtomicBool,
    /// Services an operator stopped; persisted in state.json (written under `store`).
    stopped: Mutex<std::collections::BTreeSet<String>>,
    /// The drain in effect, if any (`drain`).
    drain: drain::Drains,
    /// Bypass links opened already (`bypass`).
    bypass_opened: bypass::Opened,
    /// Scheduled maintenance windows and their timer's wake-up (`schedule`).
    schedule: schedule::Schedules,
    /// The health API's bookkeeping (`health`).
    health: health::HealthBook,
    /// The fleet this host is part of (`fleet`; `None` on a single host).
    fleet: Option<Arc<fleet::Fleet>>,
}

/// The upstreams and the route table over them, swapped whole on reload.
#[derive(Debug, Default)]
pub struct Services {
    pub list: Vec<Arc<Upstream>>,
    pub table: RouteTable<Upstream>,
    /// `underscores_in_headers` of the config these were built from (read with the route).
    pub underscores: bool,
}

impl Services {
    /// Build from config, reusing live upstreams (health, breaker) of services that stay; new
    /// ones record into `events`.
    pub fn build(
        cfg: &Config,
        old: Option<&Services>,
        events: &Arc<EventLog>,
    ) -> Result<Services, String> {
        let mut list = Vec::new();
        let mut routes = Vec::new();
        for sc in &cfg.services {
            let up = match old.and_then(|o| o.list.iter().find(|u| u.name == sc.name)) {
                Some(u) => {
                    u.reconfigure(sc.clone(), cfg.upstream_ca_file.as_deref())?;
                    u.clone()
                }
                None => Arc::new(Upstream::new(
                    sc.clone(),
                    cfg.upstream_ca_file.as_deref(),
                    events.clone(),
                )?),
            };
            for spec in &sc.routes {
                // A route that stays keeps its request counters.
                let counts = old
                    .and_then(|o| {
                        o.table
                            .routes()
                            .iter()
                            .find(|r| r.target.name == sc.name && &r.spec == spec)
                    })
                    .map(|r| r.counts.clone())
                    .unwrap_or_default();
                routes.push(Route {
                    spec: spec.clone(),
                    target: up.clone(),
                    strip_prefix: sc.strip_prefix,
                    counts,
                });
            }
            list.push(up);
        }
        Ok(Services {
            list,
            table: RouteTable::new(routes),
            underscores: cfg.underscores_in_headers,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.list.iter().find(|u| u.name == name)
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("http_addrs", &self.http_addrs)
            .finish()
    }
}

/// Everything `App::new` needs, gathered by the daemon at startup.
pub struct AppParts {
    pub config: Config,
    pub overrides: Overrides,
    pub pages: Pages,
    pub state: PersistedState,
    pub state_file: StateFile,
    pub state_problem: Option<String>,
    pub token: String,
    pub notifier: Notifier,
    pub http_addrs: Vec<SocketAddr>,
    pub control_path: String,
    pub client: crate::upstream::client::CustomClient,
}

fn lock_problems(m: &Mutex<Problems>) -> std::sync::MutexGuard<'_, Problems> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl App {
    pub fn new(p: AppParts) -> Result<App, String> {
        let counters = HitCounters::load(&p.state.maintenance);
        let stopped: std::collections::BTreeSet<String> =
            p.state.stopped_services.iter().cloned().collect();
        let view = records::load_view(&p.pages, &p.state.maintenance, now_ms())?;
        let (changed, _) = watch::channel(0);
        let eventlog = Arc::new(EventLog::new());
        let services = Services::build(&p.config, None, &eventlog)?;
        let drain = drain::Drains::load(p.state.drain, &p.pages, &services)?;
        let schedule = schedule::Schedules::load(p.state.schedules);
        let fleet = match p.config.fleet.clone() {
            Some(cfg) => Some(Arc::new(fleet::Fleet::new(cfg, p.state.fleet)?)),
            None => None,
        };
        let instance =
            crate::state::token::random_hex::<8>().map_err(|e| format!("/dev/urandom: {e}"))?;
        Ok(App {
            started: Instant::now(),
            instance,
            config: ArcSwap::from_pointee(p.config),
            overrides: p.overrides,
            pages: ArcSwap::from_pointee(p.pages),
            maint: ArcSwap::from_pointee(view),
            counters,
            connections: AtomicU64::new(0),
            requests: Default::default(),
            token: ArcSwap::from_pointee(p.token),
            store: tokio::sync::Mutex::new(p.state_file),
            problems: Mutex::new(Problems {
                state: p.state_problem,
                reload: None,
            }),
            notifier: p.notifier,
            http_addrs: p.http_addrs,
            control_path: p.control_path,
            changed,
            events: Hub::default(),
            eventlog,
            client: ArcSwap::from_pointee(p.client),
            services: ArcSwap::from_pointee(services),
            probes: Mutex::new(std::collections::HashMap::new()),
            supervisors: Mutex::new(std::collections::HashMap::new()),
            reaped: std::sync::atomic::AtomicBool::new(false),
            stopped: Mutex::new(stopped),
            drain,
            bypass_opened: bypass::Opened::default(),
            schedule,
            health: health::HealthBook::default(),
            fleet,
        })
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    pub fn maint(&self) -> arc_swap::Guard<Arc<MaintView>> {
        self.maint.load()
    }

    pub fn pages(&self) -> arc_swap::Guard<Arc<Pages>> {
        self.pages.load()
    }

    /// The published maintenance state, as an owned `Arc` (for use across `.await`).
    pub fn maint_full(&self) -> Arc<MaintView> {
        self.maint.load_full()
    }

    /// The upstreams and route table, as an owned `Arc` (for use across `.await`).
    pub fn services_full(&self) -> Arc<Services> {
        self.services.load_full()
    }

    /// The upstreams and route table in effect.
    pub fn services(&self) -> arc_swap::Guard<Arc<Services>> {
        self.services.load()
    }

    /// The client for custom maintenance pages.
    pub fn client(&self) -> Arc<crate::upstream::client::CustomClient> {
        self.client.load_full()
    }

    pub fn token(&self) -> Arc<String> {
        self.token.load_full()
    }

    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// The request counters of requests that matched no route.
    pub fn unrouted_requests(&self) -> &crate::model::metrics::RequestCounts {
        &self.requests
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// The dashboard's live-update hub.
    pub fn events(&self) -> &Hub {
        &self.events
    }

    /// The operator's event log.
    pub fn eventlog(&self) -> &Arc<EventLog> {
        &self.eventlog
    }

    /// How many changes were published since kinfrad started (`/__status__`'s `seq`).
    pub fn change_seq(&self) -> u64 {
        *self.changed.borrow()
    }

    /// Subscribe to state changes (the value is a change counter).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// An operator's change took effect: wake the live streams, tell systemd, and let the
    /// health API compose afresh (maintenance and stopped services change what it says).
    pub fn publish(&self) {
        self.forget_health_components();
        self.changed.send_modify(|n| *n += 1);
        self.notifier.status(&self.status_line());
    }
}

impl App {
    /// The state file's contents for `maintenance` and the operator-stopped services, with the
    /// drain in effect.
    fn persisted(&self, maintenance: MaintState, stopped_services: Vec<String>) -> PersistedState {
        self.persisted_state(maintenance, stopped_services, self.drain_record())
    }

    /// The state file's contents (with the scheduled windows as they stand).
    fn persisted_state(
        &self,
        maintenance: MaintState,
        stopped_services: Vec<String>,
        drain: Option<crate::model::drain::Drain>,
    ) -> PersistedState {
        PersistedState {
            version: crate::state::FORMAT_VERSION,
            maintenance,
            stopped_services,
            drain,
            schedules: self.schedule.windows(),
            fleet: self.fleet.as_ref().map(|f| f.applied()),
        }
    }
}

async fn write_state(store: &StateFile, state: PersistedState) -> Result<(), OpError> {
    // The file is small; fsync latency is what we pay for "persisted before acknowledged".
    let store = store.clone();
    let r = tokio::task::spawn_blocking(move || store.write(&state))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
    r.map_err(|e| {
        tracing::error!(error = %e, "state write failed; change not applied");
        OpError::new(
            ErrorCode::StateWriteFailed,
            format!("change not applied: {e}"),
        )
    })
}

/// Where the state file lives, for messages.
pub fn state_path(cfg: &Config) -> PathBuf {
    cfg.state_dir.join(crate::paths::STATE_FILE)
}
