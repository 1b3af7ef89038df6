//! Crash consistency: kinfrad is killed with SIGKILL at random moments while kinfractl changes
//! maintenance in a loop. After every restart the state kinfrad loaded must be the last change
//! that was acknowledged, or the one in flight when it died (its answer never came, so it may or
//! may not have landed) — never an older one, never a corrupt file.
//!
//! The run is random but reproducible: the seed is printed, and `KINFRA_CRASH_SEED=<seed>`
//! replays it. `KINFRA_CRASH_KILLS` sets the number of kills (default 200).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// xorshift64*: enough randomness for timing and choices, no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The maintenance state as the operator sees it: `None` when off, else the message.
type Maint = Option<String>;

/// What one burst of changes saw before kinfrad died.
struct Burst {
    /// The state after each acknowledged change, in order.
    acked: Vec<Maint>,
    /// The change that got no acknowledgement (the state it asked for, kinfractl's exit code and
    /// stderr); it may have landed or not.
    unanswered: Option<(Maint, Option<i32>, String)>,
}

/// Change maintenance with kinfractl until a change goes unanswered (kinfrad was killed).
fn burst(socket: PathBuf, start: Maint, round: usize, seed: u64) -> Burst {
    let mut rng = Rng::new(seed);
    let mut now = start;
    let mut acked = Vec::new();
    for k in 0.. {
        let msg = format!("round {round} change {k}");
        let (args, next): (Vec<String>, Maint) = match (rng.below(10), &now) {
            (0..=1, Some(_)) => (vec!["maint".into(), "exit".into()], None),
            // Already in maintenance: `status --message` updates it.
            (2..=4, Some(_)) => (
                vec!["status".into(), "--message".into(), msg.clone()],
                Some(msg),
            ),
            _ => (
                vec![
                    "maint".into(),
                    "enter".into(),
                    "--message".into(),
                    msg.clone(),
                ],
                Some(msg),
            ),
        };
        let o = Command::new(kinfractl())
            .arg("--socket")
            .arg(&socket)
            .args(&args)
            .output()
            .expect("run kinfractl");
        if o.status.success() {
            acked.push(next.clone());
            now = next;
        } else {
            let err = String::from_utf8_lossy(&o.stderr).to_string();
            return Burst {
                acked,
                unanswered: Some((next, o.status.code(), err)),
            };
        }
    }
    unreachable!()
}

/// Names in `dir` starting with `prefix`.
fn named(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("ls state dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// The maintenance state kinfrad reports, after checking it reports no problem.
fn loaded(d: &Daemon, ctx: &str) -> Maint {
    let report = status_json(d);
    assert_eq!(
        report["problems"],
        serde_json::json!([]),
        "{ctx}: kinfrad reports a problem"
    );
    let corrupt = named(&d.state_dir, "state.json.corrupt-");
    assert!(
        corrupt.is_empty(),
        "{ctx}: corrupt state kept aside: {corrupt:?}"
    );
    let m = &report["maintenance"];
    if m["isActive"] == true {
        Some(m["message"].as_str().expect("message").to_string())
    } else {
        None
    }
}

#[test]
fn kill_9_during_changes_never_loses_an_acknowledged_one() {
    let seed = std::env::var("KINFRA_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    let kills: usize = std::env::var("KINFRA_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    eprintln!("crash test: seed {seed} (KINFRA_CRASH_SEED={seed} replays it), {kills} kills");
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let mut d = Daemon::start();
    let mut state: Maint = loaded(&d, "first start");
    assert_eq!(state, None);
    let (mut changes, mut in_flight_landed, mut in_flight_lost) = (0usize, 0usize, 0usize);
    for round in 0..kills {
        let ctx = format!("round {round} (seed {seed})");
        let socket = d.control.clone();
        let (start, burst_seed) = (state.clone(), rng.next());
        let worker = std::thread::spawn(move || burst(socket, start, round, burst_seed));
        // Kill at a random moment: often within the first change, sometimes after several.
        let delay = match rng.below(4) {
            0 => rng.below(5_000),
            1 | 2 => rng.below(40_000),
            _ => rng.below(150_000),
        };
        std::thread::sleep(Duration::from_micros(delay));
        let dir = d.crash();
        let b = worker.join().expect("kinfractl loop");
        let before = b.acked.last().cloned().unwrap_or(state.clone());
        changes += b.acked.len();
        let (maybe, code, err) = b
            .unanswered
            .unwrap_or_else(|| panic!("{ctx}: the loop ended without a failure"));
        // Only a dead daemon may leave a change unanswered; a refusal (exit 1) is a bug.
        assert!(
            code == Some(3) || code == Some(4),
            "{ctx}: kinfractl exited {code:?} while kinfrad was alive or dying: {err}"
        );

        d = Daemon::start_with(dir, &[], &[]);
        let now = loaded(&d, &ctx);
        if now == maybe && now != before {
            in_flight_landed += 1;
        } else if now == before {
            in_flight_lost += usize::from(maybe != before);
        } else {
            panic!(
                "{ctx}: loaded {now:?}, but the last acknowledged change left {before:?} and the \
                 unanswered one asked for {maybe:?}"
            );
        }
        // Temp files of the killed writer are cleaned up at start.
        let temps = named(&d.state_dir, ".state.json.tmp-");
        assert!(temps.is_empty(), "{ctx}: temp files left: {temps:?}");
        state = now;
    }
    eprintln!(
        "crash test: {kills} kills, {changes} acknowledged changes, unanswered ones landed \
         {in_flight_landed} times and were lost {in_flight_lost} times, {:?}",
        started.elapsed()
    );
    assert!(changes > 0, "no change was ever acknowledged before a kill");
}
