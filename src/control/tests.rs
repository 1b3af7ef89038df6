//! Unit tests of the control socket's server: access rules and how a bad request is quoted back.

use super::*;

#[test]
fn bad_requests_quote_little_of_what_was_sent() {
    let long_type = format!(r#"{{"type":"{}"}}"#, "\\\"é".repeat(20_000));
    let long_value = format!(
        r#"{{"type":"maint_enter","countdown_secs":"{}"}}"#,
        "\\\"é".repeat(20_000)
    );
    for frame in [long_type, long_value] {
        let e = serde_json::from_str::<Request>(&frame).expect_err("refused");
        let msg = describe_bad_request(frame.as_bytes(), &e);
        assert!(msg.len() < 2 * protocol::MAX_ECHO + 64, "{}", msg.len());
        assert!(msg.contains('…'), "{msg}");
    }
    let frame = br#"{"type":"maint_enter","countdown_secs":"soon"}"#;
    let e = serde_json::from_slice::<Request>(frame).expect_err("refused");
    let msg = describe_bad_request(frame, &e);
    assert!(msg.contains("\"soon\", expected i64"), "{msg}");
    assert_eq!(clip_middle("abcdef", 4), "ab…ef");
    assert_eq!(clip_middle("ééé", 4), "é…é");
    assert_eq!(clip_middle("abc", 4), "abc");
}

#[test]
fn access_rules() {
    let a = Access {
        own_uid: 1000,
        group_gid: Some(500),
        group_name: "kinfra".into(),
    };
    assert!(a.allows(0, 0, None));
    assert!(a.allows(1000, 1000, None));
    assert!(a.allows(1001, 500, None));
    assert!(!a.allows(1001, 1001, None));
    let none = Access {
        group_gid: None,
        ..a
    };
    assert!(!none.allows(1001, 500, None));
}
