//! kinfractl: the operator's CLI. Each subcommand is one control request of the same name.
//!
//! Exit codes: 0 success; 1 kinfrad refused the request (the message says why); 2 usage error;
//! 3 kinfrad could not be reached; 4 protocol error (version mismatch, garbled answer).

mod args;
mod events;
mod fleet;
mod render;
mod request;
mod schedule;

use std::process::ExitCode;

use clap::Parser;
use kinfra_proto::client::ClientError;
use kinfra_proto::paths;

use crate::args::Cli;
use crate::request::{Failure, execute};

const EXIT_REFUSED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_UNREACHABLE: u8 = 3;
const EXIT_PROTOCOL: u8 = 4;

fn main() -> ExitCode {
    run(Cli::parse())
}

/// Run kinfractl with parsed arguments; returns the process exit code.
fn run(cli: Cli) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kinfractl: cannot start: {e}");
            return ExitCode::from(EXIT_PROTOCOL);
        }
    };
    let path = match cli
        .socket
        .clone()
        .map_or_else(paths::default_client_socket, Ok)
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("kinfractl: {e}; give --socket or {}", paths::SOCKET_ENV);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match rt.block_on(execute(&cli, &path)) {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(Failure::Usage(m)) => {
            eprintln!("kinfractl: {m}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Client(e)) => {
            let code = match &e {
                ClientError::Unreachable { .. } => EXIT_UNREACHABLE,
                ClientError::Protocol(_) => EXIT_PROTOCOL,
                ClientError::Refused { .. } => EXIT_REFUSED,
            };
            if cli.json {
                let (kind, message) = match &e {
                    ClientError::Refused { code, message } => (code.clone(), message.clone()),
                    ClientError::Unreachable { .. } => ("unreachable".to_string(), e.to_string()),
                    ClientError::Protocol(_) => ("protocol".to_string(), e.to_string()),
                };
                println!(
                    "{}",
                    serde_json::json!({"error": {"code": kind, "message": message}})
                );
            }
            match e {
                ClientError::Unreachable { .. } => eprintln!(
                    "kinfractl: {e}. Is kinfrad running? Try 'systemctl status kinfra', or point --socket / KINFRA_SOCKET at its control socket."
                ),
                ClientError::Refused { code, message } => {
                    eprintln!("kinfractl: {message} ({code})")
                }
                ClientError::Protocol(_) => eprintln!("kinfractl: {e}"),
            }
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    /// kinfractl links kinfra-proto and never the daemon: none of the daemon's HTTP, TLS or
    /// template crates may reach its dependency tree.
    #[test]
    fn links_nothing_of_the_daemon() {
        let out = std::process::Command::new(env!("CARGO"))
            .args(["tree", "--locked", "--offline", "--prefix", "none"])
            .args([
                "--edges",
                "normal,build",
                "-p",
                "kinfractl",
                "--manifest-path",
            ])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .output()
            .expect("run cargo tree");
        let tree = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && tree.contains("kinfra-proto"),
            "cargo tree -p kinfractl: {}{tree}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The daemon package itself, and its HTTP, TLS and template crates with their families
        // (axum-core, hyper-util, rustls-native-certs, ...).
        let daemon_only = |name: &str| {
            name == "kinfra"
                || ["axum", "hyper", "rustls", "tera"]
                    .iter()
                    .any(|d| name == *d || name.starts_with(&format!("{d}-")))
        };
        for line in tree.lines() {
            let name = line.split(' ').next().unwrap_or_default();
            assert!(!daemon_only(name), "kinfractl depends on {line}:\n{tree}");
        }
    }
}
