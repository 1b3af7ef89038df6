//! What a maintenance record covers, and which record answers a request.
//!
//! A record names one target: everything (`ALL`), one service (by its name), or one route (by
//! its `[host]/prefix` spec, as the config's `routes = [...]` and the dashboard write it). A
//! route spec always holds a `/` and a service name never does, so a bare word is a service
//! and anything with a slash is a route; `service:NAME` and `route:SPEC` say it explicitly
//! (needed only for a service literally named `all`). Several records may be active at once;
//! for one request the most specific one applies: the route's record, else its service's,
//! else the global one.

use serde::{Deserialize, Serialize};

use crate::model::routes::RouteSpec;
use crate::model::valid_name;

/// The target of one maintenance record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Target {
    /// Every route, and requests that match no route.
    All,
    /// Every route of the service with this name.
    Service(String),
    /// One route, as configured.
    Route(RouteSpec),
}

impl From<Target> for String {
    fn from(t: Target) -> String {
        t.to_string()
    }
}

impl TryFrom<String> for Target {
    type Error = String;
    fn try_from(s: String) -> Result<Target, String> {
        Target::parse(&s)
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::All => f.write_str("ALL"),
            // A service named like the global target needs its prefix to read back.
            Target::Service(n) if n.eq_ignore_ascii_case("all") => write!(f, "service:{n}"),
            Target::Service(n) => f.write_str(n),
            Target::Route(r) => write!(f, "{r}"),
        }
    }
}

/// `s` without `prefix`, compared without regard to case.
fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn service(name: &str) -> Result<Target, String> {
    if !valid_name(name) {
        return Err(format!(
            "{name:?} is neither a service name (letters, digits, '-', '_' and '.', 64 at most) nor a route (\"[host]/prefix\")"
        ));
    }
    Ok(Target::Service(name.to_string()))
}

fn route(spec: &str) -> Result<Target, String> {
    RouteSpec::parse(spec).map(Target::Route)
}

impl Target {
    /// One target: `ALL` (any case, or nothing), a service name, a route spec (it holds a
    /// `/`), or either spelled out as `service:NAME` / `route:SPEC`.
    pub fn parse(s: &str) -> Result<Target, String> {
        let s = s.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("all") {
            return Ok(Target::All);
        }
        if let Some(n) = strip_prefix_ci(s, "service:") {
            return service(n.trim());
        }
        if let Some(r) = strip_prefix_ci(s, "route:") {
            return route(r.trim());
        }
        if s.contains('/') {
            route(s)
        } else {
            service(s)
        }
    }

    /// A comma-separated list of targets (nothing means `ALL`), duplicates dropped, in order.
    pub fn parse_list(s: &str) -> Result<Vec<Target>, String> {
        if s.trim().is_empty() {
            return Ok(vec![Target::All]);
        }
        let mut out: Vec<Target> = Vec::new();
        for part in s.split(',') {
            if part.trim().is_empty() {
                return Err(format!("target {:?} has an empty entry", s.trim()));
            }
            let t = Target::parse(part)?;
            if !out.contains(&t) {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// How specifically this target names a request routed to `route` of `service` (`None`:
    /// the request matched no route): 3 its route, 2 its service, 1 everything; `None` when
    /// the target does not cover the request.
    pub fn rank(&self, route: Option<(&RouteSpec, &str)>) -> Option<u8> {
        match (self, route) {
            (Target::All, _) => Some(1),
            (Target::Service(n), Some((_, svc))) => (n == svc).then_some(2),
            (Target::Route(r), Some((spec, _))) => (r == spec).then_some(3),
            (_, None) => None,
        }
    }

    /// The order records are listed in: the global one, then services, then routes, each
    /// alphabetically.
    pub fn sort_key(&self) -> (u8, String) {
        match self {
            Target::All => (0, String::new()),
            Target::Service(n) => (1, n.clone()),
            Target::Route(r) => (2, r.to_string()),
        }
    }
}

/// Which of `targets` applies to a request routed to `route` of `service` (`None`: unrouted):
/// the most specific one that covers it — route, then service, then global.
pub fn applying<'a>(
    targets: impl IntoIterator<Item = &'a Target>,
    route: Option<(&RouteSpec, &str)>,
) -> Option<usize> {
    let mut best: Option<(usize, u8)> = None;
    for (i, t) in targets.into_iter().enumerate() {
        if let Some(r) = t.rank(route)
            && best.is_none_or(|(_, b)| r > b)
        {
            best = Some((i, r));
        }
    }
    best.map(|(i, _)| i)
}
