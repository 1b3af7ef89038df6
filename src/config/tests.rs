//! Unit tests of the top-level configuration: defaults, every key's errors, services and
//! `[page_config]`, command-line overrides.

use super::*;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml("kinfra.toml", text, &Overrides::default())
}

#[test]
fn empty_file_gives_defaults() {
    let c = load("").expect("valid");
    assert_eq!(
        c.listen,
        vec!["127.0.0.1:9100".parse::<SocketAddr>().expect("addr")]
    );
    assert_eq!(c.shutdown_grace, Duration::from_secs(10));
    assert_eq!(c.control_group, "kinfra");
}

#[test]
fn full_file() {
    let c = load(
        r#"
listen = ["127.0.0.1:8080", "[::1]:8080"]
control_socket = "/run/x/control.sock"
state_dir = "/var/lib/x"
templates_dir = "/etc/x/templates"
admin_token_file = "/etc/x/token"
shutdown_grace = "3s"
control_group = "ops"
"#,
    )
    .expect("valid");
    assert_eq!(c.listen.len(), 2);
    assert_eq!(c.control_socket, PathBuf::from("/run/x/control.sock"));
    assert_eq!(c.token_path(), PathBuf::from("/etc/x/token"));
    assert_eq!(c.shutdown_grace, Duration::from_secs(3));
}

#[test]
fn errors_name_file_and_key() {
    let e = load("listen = [\"nope\"]")
        .expect_err("invalid")
        .to_string();
    assert!(
        e.contains("kinfra.toml") && e.contains("`listen`") && e.contains("nope"),
        "{e}"
    );
    let e = load("state_dir = \"relative/dir\"")
        .expect_err("invalid")
        .to_string();
    assert!(e.contains("`state_dir`") && e.contains("absolute"), "{e}");
    let e = load("shutdown_grace = \"soon\"")
        .expect_err("invalid")
        .to_string();
    assert!(e.contains("`shutdown_grace`"), "{e}");
    let e = load("listen = [\"127.0.0.1:1\", \"127.0.0.1:1\"]")
        .expect_err("dup")
        .to_string();
    assert!(e.contains("twice"), "{e}");
    let e = load(&format!("control_socket = \"/{}\"", "a".repeat(200)))
        .expect_err("long")
        .to_string();
    assert!(e.contains("`control_socket`") && e.contains("107"), "{e}");
}

#[test]
fn health_cache_ttl_is_a_bounded_duration() {
    assert_eq!(
        load("").expect("default").health_cache_ttl,
        Duration::from_secs(1)
    );
    let c = load("health_cache_ttl = \"0s\"").expect("zero");
    assert!(c.health_cache_ttl.is_zero());
    let c = load("health_cache_ttl = \"250ms\"").expect("ms");
    assert_eq!(c.health_cache_ttl, Duration::from_millis(250));
    for (bad, why) in [
        ("\"soon\"", "not a duration"),
        ("\"6m\"", "5m maximum"),
        ("30", ""),
    ] {
        let e = load(&format!("health_cache_ttl = {bad}"))
            .expect_err(bad)
            .to_string();
        assert!(
            e.contains("health_cache_ttl") && e.contains(why),
            "{bad}: {e}"
        );
    }
}

#[test]
fn unknown_key_is_named() {
    let e = load("lisen = [\"127.0.0.1:1\"]")
        .expect_err("unknown")
        .to_string();
    assert!(e.contains("kinfra.toml") && e.contains("lisen"), "{e}");
}

#[test]
fn syntax_error_has_location() {
    let e = load("listen = [").expect_err("syntax").to_string();
    assert!(e.contains("kinfra.toml") && e.contains("line"), "{e}");
}

#[test]
fn services_and_page_config() {
    let c = load(
        r#"
[[service]]
name = "api"
url = "http://127.0.0.1:8000"
routes = ["/api/", "api.example.com/"]
health_check = { path = "/health", interval = "5s", timeout = "1s" }
fallback_page = "loading"

[[service]]
name = "web"
url = "http://127.0.0.1:8001"
routes = ["/"]

[page_config]
build_version = "1.2.3"
"#,
    )
    .expect("valid");
    assert_eq!(c.services.len(), 2);
    assert_eq!(c.page_config["build_version"], "1.2.3");
    let e = load("[[service]]\nname=\"a\"\nurl=\"http://x\"\nroutes=[\"/\"]\n[[service]]\nname=\"a\"\nurl=\"http://y\"\nroutes=[\"/b\"]")
        .expect_err("dup")
        .to_string();
    assert!(
        e.contains("service[1].name") && e.contains("already used"),
        "{e}"
    );
    let e = load("[[service]]\nname=\"a\"\nurl=\"http://x\"\nroutes=[\"/\"]\n[[service]]\nname=\"b\"\nurl=\"http://y\"\nroutes=[\"/\"]")
        .expect_err("dup route")
        .to_string();
    assert!(
        e.contains("(b).routes") && e.contains("already served"),
        "{e}"
    );
    let e = load("[[service]]\nname=\"a\"\nurl=\"http://x\"\nroutes=[\"/\"]\nbogus=1")
        .expect_err("unknown")
        .to_string();
    assert!(e.contains("bogus"), "{e}");
    let e = load("[page_config]\nservice_name = \"x\"")
        .expect_err("reserved")
        .to_string();
    assert!(e.contains("page_config.service_name"), "{e}");
    assert_eq!(
        load("dashboard_access = \"public\"")
            .expect("ok")
            .dashboard_access,
        DashboardAccess::Public
    );
    let e = load("dashboard_access = \"everyone\"")
        .expect_err("bad access")
        .to_string();
    assert!(
        e.contains("dashboard_access") && e.contains("loopback"),
        "{e}"
    );
    // `metrics_access` follows `dashboard_access` unless set, and is checked the same way.
    let c = load("dashboard_access = \"login\"").expect("ok");
    assert_eq!(c.metrics_access, DashboardAccess::Login);
    let c = load("dashboard_access = \"login\"\nmetrics_access = \"public\"").expect("ok");
    assert_eq!(c.metrics_access, DashboardAccess::Public);
    let e = load("metrics_access = \"all\"")
        .expect_err("bad metrics access")
        .to_string();
    assert!(
        e.contains("metrics_access") && e.contains("loopback"),
        "{e}"
    );
    let c = load("dashboard_hosts = [\"Box.Lan\", \"kinfra.test.\"]").expect("hosts");
    assert_eq!(c.dashboard_hosts, ["box.lan", "kinfra.test"]);
    assert!(load("").expect("default").dashboard_hosts.is_empty());
    for bad in [
        "\"box.lan:9100\"",
        "\"\"",
        "\"a..b\"",
        "\"192.0.2.1\"",
        "\"[::1]\"",
        "\"*.lan\"",
    ] {
        let e = load(&format!("dashboard_hosts = [{bad}]"))
            .expect_err(bad)
            .to_string();
        assert!(e.contains("dashboard_hosts"), "{bad}: {e}");
    }
    let e = load("max_header_bytes = 10")
        .expect_err("small")
        .to_string();
    assert!(e.contains("max_header_bytes"), "{e}");
}

#[test]
fn flags_override_file() {
    let ov = Overrides {
        listen: vec!["127.0.0.1:7000".into()],
        control_socket: Some(PathBuf::from("/tmp/c.sock")),
        state_dir: Some(PathBuf::from("/tmp/st")),
        demo: None,
    };
    let c = Config::from_toml("f.toml", "listen = [\"127.0.0.1:1\"]", &ov).expect("valid");
    assert_eq!(c.listen[0].port(), 7000);
    assert_eq!(c.state_dir, PathBuf::from("/tmp/st"));
    let bad = Overrides {
        listen: vec!["x".into()],
        ..Overrides::default()
    };
    let e = Config::from_toml("f.toml", "", &bad)
        .expect_err("bad flag")
        .to_string();
    assert!(e.contains("--listen"), "{e}");
}

#[test]
fn missing_explicit_file_is_an_error() {
    let e = Config::load(
        Some(Path::new("/nonexistent/kinfra.toml")),
        &Overrides::default(),
    )
    .expect_err("missing")
    .to_string();
    assert!(
        e.contains("/nonexistent/kinfra.toml") && e.contains("cannot read"),
        "{e}"
    );
}
