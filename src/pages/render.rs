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
    pub status_message: String,
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

    /// The maintenance page for `m`.
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

    /// A service's fallback page (`kind`: loading, live, 503 or maintenance).
    pub fn render_fallback(&self, kind: &str, f: &FallbackFacts) -> Result<Bytes, String> {
        if kind == "maintenance" {
            let m = Maintenance::begin(
                crate::model::maintenance::Change {
                    message: Some(f.status_message.clone()),
                    ..Default::default()
                },
                crate::model::now_ms(),
            );
            let mut ctx = Context::new();
            ctx.insert("message", &m.message);
            ctx.insert("current_issue", &f.display_name);
            ctx.insert("start_time_ms", &m.start_time_ms);
            ctx.insert("start_time_iso", &iso(m.start_time_ms));
            ctx.insert("eta_ms", &0u64);
            ctx.insert("retry_after", &f.refresh_interval);
            ctx.insert("status_url", STATUS_URL);
            ctx.insert("version", version());
            return self.render("maintenance.html", &ctx);
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
        ctx.insert("port", &f.port);
        ctx.insert("pid", &f.pid);
        ctx.insert("uptime", &f.uptime);
        ctx.insert("health_status", &f.health_status);
        ctx.insert("state", &f.state);
        ctx.insert("steps", &f.steps);
        ctx.insert("refresh_interval", &f.refresh_interval);
        ctx.insert("error_detail", &f.error_detail);
        ctx.insert("retry_after", &f.refresh_interval);
        ctx.insert(
            "status_url",
            &format!("{SERVICE_STATUS_URL}?service={}", f.id),
        );
        ctx.insert("version", version());
        self.render(name, &ctx)
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
