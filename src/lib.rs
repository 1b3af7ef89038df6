//! KInfra: a systemd-native front door for a host's services.
//!
//! The library holds the daemon; `kinfrad` is a thin binary over [`daemon::main`]. What kinfrad
//! and kinfractl share (the control protocol, its client, the default paths, time formatting)
//! is the `kinfra-proto` package, re-exported here as [`protocol`] and [`paths`]. See
//! ARCHITECTURE.md for the map.

pub use kinfra_proto::{self as protocol, paths};

pub mod app;
pub mod config;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod errors;
pub mod etcd;
pub mod eventlog;
pub mod model;
pub mod pages;
pub mod proxy;
pub mod state;
pub mod stop;
pub mod supervisor;
pub mod systemd;
pub mod upstream;
pub mod web;
