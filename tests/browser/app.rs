//! The upstream the fallback-page tests put behind kinfrad, with the configuration and status
//! helpers that go with it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use crate::LIVE;
use crate::common::{
    After, Daemon, Reply, Seen, Upstream, start_config, url_service, wait_service_until,
};
use serde_json::Value;

/// What the visitor asks for, and what the upstream's real page looks like.
pub const APP_PATH: &str = "/app/page?x=1";

pub const APP_TITLE: &str = "Upstream app";

pub const APP_MARKER: &str = "served-by-the-upstream-7c1e";

/// A small HTTP upstream on 127.0.0.1 (the harness's fake one): `GET /health` answers with a
/// status the test sets, `GET /app/page?x=1` with an HTML page holding `#app-marker`, anything
/// else 404, each with `Connection: close`. Every request target is recorded. Stops (and frees
/// its port) on drop.
pub struct AppServer {
    health: Arc<AtomicU16>,
    up: Upstream,
}

impl AppServer {
    /// Listen on 127.0.0.1:`port`, answering `/health` with `health`.
    pub fn start(port: u16, health: u16) -> AppServer {
        let health = Arc::new(AtomicU16::new(health));
        let h = health.clone();
        let up = Upstream::start(port, move |s: &Seen| app_reply(&s.target, &h));
        AppServer { health, up }
    }

    pub fn set_health(&self, status: u16) {
        self.health.store(status, Ordering::Relaxed);
    }

    /// How many requests for exactly `target` (path and query) arrived.
    pub fn hits(&self, target: &str) -> usize {
        self.up.receipts(target).len()
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The answer to `target`, with `Connection: close`.
fn app_reply(target: &str, health: &AtomicU16) -> Reply {
    let (status, ctype, body) = if target == "/health" {
        let code = health.load(Ordering::Relaxed);
        (code, "text/plain", format!("health {code}"))
    } else if target == APP_PATH {
        let body = format!(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\">\
             <title>{APP_TITLE}</title></head><body><h1 id=\"app-marker\">{APP_MARKER}</h1>\
             <p>The upstream saw <code id=\"app-target\">{}</code></p></body></html>",
            html_escape(target)
        );
        (200, "text/html; charset=utf-8", body)
    } else {
        (404, "text/plain", "not found".to_string())
    };
    let resp = format!(
        "HTTP/1.1 {status} Test\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    Reply::raw(resp.as_bytes(), After::Close)
}

/// A TOML basic string holding `s` (JSON's escapes are a subset of TOML's).
pub fn toml_str(s: &str) -> String {
    Value::from(s).to_string()
}

/// One `[[service]]` table for an upstream on 127.0.0.1:`port`, probed at `/health` every
/// 200 ms with a startup `grace`; `extra` are more `key = value` lines.
/// A health grace under which a service that never answers stays `starting` for a whole test,
/// however loaded the machine (30 s once ran out mid-test on a fresh clone's first run).
pub const STARTING: &str = "10m";

pub fn service(name: &str, port: u16, route: &str, grace: &str, extra: &[String]) -> String {
    let health = format!(
        "health_check = {{ path = \"/health\", interval = \"200ms\", timeout = \"500ms\", grace = \"{grace}\" }}"
    );
    url_service(
        name,
        port,
        &[route],
        &format!("{health}\n{}", extra.join("\n")),
    )
}

/// kinfrad with a `--config` file in its temp dir holding `services`.
pub fn daemon_with(services: &[String]) -> Daemon {
    start_config(tempfile::tempdir().expect("tmp"), &services.concat(), &[])
}

/// `/__status__?service=NAME` once `state` is what it reports.
pub fn wait_state(d: &Daemon, name: &str, state: &str) -> Value {
    let what = format!("/__status__ to say {name} is {state}");
    wait_service_until(d, name, &what, LIVE, |v| v["state"] == state)
}
