//! The maintenance part of `state.json`: every active record, what is kept for targets' next
//! windows, and the hit counters; and the migration from format 1, which held one record.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::maintenance::{Maintenance, Prepared, Target};
use crate::model::routes::RouteSpec;

/// Everything persisted about maintenance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintState {
    /// The active records, at most one per target.
    #[serde(default)]
    pub records: Vec<Maintenance>,
    /// Settings kept for targets not in maintenance, at most one per target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prepared: Vec<Prepared>,
    /// Requests answered by maintenance per route (its spec), counted since the record that
    /// applied to the route was entered.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub route_hits: BTreeMap<String, u64>,
    /// Requests that matched no route and were answered by the global record.
    #[serde(default)]
    pub unrouted_hits: u64,
}

impl MaintState {
    /// The global record, if active.
    pub fn global(&self) -> Option<&Maintenance> {
        self.records.iter().find(|m| m.target == Target::All)
    }

    /// Every value must be one kinfrad could have written.
    pub fn check(&self) -> Result<(), String> {
        for (i, m) in self.records.iter().enumerate() {
            m.check()
                .map_err(|e| format!("maintenance.records[{i}].{e}"))?;
            if self.records[..i].iter().any(|o| o.target == m.target) {
                return Err(format!(
                    "maintenance.records[{i}]: a second record for target {}",
                    m.target
                ));
            }
        }
        for (i, p) in self.prepared.iter().enumerate() {
            p.check()
                .map_err(|e| format!("maintenance.prepared[{i}].{e}"))?;
            if self.prepared[..i].iter().any(|o| o.target == p.target) {
                return Err(format!(
                    "maintenance.prepared[{i}]: a second entry for target {}",
                    p.target
                ));
            }
        }
        for spec in self.route_hits.keys() {
            RouteSpec::parse(spec).map_err(|e| format!("maintenance.route_hits: {e}"))?;
        }
        Ok(())
    }
}

/// Format 1's one record: its `target` was `ALL` or a comma-separated list of service names.
#[derive(Debug, Deserialize)]
pub(super) struct RecordV1 {
    message: String,
    #[serde(default)]
    current_issue: String,
    start_time_ms: u64,
    #[serde(default)]
    estimated_completion_ms: Option<u64>,
    #[serde(default)]
    page_url: Option<String>,
    target: String,
    #[serde(default)]
    hits: u64,
}

impl RecordV1 {
    /// The checks format 1 made, with its field names (`maintenance.FIELD`).
    pub(super) fn check(&self) -> Result<(), String> {
        let m = Maintenance {
            message: self.message.clone(),
            current_issue: self.current_issue.clone(),
            start_time_ms: self.start_time_ms,
            estimated_completion_ms: self.estimated_completion_ms,
            page_url: self.page_url.clone(),
            target: Target::All,
            hits: self.hits,
        };
        m.check().map_err(|e| format!("maintenance.{e}"))
    }

    /// One record per target it named (format 1 covered a list of services with one record).
    /// The record's hits stay with the first, so they are not counted twice; format 1 counted
    /// no route's hits, so those start at 0.
    pub(super) fn migrate(self) -> Result<MaintState, String> {
        let targets =
            Target::parse_list(&self.target).map_err(|e| format!("maintenance.target: {e}"))?;
        let mut st = MaintState::default();
        for (i, t) in targets.into_iter().enumerate() {
            st.records.push(Maintenance {
                message: self.message.clone(),
                current_issue: self.current_issue.clone(),
                start_time_ms: self.start_time_ms,
                estimated_completion_ms: self.estimated_completion_ms,
                page_url: self.page_url.clone(),
                hits: if i == 0 { self.hits } else { 0 },
                target: t,
            });
        }
        Ok(st)
    }
}
