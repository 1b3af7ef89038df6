//! The fleet task: connect to etcd, read the whole prefix (the intent and every host's
//! presence), apply the intent if it is newer than the one applied, then watch the prefix from
//! the revision read and apply each change as it comes. Beside it, this host's presence key,
//! bound to a lease kept alive every [`TICK`]; the keep-alive is also how a silent etcd is
//! noticed. Any failure ends the session: the host is "disconnected" and keeps serving with the
//! state it has, and the task connects again (a compacted revision means a full read).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::etcd::{Batch, Error, Patience};
use crate::model::fleet::{Intent, Presence, PresenceService};
use crate::model::now_ms;

use super::super::App;
use super::{Fleet, lock};

/// How long the presence lease lives without a keep-alive.
const LEASE_TTL_SECS: i64 = 10;
/// Keep-alive and presence refresh period.
const TICK: Duration = Duration::from_secs(2);
/// Waits between failed sessions: from the first to the last.
const BACKOFF: [u64; 5] = [200, 500, 1000, 2000, 3000];
/// The live pages hear of other hosts' presence changes at most this often.
const PRESENCE_NEWS: Duration = Duration::from_secs(1);

/// Run the fleet task until `stop`; then take this host's presence away.
pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let Some(f) = app.fleet.clone() else {
        return;
    };
    let mut failures = 0usize;
    let mut lease = 0i64;
    loop {
        let r = tokio::select! {
            r = session(&app, &f, &mut lease) => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        let e = match r {
            Ok(()) => break,
            Err(e) => e,
        };
        if f.disconnected(e.to_string()) {
            // It was connected: the next failure starts the back-off over.
            failures = 0;
            app.publish();
        }
        if matches!(e, Error::Compacted(_)) {
            // Nothing is wrong with etcd: read everything again at once.
            tracing::info!(
                "fleet: the watched revision was compacted; reading the whole intent again"
            );
            continue;
        }
        let wait = BACKOFF[failures.min(BACKOFF.len() - 1)];
        failures += 1;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    if lease != 0 {
        let _ = tokio::time::timeout(Duration::from_secs(1), f.etcd.lease_revoke(lease)).await;
    }
}

/// One connection: read, apply, watch, keep the presence, until something fails.
async fn session(app: &Arc<App>, f: &Arc<Fleet>, lease: &mut i64) -> Result<(), Error> {
    let prefix = format!("{}/", f.cfg.prefix);
    let (rev, kvs) = f
        .etcd
        .range(prefix.as_bytes(), true, Patience::OneRound)
        .await?;
    if rev < f.applied().revision {
        // Not the store the applied revision came from (a new or restored cluster): its
        // revisions start over, so the intent there is applied whatever its number.
        tracing::warn!(
            store_revision = rev,
            applied = f.applied().revision,
            "fleet: etcd's revision is behind the one applied here; treating it as a new cluster"
        );
        f.restart_revisions();
    }
    let intent_key = f.intent_key();
    let mut nodes = std::collections::BTreeMap::new();
    let mut intent = None;
    for kv in kvs {
        if kv.key == intent_key {
            intent = Some(kv);
        } else if let Some(p) = presence_of(f, &kv.key, &kv.value) {
            nodes.insert(p.node.clone(), p);
        }
    }
    *lock(&f.nodes) = nodes;
    match intent {
        Some(kv) => take_intent(app, f, kv.mod_revision, &kv.value).await,
        // Deleted by hand: the fleet asks for nothing any more.
        None if f.applied().revision > 0 => apply(app, f, rev, Intent::empty()).await,
        None => {}
    }
    let mut w = f.etcd.watch(prefix.as_bytes(), rev + 1).await?;
    if f.connected(w.endpoint.clone()) {
        app.publish();
    }
    let mut presence_news = Throttle::default();
    if *lease == 0 || f.etcd.lease_keepalive(*lease).await? <= 0 {
        *lease = f.etcd.lease_grant(LEASE_TTL_SECS).await?;
    }
    let mut last = put_presence(app, f, *lease, None).await?;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            b = w.next() => {
                let batch = b?;
                let before = f.applied().revision;
                if on_batch(app, f, batch, &intent_key).await {
                    presence_news.changed(app);
                }
                if f.connected(w.endpoint.clone()) {
                    app.publish();
                }
                if f.applied().revision != before {
                    // Tell the fleet at once which revision this host now serves.
                    last = put_presence(app, f, *lease, last).await?;
                }
            }
            _ = tick.tick() => {
                presence_news.flush(app);
                if f.etcd.lease_keepalive(*lease).await? <= 0 {
                    *lease = f.etcd.lease_grant(LEASE_TTL_SECS).await?;
                    last = None;
                }
                // The keep-alive goes to the watch's member first: answered by another, that
                // member is silent (cut off without a reset), and so may be the watch.
                if f.etcd.endpoint() != w.endpoint {
                    return Err(Error::Unreachable(format!(
                        "{}: stopped answering; watching on another member",
                        w.endpoint
                    )));
                }
                last = put_presence(app, f, *lease, last).await?;
            }
        }
    }
}

/// Tells the live pages that a host's presence changed, at most once per [`PRESENCE_NEWS`]; a
/// change that comes sooner waits for the next batch or tick.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    pending: bool,
}

impl Throttle {
    fn changed(&mut self, app: &App) {
        self.pending = true;
        self.flush(app);
    }

    fn flush(&mut self, app: &App) {
        if self.pending && self.last.is_none_or(|t| t.elapsed() >= PRESENCE_NEWS) {
            self.pending = false;
            self.last = Some(Instant::now());
            app.publish();
        }
    }
}

/// Apply a batch of watched changes; true when a host's presence changed (came, went or said
/// something new).
async fn on_batch(app: &Arc<App>, f: &Arc<Fleet>, batch: Batch, intent_key: &[u8]) -> bool {
    let mut presence = false;
    for (kv, deleted) in batch.events {
        if kv.key == intent_key {
            if deleted {
                apply(app, f, kv.mod_revision, Intent::empty()).await;
            } else {
                take_intent(app, f, kv.mod_revision, &kv.value).await;
            }
        } else if let Some(name) = kv
            .key
            .strip_prefix(f.nodes_prefix().as_bytes())
            .and_then(|n| std::str::from_utf8(n).ok())
        {
            if deleted {
                presence |= lock(&f.nodes).remove(name).is_some();
            } else if let Some(p) = presence_of(f, &kv.key, &kv.value) {
                if p.node == f.cfg.node && p.started_ms != f.started_ms {
                    // Only this kinfrad writes its key while it runs: another one shares the name.
                    let why = format!(
                        "another kinfrad (started {}) writes this host's presence: give each host its own [fleet] node",
                        crate::protocol::fmt::iso(p.started_ms)
                    );
                    tracing::error!(node = %p.node, "fleet: {why}");
                    f.problem(why);
                }
                let before = lock(&f.nodes).insert(p.node.clone(), p.clone());
                presence |= before.as_ref() != Some(&p);
            }
        }
    }
    presence
}

/// A presence key's document, if it is one (a bad one is logged and left out).
fn presence_of(f: &Fleet, key: &[u8], value: &[u8]) -> Option<Presence> {
    let name = key.strip_prefix(f.nodes_prefix().as_bytes())?;
    match Presence::decode(value) {
        Ok(p) if p.node.as_bytes() == name => Some(p),
        Ok(p) => {
            tracing::warn!(node = %p.node, "fleet: a presence key names another node; ignored");
            None
        }
        Err(e) => {
            tracing::warn!(key = %String::from_utf8_lossy(key), error = %e, "fleet: unreadable presence; ignored");
            None
        }
    }
}

/// A new intent document from etcd: checked like input, then applied.
async fn take_intent(app: &Arc<App>, f: &Arc<Fleet>, revision: i64, value: &[u8]) {
    match Intent::decode(value) {
        Ok(i) => apply(app, f, revision, i).await,
        Err(e) => {
            let p = format!("the intent at revision {revision} was refused: {e}");
            tracing::error!(revision, error = %e, "fleet: refused the intent from etcd; keeping the last applied");
            f.problem(p);
            app.publish();
        }
    }
}

/// Apply, retrying while the state file cannot be written (nothing counts as applied until
/// it is; meanwhile the watch waits).
async fn apply(app: &Arc<App>, f: &Arc<Fleet>, revision: i64, intent: Intent) {
    let mut wait = 200;
    while let Err(e) = app.fleet_apply(revision, intent.clone()).await {
        tracing::error!(revision, error = %e, "fleet: could not persist the intent; retrying");
        f.problem(format!("revision {revision} not applied: {e}"));
        tokio::time::sleep(Duration::from_millis(wait)).await;
        wait = (wait * 2).min(5_000);
    }
}

/// Write this host's presence if it changed since `last` (what was written then); returns
/// what is there now.
async fn put_presence(
    app: &Arc<App>,
    f: &Arc<Fleet>,
    lease: i64,
    last: Option<Presence>,
) -> Result<Option<Presence>, Error> {
    let mut p = presence(app, f);
    let same = last.as_ref().is_some_and(|l| {
        let mut l = l.clone();
        l.updated_ms = p.updated_ms;
        l == p
    });
    if same {
        return Ok(last);
    }
    p.updated_ms = now_ms();
    let bytes = serde_json::to_vec(&p).map_err(|e| Error::BadAnswer(e.to_string()))?;
    f.etcd.put(&f.node_key(), &bytes, lease).await?;
    lock(&f.nodes).insert(p.node.clone(), p.clone());
    Ok(Some(p))
}

fn presence(app: &App, f: &Fleet) -> Presence {
    let services = app
        .service_reports()
        .into_iter()
        .map(|s| PresenceService {
            health: if s.in_maintenance {
                "maintenance".to_string()
            } else {
                s.state
            },
            name: s.name,
        })
        .collect();
    Presence {
        node: f.cfg.node.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_ms: f.started_ms,
        updated_ms: 0,
        applied_revision: f.applied().revision,
        services,
        problems: lock(&f.problems).clone(),
    }
}
