//! `state.json`: all operator intent, written atomically before a change is acknowledged.
//!
//! Format evolution: fields are only added (with serde defaults), never renamed; `version` is
//! bumped only for a change an older kinfrad could misread, and a newer file is never overwritten.
//! A corrupt, unreadable or too-new file is moved aside (never silently overwritten) and the
//! problem is reported; if it cannot even be moved aside, writes are refused.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::maintenance::Maintenance;
use crate::paths::STATE_FILE;

/// The newest format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

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

impl StateFile {
    /// Create the directory if needed (mode 0700) and load `state.json`.
    pub fn open(dir: &Path) -> io::Result<Loaded> {
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
        let path = dir.join(STATE_FILE);
        let mut file = StateFile {
            path,
            blocked: None,
        };
        let text = match fs::read(&file.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Loaded {
                    file,
                    state: PersistedState {
                        version: FORMAT_VERSION,
                        maintenance: None,
                        stopped_services: Vec::new(),
                    },
                    problem: None,
                });
            }
            Err(e) => {
                let why = format!("cannot read {}: {e}", file.path.display());
                let problem = file.set_aside(&why);
                return Ok(Loaded {
                    file,
                    state: PersistedState {
                        version: FORMAT_VERSION,
                        maintenance: None,
                        stopped_services: Vec::new(),
                    },
                    problem: Some(problem),
                });
            }
        };
        match decode(&text) {
            Ok(state) => Ok(Loaded {
                file,
                state,
                problem: None,
            }),
            Err(why) => {
                let why = format!("{}: {why}", file.path.display());
                let problem = file.set_aside(&why);
                Ok(Loaded {
                    file,
                    state: PersistedState {
                        version: FORMAT_VERSION,
                        maintenance: None,
                        stopped_services: Vec::new(),
                    },
                    problem: Some(problem),
                })
            }
        }
    }

    /// Move an unusable file aside; returns the sentence to report.
    fn set_aside(&mut self, why: &str) -> String {
        let aside = self
            .path
            .with_file_name(format!("{STATE_FILE}.corrupt-{}", now_stamp()));
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

    /// Write atomically: temp file, fsync, rename, fsync the directory.
    pub fn write(&self, state: &PersistedState) -> io::Result<()> {
        if let Some(why) = &self.blocked {
            return Err(io::Error::other(why.clone()));
        }
        let mut body = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
        body.push(b'\n');
        let tmp = self
            .path
            .with_file_name(format!(".{STATE_FILE}.tmp-{}", std::process::id()));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &self.path)?;
            sync_dir(&self.path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot write {}: {e}", self.path.display()),
            )
        })
    }
}

fn sync_dir(file: &Path) -> io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

/// Parse a state file's bytes, refusing versions this build does not know.
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
    serde_json::from_slice(bytes).map_err(|e| format!("not valid state JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maintenance::{Change, Maintenance};

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

    #[test]
    fn decode_rejects_bad_shapes() {
        assert!(decode(b"[]").is_err());
        assert!(decode(br#"{"maintenance":null}"#).is_err());
        assert!(decode(br#"{"version":1,"maintenance":{"message":5}}"#).is_err());
        assert!(decode(br#"{"version":1,"maintenance":null,"future_field":true}"#).is_ok());
    }
}
