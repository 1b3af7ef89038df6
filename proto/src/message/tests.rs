//! Wire-shape tests of the control messages: what is on the wire must not change by accident.

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
    let short: Response = serde_json::from_str(r#"{"type":"drain","active":false}"#).expect("de");
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
