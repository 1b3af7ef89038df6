//! A service's output: levels, lines, the bounded ring and the capture of stdout/stderr.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }

    /// The level a line announces with a common prefix (`ERROR`, `[warn]`, `level=info`, `E `),
    /// else the stream's default (stderr: warn, stdout: info).
    pub fn of(line: &str, stream: Stream) -> Level {
        let head: String = line
            .trim_start()
            .chars()
            .take(24)
            .collect::<String>()
            .to_ascii_lowercase();
        let head = head
            .trim_start_matches(['[', '(', '<'])
            .trim_start_matches("level=");
        let starts = |w: &str| {
            head.starts_with(w)
                && !head[w.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric())
        };
        if starts("error")
            || starts("err")
            || starts("fatal")
            || starts("critical")
            || starts("panic")
        {
            Level::Error
        } else if starts("warning") || starts("warn") {
            Level::Warn
        } else if starts("info") {
            Level::Info
        } else if starts("debug") || starts("trace") {
            Level::Debug
        } else if stream == Stream::Stderr {
            Level::Warn
        } else {
            Level::Info
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub at: SystemTime,
    pub stream: Stream,
    pub level: Level,
    pub text: String,
}

/// Longest line kept; longer ones are cut (and say so).
pub const MAX_LINE: usize = 16 * 1024;

/// A bounded ring of a service's output. Writers never wait for readers.
#[derive(Debug)]
pub struct LogRing {
    cap: usize,
    inner: Mutex<(VecDeque<LogLine>, u64)>,
    /// Bumped on every line, for followers (`kinfractl logs -f`).
    pub seq: watch::Sender<u64>,
}

impl LogRing {
    pub fn new(cap: usize) -> LogRing {
        LogRing {
            cap: cap.max(1),
            inner: Mutex::new((VecDeque::new(), 0)),
            seq: watch::channel(0).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (VecDeque<LogLine>, u64)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, line: LogLine) {
        {
            let mut g = self.lock();
            if g.0.len() == self.cap {
                g.0.pop_front();
                g.1 += 1;
            }
            g.0.push_back(line);
        }
        self.seq.send_modify(|n| *n += 1);
    }

    /// The last `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<LogLine> {
        let g = self.lock();
        g.0.iter()
            .skip(g.0.len().saturating_sub(n))
            .cloned()
            .collect()
    }

    /// Up to `max` lines after absolute position `cursor` (lines ever pushed before them), oldest
    /// first; the cursor to ask with next; and how many lines after `cursor` were already gone.
    /// A cursor beyond the end (another ring) starts over from the oldest line kept.
    pub fn since(&self, cursor: u64, max: usize) -> (Vec<LogLine>, u64, u64) {
        let g = self.lock();
        let first = g.1;
        let end = first + g.0.len() as u64;
        let cursor = if cursor > end { first } else { cursor };
        let start = cursor.max(first);
        let skipped = start - cursor;
        let from = (start - first) as usize;
        let lines: Vec<LogLine> = g.0.iter().skip(from).take(max).cloned().collect();
        let next = start + lines.len() as u64;
        (lines, next, skipped)
    }

    /// Lines dropped because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.lock().1
    }

    pub fn len(&self) -> usize {
        self.lock().0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Read `from` line by line into `ring` (and the journal) until EOF. Lines longer than
/// `MAX_LINE` are cut; invalid UTF-8 is replaced.
pub(super) async fn capture(
    name: String,
    stream: Stream,
    from: impl AsyncRead + Unpin,
    ring: Arc<LogRing>,
) {
    let mut r = BufReader::with_capacity(8 * 1024, from);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        // Read up to a newline, but never hold more than MAX_LINE of one line.
        let mut cut = false;
        loop {
            let buf = match r.fill_buf().await {
                Ok(b) => b,
                Err(_) => return,
            };
            if buf.is_empty() {
                if line.is_empty() {
                    return;
                }
                break;
            }
            let (take, end) = match buf.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            let room = MAX_LINE.saturating_sub(line.len());
            line.extend_from_slice(&buf[..take.min(room)]);
            cut |= take > room;
            r.consume(take);
            if end {
                break;
            }
        }
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        let mut text = String::from_utf8_lossy(&line).into_owned();
        if cut {
            text.push_str(" …[cut]");
        }
        let level = Level::of(&text, stream);
        match level {
            Level::Error => tracing::error!(service = %name, "{text}"),
            Level::Warn => tracing::warn!(service = %name, "{text}"),
            Level::Info => tracing::info!(service = %name, "{text}"),
            Level::Debug => tracing::debug!(service = %name, "{text}"),
        }
        ring.push(LogLine {
            at: SystemTime::now(),
            stream,
            level,
            text,
        });
    }
}
