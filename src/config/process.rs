//! A supervised service's process keys (`command`, `shell`, `env`, ports, restart, stop,
//! `ready`): [`ProcessConfig`] and how a `[[service]]` with `command` is validated into it.

use std::time::Duration;

use super::raw::RawService;
use super::service::KeyError;
use super::values::{dur, int};

/// How kinfrad runs a supervised service's process.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessConfig {
    /// argv (`["sh", "-c", line]` when `shell = true`); `{port}` is replaced.
    pub argv: Vec<String>,
    pub cwd: Option<std::path::PathBuf>,
    pub env: Vec<(String, String)>,
    pub preferred_port: u16,
    pub port_range: (u16, u16),
    pub restart: RestartPolicy,
    pub stop_signal: nix::sys::signal::Signal,
    pub stop_timeout: Duration,
    pub log_lines: usize,
    pub ready: Ready,
}

/// When a started process counts as ready for traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// Its port accepts connections (the default without `health_check.path`).
    Port,
    /// Its HTTP health check passes (the default with `health_check.path`).
    Health,
    /// It sent `READY=1` on its NOTIFY_SOCKET (and its health check passes).
    Notify,
}

/// When a stopped-by-itself child is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn parse(s: &str) -> Result<RestartPolicy, String> {
        match s {
            "always" => Ok(RestartPolicy::Always),
            "on-failure" => Ok(RestartPolicy::OnFailure),
            "never" => Ok(RestartPolicy::Never),
            o => Err(format!("{o:?} must be one of always, on-failure, never")),
        }
    }
}

/// The process part of a `[[service]]` with `command`.
pub(super) fn process_config(
    raw: &RawService,
    command: &toml::Value,
    here: &dyn Fn(&str) -> String,
) -> Result<ProcessConfig, KeyError> {
    let shell = raw.shell.unwrap_or(false);
    let argv: Vec<String> = match command {
        toml::Value::String(line) if shell => {
            if line.trim().is_empty() {
                return Err((here("command"), "is empty".to_string()));
            }
            vec!["/bin/sh".to_string(), "-c".to_string(), line.clone()]
        }
        toml::Value::String(_) => {
            return Err((
                here("command"),
                "must be a list of arguments, e.g. [\"python3\", \"-m\", \"http.server\", \"{port}\"] (or set shell = true to run a command line)".to_string(),
            ));
        }
        toml::Value::Array(items) if !shell => {
            let mut argv = Vec::new();
            for v in items {
                match v {
                    toml::Value::String(a) if !a.contains('\0') => argv.push(a.clone()),
                    other => {
                        return Err((here("command"), format!("{other} is not a string argument")));
                    }
                }
            }
            if argv.first().is_none_or(|p| p.trim().is_empty()) {
                return Err((
                    here("command"),
                    "needs at least the program to run".to_string(),
                ));
            }
            argv
        }
        toml::Value::Array(_) => {
            return Err((
                here("shell"),
                "shell = true takes command as one string".to_string(),
            ));
        }
        other => {
            return Err((
                here("command"),
                format!("{other} is not a list of arguments"),
            ));
        }
    };
    let preferred_port = match raw.preferred_port {
        None => 8000,
        Some(p) if (1..=65535).contains(&p) => p as u16,
        Some(p) => {
            return Err((
                here("preferred_port"),
                format!("{p} is not a port (1-65535)"),
            ));
        }
    };
    let port_range = match &raw.port_range {
        None => (preferred_port, preferred_port.saturating_add(100)),
        Some(r) => {
            let bad = || {
                (
                    here("port_range"),
                    format!("{r:?} must be a range like \"8000-8999\""),
                )
            };
            let (a, b) = r.split_once('-').ok_or_else(bad)?;
            let a: u16 = a.trim().parse().map_err(|_| bad())?;
            let b: u16 = b.trim().parse().map_err(|_| bad())?;
            if a == 0 || a > b {
                return Err(bad());
            }
            if !(a..=b).contains(&preferred_port) {
                return Err((
                    here("port_range"),
                    format!("{r:?} does not contain preferred_port {preferred_port}"),
                ));
            }
            (a, b)
        }
    };
    let mut env = Vec::new();
    for (k, v) in raw.env.clone().unwrap_or_default() {
        let ok = !k.is_empty() && !k.contains('=') && !k.contains('\0');
        let v = match v {
            toml::Value::String(s) if ok && !s.contains('\0') => s,
            toml::Value::Integer(n) if ok => n.to_string(),
            toml::Value::Boolean(b) if ok => b.to_string(),
            _ => {
                return Err((
                    here(&format!("env.{k}")),
                    "must be a name without '=' and a string value".to_string(),
                ));
            }
        };
        if ["PORT", "NOTIFY_SOCKET", "KINFRA_INSTANCE", "KINFRA_SERVICE"].contains(&k.as_str()) {
            return Err((here(&format!("env.{k}")), "is set by kinfrad".to_string()));
        }
        env.push((k, v));
    }
    let restart = match &raw.restart {
        None => RestartPolicy::OnFailure,
        Some(r) => RestartPolicy::parse(r).map_err(|m| (here("restart"), m))?,
    };
    let stop_signal = match &raw.stop_signal {
        None => nix::sys::signal::Signal::SIGTERM,
        Some(sig) => {
            let name = sig.trim().to_ascii_uppercase();
            let name = if name.starts_with("SIG") {
                name
            } else {
                format!("SIG{name}")
            };
            name.parse::<nix::sys::signal::Signal>().map_err(|_| {
                (
                    here("stop_signal"),
                    format!("{sig:?} is not a signal name like \"SIGTERM\""),
                )
            })?
        }
    };
    let stop_timeout = dur(
        &here("stop_timeout"),
        raw.stop_timeout.as_deref(),
        Duration::from_secs(10),
        Duration::from_millis(100),
        Duration::from_secs(600),
    )?;
    let log_lines = int(&here("log_lines"), raw.log_lines, 1000, 10, 1_000_000)? as usize;
    let has_path = raw.health_check.as_ref().is_some_and(|h| h.path.is_some());
    let ready = match raw.ready.as_deref() {
        None if has_path => Ready::Health,
        None | Some("port") => Ready::Port,
        Some("health") if has_path => Ready::Health,
        Some("health") => {
            return Err((
                here("ready"),
                "\"health\" needs health_check.path (the URL path to probe)".to_string(),
            ));
        }
        Some("notify") => Ready::Notify,
        Some(o) => {
            return Err((
                here("ready"),
                format!("{o:?} must be one of port, health, notify"),
            ));
        }
    };
    let cwd = match &raw.cwd {
        None => None,
        Some(d) => {
            let p = std::path::PathBuf::from(d);
            if !p.is_absolute() {
                return Err((here("cwd"), format!("{d:?} must be an absolute path")));
            }
            Some(p)
        }
    };
    Ok(ProcessConfig {
        argv,
        cwd,
        env,
        preferred_port,
        port_range,
        restart,
        stop_signal,
        stop_timeout,
        log_lines,
        ready,
    })
}
