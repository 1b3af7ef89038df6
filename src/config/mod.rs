//! Configuration: the TOML file is parsed into raw serde structs, then validated into [`Config`].
//!
//! Every error names the file (or the command-line flag), the key, and what is wrong. With no file
//! at all, kinfrad runs on an embedded default that works for an unprivileged user.

pub mod service;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::paths;

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
    /// Forward request headers whose names contain `_` (nginx's `underscores_in_headers`).
    /// Off by default: `X_Forwarded_For` must not pass for `X-Forwarded-For` behind a proxy
    /// that normalises `_` to `-` (CGI, PHP, Django, many WSGI servers do).
    pub underscores_in_headers: bool,
    /// Host names, lower-case, that loopback readers may use besides `localhost` and loopback
    /// addresses (`dashboard_hosts`).
    pub dashboard_hosts: Vec<String>,
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
    underscores_in_headers: Option<bool>,
    dashboard_hosts: Option<Vec<String>>,
    #[serde(default)]
    service: Vec<crate::config::service::RawService>,
    page_config: Option<toml::Table>,
}

const DEFAULT_LISTEN: &str = "127.0.0.1:9100";
const DEFAULT_GRACE: Duration = Duration::from_secs(10);
const DEFAULT_MAX_HEADER: usize = 32 * 1024;
const MAX_GRACE: Duration = Duration::from_secs(600);
/// `sun_path` is 108 bytes including the terminating NUL.
const MAX_UNIX_PATH: usize = 107;

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

fn invalid(file: &str, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_string(),
        key: key.to_string(),
        message: message.into(),
    }
}

fn parse_listen(file: &str, key: &str, items: &[String]) -> Result<Vec<SocketAddr>, ConfigError> {
    if items.is_empty() {
        return Err(invalid(
            file,
            key,
            "needs at least one address, e.g. \"127.0.0.1:9100\"",
        ));
    }
    let mut out: Vec<SocketAddr> = Vec::with_capacity(items.len());
    for item in items {
        let addr: SocketAddr = item.trim().parse().map_err(|_| {
            invalid(
                file,
                key,
                format!(
                    "{item:?} is not an IP:port address (e.g. \"127.0.0.1:9100\" or \"[::1]:9100\")"
                ),
            )
        })?;
        if out.contains(&addr) {
            return Err(invalid(file, key, format!("{addr} is listed twice")));
        }
        out.push(addr);
    }
    Ok(out)
}

fn absolute(file: &str, key: &str, value: &str) -> Result<PathBuf, ConfigError> {
    if value.is_empty() {
        return Err(invalid(file, key, "must not be empty"));
    }
    let p = PathBuf::from(value);
    if !p.is_absolute() {
        return Err(invalid(
            file,
            key,
            format!("{value:?} must be an absolute path"),
        ));
    }
    Ok(p)
}

fn socket_path(file: &str, key: &str, p: PathBuf) -> Result<PathBuf, ConfigError> {
    if !p.is_absolute() {
        return Err(invalid(
            file,
            key,
            format!("{} must be an absolute path", p.display()),
        ));
    }
    if p.as_os_str().len() > MAX_UNIX_PATH {
        return Err(invalid(
            file,
            key,
            format!(
                "{} is longer than {MAX_UNIX_PATH} bytes, the limit for a Unix socket path",
                p.display()
            ),
        ));
    }
    Ok(p)
}

fn validate(source: ConfigSource, raw: RawConfig, ov: &Overrides) -> Result<Config, ConfigError> {
    let file = source.to_string();
    let file = file.as_str();

    // The file's value is validated even when a flag overrides it, so a broken file never
    // hides behind a flag until the day the flag is dropped.
    let from_file = match &raw.listen {
        Some(l) => parse_listen(file, "listen", l)?,
        None => parse_listen(file, "listen", &[DEFAULT_LISTEN.to_string()])?,
    };
    let listen = if ov.listen.is_empty() {
        from_file
    } else {
        parse_listen("command line", "--listen", &ov.listen)?
    };

    let control_socket = match (&ov.control_socket, &raw.control_socket) {
        (Some(p), _) => socket_path("command line", "--control-socket", p.clone())?,
        (None, Some(s)) => {
            socket_path(file, "control_socket", absolute(file, "control_socket", s)?)?
        }
        (None, None) => socket_path(
            file,
            "control_socket",
            paths::default_control_socket().map_err(|e| invalid(file, "control_socket", e))?,
        )?,
    };

    let state_dir = match (&ov.state_dir, &raw.state_dir) {
        (Some(p), _) => {
            if !p.is_absolute() {
                // A relative flag is resolved against the working directory, as users expect.
                std::env::current_dir()
                    .map(|cwd| cwd.join(p))
                    .map_err(|e| invalid("command line", "--state-dir", e.to_string()))?
            } else {
                p.clone()
            }
        }
        (None, Some(s)) => absolute(file, "state_dir", s)?,
        (None, None) => paths::default_state_dir().map_err(|e| invalid(file, "state_dir", e))?,
    };

    let templates_dir = raw
        .templates_dir
        .as_deref()
        .map(|s| absolute(file, "templates_dir", s))
        .transpose()?;
    let upstream_ca_file = raw
        .upstream_ca_file
        .as_deref()
        .map(|s| absolute(file, "upstream_ca_file", s))
        .transpose()?;
    let admin_token_file = raw
        .admin_token_file
        .as_deref()
        .map(|s| absolute(file, "admin_token_file", s))
        .transpose()?;

    let shutdown_grace = match raw.shutdown_grace.as_deref() {
        None => DEFAULT_GRACE,
        Some(s) => {
            let d = humantime::parse_duration(s).map_err(|e| {
                invalid(
                    file,
                    "shutdown_grace",
                    format!("{s:?} is not a duration like \"10s\": {e}"),
                )
            })?;
            if d > MAX_GRACE {
                return Err(invalid(
                    file,
                    "shutdown_grace",
                    format!("{s:?} is longer than the 10 minute maximum"),
                ));
            }
            d
        }
    };

    let control_group = raw.control_group.unwrap_or_else(|| "kinfra".to_string());
    if control_group.is_empty()
        || control_group.len() > 32
        || !control_group
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    {
        return Err(invalid(
            file,
            "control_group",
            format!("{control_group:?} is not a valid group name"),
        ));
    }

    let max_header_bytes = match &raw.max_header_bytes {
        None => DEFAULT_MAX_HEADER,
        Some(v) => {
            let n = crate::config::service::parse_size(v)
                .map_err(|m| invalid(file, "max_header_bytes", m))?;
            if !(8192..=1024 * 1024).contains(&n) {
                return Err(invalid(
                    file,
                    "max_header_bytes",
                    format!("{n} must be between 8KiB and 1MiB"),
                ));
            }
            n as usize
        }
    };

    let dashboard_access = match raw.dashboard_access.as_deref() {
        None => DashboardAccess::default(),
        Some(s) => DashboardAccess::parse(s).map_err(|m| invalid(file, "dashboard_access", m))?,
    };
    let dashboard_hosts = dashboard_hosts(raw.dashboard_hosts.as_deref().unwrap_or_default())
        .map_err(|m| invalid(file, "dashboard_hosts", m))?;

    let mut services: Vec<crate::config::service::ServiceConfig> = Vec::new();
    for (i, rs) in raw.service.iter().enumerate() {
        let svc = crate::config::service::ServiceConfig::from_raw(i, rs)
            .map_err(|(key, m)| invalid(file, &key, m))?;
        if let Some(other) = services.iter().find(|o| o.name == svc.name) {
            return Err(invalid(
                file,
                &format!("service[{i}].name"),
                format!("{:?} is already used by another service", other.name),
            ));
        }
        for r in &svc.routes {
            if let Some(other) = services.iter().find(|o| o.routes.contains(r)) {
                return Err(invalid(
                    file,
                    &format!("service[{i}] ({}).routes", svc.name),
                    format!("route {r} is already served by {:?}", other.name),
                ));
            }
        }
        services.push(svc);
    }
    if let Some(exe) = &ov.demo {
        let raw: crate::config::service::RawService =
            toml::from_str(&crate::demo::service_toml(exe))
                .map_err(|e| invalid(file, "--demo", e.to_string()))?;
        let svc = crate::config::service::ServiceConfig::from_raw(services.len(), &raw)
            .map_err(|(key, m)| invalid(file, &format!("--demo: {key}"), m))?;
        if let Some(other) = services
            .iter()
            .find(|o| o.name == svc.name || svc.routes.iter().any(|r| o.routes.contains(r)))
        {
            return Err(invalid(
                file,
                "--demo",
                format!(
                    "the demo service (\"demo\" at /) clashes with service {:?}",
                    other.name
                ),
            ));
        }
        services.push(svc);
    }

    let mut page_config = serde_json::Map::new();
    for (k, v) in raw.page_config.unwrap_or_default() {
        let key = format!("page_config.{k}");
        let ident = k
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ident {
            return Err(invalid(
                file,
                &key,
                "must be a template identifier (letters, digits, '_')",
            ));
        }
        if crate::pages::RESERVED.contains(&k.as_str()) {
            return Err(invalid(
                file,
                &key,
                "is a variable kinfrad sets itself; pick another name",
            ));
        }
        let v = serde_json::to_value(&v).map_err(|e| invalid(file, &key, e.to_string()))?;
        page_config.insert(k, v);
    }

    Ok(Config {
        source,
        listen,
        control_socket,
        control_group,
        state_dir,
        templates_dir,
        admin_token_file,
        shutdown_grace,
        upstream_ca_file,
        services,
        page_config,
        max_header_bytes,
        dashboard_access,
        underscores_in_headers: raw.underscores_in_headers.unwrap_or(false),
        dashboard_hosts,
    })
}

/// `dashboard_hosts`: DNS names (no port, no address: loopback addresses are always accepted),
/// lower-cased.
fn dashboard_hosts(names: &[String]) -> Result<Vec<String>, String> {
    names
        .iter()
        .map(|n| {
            let name = n.trim_end_matches('.').to_ascii_lowercase();
            let label_ok = |l: &str| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            };
            if name.len() > 253 || !name.split('.').all(label_ok) {
                return Err(format!(
                    "{n:?} is not a host name (letters, digits, '-', '_' and dots; no port)"
                ));
            }
            if name.parse::<std::net::Ipv4Addr>().is_ok() {
                return Err(format!(
                    "{n:?} is an address: list host names (loopback addresses are always accepted)"
                ));
            }
            Ok(name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml("kinfra.toml", text, &Overrides::default())
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = load("").expect("valid");
        assert_eq!(
            c.listen,
            vec!["127.0.0.1:9100".parse::<SocketAddr>().expect("addr")]
        );
        assert_eq!(c.shutdown_grace, Duration::from_secs(10));
        assert_eq!(c.control_group, "kinfra");
    }

    #[test]
    fn full_file() {
        let c = load(
            r#"
listen = ["127.0.0.1:8080", "[::1]:8080"]
control_socket = "/run/x/control.sock"
state_dir = "/var/lib/x"
templates_dir = "/etc/x/templates"
admin_token_file = "/etc/x/token"
shutdown_grace = "3s"
control_group = "ops"
"#,
        )
        .expect("valid");
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.control_socket, PathBuf::from("/run/x/control.sock"));
        assert_eq!(c.token_path(), PathBuf::from("/etc/x/token"));
        assert_eq!(c.shutdown_grace, Duration::from_secs(3));
    }

    #[test]
    fn errors_name_file_and_key() {
        let e = load("listen = [\"nope\"]")
            .expect_err("invalid")
            .to_string();
        assert!(
            e.contains("kinfra.toml") && e.contains("`listen`") && e.contains("nope"),
            "{e}"
        );
        let e = load("state_dir = \"relative/dir\"")
            .expect_err("invalid")
            .to_string();
        assert!(e.contains("`state_dir`") && e.contains("absolute"), "{e}");
        let e = load("shutdown_grace = \"soon\"")
            .expect_err("invalid")
            .to_string();
        assert!(e.contains("`shutdown_grace`"), "{e}");
        let e = load("listen = [\"127.0.0.1:1\", \"127.0.0.1:1\"]")
            .expect_err("dup")
            .to_string();
        assert!(e.contains("twice"), "{e}");
        let e = load(&format!("control_socket = \"/{}\"", "a".repeat(200)))
            .expect_err("long")
            .to_string();
        assert!(e.contains("`control_socket`") && e.contains("107"), "{e}");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = load("lisen = [\"127.0.0.1:1\"]")
            .expect_err("unknown")
            .to_string();
        assert!(e.contains("kinfra.toml") && e.contains("lisen"), "{e}");
    }

    #[test]
    fn syntax_error_has_location() {
        let e = load("listen = [").expect_err("syntax").to_string();
        assert!(e.contains("kinfra.toml") && e.contains("line"), "{e}");
    }

    #[test]
    fn services_and_page_config() {
        let c = load(
            r#"
[[service]]
name = "api"
url = "http://127.0.0.1:8000"
routes = ["/api/", "api.example.com/"]
health_check = { path = "/health", interval = "5s", timeout = "1s" }
fallback_page = "loading"

[[service]]
name = "web"
url = "http://127.0.0.1:8001"
routes = ["/"]

[page_config]
build_version = "1.2.3"
"#,
        )
        .expect("valid");
        assert_eq!(c.services.len(), 2);
        assert_eq!(c.page_config["build_version"], "1.2.3");
        let e = load("[[service]]\nname=\"a\"\nurl=\"http://x\"\nroutes=[\"/\"]\n[[service]]\nname=\"a\"\nurl=\"http://y\"\nroutes=[\"/b\"]")
            .expect_err("dup")
            .to_string();
        assert!(
            e.contains("service[1].name") && e.contains("already used"),
            "{e}"
        );
        let e = load("[[service]]\nname=\"a\"\nurl=\"http://x\"\nroutes=[\"/\"]\n[[service]]\nname=\"b\"\nurl=\"http://y\"\nroutes=[\"/\"]")
            .expect_err("dup route")
            .to_string();
        assert!(
            e.contains("(b).routes") && e.contains("already served"),
            "{e}"
        );
        let e = load("[[service]]\nname=\"a\"\nurl=\"http://x\"\nroutes=[\"/\"]\nbogus=1")
            .expect_err("unknown")
            .to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = load("[page_config]\nservice_name = \"x\"")
            .expect_err("reserved")
            .to_string();
        assert!(e.contains("page_config.service_name"), "{e}");
        assert_eq!(
            load("dashboard_access = \"public\"")
                .expect("ok")
                .dashboard_access,
            DashboardAccess::Public
        );
        let e = load("dashboard_access = \"everyone\"")
            .expect_err("bad access")
            .to_string();
        assert!(
            e.contains("dashboard_access") && e.contains("loopback"),
            "{e}"
        );
        let c = load("dashboard_hosts = [\"Box.Lan\", \"kinfra.test.\"]").expect("hosts");
        assert_eq!(c.dashboard_hosts, ["box.lan", "kinfra.test"]);
        assert!(load("").expect("default").dashboard_hosts.is_empty());
        for bad in [
            "\"box.lan:9100\"",
            "\"\"",
            "\"a..b\"",
            "\"192.0.2.1\"",
            "\"[::1]\"",
            "\"*.lan\"",
        ] {
            let e = load(&format!("dashboard_hosts = [{bad}]"))
                .expect_err(bad)
                .to_string();
            assert!(e.contains("dashboard_hosts"), "{bad}: {e}");
        }
        let e = load("max_header_bytes = 10")
            .expect_err("small")
            .to_string();
        assert!(e.contains("max_header_bytes"), "{e}");
    }

    #[test]
    fn flags_override_file() {
        let ov = Overrides {
            listen: vec!["127.0.0.1:7000".into()],
            control_socket: Some(PathBuf::from("/tmp/c.sock")),
            state_dir: Some(PathBuf::from("/tmp/st")),
            demo: None,
        };
        let c = Config::from_toml("f.toml", "listen = [\"127.0.0.1:1\"]", &ov).expect("valid");
        assert_eq!(c.listen[0].port(), 7000);
        assert_eq!(c.state_dir, PathBuf::from("/tmp/st"));
        let bad = Overrides {
            listen: vec!["x".into()],
            ..Overrides::default()
        };
        let e = Config::from_toml("f.toml", "", &bad)
            .expect_err("bad flag")
            .to_string();
        assert!(e.contains("--listen"), "{e}");
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let e = Config::load(
            Some(Path::new("/nonexistent/kinfra.toml")),
            &Overrides::default(),
        )
        .expect_err("missing")
        .to_string();
        assert!(
            e.contains("/nonexistent/kinfra.toml") && e.contains("cannot read"),
            "{e}"
        );
    }
}
