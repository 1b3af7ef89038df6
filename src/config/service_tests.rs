//! Unit tests of `[[service]]` validation and its value parsers: defaults, every key's errors,
//! sizes and upstream URLs.

use super::*;

fn raw(text: &str) -> RawService {
    toml::from_str(text).expect("raw service")
}

#[test]
fn seed_shape_parses_with_defaults() {
    let s = ServiceConfig::from_raw(
        0,
        &raw(r#"
name = "api"
url = "http://127.0.0.1:8000"
routes = ["/api/", "api.example.com/"]
health_check = { path = "/health", interval = "5s", timeout = "1s" }
fallback_page = "loading"
fallback_message = "Building Go binary and starting server..."
fallback_refresh_interval = 5
"#),
    )
    .expect("valid");
    assert_eq!(s.routes.len(), 2);
    assert_eq!(
        s.health.kind,
        ProbeKind::Http {
            path: "/health".into(),
            expect: (200, 399)
        }
    );
    assert_eq!(s.fallback.page, FallbackPage::Loading);
    assert_eq!(
        s.fallback.operator_message.as_deref(),
        Some("Building Go binary and starting server...")
    );
    assert_eq!(s.url.port, 8000);
    assert!(s.fallback.enabled);
}

#[test]
fn errors_name_the_key() {
    let cases = [
        ("url = \"http://x\"\nroutes=[\"/\"]", "service[0].name"),
        (
            "name = \"a b\"\nurl = \"http://x\"\nroutes=[\"/\"]",
            "(a b).name",
        ),
        ("name = \"a\"\nroutes=[\"/\"]", "(a).url"),
        ("name = \"a\"\nurl = \"ftp://x\"\nroutes=[\"/\"]", "(a).url"),
        ("name = \"a\"\nurl = \"http://x\"", "(a).routes"),
        (
            "name = \"a\"\nurl = \"http://x\"\nroutes=[\"nope\"]",
            "(a).routes",
        ),
        (
            "name = \"a\"\nurl = \"http://x\"\nroutes=[\"/\"]\nfallback_page = \"pretty\"",
            "(a).fallback_page",
        ),
        (
            "name = \"a\"\nurl = \"http://x\"\nroutes=[\"/\"]\nhealth_check = { interval = \"1ms\" }",
            "health_check.interval",
        ),
        (
            "name = \"a\"\nurl = \"http://x\"\nroutes=[\"/\"]\nhealth_check = { path = \"/h\", expect_status = \"600\" }",
            "expect_status",
        ),
        (
            "name = \"a\"\nurl = \"http://x\"\nroutes=[\"/\"]\ncircuit_breaker = { error_ratio = 2.0 }",
            "error_ratio",
        ),
        (
            "name = \"a\"\nurl = \"http://x\"\nroutes=[\"/\"]\nmax_request_body = \"10 parsecs\"",
            "max_request_body",
        ),
        (
            "name = \"a\"\nurl = \"http://x\"\nroutes=[\"/\"]\nfallback_refresh_interval = 0",
            "fallback_refresh_interval",
        ),
    ];
    for (text, key) in cases {
        let e = ServiceConfig::from_raw(0, &raw(text)).expect_err(text);
        assert!(e.0.contains(key), "{text}: {e:?}");
    }
}

#[test]
fn sizes() {
    assert_eq!(
        parse_size(&toml::Value::String("10MB".into())),
        Ok(10_000_000)
    );
    assert_eq!(parse_size(&toml::Value::String("1GiB".into())), Ok(1 << 30));
    assert_eq!(parse_size(&toml::Value::Integer(5)), Ok(5));
    assert!(parse_size(&toml::Value::Integer(-5)).is_err());
}

#[test]
fn upstream_urls() {
    let u = parse_upstream_url("http://127.0.0.1:8000/app/").expect("ok");
    assert_eq!(u.base_path, "/app");
    assert!(parse_upstream_url("http://h/?q=1").is_err());
    assert!(parse_upstream_url("unix:/x").is_err());
    assert_eq!(parse_upstream_url("https://h").expect("ok").port, 443);
}

#[test]
fn only_a_written_fallback_message_is_the_operators() {
    let base = "name = \"a\"\nurl = \"http://x\"\nroutes=[\"/\"]\n";
    let s = ServiceConfig::from_raw(0, &raw(base)).expect("valid");
    assert_eq!(s.fallback.operator_message, None);
    assert_eq!(s.fallback.message, "Service is starting up…");
    let s = ServiceConfig::from_raw(0, &raw(&format!("{base}fallback_message = \"  \"")))
        .expect("valid");
    assert_eq!(s.fallback.operator_message, None);
    assert_eq!(s.fallback.message, "");
    let s = ServiceConfig::from_raw(0, &raw(&format!("{base}fallback_message = \" Soon \"")))
        .expect("valid");
    assert_eq!(s.fallback.operator_message.as_deref(), Some("Soon"));
}

#[test]
fn critical_defaults_to_true_and_kinfrad_is_not_a_service_name() {
    let base = "url = \"http://127.0.0.1:8000\"\nroutes = [\"/\"]\n";
    let s = ServiceConfig::from_raw(0, &raw(&format!("name = \"api\"\n{base}"))).expect("valid");
    assert!(s.critical);
    let s = ServiceConfig::from_raw(
        0,
        &raw(&format!("name = \"api\"\ncritical = false\n{base}")),
    )
    .expect("valid");
    assert!(!s.critical);
    let (key, msg) =
        ServiceConfig::from_raw(0, &raw(&format!("name = \"kinfrad\"\n{base}"))).unwrap_err();
    assert_eq!(key, "service[0] (kinfrad).name");
    assert!(msg.contains("health API"), "{msg}");
    assert!(
        toml::from_str::<RawService>(&format!("name = \"x\"\ncritical = \"no\"\n{base}")).is_err()
    );
}
