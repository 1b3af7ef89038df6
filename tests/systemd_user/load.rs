//! A bounded load for the restart test: `keepalive` clients that each send GETs at a steady
//! pace over one kept-open connection, and `fresh` clients that open a new connection for every
//! request (`Connection: close`). Every request either gets its 200 with the upstream's body or
//! is a failure, named by what went wrong (refused, reset, closed before an answer, a timeout, a
//! wrong status). No retries: a connection kinfrad closed is a failure too. At the end each
//! kept-open connection sends `Connection: close` and must see its answer, then the end.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::read_response;

/// What one request met.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    pub took: Duration,
    /// None: a 200 from the upstream; else what went wrong.
    pub failure: Option<String>,
}

/// Everything the clients saw.
#[derive(Debug, Default)]
pub struct Report {
    pub samples: Vec<Sample>,
}

impl Report {
    pub fn failures(&self) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.failure.is_some())
            .collect()
    }

    pub fn resets(&self) -> usize {
        self.failures()
            .iter()
            .filter(|s| s.failure.as_deref().is_some_and(|f| f.contains("reset")))
            .count()
    }

    /// The `q` quantile (0..=1) of the latencies of requests sent in `within`.
    pub fn quantile(&self, q: f64, within: impl Fn(Instant) -> bool) -> Option<Duration> {
        let mut v: Vec<Duration> = self
            .samples
            .iter()
            .filter(|s| within(s.at))
            .map(|s| s.took)
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        Some(v[i])
    }
}

fn classify(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionReset => format!("reset: {e}"),
        ConnectionRefused => format!("refused: {e}"),
        UnexpectedEof => format!("closed before an answer: {e}"),
        WouldBlock | TimedOut => format!("timeout: {e}"),
        _ => format!("error: {e}"),
    }
}

fn request(host: &SocketAddr, close: bool) -> Vec<u8> {
    format!(
        "GET /load HTTP/1.1\r\nHost: {host}\r\n{}\r\n",
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes()
}

fn connect(addr: SocketAddr) -> std::io::Result<(BufReader<TcpStream>, TcpStream)> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_nodelay(true)?;
    let w = s.try_clone()?;
    Ok((BufReader::new(s), w))
}

/// One exchange on `conn` (opened if None); the connection is kept when it can be reused.
fn exchange(
    addr: SocketAddr,
    conn: &mut Option<(BufReader<TcpStream>, TcpStream)>,
    close: bool,
    tag: &str,
) -> Option<String> {
    if conn.is_none() {
        match connect(addr) {
            Ok(c) => *conn = Some(c),
            Err(e) => return Some(classify(&e)),
        }
    }
    let (r, w) = conn.as_mut()?;
    let result = w
        .write_all(&request(&addr, close))
        .and_then(|()| read_response(r));
    let failure = match result {
        Ok(resp) if resp.status == 200 && String::from_utf8_lossy(&resp.body).contains(tag) => None,
        Ok(resp) => Some(format!(
            "status {}: {}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
                .chars()
                .take(120)
                .collect::<String>()
        )),
        Err(e) => Some(classify(&e)),
    };
    if failure.is_some() || close {
        *conn = None;
    }
    failure
}

/// Run the clients for `length`; `pace` is each client's time between two requests.
pub fn run(
    addr: SocketAddr,
    tag: &'static str,
    keepalive: usize,
    fresh: usize,
    pace: Duration,
    length: Duration,
) -> Report {
    let out = Arc::new(Mutex::new(Report::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let begin = Instant::now();
    for i in 0..keepalive + fresh {
        let (out, stop) = (out.clone(), stop.clone());
        let close = i >= keepalive;
        threads.push(std::thread::spawn(move || {
            let mut conn = None;
            let mut mine = Vec::new();
            // Spread the clients over the pace so the load is even.
            let mut next = begin + pace.mul_f64(i as f64 / (keepalive + fresh) as f64);
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                }
                next += pace;
                let at = Instant::now();
                let failure = exchange(addr, &mut conn, close, tag);
                mine.push(Sample {
                    at,
                    took: at.elapsed(),
                    failure,
                });
            }
            // A kept-open connection ends as HTTP says: after a `Connection: close` request,
            // its answer and then the end of the stream (a connection that moved from one
            // kinfrad to the next must really close when the last one closes it).
            if !close {
                let at = Instant::now();
                let mut failure =
                    exchange(addr, &mut conn, false, tag).map(|f| format!("before the last: {f}"));
                if failure.is_none()
                    && let Some((mut r, mut w)) = conn.take()
                {
                    let _ = w.write_all(&request(&addr, true));
                    failure = match read_response(&mut r) {
                        Ok(resp) if resp.status == 200 => {
                            let mut rest = Vec::new();
                            match std::io::Read::read_to_end(&mut r, &mut rest) {
                                Ok(_) if rest.is_empty() => None,
                                Ok(_) => Some("bytes after the last answer".to_string()),
                                Err(e) => Some(format!(
                                    "no end after Connection: close: {}",
                                    classify(&e)
                                )),
                            }
                        }
                        Ok(resp) => Some(format!("status {} to the last request", resp.status)),
                        Err(e) => Some(classify(&e)),
                    };
                }
                mine.push(Sample {
                    at,
                    took: at.elapsed(),
                    failure,
                });
            }
            out.lock()
                .unwrap_or_else(|p| p.into_inner())
                .samples
                .extend(mine);
        }));
    }
    std::thread::sleep(length);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    Arc::try_unwrap(out)
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .unwrap_or_default()
}
