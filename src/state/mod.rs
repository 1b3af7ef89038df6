//! `state.json`: all operator intent, written atomically before a change is acknowledged.
//!
//! Format evolution: fields are only added (with serde defaults), never renamed; `version` is
//! bumped only for a change an older kinfrad could misread, and a newer file is never overwritten.
//! A corrupt, unreadable, too-new or out-of-range file — or one that is not a regular file, or too
//! large — is moved aside (never silently overwritten) and the problem is reported; if it cannot
//! even be moved aside, writes are refused.
//!
//! The directory must be kinfrad's own: a real directory (not a symlink), owned by its uid and
//! writable by nobody else. Writes go to a fresh temp file created with `O_EXCL|O_NOFOLLOW` under a
//! random name, so nothing planted in the directory is followed or overwritten.

pub mod token;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::maintenance::Maintenance;
use crate::paths::STATE_FILE;

/// The newest format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Largest state file read (kinfrad writes a few KiB at most).
pub const MAX_STATE_BYTES: u64 = 1024 * 1024;

/// Everything the operator asked for that must survive restarts and crashes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedState {
    pub version: u32,
    /// Active maintenance, if any.
    #[serde(default)]
    pub maintenance: Option<Maintenance>,
    /// Services an operator stopped (`kinfractl stop`): they stay stopped across restarts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stopped_services: Vec<String>,
}

impl PersistedState {
    fn fresh() -> PersistedState {
        PersistedState {
            version: FORMAT_VERSION,
            maintenance: None,
            stopped_services: Vec::new(),
        }
    }

    /// Every value read from disk must be one kinfrad could have written.
    pub fn check(&self) -> Result<(), String> {
        if let Some(m) = &self.maintenance {
            m.check().map_err(|e| format!("maintenance.{e}"))?;
        }
        if let Some(bad) = self
            .stopped_services
            .iter()
            .find(|n| !crate::model::valid_name(n))
        {
            return Err(format!(
                "stopped_services: {bad:?} is not a service name (letters, digits, '-', '_' and '.', 64 at most)"
            ));
        }
        Ok(())
    }
}

/// The state file and whether it may be written.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
    /// Set when the existing file could not be read nor moved aside: writing would destroy it.
    blocked: Option<String>,
}

/// What opening the state file found.
#[derive(Debug)]
pub struct Loaded {
    pub file: StateFile,
    pub state: PersistedState,
    /// A problem to show in STATUS and `kinfractl status` (corrupt file kept aside, …).
    pub problem: Option<String>,
}

fn now_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    secs.to_string()
}

/// Prefix of the temp files a write goes through (`.state.json.tmp-<pid>-<random>`).
fn temp_prefix() -> String {
    format!(".{STATE_FILE}.tmp-")
}

/// Create the state directory (0700) if it is missing; refuse one kinfrad does not own alone.
pub fn prepare_dir(dir: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot create state directory {}: {e}", dir.display()),
                    )
                })?;
        }
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot inspect state directory {}: {e}", dir.display()),
            ));
        }
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot inspect state directory {}: {e}", dir.display()),
        )
    })?;
    check_dir(dir, &meta, nix::unistd::geteuid().as_raw())
}

/// The state directory's own checks, apart from the lookup (unit-tested with any uid).
fn check_dir(dir: &Path, meta: &fs::Metadata, euid: u32) -> io::Result<()> {
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("state directory {}: {why}", dir.display()),
        ))
    };
    let ft = meta.file_type();
    if ft.is_symlink() {
        return refuse(
            "is a symbolic link, which kinfrad does not follow; give the real directory".into(),
        );
    }
    if !ft.is_dir() {
        return refuse("is not a directory".into());
    }
    if meta.uid() != euid {
        return refuse(format!(
            "is owned by uid {}, not by kinfrad's uid {euid}; chown it or use another directory",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return refuse(format!(
            "is writable by group or others (mode {mode:04o}); chmod go-w it"
        ));
    }
    Ok(())
}

/// Why a present state file cannot be used.
fn kind_of(ft: &fs::FileType) -> &'static str {
    if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() || ft.is_block_device() {
        "device"
    } else {
        "special file"
    }
}

/// Read `path` if it is a regular file of at most `MAX_STATE_BYTES`: never follows a symlink,
/// never blocks on a FIFO. `Ok(None)`: no file. `Err`: the sentence saying what is wrong.
fn read_capped(path: &Path) -> Result<Option<Vec<u8>>, String> {
    let f = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(format!(
                "{} is a symbolic link, which kinfrad does not follow",
                path.display()
            ));
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let meta = f
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.file_type().is_file() {
        return Err(format!(
            "{} is a {}, not a regular file",
            path.display(),
            kind_of(&meta.file_type())
        ));
    }
    let too_big = || {
        format!(
            "{} is larger than {MAX_STATE_BYTES} bytes, more than kinfrad ever writes",
            path.display()
        )
    };
    if meta.len() > MAX_STATE_BYTES {
        return Err(too_big());
    }
    let mut buf = Vec::new();
    f.take(MAX_STATE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if buf.len() as u64 > MAX_STATE_BYTES {
        return Err(too_big());
    }
    Ok(Some(buf))
}

/// Remove temp files that writers which are gone left behind (a kill -9 between create and
/// rename). A live process's temp file — another kinfrad on the same directory — stays.
fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let prefix = temp_prefix();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<i32>().ok());
        let gone = match pid {
            Some(p) if p > 0 && p as u32 != std::process::id() => matches!(
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None),
                Err(nix::errno::Errno::ESRCH)
            ),
            _ => false,
        };
        if gone {
            // unlink never follows a symlink; what it removes is the entry itself.
            let _ = fs::remove_file(e.path());
        }
    }
}

impl StateFile {
    /// Create or check the directory (see `prepare_dir`) and load `state.json`.
    pub fn open(dir: &Path) -> io::Result<Loaded> {
        prepare_dir(dir)?;
        remove_stale_temps(dir);
        let path = dir.join(STATE_FILE);
        let mut file = StateFile {
            path,
            blocked: None,
        };
        let why = match read_capped(&file.path) {
            Ok(None) => {
                return Ok(Loaded {
                    file,
                    state: PersistedState::fresh(),
                    problem: None,
                });
            }
            Ok(Some(text)) => match decode(&text) {
                Ok(state) => {
                    return Ok(Loaded {
                        file,
                        state,
                        problem: None,
                    });
                }
                Err(why) => format!("{}: {why}", file.path.display()),
            },
            Err(why) => why,
        };
        let problem = file.set_aside(&why);
        Ok(Loaded {
            file,
            state: PersistedState::fresh(),
            problem: Some(problem),
        })
    }

    /// Move an unusable file aside (under a name no earlier one has); returns the sentence to
    /// report.
    fn set_aside(&mut self, why: &str) -> String {
        let stamp = now_stamp();
        let aside = (0..100)
            .map(|n| {
                let name = if n == 0 {
                    format!("{STATE_FILE}.corrupt-{stamp}")
                } else {
                    format!("{STATE_FILE}.corrupt-{stamp}.{n}")
                };
                self.path.with_file_name(name)
            })
            .find(|p| fs::symlink_metadata(p).is_err())
            .unwrap_or_else(|| {
                self.path
                    .with_file_name(format!("{STATE_FILE}.corrupt-{stamp}.last"))
            });
        match fs::rename(&self.path, &aside) {
            Ok(()) => {
                let _ = sync_dir(&self.path);
                format!(
                    "{why}; kept as {} and started with empty state",
                    aside.display()
                )
            }
            Err(e) => {
                let msg = format!(
                    "{why}; could not move it aside ({e}), so state changes are refused until it is fixed"
                );
                self.blocked = Some(msg.clone());
                msg
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write atomically: a new temp file (`O_CREAT|O_EXCL|O_NOFOLLOW`, random name, 0600), fsync,
    /// rename over `state.json`, fsync the directory.
    pub fn write(&self, state: &PersistedState) -> io::Result<()> {
        if let Some(why) = &self.blocked {
            return Err(io::Error::other(why.clone()));
        }
        let mut body = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
        body.push(b'\n');
        let mut created: Option<PathBuf> = None;
        let result = (|| {
            let (tmp, mut f) = self.create_temp()?;
            created = Some(tmp.clone());
            f.write_all(&body)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &self.path)?;
            created = None;
            sync_dir(&self.path)
        })();
        if let Some(tmp) = created {
            let _ = fs::remove_file(tmp);
        }
        result.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot write {}: {e}", self.path.display()),
            )
        })
    }

    /// A temp file of our own next to `state.json`: never an existing entry, never through a link.
    fn create_temp(&self) -> io::Result<(PathBuf, File)> {
        use ring::rand::SecureRandom;
        let rng = ring::rand::SystemRandom::new();
        let mut last = None;
        for _ in 0..8 {
            let mut r = [0u8; 8];
            rng.fill(&mut r)
                .map_err(|_| io::Error::other("no random bytes for the temp file name"))?;
            let tmp = self.path.with_file_name(format!(
                "{}{}-{}",
                temp_prefix(),
                std::process::id(),
                crate::state::token::hex(&r)
            ));
            match create_excl(&tmp) {
                Ok(f) => return Ok((tmp, f)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free temp file name")))
    }
}

/// Create `path` (0600) only if no entry of that name exists, whatever it is or points to.
fn create_excl(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

fn sync_dir(file: &Path) -> io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

/// Parse a state file's bytes, refusing versions this build does not know and values it could
/// not have written.
pub fn decode(bytes: &[u8]) -> Result<PersistedState, String> {
    #[derive(Deserialize)]
    struct Probe {
        version: Option<serde_json::Value>,
    }
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid state JSON: {e}"))?;
    match probe.version.as_ref().and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(FORMAT_VERSION) => {}
        Some(v) if v > u64::from(FORMAT_VERSION) => {
            return Err(format!(
                "format version {v} is newer than this kinfrad understands ({FORMAT_VERSION})"
            ));
        }
        Some(v) => return Err(format!("unknown format version {v}")),
        None => return Err("no \"version\" field".to_string()),
    }
    let state: PersistedState =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid state JSON: {e}"))?;
    state.check().map_err(|e| format!("invalid value: {e}"))?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::maintenance::{Change, Maintenance};
    use std::os::unix::fs::PermissionsExt;

    fn sample() -> PersistedState {
        PersistedState {
            version: FORMAT_VERSION,
            maintenance: Some(Maintenance::begin(
                Change {
                    message: Some("upgrading".into()),
                    eta_ms: Some(Some(2_000_000_000_000)),
                    ..Change::default()
                },
                1_900_000_000_000,
            )),
            stopped_services: vec!["api".into()],
        }
    }

    #[test]
    fn missing_file_is_fresh() {
        let d = tempfile::tempdir().expect("tmp");
        let l = StateFile::open(&d.path().join("sub")).expect("open");
        assert!(l.problem.is_none());
        assert!(l.state.maintenance.is_none());
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
            assert!(l.state.maintenance.is_none());
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
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
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
        assert!(l.state.maintenance.is_none());
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
}
