//! What `state.json` holds and how its bytes are decoded: the format version, the persisted
//! operator intent, and the checks that every value read is one kinfrad could have written.

use serde::{Deserialize, Serialize};

use crate::model::drain::Drain;
use crate::model::maintenance::Maintenance;

/// The newest format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Everything the operator asked for that must survive restarts and crashes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedState {
    pub version: u32,
    /// Active maintenance, if any.
    #[serde(default)]
    pub maintenance: Option<Maintenance>,
    /// Services an operator stopped (`kinfractl stop`): they stay stopped across restarts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stopped_services: Vec<String>,
    /// The drain, while one is set (`kinfractl drain start` until `drain stop`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<Drain>,
}

impl PersistedState {
    pub(super) fn fresh() -> PersistedState {
        PersistedState {
            version: FORMAT_VERSION,
            maintenance: None,
            stopped_services: Vec::new(),
            drain: None,
        }
    }

    /// Every value read from disk must be one kinfrad could have written.
    pub fn check(&self) -> Result<(), String> {
        if let Some(m) = &self.maintenance {
            m.check().map_err(|e| format!("maintenance.{e}"))?;
        }
        if let Some(d) = &self.drain {
            d.check().map_err(|e| format!("drain.{e}"))?;
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
