//! The route matcher (`RouteSpec::parse`, `RouteTable::lookup`, `routes::strip`) on arbitrary
//! rules, hosts and paths. The input's lines are: a count N, then N rules, then lookups
//! (`host` followed by the path from its first '/'). A lookup must pick the route the rules
//! describe: the most specific host (exact, then the longest `*.suffix`, then any), then the
//! longest path prefix.
#![no_main]

use std::sync::Arc;

use kinfra::model::routes::{HostMatch, Route, RouteSpec, RouteTable, strip};
use libfuzzer_sys::fuzz_target;

/// How specific a route's host is for `host`, as documented (None: it does not apply).
fn host_class(spec: &RouteSpec, host: &str) -> Option<(u8, usize)> {
    match &spec.host {
        HostMatch::Any => Some((0, 0)),
        HostMatch::Suffix(s) => {
            // "*.example.com" is stored as ".example.com": a strict subdomain matches.
            let sub = host.strip_suffix(s.as_str())?;
            (!sub.is_empty()).then_some((1, s.len()))
        }
        HostMatch::Exact(h) => (h == host).then_some((2, 0)),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let Some(n) = lines.next().and_then(|l| l.trim().parse::<usize>().ok()) else {
        return;
    };
    let mut routes = Vec::new();
    for (i, line) in lines.by_ref().take(n.min(32)).enumerate() {
        let Ok(spec) = RouteSpec::parse(line) else {
            continue;
        };
        assert!(spec.prefix.starts_with('/'), "{line:?} → {spec:?}");
        let again = RouteSpec::parse(&spec.to_string()).expect("own text parses");
        assert_eq!(again, spec, "{line:?}");
        routes.push(Route {
            spec,
            target: Arc::new(i),
            strip_prefix: false,
            counts: Default::default(),
        });
    }
    let table = RouteTable::new(routes);
    for q in lines {
        let (host, path) = match q.find('/') {
            Some(i) => q.split_at(i),
            None => (q, "/"),
        };
        let best = table
            .routes()
            .iter()
            .filter(|r| r.spec.path_matches(path))
            .filter_map(|r| host_class(&r.spec, host).map(|c| (c, r.spec.prefix.len())))
            .max();
        let got = table.lookup(host, path);
        match (got, best) {
            (None, None) => {}
            (Some(r), Some(want)) => {
                let c = host_class(&r.spec, host).expect("the route found applies to the host");
                assert!(r.spec.path_matches(path));
                assert_eq!(
                    (c, r.spec.prefix.len()),
                    want,
                    "{host:?} {path:?} → {}",
                    r.spec
                );
                let s = strip(&r.spec.prefix, path);
                assert!(
                    s.starts_with('/'),
                    "strip({}, {path:?}) = {s:?}",
                    r.spec.prefix
                );
                assert!(
                    path.ends_with(&s) || path.ends_with(&s[1..]),
                    "strip({}, {path:?}) = {s:?}",
                    r.spec.prefix
                );
            }
            (got, want) => panic!(
                "{host:?} {path:?}: lookup {:?}, rules {want:?}",
                got.map(|r| r.spec.to_string())
            ),
        }
        // A path under a prefix starts with it (or is it without its final '/').
        for r in table.routes() {
            let p = &r.spec.prefix;
            if r.spec.path_matches(path) {
                assert!(
                    path.starts_with(p.as_str()) || format!("{path}/") == *p,
                    "{p:?} claims {path:?}"
                );
            }
        }
    }
});
