//! Default locations of the state directory and the control socket, shared by kinfrad and kinfractl.
//!
//! Under systemd, `StateDirectory=` and `RuntimeDirectory=` win. Otherwise root gets the FHS paths
//! and any other user gets directories it can write (XDG), so the embedded default runs unprivileged.

use std::path::PathBuf;

/// The config file kinfrad reads when `--config` is not given (if it exists).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/kinfra/kinfra.toml";
/// Name of the persisted operator intent inside the state directory.
pub const STATE_FILE: &str = "state.json";
/// Name of the generated admin token inside the state directory.
pub const TOKEN_FILE: &str = "admin-token";
/// Environment variable kinfractl reads for the control socket path.
pub const SOCKET_ENV: &str = "KINFRA_SOCKET";

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn first_env_dir(var: &str) -> Option<PathBuf> {
    let v = std::env::var_os(var)?;
    let s = v.to_string_lossy();
    let first = s.split(':').next().unwrap_or("");
    if first.is_empty() {
        None
    } else {
        Some(PathBuf::from(first))
    }
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// `$STATE_DIRECTORY`, else /var/lib/kinfra for root, else `$XDG_STATE_HOME/kinfra`.
pub fn default_state_dir() -> PathBuf {
    if let Some(d) = first_env_dir("STATE_DIRECTORY") {
        return d;
    }
    if is_root() {
        return PathBuf::from("/var/lib/kinfra");
    }
    if let Some(d) = first_env_dir("XDG_STATE_HOME") {
        return d.join("kinfra");
    }
    match home() {
        Some(h) => h.join(".local/state/kinfra"),
        None => std::env::temp_dir().join(format!("kinfra-{}", nix::unistd::geteuid())),
    }
}

/// `$RUNTIME_DIRECTORY/control.sock`, else /run/kinfra/control.sock for root, else
/// `$XDG_RUNTIME_DIR/kinfra/control.sock`, else the state directory.
pub fn default_control_socket() -> PathBuf {
    if let Some(d) = first_env_dir("RUNTIME_DIRECTORY") {
        return d.join("control.sock");
    }
    if is_root() {
        return PathBuf::from("/run/kinfra/control.sock");
    }
    if let Some(d) = first_env_dir("XDG_RUNTIME_DIR") {
        return d.join("kinfra/control.sock");
    }
    default_state_dir().join("control.sock")
}
