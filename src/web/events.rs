//! Live updates for the dashboard: `GET /__events__`, Server-Sent Events.
//!
//! One hub task (`run`) turns state changes into ready-made SSE frames: it wakes on every
//! `App::publish` and once a second, builds the status document once, and publishes it to a
//! `watch` only when something an operator can see moved (uptimes and the clock are left out of
//! that comparison; pages tick them locally). Every subscriber follows the watch: waking costs
//! it a `Bytes` clone and one write, whatever the number of subscribers, and a slow subscriber
//! skips to the newest state instead of queueing old ones.
//!
//! Events: `statusUpdate` (the `/__status__` document, plus `routes` and `drain`),
//! `countdownUpdate` (every second while maintenance is on, and once when it ends), `drained`
//! (a drain's time is over and nothing is in flight on its services: the drain's report; sent
//! once when it happens, and first thing to a stream opened while the drain stays drained),
//! `kinfraEvent` (entries of the event log, `{"events": [...], "reset": bool}`: first all
//! those kept, with `reset`, then each new one as it is recorded; a stream follows the log
//! itself, not the hub, so none is skipped), `log` (the log stream of
//! `/__events__?logs=SERVICE`), and `: ping` comments every 15 s so dead peers are noticed.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body::{Body, Frame};
use serde_json::Value;
use tokio::sync::watch;

use crate::app::{App, Feed};
use crate::eventlog::{EventLog, KEEP};
use crate::supervisor::LogRing;

/// A quiet stream still gets a comment this often.
pub const KEEPALIVE: Duration = Duration::from_secs(15);
/// The hub re-checks state (and sends the countdown) this often.
pub const TICK: Duration = Duration::from_secs(1);
/// Most log lines in one `log` event.
pub const LOG_BATCH: usize = 500;
/// Told to EventSource: wait this long before reconnecting (ms).
const RETRY_MS: u32 = 2000;

/// One SSE frame. `data` must be one line (serde_json never writes a newline).
pub fn frame(event: &str, id: u64, data: &str) -> Bytes {
    Bytes::from(format!("event: {event}\nid: {id}\ndata: {data}\n\n"))
}

/// The `statusUpdate` document: `/__status__` with logs and routes.
pub fn status_value(app: &App) -> Value {
    crate::web::status::services_json(app, None, true).unwrap_or(Value::Null)
}

/// The status without what changes by itself every second (compared, never sent).
fn fingerprint(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        for k in ["timestamp", "uptime"] {
            o.remove(k);
        }
        if let Some(Value::Object(m)) = o.get_mut("maintenance") {
            for k in ["countdown", "lastBroadcast", "retryAfter"] {
                m.remove(k);
            }
        }
        // Every record's and every route's countdown ticks too.
        if let Some(Value::Array(recs)) = o.get_mut("maintenance_records") {
            for m in recs.iter_mut().filter_map(Value::as_object_mut) {
                for k in ["countdown", "lastBroadcast", "retryAfter"] {
                    m.remove(k);
                }
            }
        }
        if let Some(Value::Array(routes)) = o.get_mut("routes") {
            for r in routes.iter_mut().filter_map(|r| r.get_mut("maintenance")) {
                if let Some(m) = r.as_object_mut() {
                    m.remove("countdown");
                }
            }
        }
        if let Some(Value::Object(svcs)) = o.get_mut("services") {
            for s in svcs.values_mut() {
                if let Some(s) = s.as_object_mut() {
                    for k in ["uptime", "uptime_secs", "circuit_opened_secs_ago"] {
                        s.remove(k);
                    }
                }
            }
        }
    }
    v
}

/// The `countdownUpdate` event: seconds left (null without an estimate).
fn countdown_value(app: &App) -> (bool, Value) {
    let v = app.status_view();
    (
        v.is_active,
        serde_json::json!({
            "isActive": v.is_active,
            "countdown": v.countdown,
            "estimatedCompletion": v.estimated_completion,
        }),
    )
}

/// The `drained` event of drain `id`: the drain's report.
fn drained_frame(app: &App, id: u64) -> Bytes {
    let report = serde_json::to_string(&app.drain_report()).unwrap_or_default();
    frame("drained", id, &report)
}

/// The hub: runs until `stop`, then ends every stream.
pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut changed = app.subscribe();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<Value> = None;
    let mut was_active = false;
    loop {
        let ticked = tokio::select! {
            biased;
            _ = crate::stop::stopped(&mut stop) => break,
            r = changed.changed() => {
                if r.is_err() {
                    break;
                }
                false
            }
            _ = tick.tick() => true,
        };
        let hub = app.events();
        // Kept current even while nobody listens (a stream opened later must not be told of
        // a drain that is over, or miss one): an atomic read while nothing changes.
        let drained = app.drained_id();
        if hub.current().drained.as_ref().map(|d| d.0) != drained {
            let mut feed = hub.current();
            feed.drained = drained.map(|id| (id, drained_frame(&app, id)));
            hub.publish(feed);
        }
        if hub.subscribers() == 0 {
            // Nobody listens: build nothing. A new subscriber builds its own first frame.
            last = None;
            continue;
        }
        let mut feed = hub.current();
        let mut moved = false;
        let v = status_value(&app);
        let fp = fingerprint(&v);
        if last.as_ref() != Some(&fp) {
            feed.status_seq += 1;
            feed.status = frame("statusUpdate", feed.status_seq, &v.to_string());
            last = Some(fp);
            moved = true;
        }
        let (active, cd) = countdown_value(&app);
        if ticked && (active || was_active) {
            feed.countdown_seq += 1;
            feed.countdown = frame("countdownUpdate", feed.countdown_seq, &cd.to_string());
            moved = true;
        }
        if ticked {
            was_active = active;
        }
        if moved {
            hub.publish(feed);
        }
    }
    app.events().close();
}

// ------------------------------------------------------------------------------ streams

/// An event stream as a response body: `next` makes each chunk from the stream's state until it
/// says `None` (`futures`' `unfold`, each chunk one data frame).
fn body<S, F, Fut>(
    state: S,
    next: F,
) -> impl Body<Data = Bytes, Error = Infallible> + Send + 'static
where
    S: Send + 'static,
    F: FnMut(S) -> Fut + Send + 'static,
    Fut: Future<Output = Option<(Bytes, S)>> + Send + 'static,
{
    http_body_util::StreamBody::new(
        futures_util::stream::unfold(state, next).map(|b| Ok::<_, Infallible>(Frame::data(b))),
    )
}

/// A status subscriber.
pub struct StatusStream {
    feed: watch::Receiver<Arc<Feed>>,
    seen_status: u64,
    seen_countdown: u64,
    seen_drained: Option<u64>,
    /// The event log, and the last event sent.
    log: Arc<EventLog>,
    log_seq: watch::Receiver<u64>,
    seen_event: u64,
    first: Option<Bytes>,
    /// The next keep-alive: every `KEEPALIVE`, re-armed only when it fires (events don't
    /// touch the timer wheel).
    ping: Pin<Box<tokio::time::Sleep>>,
}

/// Subscribe to status and countdown events; the first frame is built now.
pub fn status_stream(app: &App) -> impl Body<Data = Bytes, Error = Infallible> + Send + 'static {
    let mut feed = app.events().subscribe();
    let (seen_status, seen_countdown) = {
        let f = feed.borrow_and_update();
        (f.status_seq, f.countdown_seq)
    };
    let mut first = BytesMut::new();
    first.extend_from_slice(format!("retry: {RETRY_MS}\n\n").as_bytes());
    first.extend_from_slice(&frame(
        "statusUpdate",
        seen_status,
        &status_value(app).to_string(),
    ));
    let (active, cd) = countdown_value(app);
    if active {
        first.extend_from_slice(&frame("countdownUpdate", seen_countdown, &cd.to_string()));
    }
    let seen_drained = app.drained_id();
    if let Some(id) = seen_drained {
        first.extend_from_slice(&drained_frame(app, id));
    }
    let log = app.eventlog().clone();
    let mut log_seq = log.subscribe();
    log_seq.borrow_and_update();
    let (backlog, seen_event) = event_frame(&log, 0, true);
    first.extend_from_slice(&backlog);
    let s = StatusStream {
        feed,
        seen_status,
        seen_countdown,
        seen_drained,
        log,
        log_seq,
        seen_event,
        first: Some(first.freeze()),
        ping: Box::pin(tokio::time::sleep(KEEPALIVE)),
    };
    body(s, next_status)
}

async fn next_status(mut s: StatusStream) -> Option<(Bytes, StatusStream)> {
    if let Some(b) = s.first.take() {
        return Some((b, s));
    }
    loop {
        tokio::select! {
            r = s.feed.changed() => {
                if r.is_err() {
                    return None;
                }
            }
            r = s.log_seq.changed() => {
                if r.is_err() {
                    return None;
                }
                s.log_seq.borrow_and_update();
                if s.feed.borrow().closing {
                    return None;
                }
                let (b, seen) = event_frame(&s.log, s.seen_event, false);
                s.seen_event = seen;
                if !b.is_empty() {
                    return Some((b, s));
                }
                continue;
            }
            _ = &mut s.ping => {
                s.ping.as_mut().reset(tokio::time::Instant::now() + KEEPALIVE);
                return Some((Bytes::from_static(b": ping\n\n"), s));
            }
        }
        let f = s.feed.borrow_and_update().clone();
        if f.closing {
            return None;
        }
        let mut out = BytesMut::new();
        if f.status_seq != s.seen_status {
            s.seen_status = f.status_seq;
            out.extend_from_slice(&f.status);
        }
        if f.countdown_seq != s.seen_countdown {
            s.seen_countdown = f.countdown_seq;
            out.extend_from_slice(&f.countdown);
        }
        let drained = f.drained.as_ref().map(|d| d.0);
        if drained != s.seen_drained {
            s.seen_drained = drained;
            if let Some((_, b)) = &f.drained {
                out.extend_from_slice(b);
            }
        }
        if !out.is_empty() {
            return Some((out.freeze(), s));
        }
    }
}

/// The `kinfraEvent` frame of the events after `after` (with `reset`: the whole backlog, even
/// when empty), and the last `seq` it holds. Empty when there is nothing to send.
fn event_frame(log: &EventLog, after: u64, reset: bool) -> (Bytes, u64) {
    let (events, _) = log.since(after, KEEP);
    let last = events.last().map_or(after, |e| e.seq);
    if events.is_empty() && !reset {
        return (Bytes::new(), last);
    }
    let list: Vec<_> = events.iter().map(crate::app::event_report).collect();
    let data = serde_json::json!({"events": list, "reset": reset}).to_string();
    (frame("kinfraEvent", last, &data), last)
}

/// A log follower of one service.
pub struct LogStream {
    ring: Arc<LogRing>,
    lines: watch::Receiver<u64>,
    closing: watch::Receiver<bool>,
    /// The keep-alive comment's timer: re-armed when it fires, not on every wake.
    ping: Pin<Box<tokio::time::Sleep>>,
    cursor: u64,
    id: u64,
    first: bool,
}

/// Follow `ring` from `since` (a cursor of an earlier event or `GET /api/dashboard/logs/…`;
/// `None`: every line kept): the first event holds what came after it, then every new line.
pub fn log_stream(
    app: &App,
    ring: Arc<LogRing>,
    since: Option<u64>,
) -> impl Body<Data = Bytes, Error = Infallible> + Send + 'static {
    let mut lines = ring.seq.subscribe();
    lines.borrow_and_update();
    let s = LogStream {
        cursor: since.unwrap_or(0),
        ring,
        lines,
        closing: app.events().follow_logs(),
        ping: Box::pin(tokio::time::sleep(KEEPALIVE)),
        id: 0,
        first: true,
    };
    body(s, next_log)
}

/// The `log` event's data (also the JSON of `GET /api/dashboard/logs/{service}`).
pub fn log_json(lines: &[crate::supervisor::LogLine], cursor: u64, skipped: u64) -> Value {
    serde_json::json!({
        "lines": lines.iter().map(crate::protocol::LogEntry::from).collect::<Vec<_>>(),
        "cursor": cursor,
        "skipped": skipped,
    })
}

async fn next_log(mut s: LogStream) -> Option<(Bytes, LogStream)> {
    if *s.closing.borrow() {
        return None;
    }
    let mut head = Vec::new();
    if s.first {
        s.first = false;
        head.extend_from_slice(format!("retry: {RETRY_MS}\n\n").as_bytes());
    }
    loop {
        let (lines, next, skipped) = s.ring.since(s.cursor, LOG_BATCH);
        if !lines.is_empty() || skipped > 0 || !head.is_empty() {
            s.cursor = next;
            s.id += 1;
            let data = log_json(&lines, next, skipped).to_string();
            head.extend_from_slice(&frame("log", s.id, &data));
            return Some((Bytes::from(head), s));
        }
        tokio::select! {
            r = s.lines.changed() => {
                if r.is_err() {
                    return None;
                }
                // Let a burst of lines gather into one event.
                tokio::time::sleep(Duration::from_millis(50)).await;
                s.lines.borrow_and_update();
            }
            r = s.closing.changed() => {
                if r.is_err() || *s.closing.borrow_and_update() {
                    return None;
                }
            }
            () = &mut s.ping => {
                s.ping.as_mut().reset(tokio::time::Instant::now() + KEEPALIVE);
                return Some((Bytes::from_static(b": ping\n\n"), s));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_ignores_what_ticks_by_itself() {
        let a = serde_json::json!({
            "timestamp": "t1", "uptime": "1s", "state": "running",
            "maintenance": {"isActive": true, "countdown": 10, "message": "m"},
            "services": {"api": {"uptime": "1s", "uptime_secs": 1, "state": "running"}},
        });
        let mut b = a.clone();
        b["timestamp"] = "t2".into();
        b["maintenance"]["countdown"] = 9.into();
        b["services"]["api"]["uptime_secs"] = 2.into();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        b["services"]["api"]["state"] = "crashed".into();
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }

    #[test]
    fn frames_are_sse() {
        assert_eq!(
            &frame("statusUpdate", 3, "{\"a\":1}")[..],
            b"event: statusUpdate\nid: 3\ndata: {\"a\":1}\n\n"
        );
    }
}
