//! Turns the raw top-level file into a [`Config`]: listen addresses, paths, limits, the
//! dashboard keys, `[page_config]`, and the service list (each via `ServiceConfig::from_raw`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{Config, ConfigError, ConfigSource, DashboardAccess, Overrides, RawConfig};
use crate::paths;

const DEFAULT_LISTEN: &str = "127.0.0.1:9100";
const DEFAULT_GRACE: Duration = Duration::from_secs(10);
const DEFAULT_MAX_HEADER: usize = 32 * 1024;
const MAX_GRACE: Duration = Duration::from_secs(600);
/// How long the health API reuses a composed answer: short enough that a readiness probe sees
/// a change within a second, long enough that monitors polling many times a second cost one
/// composition per second.
const DEFAULT_HEALTH_TTL: Duration = Duration::from_secs(1);
const MAX_HEALTH_TTL: Duration = Duration::from_secs(300);
/// `sun_path` is 108 bytes including the terminating NUL.
const MAX_UNIX_PATH: usize = 107;

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

pub(super) fn validate(
    source: ConfigSource,
    raw: RawConfig,
    ov: &Overrides,
) -> Result<Config, ConfigError> {
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

    let shutdown_grace = duration(
        file,
        "shutdown_grace",
        raw.shutdown_grace.as_deref(),
        DEFAULT_GRACE,
        MAX_GRACE,
    )?;
    let health_cache_ttl = duration(
        file,
        "health_cache_ttl",
        raw.health_cache_ttl.as_deref(),
        DEFAULT_HEALTH_TTL,
        MAX_HEALTH_TTL,
    )?;

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
    let metrics_access = match raw.metrics_access.as_deref() {
        None => dashboard_access,
        Some(s) => DashboardAccess::parse(s).map_err(|m| invalid(file, "metrics_access", m))?,
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

    let fleet = super::fleet::validate(file, raw.fleet)?;

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
        metrics_access,
        underscores_in_headers: raw.underscores_in_headers.unwrap_or(false),
        dashboard_hosts,
        health_cache_ttl,
        fleet,
    })
}

/// A duration key like `"10s"` or `"1m 30s"` (`"0s"` allowed), `default` when absent, at most
/// `max`.
fn duration(
    file: &str,
    key: &str,
    value: Option<&str>,
    default: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    let Some(s) = value else {
        return Ok(default);
    };
    let d = humantime::parse_duration(s).map_err(|e| {
        invalid(
            file,
            key,
            format!("{s:?} is not a duration like \"10s\": {e}"),
        )
    })?;
    if d > max {
        return Err(invalid(
            file,
            key,
            format!(
                "{s:?} is longer than the {} maximum",
                humantime::format_duration(max)
            ),
        ));
    }
    Ok(d)
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
