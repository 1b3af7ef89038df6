//! Upstream response framings relayed to the client: chunked (extensions, trailers, dribbled
//! byte by byte), Content-Length, 204, 304, HEAD, interim 1xx responses and close-delimited
//! bodies, on a kept-alive connection so a misjudged end of a body shows; and upstreams' framing
//! tricks, which never unframe a response.

use std::time::Duration;

use crate::prelude::*;

/// A chunked body with chunk extensions and a trailer, as an upstream sends it.
const CHUNKED_BODY: &[u8] =
    b"5;name=value\r\nhello\r\n7;a=b;quoted=\"x;y\"\r\n, world\r\n1\r\n!\r\n0\r\nX-Checksum: abc123\r\n\r\n";

/// The same body cut into many small writes: byte by byte around the framing, CR and LF of
/// one line apart.
fn chunked_pieces() -> Vec<Vec<u8>> {
    let mut pieces: Vec<Vec<u8>> = vec![
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTrans".to_vec(),
        b"fer-Encoding: chunked\r\n\r".to_vec(),
        b"\n".to_vec(),
    ];
    let body =
        b"a;ext=1\r\n0123456789\r\n10\r\nabcdefghijklmnop\r\n3\r\nxyz\r\n0\r\nX-Done: yes\r\n\r\n";
    let mut i = 0;
    while i < body.len() {
        let n = if body[i].is_ascii_alphanumeric() {
            4
        } else {
            1
        };
        let end = (i + n).min(body.len());
        pieces.push(body[i..end].to_vec());
        i = end;
    }
    pieces
}

const SLOW_CHUNKED_TEXT: &str = "0123456789abcdefghijklmnopxyz";

/// An upstream answering each path with one HTTP/1.1 framing, written by hand.
fn framing_upstream() -> Upstream {
    Upstream::start(0, |s: &Seen| {
        let keep = |b: &[u8]| Reply::raw(b, After::Keep);
        match s.target.as_str() {
            PROBE => Reply::text(200, "ok"),
            "/f/chunked" => {
                let mut r = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n".to_vec();
                r.extend_from_slice(CHUNKED_BODY);
                keep(&r)
            }
            "/f/chunked-slow" => Reply::Raw {
                pieces: chunked_pieces(),
                pause: Duration::from_millis(3),
                after: After::Keep,
            },
            "/f/length" => keep(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world",
            ),
            "/f/length-slow" => Reply::Raw {
                pieces: vec![
                    b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n".to_vec(),
                    b"\r\nhel".to_vec(),
                    b"lo wor".to_vec(),
                    b"ld".to_vec(),
                ],
                pause: Duration::from_millis(20),
                after: After::Keep,
            },
            "/f/204" => keep(b"HTTP/1.1 204 No Content\r\nX-Kind: 204\r\n\r\n"),
            // A 304 may carry the Content-Length of the representation it stands for.
            "/f/304" => keep(
                b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 1234\r\n\r\n",
            ),
            "/f/head" => {
                assert_eq!(s.method, "HEAD", "{s:?}");
                keep(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5000\r\n\r\n")
            }
            "/f/head-chunked" => {
                assert_eq!(s.method, "HEAD", "{s:?}");
                keep(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
            }
            "/f/interim" => Reply::Raw {
                pieces: vec![
                    b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n".to_vec(),
                    b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Final: yes\r\n\r\nfinal".to_vec(),
                ],
                pause: Duration::from_millis(20),
                after: After::Keep,
            },
            "/f/until-close" => {
                let mut pieces = vec![b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec()];
                for_pattern(256 * 1024, |b| {
                    pieces.extend(b.chunks(64 * 1024).map(<[u8]>::to_vec));
                    Ok(())
                })
                .expect("pattern");
                Reply::Raw {
                    pieces,
                    pause: Duration::from_millis(20),
                    after: After::Close,
                }
            }
            other => Reply::text(404, &format!("no framing at {other}")),
        }
    })
}

#[test]
fn upstream_response_framings_are_relayed() {
    let up = framing_upstream();
    let d = start(&service("framing", up.port(), &["/"], FAST_HEALTH));
    wait_running(&d, "framing");

    // Two rounds on one client connection: in the second, every response comes over an
    // upstream connection that carried the one before it, so a misjudged end of a body shows.
    let mut c = Conn::open(d.addr);
    let get = |c: &mut Conn, path: &str| {
        c.send(format!("GET {path} HTTP/1.1\r\nHost: f.test\r\n\r\n").as_bytes());
    };
    for round in 0..2 {
        get(&mut c, "/f/chunked");
        let r = c.response();
        assert_eq!(r.status, 200, "round {round}: {r:?}");
        assert_eq!(r.text(), "hello, world!", "round {round}: {r:?}");
        assert!(r.header("content-length").is_none(), "{r:?}");

        get(&mut c, "/f/chunked-slow");
        let r = c.response();
        assert_eq!(r.status, 200, "round {round}: {r:?}");
        assert_eq!(r.text(), SLOW_CHUNKED_TEXT, "round {round}");

        for path in ["/f/length", "/f/length-slow"] {
            get(&mut c, path);
            let r = c.response();
            assert_eq!(r.status, 200, "{path}: {r:?}");
            assert_eq!(r.text(), "hello world", "{path}");
            assert_eq!(r.header("content-length"), Some("11"), "{path}: {r:?}");
        }

        get(&mut c, "/f/204");
        let r = c.response();
        assert_eq!(r.status, 204, "{r:?}");
        assert_eq!(r.header("x-kind"), Some("204"));
        assert!(
            r.header("transfer-encoding").is_none() && r.header("content-length").is_none(),
            "a 204 with framing headers: {r:?}"
        );

        get(&mut c, "/f/304");
        let r = c.response();
        assert_eq!(r.status, 304, "{r:?}");
        assert_eq!(r.header("etag"), Some("\"v1\""));
        assert!(r.header("transfer-encoding").is_none(), "{r:?}");

        // HEAD: a Content-Length and no body; kinfrad must not wait for one.
        c.send(b"HEAD /f/head HTTP/1.1\r\nHost: f.test\r\n\r\n");
        let r = c.head_response();
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("content-length"), Some("5000"), "{r:?}");
        c.send(b"HEAD /f/head-chunked HTTP/1.1\r\nHost: f.test\r\n\r\n");
        let r = c.head_response();
        assert_eq!(r.status, 200, "{r:?}");

        // 103 and 100 before the final response: the final one is what counts.
        get(&mut c, "/f/interim");
        let r = c.final_response();
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("x-final"), Some("yes"));
        assert_eq!(r.text(), "final");
    }
    // Nothing stray after all that: the next answer is to the next request.
    get(&mut c, "/f/length");
    assert_eq!(c.response().text(), "hello world");

    // No length at all: the body ends when the upstream closes. The client gets all of it,
    // either delimited by kinfrad (chunked, the connection kept) or — when kinfrad passes it on
    // without a length — followed by kinfrad closing the connection.
    get(&mut c, "/f/until-close");
    let mut check = PatternCheck::default();
    let r = read_response_with(&mut c.r, false, &mut |b| check.update(b))
        .expect("read the close-delimited response");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        check.is_pattern(256 * 1024),
        "close-delimited body corrupted: {check:?}"
    );
    let delimited = r
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        || r.header("content-length").is_some();
    if delimited {
        get(&mut c, "/f/length");
        assert_eq!(c.response().text(), "hello world");
    } else {
        // read_response_with read up to EOF already: the connection must be gone.
        assert!(
            c.closed_within(Duration::from_secs(5)),
            "kinfrad kept the connection open after a close-delimited body: {r:?}"
        );
    }

    // The chunked body as the client gets it, byte for byte: kinfrad's own loop relays it
    // verbatim (extensions and trailer included); hyper re-frames it.
    let (out, _) = exchange(
        d.addr,
        b"GET /f/chunked HTTP/1.1\r\nHost: f.test\r\nTE: trailers\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
        |_| Ok(()),
    );
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head")
        + 4;
    let body = &out[end..];
    eprintln!(
        "chunked body as relayed ({}): {:?}",
        if fast_path() { "fast path" } else { "hyper" },
        String::from_utf8_lossy(body)
    );
    if fast_path() {
        assert_eq!(
            String::from_utf8_lossy(body),
            String::from_utf8_lossy(CHUNKED_BODY),
            "the fast path relays chunked bodies verbatim"
        );
    }
    let r = responses_in(&out).into_iter().next().expect("a response");
    assert_eq!(r.text(), "hello, world!");
}

#[test]
fn upstream_framing_tricks_never_unframe_a_response() {
    let up = Upstream::start(0, |s: &Seen| {
        match s.target.as_str() {
        "/conn-cl" => Reply::raw(
            b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello",
            After::Keep,
        ),
        // It says it closes: hyper's pool would otherwise keep the connection, and a later
        // request that raced the close would get the fallback (tests/proxy/pooling.rs).
        "/cl-te" => Reply::raw(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            After::Close,
        ),
        "/early" => Reply::raw(
            b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            After::Keep,
        ),
        _ => echo("target")(s),
    }
    });
    let d = start(&service("target", up.port(), &["/"], FAST_HEALTH));
    wait_running(&d, "target");
    // Keep-alive: the client must find the end of the body, and the next answer after it.
    let mut c = Conn::open(d.addr);
    for _ in 0..2 {
        c.send(b"GET /conn-cl HTTP/1.1\r\nHost: f.test\r\n\r\n");
        let r = c.response();
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "hello"),
            "{}",
            brief(&r)
        );
        assert_eq!(r.header("content-length"), Some("5"), "{}", brief(&r));
    }
    // Both framings from the upstream, on either path (HTTP/1.0 is always hyper's): the stale
    // Content-Length never reaches the client.
    for version in ["1.1", "1.0"] {
        let req = format!("GET /cl-te HTTP/{version}\r\nHost: f.test\r\nConnection: close\r\n\r\n");
        let (out, _) = exchange(d.addr, req.as_bytes(), Duration::from_secs(3), |_| Ok(()));
        let text = String::from_utf8_lossy(&out).to_string();
        let r = parse_response(&out).unwrap_or_else(|| panic!("HTTP/{version}: {text:?}"));
        assert_eq!(r.text(), "hello", "HTTP/{version}: {text:?}");
        assert_ne!(
            r.header("content-length"),
            Some("100"),
            "HTTP/{version}: {text:?}"
        );
    }
    // 103 Early Hints reach an HTTP/1.1 client ahead of the response (the fast path; hyper's
    // server cannot send interim responses, so there the final answer alone arrives).
    c.send(b"GET /early HTTP/1.1\r\nHost: f.test\r\n\r\n");
    let first = c.response();
    if fast_path() {
        assert_eq!(first.status, 103, "{}", brief(&first));
        assert_eq!(first.header("link"), Some("</s.css>; rel=preload"));
        let r = c.response();
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "hello"),
            "{}",
            brief(&r)
        );
    } else {
        assert_eq!((first.status, first.text().as_str()), (200, "hello"));
    }
}
