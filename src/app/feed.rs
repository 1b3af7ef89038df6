//! The feed the dashboard's live streams follow: the hub task (in `web::events`) publishes the
//! newest ready-made frames here, and every status stream watches them. It lives with `App`,
//! which owns the one `Hub`, so the state never depends on the code that serves the streams.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;

/// What the hub publishes: the newest frames and their sequence numbers.
#[derive(Debug, Clone, Default)]
pub struct Feed {
    pub status_seq: u64,
    pub status: Bytes,
    pub countdown_seq: u64,
    pub countdown: Bytes,
    /// kinfrad is stopping: every stream ends.
    pub closing: bool,
    /// The `drained` event of the drain that is drained now: its id and frame.
    pub drained: Option<(u64, Bytes)>,
}

/// The hub's output; status streams follow it. Log followers watch only `closing`, so they do
/// not count as subscribers the hub builds status documents for.
#[derive(Debug)]
pub struct Hub {
    tx: watch::Sender<Arc<Feed>>,
    closing: watch::Sender<bool>,
    /// The same signal for log followers alone, so they can be counted.
    logs_closing: watch::Sender<bool>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            tx: watch::channel(Arc::new(Feed::default())).0,
            closing: watch::channel(false).0,
            logs_closing: watch::channel(false).0,
        }
    }
}

impl Hub {
    pub fn subscribe(&self) -> watch::Receiver<Arc<Feed>> {
        self.tx.subscribe()
    }

    /// Live status streams.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// The newest feed.
    pub fn current(&self) -> Feed {
        (**self.tx.borrow()).clone()
    }

    /// Publish a new feed to every status stream.
    pub fn publish(&self, feed: Feed) {
        self.tx.send_replace(Arc::new(feed));
    }

    /// Follows only whether kinfrad is stopping.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// What a log follower watches: whether kinfrad is stopping (counted in `log_followers`).
    pub fn follow_logs(&self) -> watch::Receiver<bool> {
        self.logs_closing.subscribe()
    }

    /// Live log streams.
    pub fn log_followers(&self) -> usize {
        self.logs_closing.receiver_count()
    }

    /// kinfrad is stopping: every stream ends.
    pub fn close(&self) {
        self.closing.send_replace(true);
        self.logs_closing.send_replace(true);
        self.tx.send_modify(|f| {
            let mut next = (**f).clone();
            next.closing = true;
            *f = Arc::new(next);
        });
    }
}
