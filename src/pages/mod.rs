//! Themed pages rendered with tera: embedded templates, overridable file by file from
//! `templates_dir`. Bodies are rendered when state changes, never per request.

use std::path::Path;

use bytes::Bytes;
use tera::{Context, Tera};

use crate::model::maintenance::Maintenance;
use crate::protocol::fmt::iso;

/// Template names and their embedded sources, in the order they are loaded.
///
/// Names starting with `_` are partials: pieces the pages share through `{% extends %}` and
/// `{% include %}` (the layouts, the theme CSS, the scripts). kinfrad never renders one on its
/// own. Tera checks every `extends` and `include` as a template is added, so each partial comes
/// after the partials it uses, and all of them before the pages.
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "_theme.css.html",
        include_str!("../../templates/_theme.css.html"),
    ),
    (
        "_poll.js.html",
        include_str!("../../templates/_poll.js.html"),
    ),
    (
        "_states.js.html",
        include_str!("../../templates/_states.js.html"),
    ),
    (
        "_uptime.js.html",
        include_str!("../../templates/_uptime.js.html"),
    ),
    (
        "_fallback.js.html",
        include_str!("../../templates/_fallback.js.html"),
    ),
    (
        "_logs.css.html",
        include_str!("../../templates/_logs.css.html"),
    ),
    ("_base.html", include_str!("../../templates/_base.html")),
    (
        "_fallback.html",
        include_str!("../../templates/_fallback.html"),
    ),
    (
        "maintenance.html",
        include_str!("../../templates/maintenance.html"),
    ),
    ("landing.html", include_str!("../../templates/landing.html")),
    ("loading.html", include_str!("../../templates/loading.html")),
    ("live.html", include_str!("../../templates/live.html")),
    ("503.html", include_str!("../../templates/503.html")),
    ("status.html", include_str!("../../templates/status.html")),
    (
        "dashboard.html",
        include_str!("../../templates/dashboard.html"),
    ),
    ("logs.html", include_str!("../../templates/logs.html")),
    ("login.html", include_str!("../../templates/login.html")),
];

/// A partial (`_base.html`, `_theme.css.html`, …), as opposed to a page kinfrad renders.
pub fn is_partial(name: &str) -> bool {
    name.starts_with('_')
}

/// Variables kinfrad (or a layout) sets itself; `[page_config]` may not use these names.
pub const RESERVED: &[&str] = &[
    "service_id",
    "service_name",
    "status_message",
    "port",
    "pid",
    "uptime",
    "health_status",
    "state",
    "steps",
    "refresh_interval",
    "error_detail",
    "retry_after",
    "status_url",
    "health_url",
    "version",
    "message",
    "current_issue",
    "start_time_ms",
    "start_time_iso",
    "eta_ms",
    "services",
    // Set by the fallback pages' layout, _fallback.html.
    "title_before",
    "title_after",
    "state_label",
];

/// The JSON endpoint pages poll.
pub const STATUS_URL: &str = "/api/maintenance/status";
pub const HEALTH_URL: &str = "/health";
/// The services' status JSON (seed 000/001).
pub const SERVICE_STATUS_URL: &str = "/__status__";

/// What a fallback page shows about one service (all text, as the seeds' JSON has it).
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
    fn sample() -> FallbackFacts {
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

/// Loaded templates plus the bodies that do not depend on state.
pub struct Pages {
    tera: Tera,
    /// `[page_config]` variables, added to every context.
    extra: Context,
    /// `(template, where it came from)`, for the log and `--check-config`.
    pub sources: Vec<(String, String)>,
    pub landing: Bytes,
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages")
            .field("sources", &self.sources)
            .finish()
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
    /// Load the embedded templates, then any overrides, and prove each page renders (and with it
    /// every partial it uses).
    pub fn load(templates_dir: Option<&Path>) -> Result<Pages, String> {
        Self::load_with(templates_dir, &serde_json::Map::new())
    }

    /// Load with operator variables from `[page_config]`.
    pub fn load_with(
        templates_dir: Option<&Path>,
        page_config: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Pages, String> {
        let mut extra = Context::new();
        for (k, v) in page_config {
            extra.insert(k.clone(), v);
        }
        let mut tera = Tera::new();
        let mut sources = Vec::new();
        for (name, embedded) in EMBEDDED {
            let (text, from) = match templates_dir.map(|d| d.join(name)) {
                Some(p) if p.exists() => (
                    std::fs::read_to_string(&p)
                        .map_err(|e| format!("{}: cannot read: {e}", p.display()))?,
                    p.display().to_string(),
                ),
                _ => ((*embedded).to_string(), "embedded".to_string()),
            };
            tera.add_raw_template(name, &text).map_err(|e| {
                format!(
                    "template {name} ({from}): {}",
                    crate::errors::error_chain(&e)
                )
            })?;
            sources.push((name.to_string(), from));
        }
        if let Some(d) = templates_dir
            && !d.is_dir()
        {
            return Err(format!("templates_dir {}: not a directory", d.display()));
        }
        let mut pages = Pages {
            tera,
            extra,
            sources,
            landing: Bytes::new(),
        };
        pages.landing = pages.render_landing()?;
        // Prove the maintenance template renders with every variable it may use.
        let sample = Maintenance::begin(Default::default(), 1_750_000_000_000);
        pages.render_maintenance(&sample, 1_750_000_000_000)?;
        let snap = FallbackFacts::sample();
        for kind in ["loading", "live", "503", "maintenance"] {
            pages.render_fallback(kind, &snap)?;
        }
        pages.render_status(&[snap])?;
        let sample =
            serde_json::json!({"services": {}, "maintenance": {"isActive": false}, "routes": []});
        pages.render_dashboard(&sample, false, "loopback")?;
        let lines = serde_json::json!({"service": "x", "lines": [], "cursor": 0, "dropped": 0});
        pages.render_logs("x", "X", true, &lines)?;
        pages.render_login("", "/kinfra")?;
        Ok(pages)
    }

    fn render_landing(&self) -> Result<Bytes, String> {
        let mut ctx = Context::new();
        ctx.insert("version", version());
        ctx.insert("status_url", STATUS_URL);
        ctx.insert("health_url", HEALTH_URL);
        self.render("landing.html", &ctx)
    }

    /// The maintenance page for `m`.
    pub fn render_maintenance(&self, m: &Maintenance, now_ms: u64) -> Result<Bytes, String> {
        let mut ctx = Context::new();
        ctx.insert("message", &m.message);
        ctx.insert("current_issue", &m.current_issue);
        ctx.insert("start_time_ms", &m.start_time_ms);
        ctx.insert("start_time_iso", &iso(m.start_time_ms));
        ctx.insert("eta_ms", &m.estimated_completion_ms.unwrap_or(0));
        ctx.insert("retry_after", &m.retry_after_secs(now_ms));
        ctx.insert("status_url", STATUS_URL);
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

    fn render(&self, name: &str, ctx: &Context) -> Result<Bytes, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::maintenance::Change;

    #[test]
    fn embedded_templates_render_and_escape() {
        let p = Pages::load(None).expect("load");
        let html = String::from_utf8(p.landing.to_vec()).expect("utf8");
        assert!(html.contains("KInfra"));
        let m = Maintenance::begin(
            Change {
                message: Some("<script>alert(1)</script>".into()),
                current_issue: Some("Migrating \"db\"".into()),
                eta_ms: Some(Some(1_750_000_600_000)),
                ..Change::default()
            },
            1_750_000_000_000,
        );
        let body = p.render_maintenance(&m, 1_750_000_000_000).expect("render");
        let body = String::from_utf8(body.to_vec()).expect("utf8");
        assert!(!body.contains("<script>alert(1)"), "message not escaped");
        assert!(body.contains("&lt;script&gt;alert(1)"));
        assert!(body.contains("1750000600000"), "eta missing");
        for id in [
            "id=\"message\"",
            "id=\"countdown\"",
            "id=\"current-issue\"",
            "id=\"start-time\"",
        ] {
            assert!(body.contains(id), "{id} missing");
        }
    }

    #[test]
    fn overrides_and_bad_templates() {
        let d = tempfile::tempdir().expect("tmp");
        std::fs::write(d.path().join("landing.html"), "<p>custom {{ version }}</p>").expect("w");
        let p = Pages::load(Some(d.path())).expect("load");
        assert!(String::from_utf8_lossy(&p.landing).starts_with("<p>custom "));
        assert!(
            p.sources
                .iter()
                .any(|(n, f)| n == "landing.html" && f != "embedded")
        );
        std::fs::write(d.path().join("maintenance.html"), "{% if %}").expect("w");
        let e = Pages::load(Some(d.path())).expect_err("bad template");
        assert!(e.contains("maintenance.html"), "{e}");
        let e = Pages::load(Some(&d.path().join("nope"))).expect_err("missing dir");
        assert!(e.contains("not a directory"), "{e}");
    }

    #[test]
    fn script_json_cannot_end_the_script() {
        let v = serde_json::json!({"n": "</script><!-- & \u{2028}"});
        let s = script_json(&v);
        assert!(
            !s.contains('<') && !s.contains('>') && !s.contains('&'),
            "{s}"
        );
        assert!(!s.contains('\u{2028}'));
        let back: serde_json::Value = serde_json::from_str(&s).expect("still JSON");
        assert_eq!(back, v);
    }

    fn text(b: Bytes) -> String {
        String::from_utf8(b.to_vec()).expect("utf8")
    }

    #[test]
    fn partials_are_named_as_such_and_never_rendered_alone() {
        let p = Pages::load(None).expect("load");
        let names: Vec<&str> = EMBEDDED.iter().map(|(n, _)| *n).collect();
        let pages = [
            "maintenance.html",
            "landing.html",
            "loading.html",
            "live.html",
            "503.html",
            "status.html",
            "dashboard.html",
            "logs.html",
            "login.html",
        ];
        for n in &names {
            // Pages and partials alike end in .html, so tera escapes what they print.
            assert!(n.ends_with(".html"), "{n}");
            assert_eq!(is_partial(n), !pages.contains(n), "{n}");
            assert!(p.sources.iter().any(|(s, _)| s == n), "{n} not loaded");
        }
        for n in names.iter().filter(|n| is_partial(n)) {
            let e = p.render(n, &Context::new()).expect_err("partial rendered");
            assert!(e.contains("partial"), "{e}");
            // Each partial is used by some page (through extends or include).
            let used = EMBEDDED
                .iter()
                .any(|(_, src)| src.contains(&format!("\"{n}\"")));
            assert!(used, "{n} is used by no template");
        }
    }

    #[test]
    fn fallback_pages_escape_through_the_layout() {
        let p = Pages::load(None).expect("load");
        let hostile = "<img src=x onerror=alert(1)> \"Tom\" & 'Jerry' </title>";
        let mut f = FallbackFacts::sample();
        f.display_name = hostile.into();
        f.status_message = hostile.into();
        f.error_detail = hostile.into();
        f.state = "<b>odd</b>".into();
        let escaped = "&lt;img src=x onerror=alert(1)&gt; &quot;Tom&quot; &amp; &#39;Jerry&#39; &lt;/title&gt;";
        for (kind, title) in [
            (
                "loading",
                format!("<title>{escaped} is starting · KInfra</title>"),
            ),
            (
                "live",
                format!("<title>{escaped} · live status · KInfra</title>"),
            ),
            (
                "503",
                format!("<title>503 · {escaped} is unavailable · KInfra</title>"),
            ),
        ] {
            let html = text(p.render_fallback(kind, &f).expect(kind));
            assert!(!html.contains("<img"), "{kind}: not escaped");
            assert!(!html.contains("<b>odd"), "{kind}: state not escaped");
            assert!(html.contains(&title), "{kind}: title");
            assert!(html.contains(&format!(">{escaped}<")), "{kind}: heading");
            // The script gets the words around the name, to retitle a renamed service.
            assert!(html.contains(" data-title-after=\""), "{kind}: title parts");
            assert!(html.contains("function rename("), "{kind}: fallback script");
            assert!(html.contains("function poller("), "{kind}: poll helpers");
            assert!(html.contains("--accent: #5A8DEE"), "{kind}: theme");
        }
        let html = text(p.render_fallback("503", &f).expect("503"));
        assert!(html.contains(
            "data-title-before=\"503 · \" data-title-after=\" is unavailable · KInfra\""
        ));
        // The state's words, shared by the badge and the request path.
        let mut f = FallbackFacts::sample();
        f.state = "circuit_open".into();
        for kind in ["loading", "503"] {
            let html = text(p.render_fallback(kind, &f).expect(kind));
            assert!(html.contains(">Circuit open</"), "{kind}: state label");
        }
    }

    #[test]
    fn a_page_override_uses_the_embedded_partials_and_a_partial_can_be_overridden() {
        let d = tempfile::tempdir().expect("tmp");
        // An operator's loading page: the embedded layout, their own words.
        std::fs::write(
            d.path().join("loading.html"),
            "{% extends \"_fallback.html\" %}\
             {% block title_after %} warms up{% endblock title_after %}\
             {% block note %}Hold on, {{ service_name }}.{% endblock note %}",
        )
        .expect("w");
        let p = Pages::load(Some(d.path())).expect("load");
        let mut f = FallbackFacts::sample();
        f.display_name = "<Shop>".into();
        let html = text(p.render_fallback("loading", &f).expect("loading"));
        assert!(
            html.contains("<title>&lt;Shop&gt; warms up</title>"),
            "{html}"
        );
        assert!(html.contains("Hold on, &lt;Shop&gt;."));
        assert!(html.contains("--accent: #5A8DEE") && html.contains("function rename("));
        // An overridden partial reaches every page that uses it.
        std::fs::write(
            d.path().join("_theme.css.html"),
            ":root { --accent: #FF0000; } /* {{ version }} */",
        )
        .expect("w");
        let p = Pages::load(Some(d.path())).expect("load");
        assert!(
            p.sources
                .iter()
                .any(|(n, f)| n == "_theme.css.html" && f != "embedded")
        );
        let landing = text(p.landing.clone());
        assert!(landing.contains("--accent: #FF0000"), "{landing}");
        assert!(!landing.contains("#5A8DEE"));
        assert!(text(p.render_status(&[]).expect("status")).contains("#FF0000"));
        // A broken partial is reported by name, like a page.
        std::fs::write(d.path().join("_base.html"), "{% block body %}").expect("w");
        let e = Pages::load(Some(d.path())).expect_err("bad partial");
        assert!(e.contains("_base.html"), "{e}");
    }
}
