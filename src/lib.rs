//! KInfra: a systemd-native front door for a host's services.
//!
//! The library holds the daemon; `kinfrad` is a thin binary over [`daemon::main`]. What kinfrad
//! and kinfractl share (the control protocol, its client, the default paths, time formatting)
//! is the `kinfra-proto` package, re-exported here as [`protocol`] and [`paths`]. See
//! ARCHITECTURE.md for the map.

pub use kinfra_proto::{self as protocol, paths};

pub mod app;
pub mod auth;
pub mod circuit;
pub mod config;
pub mod control;
pub mod custom;
pub mod daemon;
pub mod dashboard;
pub mod demo;
pub mod errors;
pub mod events;
pub mod h1;
pub mod health;
pub mod http;
pub mod logging;
pub mod maintenance;
pub mod notify;
pub mod pages;
pub mod proxy;
pub mod routes;
pub mod service;
pub mod sockets;
pub mod state;
pub mod status;
pub mod stop;
pub mod supervise;
pub mod token;
pub mod upstream;
