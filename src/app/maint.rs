//! Maintenance mode: what an operator may ask, and entering, changing and leaving it, one
//! target's record at a time (the global record, a service's, a route's), or all of them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::eventlog::{Event, Kind};
use crate::model::maintenance::{self, Change, Maintenance, PageUrl, Prepared, Target};
use crate::protocol::{ErrorCode, StatusView};
use crate::state::StateFile;

use super::records::{MaintView, Resets, build_view};
use super::{App, OpError, now_ms, write_state};

/// What an operator may send to enter or change maintenance (from either front end).
#[derive(Debug, Clone, Default)]
pub struct MaintRequest {
    pub url: Option<String>,
    pub message: Option<String>,
    pub issue: Option<String>,
    pub countdown_secs: Option<i64>,
    /// Absolute estimate in Unix ms (HTTP API's `estimatedCompletion`).
    pub eta_ms: Option<i64>,
    /// Which records: `ALL` (or nothing), a service name, a route spec, or a comma-separated
    /// list of them.
    pub target: Option<String>,
}

impl App {
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

    pub(super) async fn to_change(&self, req: &MaintRequest, now: u64) -> Result<Change, OpError> {
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
            // Validated above: 0 ..= 30 days.
            c.countdown_secs = Some(s.max(0) as u64);
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
        Ok(c)
    }

    /// The targets `spec` names (nothing: the global record). Each must be a configured
    /// service or route, or pass `also` (an active record whose service left the config can
    /// still be left).
    pub(super) fn targets(
        &self,
        spec: Option<&str>,
        also: impl Fn(&Target) -> bool,
    ) -> Result<Vec<Target>, OpError> {
        let list = Target::parse_list(spec.unwrap_or(""))
            .map_err(|m| OpError::new(ErrorCode::InvalidArgument, format!("target: {m}")))?;
        let unknown: Vec<String> = list
            .iter()
            .filter(|t| !self.target_known(t) && !also(t))
            .map(|t| t.to_string())
            .collect();
        if unknown.is_empty() {
            return Ok(list);
        }
        let svc = self.services.load();
        let names: Vec<&str> = svc.list.iter().map(|u| u.name.as_str()).collect();
        let mut routes: Vec<String> = svc
            .table
            .routes()
            .iter()
            .map(|r| r.spec.to_string())
            .collect();
        routes.sort();
        let or_none = |v: Vec<String>| {
            if v.is_empty() {
                "none configured".to_string()
            } else {
                v.join(", ")
            }
        };
        Err(OpError::new(
            ErrorCode::InvalidArgument,
            format!(
                "target: unknown route or service {} (services: {}; routes: {}; or ALL)",
                unknown.join(", "),
                or_none(names.iter().map(|s| s.to_string()).collect()),
                or_none(routes),
            ),
        ))
    }

    /// Is `t` the global record, or a service or route of the config in effect?
    pub(super) fn target_known(&self, t: &Target) -> bool {
        let svc = self.services.load();
        match t {
            Target::All => true,
            Target::Service(n) => svc.get(n).is_some(),
            Target::Route(r) => svc.table.routes().iter().any(|x| &x.spec == r),
        }
    }

    /// The counters entering `fresh` resets: the configured routes a fresh record answers in
    /// `view`, and the unrouted count when the global record is one of them.
    fn resets_for(&self, view: &MaintView, fresh: &[Target]) -> Resets {
        let svc = self.services.load();
        let routes = svc
            .table
            .routes()
            .iter()
            .filter(|r| {
                view.for_route(Some(r))
                    .is_some_and(|a| fresh.contains(&a.record.target))
            })
            .map(|r| r.spec.clone())
            .collect();
        Resets {
            routes,
            unrouted: fresh.contains(&Target::All),
        }
    }

    /// Persist `view` (with `resets`) and publish it. Called with the store lock held.
    async fn commit(
        &self,
        store: &StateFile,
        view: MaintView,
        resets: &Resets,
    ) -> Result<(), OpError> {
        let (st, tick) = self.maint_state_of(&view, resets);
        write_state(store, self.persisted(st, self.stopped_list())).await?;
        self.apply_resets(resets);
        self.hits_flushed(tick);
        self.maint.store(Arc::new(view));
        Ok(())
    }

    /// Enter maintenance for each target of `req` (none: the global record). A target already
    /// in maintenance is changed instead (start time and hits kept); a fresh one starts from
    /// what was kept for it (`update` while off), with `req` on top, and its routes' hit
    /// counters start again from 0. Answers the first target's view.
    pub async fn enter(&self, req: MaintRequest) -> Result<StatusView, OpError> {
        let now = now_ms();
        let active = self.maint.load_full();
        let targets = self.targets(req.target.as_deref(), |t| active.find(t).is_some())?;
        let change = self.to_change(&req, now).await?;
        let store = self.store.lock().await;
        let cur = self.maint.load_full();
        let mut records = drafts(&cur);
        let mut prepared = cur.prepared.clone();
        let mut fresh = Vec::new();
        for t in &targets {
            if let Some((m, _)) = records.iter_mut().find(|(m, _)| &m.target == t) {
                m.apply(change.clone());
                continue;
            }
            let base = match prepared.iter().position(|p| &p.target == t) {
                Some(i) => prepared.remove(i).to_change(now),
                None => Change::default(),
            };
            let mut m = Maintenance::begin_for(t.clone(), base, now);
            m.apply(change.clone());
            records.push((m, Arc::new(AtomicU64::new(0))));
            fresh.push(t.clone());
        }
        let view = build_view(&self.pages.load(), records, prepared, now)
            .map_err(|e| OpError::new(ErrorCode::Internal, e))?;
        let resets = self.resets_for(&view, &fresh);
        let entered: Vec<Maintenance> = targets
            .iter()
            .filter_map(|t| view.find(t).map(|a| a.record.clone()))
            .collect();
        self.commit(&store, view, &resets).await?;
        drop(store);
        for m in &entered {
            let t = &m.target;
            if fresh.contains(t) {
                let why = match &m.page_url {
                    Some(u) => format!("{} (page {u})", m.message),
                    None => m.message.clone(),
                };
                self.note(Kind::MaintenanceOn, t, why);
            } else {
                tracing::info!(target_routes = %t, maint_message = %m.message, page_url = ?m.page_url, "maintenance changed");
            }
        }
        self.publish();
        Ok(self.target_view(&targets[0]))
    }

    /// Change what the page of each target of `req` (none: the global record) shows. A target
    /// not in maintenance keeps the change for the next time it enters (seed scripts set the
    /// message and countdown before the window starts); nobody is cut off by an update.
    /// Answers the first target's view (`prepared: true` when it is not active).
    pub async fn update(&self, req: MaintRequest) -> Result<StatusView, OpError> {
        let now = now_ms();
        let active = self.maint.load_full();
        let targets = self.targets(req.target.as_deref(), |t| active.find(t).is_some())?;
        let change = self.to_change(&req, now).await?;
        let store = self.store.lock().await;
        let cur = self.maint.load_full();
        let mut records = drafts(&cur);
        let mut prepared = cur.prepared.clone();
        let mut notes = Vec::new();
        for t in &targets {
            if let Some((m, _)) = records.iter_mut().find(|(m, _)| &m.target == t) {
                m.apply(change.clone());
                notes.push(m.clone());
                continue;
            }
            let i = match prepared.iter().position(|p| &p.target == t) {
                Some(i) => i,
                None => {
                    prepared.push(Prepared::new(t.clone()));
                    prepared.len() - 1
                }
            };
            prepared[i].absorb(&change);
            if prepared[i].is_empty() {
                prepared.remove(i);
            }
        }
        let view = build_view(&self.pages.load(), records, prepared, now)
            .map_err(|e| OpError::new(ErrorCode::Internal, e))?;
        self.commit(&store, view, &Resets::default()).await?;
        drop(store);
        for t in &targets {
            match notes.iter().find(|m| &m.target == t) {
                Some(m) => {
                    tracing::info!(target_routes = %t, maint_message = %m.message, issue = %m.current_issue, eta_ms = ?m.estimated_completion_ms, "maintenance status updated")
                }
                None => {
                    tracing::info!(target_routes = %t, "maintenance settings kept for the next window")
                }
            }
        }
        self.publish();
        Ok(self.target_view(&targets[0]))
    }

    /// Leave maintenance for each target `target` names (none: the global record only; other
    /// records stay). A target not in maintenance is a no-op success. Answers the first
    /// target's view.
    pub async fn exit(&self, target: Option<&str>) -> Result<StatusView, OpError> {
        let cur = self.maint.load_full();
        let targets = self.targets(target, |t| cur.find(t).is_some())?;
        self.leave(|t| targets.contains(t)).await?;
        Ok(self.target_view(&targets[0]))
    }

    /// Leave maintenance everywhere: every record. Answers the global view.
    pub async fn exit_all(&self) -> Result<StatusView, OpError> {
        self.leave(|_| true).await?;
        Ok(self.status_view())
    }

    /// Remove the active records `gone` picks.
    async fn leave(&self, gone: impl Fn(&Target) -> bool) -> Result<(), OpError> {
        let store = self.store.lock().await;
        let cur = self.maint.load_full();
        let (out, stay): (Vec<_>, Vec<_>) =
            drafts(&cur).into_iter().partition(|(m, _)| gone(&m.target));
        if out.is_empty() {
            return Ok(());
        }
        let view = build_view(&self.pages.load(), stay, cur.prepared.clone(), now_ms())
            .map_err(|e| OpError::new(ErrorCode::Internal, e))?;
        self.commit(&store, view, &Resets::default()).await?;
        drop(store);
        for (m, hits) in &out {
            let hits = hits.load(Ordering::Relaxed);
            self.note(
                Kind::MaintenanceOff,
                &m.target,
                format!("left; {hits} requests answered with the maintenance page"),
            );
        }
        self.publish();
        Ok(())
    }

    /// Every active record and every target with settings kept for later (`kinfractl maint
    /// list`).
    pub fn maint_list(&self) -> Vec<StatusView> {
        self.record_views()
    }

    /// Persist the hit counters if they moved (called periodically and at shutdown).
    pub async fn flush_hits(&self) {
        if !self.hits_moved() {
            return;
        }
        let store = self.store.lock().await;
        let (st, tick) = self.maint_state_of(&self.maint.load(), &Resets::default());
        match write_state(&store, self.persisted(st, self.stopped_list())).await {
            Ok(()) => self.hits_flushed(tick),
            Err(e) => {
                tracing::warn!(error = %e.message, "could not persist maintenance hit counters")
            }
        }
    }
}

/// The active records of `view` with their live counters, to change and build anew.
fn drafts(view: &MaintView) -> Vec<(Maintenance, Arc<AtomicU64>)> {
    view.active
        .iter()
        .map(|a| (a.record.clone(), a.hits.clone()))
        .collect()
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

impl App {
    /// Record a maintenance event of `target` (a route target names its route).
    fn note(&self, kind: Kind, target: &Target, reason: String) {
        let e = match target {
            Target::Route(r) => {
                let services = self.services();
                let svc = services
                    .list
                    .iter()
                    .find(|u| u.cfg().routes.contains(r))
                    .map(|u| u.name.clone())
                    .unwrap_or_default();
                Event::new(kind, svc, reason).route(r.to_string())
            }
            t => Event::new(kind, t.to_string(), reason),
        };
        self.eventlog.record(e);
    }
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
