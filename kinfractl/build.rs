//! kinfractl's man pages and shell completions, from its clap definition (packaging/assets.rs
//! says where they go and why).

#![allow(dead_code)]

#[path = "src/args.rs"]
mod args;
#[path = "../packaging/assets.rs"]
mod assets;
#[path = "src/schedule.rs"]
mod schedule;

use clap::CommandFactory;

fn main() -> std::io::Result<()> {
    for f in ["src/args.rs", "src/schedule.rs", "../packaging/assets.rs"] {
        println!("cargo::rerun-if-changed={f}");
    }
    assets::write(args::Cli::command(), "kinfractl")
}
