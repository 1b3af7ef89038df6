//! kinfractl: the operator CLI. All logic lives in the library (`kinfra::cli`).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    kinfra::cli::run(kinfra::cli::Cli::parse())
}
