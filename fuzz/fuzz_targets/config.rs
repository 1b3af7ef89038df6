//! The config parser (`Config::from_toml`: TOML, then validation of every key, services and
//! routes included). Beyond "no panic": every error names the file, and what validates holds
//! what validation promises.
#![no_main]

use std::collections::HashSet;

use kinfra::config::{Config, Overrides};
use kinfra::model::routes::{HostMatch, RouteSpec};
use kinfra::model::valid_name;
use libfuzzer_sys::fuzz_target;

const FILE: &str = "fuzz.toml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cfg = match Config::from_toml(FILE, text, &Overrides::default()) {
        Ok(c) => c,
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with(&format!("{FILE}: ")), "{msg}");
            return;
        }
    };
    assert!(!cfg.listen.is_empty());
    let listen: HashSet<_> = cfg.listen.iter().collect();
    assert_eq!(listen.len(), cfg.listen.len(), "an address listed twice");
    assert!((8192..=1024 * 1024).contains(&cfg.max_header_bytes));
    assert!(cfg.shutdown_grace.as_secs() <= 600);
    assert!(cfg.control_socket.is_absolute());
    assert!(cfg.control_socket.as_os_str().len() <= 107);
    for p in [
        &cfg.templates_dir,
        &cfg.upstream_ca_file,
        &cfg.admin_token_file,
    ]
    .into_iter()
    .flatten()
    {
        assert!(p.is_absolute(), "{}", p.display());
    }
    for k in cfg.page_config.keys() {
        assert!(
            k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{k}"
        );
    }

    let mut names = HashSet::new();
    let mut routes = HashSet::new();
    for s in &cfg.services {
        assert!(valid_name(&s.name), "{:?}", s.name);
        assert!(names.insert(s.name.clone()), "service {:?} twice", s.name);
        assert!(!s.routes.is_empty(), "{}: no route", s.name);
        assert!(!s.url.host.is_empty());
        assert!(!s.url.base_path.ends_with('/'), "{:?}", s.url.base_path);
        assert_eq!(
            s.url.https,
            s.url_text
                .trim()
                .to_ascii_lowercase()
                .starts_with("https://")
        );
        assert!(s.health.interval.as_millis() >= 100);
        assert!(s.timeouts.idle.as_secs() >= 1);
        assert!(s.breaker.error_ratio > 0.0 && s.breaker.error_ratio <= 1.0);
        for r in &s.routes {
            check_route(r);
            assert!(
                routes.insert(r.to_string()),
                "route {r} served twice (by {})",
                s.name
            );
        }
    }
});

/// A validated route is what the route table expects, and reads back from its own text.
fn check_route(r: &RouteSpec) {
    assert!(r.prefix.starts_with('/'), "{r:?}");
    match &r.host {
        HostMatch::Any => {}
        HostMatch::Exact(h) => assert!(!h.is_empty() && *h == h.to_ascii_lowercase(), "{r:?}"),
        HostMatch::Suffix(s) => {
            assert!(
                s.starts_with('.') && s.len() > 1 && *s == s.to_ascii_lowercase(),
                "{r:?}"
            )
        }
    }
    let again = RouteSpec::parse(&r.to_string()).expect("a route's own text parses");
    assert_eq!(&again, r);
}
