//! kinfrad's man page and shell completions, from its clap definition (packaging/assets.rs says
//! where they go and why).

#![allow(dead_code)]

#[path = "src/bin/kinfrad/args.rs"]
mod args;
#[path = "packaging/assets.rs"]
mod assets;

use clap::CommandFactory;

fn main() -> std::io::Result<()> {
    println!("cargo::rerun-if-changed=src/bin/kinfrad/args.rs");
    println!("cargo::rerun-if-changed=packaging/assets.rs");
    assets::write(args::Args::command(), "kinfrad")
}
