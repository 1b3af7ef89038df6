//! The fleet: several kinfrads sharing one intent (maintenance records, a drain, operator stops)
//! through etcd. `Fleet` holds this host's side: the etcd client, the link's state, the intent
//! it applied last (persisted in `state.json`), and every host's presence as last seen.
//!
//! Files: `change` (an operator's `--fleet` change: read, validate, compare-and-put), `apply`
//! (a new intent → the same operations as local commands), `sync` (the task that reads, watches
//! and keeps this host's presence), and here the state and the reports.

mod apply;
mod change;
mod sync;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::config::fleet::{FleetConfig, TlsFiles};
use crate::etcd::Etcd;
use crate::model::fleet::{Intent, Presence};
use crate::protocol::fmt::iso;
use crate::protocol::{
    ErrorCode, FleetDrain, FleetLink, FleetNode, FleetNodeService, FleetRecord, FleetReport,
    FleetSummary,
};
use crate::state::FleetApplied;
use crate::upstream::client::read_pem_certs;

use super::{App, OpError};

pub use sync::run;

/// Most problems kept at once.
const MAX_PROBLEMS: usize = 32;

/// The link to etcd as this host last knew it.
#[derive(Debug, Clone, Default)]
struct Link {
    connected: bool,
    endpoint: Option<String>,
    since_ms: u64,
    error: Option<String>,
}

/// This host's part of the fleet.
pub struct Fleet {
    cfg: FleetConfig,
    etcd: Etcd,
    link: Mutex<Link>,
    /// The intent applied last and its revision: set only once `state.json` holds it, and
    /// watched by a change that waits until it took effect here.
    applied: watch::Sender<FleetApplied>,
    /// What could not be applied of it.
    problems: Mutex<Vec<String>>,
    /// Every host's presence, by node name.
    nodes: Mutex<BTreeMap<String, Presence>>,
    /// One apply at a time.
    apply_lock: tokio::sync::Mutex<()>,
    /// When this kinfrad started (Unix ms), for its presence.
    started_ms: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet").field("cfg", &self.cfg).finish()
    }
}

impl Fleet {
    /// The fleet of `cfg`, starting from what `state.json` says was applied last.
    pub fn new(cfg: FleetConfig, applied: Option<FleetApplied>) -> Result<Fleet, String> {
        let etcd = etcd_client(&cfg)?;
        let applied = applied.unwrap_or_else(|| FleetApplied {
            revision: 0,
            intent: Intent::empty(),
        });
        Ok(Fleet {
            link: Mutex::new(Link {
                since_ms: crate::model::now_ms(),
                error: Some("not connected yet".to_string()),
                ..Link::default()
            }),
            cfg,
            etcd,
            applied: watch::Sender::new(applied),
            problems: Mutex::new(Vec::new()),
            nodes: Mutex::new(BTreeMap::new()),
            apply_lock: tokio::sync::Mutex::new(()),
            started_ms: crate::model::now_ms(),
        })
    }

    /// Note a problem beside those of the last apply (at most [`MAX_PROBLEMS`] kept).
    fn problem(&self, p: String) {
        let mut ps = lock(&self.problems);
        if ps.len() < MAX_PROBLEMS && !ps.contains(&p) {
            ps.push(p);
        }
    }

    fn intent_key(&self) -> Vec<u8> {
        format!("{}/intent", self.cfg.prefix).into_bytes()
    }

    fn nodes_prefix(&self) -> String {
        format!("{}/nodes/", self.cfg.prefix)
    }

    fn node_key(&self) -> Vec<u8> {
        format!("{}{}", self.nodes_prefix(), self.cfg.node).into_bytes()
    }

    /// What `state.json` keeps of the fleet.
    pub fn applied(&self) -> FleetApplied {
        self.applied.borrow().clone()
    }

    fn applied_revision(&self) -> i64 {
        self.applied.borrow().revision
    }

    /// Forget the applied revision's number (kept: the intent, to diff against), so the
    /// intent of a new or restored cluster applies whatever its revision.
    fn restart_revisions(&self) {
        self.applied.send_modify(|a| a.revision = 0);
    }

    /// The link works (again); true when it was down, so the caller tells the live pages.
    #[must_use]
    fn connected(&self, endpoint: String) -> bool {
        let mut l = lock(&self.link);
        let flipped = !l.connected;
        if flipped {
            l.connected = true;
            l.since_ms = crate::model::now_ms();
            tracing::info!(endpoint = %endpoint, "fleet: connected to etcd");
        }
        l.endpoint = Some(endpoint);
        l.error = None;
        flipped
    }

    /// The link failed; true when it was up, so the caller tells the live pages.
    #[must_use]
    fn disconnected(&self, error: String) -> bool {
        let mut l = lock(&self.link);
        let flipped = l.connected;
        if flipped {
            l.connected = false;
            l.since_ms = crate::model::now_ms();
            tracing::warn!(error = %error, "fleet: disconnected from etcd; serving the last fleet state known");
        }
        l.error = Some(error);
        flipped
    }

    fn link_report(&self) -> FleetLink {
        let l = lock(&self.link).clone();
        FleetLink {
            connected: l.connected,
            endpoint: l.endpoint.or_else(|| Some(self.etcd.endpoint())),
            since: iso(l.since_ms),
            since_ms: l.since_ms,
            error: l.error,
        }
    }

    fn node_reports(&self) -> Vec<FleetNode> {
        lock(&self.nodes)
            .values()
            .map(|p| FleetNode {
                node: p.node.clone(),
                version: p.version.clone(),
                applied_revision: p.applied_revision,
                updated: iso(p.updated_ms),
                updated_ms: p.updated_ms,
                services: p
                    .services
                    .iter()
                    .map(|s| FleetNodeService {
                        name: s.name.clone(),
                        health: s.health.clone(),
                    })
                    .collect(),
                problems: p.problems.clone(),
                this: p.node == self.cfg.node,
            })
            .collect()
    }

    /// The report of `intent` at `revision`, with this host's link, nodes and problems.
    fn report(&self, revision: i64, intent: &Intent) -> FleetReport {
        FleetReport {
            node: self.cfg.node.clone(),
            prefix: self.cfg.prefix.clone(),
            link: self.link_report(),
            revision,
            applied_revision: self.applied_revision(),
            maintenance: intent
                .maintenance
                .iter()
                .map(|m| FleetRecord {
                    target: m.target.to_string(),
                    message: m.message.clone(),
                    issue: m.current_issue.clone(),
                    eta: m.estimated_completion_ms.map(iso),
                    page_url: m.page_url.clone(),
                    since: iso(m.start_time_ms),
                })
                .collect(),
            drain: intent.drain.as_ref().map(|d| FleetDrain {
                target: d.target.to_string(),
                start: iso(d.start_ms),
                duration_secs: d.duration_ms / 1000,
            }),
            stopped: intent.stopped.clone(),
            changed_by: (!intent.changed_by.is_empty()).then(|| intent.changed_by.clone()),
            changed_at: (intent.changed_at_ms > 0).then(|| iso(intent.changed_at_ms)),
            nodes: self.node_reports(),
            problems: lock(&self.problems).clone(),
            applied_here: None,
        }
    }

    /// The fleet as this host knows it without asking etcd: the intent applied last.
    pub fn local_report(&self) -> FleetReport {
        let a = self.applied();
        self.report(a.revision, &a.intent)
    }

    pub fn summary(&self) -> FleetSummary {
        FleetSummary {
            node: self.cfg.node.clone(),
            link: self.link_report(),
            applied_revision: self.applied_revision(),
            nodes: lock(&self.nodes).len(),
        }
    }
}

/// The etcd client of `cfg`, its TLS files read now (a bad one is an error at start, not at the
/// first call; `kinfrad --check-config` builds it too).
pub fn etcd_client(cfg: &FleetConfig) -> Result<Etcd, String> {
    Etcd::new(&cfg.endpoints, tls(&cfg.tls)?).map_err(|e| format!("[fleet]: {e}"))
}

fn tls(files: &TlsFiles) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match &files.ca {
        Some(ca) => {
            for c in read_pem_certs(ca).map_err(|e| format!("[fleet] ca: {e}"))? {
                roots.add(c).map_err(|e| {
                    format!("[fleet] ca: {}: unusable certificate: {e}", ca.display())
                })?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("[fleet]: TLS setup: {e}"))?
    .with_root_certificates(roots);
    match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let chain = read_pem_certs(cert).map_err(|e| format!("[fleet] cert: {e}"))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                format!("[fleet] key: {}: no usable private key: {e}", key.display())
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("[fleet]: client certificate: {e}"))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

impl App {
    /// The fleet, or the error a fleet command gets on a single host.
    pub(super) fn fleet_or_err(&self) -> Result<&Arc<Fleet>, OpError> {
        self.fleet.as_ref().ok_or_else(|| {
            OpError::new(
                ErrorCode::FleetUnavailable,
                "this kinfrad is not part of a fleet: add [fleet] with etcd's endpoints to its config",
            )
        })
    }

    /// The fleet's link, for `kinfractl status` (absent on a single host).
    pub fn fleet_summary(&self) -> Option<FleetSummary> {
        self.fleet.as_ref().map(|f| f.summary())
    }

    /// The fleet as last applied here, with every host present (`/__status__`, the
    /// dashboard).
    pub fn fleet_local(&self) -> Option<FleetReport> {
        self.fleet.as_ref().map(|f| f.local_report())
    }

    /// `kinfractl --fleet maint list`: the intent as etcd has it now, or the last applied
    /// one (with the link saying disconnected) when etcd is out of reach.
    pub async fn fleet_list(&self) -> Result<FleetReport, OpError> {
        let f = self.fleet_or_err()?;
        // One round: when etcd is out of reach the operator sees the last applied at once.
        match change::read_intent(f, crate::etcd::Patience::OneRound).await {
            Ok((rev, intent)) => Ok(f.report(rev, &intent)),
            Err(e) if e.code == ErrorCode::FleetUnavailable => Ok(f.local_report()),
            Err(e) => Err(e),
        }
    }

    /// `kinfractl fleet status`: every host present, this one's link.
    pub fn fleet_status(&self) -> Result<FleetReport, OpError> {
        Ok(self.fleet_or_err()?.local_report())
    }
}
