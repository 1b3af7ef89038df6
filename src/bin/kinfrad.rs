//! kinfrad: the daemon. All logic lives in the library (`kinfra::daemon`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// KInfra daemon: reverse proxy, maintenance pages and service supervisor under systemd.
#[derive(Debug, Parser)]
#[command(
    name = "kinfrad",
    version,
    after_help = "Without --config, /etc/kinfra/kinfra.toml is read if it exists, else an embedded default (listen 127.0.0.1:9100).\nExit codes: 0 clean stop (or valid config with --check-config), 1 error, 2 usage error."
)]
struct Args {
    /// Configuration file (TOML) [default: /etc/kinfra/kinfra.toml when it exists]
    #[arg(long, short = 'c', value_name = "PATH")]
    config: Option<PathBuf>,
    /// Listen on this address instead of the configured ones (repeatable)
    #[arg(long, value_name = "IP:PORT")]
    listen: Vec<String>,
    /// Control socket path (when systemd does not pass one)
    #[arg(long, value_name = "PATH")]
    control_socket: Option<PathBuf>,
    /// State directory (default: $STATE_DIRECTORY, else /var/lib/kinfra for root)
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Validate configuration and templates, then exit 0 (valid) or 1 (invalid)
    #[arg(long)]
    check_config: bool,
    /// Also run the built-in demo service at / (startup steps, then a page you can crash)
    #[arg(long)]
    demo: bool,
    /// Be the demo service (kinfrad runs this itself for --demo)
    #[arg(long, hide = true)]
    demo_service: bool,
}

fn main() -> ExitCode {
    let a = Args::parse();
    if a.demo_service {
        return ExitCode::from(kinfra::demo::run());
    }
    let demo = if a.demo {
        match std::env::current_exe() {
            Ok(p) => Some(p.display().to_string()),
            Err(e) => {
                eprintln!("kinfrad: --demo: cannot find this executable: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        None
    };
    kinfra::daemon::main(kinfra::daemon::DaemonArgs {
        config: a.config,
        overrides: kinfra::config::Overrides {
            listen: a.listen,
            control_socket: a.control_socket,
            state_dir: a.state_dir,
            demo,
        },
        check_config: a.check_config,
    })
}
