//! The template table kinfrad embeds (and loads in this order), which names are partials, the
//! variables it reserves, and the URLs the pages poll: the facts about the templates themselves,
//! apart from loading and rendering them.

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
        "_reload.js.html",
        include_str!("../../templates/_reload.js.html"),
    ),
    (
        "_fallback.js.html",
        include_str!("../../templates/_fallback.js.html"),
    ),
    (
        "_events.js.html",
        include_str!("../../templates/_events.js.html"),
    ),
    (
        "_fleet.js.html",
        include_str!("../../templates/_fleet.js.html"),
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
    ("drain.html", include_str!("../../templates/drain.html")),
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
    "fallback_message",
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
    "served_for",
    "services",
    // The drain page's.
    "drain_end_ms",
    "drain_end_iso",
    // Set by the fallback pages' layout, _fallback.html.
    "title_before",
    "title_after",
    "state_label",
];

/// The JSON endpoint pages poll.
pub const STATUS_URL: &str = "/api/maintenance/status";
pub const HEALTH_URL: &str = "/health";
/// The services' status JSON, which the fallback and status pages poll.
pub const SERVICE_STATUS_URL: &str = "/__status__";
