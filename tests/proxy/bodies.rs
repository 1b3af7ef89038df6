//! Request and response bodies: 200 MiB streamed both ways without buffering (kinfrad's RSS is
//! watched), the body limit enforced before forwarding, an upstream answering an upload early,
//! and an upstream that answers while it still reads the body.

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use crate::prelude::*;

const BIG: u64 = 200 * 1024 * 1024;

/// Samples a process's resident set size until stopped; yields (max KiB, samples).
struct RssWatch {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<(u64, usize)>,
}

impl RssWatch {
    fn start(pid: i32) -> RssWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = thread::spawn(move || {
            let (mut max, mut n) = (0, 0);
            while !s.load(Ordering::SeqCst) {
                if let Some(k) = vmrss_kib(pid) {
                    max = max.max(k);
                    n += 1;
                }
                thread::sleep(Duration::from_millis(10));
            }
            (max, n)
        });
        RssWatch { stop, handle }
    }

    fn finish(self) -> (u64, usize) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("rss thread")
    }
}

#[test]
fn large_bodies_stream_without_buffering_and_the_limit_holds() {
    let up = Upstream::start(0, |s: &Seen| match s.target.as_str() {
        PROBE => Reply::text(200, "ok"),
        "/big/download" => Reply::Pattern(BIG),
        _ => Reply::json(
            200,
            &serde_json::json!({
                "len": s.body_check.len,
                "pattern": s.body_check.first_bad.is_none(),
                "first_bad": s.body_check.first_bad,
                "te": s.header("transfer-encoding"),
                "cl": s.header("content-length"),
            }),
        ),
    });
    let config = [
        service(
            "big",
            up.port(),
            &["/big/"],
            &format!("{FAST_HEALTH}\nmax_request_body = \"1GB\""),
        ),
        service(
            "small",
            up.port(),
            &["/small/"],
            &format!("{FAST_HEALTH}\nmax_request_body = \"1MB\""),
        ),
    ]
    .concat();
    let d = start(&config);
    wait_running(&d, "big");
    wait_running(&d, "small");
    let pid = d.pid();
    let base = vmrss_kib(pid).expect("kinfrad VmRSS");
    // A buffering proxy would hold the whole body: 200 MiB. Streaming stays near the baseline.
    let limit_kib = base + 64 * 1024;

    // Upload with Content-Length.
    let rss = RssWatch::start(pid);
    let mut c = Conn::open(d.addr);
    c.send(
        format!(
            "POST /big/upload-cl HTTP/1.1\r\nHost: big.test\r\nContent-Length: {BIG}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    for_pattern(BIG, |b| c.w.write_all(b)).expect("upload body");
    let r = c.response();
    let (max, samples) = rss.finish();
    eprintln!(
        "VmRSS baseline {base} KiB, max during Content-Length upload {max} KiB ({samples} samples)"
    );
    assert_eq!(r.status, 200, "{r:?} {}", r.text());
    let j = r.json();
    assert_eq!(j["len"], BIG, "{j}");
    assert_eq!(j["pattern"], true, "upload corrupted: {j}");
    assert!(samples > 0);
    assert!(
        max < limit_kib,
        "kinfrad's RSS reached {max} KiB during a {} MiB upload (baseline {base} KiB)",
        BIG >> 20
    );

    // Upload chunked.
    let rss = RssWatch::start(pid);
    let mut c = Conn::open(d.addr);
    c.send(b"POST /big/upload-chunked HTTP/1.1\r\nHost: big.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    for_pattern(BIG, |b| {
        c.w.write_all(format!("{:x}\r\n", b.len()).as_bytes())?;
        c.w.write_all(b)?;
        c.w.write_all(b"\r\n")
    })
    .expect("chunked upload body");
    c.send(b"0\r\n\r\n");
    let r = c.response();
    let (max, _) = rss.finish();
    assert_eq!(r.status, 200, "{r:?} {}", r.text());
    let j = r.json();
    assert_eq!(j["len"], BIG, "{j}");
    assert_eq!(j["pattern"], true, "chunked upload corrupted: {j}");
    assert!(
        max < limit_kib,
        "kinfrad's RSS reached {max} KiB during a chunked upload (baseline {base} KiB)"
    );

    // Download.
    let rss = RssWatch::start(pid);
    let mut c = Conn::open(d.addr);
    c.send(b"GET /big/download HTTP/1.1\r\nHost: big.test\r\nConnection: close\r\n\r\n");
    let mut check = PatternCheck::default();
    let r = read_response_with(&mut c.r, false, &mut |b| check.update(b)).expect("download");
    let (max, _) = rss.finish();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        check.is_pattern(BIG),
        "download corrupted: {check:?} (want {BIG} pattern bytes)"
    );
    assert!(
        max < limit_kib,
        "kinfrad's RSS reached {max} KiB during a download (baseline {base} KiB)"
    );

    // Over the limit, announced by Content-Length: 413 before anything is forwarded.
    let n = 2_000_000u64;
    let head = format!(
        "POST /small/upload HTTP/1.1\r\nHost: small.test\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n"
    );
    let (out, _) = exchange(d.addr, head.as_bytes(), Duration::from_secs(5), move |w| {
        for_pattern(n, |b| w.write_all(b))
    });
    let r = responses_in(&out).into_iter().next().unwrap_or_else(|| {
        panic!(
            "no response to an oversized upload: {:?}",
            String::from_utf8_lossy(&out)
        )
    });
    assert_eq!(r.status, 413, "{r:?} {}", r.text());
    let j = r.json();
    assert_eq!(j["error"]["code"], "payload_too_large", "{j}");
    assert!(
        j["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("1000000"),
        "the message should name the limit: {j}"
    );

    // Over the limit, chunked (no length up front): 413 too, and the upstream never gets it all.
    let head = "POST /small/upload-chunked HTTP/1.1\r\nHost: small.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let (out, _) = exchange(d.addr, head.as_bytes(), Duration::from_secs(5), move |w| {
        for_pattern(n, |b| {
            for piece in b.chunks(64 * 1024) {
                w.write_all(format!("{:x}\r\n", piece.len()).as_bytes())?;
                w.write_all(piece)?;
                w.write_all(b"\r\n")?;
            }
            Ok(())
        })?;
        w.write_all(b"0\r\n\r\n")
    });
    let r = responses_in(&out).into_iter().next().unwrap_or_else(|| {
        panic!(
            "no response to an oversized chunked upload: {:?}",
            String::from_utf8_lossy(&out)
        )
    });
    assert_eq!(r.status, 413, "{r:?} {}", r.text());
    assert_eq!(r.json()["error"]["code"], "payload_too_large");
    let small: Vec<Seen> = up
        .requests()
        .into_iter()
        .filter(|s| s.target.starts_with("/small/"))
        .collect();
    assert!(
        small.is_empty(),
        "oversized bodies reached the upstream: {small:?}"
    );
    assert_alive(&d, "/small/fine");
}

/// An upstream may answer a request before reading its body (401, 413, a redirect) and close.
/// The client must get that answer — or at least the fallback — never a bare reset.
#[test]
fn early_upstream_answer_to_an_upload_reaches_the_client() {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let heads = Arc::new(AtomicU64::new(0));
    {
        let heads = heads.clone();
        thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { return };
                let heads = heads.clone();
                thread::spawn(move || {
                    let Ok(mut w) = s.try_clone() else { return };
                    let mut r = BufReader::new(s);
                    // TCP health probes connect and leave.
                    let Ok(Some(_)) = read_head(&mut r) else {
                        return;
                    };
                    heads.fetch_add(1, Ordering::SeqCst);
                    let _ = w.write_all(
                        b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/plain\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big!",
                    );
                    thread::sleep(Duration::from_millis(50));
                    let _ = w.shutdown(Shutdown::Both);
                });
            }
        });
    }
    let d = start(&service(
        "early",
        port,
        &["/"],
        &format!(
            "health_check = {{ type = \"tcp\", interval = \"200ms\", timeout = \"500ms\", grace = \"0s\" }}\nmax_request_body = \"100MB\"\n{NO_BREAKER}"
        ),
    ));
    wait_running(&d, "early");
    let mut outcomes = Vec::new();
    for n in [1000u64, 8 << 20] {
        let head = format!(
            "POST /upload HTTP/1.1\r\nHost: e.test\r\nAccept: application/json\r\nConnection: close\r\nContent-Length: {n}\r\n\r\n"
        );
        let (out, _) = exchange(d.addr, head.as_bytes(), Duration::from_secs(3), move |w| {
            for_pattern(n, |b| w.write_all(b))
        });
        let r = responses_in(&out).into_iter().next();
        eprintln!(
            "early 413 to a {n}-byte upload ({}): {:?}",
            if fast_path() { "fast path" } else { "hyper" },
            String::from_utf8_lossy(&out[..out.len().min(200)])
        );
        match r {
            Some(r) if r.status == 413 && r.text() == "too big!" => {}
            Some(r) if r.status == 503 => {
                assert_json_fallback(&r, "early");
            }
            other => outcomes.push(format!("{n} bytes: {other:?}")),
        }
    }
    assert!(
        heads.load(Ordering::SeqCst) >= 2,
        "the uploads never reached the upstream"
    );
    assert!(
        outcomes.is_empty(),
        "no answer (want the upstream's 413 or the fallback): {outcomes:#?}"
    );
    assert_eq!(get(d.addr, "/health").status, 200);
}

/// An upstream that streams its answer while it is still reading the request body (an echo):
/// kinfrad has to read the response while it writes the body, or both sides block once the
/// socket buffers fill.
#[test]
fn upstream_answering_while_reading_the_body_does_not_deadlock() {
    const N: u64 = 16 << 20;
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            thread::spawn(move || {
                let Ok(mut w) = s.try_clone() else { return };
                let mut r = BufReader::new(s);
                let Ok(Some((_, headers))) = read_head(&mut r) else {
                    return;
                };
                let mut left: u64 = header(&headers, "content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if w.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .is_err()
                {
                    return;
                }
                let mut buf = vec![0u8; 64 * 1024];
                while left > 0 {
                    let want = left.min(buf.len() as u64) as usize;
                    let Ok(n) = r.read(&mut buf[..want]) else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    left -= n as u64;
                    let mut chunk = format!("{n:x}\r\n").into_bytes();
                    chunk.extend_from_slice(&buf[..n]);
                    chunk.extend_from_slice(b"\r\n");
                    if w.write_all(&chunk).is_err() {
                        return;
                    }
                }
                let _ = w.write_all(b"0\r\n\r\n");
            });
        }
    });
    let d = start(&service(
        "duplex",
        port,
        &["/"],
        &format!(
            "health_check = {{ type = \"tcp\", interval = \"200ms\", timeout = \"500ms\", grace = \"0s\" }}\nmax_request_body = \"100MB\"\ntimeouts = {{ idle = \"2s\" }}\n{NO_BREAKER}"
        ),
    ));
    wait_running(&d, "duplex");
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: d.test\r\nConnection: close\r\nContent-Length: {N}\r\n\r\n"
    );
    let mut c = Conn::open(d.addr);
    c.send(head.as_bytes());
    let mut w = c.w.try_clone().expect("clone");
    let writer = thread::spawn(move || for_pattern(N, |b| w.write_all(b)));
    let mut check = PatternCheck::default();
    let r = read_response_with(&mut c.r, false, &mut |b| check.update(b));
    let wrote = writer.join().expect("writer");
    let r = r.unwrap_or_else(|e| {
        panic!(
            "no echo ({e}); {} of {N} bytes came back; upload: {wrote:?}",
            check.len
        )
    });
    assert_eq!(r.status, 200, "{r:?}");
    assert!(check.is_pattern(N), "echo corrupted: {check:?}");
    wrote.expect("upload");
}
