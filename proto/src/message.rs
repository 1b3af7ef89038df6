//! The messages: [`Request`], [`Response`] and their stable [`ErrorCode`]s, with the protocol
//! version and the frame limit. The shapes they carry are in `report`.

use serde::{Deserialize, Serialize};

use crate::report::{
    DrainReport, EventsReport, LogEntry, ServiceReport, StatusReport, StatusView, StepSpec,
};
use crate::schedule::WindowReport;

/// Version of this protocol. Bumped only for incompatible changes.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest frame either side accepts.
pub const MAX_FRAME: usize = 64 * 1024;

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// First message on every connection. → `Hello` | `Error{unsupported_version}`
    Hello {
        protocol: u32,
        client: String,
    },
    /// The daemon's state. → `Status`
    Status,
    /// Enter maintenance (or change it when already in). → `Maintenance` | `Error`
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
    /// Change what the maintenance page of `target` (none: the global record) shows. A target
    /// not in maintenance keeps the change for its next window (`prepared` in the answer).
    /// → `Maintenance` | `Error`
    MaintUpdate {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        issue: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        countdown_secs: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
    },
    /// Leave maintenance: the record of `target` (none: the global record only), or with `all`
    /// every record. → `Maintenance` (that target's view, inactive; also when it was not
    /// active)
    MaintExit {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        all: bool,
    },
    /// Every active maintenance record, and targets with settings kept for their next window.
    /// → `MaintRecords`
    MaintList,
    /// Reload configuration and templates. → `Reloaded` | `Error{reload_failed}`
    Reload,
    /// The admin token for the HTTP API. → `Token`
    Token,
    /// Every service's state. → `Services`
    Ps,
    /// Start, stop or restart a service kinfrad runs. → `ServiceAction` | `Error`
    ServiceStart {
        service: String,
    },
    ServiceStop {
        service: String,
    },
    ServiceRestart {
        service: String,
    },
    /// The last `lines` captured lines of a service kinfrad runs. → `Logs` | `Error`
    Logs {
        service: String,
        lines: u32,
    },
    /// Set what a service's loading page says while it comes up (a deploy script's progress);
    /// `clear` drops it. → `ServiceAction` | `Error`
    ServiceProgress {
        service: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        steps: Vec<StepSpec>,
        #[serde(default)]
        clear: bool,
    },
    /// Start draining the target's services over `duration_ms` (a drain already running is
    /// replaced, its counters reset). → `Drain` | `Error{invalid_argument}`
    DrainStart {
        /// `ALL` (the default) or comma-separated service names.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        duration_ms: u64,
    },
    /// Stop draining: every request passes again. → `Drain` (inactive; also when none ran)
    DrainStop,
    /// The drain's progress. → `Drain`
    DrainStatus,
    /// Answered once the drain is drained (its time is over and nothing is in flight on its
    /// services); follows a drain restarted meanwhile. → `Drain` |
    /// `Error{not_draining | drain_stopped | shutting_down}`
    DrainWait,
    /// A link that lets its holder past maintenance: opened once, it sets a signed cookie
    /// (living the rest of `ttl_secs`, default an hour) and redirects to `path` (default `/`).
    /// `target` scopes it to that record (none: every record); `base` is the origin the link
    /// names (default kinfrad's first listen address). → `BypassLink` | `Error{invalid_argument}`
    MaintBypassLink {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl_secs: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
    },
    /// Schedule a maintenance window of `target` (none: the global record) starting at `at`
    /// (wall-clock time in `tz`, or RFC 3339 with an offset; no `tz`: kinfrad's local zone),
    /// once or `every` `day`/`week`. → `Schedule` (the new window) | `Error{invalid_argument}`
    MaintSchedule {
        at: String,
        duration_secs: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        every: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tz: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        /// Warning lead time (none: kinfrad's default; 0: no warning).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        warn_secs: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        issue: Option<String>,
    },
    /// Every scheduled window. → `Schedule`
    MaintScheduleList,
    /// Forget window `id`; one in progress leaves its maintenance. → `Schedule` (the window
    /// cancelled) | `Error{invalid_argument}`
    MaintScheduleCancel {
        id: u64,
    },
    /// The event log after `after` (a `seq`; none: every event kept), oldest first, as many as
    /// fit one frame. With `wait`, when there is none after `after` yet, answered once there
    /// is (`kinfractl events -f`); dropped when the client hangs up. → `Events` |
    /// `Error{shutting_down}`
    Events {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<u64>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        wait: bool,
    },
    /// Change the fleet's shared intent in etcd, comparing against `revision` when given (what
    /// the operator read), else against the revision kinfrad reads first. → `Fleet` (the new
    /// intent) | `Error{conflict | fleet_unavailable | invalid_argument}`
    Fleet {
        change: crate::fleet::FleetChange,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        revision: Option<i64>,
    },
    /// The fleet's shared intent, read from etcd (the last applied when etcd is out of
    /// reach). → `Fleet` | `Error{fleet_unavailable}`
    FleetList,
    /// Every host of the fleet and this one's link. → `Fleet` | `Error{fleet_unavailable}`
    FleetStatus,
}

/// A response from the daemon.
// One response is built per request and sent at once: its size on the stack costs nothing
// worth a box (and a changed type for every user of `Status`).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    Hello {
        protocol: u32,
        server: String,
    },
    Status(StatusReport),
    Maintenance(StatusView),
    MaintRecords {
        records: Vec<StatusView>,
    },
    Reloaded {
        config: String,
    },
    Token {
        token: String,
    },
    Services {
        services: Vec<ServiceReport>,
    },
    ServiceAction {
        service: String,
        action: String,
    },
    Logs {
        service: String,
        lines: Vec<LogEntry>,
        dropped: u64,
        /// Older lines asked for but left out so the answer fits one frame.
        #[serde(default)]
        omitted: u64,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    Drain(DrainReport),
    /// A minted maintenance bypass link.
    BypassLink {
        url: String,
        /// When the link and its cookie expire (RFC 3339).
        expires: String,
        ttl_secs: u64,
        /// The record it is scoped to (absent: every record).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
    },
    Schedule {
        windows: Vec<WindowReport>,
    },
    Events(EventsReport),
    Fleet(Box<crate::fleet::FleetReport>),
}

/// Stable error codes; the message is for humans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was not a JSON object this protocol knows.
    BadRequest,
    /// The frame was larger than [`MAX_FRAME`].
    FrameTooLarge,
    /// The first request was not `hello`.
    HandshakeRequired,
    UnsupportedVersion,
    /// A field's value was refused; the message names the field.
    InvalidArgument,
    NotInMaintenance,
    ReloadFailed,
    /// The change could not be persisted, so it was not made.
    StateWriteFailed,
    PermissionDenied,
    Internal,
    /// `drain_wait` with no drain running.
    NotDraining,
    /// The drain waited for was stopped before it was drained.
    DrainStopped,
    /// kinfrad is stopping; the request could not finish.
    ShuttingDown,
    /// The fleet's intent changed since the revision the change was based on.
    Conflict,
    /// No fleet is configured, or etcd could not be reached.
    FleetUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::HandshakeRequired => "handshake_required",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::NotInMaintenance => "not_in_maintenance",
            ErrorCode::ReloadFailed => "reload_failed",
            ErrorCode::StateWriteFailed => "state_write_failed",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::Internal => "internal",
            ErrorCode::NotDraining => "not_draining",
            ErrorCode::DrainStopped => "drain_stopped",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Conflict => "conflict",
            ErrorCode::FleetUnavailable => "fleet_unavailable",
        }
    }
}

impl Response {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Response {
        Response::Error {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests;
