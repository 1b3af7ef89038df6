//! What the messages carry: the daemon's status, its services, log lines, progress steps and the
//! maintenance view. Plain data, serialized as part of a [`Response`](crate::Response) or a
//! [`Request`](crate::Request).

use serde::{Deserialize, Serialize};

/// A progress step: text and pending | active | completed | failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSpec {
    pub text: String,
    pub status: String,
}

/// One captured line of a service's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// RFC 3339, UTC.
    pub timestamp: String,
    /// ERROR | WARN | INFO | DEBUG
    pub level: String,
    /// stdout | stderr
    pub stream: String,
    pub message: String,
}

/// `kinfractl status`: the daemon and its maintenance state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub version: String,
    pub pid: u32,
    pub uptime_secs: u64,
    pub config: String,
    pub listen: Vec<String>,
    pub control_socket: String,
    pub state_file: String,
    /// Problems an operator must know about (corrupt state kept aside, failed reload, …).
    #[serde(default)]
    pub problems: Vec<String>,
    pub open_connections: u64,
    /// The global record (seed 004's shape).
    pub maintenance: StatusView,
    /// Every active record and every target with settings kept for its next window (absent
    /// from daemons older than per-target records).
    #[serde(default)]
    pub maintenance_records: Vec<StatusView>,
    /// Configured services, in config order (absent from daemons older than the proxy).
    #[serde(default)]
    pub services: Vec<ServiceReport>,
}

/// One service as `kinfractl status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceReport {
    pub name: String,
    pub url: String,
    pub routes: Vec<String>,
    /// starting | running | unhealthy | down | circuit_open
    pub state: String,
    pub health: String,
    /// closed | open | half-open
    pub circuit_state: String,
    pub circuit_failures: u64,
    /// Seconds since the circuit opened, while it is open or half-open.
    #[serde(default)]
    pub circuit_opened_secs_ago: Option<u64>,
    pub requests: u64,
    pub failures: u64,
    /// The last error seen (probe or traffic), "" when none.
    #[serde(default)]
    pub last_error: String,
    pub in_maintenance: bool,
    /// Run by kinfrad (`command`), with its process facts below.
    #[serde(default)]
    pub supervised: bool,
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub port: Option<u16>,
    /// Since the process started (supervised) or the service became healthy.
    #[serde(default)]
    pub uptime_secs: Option<u64>,
    #[serde(default)]
    pub restarts: u32,
    /// "Process exited with code 1", "" when none.
    #[serde(default)]
    pub last_exit: String,
}

/// Seed 004's `GET /api/maintenance/status` shape, plus KInfra's fields (added, never renamed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    pub is_active: bool,
    pub message: Option<String>,
    pub current_issue: Option<String>,
    /// Seconds left until the estimate.
    pub countdown: Option<u64>,
    pub start_time: Option<u64>,
    pub estimated_completion: Option<u64>,
    /// The countdown value most recently published (seed 004); equals `countdown` here.
    pub last_broadcast: Option<u64>,
    pub maintenance_page_url: Option<String>,
    pub target: Option<String>,
    pub hits: u64,
    pub retry_after: Option<u64>,
    /// The configured routes this record answers now (a more specific record takes a route
    /// away from a broader one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
    /// Not active: what is shown is stored for the next time the target enters maintenance.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prepared: bool,
}
