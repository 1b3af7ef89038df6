//! What kinfrad's fallback answers look like, asserted in one place: the JSON an API client gets
//! and the HTML page a browser gets when a service cannot answer (down, starting, circuit open,
//! broken response), each a 503 with Retry-After and `Cache-Control: no-store`.

use serde_json::Value;

use super::http::Resp;

/// A JSON fallback: 503, Retry-After, no-store, the documented fields.
pub fn assert_json_fallback(r: &Resp, service: &str) -> Value {
    assert_eq!(r.status, 503, "want the fallback, got: {r:?} {}", r.text());
    assert!(r.header("retry-after").is_some(), "no Retry-After: {r:?}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let j = r.json();
    assert_eq!(j["error"], "service_unavailable", "{j}");
    assert_eq!(j["service"], service, "{j}");
    for k in [
        "state",
        "status_message",
        "error_detail",
        "circuit_state",
        "health_status",
    ] {
        assert!(j.get(k).is_some(), "fallback JSON lacks {k}: {j}");
    }
    j
}

/// An HTML fallback: 503, Retry-After, no-store, `x-kinfra-fallback`; returns the kind.
pub fn assert_html_fallback(r: &Resp) -> String {
    assert_eq!(
        r.status,
        503,
        "want the fallback page, got: {r:?} {}",
        r.text()
    );
    assert!(r.header("retry-after").is_some(), "no Retry-After: {r:?}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{r:?}"
    );
    assert!(
        r.text().to_ascii_lowercase().contains("<html"),
        "{}",
        r.text()
    );
    r.header("x-kinfra-fallback")
        .unwrap_or_else(|| panic!("no x-kinfra-fallback header: {r:?}"))
        .to_string()
}
