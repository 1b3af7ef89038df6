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
    /// The drain, while one is set (absent from daemons without drains).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<Box<DrainReport>>,
    /// Scheduled maintenance windows (absent when none, and from daemons without schedules).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<crate::schedule::WindowReport>,
    /// The fleet this host is part of: its node name, link to etcd and applied revision
    /// (absent on a single host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetSummary>,
}

/// `kinfractl status`'s fleet line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetSummary {
    pub node: String,
    pub link: crate::fleet::FleetLink,
    pub applied_revision: i64,
    /// Hosts present in etcd, as last seen (this one included).
    pub nodes: usize,
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
    /// The drain's progress (0..1) while a drain covers this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_progress: Option<f64>,
}

/// A drain as `kinfractl drain status` and `GET /api/kinfra/drain` show it. Times are Unix ms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DrainReport {
    /// A drain is set (running, or over and still refusing every request until stopped).
    pub active: bool,
    /// `ALL` or the comma-separated service names it covers.
    pub target: Option<String>,
    /// The configured services it covers now.
    pub services: Vec<String>,
    pub start_time: Option<u64>,
    pub duration_ms: Option<u64>,
    pub end_time: Option<u64>,
    /// Elapsed / duration, 0..1.
    pub progress: f64,
    pub remaining_ms: u64,
    /// The chance a new request is refused now (0 up to half way, then rising to 1 at the end).
    pub rejection_probability: f64,
    /// Requests refused since the drain started.
    pub rejected: u64,
    /// Requests (and upgraded connections) on the covered services still being served.
    pub in_flight: u64,
    /// The time is over and nothing is in flight: the services may be stopped.
    pub drained: bool,
    pub drained_at: Option<u64>,
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

/// One event of kinfrad's event log: why a circuit, a health state, a process, a maintenance
/// record or a drain changed (`kinfractl events`, `GET /api/kinfra/events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventReport {
    /// Increases by one per event within a kinfrad run; a follower's cursor.
    pub seq: u64,
    /// RFC 3339, UTC.
    pub time: String,
    /// circuit_open | circuit_half_open | circuit_closed | health_up | health_down |
    /// process_start | process_exit | process_restart | maintenance_on | maintenance_off |
    /// drain_started | drain_finished | drain_stopped (more may be added).
    pub kind: String,
    /// The service (for maintenance and drains: the target, `ALL` for every service).
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Why, for humans: the probe's error, "5 consecutive failures (last: …)", the exit status.
    pub reason: String,
    /// Consecutive failures, where they count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
}

/// A page of the event log after a cursor (`Response::Events`, `GET /api/kinfra/events`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventsReport {
    /// Oldest first.
    pub events: Vec<EventReport>,
    /// The newest event's `seq` (0: none yet); pass the last `seq` seen as `after` next time.
    pub last: u64,
    /// Events after the cursor that were dropped from the ring (it keeps the last 100) before
    /// they could be read.
    pub missed: u64,
    /// More events after the last one here did not fit this answer: ask again at once.
    pub more: bool,
}
