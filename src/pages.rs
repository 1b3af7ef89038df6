//! Themed pages rendered with tera: embedded templates, overridable file by file from
//! `templates_dir`. Bodies are rendered when state changes, never per request.

use std::path::Path;

use bytes::Bytes;
use tera::{Context, Tera};

use crate::maintenance::Maintenance;

/// Template names and their embedded sources.
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "maintenance.html",
        include_str!("../templates/maintenance.html"),
    ),
    ("landing.html", include_str!("../templates/landing.html")),
];

/// The JSON endpoint pages poll.
pub const STATUS_URL: &str = "/api/maintenance/status";
pub const HEALTH_URL: &str = "/health";

/// Loaded templates plus the bodies that do not depend on state.
pub struct Pages {
    tera: Tera,
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

/// RFC 3339 UTC for a Unix time in ms.
pub fn iso(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

impl Pages {
    /// Load the embedded templates, then any overrides, and prove each renders.
    pub fn load(templates_dir: Option<&Path>) -> Result<Pages, String> {
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
            tera.add_raw_template(name, &text)
                .map_err(|e| format!("template {name} ({from}): {}", error_chain(&e)))?;
            sources.push((name.to_string(), from));
        }
        if let Some(d) = templates_dir
            && !d.is_dir()
        {
            return Err(format!("templates_dir {}: not a directory", d.display()));
        }
        let mut pages = Pages {
            tera,
            sources,
            landing: Bytes::new(),
        };
        pages.landing = pages.render_landing()?;
        // Prove the maintenance template renders with every variable it may use.
        let sample = Maintenance::begin(Default::default(), 1_750_000_000_000);
        pages.render_maintenance(&sample, 1_750_000_000_000)?;
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

    fn render(&self, name: &str, ctx: &Context) -> Result<Bytes, String> {
        self.tera
            .render(name, ctx)
            .map(Bytes::from)
            .map_err(|e| format!("template {name}: {}", error_chain(&e)))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maintenance::Change;

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
}
