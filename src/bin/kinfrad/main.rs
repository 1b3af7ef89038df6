//! kinfrad: the daemon. All logic lives in the library (`kinfra::daemon`).

mod args;

use std::process::ExitCode;

use clap::Parser;

use crate::args::Args;

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
