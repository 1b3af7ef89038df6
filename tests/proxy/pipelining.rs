//! Pipelined requests on one client connection, answered in order: GETs, POSTs with bodies
//! (small, far larger than one read, chunked), kinfrad's own paths and HEAD in one batch.

use std::io::Write;
use std::thread;

use crate::prelude::*;

/// The upstream's view of the requests whose targets start with `prefix`, as (method, target).
fn seen_in_order(up: &Upstream, prefix: &str) -> Vec<(String, String)> {
    up.requests()
        .into_iter()
        .filter(|s| s.target.starts_with(prefix))
        .map(|s| (s.method, s.target))
        .collect()
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let up = Upstream::start(0, echo("pipe"));
    let d = start(&service("pipe", up.port(), &["/"], FAST_HEALTH));
    wait_running(&d, "pipe");

    // Six requests in one write: GETs, a POST with a body in the middle, one of kinfrad's own
    // paths (answered by kinfrad itself), and a HEAD.
    let form = "field=value&other=%C3%BC&ünïcødé=✓";
    let batch = format!(
        "GET /pipe/1 HTTP/1.1\r\nHost: p.test\r\n\r\n\
         GET /pipe/2?q=a%20b HTTP/1.1\r\nHost: p.test\r\nX-N: 2\r\n\r\n\
         POST /pipe/3 HTTP/1.1\r\nHost: p.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}\
         GET /health HTTP/1.1\r\nHost: p.test\r\n\r\n\
         HEAD /pipe/5 HTTP/1.1\r\nHost: p.test\r\n\r\n\
         GET /pipe/6 HTTP/1.1\r\nHost: p.test\r\n\r\n",
        form.len()
    );
    let mut c = Conn::open(d.addr);
    c.send(batch.as_bytes());
    for (method, target) in [
        ("GET", "/pipe/1"),
        ("GET", "/pipe/2?q=a%20b"),
        ("POST", "/pipe/3"),
    ] {
        let r = c.response();
        assert_eq!(r.status, 200, "{method} {target}: {r:?} {}", r.text());
        let j = r.json();
        assert_eq!(
            (j["method"].as_str(), j["target"].as_str()),
            (Some(method), Some(target)),
            "responses out of order: {j}"
        );
        if method == "POST" {
            assert_eq!(j["body"], form, "{j}");
            assert_eq!(j["body_len"], form.len(), "{j}");
        }
    }
    let h = c.response();
    assert_eq!(h.status, 200, "/health: {h:?}");
    assert_eq!(h.json()["service"], "kinfrad", "{}", h.text());
    let r = c.head_response();
    assert_eq!(r.status, 200, "HEAD /pipe/5: {r:?}");
    let r = c.response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["target"], "/pipe/6", "{}", r.text());
    // A request after them on the same connection.
    c.send(b"GET /pipe/7 HTTP/1.1\r\nHost: p.test\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["target"], "/pipe/7", "{}", r.text());
    assert!(
        c.r.buffer().is_empty(),
        "extra bytes after the last response: {:?}",
        String::from_utf8_lossy(c.r.buffer())
    );
    let want: Vec<(String, String)> = [
        ("GET", "/pipe/1"),
        ("GET", "/pipe/2?q=a%20b"),
        ("POST", "/pipe/3"),
        ("HEAD", "/pipe/5"),
        ("GET", "/pipe/6"),
        ("GET", "/pipe/7"),
    ]
    .iter()
    .map(|(m, t)| (m.to_string(), t.to_string()))
    .collect();
    assert_eq!(seen_in_order(&up, "/pipe/"), want);
    let post = &up.receipts("/pipe/3")[0];
    assert_eq!(post.body, form.as_bytes());
    assert_eq!(
        post.header("content-length"),
        Some(form.len().to_string().as_str())
    );
    assert_eq!(
        post.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(up.receipts("/pipe/2?q=a%20b")[0].header("x-n"), Some("2"));

    // A POST whose body is far larger than one read, between two GETs, all in one write: the
    // body must be relayed exactly, and the GET behind it read as a request of its own.
    let n = 300 * 1024;
    let mut batch = format!(
        "GET /pipe-big/1 HTTP/1.1\r\nHost: p.test\r\n\r\n\
         POST /pipe-big/2 HTTP/1.1\r\nHost: p.test\r\nContent-Length: {n}\r\n\r\n"
    )
    .into_bytes();
    for_pattern(n, |b| {
        batch.extend_from_slice(b);
        Ok(())
    })
    .expect("pattern");
    batch.extend_from_slice(b"GET /pipe-big/3 HTTP/1.1\r\nHost: p.test\r\n\r\n");
    let mut c = Conn::open(d.addr);
    let mut w = c.w.try_clone().expect("clone");
    // From another thread: kinfrad answers while the batch is still being written.
    let writer = thread::spawn(move || w.write_all(&batch));
    for target in ["/pipe-big/1", "/pipe-big/2", "/pipe-big/3"] {
        let r = c.response();
        assert_eq!(r.status, 200, "{target}: {r:?} {}", r.text());
        let j = r.json();
        assert_eq!(j["target"], target, "{j}");
        if target == "/pipe-big/2" {
            assert_eq!(j["body_len"], n, "{j}");
        }
    }
    writer.join().expect("writer").expect("write the batch");
    let big = &up.receipts("/pipe-big/2")[0];
    assert!(
        big.body_check.is_pattern(n),
        "the pipelined body was changed: {:?}",
        big.body_check
    );
    c.send(b"GET /pipe-big/4 HTTP/1.1\r\nHost: p.test\r\n\r\n");
    assert_eq!(c.response().json()["target"], "/pipe-big/4");

    // A chunked POST in the middle (not the fast path's: the rest of the connection is
    // hyper's, starting with the bytes already read).
    let batch = "GET /pipe-te/1 HTTP/1.1\r\nHost: p.test\r\n\r\n\
         POST /pipe-te/2 HTTP/1.1\r\nHost: p.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n8\r\n, chunks\r\n0\r\n\r\n\
         GET /pipe-te/3 HTTP/1.1\r\nHost: p.test\r\n\r\n";
    let mut c = Conn::open(d.addr);
    c.send(batch.as_bytes());
    for target in ["/pipe-te/1", "/pipe-te/2", "/pipe-te/3"] {
        let r = c.response();
        assert_eq!(r.status, 200, "{target}: {r:?} {}", r.text());
        let j = r.json();
        assert_eq!(j["target"], target, "{j}");
        if target == "/pipe-te/2" {
            assert_eq!(j["body"], "hello, chunks", "{j}");
        }
    }
    c.send(b"GET /pipe-te/4 HTTP/1.1\r\nHost: p.test\r\n\r\n");
    assert_eq!(c.response().json()["target"], "/pipe-te/4");
    assert_eq!(
        seen_in_order(&up, "/pipe-te/")
            .into_iter()
            .map(|(_, t)| t)
            .collect::<Vec<_>>(),
        ["/pipe-te/1", "/pipe-te/2", "/pipe-te/3", "/pipe-te/4"]
    );
}
