//! Per-thread buffer pools, the read buffer `Buf`, timed reads and writes, a connection's timer.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{BODY_CHUNK, HEAD_CHUNK};

thread_local! {
    /// Head and body buffers of finished requests, reused so an idle connection holds none
    /// and a busy one allocates (and zeroes) none.
    static HEADS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static BODIES: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

pub(super) fn take_buf(len: usize) -> Vec<u8> {
    let pooled = match len {
        HEAD_CHUNK => HEADS.with(|p| p.borrow_mut().pop()),
        BODY_CHUNK => BODIES.with(|p| p.borrow_mut().pop()),
        _ => None,
    };
    pooled.unwrap_or_else(|| vec![0; len])
}

thread_local! {
    /// Scratch vectors for the heads kinfrad writes (upstream request, client response head),
    /// so a proxied request allocates none in the steady state.
    static SCRATCH: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty vector with room for `cap` bytes, reused when one is at hand.
// Called per request from another h1 file: inlined there as when h1 was one file.
#[inline]
pub(super) fn scratch(cap: usize) -> Vec<u8> {
    let mut v = SCRATCH.with(|p| p.borrow_mut().pop()).unwrap_or_default();
    v.reserve(cap);
    v
}

/// Give a scratch vector back (small ones only: a large body never stays around).
pub(super) fn give_scratch(mut v: Vec<u8>) {
    if v.capacity() <= 16 * 1024 {
        v.clear();
        SCRATCH.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < POOL_SCRATCH {
                p.push(v);
            }
        });
    }
}

/// Scratch vectors kept per worker thread (each at most 16 KiB).
const POOL_SCRATCH: usize = 64;

/// Buffers kept per worker thread: enough for a few hundred requests in flight (1 MiB of
/// heads), small enough that a burst of thousands of connections leaves little behind.
const POOL_HEADS: usize = 256;
const POOL_BODIES: usize = 8;

pub(super) fn give_buf(v: Vec<u8>) {
    let (pool, cap) = match v.len() {
        HEAD_CHUNK => (&HEADS, POOL_HEADS),
        BODY_CHUNK => (&BODIES, POOL_BODIES),
        _ => return,
    };
    pool.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < cap {
            p.push(v);
        }
    });
}

/// Bytes read but not yet used: `data[start..end]`. `data` is allocated only while needed.
pub(super) struct Buf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl Buf {
    pub(super) fn new() -> Buf {
        Buf {
            data: Vec::new(),
            start: 0,
            end: 0,
        }
    }

    pub(super) fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub(super) fn len(&self) -> usize {
        self.end - self.start
    }

    pub(super) fn consume(&mut self, n: usize) {
        self.start += n.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Room for at least `min` more bytes at the end.
    fn spare(&mut self, min: usize) -> &mut [u8] {
        if self.data.is_empty() {
            self.data = take_buf(HEAD_CHUNK.max(min));
        }
        if self.data.len() - self.end < min && self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.data.len() - self.end < min {
            let n = (self.end + min).max(self.data.len() * 2);
            self.data.resize(n, 0);
        }
        &mut self.data[self.end..]
    }

    /// Give the memory back while nothing is buffered.
    pub(super) fn release(&mut self) {
        if self.len() == 0 && !self.data.is_empty() {
            give_buf(std::mem::take(&mut self.data));
            self.start = 0;
            self.end = 0;
        }
    }

    pub(super) fn into_vec(mut self) -> Vec<u8> {
        let v = self.filled().to_vec();
        self.consume(usize::MAX);
        self.release();
        v
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        self.start = 0;
        self.end = 0;
        self.release();
    }
}

/// Read what is available into `buf`, waiting if nothing is. `Ok(0)`: EOF.
///
/// `AsyncRead` rather than `try_read`: tokio clears a socket's readiness after a short read, so
/// the next read waits for the reactor instead of costing a syscall that returns EAGAIN.
pub(super) async fn fill(stream: &mut TcpStream, buf: &mut Buf, min: usize) -> io::Result<usize> {
    let spare = buf.spare(min);
    let n = stream.read(spare).await?;
    buf.end += n;
    Ok(n)
}

/// Write all of `bytes`, failing if the peer stops reading for `limit`. The common case (the
/// socket takes everything at once) needs no timer.
/// `fill` for a request head. While nothing is buffered (an idle keep-alive connection) it
/// waits with `first`, a small array in the caller's frame, instead of a pooled buffer: most
/// heads fit it. (The caller's: an array in this future would be copied each time the future
/// moves into a select.)
pub(super) async fn fill_head(
    stream: &mut TcpStream,
    buf: &mut Buf,
    first: &mut [u8; 512],
) -> io::Result<usize> {
    if buf.len() > 0 {
        return fill(stream, buf, 1024).await;
    }
    let n = stream.read(first).await?;
    if n > 0 {
        buf.spare(n)[..n].copy_from_slice(&first[..n]);
        buf.end += n;
    }
    Ok(n)
}

pub(super) async fn write_timed(
    stream: &mut TcpStream,
    bytes: &[u8],
    limit: Duration,
) -> io::Result<()> {
    let done = match stream.try_write(bytes) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e),
    };
    if done == bytes.len() {
        return Ok(());
    }
    match tokio::time::timeout(limit, stream.write_all(&bytes[done..])).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write stalled")),
    }
}

/// A connection's one timer for its waits (the next request head, an upstream's response
/// head). A wait asks for "no later than `limit` from now"; the timer is re-armed only when it
/// would fire too late for the wait at hand, or when it fired early for it — so the steady
/// request/response rhythm of a connection leaves tokio's timer wheel alone.
pub(super) struct Deadline {
    sleep: Pin<Box<tokio::time::Sleep>>,
    armed: tokio::time::Instant,
}

impl Deadline {
    pub(super) fn new() -> Deadline {
        let far = tokio::time::Instant::now() + Duration::from_secs(365 * 86_400);
        Deadline {
            sleep: Box::pin(tokio::time::sleep_until(far)),
            armed: far,
        }
    }

    /// `fut`'s output, or `None` once `limit` has passed.
    pub(super) async fn within<F: std::future::Future>(
        &mut self,
        limit: Duration,
        fut: F,
    ) -> Option<F::Output> {
        self.until(tokio::time::Instant::now() + limit, fut).await
    }

    /// `fut`'s output, or `None` once `due` has passed (no clock read unless the timer fires).
    pub(super) async fn until<F: std::future::Future>(
        &mut self,
        due: tokio::time::Instant,
        fut: F,
    ) -> Option<F::Output> {
        if self.armed > due {
            self.sleep.as_mut().reset(due);
            self.armed = due;
        }
        let mut fut = std::pin::pin!(fut);
        loop {
            tokio::select! {
                biased;
                out = &mut fut => return Some(out),
                () = &mut self.sleep => {
                    if tokio::time::Instant::now() >= due {
                        return None;
                    }
                    // Armed for an earlier wait: now count this one.
                    self.sleep.as_mut().reset(due);
                    self.armed = due;
                }
            }
        }
    }
}
