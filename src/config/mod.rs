//! Configuration: the TOML file is parsed into raw serde structs, then validated into [`Config`].
//!
//! Every error names the file (or the command-line flag), the key, and what is wrong. With no file
//! at all, kinfrad runs on an embedded default that works for an unprivileged user.

pub mod fleet;
mod process;
mod raw;
pub mod service;
mod validate;
mod values;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::paths;

use validate::validate;

/// Where the configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A TOML file.
    File(PathBuf),
    /// No file: built-in defaults (plus command-line overrides).
    Embedded,
}

impl std::fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigSource::File(p) => write!(f, "{}", p.display()),
            ConfigSource::Embedded => f.write_str("embedded default"),
        }
    }
}

/// The validated configuration. Cheap to clone; swapped whole on reload.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub source: ConfigSource,
    /// TCP addresses to bind when systemd did not pass an `http` socket.
    pub listen: Vec<SocketAddr>,
    /// Unix socket to bind when systemd did not pass a `control` socket.
    pub control_socket: PathBuf,
    /// Group (besides root and kinfrad's own uid) allowed on the control socket.
    pub control_group: String,
    /// Where `state.json` (and a generated admin token) live.
    pub state_dir: PathBuf,
    /// Directory whose templates override the embedded ones, file by file.
    pub templates_dir: Option<PathBuf>,
    /// File holding the admin token; generated in the state directory when absent.
    pub admin_token_file: Option<PathBuf>,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Extra CA certificates (PEM) trusted for https custom pages and upstreams.
    pub upstream_ca_file: Option<PathBuf>,
    /// Upstreams, in file order.
    pub services: Vec<crate::config::service::ServiceConfig>,
    /// Operator variables for page templates (`[page_config]`).
    pub page_config: serde_json::Map<String, serde_json::Value>,
    /// Largest request head (request line + headers) accepted from clients.
    pub max_header_bytes: usize,
    /// Who may read the dashboard (`/kinfra`, `/__events__`, `/__logs__/`, `/api/dashboard/`).
    pub dashboard_access: DashboardAccess,
    /// Who may read `/metrics` (`metrics_access`; by default as `dashboard_access`).
    pub metrics_access: DashboardAccess,
    /// Forward request headers whose names contain `_` (nginx's `underscores_in_headers`).
    /// Off by default: `X_Forwarded_For` must not pass for `X-Forwarded-For` behind a proxy
    /// that normalises `_` to `-` (CGI, PHP, Django, many WSGI servers do).
    pub underscores_in_headers: bool,
    /// Host names, lower-case, that loopback readers may use besides `localhost` and loopback
    /// addresses (`dashboard_hosts`).
    pub dashboard_hosts: Vec<String>,
    /// How long the health API reuses a composed answer (0: compose for every request).
    pub health_cache_ttl: Duration,
    /// The fleet this host is part of (`[fleet]`); `None`: a single host.
    pub fleet: Option<fleet::FleetConfig>,
}

/// Who may read the dashboard without an admin session (actions always need the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DashboardAccess {
    /// Clients connecting from a loopback address to a loopback host name (`localhost`, a
    /// loopback address, or one in `dashboard_hosts`); everyone else logs in (the default).
    #[default]
    Loopback,
    /// Anyone who can reach kinfrad.
    Public,
    /// Only with an admin session or token.
    Login,
}

impl DashboardAccess {
    pub fn parse(s: &str) -> Result<DashboardAccess, String> {
        match s {
            "loopback" => Ok(DashboardAccess::Loopback),
            "public" => Ok(DashboardAccess::Public),
            "login" => Ok(DashboardAccess::Login),
            o => Err(format!("{o:?} must be one of loopback, public, login")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DashboardAccess::Loopback => "loopback",
            DashboardAccess::Public => "public",
            DashboardAccess::Login => "login",
        }
    }
}

/// Command-line flags that override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Vec<String>,
    pub control_socket: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    /// `--demo`: also run the built-in demo service (this executable) at `/`.
    pub demo: Option<String>,
}

/// A configuration problem, always naming where it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: key `{key}`: {message}")]
    Invalid {
        file: String,
        key: String,
        message: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Vec<String>>,
    control_socket: Option<String>,
    control_group: Option<String>,
    state_dir: Option<String>,
    templates_dir: Option<String>,
    admin_token_file: Option<String>,
    shutdown_grace: Option<String>,
    upstream_ca_file: Option<String>,
    max_header_bytes: Option<toml::Value>,
    dashboard_access: Option<String>,
    metrics_access: Option<String>,
    underscores_in_headers: Option<bool>,
    dashboard_hosts: Option<Vec<String>>,
    health_cache_ttl: Option<String>,
    #[serde(default)]
    service: Vec<crate::config::service::RawService>,
    page_config: Option<toml::Table>,
    fleet: Option<fleet::RawFleet>,
}

impl Config {
    /// Load from `path`, or from the default path if it exists, or the embedded default.
    /// An explicitly named file that is missing is an error.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let (source, raw) = match path {
            Some(p) => (ConfigSource::File(p.to_path_buf()), Some(read(p)?)),
            None => {
                let p = Path::new(paths::DEFAULT_CONFIG_PATH);
                if p.exists() {
                    (ConfigSource::File(p.to_path_buf()), Some(read(p)?))
                } else {
                    (ConfigSource::Embedded, None)
                }
            }
        };
        let raw = match (&source, raw) {
            (ConfigSource::File(p), Some(text)) => parse(&p.display().to_string(), &text)?,
            _ => RawConfig::default(),
        };
        validate(source, raw, overrides)
    }

    /// Parse and validate TOML text (used by tests and `--check-config`).
    pub fn from_toml(name: &str, text: &str, overrides: &Overrides) -> Result<Config, ConfigError> {
        let raw = parse(name, text)?;
        validate(ConfigSource::File(PathBuf::from(name)), raw, overrides)
    }

    /// Path of the admin token file in effect.
    pub fn token_path(&self) -> PathBuf {
        self.admin_token_file
            .clone()
            .unwrap_or_else(|| self.state_dir.join(paths::TOKEN_FILE))
    }
}

fn read(p: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
        file: p.display().to_string(),
        source,
    })
}

fn parse(file: &str, text: &str) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        file: file.to_string(),
        message: e.to_string().trim_end().replace('\n', " | "),
    })
}

#[cfg(test)]
mod tests;
