//! Unit tests of the state file: reading back, setting aside, refusing links, FIFOs, oversized
//! files and directories kinfrad does not own alone, and decoding.

use super::checks::check_dir;
use super::file::{create_excl, temp_prefix};
use super::*;
use crate::model::maintenance::{Change, Maintenance, Prepared, Target};
use crate::model::schedule::{Every, Window};
use crate::paths::STATE_FILE;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

fn sample() -> PersistedState {
    let mut api = Prepared::new(Target::Service("api".into()));
    api.message = Some("next time".into());
    api.countdown_secs = Some(600);
    PersistedState {
        version: FORMAT_VERSION,
        maintenance: MaintState {
            records: vec![
                Maintenance::begin(
                    Change {
                        message: Some("upgrading".into()),
                        eta_ms: Some(Some(2_000_000_000_000)),
                        ..Change::default()
                    },
                    1_900_000_000_000,
                ),
                Maintenance::begin_for(
                    Target::parse("api.example.com/v1").expect("route"),
                    Change::default(),
                    1_900_000_000_000,
                ),
            ],
            prepared: vec![api],
            route_hits: [("api.example.com/v1".to_string(), 7), ("/".to_string(), 2)]
                .into_iter()
                .collect(),
            unrouted_hits: 3,
        },
        stopped_services: vec!["api".into()],
        drain: None,
        schedules: vec![Window {
            id: 3,
            target: Target::Service("api".into()),
            at: "2027-01-10T02:00:00".into(),
            tz: "Europe/Berlin".into(),
            duration_secs: 1800,
            every: Some(Every::Week),
            warn_secs: 3600,
            message: Some("weekly upgrade".into()),
            issue: None,
            entered_ms: Some(1_900_000_000_000),
        }],
        fleet: Some(crate::state::FleetApplied {
            revision: 12,
            intent: crate::model::fleet::Intent {
                maintenance: vec![Maintenance::begin(Change::default(), 1_900_000_000_000)],
                stopped: vec!["batch".into()],
                changed_by: "web-1".into(),
                changed_at_ms: 1_900_000_000_000,
                change_id: "0a1b".into(),
                ..crate::model::fleet::Intent::empty()
            },
        }),
    }
}

#[test]
fn a_fleet_section_is_checked_like_the_rest() {
    let mut s = sample();
    if let Some(f) = s.fleet.as_mut() {
        f.intent.stopped.push("no such/name".into());
    }
    let bytes = serde_json::to_vec(&s).expect("json");
    let e = crate::state::decode(&bytes).expect_err("bad fleet name");
    assert!(e.contains("fleet.intent.stopped"), "{e}");
    let mut s = sample();
    if let Some(f) = s.fleet.as_mut() {
        f.revision = -1;
    }
    let bytes = serde_json::to_vec(&s).expect("json");
    assert!(crate::state::decode(&bytes).is_err());
}

#[test]
fn missing_file_is_fresh() {
    let d = tempfile::tempdir().expect("tmp");
    let l = StateFile::open(&d.path().join("sub")).expect("open");
    assert!(l.problem.is_none());
    assert!(l.state.maintenance.records.is_empty());
}

#[test]
fn write_then_read_back() {
    let d = tempfile::tempdir().expect("tmp");
    let l = StateFile::open(d.path()).expect("open");
    l.file.write(&sample()).expect("write");
    let again = StateFile::open(d.path()).expect("reopen");
    assert_eq!(again.state, sample());
    assert!(again.problem.is_none());
    let leftovers: Vec<_> = fs::read_dir(d.path())
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn corrupt_file_is_kept_aside() {
    let d = tempfile::tempdir().expect("tmp");
    fs::write(d.path().join(STATE_FILE), b"{ not json").expect("seed");
    let l = StateFile::open(d.path()).expect("open");
    let p = l.problem.expect("problem reported");
    assert!(
        p.contains("not valid state JSON") && p.contains("kept as"),
        "{p}"
    );
    let kept: Vec<_> = fs::read_dir(d.path())
        .expect("ls")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.json.corrupt-")
        })
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(fs::read(kept[0].path()).expect("read"), b"{ not json");
    // The daemon may write fresh state afterwards; the corrupt copy stays.
    l.file.write(&sample()).expect("write");
    assert_eq!(fs::read(kept[0].path()).expect("read"), b"{ not json");
}

#[test]
fn newer_version_is_not_overwritten() {
    let d = tempfile::tempdir().expect("tmp");
    let newer = br#"{"version": 99, "maintenance": null}"#;
    fs::write(d.path().join(STATE_FILE), newer).expect("seed");
    let l = StateFile::open(d.path()).expect("open");
    assert!(l.problem.expect("problem").contains("newer"));
    assert!(
        !d.path().join(STATE_FILE).exists()
            || fs::read(d.path().join(STATE_FILE)).expect("r") != newer
    );
}

fn kept_aside(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("ls")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.json.corrupt-")
        })
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// `{"version":1,"maintenance":{…}}` with `fields` in the record.
fn with_record(fields: &str) -> Vec<u8> {
    format!(
        r#"{{"version":1,"maintenance":{{"message":"m","start_time_ms":1750000000000,"target":"ALL"{fields}}}}}"#
    )
    .into_bytes()
}

#[test]
fn out_of_range_values_are_kept_aside_like_corrupt_files() {
    assert!(decode(&with_record("")).is_ok());
    let cases: &[(&[u8], &str)] = &[
        (
            br#"{"version":1,"maintenance":{"message":"m","start_time_ms":253402300800000,"target":"ALL"}}"#,
            "maintenance.start_time_ms",
        ),
        (
            &with_record(r#","estimated_completion_ms":18446744073709551615"#),
            "maintenance.estimated_completion_ms",
        ),
        (
            &with_record(r#","current_issue":"a\u001b[2Jb""#),
            "maintenance.current_issue",
        ),
        (
            &with_record(r#","page_url":"javascript:alert(1)""#),
            "maintenance.page_url",
        ),
        (
            br#"{"version":1,"maintenance":null,"stopped_services":["ok","../etc"]}"#,
            "stopped_services",
        ),
    ];
    for (bytes, field) in cases {
        let e = decode(bytes).expect_err(field);
        assert!(e.contains("invalid value") && e.contains(field), "{e}");
        let d = tempfile::tempdir().expect("tmp");
        fs::write(d.path().join(STATE_FILE), bytes).expect("seed");
        let l = StateFile::open(d.path()).expect("open");
        let p = l.problem.expect("problem reported");
        assert!(p.contains(field) && p.contains("kept as"), "{p}");
        assert!(l.state.maintenance.records.is_empty());
        let kept = kept_aside(d.path());
        assert_eq!(kept.len(), 1, "{field}");
        assert_eq!(fs::read(&kept[0]).expect("read"), *bytes);
        assert!(!d.path().join(STATE_FILE).exists());
    }
}

#[test]
fn a_fifo_is_not_waited_on() {
    let d = tempfile::tempdir().expect("tmp");
    let fifo = d.path().join(STATE_FILE);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let dir = d.path().to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    // Opening a FIFO for reading blocks until a writer comes: never in the test's thread.
    std::thread::spawn(move || {
        let _ = tx.send(StateFile::open(&dir).map(|l| l.problem));
    });
    let problem = rx
        .recv_timeout(std::time::Duration::from_secs(5))
        .expect("StateFile::open blocked on a FIFO")
        .expect("open")
        .expect("problem reported");
    assert!(
        problem.contains("FIFO") && problem.contains("kept as"),
        "{problem}"
    );
    let kept = kept_aside(d.path());
    assert_eq!(kept.len(), 1);
    assert!(
        fs::symlink_metadata(&kept[0])
            .expect("meta")
            .file_type()
            .is_fifo()
    );
}

#[test]
fn an_oversized_file_is_not_read_whole() {
    let d = tempfile::tempdir().expect("tmp");
    // Valid JSON, but larger than the cap.
    let mut big = br#"{"version":1}"#.to_vec();
    big.resize(MAX_STATE_BYTES as usize + 1, b' ');
    fs::write(d.path().join(STATE_FILE), &big).expect("seed");
    let l = StateFile::open(d.path()).expect("open");
    let p = l.problem.expect("problem");
    assert!(p.contains("larger than") && p.contains("kept as"), "{p}");
    assert_eq!(kept_aside(d.path()).len(), 1);
    // At the cap is fine.
    big.truncate(MAX_STATE_BYTES as usize);
    fs::write(d.path().join(STATE_FILE), &big).expect("seed");
    let l = StateFile::open(d.path()).expect("open");
    assert!(l.problem.is_none(), "{:?}", l.problem);
}

#[test]
fn a_symlinked_state_file_is_not_followed() {
    let d = tempfile::tempdir().expect("tmp");
    let elsewhere = d.path().join("elsewhere.json");
    let body = serde_json::to_vec(&sample()).expect("json");
    fs::write(&elsewhere, &body).expect("seed");
    std::os::unix::fs::symlink(&elsewhere, d.path().join(STATE_FILE)).expect("ln");
    let l = StateFile::open(d.path()).expect("open");
    let p = l.problem.expect("problem");
    assert!(p.contains("symbolic link") && p.contains("kept as"), "{p}");
    assert!(l.state.maintenance.records.is_empty());
    // The link was moved aside, its target left alone, also by the next write.
    l.file.write(&sample()).expect("write");
    assert_eq!(fs::read(&elsewhere).expect("target"), body);
    let kept = kept_aside(d.path());
    assert!(
        fs::symlink_metadata(&kept[0])
            .expect("meta")
            .file_type()
            .is_symlink()
    );
}

#[test]
fn aside_names_never_replace_an_earlier_one() {
    let d = tempfile::tempdir().expect("tmp");
    for body in [&b"{ one"[..], b"{ two", b"{ three"] {
        fs::write(d.path().join(STATE_FILE), body).expect("seed");
        assert!(StateFile::open(d.path()).expect("open").problem.is_some());
    }
    let mut kept: Vec<Vec<u8>> = kept_aside(d.path())
        .iter()
        .map(|p| fs::read(p).expect("read"))
        .collect();
    kept.sort();
    assert_eq!(
        kept,
        vec![b"{ one".to_vec(), b"{ three".to_vec(), b"{ two".to_vec()]
    );
}

#[test]
fn writes_never_go_through_a_planted_link() {
    let d = tempfile::tempdir().expect("tmp");
    let l = StateFile::open(d.path()).expect("open");
    let victim = d.path().join("victim");
    fs::write(&victim, b"precious").expect("victim");
    // The temp name older versions used (pid only), planted as a link to the victim.
    let old_name = d
        .path()
        .join(format!(".{STATE_FILE}.tmp-{}", std::process::id()));
    std::os::unix::fs::symlink(&victim, &old_name).expect("ln");
    l.file.write(&sample()).expect("write");
    assert_eq!(fs::read(&victim).expect("victim"), b"precious");
    let meta = fs::symlink_metadata(d.path().join(STATE_FILE)).expect("meta");
    assert!(meta.file_type().is_file());
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(StateFile::open(d.path()).expect("reopen").state, sample());
    // Whatever name is chosen, an existing entry is never opened: not a link, not a file.
    let dangling = d.path().join("dangling");
    std::os::unix::fs::symlink(d.path().join("nowhere"), &dangling).expect("ln");
    assert!(create_excl(&dangling).is_err());
    assert!(!d.path().join("nowhere").exists());
    assert!(create_excl(&old_name).is_err());
    assert!(create_excl(&victim).is_err());
    assert_eq!(fs::read(&victim).expect("victim"), b"precious");
}

#[test]
fn temp_files_of_dead_writers_are_removed() {
    let d = tempfile::tempdir().expect("tmp");
    let mut child = std::process::Command::new("true").spawn().expect("true");
    let dead = child.id();
    child.wait().expect("wait");
    let stale = d.path().join(format!("{}{dead}-00ff", temp_prefix()));
    let ours = d
        .path()
        .join(format!("{}{}-00ff", temp_prefix(), std::process::id()));
    let live = d.path().join(format!("{}1-00ff", temp_prefix()));
    for p in [&stale, &ours, &live] {
        fs::write(p, b"x").expect("seed");
    }
    StateFile::open(d.path()).expect("open");
    assert!(!stale.exists(), "a dead writer's temp file stays");
    assert!(ours.exists() && live.exists());
}

#[test]
fn the_directory_must_be_ours_alone() {
    let d = tempfile::tempdir().expect("tmp");
    let me = nix::unistd::geteuid().as_raw();
    let dir = d.path().join("state");
    prepare_dir(&dir).expect("created");
    let meta = fs::symlink_metadata(&dir).expect("meta");
    assert!(meta.is_dir());
    assert_eq!(meta.mode() & 0o777, 0o700);
    check_dir(&dir, &meta, me).expect("ours");
    let e = check_dir(&dir, &meta, me.wrapping_add(1)).expect_err("other owner");
    assert!(
        e.to_string().contains(&dir.display().to_string())
            && e.to_string().contains(&format!("owned by uid {me}")),
        "{e}"
    );
    for mode in [0o777, 0o720, 0o702, 0o1777] {
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).expect("chmod");
        let e = prepare_dir(&dir).expect_err("writable by others");
        assert!(e.to_string().contains("writable by group or others"), "{e}");
        assert!(StateFile::open(&dir).is_err());
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    prepare_dir(&dir).expect("0755 is fine");
    let link = d.path().join("link");
    std::os::unix::fs::symlink(&dir, &link).expect("ln");
    let e = prepare_dir(&link).expect_err("link");
    assert!(e.to_string().contains("symbolic link"), "{e}");
    let file = d.path().join("file");
    fs::write(&file, b"").expect("file");
    let e = prepare_dir(&file).expect_err("file");
    assert!(e.to_string().contains("not a directory"), "{e}");
}

#[test]
fn decode_rejects_bad_shapes() {
    assert!(decode(b"[]").is_err());
    assert!(decode(br#"{"maintenance":null}"#).is_err());
    assert!(decode(br#"{"version":1,"maintenance":{"message":5}}"#).is_err());
    assert!(decode(br#"{"version":1,"maintenance":null,"future_field":true}"#).is_ok());
}

#[test]
fn a_drain_is_kept_and_checked() {
    // A file written before drains existed reads as "no drain".
    let old = decode(br#"{"version":1,"maintenance":null}"#).expect("old file");
    assert!(old.drain.is_none());
    let d = tempfile::tempdir().expect("tmp");
    let l = StateFile::open(d.path()).expect("open");
    let mut state = sample();
    state.drain = Some(crate::model::drain::Drain {
        target: crate::model::drain::DrainTarget::parse("api").expect("target"),
        start_ms: 1_900_000_000_000,
        duration_ms: 60_000,
        rejected: vec![crate::model::drain::Rejected {
            service: "api".into(),
            route: "/".into(),
            count: 4,
        }],
    });
    l.file.write(&state).expect("write");
    let back = StateFile::open(d.path()).expect("reopen");
    assert!(back.problem.is_none());
    assert_eq!(back.state, state);
    for bad in [
        r#"{"target":"ALL","start_ms":1,"duration_ms":999999999999999}"#,
        r#"{"target":"a b","start_ms":1,"duration_ms":1}"#,
        r#"{"target":"ALL","start_ms":1,"duration_ms":1,"rejected":[{"service":"x y","route":"/","count":1}]}"#,
        r#"{"target":"ALL","start_ms":"soon","duration_ms":1}"#,
    ] {
        let text = format!(r#"{{"version":1,"drain":{bad}}}"#);
        assert!(decode(text.as_bytes()).is_err(), "{bad}");
    }
}

#[test]
fn format_1_files_load_as_records() {
    // A file as kinfrad wrote it before per-target records: one global record.
    let v1 = br#"{"version":1,"maintenance":{"message":"Upgrading","current_issue":"db","start_time_ms":1750000000000,"estimated_completion_ms":1750000600000,"page_url":"http://127.0.0.1:8081/m","target":"ALL","hits":5},"stopped_services":["web"]}"#;
    let d = tempfile::tempdir().expect("tmp");
    fs::write(d.path().join(STATE_FILE), v1).expect("seed");
    let l = StateFile::open(d.path()).expect("open");
    assert!(l.problem.is_none(), "{:?}", l.problem);
    let m = &l.state.maintenance;
    assert_eq!(m.records.len(), 1);
    let g = m.global().expect("global record");
    assert_eq!(g.message, "Upgrading");
    assert_eq!(g.current_issue, "db");
    assert_eq!(g.start_time_ms, 1_750_000_000_000);
    assert_eq!(g.estimated_completion_ms, Some(1_750_000_600_000));
    assert_eq!(g.page_url.as_deref(), Some("http://127.0.0.1:8081/m"));
    assert_eq!(g.hits, 5);
    assert_eq!(l.state.stopped_services, vec!["web".to_string()]);
    assert_eq!(l.state.version, FORMAT_VERSION);
    // A list of services became one record each; the hits stay with the first.
    let list = br#"{"version":1,"maintenance":{"message":"m","start_time_ms":1750000000000,"target":"api,web","hits":4}}"#;
    let st = decode(list).expect("decode");
    let targets: Vec<String> = st
        .maintenance
        .records
        .iter()
        .map(|r| r.target.to_string())
        .collect();
    assert_eq!(targets, ["api", "web"]);
    assert_eq!(
        st.maintenance
            .records
            .iter()
            .map(|r| r.hits)
            .collect::<Vec<_>>(),
        [4, 0]
    );
    // No maintenance at all.
    let off = decode(br#"{"version":1,"maintenance":null}"#).expect("off");
    assert_eq!(off.maintenance, MaintState::default());
    // Written again, it is format 2 and reads back the same.
    l.file.write(&l.state).expect("write");
    let text = fs::read_to_string(d.path().join(STATE_FILE)).expect("read");
    assert!(
        text.contains("\"version\": 2") || text.contains("\"version\":2"),
        "{text}"
    );
    assert_eq!(StateFile::open(d.path()).expect("reopen").state, l.state);
}

#[test]
fn format_2_values_are_checked() {
    let good = serde_json::to_vec(&sample()).expect("ser");
    assert_eq!(decode(&good).expect("good"), sample());
    for (bad, says) in [
        (
            r#"{"version":2,"maintenance":{"records":[],"route_hits":{"no path":1}}}"#,
            "route_hits",
        ),
        (
            r#"{"version":2,"maintenance":{"records":[{"message":"a","start_time_ms":1,"target":"ALL"},{"message":"b","start_time_ms":1,"target":"all"}]}}"#,
            "second record",
        ),
        (
            r#"{"version":2,"maintenance":{"records":[{"message":"a","start_time_ms":1,"target":"a b"}]}}"#,
            "not valid state JSON",
        ),
        (
            r#"{"version":2,"maintenance":{"prepared":[{"target":"api","countdown_secs":99999999}]}}"#,
            "prepared[0].countdown_secs",
        ),
    ] {
        let e = decode(bad.as_bytes()).expect_err(bad);
        assert!(e.contains(says), "{bad}: {e}");
    }
}

#[test]
fn scheduled_windows_are_optional_and_checked() {
    // Files written before windows existed load, with none.
    let old = decode(br#"{"version":2,"maintenance":{"records":[]}}"#).expect("old file");
    assert!(old.schedules.is_empty());
    let text = String::from_utf8(serde_json::to_vec(&sample()).expect("ser")).expect("utf8");
    assert!(text.contains(r#""schedules":[{"id":3,"#), "{text}");
    for (bad, says) in [
        (
            r#"{"version":2,"schedules":[{"id":1,"target":"ALL","at":"2027-01-10T02:00:00","tz":"UTC","duration_secs":0}]}"#,
            "schedules[0].duration",
        ),
        (
            r#"{"version":2,"schedules":[{"id":1,"target":"ALL","at":"soon","tz":"UTC","duration_secs":5}]}"#,
            "schedules[0].at",
        ),
        (
            r#"{"version":2,"schedules":[{"id":1,"target":"ALL","at":"2027-01-10T02:00:00","tz":"UTC","duration_secs":5},{"id":1,"target":"ALL","at":"2027-01-10T02:00:00","tz":"UTC","duration_secs":5}]}"#,
            "second window",
        ),
    ] {
        let e = decode(bad.as_bytes()).expect_err(bad);
        assert!(e.contains(says), "{bad}: {e}");
    }
}
