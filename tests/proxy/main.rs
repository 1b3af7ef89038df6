//! End-to-end tests of the reverse proxy: the real kinfrad binary in front of real upstream
//! servers these tests run themselves on 127.0.0.1 (the fake upstream of `common::upstream`, a
//! tokio WebSocket echo server). Routing, header handling, keep-alive, fallback pages when an
//! upstream dies, fails mid-request or stalls, the circuit breaker, readiness gating, WebSocket
//! upgrades, streamed large bodies, hostile input and HTTP/2 clients, drains, maintenance records
//! per target (which record answers which route, hits per route), `/metrics` (every answer
//! counted the same on both paths); then the edge cases of
//! kinfrad's own HTTP/1.1 loop (pipelining, response framings, stale upstream connections,
//! broken upstream responses, `Connection: close`, vanishing clients, idle connections' memory).
//! One file a theme; the harness they share is in tests/common.
//!
//! `KINFRA_TEST_FAST_PATH=0` runs the whole binary against the hyper path (kinfrad started with
//! `KINFRA_FAST_PATH=0`); unset, kinfrad's HTTP/1.1 fast path serves plain HTTP/1.1.

#[path = "../common/mod.rs"]
mod common;

mod bodies;
mod bypass;
mod circuit;
mod clients;
mod drain;
mod fallback;
mod framing;
mod headers;
mod health_api;
mod hostile;
mod maintenance;
mod metrics;
mod pipelining;
mod pooling;
mod routing;
mod schedule;
mod upgrades;

/// What every theme file uses: the shared harness, with the names these tests have always
/// called its proxy helpers by.
mod prelude {
    pub use crate::common::*;
    pub use crate::common::{start_proxy as start, url_service as service};

    /// How long the tests wait for kinfrad or an upstream to get somewhere.
    pub const T: std::time::Duration = std::time::Duration::from_secs(10);
}
