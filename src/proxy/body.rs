//! The bodies `forward` wraps: the client's request body (size limit, who is at fault when it
//! fails), the upstream's response body (idle timeout), and the half-open trial guard.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::upstream::Upstream;

/// Gives a half-open trial back to the breaker unless the outcome was recorded.
pub(super) struct TrialGuard<'a> {
    pub(super) up: &'a Upstream,
    pub(super) armed: bool,
}

impl Drop for TrialGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.up.on_abandoned();
        }
    }
}

/// How the client's request body failed, if it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum BodyFault {
    TooLarge,
    Client(String),
}

/// What the request path can tell, after the fact, about the client's body: whether it failed,
/// and whether forwarding was waiting for the client (rather than for the upstream) last.
#[derive(Default)]
pub(super) struct BodyWatch {
    fault: std::sync::Mutex<Option<BodyFault>>,
    waiting: std::sync::atomic::AtomicBool,
}

impl BodyWatch {
    pub(super) fn fault(&self) -> Option<BodyFault> {
        self.fault.lock().map(|f| f.clone()).unwrap_or(None)
    }

    fn set_fault(&self, f: BodyFault) {
        if let Ok(mut g) = self.fault.lock() {
            g.get_or_insert(f);
        }
    }

    pub(super) fn waiting_on_client(&self) -> bool {
        self.waiting.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The client's request body on its way upstream: fails once more than `left` bytes went
/// through, and tells `watch` when the client is the one at fault or the one being waited for.
pub(super) struct ClientBody {
    pub(super) inner: Body,
    pub(super) left: u64,
    pub(super) watch: Arc<BodyWatch>,
}

#[derive(Debug, thiserror::Error)]
#[error("request body length limit exceeded")]
struct TooLarge;

impl http_body::Body for ClientBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        use std::sync::atomic::Ordering::Relaxed;
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        self.watch.waiting.store(polled.is_pending(), Relaxed);
        match polled {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    let n = d.len() as u64;
                    if n > self.left {
                        self.watch.set_fault(BodyFault::TooLarge);
                        return Poll::Ready(Some(Err(Box::new(TooLarge))));
                    }
                    self.left -= n;
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.watch
                    .set_fault(BodyFault::Client(crate::errors::error_chain(&e)));
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that errors when the upstream stalls for longer than `idle`. The timer is
/// armed only when a read has to wait: a body that is already buffered (most small responses)
/// never touches the timer wheel.
pub(super) struct IdleBody {
    inner: hyper::body::Incoming,
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The timer counts the current wait (cleared when a frame arrives).
    armed: bool,
}

impl IdleBody {
    pub(super) fn new(inner: hyper::body::Incoming, idle: Duration) -> IdleBody {
        IdleBody {
            inner,
            idle,
            timer: None,
            armed: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("upstream body stalled")]
struct Stalled;

impl http_body::Body for IdleBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                // Progress: the next wait starts a fresh idle period.
                self.armed = false;
                Poll::Ready(r.map(|x| x.map_err(|e| Box::new(e) as Self::Error)))
            }
            Poll::Pending => {
                let this = &mut *self;
                let deadline = tokio::time::Instant::now() + this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if !this.armed {
                    timer.as_mut().reset(deadline);
                    this.armed = true;
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(Stalled)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> SizeHint {
        http_body::Body::size_hint(&self.inner)
    }
}
