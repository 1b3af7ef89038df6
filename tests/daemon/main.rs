//! End-to-end tests of the real kinfrad and kinfractl binaries over loopback: socket activation
//! by name, sd_notify, signals, persistence across kill -9, corrupt state, hostile control input,
//! the HTTP API and the custom maintenance page. One file a theme; the harness they share is in
//! tests/common.

#[path = "../common/mod.rs"]
mod common;

mod config;
mod control;
mod custom_page;
mod events;
mod health_api;
mod lifecycle;
mod line_protocol;
mod maintenance;
mod schedule;

use std::time::Duration;

/// How long the tests wait for kinfrad to get somewhere.
const T: Duration = Duration::from_secs(10);
