//! `[[service]]` entries: raw TOML shape and the validated `ServiceConfig` (routes, health probe,
//! circuit breaker, fallback page, timeouts). `packaging/kinfra.toml` documents every key; every
//! error names the key.

use std::time::Duration;

use serde::Deserialize;

use crate::model::circuit::BreakerConfig;
use crate::model::routes::RouteSpec;
use crate::model::valid_name;

/// Raw `[[service]]` table as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub name: Option<String>,
    pub display_name: Option<String>,
    pub url: Option<String>,
    #[serde(default)]
    pub routes: Vec<String>,
    pub strip_prefix: Option<bool>,
    pub preserve_host: Option<bool>,
    pub health_check: Option<RawHealth>,
    pub enable_fallback: Option<bool>,
    pub fallback_page: Option<String>,
    pub fallback_message: Option<String>,
    pub fallback_refresh_interval: Option<i64>,
    pub circuit_breaker: Option<RawCircuit>,
    pub timeouts: Option<RawTimeouts>,
    pub max_request_body: Option<toml::Value>,
    // A supervised service (instead of `url`).
    pub command: Option<toml::Value>,
    pub shell: Option<bool>,
    pub cwd: Option<String>,
    pub env: Option<toml::Table>,
    pub preferred_port: Option<i64>,
    pub port_range: Option<String>,
    pub restart: Option<String>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<String>,
    pub log_lines: Option<i64>,
    pub ready: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub path: Option<String>,
    pub expect_status: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub healthy_threshold: Option<i64>,
    pub unhealthy_threshold: Option<i64>,
    pub grace: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCircuit {
    pub failures: Option<i64>,
    pub error_ratio: Option<f64>,
    pub window: Option<String>,
    pub min_requests: Option<i64>,
    pub cooldown: Option<String>,
    pub half_open_requests: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub connect: Option<String>,
    pub header: Option<String>,
    pub idle: Option<String>,
}

/// Which page a visitor sees while the service can't answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackPage {
    Loading,
    Live,
    Unavailable,
    Maintenance,
}

impl FallbackPage {
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackPage::Loading => "loading",
            FallbackPage::Live => "live",
            FallbackPage::Unavailable => "503",
            FallbackPage::Maintenance => "maintenance",
        }
    }
}

/// How the upstream's health is probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeKind {
    /// GET `path`, healthy when the status is within `expect` (inclusive).
    Http { path: String, expect: (u16, u16) },
    /// A TCP connect.
    Tcp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    pub kind: ProbeKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// After kinfrad starts, failures within this period read as "starting", not "down".
    pub grace: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FallbackConfig {
    pub enabled: bool,
    pub page: FallbackPage,
    pub message: String,
    pub refresh_interval: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Timeouts {
    pub connect: Duration,
    /// Time to the upstream's response head.
    pub header: Duration,
    /// Pooled idle connections and stalled bodies are closed after this.
    pub idle: Duration,
}

/// Parsed upstream URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub https: bool,
    pub authority: http::uri::Authority,
    /// Path prefix prepended to forwarded paths ("" for none).
    pub base_path: String,
    pub host: String,
    pub port: u16,
}

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
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    pub name: String,
    pub display_name: String,
    pub url: UpstreamUrl,
    pub url_text: String,
    pub routes: Vec<RouteSpec>,
    pub strip_prefix: bool,
    /// Send the client's Host to the upstream instead of the upstream's own address.
    pub preserve_host: bool,
    pub health: HealthConfig,
    pub fallback: FallbackConfig,
    pub breaker: BreakerConfig,
    pub timeouts: Timeouts,
    pub max_request_body: u64,
    /// Set for a service kinfrad starts itself (`command`); its `url` follows the port.
    pub process: Option<ProcessConfig>,
}

/// Default request body limit.
pub const DEFAULT_MAX_BODY: u64 = 100 * 1024 * 1024;

/// A problem with one key of one service: `(key path, message)`.
pub type KeyError = (String, String);

fn dur(
    key: &str,
    v: Option<&str>,
    default: Duration,
    min: Duration,
    max: Duration,
) -> Result<Duration, KeyError> {
    let Some(s) = v else { return Ok(default) };
    let d = humantime::parse_duration(s).map_err(|e| {
        (
            key.to_string(),
            format!("{s:?} is not a duration like \"5s\": {e}"),
        )
    })?;
    if d < min || d > max {
        return Err((
            key.to_string(),
            format!(
                "{s:?} must be between {} and {}",
                humantime::format_duration(min),
                humantime::format_duration(max)
            ),
        ));
    }
    Ok(d)
}

fn int(key: &str, v: Option<i64>, default: u32, min: u32, max: u32) -> Result<u32, KeyError> {
    let Some(n) = v else { return Ok(default) };
    if n < i64::from(min) || n > i64::from(max) {
        return Err((
            key.to_string(),
            format!("{n} must be between {min} and {max}"),
        ));
    }
    Ok(n as u32)
}

/// Parse "10MB", "512KiB", "1GB" or a plain integer (bytes).
pub fn parse_size(v: &toml::Value) -> Result<u64, String> {
    match v {
        toml::Value::Integer(n) if *n >= 0 => Ok(*n as u64),
        toml::Value::String(s) => {
            let t = s.trim();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let n: u64 = num
                .parse()
                .map_err(|_| format!("{s:?} is not a size like \"10MB\""))?;
            let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1,
                "k" | "kb" => 1000,
                "kib" => 1024,
                "m" | "mb" => 1000 * 1000,
                "mib" => 1024 * 1024,
                "g" | "gb" => 1000 * 1000 * 1000,
                "gib" => 1024 * 1024 * 1024,
                other => {
                    return Err(format!(
                        "{s:?}: unknown unit {other:?} (use B, KB, KiB, MB, MiB, GB, GiB)"
                    ));
                }
            };
            n.checked_mul(mult)
                .ok_or_else(|| format!("{s:?} is too large"))
        }
        other => Err(format!("{other} is not a size like \"10MB\"")),
    }
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

/// Parse an upstream URL: http or https, a host, optional port and base path, no query.
pub fn parse_upstream_url(s: &str) -> Result<UpstreamUrl, String> {
    let lower = s.trim().to_ascii_lowercase();
    let https = if lower.starts_with("https://") {
        true
    } else if lower.starts_with("http://") {
        false
    } else {
        return Err(format!("{s:?} must be an http:// or https:// URL"));
    };
    let uri: http::Uri = s
        .trim()
        .parse()
        .map_err(|e| format!("{s:?} is not a valid URL: {e}"))?;
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("{s:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("{s:?}: credentials in the URL are not supported"));
    }
    if uri.query().is_some() {
        return Err(format!(
            "{s:?}: a query string is not allowed in an upstream URL"
        ));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let base_path = uri.path().trim_end_matches('/').to_string();
    Ok(UpstreamUrl {
        https,
        authority,
        base_path,
        host,
        port,
    })
}

impl ServiceConfig {
    /// Validate one raw service; `idx` is its position for messages when it has no name.
    pub fn from_raw(idx: usize, raw: &RawService) -> Result<ServiceConfig, KeyError> {
        let here = |k: &str| match &raw.name {
            Some(n) => format!("service[{idx}] ({n}).{k}"),
            None => format!("service[{idx}].{k}"),
        };
        let name = raw
            .name
            .clone()
            .ok_or_else(|| (here("name"), "is required".to_string()))?;
        if !valid_name(&name) {
            return Err((
                here("name"),
                format!("{name:?} may only hold letters, digits, '-', '_' and '.' (64 at most)"),
            ));
        }
        let process = match (&raw.url, &raw.command) {
            (Some(_), Some(_)) => {
                return Err((
                    here("command"),
                    "a service has either url (an upstream kinfrad does not run) or command (one it runs), not both".to_string(),
                ));
            }
            (None, None) => {
                return Err((
                    here("url"),
                    "is required (the upstream, e.g. \"http://127.0.0.1:8000\"), or command to have kinfrad run the service".to_string(),
                ));
            }
            (None, Some(c)) => Some(process_config(raw, c, &here)?),
            (Some(_), None) => {
                for (k, set) in [
                    ("shell", raw.shell.is_some()),
                    ("cwd", raw.cwd.is_some()),
                    ("env", raw.env.is_some()),
                    ("preferred_port", raw.preferred_port.is_some()),
                    ("port_range", raw.port_range.is_some()),
                    ("restart", raw.restart.is_some()),
                    ("stop_signal", raw.stop_signal.is_some()),
                    ("stop_timeout", raw.stop_timeout.is_some()),
                    ("log_lines", raw.log_lines.is_some()),
                    ("ready", raw.ready.is_some()),
                ] {
                    if set {
                        return Err((
                            here(k),
                            "applies only to a service with command".to_string(),
                        ));
                    }
                }
                None
            }
        };
        let url_text = match (&raw.url, &process) {
            (Some(u), _) => u.clone(),
            (None, Some(p)) => format!("http://127.0.0.1:{}", p.preferred_port),
            (None, None) => String::new(),
        };
        let url = parse_upstream_url(&url_text).map_err(|m| (here("url"), m))?;
        if raw.routes.is_empty() {
            return Err((
                here("routes"),
                "needs at least one route, e.g. [\"/\"] or [\"api.example.com/\"]".to_string(),
            ));
        }
        let mut routes = Vec::new();
        for r in &raw.routes {
            let spec = RouteSpec::parse(r).map_err(|m| (here("routes"), m))?;
            if routes.contains(&spec) {
                return Err((here("routes"), format!("{r:?} is listed twice")));
            }
            routes.push(spec);
        }

        let h = raw.health_check.clone().unwrap_or(RawHealth {
            kind: None,
            path: None,
            expect_status: None,
            interval: None,
            timeout: None,
            healthy_threshold: None,
            unhealthy_threshold: None,
            grace: None,
        });
        let kind = match (h.kind.as_deref(), &h.path) {
            (Some("tcp"), Some(_)) => {
                return Err((
                    here("health_check.path"),
                    "has no meaning for a tcp probe".into(),
                ));
            }
            (Some("tcp"), None) | (None, None) => ProbeKind::Tcp,
            (Some("http"), p) | (None, p @ Some(_)) => {
                let path = p.clone().unwrap_or_else(|| "/".to_string());
                if !path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err() {
                    return Err((
                        here("health_check.path"),
                        format!("{path:?} must be a path starting with '/'"),
                    ));
                }
                let expect = match h.expect_status.as_deref() {
                    None => (200, 399),
                    Some(s) => parse_status_range(s)
                        .map_err(|m| (here("health_check.expect_status"), m))?,
                };
                ProbeKind::Http { path, expect }
            }
            (Some(other), _) => {
                return Err((
                    here("health_check.type"),
                    format!("{other:?} must be \"http\" or \"tcp\""),
                ));
            }
        };
        let interval = dur(
            &here("health_check.interval"),
            h.interval.as_deref(),
            Duration::from_secs(5),
            Duration::from_millis(100),
            Duration::from_secs(3600),
        )?;
        let timeout = dur(
            &here("health_check.timeout"),
            h.timeout.as_deref(),
            Duration::from_secs(1),
            Duration::from_millis(10),
            Duration::from_secs(300),
        )?;
        let health = HealthConfig {
            kind,
            interval,
            timeout,
            healthy_threshold: int(
                &here("health_check.healthy_threshold"),
                h.healthy_threshold,
                1,
                1,
                100,
            )?,
            unhealthy_threshold: int(
                &here("health_check.unhealthy_threshold"),
                h.unhealthy_threshold,
                2,
                1,
                100,
            )?,
            grace: dur(
                &here("health_check.grace"),
                h.grace.as_deref(),
                Duration::from_secs(30),
                Duration::ZERO,
                Duration::from_secs(3600),
            )?,
        };

        let page = match raw.fallback_page.as_deref() {
            None | Some("loading") => FallbackPage::Loading,
            Some("live") => FallbackPage::Live,
            Some("503") => FallbackPage::Unavailable,
            Some("maintenance") => FallbackPage::Maintenance,
            Some(o) => {
                return Err((
                    here("fallback_page"),
                    format!("{o:?} must be one of loading, live, 503, maintenance"),
                ));
            }
        };
        let message = match &raw.fallback_message {
            Some(m) => crate::model::maintenance::clean_text("fallback_message", m)
                .map_err(|e| (here("fallback_message"), e.message))?,
            None => "Service is starting up…".to_string(),
        };
        let fallback = FallbackConfig {
            enabled: raw.enable_fallback.unwrap_or(true),
            page,
            message,
            refresh_interval: int(
                &here("fallback_refresh_interval"),
                raw.fallback_refresh_interval,
                5,
                1,
                3600,
            )?,
        };

        let c = raw.circuit_breaker.clone().unwrap_or(RawCircuit {
            failures: None,
            error_ratio: None,
            window: None,
            min_requests: None,
            cooldown: None,
            half_open_requests: None,
        });
        let d = BreakerConfig::default();
        let error_ratio = c.error_ratio.unwrap_or(d.error_ratio);
        if !(error_ratio > 0.0 && error_ratio <= 1.0) {
            return Err((
                here("circuit_breaker.error_ratio"),
                format!("{error_ratio} must be in (0, 1]"),
            ));
        }
        let breaker = BreakerConfig {
            failures: int(
                &here("circuit_breaker.failures"),
                c.failures,
                d.failures,
                1,
                10_000,
            )?,
            error_ratio,
            window: dur(
                &here("circuit_breaker.window"),
                c.window.as_deref(),
                d.window,
                Duration::from_secs(1),
                Duration::from_secs(3600),
            )?,
            min_requests: int(
                &here("circuit_breaker.min_requests"),
                c.min_requests,
                d.min_requests,
                1,
                1_000_000,
            )?,
            cooldown: dur(
                &here("circuit_breaker.cooldown"),
                c.cooldown.as_deref(),
                d.cooldown,
                Duration::from_millis(100),
                Duration::from_secs(3600),
            )?,
            half_open_requests: int(
                &here("circuit_breaker.half_open_requests"),
                c.half_open_requests,
                d.half_open_requests,
                1,
                1000,
            )?,
        };

        let t = raw.timeouts.clone().unwrap_or(RawTimeouts {
            connect: None,
            header: None,
            idle: None,
        });
        let timeouts = Timeouts {
            connect: dur(
                &here("timeouts.connect"),
                t.connect.as_deref(),
                Duration::from_secs(2),
                Duration::from_millis(10),
                Duration::from_secs(300),
            )?,
            header: dur(
                &here("timeouts.header"),
                t.header.as_deref(),
                Duration::from_secs(60),
                Duration::from_millis(10),
                Duration::from_secs(3600),
            )?,
            idle: dur(
                &here("timeouts.idle"),
                t.idle.as_deref(),
                Duration::from_secs(90),
                Duration::from_secs(1),
                Duration::from_secs(3600),
            )?,
        };
        let max_request_body = match &raw.max_request_body {
            None => DEFAULT_MAX_BODY,
            Some(v) => parse_size(v).map_err(|m| (here("max_request_body"), m))?,
        };
        let display_name = match &raw.display_name {
            Some(d) => crate::model::maintenance::clean_text("display_name", d)
                .map_err(|e| (here("display_name"), e.message))?,
            None => name.clone(),
        };
        Ok(ServiceConfig {
            name,
            display_name,
            url,
            url_text,
            routes,
            strip_prefix: raw.strip_prefix.unwrap_or(false),
            preserve_host: raw.preserve_host.unwrap_or(false),
            health,
            fallback,
            breaker,
            timeouts,
            max_request_body,
            process,
        })
    }
}

/// The process part of a `[[service]]` with `command`.
fn process_config(
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

fn parse_status_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (s.trim(), s.trim()),
    };
    let a: u16 = a
        .parse()
        .map_err(|_| format!("{s:?} is not a status or range like \"200-399\""))?;
    let b: u16 = b
        .parse()
        .map_err(|_| format!("{s:?} is not a status or range like \"200-399\""))?;
    if !(100..=599).contains(&a) || !(100..=599).contains(&b) || a > b {
        return Err(format!(
            "{s:?} must be statuses between 100 and 599, low-high"
        ));
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> RawService {
        toml::from_str(text).expect("raw service")
    }

    #[test]
    fn seed_shape_parses_with_defaults() {
        let s = ServiceConfig::from_raw(
            0,
            &raw(r#"
name = "api"
url = "http://127.0.0.1:8000"
routes = ["/api/", "api.example.com/"]
health_check = { path = "/health", interval = "5s", timeout = "1s" }
fallback_page = "loading"
fallback_message = "Building Go binary and starting server..."
fallback_refresh_interval = 5
"#),
        )
        .expect("valid");
        assert_eq!(s.routes.len(), 2);
        assert_eq!(
            s.health.kind,
            ProbeKind::Http {
                path: "/health".into(),
                expect: (200, 399)
            }
        );
        assert_eq!(s.fallback.page, FallbackPage::Loading);
        assert_eq!(s.url.port, 8000);
        assert!(s.fallback.enabled);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("url = \"http://x\"\nroutes=[\"/\"]", "service[0].name"),
            (
                "name = \"a b\"\nurl = \"http://x\"\nroutes=[\"/\"]",
                "(a b).name",
            ),
            ("name = \"a\"\nroutes=[\"/\"]", "(a).url"),
            ("name = \"a\"\nurl = \"ftp://x\"\nroutes=[\"/\"]", "(a).url"),
            ("name = \"a\"\nurl = \"http://x\"", "(a).routes"),
            (
                "name = \"a\"\nurl = \"http://x\"\nroutes=[\"nope\"]",
                "(a).routes",
            ),
            (
                "name = \"a\"\nurl = \"http://x\"\nroutes=[\"/\"]\nfallback_page = \"pretty\"",
                "(a).fallback_page",
            ),
            (
                "name = \"a\"\nurl = \"http://x\"\nroutes=[\"/\"]\nhealth_check = { interval = \"1ms\" }",
                "health_check.interval",
            ),
            (
                "name = \"a\"\nurl = \"http://x\"\nroutes=[\"/\"]\nhealth_check = { path = \"/h\", expect_status = \"600\" }",
                "expect_status",
            ),
            (
                "name = \"a\"\nurl = \"http://x\"\nroutes=[\"/\"]\ncircuit_breaker = { error_ratio = 2.0 }",
                "error_ratio",
            ),
            (
                "name = \"a\"\nurl = \"http://x\"\nroutes=[\"/\"]\nmax_request_body = \"10 parsecs\"",
                "max_request_body",
            ),
            (
                "name = \"a\"\nurl = \"http://x\"\nroutes=[\"/\"]\nfallback_refresh_interval = 0",
                "fallback_refresh_interval",
            ),
        ];
        for (text, key) in cases {
            let e = ServiceConfig::from_raw(0, &raw(text)).expect_err(text);
            assert!(e.0.contains(key), "{text}: {e:?}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(
            parse_size(&toml::Value::String("10MB".into())),
            Ok(10_000_000)
        );
        assert_eq!(parse_size(&toml::Value::String("1GiB".into())), Ok(1 << 30));
        assert_eq!(parse_size(&toml::Value::Integer(5)), Ok(5));
        assert!(parse_size(&toml::Value::Integer(-5)).is_err());
    }

    #[test]
    fn upstream_urls() {
        let u = parse_upstream_url("http://127.0.0.1:8000/app/").expect("ok");
        assert_eq!(u.base_path, "/app");
        assert!(parse_upstream_url("http://h/?q=1").is_err());
        assert!(parse_upstream_url("unix:/x").is_err());
        assert_eq!(parse_upstream_url("https://h").expect("ok").port, 443);
    }
}
