//! The maintenance model: what the operator asked for, validated, and the JSON view of it that
//! `GET /api/maintenance/status` serves.
//!
//! This module is pure: no I/O, no clocks of its own (callers pass `now_ms`), so every rule here is
//! unit-tested directly.

use serde::{Deserialize, Serialize};

use crate::protocol::StatusView;

/// Longest countdown accepted (30 days).
pub const MAX_COUNTDOWN_SECS: i64 = 30 * 24 * 3600;
/// Longest message or task text accepted, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;
/// Longest custom page URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// `Retry-After` when no estimate is known (seed 002).
pub const DEFAULT_RETRY_AFTER: u64 = 300;
/// `Retry-After` once the estimate has passed.
pub const OVERDUE_RETRY_AFTER: u64 = 30;
/// Message shown when the operator gave none.
pub const DEFAULT_MESSAGE: &str = "Scheduled maintenance in progress";
/// Latest time (Unix ms) a record may hold: the last millisecond of year 9999, the end of what
/// RFC 3339 dates, `humantime` and JavaScript's `Date` all represent.
pub const MAX_TIME_MS: u64 = 253_402_300_799_999;

/// Which routes maintenance covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Target {
    All,
    Routes(Vec<String>),
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
            Target::Routes(r) => f.write_str(&r.join(",")),
        }
    }
}

impl Target {
    /// `ALL` (any case) or a comma-separated list of route ids.
    pub fn parse(s: &str) -> Result<Target, String> {
        let s = s.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("all") {
            return Ok(Target::All);
        }
        let mut ids = Vec::new();
        for id in s.split(',') {
            let id = id.trim();
            if id.is_empty() {
                return Err(format!("target {s:?} has an empty route id"));
            }
            if id.len() > 64
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            {
                return Err(format!(
                    "route id {id:?} may only hold letters, digits, '-', '_' and '.' (64 at most)"
                ));
            }
            if !ids.iter().any(|x| x == id) {
                ids.push(id.to_string());
            }
        }
        Ok(Target::Routes(ids))
    }

    /// Does maintenance apply to the route (service) named `id`?
    pub fn covers(&self, id: &str) -> bool {
        match self {
            Target::All => true,
            Target::Routes(ids) => ids.iter().any(|x| x == id),
        }
    }

    /// Does maintenance apply to traffic that matched no route (kinfrad's own landing page)?
    pub fn covers_unrouted(&self) -> bool {
        matches!(self, Target::All)
    }
}

/// Persisted maintenance record: everything needed to show the same page after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Maintenance {
    pub message: String,
    #[serde(default)]
    pub current_issue: String,
    pub start_time_ms: u64,
    #[serde(default)]
    pub estimated_completion_ms: Option<u64>,
    #[serde(default)]
    pub page_url: Option<String>,
    pub target: Target,
    #[serde(default)]
    pub hits: u64,
}

/// A validated change requested by an operator (all fields optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    pub message: Option<String>,
    pub current_issue: Option<String>,
    /// `Some(None)` clears the estimate.
    pub eta_ms: Option<Option<u64>>,
    /// `Some(None)` switches back to the default page.
    pub page_url: Option<Option<String>>,
    pub target: Option<Target>,
}

/// Why a requested change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidInput {
    pub field: &'static str,
    pub message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> InvalidInput {
    InvalidInput {
        field,
        message: message.into(),
    }
}

/// Trim and check an operator-supplied text (message or task).
pub fn clean_text(field: &'static str, s: &str) -> Result<String, InvalidInput> {
    let t = s.trim();
    if t.chars().count() > MAX_TEXT_CHARS {
        return Err(bad(
            field,
            format!("longer than {MAX_TEXT_CHARS} characters"),
        ));
    }
    if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(bad(field, "contains control characters"));
    }
    Ok(t.to_string())
}

/// A countdown in seconds from now → an absolute estimate. 0 clears the estimate.
pub fn countdown_to_eta(
    field: &'static str,
    secs: i64,
    now_ms: u64,
) -> Result<Option<u64>, InvalidInput> {
    if secs < 0 {
        return Err(bad(
            field,
            format!("{secs} is negative; give seconds from now (0 clears the estimate)"),
        ));
    }
    if secs > MAX_COUNTDOWN_SECS {
        return Err(bad(
            field,
            format!("{secs} s is more than the 30 day maximum ({MAX_COUNTDOWN_SECS} s)"),
        ));
    }
    if secs == 0 {
        return Ok(None);
    }
    Ok(Some(now_ms + (secs as u64) * 1000))
}

/// An absolute estimate (Unix ms) must lie in the next 30 days.
pub fn check_eta_ms(
    field: &'static str,
    eta_ms: i64,
    now_ms: u64,
) -> Result<Option<u64>, InvalidInput> {
    if eta_ms <= 0 {
        return Err(bad(
            field,
            format!("{eta_ms} is not a Unix time in milliseconds"),
        ));
    }
    let eta = eta_ms as u64;
    if eta <= now_ms {
        return Err(bad(field, "lies in the past"));
    }
    if eta - now_ms > (MAX_COUNTDOWN_SECS as u64) * 1000 {
        return Err(bad(field, "is more than 30 days ahead"));
    }
    Ok(Some(eta))
}

/// A stored time (Unix ms) must be one dates can be shown for.
fn check_time(field: &'static str, ms: u64) -> Result<(), InvalidInput> {
    if ms > MAX_TIME_MS {
        return Err(bad(
            field,
            format!("{ms} is after the year 9999 (at most {MAX_TIME_MS})"),
        ));
    }
    Ok(())
}

/// Parsed custom page URL: only http and https, with a host and a port in 1–65535.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageUrl {
    pub uri: http::Uri,
    pub https: bool,
    /// A lower-case name, an IPv4 address, or an IPv6 address without its brackets.
    pub host: String,
    pub port: u16,
}

/// Check a custom maintenance page URL's shape (not yet whether it points at kinfrad itself):
/// http or https, no credentials, a host that is a DNS name or an IP address, and a port
/// (when given) in 1–65535.
pub fn parse_page_url(s: &str) -> Result<PageUrl, InvalidInput> {
    let s = s.trim();
    if s.len() > MAX_URL_LEN {
        return Err(bad("url", format!("longer than {MAX_URL_LEN} bytes")));
    }
    let lower = s.to_ascii_lowercase();
    let https = if lower.starts_with("https://") {
        true
    } else if lower.starts_with("http://") {
        false
    } else {
        let scheme = s.split(':').next().unwrap_or("");
        return Err(bad(
            "url",
            format!("{scheme:?} URLs are not allowed: use an http:// or https:// URL"),
        ));
    };
    let uri: http::Uri = s
        .parse()
        .map_err(|e| bad("url", format!("{s:?} is not a valid URL: {e}")))?;
    let auth = uri
        .authority()
        .ok_or_else(|| bad("url", format!("{s:?} has no host")))?
        .as_str();
    if auth.contains('@') {
        return Err(bad("url", "credentials in the URL are not supported"));
    }
    // Split host and port by hand: `http::Uri` takes any digits for a port, and its
    // `port_u16()` is None for one beyond u16, which would silently mean port 80.
    let (host, port) = match auth.strip_prefix('[') {
        Some(rest) => {
            let (v6, after) = rest
                .split_once(']')
                .ok_or_else(|| bad("url", format!("{s:?} has an unclosed '['")))?;
            let ip: std::net::Ipv6Addr = v6.parse().map_err(|_| {
                bad(
                    "url",
                    format!("[{v6}] is not an IPv6 address (zone ids are not supported)"),
                )
            })?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| {
                    bad("url", format!("{s:?}: unexpected {p:?} after the address"))
                })?),
            };
            (ip.to_string(), port)
        }
        None => match auth.split_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
            None => (auth.to_ascii_lowercase(), None),
        },
    };
    if host.is_empty() {
        return Err(bad("url", format!("{s:?} has no host")));
    }
    let name_ok = host.parse::<std::net::IpAddr>().is_ok()
        || host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !name_ok {
        return Err(bad(
            "url",
            format!("{host:?} is not a host name or an IP address"),
        ));
    }
    let port = match port {
        None => {
            if https {
                443
            } else {
                80
            }
        }
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                return Err(bad(
                    "url",
                    format!("port {p:?} is not a port: give 1-65535, or none for the default"),
                ));
            }
        },
    };
    Ok(PageUrl {
        uri,
        https,
        host,
        port,
    })
}

impl Maintenance {
    /// Check a record that did not come through `begin`/`apply` (one read from disk): every
    /// field must be one an operator could have entered, so nothing downstream meets a value it
    /// cannot render or count with.
    pub fn check(&self) -> Result<(), InvalidInput> {
        clean_text("message", &self.message)?;
        clean_text("current_issue", &self.current_issue)?;
        check_time("start_time_ms", self.start_time_ms)?;
        if let Some(eta) = self.estimated_completion_ms {
            check_time("estimated_completion_ms", eta)?;
        }
        if let Some(u) = &self.page_url {
            parse_page_url(u).map_err(|e| bad("page_url", e.message))?;
        }
        // `target` is checked by `Target::parse` when it is deserialized.
        Ok(())
    }

    /// Start maintenance with `change` applied to defaults.
    pub fn begin(change: Change, now_ms: u64) -> Maintenance {
        let mut m = Maintenance {
            message: DEFAULT_MESSAGE.to_string(),
            current_issue: String::new(),
            start_time_ms: now_ms,
            estimated_completion_ms: None,
            page_url: None,
            target: Target::All,
            hits: 0,
        };
        m.apply(change);
        m
    }

    /// Apply an operator's change; start time and hits are kept.
    pub fn apply(&mut self, change: Change) {
        if let Some(msg) = change.message {
            self.message = if msg.is_empty() {
                DEFAULT_MESSAGE.to_string()
            } else {
                msg
            };
        }
        if let Some(issue) = change.current_issue {
            self.current_issue = issue;
        }
        if let Some(eta) = change.eta_ms {
            self.estimated_completion_ms = eta;
        }
        if let Some(url) = change.page_url {
            self.page_url = url;
        }
        if let Some(t) = change.target {
            self.target = t;
        }
    }

    /// Whole seconds left until the estimate (0 once passed); `None` without an estimate.
    pub fn countdown_secs(&self, now_ms: u64) -> Option<u64> {
        self.estimated_completion_ms
            .map(|eta| eta.saturating_sub(now_ms).div_ceil(1000))
    }

    /// `Retry-After` seconds: time to the estimate, 300 without one, 30 once it has passed.
    pub fn retry_after_secs(&self, now_ms: u64) -> u64 {
        match self.countdown_secs(now_ms) {
            None => DEFAULT_RETRY_AFTER,
            Some(0) => OVERDUE_RETRY_AFTER,
            Some(s) => s,
        }
    }
}

/// What `GET /api/maintenance/status` and kinfractl show of `m` (None: not in maintenance) at
/// `now_ms`, with the page's `hits`.
pub fn status_view(m: Option<&Maintenance>, hits: u64, now_ms: u64) -> StatusView {
    match m {
        None => StatusView {
            is_active: false,
            message: None,
            current_issue: None,
            countdown: None,
            start_time: None,
            estimated_completion: None,
            last_broadcast: None,
            maintenance_page_url: None,
            target: None,
            hits,
            retry_after: None,
        },
        Some(m) => {
            let cd = m.countdown_secs(now_ms);
            StatusView {
                is_active: true,
                message: Some(m.message.clone()),
                current_issue: Some(m.current_issue.clone()),
                countdown: cd,
                start_time: Some(m.start_time_ms),
                estimated_completion: m.estimated_completion_ms,
                last_broadcast: cd,
                maintenance_page_url: m.page_url.clone(),
                target: Some(m.target.to_string()),
                hits,
                retry_after: Some(m.retry_after_secs(now_ms)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_750_000_000_000;

    #[test]
    fn target_parse() {
        assert_eq!(Target::parse("ALL"), Ok(Target::All));
        assert_eq!(Target::parse("all"), Ok(Target::All));
        assert_eq!(Target::parse(""), Ok(Target::All));
        assert_eq!(
            Target::parse("api, web,api"),
            Ok(Target::Routes(vec!["api".into(), "web".into()]))
        );
        assert!(Target::parse("api,,web").is_err());
        assert!(Target::parse("a b").is_err());
        assert_eq!(
            Target::Routes(vec!["a".into(), "b".into()]).to_string(),
            "a,b"
        );
    }

    #[test]
    fn countdown_rules() {
        assert_eq!(
            countdown_to_eta("countdown", 600, NOW),
            Ok(Some(NOW + 600_000))
        );
        assert_eq!(countdown_to_eta("countdown", 0, NOW), Ok(None));
        assert!(countdown_to_eta("countdown", -1, NOW).is_err());
        assert!(countdown_to_eta("countdown", MAX_COUNTDOWN_SECS + 1, NOW).is_err());
        assert!(check_eta_ms("estimatedCompletion", (NOW - 1) as i64, NOW).is_err());
        assert!(check_eta_ms("estimatedCompletion", (NOW + 40 * 86_400_000) as i64, NOW).is_err());
        assert_eq!(
            check_eta_ms("e", (NOW + 5000) as i64, NOW),
            Ok(Some(NOW + 5000))
        );
    }

    #[test]
    fn urls() {
        assert!(parse_page_url("http://127.0.0.1:8081/maint").is_ok());
        let u = parse_page_url("HTTPS://status.example.com").expect("https");
        assert!(u.https);
        assert_eq!(u.port, 443);
        for bad in [
            "javascript:alert(1)",
            "file:///etc/passwd",
            "ftp://x",
            "http://",
            "//x",
            "http://user:pw@x/",
            "data:text/html,hi",
        ] {
            assert!(parse_page_url(bad).is_err(), "{bad} accepted");
        }
        let e = parse_page_url("javascript:alert(1)").expect_err("js");
        assert!(e.message.contains("javascript"), "{e}");
        let v6 = parse_page_url("http://[::1]:9000/").expect("v6");
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.port, 9000);
    }

    #[test]
    fn url_ports_and_hosts_are_checked_whole() {
        let ok = |s: &str| parse_page_url(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        let u = ok("http://Status.Example.COM:8081/x");
        assert_eq!((u.host.as_str(), u.port), ("status.example.com", 8081));
        assert_eq!(ok("http://127.0.0.1:65535/").port, 65535);
        assert_eq!(ok("http://127.0.0.1:1/").port, 1);
        assert_eq!(ok("http://localhost/").port, 80);
        assert_eq!(ok("https://[::1]/").port, 443);
        let mapped = ok("http://[::ffff:127.0.0.1]:9100/");
        assert_eq!(mapped.host, "::ffff:127.0.0.1");
        assert_eq!(mapped.port, 9100);
        assert_eq!(ok("http://[::FFFF:7F00:1]/").host, "::ffff:127.0.0.1");
        assert_eq!(ok("http://my_host.lan/").host, "my_host.lan");
        for (bad_url, says) in [
            // Beyond u16: http's parser takes it, and it used to mean port 80.
            ("http://127.0.0.1:70000/", "port"),
            ("http://127.0.0.1:65536/", "port"),
            ("http://127.0.0.1:99999999999999999999/", "port"),
            ("http://127.0.0.1:0/", "port"),
            ("http://127.0.0.1:/", "port"),
            ("http://127.0.0.1:+80/", ""),
            ("http://[::1]:70000/", "port"),
            ("http://[::1]x/", ""),
            ("http://[fe80::1%25eth0]/", ""),
            ("http://[127.0.0.1]/", "IPv6"),
            ("http://:8080/", "no host"),
            ("http://@x/", "credentials"),
            ("http://u@127.0.0.1/", "credentials"),
            ("http://a!b/", ""),
            ("http://a%41b/", ""),
        ] {
            let e = parse_page_url(bad_url).expect_err(bad_url);
            assert!(e.message.contains(says), "{bad_url}: {e}");
        }
    }

    #[test]
    fn text_rules() {
        assert_eq!(clean_text("message", "  hi  "), Ok("hi".into()));
        assert!(clean_text("message", &"x".repeat(MAX_TEXT_CHARS + 1)).is_err());
        assert!(clean_text("message", "a\u{7}b").is_err());
    }

    #[test]
    fn countdown_and_retry_after() {
        let mut m = Maintenance::begin(Change::default(), NOW);
        assert_eq!(m.message, DEFAULT_MESSAGE);
        assert_eq!(m.retry_after_secs(NOW), DEFAULT_RETRY_AFTER);
        m.apply(Change {
            eta_ms: Some(Some(NOW + 1500)),
            ..Change::default()
        });
        assert_eq!(m.countdown_secs(NOW), Some(2));
        assert_eq!(m.retry_after_secs(NOW), 2);
        assert_eq!(m.retry_after_secs(NOW + 10_000), OVERDUE_RETRY_AFTER);
        let v = status_view(Some(&m), 7, NOW);
        assert!(v.is_active);
        assert_eq!(v.countdown, Some(2));
        assert_eq!(v.hits, 7);
        let json = serde_json::to_value(&v).expect("json");
        for key in [
            "isActive",
            "message",
            "currentIssue",
            "countdown",
            "startTime",
            "estimatedCompletion",
            "lastBroadcast",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
    }

    #[test]
    fn stored_records_are_checked_like_input() {
        let good = Maintenance::begin(
            Change {
                message: Some("db".into()),
                eta_ms: Some(Some(MAX_TIME_MS)),
                page_url: Some(Some("http://127.0.0.1:8081/m".into())),
                ..Change::default()
            },
            NOW,
        );
        assert_eq!(good.check(), Ok(()));
        let with = |f: &dyn Fn(&mut Maintenance)| {
            let mut m = good.clone();
            f(&mut m);
            m.check()
        };
        let e = with(&|m| m.start_time_ms = MAX_TIME_MS + 1).expect_err("start");
        assert_eq!(e.field, "start_time_ms");
        assert!(e.message.contains("9999"), "{e}");
        assert!(with(&|m| m.start_time_ms = u64::MAX).is_err());
        let e = with(&|m| m.estimated_completion_ms = Some(u64::MAX)).expect_err("eta");
        assert_eq!(e.field, "estimated_completion_ms");
        let e = with(&|m| m.message = "x".repeat(MAX_TEXT_CHARS + 1)).expect_err("long");
        assert_eq!(e.field, "message");
        let e = with(&|m| m.current_issue = "a\u{1b}[2Jb".into()).expect_err("ctl");
        assert_eq!(e.field, "current_issue");
        let e = with(&|m| m.page_url = Some("javascript:alert(1)".into())).expect_err("url");
        assert_eq!(e.field, "page_url");
        assert_eq!(with(&|m| m.estimated_completion_ms = None), Ok(()));
        assert_eq!(with(&|m| m.page_url = None), Ok(()));
    }

    #[test]
    fn record_round_trips() {
        let m = Maintenance::begin(
            Change {
                message: Some("db".into()),
                target: Some(Target::Routes(vec!["api".into()])),
                ..Change::default()
            },
            NOW,
        );
        let s = serde_json::to_string(&m).expect("ser");
        assert!(s.contains("\"target\":\"api\""), "{s}");
        let back: Maintenance = serde_json::from_str(&s).expect("de");
        assert_eq!(back, m);
    }
}
