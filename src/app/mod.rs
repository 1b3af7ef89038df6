//! `App`: the daemon's shared state and the operations both front ends (HTTP API and control
//! socket) call. Read-mostly data is behind `ArcSwap`, so the request path never takes a lock;
//! writers are serialized by the state-file mutex and persist before they publish.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::sync::watch;

use crate::config::{Config, Overrides};
use crate::maintenance::{self, Change, InvalidInput, Maintenance, PageUrl, Target};
use crate::notify::Notifier;
use crate::pages::Pages;
use crate::protocol::{ErrorCode, StatusReport, StatusView};
use crate::routes::{Route, RouteTable};
use crate::state::{PersistedState, StateFile};
use crate::upstream::Upstream;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The published maintenance state with its pre-rendered page.
#[derive(Debug, Default)]
pub struct MaintView {
    pub record: Option<Maintenance>,
    /// Parsed custom page URL, when one is set.
    pub page_url: Option<PageUrl>,
    /// The rendered default maintenance page.
    pub html: Bytes,
}

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

/// What an operator may send to enter or change maintenance (from either front end).
#[derive(Debug, Clone, Default)]
pub struct MaintRequest {
    pub url: Option<String>,
    pub message: Option<String>,
    pub issue: Option<String>,
    pub countdown_secs: Option<i64>,
    /// Absolute estimate in Unix ms (HTTP API's `estimatedCompletion`).
    pub eta_ms: Option<i64>,
    pub target: Option<String>,
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
    hits: AtomicU64,
    persisted_hits: AtomicU64,
    /// Open HTTP connections.
    pub connections: AtomicU64,
    token: ArcSwap<String>,
    store: tokio::sync::Mutex<StateFile>,
    problems: Mutex<Problems>,
    notifier: Notifier,
    /// Addresses the HTTP listeners are bound to.
    pub http_addrs: Vec<SocketAddr>,
    pub control_path: String,
    changed: watch::Sender<u64>,
    /// Live-update frames for `/__events__` (built by `events::run`).
    events: crate::events::Hub,
    client: ArcSwap<crate::custom::CustomClient>,
    services: ArcSwap<Services>,
    /// Stop switches of the running health tasks, by service name.
    probes: Mutex<std::collections::HashMap<String, watch::Sender<bool>>>,
    /// Supervisors of the services kinfrad runs: the spec they run and their stop switch.
    supervisors: Mutex<std::collections::HashMap<String, Supervised>>,
    /// Leftovers of a previous kinfrad were looked for (once, before the first child).
    reaped: std::sync::atomic::AtomicBool,
    /// Services an operator stopped; persisted in state.json (written under `store`).
    stopped: Mutex<std::collections::BTreeSet<String>>,
}

struct Supervised {
    spec: crate::service::ProcessConfig,
    stop: watch::Sender<bool>,
    handle: crate::supervise::Handle,
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
    /// Build from config, reusing live upstreams (health, breaker) of services that stay.
    pub fn build(cfg: &Config, old: Option<&Services>) -> Result<Services, String> {
        let mut list = Vec::new();
        let mut routes = Vec::new();
        for sc in &cfg.services {
            let up = match old.and_then(|o| o.list.iter().find(|u| u.name == sc.name)) {
                Some(u) => {
                    u.reconfigure(sc.clone(), cfg.upstream_ca_file.as_deref())?;
                    u.clone()
                }
                None => Arc::new(Upstream::new(sc.clone(), cfg.upstream_ca_file.as_deref())?),
            };
            for spec in &sc.routes {
                routes.push(Route {
                    spec: spec.clone(),
                    target: up.clone(),
                    strip_prefix: sc.strip_prefix,
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
    pub client: crate::custom::CustomClient,
}

fn lock_problems(m: &Mutex<Problems>) -> std::sync::MutexGuard<'_, Problems> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl App {
    pub fn new(p: AppParts) -> Result<App, String> {
        let hits = p.state.maintenance.as_ref().map(|m| m.hits).unwrap_or(0);
        let stopped: std::collections::BTreeSet<String> =
            p.state.stopped_services.iter().cloned().collect();
        let view = build_view(&p.pages, p.state.maintenance, now_ms())?;
        let (changed, _) = watch::channel(0);
        let services = Services::build(&p.config, None)?;
        let mut id = [0u8; 8];
        {
            use std::io::Read;
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut id))
                .map_err(|e| format!("/dev/urandom: {e}"))?;
        }
        Ok(App {
            started: Instant::now(),
            instance: crate::token::hex(&id),
            config: ArcSwap::from_pointee(p.config),
            overrides: p.overrides,
            pages: ArcSwap::from_pointee(p.pages),
            maint: ArcSwap::from_pointee(view),
            hits: AtomicU64::new(hits),
            persisted_hits: AtomicU64::new(hits),
            connections: AtomicU64::new(0),
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
            events: crate::events::Hub::default(),
            client: ArcSwap::from_pointee(p.client),
            services: ArcSwap::from_pointee(services),
            probes: Mutex::new(std::collections::HashMap::new()),
            supervisors: Mutex::new(std::collections::HashMap::new()),
            reaped: std::sync::atomic::AtomicBool::new(false),
            stopped: Mutex::new(stopped),
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

    /// The status grid page, rendered now (it is not on a hot path).
    pub fn status_page(&self) -> Bytes {
        let now = std::time::Instant::now();
        let facts: Vec<_> = self
            .services
            .load()
            .list
            .iter()
            .map(|u| crate::pages::FallbackFacts::of(&u.snapshot(now)))
            .collect();
        self.pages.load().render_status(&facts).unwrap_or_else(|e| {
            tracing::error!(error = %e, "status page failed to render");
            Bytes::from_static(b"<!doctype html><title>KInfra</title><p>status unavailable</p>")
        })
    }

    /// The upstreams and route table in effect.
    pub fn services(&self) -> arc_swap::Guard<Arc<Services>> {
        self.services.load()
    }

    /// Start a health task for every upstream that has none; stop those of removed upstreams.
    pub fn sync_probes(self: &Arc<Self>) {
        let services = self.services.load_full();
        let mut probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        probes.retain(|name, stop| {
            let keep = services.get(name).is_some();
            if !keep {
                let _ = stop.send(true);
            }
            keep
        });
        for up in &services.list {
            if probes.contains_key(&up.name) {
                continue;
            }
            let (tx, rx) = watch::channel(false);
            probes.insert(up.name.clone(), tx);
            let weak = Arc::downgrade(self);
            tokio::spawn(crate::health::run(up.clone(), rx, move |u| {
                if let Some(app) = weak.upgrade() {
                    app.upstream_changed(u);
                }
            }));
        }
    }

    /// Stop every health task.
    /// Start a supervisor for every service with `command` that has none (or whose process
    /// settings changed on reload); stop those of removed services.
    pub fn sync_supervisors(self: &Arc<Self>) {
        let services = self.services.load_full();
        let mut sups = self.supervisors.lock().unwrap_or_else(|p| p.into_inner());
        if !self.reaped.swap(true, Ordering::AcqRel) {
            // Before the first child: what a crashed predecessor left is a leftover.
            let owner = self.config().state_dir.display().to_string();
            let n = crate::supervise::reap_leftovers(&owner);
            if n > 0 {
                tracing::warn!(
                    processes = n,
                    "killed processes a previous kinfrad left behind"
                );
            }
        }
        sups.retain(|name, s| {
            let keep = services
                .get(name)
                .and_then(|u| u.cfg().process.clone())
                .is_some_and(|p| p == s.spec);
            if !keep {
                let _ = s.stop.send(true);
            }
            keep
        });
        for up in &services.list {
            let Some(spec) = up.cfg().process.clone() else {
                up.set_process(None);
                continue;
            };
            if let Some(s) = sups.get(&up.name) {
                up.set_process(Some(Arc::new(s.handle.clone())));
                continue;
            }
            let (tx, rx) = watch::channel(false);
            let ps = crate::supervise::ProcessSpec {
                name: up.name.clone(),
                argv: spec.argv.clone(),
                cwd: spec.cwd.clone(),
                env: spec.env.clone(),
                preferred_port: spec.preferred_port,
                port_range: spec.port_range,
                restart: spec.restart,
                stop_signal: spec.stop_signal,
                stop_timeout: spec.stop_timeout,
                log_lines: spec.log_lines,
                instance: self.instance.clone(),
                owner: self.config().state_dir.display().to_string(),
                notify_dir: Some(self.config().state_dir.join("notify")),
            };
            let weak_up = Arc::downgrade(up);
            let start = !self
                .stopped
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&up.name);
            let handle = crate::supervise::spawn(
                ps,
                start,
                move |port| {
                    if let Some(u) = weak_up.upgrade() {
                        u.process_started(port);
                    }
                },
                rx,
            );
            // Page and status follow the process's state changes.
            let mut status = handle.status.clone();
            let weak_app = Arc::downgrade(self);
            let weak_up = Arc::downgrade(up);
            tokio::spawn(async move {
                while status.changed().await.is_ok() {
                    let (Some(app), Some(u)) = (weak_app.upgrade(), weak_up.upgrade()) else {
                        return;
                    };
                    u.process_changed();
                    app.upstream_changed(&u);
                }
            });
            up.set_process(Some(Arc::new(handle.clone())));
            sups.insert(
                up.name.clone(),
                Supervised {
                    spec,
                    stop: tx,
                    handle,
                },
            );
        }
    }

    /// Stop every supervised process, waiting (at most their stop timeouts) until they are gone.
    pub async fn stop_supervisors(&self) {
        let stopping: Vec<(
            watch::Receiver<crate::supervise::ProcStatus>,
            std::time::Duration,
        )> = {
            let mut sups = self.supervisors.lock().unwrap_or_else(|p| p.into_inner());
            sups.drain()
                .map(|(_, s)| {
                    let _ = s.stop.send(true);
                    (s.handle.status.clone(), s.spec.stop_timeout)
                })
                .collect()
        };
        for (mut st, limit) in stopping {
            let _ = tokio::time::timeout(
                limit + std::time::Duration::from_secs(1),
                st.wait_for(|s| s.pid.is_none()),
            )
            .await;
        }
    }

    /// An operator's start / stop / restart of a supervised service.
    pub async fn service_command(
        &self,
        name: &str,
        cmd: crate::supervise::Command,
    ) -> Result<(), OpError> {
        let handle = self.supervised(name)?;
        // Operator intent first: persisted before it is acted on and acknowledged.
        {
            let store = self.store.lock().await;
            let mut next = self.stopped_list();
            match cmd {
                crate::supervise::Command::Stop => next.push(name.to_string()),
                _ => next.retain(|n| n != name),
            }
            next.sort();
            next.dedup();
            if next != self.stopped_list() {
                let maint = self.maint.load().record.clone().map(|mut m| {
                    m.hits = self.hits();
                    m
                });
                let state = persisted(maint, next.clone());
                write_state(&store, state).await?;
                *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) =
                    next.into_iter().collect();
            }
        }
        handle.commands.send(cmd).await.map_err(|_| {
            OpError::new(
                ErrorCode::Internal,
                format!("the supervisor of {name:?} is gone"),
            )
        })
    }

    /// A deploy script's progress for a service's loading page (`kinfractl progress`).
    pub fn service_progress(
        &self,
        name: &str,
        message: Option<String>,
        steps: Vec<crate::protocol::StepSpec>,
        clear: bool,
    ) -> Result<(), OpError> {
        let up = self.upstream(name)?;
        if clear {
            up.set_progress(None);
            self.upstream_changed(&up);
            return Ok(());
        }
        let bad =
            |e: maintenance::InvalidInput| OpError::new(ErrorCode::InvalidArgument, e.to_string());
        let message = message
            .map(|m| maintenance::clean_text("message", &m))
            .transpose()
            .map_err(bad)?;
        if steps.len() > crate::supervise::MAX_STEPS {
            return Err(OpError::new(
                ErrorCode::InvalidArgument,
                format!("at most {} steps", crate::supervise::MAX_STEPS),
            ));
        }
        let mut out = Vec::new();
        for s in steps {
            let text = maintenance::clean_text("step", &s.text).map_err(bad)?;
            if text.is_empty() {
                return Err(OpError::new(
                    ErrorCode::InvalidArgument,
                    "a step needs text",
                ));
            }
            let status = match s.status.as_str() {
                "pending" => "pending",
                "active" => "active",
                "completed" => "completed",
                "failed" => "failed",
                o => {
                    return Err(OpError::new(
                        ErrorCode::InvalidArgument,
                        format!("step status {o:?} must be pending, active, completed or failed"),
                    ));
                }
            };
            out.push(crate::upstream::Step { text, status });
        }
        if message.is_none() && out.is_empty() {
            return Err(OpError::new(
                ErrorCode::InvalidArgument,
                "give a message, steps, or clear",
            ));
        }
        up.set_progress(Some((message, out)));
        self.upstream_changed(&up);
        Ok(())
    }

    /// Services an operator stopped, sorted.
    fn stopped_list(&self) -> Vec<String> {
        self.stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// The last `n` captured lines of a supervised service, and how many were dropped.
    pub fn service_logs(
        &self,
        name: &str,
        n: usize,
    ) -> Result<(Vec<crate::supervise::LogLine>, u64), OpError> {
        let h = self.supervised(name)?;
        Ok((h.logs.tail(n), h.logs.dropped()))
    }

    /// The configured service `name`.
    fn upstream(&self, name: &str) -> Result<Arc<Upstream>, OpError> {
        self.services.load().get(name).cloned().ok_or_else(|| {
            OpError::new(
                ErrorCode::InvalidArgument,
                format!("no service named {name:?}"),
            )
        })
    }

    /// The supervisor of service `name`, which kinfrad must run (`command`).
    fn supervised(&self, name: &str) -> Result<Arc<crate::supervise::Handle>, OpError> {
        self.upstream(name)?.process().clone().ok_or_else(|| {
            OpError::new(
                ErrorCode::InvalidArgument,
                format!("{name:?} is not run by kinfrad (it has a url, not a command)"),
            )
        })
    }

    pub fn stop_probes(&self) {
        let mut probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        for (_, stop) in probes.drain() {
            let _ = stop.send(true);
        }
    }

    /// An upstream's state moved: re-render its page and publish.
    pub fn upstream_changed(&self, up: &Arc<Upstream>) {
        self.fallback_page(up);
        self.publish();
    }

    /// The upstream's fallback page for its current state, re-rendered only after a change.
    pub fn fallback_page(&self, up: &Upstream) -> Arc<crate::upstream::Rendered> {
        let cur = up.rendered.load_full();
        let v = up.version();
        if cur.version == v && !cur.html.is_empty() {
            return cur;
        }
        let now = std::time::Instant::now();
        let kind = up.page_kind(now);
        let facts = crate::pages::FallbackFacts::of(&up.snapshot(now));
        let html = match self.pages.load().render_fallback(kind, &facts) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(service = %up.name, error = %e, "fallback page failed to render");
                Bytes::from_static(
                    b"<!doctype html><title>503</title><h1>Service temporarily unavailable</h1>",
                )
            }
        };
        let r = Arc::new(crate::upstream::Rendered {
            kind,
            html,
            version: v,
        });
        up.rendered.store(r.clone());
        r
    }

    /// The client for custom maintenance pages.
    pub fn client(&self) -> Arc<crate::custom::CustomClient> {
        self.client.load_full()
    }

    pub fn token(&self) -> Arc<String> {
        self.token.load_full()
    }

    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Count a request answered by maintenance.
    pub fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// The dashboard's live-update hub.
    pub fn events(&self) -> &crate::events::Hub {
        &self.events
    }

    /// Subscribe to state changes (the value is a change counter).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn status_view(&self) -> StatusView {
        let v = self.maint.load();
        maintenance::status_view(v.record.as_ref(), self.hits(), now_ms())
    }

    pub fn problems(&self) -> Vec<String> {
        let p = lock_problems(&self.problems);
        p.state.iter().chain(p.reload.iter()).cloned().collect()
    }

    pub fn report(&self) -> StatusReport {
        let cfg = self.config();
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_secs: self.uptime().as_secs(),
            config: cfg.source.to_string(),
            listen: self.http_addrs.iter().map(|a| a.to_string()).collect(),
            control_socket: self.control_path.clone(),
            state_file: cfg
                .state_dir
                .join(crate::paths::STATE_FILE)
                .display()
                .to_string(),
            problems: self.problems(),
            open_connections: self.connections.load(Ordering::Relaxed),
            maintenance: self.status_view(),
            services: self.service_reports(),
        }
    }

    /// Every service's state, for `kinfractl status`.
    pub fn service_reports(&self) -> Vec<crate::protocol::ServiceReport> {
        let now = std::time::Instant::now();
        let maint = self.maint.load();
        self.services
            .load()
            .list
            .iter()
            .map(|up| {
                let s = up.snapshot(now);
                let proc = up.process_status();
                crate::protocol::ServiceReport {
                    name: s.name,
                    url: s.url,
                    routes: up.cfg().routes.iter().map(|r| r.to_string()).collect(),
                    state: s.state.to_string(),
                    health: s.health.label().to_string(),
                    circuit_state: s.circuit.as_str().to_string(),
                    circuit_failures: s.circuit_failures,
                    circuit_opened_secs_ago: s.circuit_opened_secs_ago,
                    requests: s.requests,
                    failures: s.failures,
                    last_error: s.error_detail,
                    in_maintenance: maint
                        .record
                        .as_ref()
                        .is_some_and(|m| m.target.covers(&up.name)),
                    supervised: proc.is_some(),
                    pid: proc.as_ref().and_then(|p| p.pid),
                    port: Some(up.cfg().url.port),
                    uptime_secs: match &proc {
                        Some(p) => p
                            .pid
                            .and(p.started_at)
                            .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
                            .map(|d| d.as_secs()),
                        None => (s.uptime_secs > 0).then_some(s.uptime_secs),
                    },
                    restarts: s.restarts,
                    last_exit: s.last_exit,
                }
            })
            .collect()
    }

    /// The one-line STATUS= text.
    pub fn status_line(&self) -> String {
        let v = self.maint.load();
        let svc = self.services.load();
        let up = if svc.list.is_empty() {
            String::new()
        } else {
            let healthy = svc
                .list
                .iter()
                .filter(|u| u.health() == crate::upstream::Health::Healthy)
                .count();
            format!("; {healthy}/{} services up", svc.list.len())
        };
        let mut s = match &v.record {
            None => format!("Serving on {}{up}; maintenance off", self.listen_summary()),
            Some(m) => {
                let eta = match m.estimated_completion_ms {
                    Some(e) => format!(", ETA {}", crate::protocol::fmt::iso(e)),
                    None => String::new(),
                };
                let page = if m.page_url.is_some() {
                    ", custom page"
                } else {
                    ""
                };
                format!(
                    "Maintenance ON ({}){eta}{page}: {}",
                    m.target,
                    truncate(&m.message, 80)
                )
            }
        };
        for p in self.problems() {
            s.push_str(" | PROBLEM: ");
            s.push_str(&truncate(&p, 160));
        }
        s
    }

    fn listen_summary(&self) -> String {
        self.http_addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn publish(&self) {
        self.changed.send_modify(|n| *n += 1);
        self.notifier.status(&self.status_line());
    }

    /// Refuse a custom page URL that leads back to this daemon (that would loop): one whose
    /// host is, or resolves to, an address of one of its own HTTP listeners. A name that does
    /// not resolve within [`PAGE_LOOKUP_TIMEOUT`] is refused too: it could be neither checked
    /// nor fetched.
    pub async fn check_page_url(&self, url: &PageUrl) -> Result<(), OpError> {
        let addrs: Vec<SocketAddr> = match url.host.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, url.port)],
            Err(_) => {
                let lookup = tokio::net::lookup_host((url.host.as_str(), url.port));
                let unresolved = |why: String| {
                    OpError::new(
                        ErrorCode::InvalidArgument,
                        format!("url: {} does not resolve ({why})", url.host),
                    )
                };
                match tokio::time::timeout(PAGE_LOOKUP_TIMEOUT, lookup).await {
                    Ok(Ok(it)) => it.collect(),
                    Ok(Err(e)) => return Err(unresolved(e.to_string())),
                    Err(_) => {
                        return Err(unresolved(format!(
                            "no answer within {} s",
                            PAGE_LOOKUP_TIMEOUT.as_secs()
                        )));
                    }
                }
            }
        };
        if addrs.is_empty() {
            return Err(OpError::new(
                ErrorCode::InvalidArgument,
                format!("url: {} does not resolve (no addresses)", url.host),
            ));
        }
        let locals = local_ips();
        if let Some(a) = addrs
            .iter()
            .find(|a| is_own_listener(**a, &self.http_addrs, &locals))
        {
            let via = if url.host.parse::<std::net::IpAddr>().is_ok() {
                String::new()
            } else {
                format!(" ({} is {})", url.host, a.ip())
            };
            return Err(OpError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "url: {}{via} points back at kinfrad itself (listening on {}); that would loop",
                    url.uri,
                    self.listen_summary()
                ),
            ));
        }
        Ok(())
    }

    async fn to_change(&self, req: MaintRequest, now: u64) -> Result<Change, OpError> {
        let mut c = Change::default();
        if let Some(m) = &req.message {
            c.message = Some(maintenance::clean_text("message", m)?);
        }
        if let Some(i) = &req.issue {
            c.current_issue = Some(maintenance::clean_text("issue", i)?);
        }
        if let (Some(_), Some(_)) = (req.countdown_secs, req.eta_ms) {
            return Err(OpError::new(
                ErrorCode::InvalidArgument,
                "give either a countdown or an estimated completion time, not both",
            ));
        }
        if let Some(s) = req.countdown_secs {
            c.eta_ms = Some(maintenance::countdown_to_eta("countdown", s, now)?);
        }
        if let Some(e) = req.eta_ms {
            c.eta_ms = Some(maintenance::check_eta_ms("estimatedCompletion", e, now)?);
        }
        if let Some(u) = &req.url {
            if u.trim().is_empty() {
                c.page_url = Some(None);
            } else {
                let parsed = maintenance::parse_page_url(u)?;
                self.check_page_url(&parsed).await?;
                c.page_url = Some(Some(parsed.uri.to_string()));
            }
        }
        if let Some(t) = &req.target {
            let t = Target::parse(t)
                .map_err(|m| OpError::new(ErrorCode::InvalidArgument, format!("target: {m}")))?;
            if let Target::Routes(ids) = &t {
                let svc = self.services.load();
                let unknown: Vec<&str> = ids
                    .iter()
                    .filter(|id| svc.get(id).is_none())
                    .map(|s| s.as_str())
                    .collect();
                if !unknown.is_empty() {
                    let known: Vec<&str> = svc.list.iter().map(|u| u.name.as_str()).collect();
                    return Err(OpError::new(
                        ErrorCode::InvalidArgument,
                        format!(
                            "target: unknown route id(s) {} (known: {}; or ALL)",
                            unknown.join(", "),
                            if known.is_empty() {
                                "none configured".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    ));
                }
            }
            c.target = Some(t);
        }
        Ok(c)
    }

    /// Persist `next` and publish it. Called with the store lock held.
    async fn commit(&self, store: &StateFile, next: Option<Maintenance>) -> Result<(), OpError> {
        let pages = self.pages.load_full();
        let view = build_view(&pages, next.clone(), now_ms())
            .map_err(|e| OpError::new(ErrorCode::Internal, e))?;
        let state = persisted(next, self.stopped_list());
        write_state(store, state).await?;
        self.maint.store(Arc::new(view));
        Ok(())
    }

    /// Enter maintenance, or change it when already active (start time and hits are kept).
    pub async fn enter(&self, req: MaintRequest) -> Result<StatusView, OpError> {
        let now = now_ms();
        let change = self.to_change(req, now).await?;
        let store = self.store.lock().await;
        let current = self.maint.load().record.clone();
        let next = match current {
            Some(mut m) => {
                m.apply(change);
                m.hits = self.hits();
                m
            }
            None => {
                self.hits.store(0, Ordering::Relaxed);
                Maintenance::begin(change, now)
            }
        };
        let fresh = self.maint.load().record.is_none();
        self.commit(&store, Some(next.clone())).await?;
        self.persisted_hits.store(next.hits, Ordering::Relaxed);
        drop(store);
        if fresh {
            tracing::info!(target_routes = %next.target, maint_message = %next.message, page_url = ?next.page_url, "maintenance entered");
        } else {
            tracing::info!(maint_message = %next.message, page_url = ?next.page_url, "maintenance changed");
        }
        self.publish();
        Ok(self.status_view())
    }

    /// Change what the maintenance page shows; maintenance must be active.
    pub async fn update(&self, req: MaintRequest) -> Result<StatusView, OpError> {
        let now = now_ms();
        let change = self.to_change(req, now).await?;
        let store = self.store.lock().await;
        let Some(mut m) = self.maint.load().record.clone() else {
            return Err(OpError::new(
                ErrorCode::NotInMaintenance,
                "maintenance is not active; enter it first (kinfractl maint enter)",
            ));
        };
        m.apply(change);
        m.hits = self.hits();
        self.commit(&store, Some(m.clone())).await?;
        self.persisted_hits.store(m.hits, Ordering::Relaxed);
        drop(store);
        tracing::info!(maint_message = %m.message, issue = %m.current_issue, eta_ms = ?m.estimated_completion_ms, "maintenance status updated");
        self.publish();
        Ok(self.status_view())
    }

    /// Leave maintenance (a no-op success when not active).
    pub async fn exit(&self) -> Result<StatusView, OpError> {
        let store = self.store.lock().await;
        let was = self.maint.load().record.clone();
        if was.is_none() {
            return Ok(self.status_view());
        }
        self.commit(&store, None).await?;
        drop(store);
        tracing::info!(hits = self.hits(), "maintenance exited");
        self.publish();
        Ok(self.status_view())
    }

    /// Persist the hit counter if it moved (called periodically and at shutdown).
    pub async fn flush_hits(&self) {
        let store = self.store.lock().await;
        let hits = self.hits();
        if hits == self.persisted_hits.load(Ordering::Relaxed) {
            return;
        }
        let Some(mut m) = self.maint.load().record.clone() else {
            return;
        };
        m.hits = hits;
        let state = persisted(Some(m.clone()), self.stopped_list());
        match write_state(&store, state).await {
            Ok(()) => {
                self.persisted_hits.store(hits, Ordering::Relaxed);
                // Keep the published record's counter in step without re-rendering the page.
                let cur = self.maint.load_full();
                if cur.record.as_ref().map(|r| r.start_time_ms) == Some(m.start_time_ms) {
                    self.maint.store(Arc::new(MaintView {
                        record: Some(m),
                        page_url: cur.page_url.clone(),
                        html: cur.html.clone(),
                    }));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e.message, "could not persist maintenance hit counter")
            }
        }
    }

    /// Reload configuration and templates; on failure keep the old ones.
    pub async fn reload(self: &Arc<Self>) -> Result<String, OpError> {
        self.notifier.reloading();
        let result = self.try_reload().await;
        self.sync_supervisors();
        self.sync_probes();
        match &result {
            Ok(src) => {
                lock_problems(&self.problems).reload = None;
                tracing::info!(config = %src, "configuration reloaded");
            }
            Err(e) => {
                lock_problems(&self.problems).reload =
                    Some(format!("reload failed, old config kept: {}", e.message));
                tracing::error!(error = %e.message, "reload failed; keeping the previous configuration");
            }
        }
        self.notifier.ready(&self.status_line());
        self.changed.send_modify(|n| *n += 1);
        result
    }

    async fn try_reload(&self) -> Result<String, OpError> {
        let old = self.config();
        let path = match &old.source {
            crate::config::ConfigSource::File(p) => Some(p.clone()),
            crate::config::ConfigSource::Embedded => None,
        };
        let overrides = self.overrides.clone();
        let loaded = tokio::task::spawn_blocking(
            move || -> Result<(Config, Pages, crate::custom::CustomClient), String> {
                let cfg = Config::load(path.as_deref(), &overrides).map_err(|e| e.to_string())?;
                let pages = Pages::load_with(cfg.templates_dir.as_deref(), &cfg.page_config)?;
                let client = crate::custom::CustomClient::new(cfg.upstream_ca_file.as_deref())?;
                Ok((cfg, pages, client))
            },
        )
        .await
        .map_err(|e| OpError::new(ErrorCode::Internal, e.to_string()))?;
        let (cfg, pages, client) = loaded.map_err(|e| OpError::new(ErrorCode::ReloadFailed, e))?;
        for (what, changed) in [
            ("listen", cfg.listen != old.listen),
            ("control_socket", cfg.control_socket != old.control_socket),
            ("state_dir", cfg.state_dir != old.state_dir),
        ] {
            if changed {
                tracing::warn!(
                    key = what,
                    "changed in the config; takes effect after a restart"
                );
            }
        }
        let token = if cfg.token_path() != old.token_path() {
            let path = cfg.token_path();
            let generate = cfg.admin_token_file.is_none();
            Some(
                tokio::task::spawn_blocking(move || crate::token::load_or_create(&path, generate))
                    .await
                    .map_err(|e| OpError::new(ErrorCode::Internal, e.to_string()))?
                    .map_err(|e| OpError::new(ErrorCode::ReloadFailed, e.to_string()))?,
            )
        } else {
            None
        };
        let services = Services::build(&cfg, Some(&self.services.load_full()))
            .map_err(|e| OpError::new(ErrorCode::ReloadFailed, e))?;
        // Re-render the maintenance page with the new templates under the writer lock.
        let _store = self.store.lock().await;
        let cur = self.maint.load_full();
        let view = build_view(&pages, cur.record.clone(), now_ms())
            .map_err(|e| OpError::new(ErrorCode::ReloadFailed, e))?;
        let src = cfg.source.to_string();
        for (name, from) in &pages.sources {
            tracing::info!(template = %name, source = %from, "template loaded");
        }
        self.pages.store(Arc::new(pages));
        self.maint.store(Arc::new(view));
        self.config.store(Arc::new(cfg));
        self.client.store(Arc::new(client));
        // Pages of every upstream are re-rendered on their next use.
        for up in &services.list {
            up.rendered
                .store(Arc::new(crate::upstream::Rendered::default()));
        }
        self.services.store(Arc::new(services));
        if let Some(t) = token {
            self.token.store(Arc::new(t));
        }
        Ok(src)
    }
}

fn build_view(pages: &Pages, record: Option<Maintenance>, now: u64) -> Result<MaintView, String> {
    let Some(m) = record else {
        return Ok(MaintView::default());
    };
    let html = pages.render_maintenance(&m, now)?;
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
    Ok(MaintView {
        record: Some(m),
        page_url,
        html,
    })
}

/// The state file's contents for `maintenance` and the operator-stopped services.
fn persisted(maintenance: Option<Maintenance>, stopped_services: Vec<String>) -> PersistedState {
    PersistedState {
        version: crate::state::FORMAT_VERSION,
        maintenance,
        stopped_services,
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

fn truncate(s: &str, n: usize) -> String {
    let one: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one.chars().count() <= n {
        one
    } else {
        let mut t: String = one.chars().take(n).collect();
        t.push('…');
        t
    }
}

/// How long a custom page URL's host name may take to resolve.
pub const PAGE_LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Is `a` one of the listeners `own` (with `locals`, the host's own addresses)? Same port, and
/// the same address, a loopback or unspecified one, or a local one when a listener takes every
/// address. IPv4-mapped IPv6 addresses count as the IPv4 address they map.
fn is_own_listener(a: SocketAddr, own: &[SocketAddr], locals: &[std::net::IpAddr]) -> bool {
    let ip = a.ip().to_canonical();
    own.iter().any(|l| {
        let lip = l.ip().to_canonical();
        l.port() == a.port()
            && (lip == ip
                || ip.is_loopback()
                || ip.is_unspecified()
                || (lip.is_unspecified() && locals.iter().any(|x| x.to_canonical() == ip)))
    })
}

fn local_ips() -> Vec<std::net::IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|i| i.address)
        .filter_map(|a| {
            if let Some(v4) = a.as_sockaddr_in() {
                Some(std::net::IpAddr::V4(v4.ip()))
            } else {
                a.as_sockaddr_in6().map(|v6| std::net::IpAddr::V6(v6.ip()))
            }
        })
        .collect()
}

/// Where the state file lives, for messages.
pub fn state_path(cfg: &Config) -> PathBuf {
    cfg.state_dir.join(crate::paths::STATE_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_listeners_are_recognised_in_every_spelling() {
        let sa = |s: &str| s.parse::<SocketAddr>().expect(s);
        let lo = [sa("127.0.0.1:9100")];
        for own in [
            "127.0.0.1:9100",
            "127.0.0.2:9100",
            "[::1]:9100",
            "[::ffff:127.0.0.1]:9100",
            "0.0.0.0:9100",
            "[::]:9100",
            "[::ffff:0.0.0.0]:9100",
        ] {
            assert!(is_own_listener(sa(own), &lo, &[]), "{own}");
        }
        assert!(!is_own_listener(sa("127.0.0.1:9101"), &lo, &[]));
        assert!(!is_own_listener(sa("192.0.2.1:9100"), &lo, &[]));
        // A listener on every address: the host's own addresses are it too.
        let any = [sa("[::]:80")];
        let locals: Vec<std::net::IpAddr> = vec!["192.0.2.7".parse().expect("ip")];
        assert!(is_own_listener(sa("192.0.2.7:80"), &any, &locals));
        assert!(is_own_listener(sa("[::ffff:192.0.2.7]:80"), &any, &locals));
        assert!(!is_own_listener(sa("192.0.2.8:80"), &any, &locals));
        // A listener on one mapped address is that IPv4 address.
        let mapped = [sa("[::ffff:192.0.2.7]:80")];
        assert!(is_own_listener(sa("192.0.2.7:80"), &mapped, &[]));
    }
}
