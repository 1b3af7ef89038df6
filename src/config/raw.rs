//! `[[service]]` tables as written: their serde shapes, unknown keys refused. Nothing here is
//! checked; `ServiceConfig::from_raw` does that. (The top level's `RawConfig` is in mod.rs.)

use serde::Deserialize;

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
    /// false: this service being down degrades kinfrad's health rather than failing it.
    pub critical: Option<bool>,
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
