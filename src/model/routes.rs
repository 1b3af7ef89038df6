//! The route table: `[host]/path-prefix` rules mapped to upstreams. The most specific host wins
//! (exact, then the longest `*.suffix`, then any), then the longest path prefix. Built whole from
//! the config and swapped atomically on reload.

use std::sync::Arc;

/// How a route matches the request's host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostMatch {
    Any,
    /// Lower-case host name.
    Exact(String),
    /// `*.example.com` stored as ".example.com" (matches sub.example.com, not example.com).
    Suffix(String),
}

/// One parsed route rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteSpec {
    pub host: HostMatch,
    /// Starts with '/'.
    pub prefix: String,
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

impl RouteSpec {
    /// Parse `"/api/"`, `"api.example.com/"`, `"*.example.com/static"`.
    pub fn parse(s: &str) -> Result<RouteSpec, String> {
        let t = s.trim();
        let (host, path) = match t.find('/') {
            Some(0) => ("", t),
            Some(i) => (&t[..i], &t[i..]),
            None => {
                return Err(format!(
                    "route {s:?} needs a path: \"/prefix\" or \"host/prefix\" (e.g. \"api.example.com/\")"
                ));
            }
        };
        if path.contains('?') || path.contains('#') || path.contains(char::is_whitespace) {
            return Err(format!(
                "route {s:?}: the path prefix may not hold '?', '#' or spaces"
            ));
        }
        let host = host.to_ascii_lowercase();
        let host = if host.is_empty() {
            HostMatch::Any
        } else if let Some(rest) = host.strip_prefix("*.") {
            if !valid_host(rest) {
                return Err(format!("route {s:?}: {host:?} is not a host name"));
            }
            HostMatch::Suffix(format!(".{rest}"))
        } else {
            if host.contains(':') {
                return Err(format!("route {s:?}: leave the port out of the host"));
            }
            if !valid_host(&host) {
                return Err(format!("route {s:?}: {host:?} is not a host name"));
            }
            HostMatch::Exact(host)
        };
        Ok(RouteSpec {
            host,
            prefix: path.to_string(),
        })
    }

    fn host_rank(&self, host: &str) -> Option<usize> {
        match &self.host {
            HostMatch::Any => Some(0),
            HostMatch::Exact(h) => (h == host).then_some(usize::MAX),
            HostMatch::Suffix(suf) => {
                (host.len() > suf.len() && host.ends_with(suf.as_str())).then_some(1 + suf.len())
            }
        }
    }

    /// Does the path fall under this prefix? "/api" matches "/api", "/api/x", not "/apix";
    /// "/api/" also matches "/api".
    pub fn path_matches(&self, path: &str) -> bool {
        let p = self.prefix.as_str();
        if p == "/" {
            return true;
        }
        if let Some(rest) = path.strip_prefix(p) {
            return p.ends_with('/') || rest.is_empty() || rest.starts_with('/');
        }
        p.ends_with('/') && path == &p[..p.len() - 1]
    }
}

impl std::fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            HostMatch::Any => write!(f, "{}", self.prefix),
            HostMatch::Exact(h) => write!(f, "{h}{}", self.prefix),
            HostMatch::Suffix(s) => write!(f, "*{s}{}", self.prefix),
        }
    }
}

/// A route bound to its target.
#[derive(Debug)]
pub struct Route<T> {
    pub spec: RouteSpec,
    pub target: Arc<T>,
    pub strip_prefix: bool,
    /// Requests this route answered (kept across reloads while the route stays).
    pub counts: Arc<crate::model::metrics::RequestCounts>,
}

/// All routes, in no particular order; lookups rank them.
#[derive(Debug)]
pub struct RouteTable<T> {
    routes: Vec<Route<T>>,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        RouteTable { routes: Vec::new() }
    }
}

impl<T> RouteTable<T> {
    pub fn new(routes: Vec<Route<T>>) -> RouteTable<T> {
        RouteTable { routes }
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub fn routes(&self) -> &[Route<T>] {
        &self.routes
    }

    /// The best route for a lower-case host (no port) and a path.
    pub fn lookup(&self, host: &str, path: &str) -> Option<&Route<T>> {
        let mut best: Option<(&Route<T>, usize, usize)> = None;
        for r in &self.routes {
            let Some(h) = r.spec.host_rank(host) else {
                continue;
            };
            if !r.spec.path_matches(path) {
                continue;
            }
            let len = r.spec.prefix.len();
            if best.is_none_or(|(_, bh, bl)| (h, len) > (bh, bl)) {
                best = Some((r, h, len));
            }
        }
        best.map(|(r, _, _)| r)
    }
}

/// The request path after stripping a route's prefix (always starts with '/').
pub fn strip(prefix: &str, path: &str) -> String {
    let p = prefix.trim_end_matches('/');
    let rest = path.strip_prefix(p).unwrap_or(path);
    if rest.starts_with('/') {
        rest.to_string()
    } else {
        format!("/{rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(specs: &[(&str, &str)]) -> RouteTable<String> {
        RouteTable::new(
            specs
                .iter()
                .map(|(s, t)| Route {
                    spec: RouteSpec::parse(s).expect("spec"),
                    target: Arc::new(t.to_string()),
                    strip_prefix: false,
                    counts: Default::default(),
                })
                .collect(),
        )
    }

    fn hit(t: &RouteTable<String>, host: &str, path: &str) -> Option<String> {
        t.lookup(host, path).map(|r| r.target.to_string())
    }

    #[test]
    fn parse_forms() {
        assert_eq!(RouteSpec::parse("/api/").expect("p").host, HostMatch::Any);
        assert_eq!(
            RouteSpec::parse("API.example.com/").expect("p").host,
            HostMatch::Exact("api.example.com".into())
        );
        assert_eq!(
            RouteSpec::parse("*.example.com/x").expect("p").host,
            HostMatch::Suffix(".example.com".into())
        );
        for bad in ["api", "", "host:80/", "bad host/", "/a?b", "*./x", "a..b/"] {
            assert!(RouteSpec::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn longest_prefix_and_most_specific_host_win() {
        let t = table(&[
            ("/", "web"),
            ("/api/", "api"),
            ("/api/v2/", "api2"),
            ("api.example.com/", "apihost"),
            ("*.example.com/", "wild"),
            ("*.eu.example.com/", "eu"),
        ]);
        assert_eq!(hit(&t, "localhost", "/"), Some("web".into()));
        assert_eq!(hit(&t, "localhost", "/api/users"), Some("api".into()));
        assert_eq!(hit(&t, "localhost", "/api"), Some("api".into()));
        assert_eq!(hit(&t, "localhost", "/api/v2/x"), Some("api2".into()));
        assert_eq!(hit(&t, "localhost", "/apix"), Some("web".into()));
        assert_eq!(
            hit(&t, "api.example.com", "/api/users"),
            Some("apihost".into())
        );
        assert_eq!(hit(&t, "x.example.com", "/"), Some("wild".into()));
        assert_eq!(hit(&t, "a.eu.example.com", "/"), Some("eu".into()));
        assert_eq!(hit(&t, "example.com", "/"), Some("web".into()));
        let none = table(&[("/api", "api")]);
        assert_eq!(hit(&none, "h", "/"), None);
        assert_eq!(hit(&none, "h", "/api/x"), Some("api".into()));
        assert_eq!(hit(&none, "h", "/apix"), None);
    }

    #[test]
    fn stripping() {
        assert_eq!(strip("/api/", "/api/users?x"), "/users?x");
        assert_eq!(strip("/api", "/api"), "/");
        assert_eq!(strip("/", "/x"), "/x");
    }
}
