//! Other protocols through kinfrad: WebSocket upgrades tunnelled to the upstream, HTTP/2 clients
//! (h2c with prior knowledge) served from an HTTP/1.1 upstream, and CONNECT and h2c upgrade
//! requests, which open no tunnel.

use std::sync::{Arc, Mutex};
use std::time::Duration;

// The `http` crate, not the harness's module of that name.
use crate::prelude::*;
use ::http;
use serde_json::Value;

#[test]
fn websocket_upgrade_is_tunnelled() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // (request target, headers) of every WebSocket handshake the upstream accepted.
    let handshakes: Arc<Mutex<Vec<(String, Headers)>>> = Arc::default();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind ws upstream");
    let ws_port = listener.local_addr().expect("addr").port();
    {
        let handshakes = handshakes.clone();
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handshakes = handshakes.clone();
                tokio::spawn(async move {
                    #[allow(clippy::result_large_err)] // tungstenite's callback signature
                    let cb = move |req: &Request, resp: Response| {
                        let headers = req
                            .headers()
                            .iter()
                            .map(|(k, v)| {
                                (
                                    k.to_string(),
                                    String::from_utf8_lossy(v.as_bytes()).to_string(),
                                )
                            })
                            .collect();
                        handshakes
                            .lock()
                            .expect("lock")
                            .push((req.uri().to_string(), headers));
                        Ok(resp)
                    };
                    // TCP health probes connect and leave: not a WebSocket, ignored.
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, cb).await else {
                        return;
                    };
                    // Echo data messages; tungstenite answers pings itself.
                    while let Some(Ok(msg)) = ws.next().await {
                        if msg.is_close() {
                            return;
                        }
                        let data = msg.is_text() || msg.is_binary();
                        if data && ws.send(msg).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
    }
    let d = start(&service(
        "ws",
        ws_port,
        &["/ws/"],
        r#"health_check = { type = "tcp", interval = "200ms", timeout = "500ms", grace = "0s" }"#,
    ));
    wait_running(&d, "ws");

    let url = format!("ws://{}/ws/echo?room=7", d.addr);
    rt.block_on(async {
        tokio::time::timeout(T, async {
            let (mut ws, resp) = tokio_tungstenite::connect_async(url.as_str())
                .await
                .expect("WebSocket handshake through kinfrad");
            assert_eq!(resp.status().as_u16(), 101);
            let big: Vec<u8> = pattern_block()[..300 * 1024].to_vec();
            let sent = vec![
                Message::text("hello through kinfrad"),
                Message::binary(vec![0u8, 1, 2, 254, 255]),
                Message::text("ünïcødé ✓"),
                Message::binary(big),
            ];
            for m in &sent {
                ws.send(m.clone()).await.expect("send");
                let back = loop {
                    match ws.next().await.expect("stream open").expect("frame") {
                        Message::Ping(_) | Message::Pong(_) => continue,
                        other => break other,
                    }
                };
                assert_eq!(&back, m, "echo mismatch");
            }
            ws.send(Message::Ping(b"are you there".to_vec().into()))
                .await
                .expect("ping");
            let pong = ws.next().await.expect("stream open").expect("frame");
            assert_eq!(pong, Message::Pong(b"are you there".to_vec().into()));
            ws.close(None).await.expect("close");
        })
        .await
        .expect("WebSocket exchange timed out");
    });
    let hs = handshakes.lock().expect("lock").clone();
    assert_eq!(hs.len(), 1, "{hs:?}");
    assert_eq!(hs[0].0, "/ws/echo?room=7");
    let xff = hs[0]
        .1
        .iter()
        .find(|(k, _)| k == "x-forwarded-for")
        .map(|(_, v)| v.as_str());
    assert_eq!(xff, Some("127.0.0.1"), "{hs:?}");
    assert_eq!(get(d.addr, "/health").status, 200);
}

#[test]
fn h2c_clients_reach_http1_upstreams() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let up = Upstream::start(0, echo("h1"));
    let d = start(&service("h1", up.port(), &["/"], FAST_HEALTH));
    wait_running(&d, "h1");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let addr = d.addr;
    rt.block_on(async move {
        tokio::time::timeout(T, async move {
            let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let (sender, conn) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
                TokioExecutor::new(),
                TokioIo::new(stream),
            )
            .await
            .expect("h2c handshake with kinfrad");
            tokio::spawn(async move {
                let _ = conn.await;
            });

            let req = http::Request::get(format!("http://h2.test:{}/h2/page?x=1&y=2", addr.port()))
                .header("x-custom", "over h2")
                .body(Full::new(Bytes::new()))
                .expect("request");
            let mut first = sender.clone();
            let resp = first.send_request(req).await.expect("h2 GET");
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.version(), http::Version::HTTP_2);
            assert!(resp.headers().get("x-up-secret").is_none());
            assert_eq!(resp.headers().get_all("set-cookie").iter().count(), 2);
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            let j: Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(j["target"], "/h2/page?x=1&y=2", "{j}");
            assert_eq!(j["version"], "HTTP/1.1", "{j}");
            let hdrs = j["headers"].as_array().cloned().unwrap_or_default();
            let has = |k: &str, v: &str| {
                hdrs.iter()
                    .any(|h| h[0].as_str().is_some_and(|x| x.eq_ignore_ascii_case(k)) && h[1] == v)
            };
            assert!(has("x-custom", "over h2"), "{j}");
            let authority = format!("h2.test:{}", addr.port());
            assert!(has("x-forwarded-host", &authority), "{j}");
            assert!(has("x-forwarded-for", "127.0.0.1"), "{j}");

            // A body, and many streams at once on the one connection.
            let mut tasks = Vec::new();
            for i in 0..20 {
                let mut s = sender.clone();
                tasks.push(tokio::spawn(async move {
                    let payload = format!("payload number {i}");
                    let req =
                        http::Request::post(format!("http://h2.test:{}/h2/post/{i}", addr.port()))
                            .header("content-type", "text/plain")
                            .body(Full::new(Bytes::from(payload.clone())))
                            .expect("request");
                    let resp = s.send_request(req).await.expect("h2 POST");
                    assert_eq!(resp.status(), 200);
                    let body = resp.into_body().collect().await.expect("body").to_bytes();
                    let j: Value = serde_json::from_slice(&body).expect("json");
                    assert_eq!(j["target"], format!("/h2/post/{i}"), "{j}");
                    assert_eq!(j["method"], "POST");
                    assert_eq!(j["body"], payload, "{j}");
                }));
            }
            for t in tasks {
                t.await.expect("h2 stream task");
            }
        })
        .await
        .expect("h2c exchange timed out");
    });
    assert_eq!(
        up.requests()
            .iter()
            .filter(|s| s.target.starts_with("/h2/"))
            .count(),
        21
    );
}

#[test]
fn connect_and_h2c_upgrades_open_no_tunnel() {
    // An upstream that would take the tunnel.
    let up = Upstream::start(
        0,
        echo_but("/h2c-101", || {
            Reply::raw(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
                After::Keep,
            )
        }),
    );
    let d = start(&service("target", up.port(), &["/"], FAST_HEALTH));
    wait_running(&d, "target");
    let (out, _) = exchange(
        d.addr,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        Duration::from_secs(3),
        |_| Ok(()),
    );
    let r = parse_response(&out).unwrap_or_else(|| panic!("{:?}", String::from_utf8_lossy(&out)));
    assert_eq!(r.status, 405, "{}", r.text());
    assert!(r.header("allow").is_some(), "{r:?}");
    assert!(
        !up.requests().iter().any(|s| s.method == "CONNECT"),
        "CONNECT reached the upstream"
    );

    let h2c = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: u.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        )
    };
    let (out, _) = exchange(
        d.addr,
        h2c("/h2c").as_bytes(),
        Duration::from_secs(2),
        |_| Ok(()),
    );
    let r = parse_response(&out).unwrap_or_else(|| panic!("{:?}", String::from_utf8_lossy(&out)));
    assert_eq!(r.status, 200, "served as plain HTTP/1.1: {}", r.text());
    let seen = &up.receipts("/h2c")[0];
    for n in ["upgrade", "http2-settings"] {
        assert!(
            seen.header(n).is_none(),
            "{n} reached the upstream: {:?}",
            seen.headers
        );
    }
    let (out, _) = exchange(
        d.addr,
        h2c("/h2c-101").as_bytes(),
        Duration::from_secs(2),
        |_| Ok(()),
    );
    assert_ne!(
        first_status(&out),
        Some(101),
        "an h2c tunnel was opened: {:?}",
        String::from_utf8_lossy(&out)
    );
}
