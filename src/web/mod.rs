//! kinfrad's own HTTP endpoints: the router, the admin API (with the drain's), the dashboard and
//! its login, the status JSON, the server-sent event streams and `/metrics`. Reads `App`; reaches the
//! request path only through `proxy`'s front door and shared answers.

pub mod api;
pub mod auth;
pub mod bypass;
pub mod dashboard;
pub mod drain;
pub mod eventlog;
pub mod events;
pub mod health;
pub mod metrics;
pub mod router;
pub mod schedule;
pub mod status;
