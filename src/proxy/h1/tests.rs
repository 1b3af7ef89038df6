//! Unit tests: header tokens, Host and Content-Length values, response rewriting, chunked bodies.

use crate::proxy::ForwardError;

use super::classify::is_own_path;
use super::exchange::{Framing, RespHead, rewrite_interim, rewrite_response};
use super::head::{ConnTokens, Hdr, is_hop, parse_len, plain_host};

#[test]
fn chunked_end_is_found_across_splits() {
    let body = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\nNEXT";
    let end = body.len() - 4;
    assert_eq!(super::fuzzing::chunked(&[body]), Ok((end, true)));
    // Every split point gives the same answer.
    for cut in 1..body.len() {
        let (a, b) = body.split_at(cut);
        let r = super::fuzzing::chunked(&[a, b]).expect("valid");
        assert_eq!(r, (end, true), "cut at {cut}");
    }
    assert_eq!(super::fuzzing::chunked(&[b"0\r\n\r\n"]), Ok((5, true)));
    assert_eq!(super::fuzzing::chunked(&[b"5\r\nhel"]), Ok((6, false)));
}

#[test]
fn chunked_garbage_is_refused() {
    for bad in [
        &b"x\r\n"[..],
        b"\r\n",
        b"5\nhello",
        b"5\r\nhelloXY",
        b"ffffffffffffffffff\r\n",
        b"0\r\nbad\ntrailer",
    ] {
        assert!(
            super::fuzzing::chunked(&[bad]).is_err(),
            "{:?} accepted",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn content_length_values() {
    assert_eq!(parse_len(b"12"), Some(12));
    assert_eq!(parse_len(b" 7 "), Some(7));
    assert_eq!(
        parse_len(b"9999999999999999999"),
        Some(9_999_999_999_999_999_999)
    );
    for bad in [
        &b""[..],
        b"-1",
        b"1,2",
        b"+5",
        b"0x10",
        b"99999999999999999999",
    ] {
        assert_eq!(parse_len(bad), None, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn hop_by_hop_and_connection_named() {
    assert!(is_hop("Connection") && is_hop("TE") && is_hop("transfer-encoding"));
    for h in crate::proxy::HOP {
        assert!(is_hop(h) && is_hop(&h.to_ascii_uppercase()), "{h}");
    }
    assert!(!is_hop("user-agent") && !is_hop("accept"));
    assert!(!is_hop("x-forwarded-for"));
    let mut c = ConnTokens::default();
    c.add(b"keep-alive, X-Secret");
    assert!(c.names("x-secret") && !c.close && !c.upgrade);
    let mut c = ConnTokens::default();
    c.add(b"keep-alive");
    assert!(!c.names("x-secret") && c.named.is_empty());
    c.add(b" Close ,Upgrade");
    assert!(c.close && c.upgrade && c.names("close"));
    for h in crate::proxy::HOP {
        assert!(Hdr::of(h).hop(), "{h}");
    }
    assert_eq!(Hdr::of("Content-Length"), Hdr::ContentLength);
    assert_eq!(Hdr::of("X-FORWARDED-PROTO"), Hdr::XForwardedProto);
    assert_eq!(Hdr::of("content-lengtH"), Hdr::ContentLength);
    assert_eq!(Hdr::of("content-lengths"), Hdr::Other);
}

#[test]
fn plain_hosts_agree_with_the_full_parser() {
    for h in [
        "example.com",
        "example.com:8080",
        "127.0.0.1:9100",
        "a_b-c.d",
        "localhost:65535",
    ] {
        let full = crate::proxy::answers::parse_host(h).expect("valid");
        assert_eq!(plain_host(h.as_bytes()), Some(full.as_str()), "{h}");
    }
    // Left to the full parser (which lower-cases, or refuses).
    for h in [
        "Example.com",
        "[::1]:80",
        "host:",
        "host:99999",
        "a@b",
        "",
        ":80",
        "a b",
        "host:80:80",
        "host:8a",
        "hö",
    ] {
        assert_eq!(plain_host(h.as_bytes()), None, "{h}");
    }
}

#[test]
fn own_paths_go_to_the_router() {
    for p in [
        "/health",
        "/__status__",
        "/__events__",
        "/kinfra",
        "/kinfra/x",
        "/api/maintenance/status",
        "/api/dashboard/routes",
        "/api/health",
        "/api/health/readiness",
        "/metrics",
    ] {
        assert!(is_own_path(p), "{p}");
    }
    for p in [
        "/",
        "/api/users",
        "/healthz/x",
        "/app",
        "/api/healthz",
        "/metrics/app",
        "/metricsx",
    ] {
        assert!(!is_own_path(p), "{p}");
    }
}

fn rewrite(raw: &[u8]) -> Result<RespHead, ForwardError> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut r = httparse::Response::new(&mut headers);
    match r.parse(raw) {
        Ok(httparse::Status::Complete(n)) => rewrite_response(&r, raw, n, false),
        other => panic!("{other:?}"),
    }
}

#[test]
fn response_heads_are_rewritten() {
    let h = rewrite(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive, X-Up\r\nX-Up: 1\r\nKeep-Alive: timeout=5\r\nX-Kept: 2\r\n\r\nhello")
        .expect("ok");
    let text = String::from_utf8(h.out).expect("utf8");
    assert_eq!(h.framing, Framing::Length(5));
    assert!(h.reusable);
    assert!(
        text.contains("X-Kept: 2") && text.contains("Content-Length: 5"),
        "{text}"
    );
    assert!(
        !text.contains("X-Up") && !text.contains("Keep-Alive") && !text.contains("Connection"),
        "{text}"
    );
    assert!(text.contains("date: "), "a Date is added: {text}");

    let h = rewrite(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
        .expect("ok");
    let text = String::from_utf8(h.out).expect("utf8");
    assert_eq!(h.framing, Framing::Chunked);
    assert!(
        !text.contains("Content-Length"),
        "both framings never reach the client: {text}"
    );

    assert!(rewrite(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n").is_err());
    let h = rewrite(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").expect("ok");
    assert!(!h.reusable, "an HTTP/1.0 upstream connection closes");
    let h = rewrite(b"HTTP/1.1 200 OK\r\n\r\n").expect("ok");
    assert_eq!(h.framing, Framing::UntilClose);
}

#[test]
fn connection_never_names_away_the_framing() {
    // An upstream's `Connection: content-length` would leave the client no way to find the
    // body's end: the Content-Length stays, and so does the framing.
    let h = rewrite(
        b"HTTP/1.1 200 OK\r\nConnection: content-length, x-gone\r\nContent-Length: 5\r\nX-Gone: 1\r\n\r\nhello",
    )
    .expect("ok");
    let text = String::from_utf8(h.out).expect("utf8");
    assert_eq!(h.framing, Framing::Length(5));
    assert!(text.contains("Content-Length: 5"), "{text}");
    assert!(!text.contains("X-Gone"), "{text}");
}

#[test]
fn interim_responses_are_rewritten_for_the_client() {
    let raw = b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\nConnection: x-hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\r\n";
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut r = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(n)) = r.parse(raw) else {
        panic!("parse")
    };
    let out = String::from_utf8(rewrite_interim(&r, raw, n)).expect("utf8");
    assert_eq!(
        out,
        "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
    );
}

#[test]
fn kept_lines_are_copied_exactly_and_always_end_in_crlf() {
    // Neighbours go out in one piece; a dropped line, a bare LF, an empty value and odd
    // whitespace each end a piece, and every line leaves with CRLF.
    let raw = b"HTTP/1.1 200 OK\r\nA: 1\r\nB:2\r\nConnection: close\r\nC:  3\nD: 4\r\nE:\r\nF: 6\r\nDate: x\r\nContent-Length: 0\r\n\r\n";
    let h = rewrite(raw).expect("ok");
    assert_eq!(
        String::from_utf8(h.out).expect("utf8"),
        "HTTP/1.1 200 OK\r\nA: 1\r\nB:2\r\nC:  3\r\nD: 4\r\nE: \r\nF: 6\r\nDate: x\r\nContent-Length: 0\r\n"
    );
    assert!(!h.reusable, "Connection: close");
}
