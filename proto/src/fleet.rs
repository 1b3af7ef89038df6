//! The fleet on the wire: the changes `kinfractl --fleet` asks for, and what kinfrad reports of
//! the fleet (its link to etcd, the shared intent, every host's presence).

use serde::{Deserialize, Serialize};

/// A change to the fleet's shared intent (`kinfractl --fleet …`), written to etcd in one
/// transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FleetChange {
    /// Enter (or change) maintenance of `target` (none: the global record) on every host.
    MaintEnter {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        issue: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        countdown_secs: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
    },
    /// Leave maintenance of `target` (none: the global record), or with `all` every record.
    MaintExit {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        all: bool,
    },
    DrainStart {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        duration_ms: u64,
    },
    DrainStop,
    /// Keep `service` stopped on every host that runs it.
    Stop {
        service: String,
    },
    /// Undo a fleet-wide stop.
    Start {
        service: String,
    },
}

/// kinfrad's link to etcd.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetLink {
    pub connected: bool,
    /// The endpoint in use (connected) or tried last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Since when it is connected or disconnected (RFC 3339, and Unix ms).
    pub since: String,
    pub since_ms: u64,
    /// Why it is disconnected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One maintenance record of the shared intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetRecord {
    pub target: String,
    pub message: String,
    #[serde(default)]
    pub issue: String,
    /// Estimated completion (RFC 3339), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_url: Option<String>,
    pub since: String,
}

/// The fleet's drain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetDrain {
    pub target: String,
    pub start: String,
    pub duration_secs: u64,
}

/// One host as its presence key says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetNode {
    pub node: String,
    pub version: String,
    pub applied_revision: i64,
    /// When it last wrote its presence (RFC 3339, Unix ms).
    pub updated: String,
    pub updated_ms: u64,
    pub services: Vec<FleetNodeService>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// This is the kinfrad that answers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub this: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetNodeService {
    pub name: String,
    pub health: String,
}

/// The fleet as one kinfrad sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetReport {
    pub node: String,
    pub prefix: String,
    pub link: FleetLink,
    /// The intent's revision shown below (read from etcd now, or the last applied when
    /// disconnected); a `--revision` for the next change compares against it. 0: never written.
    pub revision: i64,
    /// The revision this host applied last.
    pub applied_revision: i64,
    #[serde(default)]
    pub maintenance: Vec<FleetRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<FleetDrain>,
    #[serde(default)]
    pub stopped: Vec<String>,
    /// Who made the last change, and when (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<String>,
    /// Every host present (`kinfractl fleet status`).
    #[serde(default)]
    pub nodes: Vec<FleetNode>,
    /// What this host could not apply of the intent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// After a change: did this host apply it before answering?
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_here: Option<bool>,
}
