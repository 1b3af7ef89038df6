//! Unit tests of header handling.

use super::*;
use axum::body::Body;
use http::Request;
use http::header::{self, HeaderMap, HeaderValue};

#[test]
fn hop_by_hop_headers_go() {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONNECTION,
        HeaderValue::from_static("keep-alive, x-secret"),
    );
    h.insert("x-secret", HeaderValue::from_static("1"));
    h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    h.insert("x-kept", HeaderValue::from_static("1"));
    strip_hop_by_hop(&mut h);
    assert!(
        h.get("x-secret").is_none()
            && h.get("keep-alive").is_none()
            && h.get(header::CONNECTION).is_none()
    );
    assert!(h.get("x-kept").is_some());
}

#[test]
fn the_bypass_cookie_never_leaves() {
    let b = crate::model::bypass::COOKIE;
    let s = crate::app::SESSION_COOKIE;
    assert_eq!(
        without_session_cookie(format!("a=1; {b}=v1.2.-.x; b=2").as_bytes()),
        Some(b"a=1; b=2".to_vec())
    );
    assert_eq!(
        without_session_cookie(format!("{s}=v1; {b}=v1").as_bytes()),
        Some(Vec::new())
    );
    assert_eq!(
        without_session_cookie(format!("{b}x=1;x{b}=2; kinfra_other=3").as_bytes()),
        None
    );
    let mut h = HeaderMap::new();
    h.append(
        header::COOKIE,
        HeaderValue::from_str(&format!("{b}=secret; c=3")).expect("value"),
    );
    strip_session_cookie(&mut h);
    assert_eq!(h.get(header::COOKIE).expect("kept"), "c=3");
}

#[test]
fn the_session_cookie_never_leaves() {
    let c = crate::app::SESSION_COOKIE;
    assert_eq!(without_session_cookie(b"a=1; b=2"), None);
    assert_eq!(
        without_session_cookie(format!("a=1; {c}=v1.2.x; b=2").as_bytes()),
        Some(b"a=1; b=2".to_vec())
    );
    assert_eq!(
        without_session_cookie(format!("{c}=v1").as_bytes()),
        Some(Vec::new())
    );
    // Cookies whose names only start or end like it are someone else's: left as sent.
    assert_eq!(
        without_session_cookie(format!("{c}x=1;x{c}=2").as_bytes()),
        None
    );
    let mut h = HeaderMap::new();
    h.append(header::COOKIE, HeaderValue::from_static("a=1"));
    h.append(
        header::COOKIE,
        HeaderValue::from_str(&format!("{c}=secret")).expect("value"),
    );
    h.append(
        header::COOKIE,
        HeaderValue::from_str(&format!("b=2; {c}=secret")).expect("value"),
    );
    strip_session_cookie(&mut h);
    let left: Vec<&str> = h
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(left, ["a=1", "b=2"]);
}

#[test]
fn underscored_names_and_named_framing() {
    let mut h = HeaderMap::new();
    h.insert("x_forwarded_for", HeaderValue::from_static("6.6.6.6"));
    h.insert("transfer_encoding", HeaderValue::from_static("chunked"));
    h.insert("x-fine", HeaderValue::from_static("1"));
    strip_underscore_names(&mut h);
    assert_eq!(h.len(), 1);
    assert!(h.contains_key("x-fine"));

    let mut h = HeaderMap::new();
    h.insert(
        header::CONNECTION,
        HeaderValue::from_static("content-length, host, x-a"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
    h.insert(header::HOST, HeaderValue::from_static("h"));
    h.insert("x-a", HeaderValue::from_static("1"));
    strip_hop_by_hop(&mut h);
    assert!(h.contains_key(header::CONTENT_LENGTH) && h.contains_key(header::HOST));
    assert!(!h.contains_key("x-a"));
}

#[test]
fn h2c_upgrades_are_never_tunnelled() {
    let req = |upgrade: &str| {
        Request::builder()
            .header(header::CONNECTION, "Upgrade, HTTP2-Settings")
            .header(header::UPGRADE, upgrade)
            .body(Body::empty())
            .expect("request")
    };
    assert!(upgrade_protocol(&req("h2c")).is_none());
    assert!(upgrade_protocol(&req("websocket, H2C")).is_none());
    assert!(upgrade_protocol(&req("websocket")).is_some());
}

#[test]
fn forwarded_headers_trust_only_loopback() {
    let mut h = HeaderMap::new();
    h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
    h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    add_forwarded(
        &mut h,
        Some("10.0.0.9:5000".parse().expect("addr")),
        Some(&HeaderValue::from_static("Example.com:8443")),
    );
    assert_eq!(h["x-forwarded-for"], "10.0.0.9");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(
        h["x-forwarded-host"], "Example.com:8443",
        "as the client sent it"
    );
    let mut h = HeaderMap::new();
    h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
    h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    add_forwarded(
        &mut h,
        Some("127.0.0.1:5000".parse().expect("addr")),
        Some(&HeaderValue::from_static("example.com")),
    );
    assert_eq!(h["x-forwarded-for"], "6.6.6.6, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "example.com");
}
