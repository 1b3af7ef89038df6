//! Unit tests of the window rules: next occurrences, DST gaps and repeats, enter and exit decisions, validation.

use super::*;

/// Central European time, with its DST rule, without the tz database.
fn berlin() -> TimeZone {
    TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").expect("posix tz")
}

fn ms(rfc: &str) -> u64 {
    rfc.parse::<Timestamp>().expect(rfc).as_millisecond() as u64
}

fn civil(s: &str) -> DateTime {
    s.parse().expect(s)
}

fn window(at: &str, dur: u64, every: Option<Every>, now: u64) -> Window {
    Window::new(
        1,
        Target::All,
        civil(at),
        ("Europe/Berlin", &berlin()),
        dur,
        every,
        DEFAULT_WARN_SECS,
        Some("Upgrade".into()),
        None,
        now,
    )
    .expect("valid window")
}

#[test]
fn one_off_window_is_active_only_inside() {
    let now = ms("2026-12-01T00:00:00Z");
    let w = window("2026-12-24T02:00", 1800, None, now);
    let start = ms("2026-12-24T01:00:00Z");
    let o = w.occurrence(&berlin(), now).expect("next");
    assert_eq!(
        o,
        Occurrence {
            start_ms: start,
            end_ms: start + 1_800_000
        }
    );
    assert!(!w.is_active_at(&berlin(), start - 1));
    assert!(w.is_active_at(&berlin(), start));
    assert!(w.is_active_at(&berlin(), start + 1_799_999));
    assert!(!w.is_active_at(&berlin(), start + 1_800_000));
    assert_eq!(w.occurrence(&berlin(), start + 1_800_000), None);
    assert_eq!(w.next_edge(&berlin(), now), Some(start));
}

#[test]
fn weekly_window_keeps_its_wall_clock_time_across_dst() {
    // 02:30 falls in the spring-forward gap on 2027-03-28 (02:00 → 03:00): that week it
    // starts at 03:30 CEST (moved forward by the gap); otherwise always 02:30 local.
    let now = ms("2027-03-01T00:00:00Z");
    let w = window("2027-03-14T02:30", 1800, Some(Every::Week), now);
    let tz = berlin();
    assert_eq!(w.start_of(&tz, 0), Some(ms("2027-03-14T01:30:00Z")));
    assert_eq!(w.start_of(&tz, 1), Some(ms("2027-03-21T01:30:00Z")));
    assert_eq!(w.start_of(&tz, 2), Some(ms("2027-03-28T01:30:00Z")));
    assert_eq!(w.start_of(&tz, 3), Some(ms("2027-04-04T00:30:00Z")));
    // The next occurrence after one has ended.
    let after = ms("2027-03-21T02:00:01Z");
    assert_eq!(
        w.occurrence(&tz, after).map(|o| o.start_ms),
        Some(ms("2027-03-28T01:30:00Z"))
    );
    let after = ms("2027-03-28T02:00:01Z");
    assert_eq!(
        w.occurrence(&tz, after).map(|o| o.start_ms),
        Some(ms("2027-04-04T00:30:00Z"))
    );
}

#[test]
fn daily_window_in_autumn_takes_the_first_of_a_repeated_hour() {
    // 2027-10-31 02:00–03:00 happens twice in Berlin (CEST, then CET).
    let now = ms("2027-10-29T00:00:00Z");
    let w = window("2027-10-30T02:15", 600, Some(Every::Day), now);
    let tz = berlin();
    assert_eq!(w.start_of(&tz, 0), Some(ms("2027-10-30T00:15:00Z")));
    assert_eq!(w.start_of(&tz, 1), Some(ms("2027-10-31T00:15:00Z")));
    assert_eq!(w.start_of(&tz, 2), Some(ms("2027-11-01T01:15:00Z")));
    // Far later: still 02:15 local (CET).
    let later = ms("2027-12-10T12:00:00Z");
    assert_eq!(
        w.occurrence(&tz, later).map(|o| o.start_ms),
        Some(ms("2027-12-11T01:15:00Z"))
    );
}

#[test]
fn due_enters_once_and_leaves_at_the_end() {
    let now = ms("2026-12-01T00:00:00Z");
    let tz = berlin();
    let mut w = window("2026-12-24T02:00", 60, None, now);
    let start = ms("2026-12-24T01:00:00Z");
    assert_eq!(w.due(&tz, now), Due::default());
    let d = w.due(&tz, start + 5);
    assert_eq!(d.enter.map(|o| o.start_ms), Some(start));
    w.entered_ms = Some(start);
    assert!(w.holds(start + 59_999) && !w.holds(start + 60_000));
    assert_eq!(w.due(&tz, start + 10), Due::default());
    assert_eq!(w.next_edge(&tz, start + 10), Some(start + 60_000));
    let d = w.due(&tz, start + 60_000);
    assert!(d.exit && d.finished && d.enter.is_none());
}

#[test]
fn a_window_that_ended_while_down_is_not_entered() {
    let now = ms("2026-12-01T00:00:00Z");
    let tz = berlin();
    let w = window("2026-12-24T02:00", 60, None, now);
    let d = w.due(&tz, ms("2026-12-25T00:00:00Z"));
    assert!(d.finished && d.enter.is_none() && !d.exit);
    // A recurring one moves on to its next occurrence instead.
    let w = window("2026-12-24T02:00", 60, Some(Every::Day), now);
    let late = ms("2026-12-26T12:00:00Z");
    let d = w.due(&tz, late);
    assert_eq!(d, Due::default());
    assert_eq!(w.next_edge(&tz, late), Some(ms("2026-12-27T01:00:00Z")));
    // Entered before kinfrad went down, over when it came back: left, not entered again.
    let mut w = w;
    w.entered_ms = Some(ms("2026-12-24T01:00:00Z"));
    let d = w.due(&tz, late);
    assert!(d.exit && d.enter.is_none() && !d.finished);
}

#[test]
fn warning_shows_within_the_lead_time() {
    let now = ms("2026-12-01T00:00:00Z");
    let tz = berlin();
    let w = window("2026-12-24T02:00", 60, None, now);
    let start = ms("2026-12-24T01:00:00Z");
    assert_eq!(w.warning_at(&tz, start - 3_600_001), None);
    assert_eq!(
        w.warning_at(&tz, start - 3_600_000).map(|o| o.start_ms),
        Some(start)
    );
    assert_eq!(w.warning_at(&tz, start), None);
    assert_eq!(rfc3339(start), "2026-12-24T01:00:00Z");
}

#[test]
fn bad_windows_are_refused_with_the_field_named() {
    let now = ms("2026-12-01T00:00:00Z");
    let tz = berlin();
    let mk = |at: &str, dur: u64, every: Option<Every>| {
        Window::new(
            1,
            Target::All,
            civil(at),
            ("Europe/Berlin", &tz),
            dur,
            every,
            0,
            None,
            None,
            now,
        )
    };
    let e = mk("2026-11-30T02:00", 60, None).expect_err("past");
    assert_eq!(e.field, "at");
    assert!(e.message.contains("in the past"), "{e}");
    assert_eq!(
        mk("2026-12-24T02:00", 0, None).expect_err("zero").field,
        "duration"
    );
    assert_eq!(
        mk("2026-12-24T02:00", MAX_DURATION_SECS + 1, None)
            .expect_err("long")
            .field,
        "duration"
    );
    assert_eq!(
        mk("2026-12-24T02:00", 86_400, Some(Every::Day))
            .expect_err("overlap")
            .field,
        "duration"
    );
    assert!(mk("2026-12-24T02:00", 86_399, Some(Every::Day)).is_ok());
    assert_eq!(parse_at("tomorrow", &tz).expect_err("at").field, "at");
    assert_eq!(
        parse_at("2026-12-24T01:00:00Z", &tz).expect("rfc"),
        civil("2026-12-24T02:00")
    );
    assert_eq!(
        parse_at("2026-12-24T02:00", &tz).expect("civil"),
        civil("2026-12-24T02:00")
    );
    assert_eq!(Every::parse("weekly").expect("w"), Every::Week);
    assert_eq!(Every::parse("month").expect_err("m").field, "every");
}

#[test]
fn windows_round_trip_through_json() {
    let now = ms("2026-12-01T00:00:00Z");
    let w = window("2026-12-24T02:00", 1800, Some(Every::Week), now);
    let text = serde_json::to_string(&w).expect("ser");
    assert_eq!(
        text,
        r#"{"id":1,"target":"ALL","at":"2026-12-24T02:00:00","tz":"Europe/Berlin","duration_secs":1800,"every":"week","warn_secs":3600,"message":"Upgrade"}"#
    );
    let back: Window = serde_json::from_str(&text).expect("de");
    assert_eq!(back, w);
    back.check_shape().expect("check");
}
