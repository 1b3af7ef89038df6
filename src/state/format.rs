//! What `state.json` holds and how its bytes are decoded: the format version, the persisted
//! operator intent, and the checks that every value read is one kinfrad could have written.

use serde::{Deserialize, Serialize};

use super::maint::{MaintState, RecordV1};
use crate::model::drain::Drain;
use crate::model::fleet::Intent;
use crate::model::schedule::Window;

/// The newest format this build reads and writes. Format 1 held one maintenance record
/// (`"maintenance": {…}` or null); format 2 holds every record, what is kept for targets' next
/// windows and the hit counters (`"maintenance": {"records": […], …}`). Format 1 files load.
pub const FORMAT_VERSION: u32 = 2;

/// Everything the operator asked for that must survive restarts and crashes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedState {
    pub version: u32,
    /// Maintenance: the active records, settings kept for later, hit counters.
    #[serde(default)]
    pub maintenance: MaintState,
    /// Services an operator stopped (`kinfractl stop`): they stay stopped across restarts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stopped_services: Vec<String>,
    /// The drain, while one is set (`kinfractl drain start` until `drain stop`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<Drain>,
    /// Scheduled maintenance windows (`kinfractl maint schedule`), until they are over or
    /// cancelled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<Window>,
    /// The fleet's intent this host applied last, and its etcd revision (absent on a single
    /// host): a host restarted while etcd is out of reach starts from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetApplied>,
}

/// The fleet intent a host applied, at the etcd revision that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetApplied {
    pub revision: i64,
    pub intent: Intent,
}

impl PersistedState {
    pub(super) fn fresh() -> PersistedState {
        PersistedState {
            version: FORMAT_VERSION,
            maintenance: MaintState::default(),
            stopped_services: Vec::new(),
            drain: None,
            schedules: Vec::new(),
            fleet: None,
        }
    }

    /// Every value read from disk must be one kinfrad could have written.
    pub fn check(&self) -> Result<(), String> {
        self.maintenance.check()?;
        if let Some(d) = &self.drain {
            d.check().map_err(|e| format!("drain.{e}"))?;
        }
        for (i, w) in self.schedules.iter().enumerate() {
            w.check_shape().map_err(|e| format!("schedules[{i}].{e}"))?;
            if self.schedules[..i].iter().any(|o| o.id == w.id) {
                return Err(format!("schedules[{i}]: a second window with id {}", w.id));
            }
        }
        if let Some(f) = &self.fleet {
            if f.revision < 0 {
                return Err(format!("fleet.revision: {} is negative", f.revision));
            }
            f.intent.check().map_err(|e| format!("fleet.intent.{e}"))?;
        }
        if let Some(bad) = self
            .stopped_services
            .iter()
            .find(|n| !crate::model::valid_name(n))
        {
            return Err(format!(
                "stopped_services: {bad:?} is not a service name (letters, digits, '-', '_' and '.', 64 at most)"
            ));
        }
        Ok(())
    }
}

/// Parse a state file's bytes, refusing versions this build does not know and values it could
/// not have written.
pub fn decode(bytes: &[u8]) -> Result<PersistedState, String> {
    #[derive(Deserialize)]
    struct Probe {
        version: Option<serde_json::Value>,
    }
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid state JSON: {e}"))?;
    match probe.version.as_ref().and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(FORMAT_VERSION) => {}
        Some(1) => return decode_v1(bytes),
        Some(v) if v > u64::from(FORMAT_VERSION) => {
            return Err(format!(
                "format version {v} is newer than this kinfrad understands ({FORMAT_VERSION})"
            ));
        }
        Some(v) => return Err(format!("unknown format version {v}")),
        None => return Err("no \"version\" field".to_string()),
    }
    let state: PersistedState =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid state JSON: {e}"))?;
    state.check().map_err(|e| format!("invalid value: {e}"))?;
    Ok(state)
}

/// A format 1 file: one maintenance record (or none), migrated to today's shape. A record
/// value that was refused then is refused now, under the same field names.
fn decode_v1(bytes: &[u8]) -> Result<PersistedState, String> {
    #[derive(Deserialize)]
    struct V1 {
        #[serde(default)]
        maintenance: Option<RecordV1>,
        #[serde(default)]
        stopped_services: Vec<String>,
        #[serde(default)]
        drain: Option<Drain>,
        #[serde(default)]
        schedules: Vec<Window>,
    }
    let old: V1 =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid state JSON: {e}"))?;
    let maintenance = match old.maintenance {
        Some(r) => {
            r.check().map_err(|e| format!("invalid value: {e}"))?;
            r.migrate().map_err(|e| format!("invalid value: {e}"))?
        }
        None => MaintState::default(),
    };
    let state = PersistedState {
        version: FORMAT_VERSION,
        maintenance,
        stopped_services: old.stopped_services,
        drain: old.drain,
        schedules: old.schedules,
        fleet: None,
    };
    state.check().map_err(|e| format!("invalid value: {e}"))?;
    Ok(state)
}
