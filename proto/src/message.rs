//! The messages: [`Request`], [`Response`] and their stable [`ErrorCode`]s, with the protocol
//! version and the frame limit. The shapes they carry are in `report`.

use serde::{Deserialize, Serialize};

use crate::report::{DrainReport, LogEntry, ServiceReport, StatusReport, StatusView, StepSpec};
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
mod tests {
    use super::*;

    #[test]
    fn wire_shapes_are_stable() {
        let r = Request::MaintEnter {
            url: Some("http://127.0.0.1:8081/".into()),
            message: None,
            issue: None,
            countdown_secs: Some(600),
            target: None,
        };
        assert_eq!(
            serde_json::to_string(&r).expect("ser"),
            r#"{"type":"maint_enter","url":"http://127.0.0.1:8081/","countdown_secs":600}"#
        );
        let h: Request =
            serde_json::from_str(r#"{"type":"hello","protocol":1,"client":"x"}"#).expect("de");
        assert_eq!(
            h,
            Request::Hello {
                protocol: 1,
                client: "x".into()
            }
        );
        let e = Response::error(ErrorCode::NotInMaintenance, "no");
        assert_eq!(
            serde_json::to_string(&e).expect("ser"),
            r#"{"type":"error","code":"not_in_maintenance","message":"no"}"#
        );
    }

    #[test]
    fn drain_shapes() {
        let r = Request::DrainStart {
            target: None,
            duration_ms: 60_000,
        };
        assert_eq!(
            serde_json::to_string(&r).expect("ser"),
            r#"{"type":"drain_start","duration_ms":60000}"#
        );
        let r: Request =
            serde_json::from_str(r#"{"type":"drain_start","target":"api,web","duration_ms":5}"#)
                .expect("de");
        assert_eq!(
            r,
            Request::DrainStart {
                target: Some("api,web".into()),
                duration_ms: 5
            }
        );
        for (req, text) in [
            (Request::DrainStop, r#"{"type":"drain_stop"}"#),
            (Request::DrainStatus, r#"{"type":"drain_status"}"#),
            (Request::DrainWait, r#"{"type":"drain_wait"}"#),
        ] {
            assert_eq!(serde_json::to_string(&req).expect("ser"), text);
        }
        assert!(serde_json::from_str::<Request>(r#"{"type":"drain_start"}"#).is_err());
        let e = Response::error(ErrorCode::DrainStopped, "stopped");
        assert_eq!(
            serde_json::to_string(&e).expect("ser"),
            r#"{"type":"error","code":"drain_stopped","message":"stopped"}"#
        );
        // An inactive report, and one with every field: both round-trip; a report missing
        // the optional fields still reads.
        let off = DrainReport::default();
        let text = serde_json::to_string(&Response::Drain(off.clone())).expect("ser");
        assert!(
            text.starts_with(r#"{"type":"drain","active":false,"#),
            "{text}"
        );
        assert_eq!(
            serde_json::from_str::<Response>(&text).expect("de"),
            Response::Drain(off)
        );
        let on = DrainReport {
            active: true,
            target: Some("ALL".into()),
            services: vec!["api".into()],
            start_time: Some(1_750_000_000_000),
            duration_ms: Some(60_000),
            end_time: Some(1_750_000_060_000),
            progress: 0.75,
            remaining_ms: 15_000,
            rejection_probability: 0.5,
            rejected: 12,
            in_flight: 1,
            drained: false,
            drained_at: None,
        };
        let text = serde_json::to_string(&Response::Drain(on.clone())).expect("ser");
        assert_eq!(
            serde_json::from_str::<Response>(&text).expect("de"),
            Response::Drain(on)
        );
        let short: Response =
            serde_json::from_str(r#"{"type":"drain","active":false}"#).expect("de");
        assert_eq!(short, Response::Drain(DrainReport::default()));
    }

    #[test]
    fn bypass_link_shapes() {
        let r = Request::MaintBypassLink {
            ttl_secs: None,
            target: None,
            base: None,
            path: None,
        };
        assert_eq!(
            serde_json::to_string(&r).expect("ser"),
            r#"{"type":"maint_bypass_link"}"#
        );
        let r: Request = serde_json::from_str(
            r#"{"type":"maint_bypass_link","ttl_secs":60,"target":"api","base":"https://x.example","path":"/a"}"#,
        )
        .expect("de");
        assert_eq!(
            r,
            Request::MaintBypassLink {
                ttl_secs: Some(60),
                target: Some("api".into()),
                base: Some("https://x.example".into()),
                path: Some("/a".into()),
            }
        );
        let a = Response::BypassLink {
            url: "http://127.0.0.1:80/kinfra/bypass?t=v1".into(),
            expires: "2026-12-24T02:00:00Z".into(),
            ttl_secs: 3600,
            target: None,
        };
        assert_eq!(
            serde_json::to_string(&a).expect("ser"),
            r#"{"type":"bypass_link","url":"http://127.0.0.1:80/kinfra/bypass?t=v1","expires":"2026-12-24T02:00:00Z","ttl_secs":3600}"#
        );
    }

    #[test]
    fn per_target_maintenance_shapes() {
        // Old clients' shapes still read, and mean what they meant (the global record).
        let old: Request = serde_json::from_str(r#"{"type":"maint_exit"}"#).expect("de");
        assert_eq!(
            old,
            Request::MaintExit {
                target: None,
                all: false
            }
        );
        assert_eq!(
            serde_json::to_string(&old).expect("ser"),
            r#"{"type":"maint_exit"}"#
        );
        let old: Request =
            serde_json::from_str(r#"{"type":"maint_update","message":"m"}"#).expect("de");
        assert_eq!(
            old,
            Request::MaintUpdate {
                message: Some("m".into()),
                issue: None,
                countdown_secs: None,
                target: None,
                url: None
            }
        );
        let r = Request::MaintExit {
            target: Some("api".into()),
            all: false,
        };
        assert_eq!(
            serde_json::to_string(&r).expect("ser"),
            r#"{"type":"maint_exit","target":"api"}"#
        );
        let r = Request::MaintExit {
            target: None,
            all: true,
        };
        assert_eq!(
            serde_json::to_string(&r).expect("ser"),
            r#"{"type":"maint_exit","all":true}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::MaintList).expect("ser"),
            r#"{"type":"maint_list"}"#
        );
        let r = Response::MaintRecords { records: vec![] };
        assert_eq!(
            serde_json::to_string(&r).expect("ser"),
            r#"{"type":"maint_records","records":[]}"#
        );
    }

    #[test]
    fn schedule_shapes() {
        let r = Request::MaintSchedule {
            at: "2026-12-24T02:00".into(),
            duration_secs: 1800,
            every: None,
            tz: None,
            target: None,
            warn_secs: None,
            message: None,
            issue: None,
        };
        assert_eq!(
            serde_json::to_string(&r).expect("ser"),
            r#"{"type":"maint_schedule","at":"2026-12-24T02:00","duration_secs":1800}"#
        );
        let full: Request = serde_json::from_str(
            r#"{"type":"maint_schedule","at":"2026-12-24T02:00","duration_secs":60,"every":"week","tz":"Europe/Berlin","target":"api","warn_secs":0,"message":"m","issue":"i"}"#,
        )
        .expect("de");
        assert!(matches!(
            full,
            Request::MaintSchedule { every: Some(ref e), warn_secs: Some(0), .. } if e == "week"
        ));
        assert!(serde_json::from_str::<Request>(r#"{"type":"maint_schedule","at":"x"}"#).is_err());
        assert_eq!(
            serde_json::to_string(&Request::MaintScheduleList).expect("ser"),
            r#"{"type":"maint_schedule_list"}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::MaintScheduleCancel { id: 4 }).expect("ser"),
            r#"{"type":"maint_schedule_cancel","id":4}"#
        );
        let w = WindowReport {
            id: 4,
            target: "ALL".into(),
            at: "2026-12-24T02:00:00".into(),
            tz: "UTC".into(),
            duration_secs: 60,
            ..WindowReport::default()
        };
        let text = serde_json::to_string(&Response::Schedule {
            windows: vec![w.clone()],
        })
        .expect("ser");
        assert_eq!(
            text,
            r#"{"type":"schedule","windows":[{"id":4,"target":"ALL","at":"2026-12-24T02:00:00","tz":"UTC","duration_secs":60,"warn_secs":0,"active":false}]}"#
        );
        assert_eq!(
            serde_json::from_str::<Response>(&text).expect("de"),
            Response::Schedule { windows: vec![w] }
        );
    }

    #[test]
    fn unknown_and_malformed_are_rejected() {
        assert!(serde_json::from_str::<Request>(r#"{"type":"format_disk"}"#).is_err());
        // Unknown fields are ignored: fields are only ever added, as optional ones.
        assert!(serde_json::from_str::<Request>(r#"{"type":"status","extra":1}"#).is_ok());
        assert!(
            serde_json::from_str::<Request>(r#"{"type":"maint_enter","countdown_secs":"ten"}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<Request>("[1,2]").is_err());
    }
}
