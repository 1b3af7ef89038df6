//! The dashboard's HTTP side, through the real kinfrad over loopback: actions and their
//! authorisation (token, login cookie, cross-site refusal), the live event stream
//! (`/__events__`: state changes, countdown, log tail), the seed-002 route and maintenance
//! APIs, `dashboard_access`, escaping, and shutdown with streams open. The page itself is
//! tested in Chromium (tests/dashboard_browser.rs). One file a theme; the harness they share is
//! in tests/common.

#[path = "../common/mod.rs"]
mod common;

mod access;
mod actions;
mod events;

use std::time::Duration;

/// How long the tests wait for kinfrad or a service to get somewhere.
const T: Duration = Duration::from_secs(15);
