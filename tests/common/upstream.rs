//! A fake upstream any test can put behind kinfrad: a thread per connection on 127.0.0.1,
//! HTTP/1.1 keep-alive, and a handler deciding each reply, from a plain answer or an echo of
//! the request to the broken, stalled, reset or hand-framed responses real servers send. It
//! records every request it read whole ([`Seen`]) and can die like a crashed process
//! ([`Upstream::kill`]). Also the `[[service]]` tables that put it behind kinfrad.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::daemon::{Daemon, start_proxy, wait_running};
use super::eventually;
use super::http::{header, headers_named, read_body, read_head};
use super::pattern::{PatternCheck, for_pattern};

/// How long the upstream waits for its port to be free again (after a kill).
const BIND: Duration = Duration::from_secs(10);

/// The health probe path every test upstream answers 200 on (unless a test says otherwise).
pub const PROBE: &str = "/_probe";

/// Probes every 200 ms, no start-up grace: a dead upstream reads as down at once.
pub const FAST_HEALTH: &str =
    r#"health_check = { path = "/_probe", interval = "200ms", timeout = "500ms", grace = "0s" }"#;

/// A circuit breaker that never opens (neither on consecutive failures nor on the error ratio).
pub const NO_BREAKER: &str =
    "circuit_breaker = { failures = 10000, error_ratio = 1.0, min_requests = 1000000 }";

/// A `[[service]]` table for an upstream on 127.0.0.1:`port`.
pub fn url_service(name: &str, port: u16, routes: &[&str], extra: &str) -> String {
    let routes: Vec<String> = routes.iter().map(|r| format!("{r:?}")).collect();
    format!(
        "[[service]]\nname = \"{name}\"\nurl = \"http://127.0.0.1:{port}\"\nroutes = [{}]\n{extra}\n\n",
        routes.join(", ")
    )
}

/// kinfrad in front of an echo upstream whose header timeout is short (a stalled upload is
/// noticed within a second); the breaker opens after 3 failures.
pub fn fault_setup(extra_top: &str) -> (Upstream, Daemon) {
    let up = Upstream::start(0, echo("target"));
    let d = start_proxy(&format!(
        "{extra_top}\n{}",
        url_service(
            "target",
            up.port(),
            &["/"],
            &format!(
                "{FAST_HEALTH}\ntimeouts = {{ header = \"1s\" }}\ncircuit_breaker = {{ failures = 3, cooldown = \"30s\" }}"
            )
        )
    ));
    wait_running(&d, "target");
    (up, d)
}

#[derive(Debug, Clone)]
pub struct Seen {
    /// Number of the upstream connection it came on (1, 2, ...).
    pub conn: u64,
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    /// The first 64 KiB of the body.
    pub body: Vec<u8>,
    pub body_check: PatternCheck,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
    pub fn all(&self, name: &str) -> Vec<&str> {
        headers_named(&self.headers, name)
    }
    /// The request's head as text: start line and header lines, CRLF-terminated.
    pub fn head_text(&self) -> String {
        let mut head = format!("{} {} {}\r\n", self.method, self.target, self.version);
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        head
    }
}

/// What the upstream does with a request.
pub enum Reply {
    /// Status, extra headers, body (framed by Content-Length).
    Full(u16, Vec<(String, String)>, Vec<u8>),
    /// 200 with the first `n` bytes of the pattern (Content-Length), streamed.
    Pattern(u64),
    /// Close the connection without answering.
    Close,
    /// Reset the connection (SO_LINGER 0) without answering.
    Reset,
    /// Write these bytes, then close.
    RawThenClose(Vec<u8>),
    /// Answer 200 after this long (unless the upstream is stopped first).
    Delay(Duration),
    /// Write these pieces verbatim (a complete response, or not), pausing between them; then
    /// do what `after` says with the connection.
    Raw {
        pieces: Vec<Vec<u8>>,
        pause: Duration,
        after: After,
    },
    /// 200 with the first `n` bytes of the pattern, chunked (64 KiB chunks), streamed.
    PatternChunked(u64),
    /// 200 with the first `n` bytes of the pattern, no length: the body ends when the upstream
    /// closes the connection.
    PatternToClose(u64),
}

/// What a test upstream does with its connection after a `Reply::Raw`.
#[derive(Debug, Clone, Copy)]
pub enum After {
    /// Keep it for the next request.
    Keep,
    /// Close it at once (without having said `Connection: close`).
    Close,
    /// Keep it, but close it once it has been idle this long.
    IdleClose(Duration),
}

impl Reply {
    /// These bytes in one write, then `after`.
    pub fn raw(bytes: &[u8], after: After) -> Reply {
        Reply::Raw {
            pieces: vec![bytes.to_vec()],
            pause: Duration::ZERO,
            after,
        }
    }

    pub fn text(status: u16, body: &str) -> Reply {
        Reply::Full(
            status,
            vec![("Content-Type".into(), "text/plain".into())],
            body.as_bytes().to_vec(),
        )
    }

    pub fn json(status: u16, v: &Value) -> Reply {
        Reply::Full(
            status,
            vec![("Content-Type".into(), "application/json".into())],
            serde_json::to_vec(v).expect("json"),
        )
    }

    /// Describe the request back as JSON, with hop-by-hop headers kinfrad must remove.
    pub fn echo(tag: &str, s: &Seen) -> Reply {
        let headers: Vec<Value> = s
            .headers
            .iter()
            .map(|(k, v)| serde_json::json!([k, v]))
            .collect();
        let body = serde_json::json!({
            "server": tag,
            "method": s.method,
            "target": s.target,
            "version": s.version,
            "conn": s.conn,
            "headers": headers,
            "body_len": s.body_check.len,
            "body": String::from_utf8_lossy(&s.body[..s.body.len().min(1000)]),
        });
        let h = |k: &str, v: &str| (k.to_string(), v.to_string());
        Reply::Full(
            200,
            vec![
                h("Content-Type", "application/json"),
                h("X-Upstream", tag),
                h("Connection", "X-Up-Secret"),
                h("X-Up-Secret", "must not reach the client"),
                h("Keep-Alive", "timeout=30, max=1000"),
                h("X-Up-Kept", "yes"),
                h("Set-Cookie", "a=1; Path=/"),
                h("Set-Cookie", "b=2; Path=/"),
            ],
            serde_json::to_vec(&body).expect("json"),
        )
    }
}

pub type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// The usual handler: 200 on the probe path, an echo of the request everywhere else.
pub fn echo(tag: &'static str) -> impl Fn(&Seen) -> Reply + Send + Sync + 'static {
    move |s| {
        if s.target == PROBE {
            Reply::text(200, "ok")
        } else {
            Reply::echo(tag, s)
        }
    }
}

/// The usual echo upstream, except that `path` gets `reply()`.
pub fn echo_but(
    path: &'static str,
    reply: impl Fn() -> Reply + Send + Sync + 'static,
) -> impl Fn(&Seen) -> Reply + Send + Sync + 'static {
    let echo = echo("target");
    move |s| if s.target == path { reply() } else { echo(s) }
}

pub struct Upstream {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Connections accepted so far.
    pub conns: Arc<AtomicU64>,
    seen: Arc<Mutex<Vec<Seen>>>,
    open: Arc<Mutex<HashMap<u64, TcpStream>>>,
    accept: Option<thread::JoinHandle<()>>,
}

impl Upstream {
    /// Serve on 127.0.0.1:`port` (0: any free port).
    pub fn start(port: u16, handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Upstream {
        // The same port again after a kill: allow a moment for it to be free.
        let l = eventually(BIND, "binding the upstream's port", || {
            TcpListener::bind(("127.0.0.1", port)).ok()
        });
        let addr = l.local_addr().expect("addr");
        l.set_nonblocking(true).expect("nonblocking");
        let handler: Handler = Arc::new(handler);
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let open = Arc::new(Mutex::new(HashMap::new()));
        let accept = {
            let (stop, conns, seen, open) =
                (stop.clone(), conns.clone(), seen.clone(), open.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match l.accept() {
                        Ok((s, _)) => {
                            if s.set_nonblocking(false).is_err() {
                                continue;
                            }
                            let _ = s.set_nodelay(true);
                            let id = conns.fetch_add(1, Ordering::SeqCst) + 1;
                            if let Ok(c) = s.try_clone() {
                                open.lock().expect("lock").insert(id, c);
                            }
                            let (h, seen, open, stop) =
                                (handler.clone(), seen.clone(), open.clone(), stop.clone());
                            thread::spawn(move || {
                                serve_conn(s, id, &h, &seen, &stop);
                                open.lock().expect("lock").remove(&id);
                            });
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Upstream {
            addr,
            stop,
            conns,
            seen,
            open,
            accept: Some(accept),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request seen so far except health probes.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|s| s.target != PROBE)
            .cloned()
            .collect()
    }

    /// Requests (not probes) whose target is `target`.
    pub fn receipts(&self, target: &str) -> Vec<Seen> {
        self.requests()
            .into_iter()
            .filter(|s| s.target == target)
            .collect()
    }

    /// Connections the upstream has open right now.
    pub fn open_count(&self) -> usize {
        self.open.lock().expect("lock").len()
    }

    pub fn probes(&self) -> usize {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|s| s.target == PROBE)
            .count()
    }

    /// Stop listening and close every open connection, like a crashed process.
    pub fn kill(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        for (_, s) in self.open.lock().expect("lock").drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.kill();
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

fn serve_conn(
    s: TcpStream,
    id: u64,
    handler: &Handler,
    seen: &Mutex<Vec<Seen>>,
    stop: &AtomicBool,
) {
    let Ok(mut w) = s.try_clone() else { return };
    let mut r = BufReader::with_capacity(64 * 1024, s);
    loop {
        let Ok(Some((start, headers))) = read_head(&mut r) else {
            return;
        };
        let mut parts = start.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let version = parts.next().unwrap_or("").to_string();
        let mut body = Vec::new();
        let mut check = PatternCheck::default();
        let got = read_body(&mut r, &headers, false, &mut |b| {
            check.update(b);
            if body.len() < 64 * 1024 {
                body.extend_from_slice(&b[..b.len().min(64 * 1024 - body.len())]);
            }
        });
        if got.is_err() {
            // The request never arrived whole: it is not "seen".
            return;
        }
        let close = version == "HTTP/1.0"
            || headers_named(&headers, "connection")
                .iter()
                .any(|v| v.to_ascii_lowercase().contains("close"));
        let req = Seen {
            conn: id,
            method,
            target,
            version,
            headers,
            body,
            body_check: check,
        };
        seen.lock().expect("lock").push(req.clone());
        let ok = match handler(&req) {
            Reply::Full(status, headers, body) => {
                let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
                let mut out = head.into_bytes();
                out.extend_from_slice(&body);
                w.write_all(&out).is_ok()
            }
            Reply::Pattern(n) => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}\r\n\r\n"
                );
                w.write_all(head.as_bytes()).is_ok() && for_pattern(n, |b| w.write_all(b)).is_ok()
            }
            Reply::Close => {
                let _ = w.shutdown(Shutdown::Both);
                false
            }
            Reply::Reset => {
                let linger = nix::libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                nix::sys::socket::setsockopt(&w, nix::sys::socket::sockopt::Linger, &linger)
                    .expect("SO_LINGER");
                // The fds are closed when this thread returns and the registry drops its copy.
                false
            }
            Reply::RawThenClose(bytes) => {
                let _ = w.write_all(&bytes);
                let _ = w.shutdown(Shutdown::Both);
                false
            }
            Reply::Delay(d) => {
                let until = Instant::now() + d;
                while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(20));
                }
                !stop.load(Ordering::SeqCst)
                    && w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate")
                        .is_ok()
            }
            Reply::Raw {
                pieces,
                pause,
                after,
            } => {
                let mut ok = true;
                for (i, piece) in pieces.iter().enumerate() {
                    if i > 0 && !pause.is_zero() {
                        thread::sleep(pause);
                    }
                    if w.write_all(piece).is_err() {
                        ok = false;
                        break;
                    }
                }
                match after {
                    After::Keep => ok,
                    After::Close => {
                        let _ = w.shutdown(Shutdown::Both);
                        false
                    }
                    After::IdleClose(idle) => {
                        // The next head must start within `idle`, else read_head fails and the
                        // connection is closed below.
                        ok && w.set_read_timeout(Some(idle)).is_ok()
                    }
                }
            }
            Reply::PatternChunked(n) => {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
                w.write_all(head.as_bytes()).is_ok()
                    && for_pattern(n, |b| {
                        for piece in b.chunks(64 * 1024) {
                            w.write_all(format!("{:x}\r\n", piece.len()).as_bytes())?;
                            w.write_all(piece)?;
                            w.write_all(b"\r\n")?;
                        }
                        Ok(())
                    })
                    .is_ok()
                    && w.write_all(b"0\r\n\r\n").is_ok()
            }
            Reply::PatternToClose(n) => {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n";
                if w.write_all(head.as_bytes()).is_ok() {
                    let _ = for_pattern(n, |b| w.write_all(b));
                }
                let _ = w.shutdown(Shutdown::Both);
                false
            }
        };
        if !ok || close {
            return;
        }
    }
}
