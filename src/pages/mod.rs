//! Themed pages rendered with tera: embedded templates, overridable file by file from
//! `templates_dir`. Bodies are rendered when state changes, never per request. This file loads
//! them; `templates` holds the template table, `render` what each page is given.

mod render;
mod templates;
#[cfg(test)]
mod tests;

use std::path::Path;

use bytes::Bytes;
use tera::{Context, Tera};

use crate::model::maintenance::Maintenance;

pub use render::{FallbackFacts, script_json};
pub use templates::{EMBEDDED, HEALTH_URL, RESERVED, SERVICE_STATUS_URL, STATUS_URL, is_partial};

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
        let drain = crate::model::drain::Drain::begin(
            crate::model::drain::DrainTarget::All,
            60_000,
            1_750_000_000_000,
        )
        .map_err(|e| e.to_string())?;
        pages.render_drain(&drain)?;
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
}
