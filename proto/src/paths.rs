//! Default locations of the state directory and the control socket, shared by kinfrad and kinfractl.
//!
//! Under systemd, `StateDirectory=` and `RuntimeDirectory=` win. Otherwise root gets the FHS paths
//! and any other user gets directories it can write (XDG), so the embedded default runs unprivileged.
//! The home directory comes from `$HOME`, else from the user's passwd entry; without either there
//! is no default (never a guessable directory in a shared /tmp that another user could create first).

use std::ffi::OsString;
use std::path::PathBuf;

/// The config file kinfrad reads when `--config` is not given (if it exists).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/kinfra/kinfra.toml";
/// Name of the persisted operator intent inside the state directory.
pub const STATE_FILE: &str = "state.json";
/// Name of the generated admin token inside the state directory.
pub const TOKEN_FILE: &str = "admin-token";
/// Environment variable kinfractl reads for the control socket path.
pub const SOCKET_ENV: &str = "KINFRA_SOCKET";

/// What the defaults are derived from: the process's environment and identity, or a test's.
struct Sources<'a> {
    var: &'a dyn Fn(&str) -> Option<OsString>,
    root: bool,
    uid: u32,
    /// The home directory in the passwd entry of `uid`.
    passwd_home: &'a dyn Fn() -> Option<PathBuf>,
}

fn with_process<T>(f: impl FnOnce(&Sources) -> T) -> T {
    let uid = nix::unistd::geteuid();
    let passwd_home = || {
        nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.dir)
    };
    f(&Sources {
        var: &|v| std::env::var_os(v),
        root: uid.is_root(),
        uid: uid.as_raw(),
        passwd_home: &passwd_home,
    })
}

impl Sources<'_> {
    fn first_env_dir(&self, var: &str) -> Option<PathBuf> {
        let v = (self.var)(var)?;
        let s = v.to_string_lossy();
        let first = s.split(':').next().unwrap_or("");
        if first.is_empty() {
            None
        } else {
            Some(PathBuf::from(first))
        }
    }

    fn home(&self) -> Option<PathBuf> {
        (self.var)("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(|| (self.passwd_home)().filter(|h| h.is_absolute()))
    }

    fn state_dir(&self) -> Result<PathBuf, String> {
        if let Some(d) = self.first_env_dir("STATE_DIRECTORY") {
            return Ok(d);
        }
        if self.root {
            return Ok(PathBuf::from("/var/lib/kinfra"));
        }
        if let Some(d) = self.first_env_dir("XDG_STATE_HOME") {
            return Ok(d.join("kinfra"));
        }
        match self.home() {
            Some(h) => Ok(h.join(".local/state/kinfra")),
            None => Err(format!(
                "no default state directory: HOME is not set and uid {} has no home directory in its passwd entry; set HOME, XDG_STATE_HOME or STATE_DIRECTORY, or give one (--state-dir, state_dir)",
                self.uid
            )),
        }
    }

    fn control_socket(&self) -> Result<PathBuf, String> {
        if let Some(d) = self.first_env_dir("RUNTIME_DIRECTORY") {
            return Ok(d.join("control.sock"));
        }
        if self.root {
            return Ok(PathBuf::from("/run/kinfra/control.sock"));
        }
        if let Some(d) = self.first_env_dir("XDG_RUNTIME_DIR") {
            return Ok(d.join("kinfra/control.sock"));
        }
        self.state_dir().map(|d| d.join("control.sock")).map_err(|e| {
            format!("{e} (the control socket defaults to the state directory without XDG_RUNTIME_DIR)")
        })
    }
}

/// `$STATE_DIRECTORY`, else /var/lib/kinfra for root, else `$XDG_STATE_HOME/kinfra`, else
/// `~/.local/state/kinfra` (home from `$HOME` or the passwd entry); an error when none applies.
pub fn default_state_dir() -> Result<PathBuf, String> {
    with_process(|s| s.state_dir())
}

/// `$RUNTIME_DIRECTORY/control.sock`, else /run/kinfra/control.sock for root, else
/// `$XDG_RUNTIME_DIR/kinfra/control.sock`, else the default state directory's `control.sock`.
pub fn default_control_socket() -> Result<PathBuf, String> {
    with_process(|s| s.control_socket())
}

/// The socket kinfractl talks to without `--socket`: the system daemon's when it exists (an
/// operator in group `kinfra` is not root but should reach it), else the same default kinfrad
/// itself would use for this user.
pub fn default_client_socket() -> Result<PathBuf, String> {
    let system = std::path::Path::new("/run/kinfra/control.sock");
    if !nix::unistd::geteuid().is_root() && system.exists() {
        return Ok(system.to_path_buf());
    }
    default_control_socket()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run `f` on sources made of `vars`, `root` and a passwd home.
    fn with(
        vars: &[(&str, &str)],
        root: bool,
        home: Option<&str>,
        f: impl Fn(&Sources) -> Result<PathBuf, String>,
    ) -> Result<PathBuf, String> {
        let var = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        };
        let passwd_home = || home.map(PathBuf::from);
        f(&Sources {
            var: &var,
            root,
            uid: 1234,
            passwd_home: &passwd_home,
        })
    }

    fn state(vars: &[(&str, &str)], root: bool, home: Option<&str>) -> Result<PathBuf, String> {
        with(vars, root, home, |s| s.state_dir())
    }

    fn socket(vars: &[(&str, &str)], root: bool, home: Option<&str>) -> Result<PathBuf, String> {
        with(vars, root, home, |s| s.control_socket())
    }

    fn ok(p: &str) -> Result<PathBuf, String> {
        Ok(PathBuf::from(p))
    }

    #[test]
    fn state_dir_defaults() {
        let pw = Some("/home/pw");
        assert_eq!(
            state(&[("STATE_DIRECTORY", "/sd:/b")], false, pw),
            ok("/sd")
        );
        assert_eq!(state(&[("HOME", "/h")], true, pw), ok("/var/lib/kinfra"));
        assert_eq!(
            state(&[("HOME", "/h"), ("XDG_STATE_HOME", "/x")], false, pw),
            ok("/x/kinfra")
        );
        assert_eq!(
            state(&[("HOME", "/h")], false, pw),
            ok("/h/.local/state/kinfra")
        );
        // No HOME: the passwd entry's home, never a shared temp directory.
        assert_eq!(
            state(&[("HOME", "")], false, pw),
            ok("/home/pw/.local/state/kinfra")
        );
        assert_eq!(state(&[], false, pw), ok("/home/pw/.local/state/kinfra"));
        let e = state(&[], false, None).expect_err("no home at all");
        assert!(e.contains("HOME") && e.contains("uid 1234"), "{e}");
        assert!(state(&[], false, Some("relative")).is_err());
    }

    #[test]
    fn control_socket_follows_the_same_rules() {
        let pw = Some("/home/pw");
        assert_eq!(
            socket(&[("RUNTIME_DIRECTORY", "/run/k")], false, pw),
            ok("/run/k/control.sock")
        );
        assert_eq!(socket(&[], true, None), ok("/run/kinfra/control.sock"));
        assert_eq!(
            socket(&[("XDG_RUNTIME_DIR", "/run/user/1234")], false, None),
            ok("/run/user/1234/kinfra/control.sock")
        );
        assert_eq!(
            socket(&[], false, pw),
            ok("/home/pw/.local/state/kinfra/control.sock")
        );
        let e = socket(&[], false, None).expect_err("no default");
        assert!(e.contains("control socket") && e.contains("HOME"), "{e}");
    }
}
