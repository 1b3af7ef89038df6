//! Value parsers behind the keys: durations and integers within bounds, sizes ("10MB", also for
//! `max_header_bytes`), upstream URLs and status ranges. Each error says what a value should be.

use std::time::Duration;

use super::service::KeyError;

/// Parsed upstream URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub https: bool,
    pub authority: http::uri::Authority,
    /// Path prefix prepended to forwarded paths ("" for none).
    pub base_path: String,
    pub host: String,
    pub port: u16,
}

pub(super) fn dur(
    key: &str,
    v: Option<&str>,
    default: Duration,
    min: Duration,
    max: Duration,
) -> Result<Duration, KeyError> {
    let Some(s) = v else { return Ok(default) };
    let d = humantime::parse_duration(s).map_err(|e| {
        (
            key.to_string(),
            format!("{s:?} is not a duration like \"5s\": {e}"),
        )
    })?;
    if d < min || d > max {
        return Err((
            key.to_string(),
            format!(
                "{s:?} must be between {} and {}",
                humantime::format_duration(min),
                humantime::format_duration(max)
            ),
        ));
    }
    Ok(d)
}

pub(super) fn int(
    key: &str,
    v: Option<i64>,
    default: u32,
    min: u32,
    max: u32,
) -> Result<u32, KeyError> {
    let Some(n) = v else { return Ok(default) };
    if n < i64::from(min) || n > i64::from(max) {
        return Err((
            key.to_string(),
            format!("{n} must be between {min} and {max}"),
        ));
    }
    Ok(n as u32)
}

/// Parse "10MB", "512KiB", "1GB" or a plain integer (bytes).
pub fn parse_size(v: &toml::Value) -> Result<u64, String> {
    match v {
        toml::Value::Integer(n) if *n >= 0 => Ok(*n as u64),
        toml::Value::String(s) => {
            let t = s.trim();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let n: u64 = num
                .parse()
                .map_err(|_| format!("{s:?} is not a size like \"10MB\""))?;
            let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1,
                "k" | "kb" => 1000,
                "kib" => 1024,
                "m" | "mb" => 1000 * 1000,
                "mib" => 1024 * 1024,
                "g" | "gb" => 1000 * 1000 * 1000,
                "gib" => 1024 * 1024 * 1024,
                other => {
                    return Err(format!(
                        "{s:?}: unknown unit {other:?} (use B, KB, KiB, MB, MiB, GB, GiB)"
                    ));
                }
            };
            n.checked_mul(mult)
                .ok_or_else(|| format!("{s:?} is too large"))
        }
        other => Err(format!("{other} is not a size like \"10MB\"")),
    }
}

/// Parse an upstream URL: http or https, a host, optional port and base path, no query.
pub fn parse_upstream_url(s: &str) -> Result<UpstreamUrl, String> {
    let lower = s.trim().to_ascii_lowercase();
    let https = if lower.starts_with("https://") {
        true
    } else if lower.starts_with("http://") {
        false
    } else {
        return Err(format!("{s:?} must be an http:// or https:// URL"));
    };
    let uri: http::Uri = s
        .trim()
        .parse()
        .map_err(|e| format!("{s:?} is not a valid URL: {e}"))?;
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("{s:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("{s:?}: credentials in the URL are not supported"));
    }
    if uri.query().is_some() {
        return Err(format!(
            "{s:?}: a query string is not allowed in an upstream URL"
        ));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let base_path = uri.path().trim_end_matches('/').to_string();
    Ok(UpstreamUrl {
        https,
        authority,
        base_path,
        host,
        port,
    })
}

pub(super) fn parse_status_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (s.trim(), s.trim()),
    };
    let a: u16 = a
        .parse()
        .map_err(|_| format!("{s:?} is not a status or range like \"200-399\""))?;
    let b: u16 = b
        .parse()
        .map_err(|_| format!("{s:?} is not a status or range like \"200-399\""))?;
    if !(100..=599).contains(&a) || !(100..=599).contains(&b) || a > b {
        return Err(format!(
            "{s:?} must be statuses between 100 and 599, low-high"
        ));
    }
    Ok((a, b))
}
