//! The circuit breaker: it opens after consecutive upstream failures, lets one trial through
//! after the cool-down and closes when the upstream recovers; and faults of the client's own
//! (malformed, abandoned or stalled uploads) never count against the service.

use std::io::Write;
use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use crate::prelude::*;

#[test]
fn circuit_breaker_opens_half_opens_and_closes() {
    let healthy = Arc::new(AtomicBool::new(false));
    let hits = Arc::new(AtomicU64::new(0));
    let up = {
        let (healthy, hits) = (healthy.clone(), hits.clone());
        Upstream::start(0, move |s: &Seen| {
            if s.target == PROBE {
                return Reply::text(200, "probe ok");
            }
            hits.fetch_add(1, Ordering::SeqCst);
            if healthy.load(Ordering::SeqCst) {
                Reply::text(200, "all good")
            } else {
                Reply::text(500, "broken")
            }
        })
    };
    let d = start(&service(
        "cb",
        up.port(),
        &["/"],
        &format!(
            "{FAST_HEALTH}\ncircuit_breaker = {{ failures = 3, cooldown = \"1s\", half_open_requests = 1 }}"
        ),
    ));
    wait_running(&d, "cb");

    for i in 1..=3 {
        let r = json_get(d.addr, "/x");
        assert_eq!(r.status, 500, "failure {i} passes through: {}", r.text());
        assert_eq!(r.text(), "broken");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    // Open: the next requests get the fallback without reaching the upstream.
    for _ in 0..3 {
        let j = assert_json_fallback(&json_get(d.addr, "/x"), "cb");
        assert_eq!(j["circuit_state"], "open", "{j}");
    }
    assert_eq!(assert_html_fallback(&html_get(d.addr, "/x")), "503");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        3,
        "an open circuit let requests through"
    );
    let s = svc_status(&d, "cb");
    assert!(
        s["circuit_state"] == "open" || s["circuit_state"] == "half-open",
        "{s}"
    );
    assert!(s["circuit_failures"].as_u64().unwrap_or(0) >= 3, "{s}");

    // After the cool-down one trial goes through; it fails, so the circuit opens again.
    wait_svc(&d, "cb", "half-open", |s| s["circuit_state"] == "half-open");
    let r = json_get(d.addr, "/x");
    assert_eq!(
        r.status,
        500,
        "the trial reaches the upstream: {}",
        r.text()
    );
    assert_eq!(hits.load(Ordering::SeqCst), 4);
    let s = svc_status(&d, "cb");
    assert_eq!(s["circuit_state"], "open", "a failed trial reopens: {s}");
    assert_eq!(s["state"], "circuit_open", "{s}");
    let j = assert_json_fallback(&json_get(d.addr, "/x"), "cb");
    assert_eq!(j["circuit_state"], "open", "{j}");
    assert_eq!(hits.load(Ordering::SeqCst), 4);

    // The upstream recovers: the next trial succeeds and closes the circuit.
    healthy.store(true, Ordering::SeqCst);
    wait_svc(&d, "cb", "half-open", |s| s["circuit_state"] == "half-open");
    let r = json_get(d.addr, "/x");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "all good");
    let s = svc_status(&d, "cb");
    assert_eq!(s["circuit_state"], "closed", "{s}");
    assert_eq!(s["state"], "running", "{s}");
    for _ in 0..3 {
        assert_eq!(json_get(d.addr, "/x").status, 200);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 8);
}

#[test]
fn client_body_faults_are_the_clients_and_never_open_the_circuit() {
    let (up, d) = fault_setup("");
    let head = |path: &str| {
        format!("POST {path} HTTP/1.1\r\nHost: f.test\r\nTransfer-Encoding: chunked\r\n\r\n")
    };
    for round in 0..4 {
        // A malformed chunked upload: the client's bad framing.
        let mut req = head(&format!("/malformed-{round}")).into_bytes();
        req.extend_from_slice(b"5\r\nhello\r\nzz\r\n\r\n");
        let (out, _) = exchange(d.addr, &req, Duration::from_secs(5), |_| Ok(()));
        assert_eq!(
            first_status(&out),
            Some(400),
            "malformed chunked upload: {:?}",
            String::from_utf8_lossy(&out)
        );
        // An upload abandoned mid-body: the client closes its side.
        let (out, _) = exchange(
            d.addr,
            head(&format!("/abandoned-{round}")).as_bytes(),
            Duration::from_secs(5),
            |w| {
                w.write_all(b"100\r\nonly part of it")?;
                w.shutdown(Shutdown::Write)
            },
        );
        assert!(
            matches!(first_status(&out), None | Some(400)),
            "abandoned upload: {:?}",
            String::from_utf8_lossy(&out)
        );
        // An upload that stalls past the header timeout: 408, the client's fault.
        let (out, _) = exchange(
            d.addr,
            head(&format!("/stalled-{round}")).as_bytes(),
            Duration::from_secs(5),
            |w| {
                w.write_all(b"5\r\nhello\r\n")?;
                thread::sleep(Duration::from_secs(3));
                Ok(())
            },
        );
        assert_eq!(
            first_status(&out),
            Some(408),
            "stalled upload: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
    let s = svc_status(&d, "target");
    assert_eq!(
        s["circuit_state"], "closed",
        "client faults opened the circuit: {s}"
    );
    assert_eq!(
        s["failures"], 0,
        "client faults counted against the service: {s}"
    );
    assert_eq!(s["state"], "running", "{s}");
    let r = get(d.addr, "/after-faults");
    assert_eq!(r.status, 200, "visitors get: {} {}", r.status, r.text());
    // A whole upload still goes through.
    let mut req = head("/whole").into_bytes();
    req.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\n");
    let (out, _) = exchange(d.addr, &req, Duration::from_secs(5), |_| Ok(()));
    assert_eq!(
        first_status(&out),
        Some(200),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(up.receipts("/whole").len(), 1);
    // A real upstream failure still counts.
    drop(up);
    let r = get(d.addr, "/after-kill");
    assert_eq!(r.status, 503, "{}", r.text());
    wait_svc(&d, "target", "counted as failing", |s| {
        s["failures"].as_u64() > Some(0)
    });
}
