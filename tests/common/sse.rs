//! A Server-Sent Events subscriber for kinfrad's live streams (`/__events__`): a raw `GET` on a
//! connection of its own, read by a thread that collects every `(event, data)` pair, so a test
//! can wait for the event it expects.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::eventually;

/// A Server-Sent Events subscriber (`GET path` on its own connection), read by a thread.
pub struct Sse {
    events: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
    head: std::sync::Arc<std::sync::Mutex<String>>,
    stream: TcpStream,
}

impl Sse {
    pub fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Sse {
        let mut stream = TcpStream::connect(addr).expect("connect");
        let mut req =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).expect("send");
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let head = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut r = stream.try_clone().expect("clone");
        let (ev, hd) = (events.clone(), head.clone());
        std::thread::spawn(move || {
            let mut text = String::new();
            let mut buf = [0u8; 65536];
            let mut in_body = false;
            let mut event = String::new();
            loop {
                let n = match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                text.push_str(&String::from_utf8_lossy(&buf[..n]));
                if !in_body {
                    let Some(i) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    *hd.lock().expect("lock") = text[..i].to_string();
                    text.drain(..i + 4);
                    in_body = true;
                }
                // Whole lines only; chunk-size lines never start with "event:" or "data:".
                while let Some(i) = text.find('\n') {
                    let line: String = text.drain(..=i).collect();
                    let line = line.trim_end_matches(['\r', '\n']);
                    if let Some(e) = line.strip_prefix("event: ") {
                        event = e.to_string();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        ev.lock()
                            .expect("lock")
                            .push((event.clone(), d.to_string()));
                    }
                }
            }
        });
        Sse {
            events,
            head,
            stream,
        }
    }

    /// The response head (status line and headers), once received.
    pub fn head(&self) -> String {
        self.head.lock().expect("lock").clone()
    }

    /// Every `(event, data)` so far.
    pub fn events(&self) -> Vec<(String, String)> {
        self.events.lock().expect("lock").clone()
    }

    /// The first event named `name` after the first `skip` events whose data satisfies `f`.
    pub fn wait(
        &self,
        timeout: Duration,
        name: &str,
        skip: usize,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        eventually(timeout, &format!("a {name} event"), || {
            self.events()
                .into_iter()
                .skip(skip)
                .filter(|(e, _)| e == name)
                .filter_map(|(_, d)| serde_json::from_str(&d).ok())
                .find(|v| f(v))
        })
    }

    pub fn len(&self) -> usize {
        self.events.lock().expect("lock").len()
    }

    pub fn close(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}
