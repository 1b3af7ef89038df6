//! Rendering: what each page is given (its tera context) and the bodies it produces, plus the
//! facts a fallback page shows and the JSON that is safe inside a page's script.

use bytes::Bytes;
use tera::Context;

use super::{HEALTH_URL, Pages, SERVICE_STATUS_URL, STATUS_URL, is_partial};
use crate::model::maintenance::Maintenance;
use crate::protocol::fmt::iso;

/// What a fallback page shows about one service (all text, as the services' status JSON has it).
#[derive(Debug, Clone, serde::Serialize)]
pub struct FallbackFacts {
    pub id: String,
    pub display_name: String,
    /// What the current state says (as `/__status__` has it).
    pub status_message: String,
    /// The operator's `fallback_message`, shown in every state ("" when not configured).
    pub fallback_message: String,
    /// Since when the service has been unable to serve, in ms since the epoch (0: not known).
    pub down_since_ms: u64,
    pub port: String,
    pub pid: String,
    pub uptime: String,
    pub health_status: String,
    pub state: String,
    pub steps: Vec<crate::model::Step>,
    pub refresh_interval: u32,
    pub error_detail: String,
}

impl FallbackFacts {
    pub(super) fn sample() -> FallbackFacts {
        FallbackFacts {
            id: "api".into(),
            display_name: "API".into(),
            status_message: "Starting".into(),
            fallback_message: "Back soon".into(),
            down_since_ms: 1_750_000_000_000,
            port: "8000".into(),
            pid: String::new(),
            uptime: String::new(),
            health_status: "Starting".into(),
            state: "starting".into(),
            steps: vec![crate::model::Step {
                text: "Health check".into(),
                status: "active",
            }],
            refresh_interval: 5,
            error_detail: String::new(),
        }
    }
}

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// JSON that is safe inside `<script type="application/json">` (inserted with `| safe`): no
/// `<`, `>` or `&` (so no `</script>` or `<!--`), and no U+2028/U+2029.
pub fn script_json(v: &serde_json::Value) -> String {
    let s = v.to_string();
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

impl Pages {
    pub(super) fn render_landing(&self) -> Result<Bytes, String> {
        let mut ctx = Context::new();
        ctx.insert("version", version());
        ctx.insert("status_url", STATUS_URL);
        ctx.insert("health_url", HEALTH_URL);
        self.render("landing.html", &ctx)
    }

    /// The maintenance page for `m`: served because of maintenance, so it polls the maintenance
    /// status and reloads when maintenance ends.
    pub fn render_maintenance(&self, m: &Maintenance, now_ms: u64) -> Result<Bytes, String> {
        self.render_maintenance_at(m, now_ms, STATUS_URL)
    }

    /// The maintenance page for `m`, polling its status at `status_url` (a record other than
    /// the global one asks for its own target).
    pub fn render_maintenance_at(
        &self,
        m: &Maintenance,
        now_ms: u64,
        status_url: &str,
    ) -> Result<Bytes, String> {
        let mut ctx = Context::new();
        ctx.insert("served_for", "maintenance");
        ctx.insert("service_id", "");
        ctx.insert("message", &m.message);
        ctx.insert("current_issue", &m.current_issue);
        ctx.insert("start_time_ms", &m.start_time_ms);
        ctx.insert("start_time_iso", &iso(m.start_time_ms));
        ctx.insert("eta_ms", &m.estimated_completion_ms.unwrap_or(0));
        ctx.insert("retry_after", &m.retry_after_secs(now_ms));
        ctx.insert("status_url", status_url);
        ctx.insert("version", version());
        self.render("maintenance.html", &ctx)
    }

    /// The page a drain's refused browsers get (`d`: the drain, rendered when it starts).
    pub fn render_drain(&self, d: &crate::model::drain::Drain) -> Result<Bytes, String> {
        let mut ctx = Context::new();
        ctx.insert("start_time_ms", &d.start_ms);
        ctx.insert("start_time_iso", &iso(d.start_ms));
        ctx.insert("drain_end_ms", &d.end_ms());
        ctx.insert("drain_end_iso", &iso(d.end_ms()));
        ctx.insert("retry_after", &crate::model::drain::RETRY_AFTER_SECS);
        ctx.insert("version", version());
        self.render("drain.html", &ctx)
    }

    /// A service's fallback page (`kind`: loading, live, 503 or maintenance).
    pub fn render_fallback(&self, kind: &str, f: &FallbackFacts) -> Result<Bytes, String> {
        let status_url = format!("{SERVICE_STATUS_URL}?service={}", f.id);
        if kind == "maintenance" {
            return self.render_maintenance_look(f, &status_url);
        }
        let name = match kind {
            "loading" => "loading.html",
            "live" => "live.html",
            _ => "503.html",
        };
        let mut ctx = Context::new();
        ctx.insert("service_id", &f.id);
        ctx.insert("service_name", &f.display_name);
        ctx.insert("status_message", &f.status_message);
        ctx.insert("fallback_message", &f.fallback_message);
        ctx.insert("port", &f.port);
        ctx.insert("pid", &f.pid);
        ctx.insert("uptime", &f.uptime);
        ctx.insert("health_status", &f.health_status);
        ctx.insert("state", &f.state);
        ctx.insert("steps", &f.steps);
        ctx.insert("refresh_interval", &f.refresh_interval);
        ctx.insert("error_detail", &f.error_detail);
        ctx.insert("retry_after", &f.refresh_interval);
        ctx.insert("status_url", &status_url);
        ctx.insert("version", version());
        self.render(name, &ctx)
    }

    /// `fallback_page = "maintenance"`: the maintenance page's look for a service that cannot
    /// answer. It is not maintenance, so the page polls the service's status (not the
    /// maintenance status, which says maintenance is off) and returns to the service once it is
    /// healthy, like the other fallback pages. It shows the operator's message, else what the
    /// state says, and since when the service has been out (the row is hidden when unknown).
    fn render_maintenance_look(
        &self,
        f: &FallbackFacts,
        status_url: &str,
    ) -> Result<Bytes, String> {
        let message = if f.fallback_message.is_empty() {
            &f.status_message
        } else {
            &f.fallback_message
        };
        // Only for its message: an empty one reads as the maintenance page's default text.
        let m = Maintenance::begin(
            crate::model::maintenance::Change {
                message: Some(message.clone()),
                ..Default::default()
            },
            0,
        );
        let mut ctx = Context::new();
        ctx.insert("served_for", "fallback");
        ctx.insert("service_id", &f.id);
        ctx.insert("message", &m.message);
        ctx.insert("current_issue", &f.display_name);
        ctx.insert("start_time_ms", &f.down_since_ms);
        let since = if f.down_since_ms > 0 {
            iso(f.down_since_ms)
        } else {
            String::new()
        };
        ctx.insert("start_time_iso", &since);
        ctx.insert("eta_ms", &0u64);
        ctx.insert("retry_after", &f.refresh_interval);
        ctx.insert("status_url", status_url);
        ctx.insert("version", version());
        self.render("maintenance.html", &ctx)
    }

    /// The multi-service status grid.
    pub fn render_status(&self, services: &[FallbackFacts]) -> Result<Bytes, String> {
        #[derive(serde::Serialize)]
        struct Card<'a> {
            id: &'a str,
            name: &'a str,
            state: &'a str,
            status_message: &'a str,
            port: &'a str,
            health_status: &'a str,
            uptime: &'a str,
        }
        let cards: Vec<Card<'_>> = services
            .iter()
            .map(|f| Card {
                id: &f.id,
                name: &f.display_name,
                state: &f.state,
                status_message: &f.status_message,
                port: &f.port,
                health_status: &f.health_status,
                uptime: &f.uptime,
            })
            .collect();
        let mut ctx = Context::new();
        ctx.insert("services", &cards);
        ctx.insert("version", version());
        ctx.insert("status_url", SERVICE_STATUS_URL);
        self.render("status.html", &ctx)
    }

    /// The dashboard (`/kinfra`) with its first data (a `statusUpdate` document).
    pub fn render_dashboard(
        &self,
        initial: &serde_json::Value,
        logged_in: bool,
        access: &str,
    ) -> Result<Bytes, String> {
        let mut ctx = Context::new();
        ctx.insert("version", version());
        ctx.insert("initial_json", &script_json(initial));
        ctx.insert("logged_in", &logged_in);
        ctx.insert("access", access);
        self.render("dashboard.html", &ctx)
    }

    /// A service's full log (`/__logs__/{service}`).
    pub fn render_logs(
        &self,
        id: &str,
        name: &str,
        supervised: bool,
        initial: &serde_json::Value,
    ) -> Result<Bytes, String> {
        let mut ctx = Context::new();
        ctx.insert("version", version());
        ctx.insert("service_id", id);
        ctx.insert("service_name", name);
        ctx.insert("supervised", &supervised);
        ctx.insert("initial_json", &script_json(initial));
        self.render("logs.html", &ctx)
    }

    /// The login form (`error`: why the last try failed; `next`: a local path).
    pub fn render_login(&self, error: &str, next: &str) -> Result<Bytes, String> {
        let mut ctx = Context::new();
        ctx.insert("version", version());
        ctx.insert("error", error);
        ctx.insert("next", next);
        self.render("login.html", &ctx)
    }

    pub(super) fn render(&self, name: &str, ctx: &Context) -> Result<Bytes, String> {
        if is_partial(name) {
            return Err(format!("template {name}: a partial, not a page"));
        }
        let mut full = self.extra.clone();
        full.extend(ctx.clone());
        let ctx = &full;
        self.tera
            .render(name, ctx)
            .map(Bytes::from)
            .map_err(|e| format!("template {name}: {}", crate::errors::error_chain(&e)))
    }
}
