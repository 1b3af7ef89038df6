//! The ring (kept, dropped, cursors) and the fields each event is logged with.

use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};

use super::*;

#[test]
fn the_ring_keeps_the_last_hundred_in_order() {
    let log = EventLog::new();
    for i in 0..250u32 {
        log.record(Event::new(Kind::HealthDown, format!("s{i}"), "down").failures(i));
    }
    let kept = log.recent();
    assert_eq!(kept.len(), KEEP);
    assert_eq!(kept[0].seq, 151);
    assert_eq!(kept[0].service, "s150");
    assert_eq!(kept[KEEP - 1].seq, 250);
    assert!(kept.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    assert_eq!(log.last_seq(), 250);
}

#[test]
fn a_cursor_reads_what_came_after_it_and_counts_what_it_missed() {
    let log = EventLog::new();
    assert_eq!(log.since(0, 10), (Vec::new(), 0));
    for _ in 0..5 {
        log.record(Event::new(Kind::ProcessExit, "api", "killed by SIGKILL"));
    }
    let (ev, missed) = log.since(2, 10);
    assert_eq!(ev.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4, 5]);
    assert_eq!(missed, 0);
    let (ev, _) = log.since(0, 2);
    assert_eq!(ev.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
    assert!(log.since(5, 10).0.is_empty());
    for _ in 0..KEEP {
        log.record(Event::new(Kind::ProcessExit, "api", "again"));
    }
    // Events 1..=5 are gone; a follower at 3 missed 4 and 5.
    let (ev, missed) = log.since(3, 1);
    assert_eq!(missed, 2);
    assert_eq!(ev[0].seq, 6);
}

#[tokio::test]
async fn followers_are_woken_with_the_new_sequence_number() {
    let log = Arc::new(EventLog::new());
    let mut rx = log.subscribe();
    let l2 = log.clone();
    tokio::spawn(async move { l2.record(Event::new(Kind::CircuitOpen, "api", "x")) });
    let seq = *rx.wait_for(|s| *s > 0).await.expect("woken");
    assert_eq!(seq, 1);
}

#[test]
fn long_reasons_are_cut_at_a_character_boundary() {
    let log = EventLog::new();
    log.record(Event::new(Kind::HealthDown, "api", "é".repeat(MAX_REASON)));
    let r = &log.recent()[0].reason;
    assert!(r.len() <= MAX_REASON + '…'.len_utf8());
    assert!(r.ends_with('…'));
}

#[test]
fn every_kind_has_a_distinct_name() {
    let mut names: Vec<_> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), Kind::ALL.len());
}

/// One logged event's fields: (name, value).
type Logged = Vec<(String, String)>;

/// Collects the fields of every event logged.
#[derive(Clone, Default)]
struct Fields(Arc<Mutex<Vec<Logged>>>);

struct Collect<'a>(&'a mut Vec<(String, String)>);

impl Visit for Collect<'_> {
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        self.0.push((f.name().to_string(), format!("{v:?}")));
    }
    fn record_str(&mut self, f: &Field, v: &str) {
        self.0.push((f.name().to_string(), v.to_string()));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Fields {
    fn on_event(&self, e: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut got = Vec::new();
        e.record(&mut Collect(&mut got));
        self.0.lock().expect("fields").push(got);
    }
}

#[test]
fn each_event_is_logged_once_with_its_fields_named_for_the_journal() {
    let fields = Fields::default();
    let sub = tracing_subscriber::registry().with(fields.clone());
    tracing::subscriber::with_default(sub, || {
        let log = EventLog::new();
        log.record(
            Event::new(Kind::CircuitOpen, "api", "5 consecutive failures")
                .route("/api")
                .failures(5)
                .latency(Duration::from_millis(12)),
        );
        log.record(Event::new(Kind::MaintenanceOn, "ALL", "operator"));
    });
    let got = fields.0.lock().expect("fields").clone();
    assert_eq!(got.len(), 2, "one line per event: {got:?}");
    let first: Vec<(&str, &str)> = got[0]
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for want in [
        ("event", "circuit_open"),
        ("service", "api"),
        ("route", "/api"),
        ("reason", "5 consecutive failures"),
        ("failures", "5"),
        ("latency_ms", "12"),
        ("message", "circuit opened"),
    ] {
        assert!(first.contains(&want), "{want:?} missing in {first:?}");
    }
    // Absent values are left out, not logged as empty.
    let names: Vec<&str> = got[1].iter().map(|(k, _)| k.as_str()).collect();
    assert!(!names.contains(&"route") && !names.contains(&"failures"));
    // The journal takes these names upper-cased (with no prefix, see systemd::logging): every
    // one must be a valid journal field name.
    for (k, _) in &got[0] {
        assert!(
            k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') && !k.starts_with('_'),
            "{k}"
        );
    }
}
