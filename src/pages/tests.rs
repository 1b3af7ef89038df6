//! The pages' tests: the embedded templates load, render and escape; operators' overrides,
//! partials, and the JSON put inside scripts.

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
        "drain.html",
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
    let escaped =
        "&lt;img src=x onerror=alert(1)&gt; &quot;Tom&quot; &amp; &#39;Jerry&#39; &lt;/title&gt;";
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
    assert!(
        html.contains("data-title-before=\"503 · \" data-title-after=\" is unavailable · KInfra\"")
    );
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

/// The `<p id="…">` element of `html` with its attributes and text, e.g. `<p id="lead" hidden>x`.
fn element<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("#{id} missing"));
    let start = html[..at].rfind('<').expect("tag start");
    let end = at + html[at..].find("</").expect("tag end");
    &html[start..end]
}

#[test]
fn the_operators_message_shows_in_every_fallback_state() {
    let p = Pages::load(None).expect("load");
    let mut f = FallbackFacts::sample();
    f.fallback_message = "We are upgrading & back by noon".into();
    // A service that was up and died: the state's own words beside the operator's, which take
    // the place of the 503 page's generic lead.
    f.state = "down".into();
    f.status_message = "Service is not answering".into();
    for kind in ["loading", "live", "503"] {
        let html = text(p.render_fallback(kind, &f).expect(kind));
        assert_eq!(
            element(&html, "fallback-message"),
            "<p id=\"fallback-message\">We are upgrading &amp; back by noon",
            "{kind}"
        );
        assert_eq!(
            element(&html, "status-message"),
            "<p id=\"status-message\">Service is not answering",
            "{kind}"
        );
    }
    let html = text(p.render_fallback("503", &f).expect("503"));
    assert!(element(&html, "lead").contains(" hidden>"), "{html}");
    // Starting, the state says the operator's words itself: shown once.
    f.state = "starting".into();
    f.status_message = f.fallback_message.clone();
    let html = text(p.render_fallback("503", &f).expect("503"));
    assert_eq!(
        element(&html, "fallback-message"),
        "<p id=\"fallback-message\" hidden>"
    );
    assert!(element(&html, "status-message").ends_with(">We are upgrading &amp; back by noon"));
    // No message configured: the generic lead, no operator's line.
    f.fallback_message.clear();
    f.status_message = "Service is not answering".into();
    let html = text(p.render_fallback("503", &f).expect("503"));
    assert!(!element(&html, "lead").contains("hidden"), "{html}");
    assert!(element(&html, "fallback-message").contains(" hidden>"));
}

#[test]
fn the_maintenance_page_knows_why_it_was_served() {
    let p = Pages::load(None).expect("load");
    // Real maintenance: it follows the maintenance status.
    let m = Maintenance::begin(Change::default(), 1_750_000_000_000);
    let html = text(p.render_maintenance(&m, 1_750_000_000_000).expect("render"));
    assert!(html.contains("data-status-url=\"/api/maintenance/status\""));
    assert!(html.contains("data-served-for=\"maintenance\" data-service=\"\""));
    assert!(!element(&html, "start-row").contains("hidden"));

    // A service's fallback with the maintenance look: it follows the service, and shows the
    // operator's message, else the state's words.
    let mut f = FallbackFacts::sample();
    f.fallback_message = "Back after the upgrade".into();
    let html = text(p.render_fallback("maintenance", &f).expect("render"));
    assert!(html.contains("data-status-url=\"/__status__?service=api\""));
    assert!(html.contains("data-served-for=\"fallback\" data-service=\"api\""));
    assert_eq!(
        element(&html, "message"),
        "<p id=\"message\">Back after the upgrade"
    );
    assert!(html.contains("data-start=\"1750000000000\""));
    assert!(html.contains("function readyReload("));
    f.fallback_message.clear();
    f.status_message = "Service is not answering".into();
    f.down_since_ms = 0;
    let html = text(p.render_fallback("maintenance", &f).expect("render"));
    assert_eq!(
        element(&html, "message"),
        "<p id=\"message\">Service is not answering"
    );
    // Since when is not known: no "Started" row rather than a made-up time.
    assert!(element(&html, "start-row").contains(" hidden>"));
}
