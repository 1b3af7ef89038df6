//! Applying a new fleet intent on this host: the difference from the intent applied last, made
//! through the same operations (and so the same validation) as an operator's local commands,
//! then the new intent and its revision written to `state.json` before the revision counts as
//! applied. A crash half way repeats the difference at the next start: every step is
//! idempotent (entering a record already in is a change; leaving one not in is a no-op).

use std::sync::Arc;

use crate::model::drain::DrainTarget;
use crate::model::fleet::Intent;
use crate::model::maintenance::Maintenance;
use crate::model::now_ms;
use crate::state::FleetApplied;
use crate::supervisor::Command;

use super::super::maint::MaintRequest;
use super::super::{App, write_state};
use super::lock;

/// How far in the future an estimated completion must lie to be kept when applied (an older
/// one has passed while the host was away, or is about to).
const ETA_MARGIN_MS: u64 = 1_000;

impl App {
    /// Apply `next`, written at `revision`, unless this host applied that revision (or a later
    /// one) already. `Err` when the state file could not be written: nothing counts as applied
    /// then, and the caller tries again.
    pub(super) async fn fleet_apply(
        self: &Arc<Self>,
        revision: i64,
        next: Intent,
    ) -> Result<(), String> {
        let Some(f) = self.fleet.clone() else {
            return Ok(());
        };
        let _one = f.apply_lock.lock().await;
        let prev = f.applied();
        if revision <= prev.revision {
            return Ok(());
        }
        let diff = prev.intent.diff(&next);
        let mut problems = Vec::new();
        for m in &diff.enter {
            if let Err(e) = self.fleet_enter(m).await {
                problems.push(format!("maintenance of {}: {e}", m.target));
            }
        }
        for t in &diff.exit {
            let active = self.maint.load().find(t).is_some();
            if active && let Err(e) = self.exit(Some(&t.to_string())).await {
                problems.push(format!("leaving maintenance of {t}: {}", e.message));
            }
        }
        match &diff.drain {
            None => {}
            Some(None) => {
                if let Err(e) = self.drain_stop().await {
                    problems.push(format!("stopping the drain: {}", e.message));
                }
            }
            Some(Some(d)) => {
                let mut d = d.clone();
                // Only the services this host has; none of them: nothing to drain here.
                let mut skip = false;
                if let DrainTarget::Routes(ids) = &d.target {
                    let svc = self.services.load();
                    let here: Vec<String> = ids
                        .iter()
                        .filter(|i| svc.get(i).is_some())
                        .cloned()
                        .collect();
                    skip = here.is_empty();
                    d.target = DrainTarget::Routes(here);
                }
                d.rejected.clear();
                let r = if skip {
                    self.drain_stop().await.map(|_| ())
                } else {
                    self.drain_begin(d).await.map(|_| ())
                };
                if let Err(e) = r {
                    problems.push(format!("the drain: {}", e.message));
                }
            }
        }
        for (names, cmd) in [(&diff.stop, Command::Stop), (&diff.start, Command::Start)] {
            for n in names {
                if self.supervised(n).is_err() {
                    continue;
                }
                let stopped_here = self.stopped_list().contains(n);
                if (cmd == Command::Stop) == stopped_here {
                    continue;
                }
                if let Err(e) = self.service_command(n, cmd).await {
                    problems.push(format!("{} {n}: {}", cmd_word(cmd), e.message));
                }
            }
        }
        // Targets this host does not have are no fault of its own, but worth telling.
        for m in &next.maintenance {
            if !self.target_known(&m.target) {
                problems.push(format!(
                    "maintenance of {}: no such service or route here",
                    m.target
                ));
            }
        }
        for n in &next.stopped {
            if self.services.load().get(n).is_some() && self.supervised(n).is_err() {
                problems.push(format!(
                    "stopping {n}: kinfrad does not run it here (no command), so nothing was stopped"
                ));
            }
        }
        for p in &problems {
            tracing::warn!(revision, problem = %p, "fleet: part of the intent not applied here");
        }
        *lock(&f.problems) = problems;
        let applied = FleetApplied {
            revision,
            intent: next,
        };
        {
            // Under the store lock, so the next state write of anyone carries it.
            let store = self.store.lock().await;
            let mut state = self.persisted(self.maint_snapshot(), self.stopped_list());
            state.fleet = Some(applied.clone());
            write_state(&store, state).await.map_err(|e| e.message)?;
            f.applied.send_replace(applied);
        }
        tracing::info!(revision, "fleet: intent applied");
        self.publish();
        Ok(())
    }

    /// Enter or change the record `m` of the fleet, as `kinfractl maint enter` would.
    async fn fleet_enter(&self, m: &Maintenance) -> Result<(), String> {
        if !self.target_known(&m.target) {
            return Ok(());
        }
        let now = now_ms();
        let req = MaintRequest {
            url: Some(m.page_url.clone().unwrap_or_default()),
            message: Some(m.message.clone()),
            issue: Some(m.current_issue.clone()),
            countdown_secs: None,
            eta_ms: m
                .estimated_completion_ms
                .filter(|e| *e > now + ETA_MARGIN_MS)
                .and_then(|e| i64::try_from(e).ok()),
            target: Some(m.target.to_string()),
        };
        self.enter(req).await.map(|_| ()).map_err(|e| e.message)
    }
}

fn cmd_word(c: Command) -> &'static str {
    match c {
        Command::Stop => "stopping",
        Command::Start => "starting",
        Command::Restart => "restarting",
    }
}
