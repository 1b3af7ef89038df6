//! Validation of what an operator enters: texts, countdowns and times, and the custom page URL,
//! each refused with an [`InvalidInput`] naming the field. Kept apart from the record, whose
//! `check` runs these same rules on a record read from disk.

/// Longest countdown accepted (30 days).
pub const MAX_COUNTDOWN_SECS: i64 = 30 * 24 * 3600;
/// Longest message or task text accepted, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;
/// Longest custom page URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// Latest time (Unix ms) a record may hold: the last millisecond of year 9999, the end of what
/// RFC 3339 dates, `humantime` and JavaScript's `Date` all represent.
pub const MAX_TIME_MS: u64 = 253_402_300_799_999;

/// Why a requested change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidInput {
    pub field: &'static str,
    pub message: String,
}

pub(super) fn bad(field: &'static str, message: impl Into<String>) -> InvalidInput {
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
pub(super) fn check_time(field: &'static str, ms: u64) -> Result<(), InvalidInput> {
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
