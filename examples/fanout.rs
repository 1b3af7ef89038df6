//! Fan-out benchmark for kinfrad's Server-Sent Events endpoint `/__events__`
//! (driven by `scripts/bench-fanout.sh`).
//!
//! Subcommands:
//!
//! * `fanout floor --listen 127.0.0.1:PORT` — the peer: a minimal SSE broadcaster (hand-written
//!   HTTP/1.1, the current state in a `tokio::sync::watch<Bytes>`, the frame serialized once per
//!   change and the same bytes written to every subscriber). It serves `GET /__events__` and
//!   `POST /api/maintenance/status` with kinfrad's body format (auth ignored), and `GET /health`.
//!   Prints its bound address as the first line of stdout. Worker threads: `TOKIO_WORKER_THREADS`.
//! * `fanout run --addr 127.0.0.1:PORT --subscribers N ...` — the client: connects N live
//!   subscribers (at most `--batch` connecting at once, so the listen backlog is not overrun),
//!   waits until each has its first `statusUpdate` frame, samples the server's VmRSS, then R times
//!   posts a state change carrying a fresh marker and records, per subscriber, the time from just
//!   before the POST is written to the moment the `statusUpdate` frame carrying that marker is
//!   complete in the subscriber's stream. Prints the results (one JSON line with `--json`).
//!   Exit status: 0 ok, 1 error (connect refused, non-200, ...), 3 some subscriber missed a change.
//! * `fanout report --out FILE RUN...` — turns the JSON lines of several runs into Markdown.
//!
//! The client decodes chunked transfer-encoding and parses SSE frames properly, so a marker split
//! across chunks or reads is still found; comments (`: ping`) and other events are ignored.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};

#[derive(Parser)]
#[command(about = "Fan-out benchmark for kinfrad's /__events__ (see scripts/bench-fanout.sh)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the floor: a minimal SSE broadcaster with kinfrad's endpoints.
    Floor(FloorArgs),
    /// Connect N subscribers to a server, trigger R state changes, measure their delivery.
    Run(RunArgs),
    /// Format the JSON lines of `run --json` (files; `#` lines ignored) as Markdown.
    Report(ReportArgs),
}

#[derive(clap::Args)]
struct FloorArgs {
    /// Address to listen on (port 0: any free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Listen backlog (kinfrad uses 1024).
    #[arg(long, default_value_t = 1024)]
    backlog: u32,
}

#[derive(clap::Args)]
#[command(args_override_self = true)] // a later --flag wins (the script appends overrides)
struct RunArgs {
    /// Server address.
    #[arg(long)]
    addr: SocketAddr,
    /// Live subscribers to connect.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// State changes to trigger, each with a fresh marker.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Pause between one round's last delivery (or timeout) and the next trigger.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Admin token for the POST (kinfrad; the floor ignores it).
    #[arg(long, env = "FANOUT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the admin token (e.g. <state_dir>/admin-token).
    #[arg(long, conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// Server process whose VmRSS is sampled (before connecting, once all are connected, after
    /// the rounds).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Name of the server in the output (e.g. kinfrad, floor).
    #[arg(long, default_value = "server")]
    label: String,
    /// Subscribers connecting at the same time (each holds its slot until its first frame).
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Client runtime threads (1: a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Wait after all subscribers are connected before sampling RSS.
    #[arg(long, default_value_t = 1000)]
    settle_ms: u64,
    /// Give up on a round's missing deliveries after this long (default: 10 s + 1 ms per
    /// subscriber).
    #[arg(long)]
    round_timeout_ms: Option<u64>,
    /// Give up connecting after this long (default: 30 s + 5 ms per subscriber).
    #[arg(long)]
    connect_timeout_ms: Option<u64>,
    /// Leave maintenance on at the end (default: post {"isActive": false}).
    #[arg(long)]
    keep_state: bool,
    /// Print one JSON line instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// Also write the Markdown here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Markdown put under the tables (setup notes).
    #[arg(long)]
    meta: Option<PathBuf>,
    /// Files with `run --json` lines (and `# bench-cpu: foreign=X steal=Y` lines of runwrk.py).
    files: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Floor(a) => {
            // Worker threads as kinfrad: TOKIO_WORKER_THREADS, read by the builder.
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("fanout-floor")
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return fail(anyhow::anyhow!("cannot start the runtime: {e}")),
            };
            match rt.block_on(floor(a)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        Cmd::Run(a) => {
            let rt = if a.threads <= 1 {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(a.threads)
                    .enable_all()
                    .build()
            };
            let rt = match rt {
                Ok(rt) => rt,
                Err(e) => return fail(anyhow::anyhow!("cannot start the runtime: {e}")),
            };
            let r = rt.block_on(run(a));
            // Don't wait for thousands of subscriber tasks to be dropped one by one.
            rt.shutdown_background();
            match r {
                Ok(code) => ExitCode::from(code),
                Err(e) => fail(e),
            }
        }
        Cmd::Report(a) => match report(a) {
            Ok(code) => ExitCode::from(code),
            Err(e) => fail(e),
        },
    }
}

fn fail(e: anyhow::Error) -> ExitCode {
    eprintln!("fanout: error: {e:#}");
    ExitCode::from(1)
}

/// Raise the soft open-file limit to the hard one; returns the soft limit now in force.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

/// CPU time used so far by all threads of a process, in ns (scheduler accounting, exact).
fn cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(t) = t else { continue };
        if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat"))
            && let Some(ns) = s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
        {
            total += ns;
        }
    }
    Some(total)
}

/// VmRSS of a process in KiB.
fn vmrss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Position of the first `needle` byte: eight bytes at a time (the client scans every frame of
/// every subscriber; a byte loop made the parser its biggest cost).
fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let rep = LO * needle as u64;
    let mut words = hay.chunks_exact(8);
    for (i, c) in words.by_ref().enumerate() {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let x = u64::from_le_bytes(w) ^ rep;
        let z = x.wrapping_sub(LO) & !x & HI;
        if z != 0 {
            return Some(i * 8 + (z.trailing_zeros() / 8) as usize);
        }
    }
    let tail = words.remainder();
    let base = hay.len() - tail.len();
    tail.iter().position(|&b| b == needle).map(|p| base + p)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, _) = needle.split_first()?;
    let mut i = 0;
    while let Some(p) = memchr(first, hay.get(i..)?) {
        let s = i + p;
        if hay[s..].starts_with(needle) {
            return Some(s);
        }
        i = s + 1;
    }
    None
}

/// Read an HTTP head (request or response) from `s` into `buf`; returns the head's length.
async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>, what: &str) -> anyhow::Result<usize> {
    loop {
        if let Some(p) = find(buf, b"\r\n\r\n") {
            return Ok(p + 4);
        }
        if buf.len() > 64 * 1024 {
            bail!("{what}: head larger than 64 KiB");
        }
        // Into the Vec's spare room: no buffer in the future itself (the floor keeps one task
        // per subscriber alive, its size counts in the RSS measured).
        buf.reserve(4096);
        let n = s
            .read_buf(buf)
            .await
            .with_context(|| format!("{what}: read"))?;
        if n == 0 {
            if buf.is_empty() {
                bail!("{what}: connection closed before any response");
            }
            bail!(
                "{what}: connection closed in the middle of the head: {:?}",
                excerpt(buf)
            );
        }
    }
}

fn excerpt(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned();
    s.replace('\r', "")
}

// ==================================================================================== floor

struct FloorState {
    active: bool,
    message: Option<String>,
    issue: Option<String>,
    start_ms: Option<u64>,
    version: u64,
}

impl FloorState {
    fn frame(&self) -> Bytes {
        // The same fields as kinfrad's status view, so the frames are of a similar size.
        let data = json!({
            "maintenance": {
                "isActive": self.active,
                "message": self.message,
                "currentIssue": self.issue,
                "countdown": null,
                "startTime": self.start_ms,
                "estimatedCompletion": null,
                "lastBroadcast": null,
                "maintenancePageUrl": null,
                "target": if self.active { Some("all") } else { None },
                "hits": 0,
                "retryAfter": if self.active { Some(300) } else { None },
            },
            "services": [],
        });
        Bytes::from(format!(
            "event: statusUpdate\nid: {}\ndata: {data}\n\n",
            self.version
        ))
    }
}

struct Floor {
    state: Mutex<FloorState>,
    tx: watch::Sender<Bytes>,
}

async fn floor(a: FloorArgs) -> anyhow::Result<()> {
    raise_nofile();
    let sock = if a.listen.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .context("socket")?;
    sock.set_reuseaddr(true).context("SO_REUSEADDR")?;
    sock.bind(a.listen)
        .with_context(|| format!("bind {}", a.listen))?;
    let listener = sock.listen(a.backlog).context("listen")?;
    let local = listener.local_addr().context("local_addr")?;
    let mut out = std::io::stdout();
    writeln!(out, "{local}").context("stdout")?;
    out.flush().context("stdout")?;

    let st = FloorState {
        active: false,
        message: None,
        issue: None,
        start_ms: None,
        version: 0,
    };
    let (tx, _rx) = watch::channel(st.frame());
    let fl = Arc::new(Floor {
        state: Mutex::new(st),
        tx,
    });
    loop {
        match listener.accept().await {
            Ok((s, _)) => {
                let fl = fl.clone();
                tokio::spawn(async move {
                    if let Err(e) = floor_conn(s, fl).await {
                        eprintln!("fanout floor: {e:#}");
                    }
                });
            }
            Err(e) => {
                // EMFILE and the like: don't spin.
                eprintln!("fanout floor: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// (method, path, Content-Length) of a request head; a plain function, so the header array is
/// not part of the connection task's state.
fn parse_request(head: &[u8]) -> Option<(String, String, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    let length = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    Some((req.method?.to_string(), req.path?.to_string(), length))
}

async fn floor_conn(mut s: TcpStream, fl: Arc<Floor>) -> anyhow::Result<()> {
    let _ = s.set_nodelay(true);
    let mut buf = Vec::with_capacity(1024);
    let head_len = match read_head(&mut s, &mut buf, "request").await {
        Ok(n) => n,
        // A port probe (waitport.py) connects and closes: not worth a message.
        Err(_) if buf.is_empty() => return Ok(()),
        Err(e) => return Err(e),
    };
    let Some((method, path, length)) = parse_request(&buf[..head_len]) else {
        return simple(&mut s, 400, "Bad Request", r#"{"success":false}"#).await;
    };
    match (method.as_str(), path.as_str()) {
        ("GET", "/__events__") => {
            drop(buf);
            let mut rx = fl.tx.subscribe();
            let first = rx.borrow_and_update().clone();
            s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\r\n",
            )
            .await?;
            s.write_all(&first).await?;
            // Wait for a change, and notice a subscriber that leaves (EOF) so its task and
            // socket go at once, as a real server's would.
            let (mut rd, mut wr) = s.split();
            let mut byte = [0u8; 1];
            loop {
                tokio::select! {
                    changed = rx.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let frame = rx.borrow_and_update().clone();
                        if wr.write_all(&frame).await.is_err() {
                            break;
                        }
                    }
                    r = rd.read(&mut byte) => {
                        if !matches!(r, Ok(n) if n > 0) {
                            break;
                        }
                    }
                }
            }
            Ok(())
        }
        ("POST", "/api/maintenance/status") => {
            if length > 64 * 1024 {
                return simple(&mut s, 413, "Payload Too Large", r#"{"success":false}"#).await;
            }
            let mut body = buf[head_len..].to_vec();
            while body.len() < length {
                body.reserve(length - body.len());
                if s.read_buf(&mut body).await.context("read body")? == 0 {
                    bail!("request body cut short");
                }
            }
            body.truncate(length);
            let v: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    let msg = json!({"success": false, "error": {"code": "bad_request", "message": format!("invalid JSON body: {e}")}});
                    return simple(&mut s, 400, "Bad Request", &msg.to_string()).await;
                }
            };
            let frame = (|| {
                let mut st = match fl.state.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
                match v.get("isActive").and_then(Value::as_bool) {
                    Some(false) => {
                        st.active = false;
                        st.message = None;
                        st.issue = None;
                        st.start_ms = None;
                    }
                    Some(true) => {
                        if !st.active {
                            st.active = true;
                            st.start_ms = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .ok()
                                .map(|d| d.as_millis() as u64);
                            st.message = Some("Maintenance in progress".into());
                        }
                        if let Some(m) = text("message") {
                            st.message = Some(m);
                        }
                        if let Some(m) = text("currentIssue") {
                            st.issue = Some(m);
                        }
                    }
                    None if st.active => {
                        if let Some(m) = text("message") {
                            st.message = Some(m);
                        }
                        if let Some(m) = text("currentIssue") {
                            st.issue = Some(m);
                        }
                    }
                    None => return None,
                }
                st.version += 1;
                Some(st.frame())
            })();
            match frame {
                Some(frame) => {
                    fl.tx.send_replace(frame);
                    simple(&mut s, 200, "OK", r#"{"success":true}"#).await
                }
                None => {
                    let body = r#"{"success":false,"error":{"code":"not_in_maintenance"}}"#;
                    simple(&mut s, 409, "Conflict", body).await
                }
            }
        }
        ("GET", "/health") => simple(&mut s, 200, "OK", r#"{"status":"ok"}"#).await,
        _ => simple(&mut s, 404, "Not Found", r#"{"success":false}"#).await,
    }
}

async fn simple(s: &mut TcpStream, code: u16, reason: &str, body: &str) -> anyhow::Result<()> {
    let r = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(r.as_bytes()).await?;
    let _ = s.shutdown().await;
    Ok(())
}

// ==================================================================================== client

/// Incremental decoder of a chunked body.
enum Chunked {
    Size { val: u64, digits: usize },
    Ext { val: u64, digits: usize },
    SizeLf { val: u64, digits: usize },
    Data(u64),
    DataCr,
    DataLf,
}

impl Chunked {
    const START: Chunked = Chunked::Size { val: 0, digits: 0 };

    /// Feed raw body bytes; decoded data goes to `out`. Err at the last chunk or bad framing.
    fn feed(&mut self, mut input: &[u8], out: &mut impl FnMut(&[u8])) -> Result<(), String> {
        while let Some((&b, rest)) = input.split_first() {
            match *self {
                Chunked::Data(rem) => {
                    let n = rem.min(input.len() as u64) as usize;
                    out(&input[..n]);
                    *self = if rem == n as u64 {
                        Chunked::DataCr
                    } else {
                        Chunked::Data(rem - n as u64)
                    };
                    input = &input[n..];
                    continue;
                }
                Chunked::Size { val, digits } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if digits >= 15 {
                            return Err("chunk size too large".into());
                        }
                        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                        *self = Chunked::Size {
                            val: val * 16 + d,
                            digits: digits + 1,
                        };
                    }
                    b';' | b' ' | b'\t' => *self = Chunked::Ext { val, digits },
                    b'\r' => *self = Chunked::SizeLf { val, digits },
                    b'\n' => self.size_done(val, digits)?,
                    _ => return Err(format!("bad byte {b:#04x} in a chunk size")),
                },
                Chunked::Ext { val, digits } => match b {
                    b'\r' => *self = Chunked::SizeLf { val, digits },
                    b'\n' => self.size_done(val, digits)?,
                    _ => {}
                },
                Chunked::SizeLf { val, digits } => {
                    if b != b'\n' {
                        return Err("chunk size line not ended by CRLF".into());
                    }
                    self.size_done(val, digits)?;
                }
                Chunked::DataCr => match b {
                    b'\r' => *self = Chunked::DataLf,
                    b'\n' => *self = Chunked::START,
                    _ => return Err("chunk data not followed by CRLF".into()),
                },
                Chunked::DataLf => {
                    if b != b'\n' {
                        return Err("chunk data not followed by CRLF".into());
                    }
                    *self = Chunked::START;
                }
            }
            input = rest;
        }
        Ok(())
    }

    fn size_done(&mut self, val: u64, digits: usize) -> Result<(), String> {
        if digits == 0 {
            return Err("empty chunk size".into());
        }
        if val == 0 {
            return Err("the server ended the stream (last chunk)".into());
        }
        *self = Chunked::Data(val);
        Ok(())
    }
}

/// SSE frame parser, specialised for the benchmark: lines are parsed in place (copied only when
/// split across reads), and `data` lines are searched for the round markers as they pass, so
/// no frame is buffered. At the blank line ending a `statusUpdate` frame, `on_status(hit)` is
/// called with the first marker index (from `from`) the frame's data contains.
#[derive(Default)]
struct Sse {
    partial: Vec<u8>,
    is_status: bool,
    has_field: bool,
    hit: Option<usize>,
}

impl Sse {
    fn feed(
        &mut self,
        mut input: &[u8],
        markers: &[Vec<u8>],
        from: usize,
        on_status: &mut impl FnMut(Option<usize>),
    ) {
        while !input.is_empty() {
            let Some(i) = memchr(b'\n', input) else {
                self.partial.extend_from_slice(input);
                return;
            };
            if self.partial.is_empty() {
                self.line(&input[..i], markers, from, on_status);
            } else {
                let mut l = std::mem::take(&mut self.partial);
                l.extend_from_slice(&input[..i]);
                self.line(&l, markers, from, on_status);
                l.clear();
                self.partial = l;
            }
            input = &input[i + 1..];
        }
    }

    fn line(
        &mut self,
        l: &[u8],
        markers: &[Vec<u8>],
        from: usize,
        on_status: &mut impl FnMut(Option<usize>),
    ) {
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        if l.is_empty() {
            if self.has_field && self.is_status {
                on_status(self.hit);
            }
            self.is_status = false;
            self.has_field = false;
            self.hit = None;
            return;
        }
        if l[0] == b':' {
            return; // comment (keep-alive)
        }
        let (field, value) = match memchr(b':', l) {
            Some(i) => {
                let v = &l[i + 1..];
                (&l[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (l, &b""[..]),
        };
        self.has_field = true;
        match field {
            b"event" => self.is_status = value == b"statusUpdate",
            // Fields may come in any order: search every frame's data, use it for statusUpdate.
            b"data" if self.hit.is_none() => {
                self.hit = (from..markers.len()).find(|&j| find(value, &markers[j]).is_some());
            }
            _ => {}
        }
    }
}

/// Response body framing of the event stream.
enum Body {
    Chunked(Chunked),
    /// Not chunked: the stream runs until the connection closes (the floor).
    Raw,
}

struct Shared {
    base: Instant,
    n: usize,
    markers: Vec<Vec<u8>>,
    /// Per round and subscriber: ns since `base` at delivery + 1; 0: not (yet) delivered.
    arrivals: Vec<AtomicU64>,
    delivered: Vec<AtomicUsize>,
    ready: AtomicUsize,
    lost: AtomicUsize,
    stopping: AtomicBool,
    fatal: Mutex<Option<String>>,
    lost_reasons: Mutex<Vec<String>>,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64 + 1
    }
}

async fn subscriber(id: usize, addr: SocketAddr, sh: Arc<Shared>, slots: Arc<Semaphore>) {
    let Ok(permit) = slots.acquire_owned().await else {
        return;
    };
    let mut conn = match subscribe(addr).await {
        Ok(c) => c,
        Err(e) => {
            let mut f = match sh.fatal.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if f.is_none() {
                *f = Some(format!("subscriber {id}: {e:#}"));
            }
            return;
        }
    };
    let mut next_round = 0usize;
    let mut ready = false;
    let mut sse = Sse::default();
    let mut buf = vec![0u8; 4096];
    let mut pending = std::mem::take(&mut conn.leftover);
    let mut permit = Some(permit);
    let err = loop {
        let data: &[u8] = if pending.is_empty() {
            match conn.stream.read(&mut buf).await {
                Ok(0) => break "the server closed the connection".to_string(),
                Ok(n) => &buf[..n],
                Err(e) => break format!("read: {e}"),
            }
        } else {
            &pending
        };
        let from = next_round;
        let mut on_status = |hit: Option<usize>| {
            ready = true;
            // `from` is fixed for this read: a second frame in it with the same marker (state
            // re-sent unchanged) must not count twice.
            if let Some(j) = hit.filter(|&j| j >= next_round) {
                sh.arrivals[j * sh.n + id].store(sh.now_ns(), Ordering::Relaxed);
                sh.delivered[j].fetch_add(1, Ordering::Release);
                next_round = j + 1;
            }
        };
        let markers = &sh.markers[..];
        let r = match &mut conn.body {
            Body::Chunked(c) => c.feed(data, &mut |d| sse.feed(d, markers, from, &mut on_status)),
            Body::Raw => {
                sse.feed(data, markers, from, &mut on_status);
                Ok(())
            }
        };
        pending.clear();
        if let Err(e) = r {
            break e;
        }
        if ready && let Some(p) = permit.take() {
            sh.ready.fetch_add(1, Ordering::Release);
            drop(p);
        }
    };
    if permit.is_some() {
        let mut f = match sh.fatal.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if f.is_none() {
            *f = Some(format!(
                "subscriber {id}: before its first statusUpdate frame: {err}"
            ));
        }
    } else if !sh.stopping.load(Ordering::Acquire) {
        sh.lost.fetch_add(1, Ordering::Release);
        if let Ok(mut v) = sh.lost_reasons.lock()
            && v.len() < 5
        {
            v.push(format!("subscriber {id}: {err}"));
        }
    }
}

struct Conn {
    stream: TcpStream,
    body: Body,
    leftover: Vec<u8>,
}

async fn subscribe(addr: SocketAddr) -> anyhow::Result<Conn> {
    let mut s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    let _ = s.set_nodelay(true);
    let req = format!(
        "GET /__events__ HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nUser-Agent: kinfra-fanout\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .context("send GET /__events__")?;
    let mut buf = Vec::with_capacity(4096);
    let n = read_head(&mut s, &mut buf, "GET /__events__").await?;
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(&buf[..n]) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => bail!(
            "GET /__events__: unparsable response head {:?}",
            excerpt(&buf)
        ),
    }
    let code = resp.code.unwrap_or(0);
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    if code != 200 {
        bail!(
            "GET /__events__ answered {code} {}: {:?}",
            resp.reason.unwrap_or(""),
            excerpt(&buf[n..])
        );
    }
    let ctype = header("content-type").unwrap_or_default();
    if !ctype.to_ascii_lowercase().starts_with("text/event-stream") {
        bail!("GET /__events__ answered 200 with Content-Type {ctype:?}, not text/event-stream");
    }
    let chunked =
        header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    Ok(Conn {
        stream: s,
        body: if chunked {
            Body::Chunked(Chunked::START)
        } else {
            Body::Raw
        },
        leftover: buf[n..].to_vec(),
    })
}

/// POST a JSON body on a connection opened beforehand; `t0` is taken just before the write.
/// Returns (t0 in ns since base, status, body excerpt, time to the whole response).
async fn post_status(
    sh: &Shared,
    addr: SocketAddr,
    token: &str,
    body: &str,
) -> anyhow::Result<(u64, u16, String, Duration)> {
    let mut s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr} for the POST"))?;
    let _ = s.set_nodelay(true);
    let req = format!(
        "POST /api/maintenance/status HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let t0 = sh.now_ns();
    let start = Instant::now();
    s.write_all(req.as_bytes())
        .await
        .context("send POST /api/maintenance/status")?;
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        let n = read_head(&mut s, &mut buf, "POST /api/maintenance/status").await?;
        let mut rest = Vec::new();
        // Connection: close: the body ends with the connection (a few hundred bytes at most).
        let _ = s.read_to_end(&mut rest).await;
        anyhow::Ok((n, rest))
    };
    let (n, rest) = tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .context("POST /api/maintenance/status: no answer within 30 s")??;
    let took = start.elapsed();
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let code = match resp.parse(&buf[..n]) {
        Ok(httparse::Status::Complete(_)) => resp.code.unwrap_or(0),
        _ => bail!("POST: unparsable response head {:?}", excerpt(&buf)),
    };
    let mut body = buf[n..].to_vec();
    body.extend_from_slice(&rest);
    Ok((t0, code, excerpt(&body), took))
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn us(ns: u64) -> f64 {
    (ns as f64 / 100.0).round() / 10.0
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

async fn run(a: RunArgs) -> anyhow::Result<u8> {
    let n = a.subscribers;
    if n == 0 {
        bail!("--subscribers must be at least 1");
    }
    let nofile = raise_nofile();
    if nofile < n as u64 + 64 {
        bail!(
            "open-file limit {nofile} is too low for {n} subscribers; raise it (ulimit -n {})",
            n + 1024
        );
    }
    let token = match (&a.token, &a.token_file) {
        (Some(t), _) => t.trim().to_string(),
        (None, Some(p)) => std::fs::read_to_string(p)
            .with_context(|| format!("read token file {}", p.display()))?
            .trim()
            .to_string(),
        (None, None) => String::new(),
    };
    let nonce = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().rotate_left(16))
        & 0xff_ffff;
    // Upper-case letters are rare in status JSON: the search skips ahead on the first byte.
    let markers: Vec<Vec<u8>> = (0..a.rounds)
        .map(|r| format!("KFO{nonce:06X}R{r:03}").into_bytes())
        .collect();
    let sh = Arc::new(Shared {
        base: Instant::now(),
        n,
        arrivals: (0..n * a.rounds).map(|_| AtomicU64::new(0)).collect(),
        delivered: (0..a.rounds).map(|_| AtomicUsize::new(0)).collect(),
        markers,
        ready: AtomicUsize::new(0),
        lost: AtomicUsize::new(0),
        stopping: AtomicBool::new(false),
        fatal: Mutex::new(None),
        lost_reasons: Mutex::new(Vec::new()),
    });
    let rss = || a.server_pid.and_then(vmrss_kib);
    let rss_before = rss();

    // ---- connect
    let t_connect = Instant::now();
    let slots = Arc::new(Semaphore::new(a.batch.max(1)));
    for id in 0..n {
        tokio::spawn(subscriber(id, a.addr, sh.clone(), slots.clone()));
    }
    let connect_timeout =
        Duration::from_millis(a.connect_timeout_ms.unwrap_or(30_000 + 5 * n as u64));
    let mut last_note = Instant::now();
    loop {
        if let Some(e) = sh.fatal.lock().ok().and_then(|mut f| f.take()) {
            bail!("{e}");
        }
        let r = sh.ready.load(Ordering::Acquire);
        if r == n {
            break;
        }
        if t_connect.elapsed() > connect_timeout {
            bail!(
                "only {r} of {n} subscribers got their first statusUpdate frame within {connect_timeout:?}"
            );
        }
        if last_note.elapsed() > Duration::from_secs(5) {
            eprintln!("fanout: {}: {r}/{n} subscribers connected", a.label);
            last_note = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let connect_s = t_connect.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(a.settle_ms)).await;
    let rss_connected = rss();
    if let Some(e) = sh.fatal.lock().ok().and_then(|mut f| f.take()) {
        bail!("{e}");
    }

    // ---- rounds
    let round_timeout = Duration::from_millis(a.round_timeout_ms.unwrap_or(10_000 + n as u64));
    let mut rounds_json = Vec::new();
    let mut pooled: Vec<u64> = Vec::with_capacity(n * a.rounds);
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    let mut maxs = Vec::new();
    let mut missed_total = 0usize;
    let mut server_cpus = Vec::new();
    let mut idle_pcts = Vec::new();
    let mut client_cpus = Vec::new();
    for r in 0..a.rounds {
        if r > 0 {
            // Also what the server spends while nothing changes (keep-alives, timers: kinfrad
            // sends a countdownUpdate to everyone every second while in maintenance).
            let c0 = a.server_pid.and_then(cpu_ns);
            let w0 = Instant::now();
            tokio::time::sleep(Duration::from_millis(a.interval_ms)).await;
            if let (Some(c0), Some(c1)) = (c0, a.server_pid.and_then(cpu_ns)) {
                let wall = w0.elapsed().as_nanos() as f64;
                if wall > 0.0 {
                    idle_pcts.push((c1.saturating_sub(c0) as f64 / wall * 1000.0).round() / 10.0);
                }
            }
        }
        let marker = String::from_utf8_lossy(&sh.markers[r]).into_owned();
        let body = json!({"isActive": true, "message": marker}).to_string();
        let server_cpu0 = a.server_pid.and_then(cpu_ns);
        let client_cpu0 = cpu_ns(std::process::id());
        let (t0, code, resp, took) = post_status(&sh, a.addr, &token, &body).await?;
        if code != 200 {
            bail!("POST /api/maintenance/status answered {code}: {resp}");
        }
        let deadline = Instant::now() + round_timeout;
        loop {
            let d = sh.delivered[r].load(Ordering::Acquire);
            let alive = n - sh.lost.load(Ordering::Acquire);
            if d >= alive || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let cpu_ms = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => json!((b.saturating_sub(a) as f64 / 1e4).round() / 100.0),
            _ => Value::Null,
        };
        let server_cpu = cpu_ms(server_cpu0, a.server_pid.and_then(cpu_ns));
        let client_cpu = cpu_ms(client_cpu0, cpu_ns(std::process::id()));
        if let Some(v) = server_cpu.as_f64() {
            server_cpus.push(v);
        }
        if let Some(v) = client_cpu.as_f64() {
            client_cpus.push(v);
        }
        let mut lat: Vec<u64> = (0..n)
            .filter_map(|id| match sh.arrivals[r * n + id].load(Ordering::Acquire) {
                0 => None,
                t => Some(t.saturating_sub(t0)),
            })
            .collect();
        lat.sort_unstable();
        let delivered = lat.len();
        missed_total += n - delivered;
        let (p50, p99, max) = (
            pct(&lat, 50.0),
            pct(&lat, 99.0),
            lat.last().copied().unwrap_or(0),
        );
        if delivered > 0 {
            p50s.push(us(p50));
            p99s.push(us(p99));
            maxs.push(us(max));
        }
        pooled.extend_from_slice(&lat);
        rounds_json.push(json!({
            "round": r + 1,
            "delivered": delivered,
            "p50_us": us(p50),
            "p99_us": us(p99),
            "max_us": us(max),
            "min_us": us(lat.first().copied().unwrap_or(0)),
            "post_us": (took.as_nanos() as f64 / 100.0).round() / 10.0,
            "server_cpu_ms": server_cpu,
            "client_cpu_ms": client_cpu,
        }));
        if !a.json {
            eprintln!(
                "fanout: {} round {}/{}: {delivered}/{n} delivered, p50 {} µs, p99 {} µs, max {} µs (POST answered in {:?})",
                a.label,
                r + 1,
                a.rounds,
                us(p50),
                us(p99),
                us(max),
                took
            );
        }
    }
    let rss_after = rss();
    sh.stopping.store(true, Ordering::Release);
    let mut notes = Vec::new();
    if !a.keep_state && a.rounds > 0 {
        match post_status(&sh, a.addr, &token, r#"{"isActive": false}"#).await {
            Ok((_, 200, _, _)) => {}
            Ok((_, code, resp, _)) => notes.push(format!("exit maintenance: {code} {resp}")),
            Err(e) => notes.push(format!("exit maintenance: {e:#}")),
        }
    }
    pooled.sort_unstable();
    let lost = sh.lost.load(Ordering::Acquire);
    let lost_reasons = sh
        .lost_reasons
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    let ok = missed_total == 0 && lost == 0;
    let per_sub = |x: Option<u64>| match (rss_before, x) {
        (Some(b), Some(x)) => json!(((x as f64 - b as f64) / n as f64 * 100.0).round() / 100.0),
        _ => Value::Null,
    };
    let out = json!({
        "label": a.label,
        "subscribers": n,
        "rounds": a.rounds,
        "ok": ok,
        "connect_s": (connect_s * 1000.0).round() / 1000.0,
        "rss_before_kib": rss_before,
        "rss_connected_kib": rss_connected,
        "rss_after_kib": rss_after,
        "rss_per_sub_kib": per_sub(rss_connected),
        "rss_per_sub_after_kib": per_sub(rss_after),
        "median_server_cpu_ms": if server_cpus.is_empty() { Value::Null } else { json!(median(&mut server_cpus)) },
        "median_client_cpu_ms": if client_cpus.is_empty() { Value::Null } else { json!(median(&mut client_cpus)) },
        "server_idle_cpu_pct": if idle_pcts.is_empty() { Value::Null } else { json!(median(&mut idle_pcts)) },
        "median_p50_us": median(&mut p50s),
        "median_p99_us": median(&mut p99s),
        "median_max_us": median(&mut maxs),
        "pooled_p50_us": us(pct(&pooled, 50.0)),
        "pooled_p99_us": us(pct(&pooled, 99.0)),
        "pooled_max_us": us(pooled.last().copied().unwrap_or(0)),
        "missed": missed_total,
        "lost": lost,
        "lost_reasons": lost_reasons,
        "notes": notes,
        "per_round": rounds_json,
    });
    if a.json {
        println!("{out}");
    } else {
        println!(
            "{}: {n} subscribers connected in {connect_s:.2} s; {} rounds: median p50 {} µs, median p99 {} µs, max {} µs; missed {missed_total}, lost {lost}",
            a.label, a.rounds, out["median_p50_us"], out["median_p99_us"], out["pooled_max_us"]
        );
        println!(
            "{}: VmRSS before {} KiB, connected {} KiB ({} KiB/subscriber), after rounds {} KiB",
            a.label,
            out["rss_before_kib"],
            out["rss_connected_kib"],
            out["rss_per_sub_kib"],
            out["rss_after_kib"]
        );
        for l in &lost_reasons {
            println!("lost: {l}");
        }
        for l in &notes {
            println!("note: {l}");
        }
    }
    Ok(if ok { 0 } else { 3 })
}

// ==================================================================================== report

fn fmt_us(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{:.2} s", v / 1e6)
    } else if v >= 10_000.0 {
        format!("{:.1} ms", v / 1e3)
    } else if v >= 1000.0 {
        format!("{:.2} ms", v / 1e3)
    } else {
        format!("{v:.0} µs")
    }
}

fn fmt_kib(v: f64) -> String {
    if v >= 10_240.0 {
        format!("{:.1} MiB", v / 1024.0)
    } else {
        format!("{v:.0} KiB")
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    }
}

struct RunRec {
    v: Value,
    foreign: Option<f64>,
    steal: Option<f64>,
}

fn report(a: ReportArgs) -> anyhow::Result<u8> {
    // (subscribers, label) -> run; the last one of a file wins.
    let mut runs: BTreeMap<(u64, String), RunRec> = BTreeMap::new();
    let mut labels: Vec<String> = Vec::new();
    for f in &a.files {
        let text = std::fs::read_to_string(f).with_context(|| format!("read {}", f.display()))?;
        let mut v: Option<Value> = None;
        let (mut foreign, mut steal) = (None, None);
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# bench-cpu:") {
                for kv in rest.split_whitespace() {
                    if let Some(x) = kv.strip_prefix("foreign=") {
                        foreign = x.parse().ok();
                    } else if let Some(x) = kv.strip_prefix("steal=") {
                        steal = x.parse().ok();
                    }
                }
            } else if line.starts_with('{')
                && let Ok(j) = serde_json::from_str::<Value>(line)
            {
                v = Some(j);
            }
        }
        let Some(v) = v else { continue };
        let label = v["label"].as_str().unwrap_or("?").to_string();
        if !labels.contains(&label) {
            labels.push(label.clone());
        }
        let subs = v["subscribers"].as_u64().unwrap_or(0);
        runs.insert((subs, label), RunRec { v, foreign, steal });
    }
    // The peer (floor) last; ratios are every other label ÷ floor.
    labels.sort_by_key(|l| (l == "floor", l.clone()));
    let counts: Vec<u64> = {
        let mut c: Vec<u64> = runs.keys().map(|k| k.0).collect();
        c.dedup();
        c
    };
    let num = |r: Option<&RunRec>, k: &str| -> Option<f64> {
        r.filter(|r| r.v.get("error").is_none() && r.v.get("na").is_none())
            .and_then(|r| r.v.get(k))
            .and_then(Value::as_f64)
    };
    let mut md = String::new();
    let others: Vec<&String> = labels.iter().filter(|l| *l != "floor").collect();
    let has_floor = labels.iter().any(|l| l == "floor");
    let mut bad = false;

    // Summary: one row per subscriber count, kinfrad next to the floor and the ratios.
    let _ = writeln!(
        md,
        "| subscribers | server | delivery p50 | delivery p99 | max | server CPU per change | RSS per subscriber |"
    );
    let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---:|");
    for &c in &counts {
        let floor = runs.get(&(c, "floor".to_string()));
        for l in others
            .iter()
            .map(|s| s.as_str())
            .chain(has_floor.then_some("floor"))
        {
            let r = runs.get(&(c, l.to_string()));
            let name = if l == "floor" {
                "floor (minimal tokio SSE broadcaster)".to_string()
            } else {
                format!("**{l}**")
            };
            match r {
                None => {
                    let _ = writeln!(md, "| {} | {name} | not measured | | | | |", thousands(c));
                }
                Some(rr) if rr.v.get("error").is_some() || rr.v.get("na").is_some() => {
                    let (what, why) = match rr.v.get("error") {
                        Some(e) => {
                            bad = true;
                            ("FAILED", e)
                        }
                        None => ("n/a", &rr.v["na"]),
                    };
                    let _ = writeln!(
                        md,
                        "| {} | {name} | {what}: {} | | | | |",
                        thousands(c),
                        why.as_str().unwrap_or("?").replace('|', "\\|")
                    );
                }
                Some(rr) => {
                    let mut warn = String::new();
                    if rr.v["ok"] != json!(true) {
                        bad = true;
                        warn = format!(" ⚠ {} missed, {} lost", rr.v["missed"], rr.v["lost"]);
                    }
                    let cell = |k: &str, f: &dyn Fn(f64) -> String| -> String {
                        let mine = num(Some(rr), k);
                        let s = mine.map(f).unwrap_or_else(|| "–".into());
                        if l == "floor" || !has_floor {
                            s
                        } else {
                            format!("{s} ({} floor)", ratio(mine, num(floor, k)))
                        }
                    };
                    let _ = writeln!(
                        md,
                        "| {} | {name}{warn} | {} | {} | {} | {} | {} |",
                        thousands(c),
                        cell("median_p50_us", &fmt_us),
                        cell("median_p99_us", &fmt_us),
                        cell("pooled_max_us", &fmt_us),
                        cell("median_server_cpu_ms", &|v| fmt_us(v * 1000.0)),
                        cell("rss_per_sub_kib", &|v| format!("{v:.1} KiB")),
                    );
                }
            }
        }
    }
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "Delivery: from just before the client writes the state-changing POST to the moment a subscriber's stream holds the whole `statusUpdate` frame carrying it; p50/p99 are the medians over the rounds of each round's p50/p99 over all subscribers, max is over all rounds. Server CPU per change: CPU time the server used from just before the POST to the last delivery (median over the rounds). RSS per subscriber: (VmRSS with all subscribers connected and holding their first frame − VmRSS before) ÷ subscribers. “(× floor)” is kinfrad ÷ floor in the same run."
    );
    let _ = writeln!(md);

    // Detail: every run.
    let _ = writeln!(
        md,
        "| subscribers | server | delivered | per-round p50 | per-round p99 | POST answered in | CPU per change: server / client | server CPU between changes | connect all | VmRSS before → connected → after rounds | foreign CPU / steal |"
    );
    let _ = writeln!(md, "|---:|---|---:|---|---|---:|---:|---:|---:|---|---:|");
    let runs_ref = &runs;
    let ordered: Vec<(&u64, &String, &RunRec)> = counts
        .iter()
        .flat_map(|c| {
            labels
                .iter()
                .filter_map(move |l| runs_ref.get(&(*c, l.clone())).map(|r| (c, l, r)))
        })
        .collect();
    for (c, l, rr) in ordered {
        if let Some(e) = rr.v.get("error").or(rr.v.get("na")) {
            let _ = writeln!(
                md,
                "| {} | {l} | not measured: {} | | | | | | | | |",
                thousands(*c),
                e.as_str().unwrap_or("?").replace('|', "\\|")
            );
            continue;
        }
        let pr = rr.v["per_round"].as_array().cloned().unwrap_or_default();
        let list = |k: &str| {
            pr.iter()
                .map(|x| fmt_us(x[k].as_f64().unwrap_or(0.0)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let delivered: u64 = pr
            .iter()
            .map(|x| x["delivered"].as_u64().unwrap_or(0))
            .sum();
        let mut posts: Vec<f64> = pr
            .iter()
            .map(|x| x["post_us"].as_f64().unwrap_or(0.0))
            .collect();
        let ms = |k: &str| {
            rr.v[k]
                .as_f64()
                .map(|v| fmt_us(v * 1000.0))
                .unwrap_or_else(|| "?".into())
        };
        let kib = |k: &str| rr.v[k].as_f64().map(fmt_kib).unwrap_or_else(|| "?".into());
        let cpu = match (rr.foreign, rr.steal) {
            (Some(f), Some(s)) => format!("{f:.0} % / {s:.0} %"),
            _ => "–".into(),
        };
        let _ = writeln!(
            md,
            "| {} | {l} | {}/{} | {} | {} | {} | {} / {} | {} | {:.2} s | {} → {} → {} | {cpu} |",
            thousands(*c),
            thousands(delivered),
            thousands(c * pr.len() as u64),
            list("p50_us"),
            list("p99_us"),
            fmt_us(median(&mut posts)),
            ms("median_server_cpu_ms"),
            ms("median_client_cpu_ms"),
            rr.v["server_idle_cpu_pct"]
                .as_f64()
                .map(|v| format!("{v:.1} %"))
                .unwrap_or_else(|| "–".into()),
            rr.v["connect_s"].as_f64().unwrap_or(0.0),
            kib("rss_before_kib"),
            kib("rss_connected_kib"),
            kib("rss_after_kib"),
        );
    }
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "Server CPU between changes: share of one CPU the server used in the pauses between changes, with every subscriber connected (kinfrad, in maintenance during the rounds, sends every subscriber a `countdownUpdate` each second). Client CPU per change near the server's would mean the client limits the measurement."
    );
    if let Some(m) = &a.meta {
        let text = std::fs::read_to_string(m).with_context(|| format!("read {}", m.display()))?;
        let _ = writeln!(md);
        md.push_str(&text);
    }
    print!("{md}");
    if let Some(out) = &a.out {
        std::fs::write(out, &md).with_context(|| format!("write {}", out.display()))?;
    }
    Ok(if bad { 3 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memchr_matches_position() {
        let hay: Vec<u8> = (0..200u32).map(|i| (i * 7 % 251) as u8).collect();
        for n in 0..=255u8 {
            for start in 0..20 {
                assert_eq!(
                    memchr(n, &hay[start..]),
                    hay[start..].iter().position(|&b| b == n),
                    "{n} from {start}"
                );
            }
        }
        assert_eq!(find(b"xxKFOaKFO1y", b"KFO1"), Some(6));
        assert_eq!(find(b"KF", b"KFO"), None);
    }

    /// Feed `wire` in pieces of `step` bytes; returns the marker hits of statusUpdate frames.
    fn parse(wire: &[u8], chunked: bool, step: usize, markers: &[Vec<u8>]) -> Vec<Option<usize>> {
        let mut hits = Vec::new();
        let mut sse = Sse::default();
        let mut ck = Chunked::START;
        for piece in wire.chunks(step) {
            let mut on = |h: Option<usize>| hits.push(h);
            if chunked {
                ck.feed(piece, &mut |d| sse.feed(d, markers, 0, &mut on))
                    .expect("framing");
            } else {
                sse.feed(piece, markers, 0, &mut on);
            }
        }
        hits
    }

    #[test]
    fn frames_are_found_across_any_split() {
        let markers = vec![b"KFO000001R000".to_vec(), b"KFO000001R001".to_vec()];
        let frames = [
            "retry: 2000\n\n",
            "event: statusUpdate\nid: 0\ndata: {\"maintenance\":{\"message\":null}}\n\n",
            ": ping\n\n",
            "event: countdownUpdate\ndata: {\"message\":\"KFO000001R000\"}\n\n",
            "event: statusUpdate\r\ndata: {\"maintenance\":{\"message\":\"KFO000001R000\"}}\r\n\r\n",
            "data: {\"message\":\"KFO000001R001\"}\nevent: statusUpdate\n\n",
        ];
        let raw: String = frames.concat();
        let mut chunked = String::new();
        for f in &frames {
            // Two chunks per frame, split in the middle (through the marker for some).
            let (a, b) = f.split_at(f.len() / 2);
            for part in [a, b] {
                chunked.push_str(&format!("{:X};ext=1\r\n{part}\r\n", part.len()));
            }
        }
        let want = vec![None, Some(0), Some(1)];
        for step in [1, 2, 3, 7, 64, 4096] {
            assert_eq!(
                parse(raw.as_bytes(), false, step, &markers),
                want,
                "raw {step}"
            );
            assert_eq!(
                parse(chunked.as_bytes(), true, step, &markers),
                want,
                "chunked {step}"
            );
        }
        let mut ck = Chunked::START;
        assert!(
            ck.feed(b"0\r\n\r\n", &mut |_| {}).is_err(),
            "last chunk ends the stream"
        );
        let mut ck = Chunked::START;
        assert!(ck.feed(b"zz\r\n", &mut |_| {}).is_err());
    }
}
