//! KInfra: a systemd-native front door for a host's services.
//!
//! The library holds everything; `kinfrad` and `kinfractl` are thin binaries over
//! [`daemon::main`] and [`cli::run`]. See ARCHITECTURE.md for the map.

pub mod app;
pub mod auth;
pub mod circuit;
pub mod cli;
pub mod client;
pub mod config;
pub mod control;
pub mod custom;
pub mod daemon;
pub mod dashboard;
pub mod demo;
pub mod events;
pub mod h1;
pub mod health;
pub mod http;
pub mod logging;
pub mod maintenance;
pub mod notify;
pub mod pages;
pub mod paths;
pub mod protocol;
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
