//! kinfrad's command line: clap's description of every flag (what `--help` prints). Only clap
//! and std here: the build script includes this file to write the man page and completions.

use std::path::PathBuf;

use clap::Parser;

/// KInfra daemon: reverse proxy, maintenance pages and service supervisor under systemd.
#[derive(Debug, Parser)]
#[command(
    name = "kinfrad",
    version,
    after_help = "Without --config, /etc/kinfra/kinfra.toml is read if it exists, else an embedded default (listen 127.0.0.1:9100).\nExit codes: 0 clean stop (or valid config with --check-config), 1 error, 2 usage error."
)]
pub struct Args {
    /// Configuration file (TOML) [default: /etc/kinfra/kinfra.toml when it exists]
    #[arg(long, short = 'c', value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Listen on this address instead of the configured ones (repeatable)
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Vec<String>,
    /// Control socket path (when systemd does not pass one)
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
    /// State directory (default: $STATE_DIRECTORY, else /var/lib/kinfra for root)
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Validate configuration and templates, then exit 0 (valid) or 1 (invalid)
    #[arg(long)]
    pub check_config: bool,
    /// Also run the built-in demo service at / (startup steps, then a page you can crash)
    #[arg(long)]
    pub demo: bool,
    /// Be the demo service (kinfrad runs this itself for --demo)
    #[arg(long, hide = true)]
    pub demo_service: bool,
}
