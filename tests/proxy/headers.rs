//! Request headers that are kinfrad's and not the upstream's: its session cookie and the
//! client's credentials stay with kinfrad (the custom maintenance page is another party too),
//! and header names with underscores are dropped unless the configuration allows them.

use std::time::Duration;

use crate::prelude::*;

#[test]
fn kinfrads_session_cookie_and_credentials_stay_with_kinfrad() {
    let (up, d) = fault_setup("");
    let session = "kinfra_session=v1.99999999999.c2VjcmV0";
    // Bodiless (the fast path, when on) and a chunked upload (always hyper's).
    let r = call(
        d.addr,
        "GET",
        "/cookie-get",
        None,
        &[("Cookie", &format!("a=1; {session}; b=2"))],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let req = format!(
        "POST /cookie-post HTTP/1.1\r\nHost: c.test\r\nConnection: close\r\nCookie: {session}\r\nCookie: c=3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
    );
    let (out, _) = exchange(d.addr, req.as_bytes(), Duration::from_secs(5), |_| Ok(()));
    assert_eq!(
        first_status(&out),
        Some(200),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let get = &up.receipts("/cookie-get")[0];
    assert_eq!(get.all("cookie"), ["a=1; b=2"], "{:?}", get.headers);
    let post = &up.receipts("/cookie-post")[0];
    assert_eq!(post.all("cookie"), ["c=3"], "{:?}", post.headers);

    // The operator's custom maintenance page is another party: no session, no Authorization.
    let page = Upstream::start(0, echo("page"));
    d.ctl_ok(&[
        "maint",
        "enter",
        "--url",
        &format!("http://127.0.0.1:{}/sorry", page.port()),
    ]);
    let r = call(
        d.addr,
        "GET",
        "/asset.css",
        None,
        &[
            ("Cookie", &format!("{session}; theme=dark")),
            ("Authorization", "Basic dXNlcjpwYXNz"),
            ("My_Header", "1"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "the custom page answers: {}", r.text());
    let seen = &page.receipts("/asset.css")[0];
    assert_eq!(seen.all("cookie"), ["theme=dark"], "{:?}", seen.headers);
    assert!(seen.header("authorization").is_none(), "{:?}", seen.headers);
    assert!(seen.header("my_header").is_none(), "{:?}", seen.headers);
    d.ctl_ok(&["maint", "exit"]);
}

#[test]
fn underscored_header_names_are_dropped_unless_allowed() {
    for allow in [false, true] {
        let top = if allow {
            "underscores_in_headers = true"
        } else {
            ""
        };
        let (up, d) = fault_setup(top);
        let r = call(
            d.addr,
            "GET",
            "/underscores",
            None,
            &[
                ("X_Forwarded_For", "6.6.6.6"),
                ("Transfer_Encoding", "chunked"),
                ("My_Header", "1"),
                ("My-Dashed", "2"),
            ],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let seen = &up.receipts("/underscores")[0];
        for n in ["X_Forwarded_For", "Transfer_Encoding", "My_Header"] {
            assert_eq!(
                seen.header(n).is_some(),
                allow,
                "{n} with underscores_in_headers = {allow}: {:?}",
                seen.headers
            );
        }
        assert_eq!(seen.header("my-dashed"), Some("2"));
    }
}
