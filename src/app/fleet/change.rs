//! An operator's change to the fleet's intent: read the intent and its revision, build the next
//! one with the same validation as a local command, and put it in one etcd transaction that
//! compares the revision the operator read. A lost answer is recognised by the change's id.

use std::sync::Arc;
use std::time::Duration;

use crate::etcd::{self, Put};
use crate::model::drain::{self, Drain, DrainTarget};
use crate::model::fleet::Intent;
use crate::model::maintenance::{Maintenance, Target};
use crate::model::now_ms;
use crate::protocol::{ErrorCode, FleetChange, FleetReport, fmt::iso};

use super::super::maint::MaintRequest;
use super::super::{App, OpError};
use super::Fleet;

/// How long a change waits for this host to apply it before answering.
const APPLY_WAIT: Duration = Duration::from_secs(2);

fn unavailable(e: etcd::Error) -> OpError {
    OpError::new(
        ErrorCode::FleetUnavailable,
        format!("the fleet's etcd is out of reach: {e}"),
    )
}

/// The intent as etcd has it, and the revision that wrote it (0 and an empty intent: never
/// written).
pub(super) async fn read_intent(
    f: &Fleet,
    patience: etcd::Patience,
) -> Result<(i64, Intent), OpError> {
    let (_, kvs) = f
        .etcd
        .range(&f.intent_key(), false, patience)
        .await
        .map_err(unavailable)?;
    match kvs.into_iter().next() {
        None => Ok((0, Intent::empty())),
        Some(kv) => {
            let intent = Intent::decode(&kv.value).map_err(|e| {
                OpError::new(
                    ErrorCode::Internal,
                    format!(
                        "the fleet intent in etcd ({}/intent, revision {}) is not one kinfrad wrote: {e}",
                        f.cfg.prefix, kv.mod_revision
                    ),
                )
            })?;
            Ok((kv.mod_revision, intent))
        }
    }
}

fn conflict(read: i64, now: i64, by: &Intent) -> OpError {
    let who = if by.changed_by.is_empty() {
        String::new()
    } else {
        format!(" by {} at {}", by.changed_by, iso(by.changed_at_ms))
    };
    OpError::new(
        ErrorCode::Conflict,
        format!(
            "the fleet's intent changed since revision {read}: it is at revision {now} (changed{who}); \
             nothing was written. Look again (kinfractl --fleet maint list) and retry"
        ),
    )
}

fn invalid(m: impl Into<String>) -> OpError {
    OpError::new(ErrorCode::InvalidArgument, m)
}

impl App {
    /// Change the fleet's intent (`kinfractl --fleet …`), comparing against `revision` (what
    /// the operator read) or, when absent, the revision read first. Answers the new intent
    /// once this host applied it (or after [`APPLY_WAIT`], `applied_here: false`).
    pub async fn fleet_change(
        self: &Arc<Self>,
        change: FleetChange,
        revision: Option<i64>,
    ) -> Result<FleetReport, OpError> {
        let f = self.fleet_or_err()?.clone();
        if let Some(r) = revision
            && r < 0
        {
            return Err(invalid(format!("revision: {r} is negative")));
        }
        let (cur_rev, cur) = read_intent(&f, etcd::Patience::Rounds).await?;
        let base = revision.unwrap_or(cur_rev);
        if base != cur_rev {
            return Err(conflict(base, cur_rev, &cur));
        }
        let mut next = self.next_intent(&cur, change).await?;
        next.change_id = crate::state::token::random_hex::<8>()
            .map_err(|e| OpError::new(ErrorCode::Internal, format!("/dev/urandom: {e}")))?;
        next.changed_by = f.cfg.node.clone();
        next.changed_at_ms = now_ms();
        let written = match f.etcd.put_if(&f.intent_key(), base, &next.encode()).await {
            Ok(Put::Done(kv)) => kv.mod_revision,
            Ok(Put::Conflict(now)) => {
                let (rev, won) = match now {
                    Some(kv) => (
                        kv.mod_revision,
                        Intent::decode(&kv.value).unwrap_or_default(),
                    ),
                    None => (0, Intent::empty()),
                };
                // A retry on another member after the first attempt landed: ours won.
                if won.change_id != next.change_id {
                    return Err(conflict(base, rev, &won));
                }
                rev
            }
            Err(e @ etcd::Error::Unreachable(_)) => {
                return Err(OpError::new(
                    ErrorCode::FleetUnavailable,
                    format!(
                        "the fleet's etcd is out of reach ({e}); the change may or may not have \
                         been written: look with kinfractl --fleet maint list"
                    ),
                ));
            }
            Err(e) => return Err(unavailable(e)),
        };
        tracing::info!(revision = written, node = %f.cfg.node, "fleet: intent changed");
        let mut seen = f.applied.subscribe();
        let applied = tokio::time::timeout(APPLY_WAIT, seen.wait_for(|a| a.revision >= written))
            .await
            .is_ok_and(|r| r.is_ok());
        let mut report = f.report(written, &next);
        report.applied_here = Some(applied);
        Ok(report)
    }

    /// `cur` with `change` made, validated like the same local command.
    async fn next_intent(&self, cur: &Intent, change: FleetChange) -> Result<Intent, OpError> {
        let mut next = cur.clone();
        next.version = crate::model::fleet::INTENT_FORMAT;
        let now = now_ms();
        match change {
            FleetChange::MaintEnter {
                url,
                message,
                issue,
                countdown_secs,
                target,
            } => {
                let targets = targets(target.as_deref())?;
                let req = MaintRequest {
                    url,
                    message,
                    issue,
                    countdown_secs,
                    ..MaintRequest::default()
                };
                let c = self.to_change(&req, now).await?;
                for t in targets {
                    match next.maintenance.iter_mut().find(|m| m.target == t) {
                        Some(m) => m.apply(c.clone()),
                        None => next
                            .maintenance
                            .push(Maintenance::begin_for(t, c.clone(), now)),
                    }
                }
            }
            FleetChange::MaintExit { all: true, .. } => next.maintenance.clear(),
            FleetChange::MaintExit { target, all: false } => {
                let targets = targets(target.as_deref())?;
                next.maintenance.retain(|m| !targets.contains(&m.target));
            }
            FleetChange::DrainStart {
                target,
                duration_ms,
            } => {
                let t = DrainTarget::parse(target.as_deref().unwrap_or(""))
                    .map_err(|m| invalid(format!("target: {m}")))?;
                let d = drain::check_duration_ms(duration_ms)?;
                next.drain = Some(Drain::begin(t, d, now)?);
            }
            FleetChange::DrainStop => next.drain = None,
            FleetChange::Stop { service } => {
                name(&service)?;
                if !next.stopped.contains(&service) {
                    next.stopped.push(service);
                    next.stopped.sort();
                }
            }
            FleetChange::Start { service } => {
                name(&service)?;
                next.stopped.retain(|s| s != &service);
            }
        }
        next.check()
            .map_err(|e| invalid(format!("the fleet intent would not be valid: {e}")))?;
        Ok(next)
    }
}

/// Targets of a fleet record: checked for their form only, since hosts run different
/// services (a host skips a target it does not have, and says so in its presence).
fn targets(spec: Option<&str>) -> Result<Vec<Target>, OpError> {
    Target::parse_list(spec.unwrap_or("")).map_err(|m| invalid(format!("target: {m}")))
}

fn name(service: &str) -> Result<(), OpError> {
    if crate::model::valid_name(service) {
        Ok(())
    } else {
        Err(invalid(format!(
            "service: {service:?} may only hold letters, digits, '-', '_' and '.' (64 at most)"
        )))
    }
}
