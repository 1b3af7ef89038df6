//! The fast path's response side: `h1::fuzzing::response` (`read_response_head`'s httparse
//! call, 1xx heads rewritten for the client, then `rewrite_response`) and the `Chunked` body
//! decoder.
//!
//! Input: a flags byte (HEAD request or not; how to split the body), then what the upstream
//! sent. The rewritten head must be CRLF lines only, parse again as the same response, carry
//! the upstream's end-to-end headers in order and no hop-by-hop header, and frame its body one
//! way only. The chunked decoder must find the same end however its input is split.
#![no_main]

use kinfra::proxy::h1::fuzzing::{BodyFraming, chunked, response};
use libfuzzer_sys::fuzz_target;

/// Header names a proxy never forwards (RFC 9110 §7.6.1): the list both paths strip.
use kinfra::proxy::HOP;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, raw)) = data.split_first() else {
        return;
    };
    let head_only = flags & 1 != 0;
    let body = match response(raw, head_only) {
        Ok(Some(r)) => {
            check_head(raw, head_only, &r);
            &raw[r.consumed..]
        }
        // Without a head, the decoder gets the whole input.
        Ok(None) | Err(_) => raw,
    };
    check_chunked(body, usize::from(flags >> 1) + 1);
});

/// An interim (1xx) head passed on to the client: CRLF lines, one whole 1xx head, no
/// hop-by-hop header.
fn check_interim(head: &[u8]) {
    let mut h = vec![httparse::EMPTY_HEADER; 256];
    let mut resp = httparse::Response::new(&mut h);
    assert_eq!(
        resp.parse(head),
        Ok(httparse::Status::Complete(head.len())),
        "{:?}",
        String::from_utf8_lossy(head)
    );
    assert!(resp.code.is_some_and(|c| (100..200).contains(&c) && c != 101));
    for h in resp.headers.iter() {
        let n = h.name.to_ascii_lowercase();
        assert!(!HOP.contains(&n.as_str()), "hop-by-hop {n} in a 1xx");
    }
    for (i, &b) in head.iter().enumerate() {
        match b {
            b'\n' => assert!(i > 0 && head[i - 1] == b'\r', "bare LF at {i}"),
            b'\r' => assert_eq!(head.get(i + 1), Some(&b'\n'), "bare CR at {i}"),
            _ => {}
        }
    }
}

fn check_head(raw: &[u8], head_only: bool, r: &kinfra::proxy::h1::fuzzing::Rewritten) {
    assert!(r.consumed <= raw.len());
    for i in &r.interim {
        check_interim(i);
    }
    let head = &r.head;
    // CRLF lines only: every LF follows a CR, every CR precedes an LF, and it ends with one.
    assert!(
        head.ends_with(b"\r\n"),
        "{:?}",
        String::from_utf8_lossy(head)
    );
    for (i, &b) in head.iter().enumerate() {
        match b {
            b'\n' => assert!(i > 0 && head[i - 1] == b'\r', "bare LF at {i}"),
            b'\r' => assert_eq!(head.get(i + 1), Some(&b'\n'), "bare CR at {i}"),
            _ => {}
        }
    }

    // The upstream's head (the last one: 1xx heads before it were skipped).
    let mut last = &raw[..r.consumed];
    let up_head = loop {
        let mut h = vec![httparse::EMPTY_HEADER; 256];
        let mut resp = httparse::Response::new(&mut h);
        let n = match resp.parse(last) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!("upstream head: {other:?}"),
        };
        if n == last.len() {
            break last;
        }
        last = &last[n..];
    };
    let mut uh = vec![httparse::EMPTY_HEADER; 256];
    let mut up = httparse::Response::new(&mut uh);
    up.parse(up_head).expect("upstream head");
    assert_eq!(up.code, Some(r.status));
    let mut named: Vec<String> = Vec::new();
    let mut te = false;
    for h in up.headers.iter() {
        match h.name.to_ascii_lowercase().as_str() {
            "connection" => named.extend(
                String::from_utf8_lossy(h.value)
                    .split(',')
                    .map(|t| t.trim().to_ascii_lowercase()),
            ),
            "transfer-encoding" => te = true,
            _ => {}
        }
    }
    let end_to_end: Vec<(String, &[u8])> = up
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value))
        // Content-Length frames the body: no Connection token removes it.
        .filter(|(n, _)| {
            !HOP.contains(&n.as_str()) && (n == "content-length" || !named.contains(n))
        })
        .filter(|(n, _)| !(n == "content-length" && (te || r.status == 204)))
        .collect();

    // The rewritten head, with the blank line `proxy` adds, parses as one whole head.
    let mut whole = head.clone();
    whole.extend_from_slice(b"\r\n");
    let mut oh = vec![httparse::EMPTY_HEADER; 256];
    let mut out = httparse::Response::new(&mut oh);
    assert_eq!(
        out.parse(&whole),
        Ok(httparse::Status::Complete(whole.len())),
        "{:?}",
        String::from_utf8_lossy(&whole)
    );
    assert_eq!(out.version, Some(1));
    assert_eq!(out.code, Some(r.status));

    let mut kept = Vec::new();
    let (mut chunked_lines, mut lengths, mut dates) = (0, Vec::new(), 0);
    for h in out.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        if name == "transfer-encoding" {
            assert_eq!(h.value, b"chunked");
            chunked_lines += 1;
            continue;
        }
        assert!(!HOP.contains(&name.as_str()), "hop-by-hop {name} kept");
        if name == "content-length" {
            lengths.push(h.value);
        }
        if name == "date" {
            dates += 1;
        }
        kept.push((name, h.value));
    }
    // kinfrad adds a Date (after the upstream's lines) when the upstream sent none.
    if !up
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("date"))
    {
        let added = kept.pop().expect("a Date line");
        assert_eq!(added.0, "date");
        assert_eq!(dates, 1);
    }
    assert_eq!(kept, end_to_end, "end-to-end headers, in order");

    let bodiless = head_only || r.status == 204 || r.status == 304;
    match r.framing {
        BodyFraming::None => assert!(bodiless),
        BodyFraming::Chunked => {
            assert!(!bodiless && te);
            assert_eq!(chunked_lines, 1);
            assert!(lengths.is_empty(), "chunked and Content-Length");
        }
        BodyFraming::Length(n) => {
            assert!(!bodiless && !te);
            assert!(!lengths.is_empty());
            for l in lengths {
                let v = std::str::from_utf8(l.trim_ascii()).expect("digits");
                assert_eq!(v.parse::<u64>().ok(), Some(n), "{v:?}");
            }
        }
        BodyFraming::UntilClose => {
            assert!(!bodiless);
            assert!(!r.reusable);
            if te {
                assert!(lengths.is_empty(), "Transfer-Encoding and Content-Length");
            }
        }
    }
    if r.framing != BodyFraming::Chunked {
        assert_eq!(chunked_lines, 0);
    }
}

fn check_chunked(body: &[u8], step: usize) {
    let whole = chunked(&[body]);
    if let Ok((used, end)) = whole {
        assert!(used <= body.len());
        if end {
            assert!(body[..used].ends_with(b"\r\n\r\n"));
            // The body alone is the same body.
            assert_eq!(chunked(&[&body[..used]]), Ok((used, true)));
        } else {
            assert_eq!(used, body.len());
        }
    }
    // Split into pieces of `step` bytes, and split once at every point up to 64.
    let pieces: Vec<&[u8]> = body.chunks(step).collect();
    assert_eq!(chunked(&pieces), whole, "pieces of {step}");
    for cut in 1..body.len().min(64) {
        let (a, b) = body.split_at(cut);
        assert_eq!(chunked(&[a, b]), whole, "cut at {cut}");
    }
}
