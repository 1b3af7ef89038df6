//! The state file itself: opening it (setting an unusable one aside), removing temp files of
//! dead writers, and the atomic write through a fresh temp file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::checks::{prepare_dir, read_capped};
use super::format::{PersistedState, decode};
use crate::paths::STATE_FILE;

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
pub(super) fn temp_prefix() -> String {
    format!(".{STATE_FILE}.tmp-")
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

    /// A cheap check that a write could succeed: not blocked, and the directory writable for
    /// kinfrad (`access(2)`, which also sees a read-only file system). No file is written.
    pub fn check_writable(&self) -> Result<(), String> {
        if let Some(why) = &self.blocked {
            return Err(why.clone());
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK)
            .map_err(|e| format!("{} is not writable: {e}", dir.display()))
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
pub(super) fn create_excl(path: &Path) -> io::Result<File> {
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
