//! Hostile request heads, refused before anything reaches the upstream: oversized heads, bad
//! Host headers, ambiguous framing (two lengths, obfuscated Transfer-Encodings) and
//! Content-Length with Transfer-Encoding, none of which may smuggle a second request through.

use std::time::Duration;

use crate::prelude::*;

/// An upstream that records everything, and kinfrad in front of it with a 16 KiB head limit.
fn hostile_setup() -> (Upstream, Daemon) {
    let up = Upstream::start(0, echo("target"));
    let d = start(&format!(
        "max_header_bytes = \"16KiB\"\n\n{}",
        service("target", up.port(), &["/"], FAST_HEALTH)
    ));
    wait_running(&d, "target");
    (up, d)
}

#[test]
fn oversized_heads_are_refused_before_the_upstream() {
    let (up, d) = hostile_setup();
    // Above the configured 16 KiB, below hyper's own buffer limit; then far above both.
    for size in [20 * 1024, 2 * 1024 * 1024] {
        let filler = "a".repeat(size);
        let head = format!(
            "GET /big-head HTTP/1.1\r\nHost: h.test\r\nX-Big: {filler}\r\nConnection: close\r\n\r\n"
        );
        let (out, _) = exchange(d.addr, head.as_bytes(), Duration::from_secs(5), |_| Ok(()));
        let status = first_status(&out);
        assert!(
            matches!(status, Some(431 | 400)),
            "a {size}-byte header got {status:?}: {:?}",
            String::from_utf8_lossy(&out[..out.len().min(300)])
        );
    }
    assert!(
        !up.requests().iter().any(|s| s.target == "/big-head"),
        "an oversized head reached the upstream"
    );
    // Under the limit is fine.
    let r = call(
        d.addr,
        "GET",
        "/ok",
        None,
        &[("X-Mid", &"b".repeat(8 * 1024))],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_alive(&d, "/after");
}

#[test]
fn bad_host_headers_are_refused() {
    let (up, d) = hostile_setup();
    let cases: [&[u8]; 4] = [
        b"GET /bad-host-1 HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n",
        b"GET /bad-host-2 HTTP/1.1\r\nHost: one.test\r\nHost: two.test\r\nConnection: close\r\n\r\n",
        b"GET /bad-host-3 HTTP/1.1\r\nHost: x@y\r\nConnection: close\r\n\r\n",
        b"GET /bad-host-4 HTTP/1.1\r\nHost: user@evil.test:80\r\nConnection: close\r\n\r\n",
    ];
    for req in cases {
        let (out, _) = exchange(d.addr, req, Duration::from_secs(5), |_| Ok(()));
        let status = first_status(&out);
        assert_eq!(
            status,
            Some(400),
            "{:?} got {:?}",
            String::from_utf8_lossy(req),
            String::from_utf8_lossy(&out[..out.len().min(300)])
        );
    }
    let reached: Vec<String> = up
        .requests()
        .into_iter()
        .map(|s| s.target)
        .filter(|t| t.starts_with("/bad-host"))
        .collect();
    assert!(
        reached.is_empty(),
        "bad Host headers reached the upstream: {reached:?}"
    );
    assert_alive(&d, "/after");
}

/// Send `req` (with a smuggled request behind it) on one connection; returns the responses.
fn smuggle(d: &Daemon, req: &[u8]) -> Vec<Resp> {
    let (out, _) = exchange(d.addr, req, Duration::from_secs(3), |_| Ok(()));
    responses_in(&out)
}

/// No request line "GET /smuggled" ever reached the upstream as a request.
fn assert_nothing_smuggled_as_request(up: &Upstream) {
    let smuggled: Vec<String> = up
        .requests()
        .into_iter()
        .map(|s| s.target)
        .filter(|t| t.contains("smuggled"))
        .collect();
    assert!(
        smuggled.is_empty(),
        "smuggled requests reached the upstream: {smuggled:?}"
    );
}

fn assert_nothing_smuggled(up: &Upstream) {
    let smuggled: Vec<Seen> = up
        .requests()
        .into_iter()
        .filter(|s| s.target.contains("smuggled") || s.target.contains("framing"))
        .collect();
    assert!(
        smuggled.is_empty(),
        "the upstream saw requests it should not have: {:?}",
        smuggled
            .iter()
            .map(|s| (&s.method, &s.target, &s.headers))
            .collect::<Vec<_>>()
    );
}

#[test]
fn ambiguous_framing_is_refused() {
    let (up, d) = hostile_setup();
    let tail = "GET /smuggled HTTP/1.1\r\nHost: h.test\r\n\r\n";
    let cases = [
        // Two different Content-Lengths.
        format!(
            "POST /framing-cl-cl HTTP/1.1\r\nHost: h.test\r\nContent-Length: 5\r\nContent-Length: 44\r\n\r\nhello{tail}"
        ),
        format!(
            "POST /framing-cl-list HTTP/1.1\r\nHost: h.test\r\nContent-Length: 5, 44\r\n\r\nhello{tail}"
        ),
        // chunked not last.
        format!(
            "POST /framing-te-identity HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{tail}"
        ),
        // Obfuscated Transfer-Encodings.
        format!(
            "POST /framing-te-x HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\nhello{tail}"
        ),
        format!(
            "POST /framing-te-space HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\nhello{tail}"
        ),
        format!(
            "POST /framing-te-two HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: cow\r\n\r\n0\r\n\r\n{tail}"
        ),
        format!(
            "POST /framing-te-twice HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{tail}"
        ),
        format!(
            "POST /framing-te-fold HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n\r\nhello{tail}"
        ),
        format!(
            "POST /framing-te-vt HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding:\x0bchunked\r\nContent-Length: 5\r\n\r\nhello{tail}"
        ),
    ];
    let mut wrong = Vec::new();
    for req in &cases {
        let resps = smuggle(&d, req.as_bytes());
        let name = req.split(' ').nth(1).unwrap_or("?");
        match resps.first() {
            Some(r) if (400..500).contains(&r.status) && resps.len() == 1 => {}
            _ => wrong.push(format!(
                "{name}: {:?}",
                resps
                    .iter()
                    .map(|r| (r.status, r.text()))
                    .collect::<Vec<_>>()
            )),
        }
    }
    assert!(
        wrong.is_empty(),
        "not refused cleanly (want exactly one 4xx): {wrong:#?}"
    );
    assert_nothing_smuggled(&up);
    assert_alive(&d, "/after");
}

/// Requests carrying both Content-Length and Transfer-Encoding, each followed by a pipelined
/// request that a front end and a back end disagreeing on the framing would see as a second one.
fn cl_te_cases() -> Vec<String> {
    let tail = "GET /smuggled HTTP/1.1\r\nHost: h.test\r\n\r\n";
    vec![
        // CL.TE: a front end going by Content-Length would forward the smuggled request as body.
        format!(
            "POST /framing-cl-te HTTP/1.1\r\nHost: h.test\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{tail}",
            5 + tail.len()
        ),
        // TE.CL: the smuggled request hides inside a chunk; Content-Length says 4.
        format!(
            "POST /framing-te-cl HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{:x}\r\n{tail}\r\n0\r\n\r\n{tail}",
            tail.len()
        ),
    ]
}

/// Content-Length + Transfer-Encoding: hyper frames the body by its chunked encoding, drops
/// Content-Length and closes the connection after the response (RFC 9112 §6.3), so nothing
/// behind such a request may reach the upstream as a request of its own, the upstream never
/// gets both framings, and the client connection ends.
#[test]
fn content_length_with_transfer_encoding_never_smuggles() {
    let (up, d) = hostile_setup();
    for req in cl_te_cases() {
        let name = req.split(' ').nth(1).unwrap_or("?").to_string();
        let (out, eof) = exchange(d.addr, req.as_bytes(), Duration::from_secs(3), |_| Ok(()));
        let resps = responses_in(&out);
        assert!(
            resps.len() <= 1,
            "{name}: the request pipelined behind it was answered too: {:?}",
            resps
                .iter()
                .map(|r| (r.status, r.text()))
                .collect::<Vec<_>>()
        );
        assert!(
            eof,
            "{name}: kinfrad kept the connection open after an ambiguously framed request"
        );
        for s in up.requests().iter().filter(|s| s.target == name) {
            assert!(
                s.header("content-length").is_none() || s.header("transfer-encoding").is_none(),
                "{name}: the upstream got both framings: {:?}",
                s.headers
            );
        }
    }
    assert_nothing_smuggled_as_request(&up);
    assert_alive(&d, "/after");
}
