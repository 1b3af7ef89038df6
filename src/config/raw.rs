//! The file as written: serde shapes of the top level and of `[[service]]` tables, unknown
//! keys refused. Nothing here is checked; `validate` and `ServiceConfig::from_raw` do that.

use serde::Deserialize;

/// The whole file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) listen: Option<Vec<String>>,
    pub(super) control_socket: Option<String>,
    pub(super) control_group: Option<String>,
    pub(super) state_dir: Option<String>,
    pub(super) templates_dir: Option<String>,
    pub(super) admin_token_file: Option<String>,
    pub(super) shutdown_grace: Option<String>,
    pub(super) upstream_ca_file: Option<String>,
    pub(super) max_header_bytes: Option<toml::Value>,
    pub(super) dashboard_access: Option<String>,
    pub(super) underscores_in_headers: Option<bool>,
    pub(super) dashboard_hosts: Option<Vec<String>>,
    #[serde(default)]
    pub(super) service: Vec<RawService>,
    pub(super) page_config: Option<toml::Table>,
}

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
