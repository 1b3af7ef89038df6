//! Maintenance mode: what an operator may ask, and entering, changing and leaving it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::model::maintenance::{self, Change, Maintenance, PageUrl, Target};
use crate::pages::Pages;
use crate::protocol::{ErrorCode, StatusView};
use crate::state::StateFile;

use super::{App, MaintView, OpError, now_ms, write_state};

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
        let state = self.persisted(next, self.stopped_list());
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
        let state = self.persisted(Some(m.clone()), self.stopped_list());
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
}

pub(super) fn build_view(
    pages: &Pages,
    record: Option<Maintenance>,
    now: u64,
) -> Result<MaintView, String> {
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
