//! `[[service]]` entries: the validated `ServiceConfig` (routes, health probe, circuit breaker,
//! fallback page, timeouts) and its parts. `packaging/kinfra.toml` documents every key; every
//! error names the key.

use std::time::Duration;

use crate::model::circuit::BreakerConfig;
use crate::model::routes::RouteSpec;
use crate::model::valid_name;

use super::process::process_config;
pub use super::process::{ProcessConfig, Ready, RestartPolicy};
pub use super::raw::{RawCircuit, RawHealth, RawService, RawTimeouts};
pub use super::values::{UpstreamUrl, parse_size, parse_upstream_url};
use super::values::{dur, int, parse_status_range};

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
    /// What a starting service says: `fallback_message`, else a default text.
    pub message: String,
    /// The operator's `fallback_message` (`None`: not set, or empty). Unlike `message` it has
    /// no default, so it can be shown in every fallback state without putting words about
    /// starting up on the page of a service that died.
    pub operator_message: Option<String>,
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
    /// Its failure makes kinfrad's health unhealthy (true) or only degraded (false).
    pub critical: bool,
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
        if name == "kinfrad" {
            return Err((
                here("name"),
                "\"kinfrad\" names kinfrad itself in the health API; choose another name"
                    .to_string(),
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
        let operator_message = raw
            .fallback_message
            .is_some()
            .then(|| message.clone())
            .filter(|m| !m.is_empty());
        let fallback = FallbackConfig {
            enabled: raw.enable_fallback.unwrap_or(true),
            page,
            message,
            operator_message,
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
            critical: raw.critical.unwrap_or(true),
            health,
            fallback,
            breaker,
            timeouts,
            max_request_body,
            process,
        })
    }
}

// The tests sit beside this file, not in a `service/` folder of their own.
#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
