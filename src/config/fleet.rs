//! The `[fleet]` table: the etcd endpoints several kinfrads share their intent through, this
//! host's node name, the key prefix, and the TLS files. Absent (or no endpoints): one host.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// The CA that signs etcd's server certificate, and a client certificate and key (PEM files).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFleet {
    etcd: Option<Vec<String>>,
    node: Option<String>,
    prefix: Option<String>,
    ca: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

/// The fleet this kinfrad is part of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// etcd's client URLs (`http://host:port` or `https://…`).
    pub endpoints: Vec<String>,
    /// This host's name in the fleet (default: the hostname).
    pub node: String,
    /// The key prefix (default `/kinfra`), without a trailing `/`.
    pub prefix: String,
    pub tls: TlsFiles,
}

pub const DEFAULT_PREFIX: &str = "/kinfra";

fn invalid(file: &str, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_string(),
        key: format!("fleet.{key}"),
        message: message.into(),
    }
}

/// One endpoint: `http://` or `https://`, a host and a port, nothing after (read like an
/// upstream URL).
fn endpoint(s: &str) -> Result<String, String> {
    let u = super::values::parse_upstream_url(s)?;
    if !u.base_path.is_empty() {
        return Err(format!("{s:?} must be scheme://host:port, with no path"));
    }
    if u.authority.port_u16().is_none() {
        return Err(format!(
            "{s:?} needs a port (etcd's client port is usually 2379)"
        ));
    }
    Ok(s.trim().trim_end_matches('/').to_string())
}

fn prefix(s: &str) -> Result<String, String> {
    let p = s.trim_end_matches('/');
    if !s.starts_with('/') || p.is_empty() {
        return Err(format!(
            "{s:?} must start with / and name something (like /kinfra)"
        ));
    }
    if p.len() > 128 || !p.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!(
            "{s:?} must be at most 128 printable ASCII characters, no spaces"
        ));
    }
    Ok(p.to_string())
}

fn path(file: &str, key: &str, v: Option<&str>) -> Result<Option<PathBuf>, ConfigError> {
    v.map(|s| {
        let p = PathBuf::from(s);
        if s.is_empty() || !p.is_absolute() {
            Err(invalid(
                file,
                key,
                format!("{s:?} must be an absolute path"),
            ))
        } else {
            Ok(p)
        }
    })
    .transpose()
}

fn hostname() -> Result<String, String> {
    let h = nix::unistd::gethostname().map_err(|e| format!("cannot read the hostname: {e}"))?;
    Ok(h.to_string_lossy().into_owned())
}

pub(super) fn validate(
    file: &str,
    raw: Option<RawFleet>,
) -> Result<Option<FleetConfig>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let endpoints = raw
        .etcd
        .unwrap_or_default()
        .iter()
        .map(|e| endpoint(e))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|m| invalid(file, "etcd", m))?;
    let tls = TlsFiles {
        ca: path(file, "ca", raw.ca.as_deref())?,
        cert: path(file, "cert", raw.cert.as_deref())?,
        key: path(file, "key", raw.key.as_deref())?,
    };
    if tls.cert.is_some() != tls.key.is_some() {
        return Err(invalid(
            file,
            if tls.cert.is_some() { "key" } else { "cert" },
            "a client certificate needs both cert and key",
        ));
    }
    let any_tls = tls.ca.is_some() || tls.cert.is_some();
    if any_tls && !endpoints.iter().any(|e| e.starts_with("https://")) {
        return Err(invalid(
            file,
            "etcd",
            "ca, cert and key are for https:// endpoints; none is https",
        ));
    }
    if endpoints.is_empty() {
        if any_tls || raw.node.is_some() || raw.prefix.is_some() {
            return Err(invalid(
                file,
                "etcd",
                "list etcd's endpoints (like [\"http://127.0.0.1:2379\"]), or drop [fleet] for a single host",
            ));
        }
        return Ok(None);
    }
    let node = match raw.node {
        Some(n) => n,
        None => hostname().map_err(|m| invalid(file, "node", m))?,
    };
    if !crate::model::valid_name(&node) {
        return Err(invalid(
            file,
            "node",
            format!("{node:?} may only hold letters, digits, '-', '_' and '.' (64 at most)"),
        ));
    }
    let prefix = prefix(raw.prefix.as_deref().unwrap_or(DEFAULT_PREFIX))
        .map_err(|m| invalid(file, "prefix", m))?;
    Ok(Some(FleetConfig {
        endpoints,
        node,
        prefix,
        tls,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<FleetConfig>, String> {
        let raw: RawFleet = toml::from_str(text).map_err(|e| e.to_string())?;
        validate("f.toml", Some(raw)).map_err(|e| e.to_string())
    }

    #[test]
    fn a_fleet_table_is_validated_with_clear_errors() {
        let c =
            parse("etcd = [\"http://127.0.0.1:2379/\", \"https://e2:22379\"]\nnode = \"web-1\"")
                .expect("valid")
                .expect("a fleet");
        assert_eq!(c.endpoints, ["http://127.0.0.1:2379", "https://e2:22379"]);
        assert_eq!((c.node.as_str(), c.prefix.as_str()), ("web-1", "/kinfra"));
        assert!(parse("").expect("empty").is_none());
        let bad = [
            ("etcd = [\"127.0.0.1:2379\"]", "fleet.etcd"),
            ("etcd = [\"http://h\"]", "needs a port"),
            ("etcd = [\"http://h:1/v3\"]", "no path"),
            ("etcd = [\"http://h:1\"]\nnode = \"a b\"", "fleet.node"),
            (
                "etcd = [\"http://h:1\"]\nprefix = \"kinfra\"",
                "fleet.prefix",
            ),
            ("etcd = [\"http://h:1\"]\nprefix = \"/\"", "fleet.prefix"),
            ("etcd = [\"https://h:1\"]\ncert = \"/c.pem\"", "fleet.key"),
            ("etcd = [\"https://h:1\"]\nca = \"c.pem\"", "absolute"),
            ("etcd = [\"http://h:1\"]\nca = \"/c.pem\"", "none is https"),
            ("node = \"x\"", "list etcd"),
            ("etcd = [\"http://h:1\"]\nwhat = 1", "unknown field"),
        ];
        for (text, want) in bad {
            let e = parse(text).expect_err(text);
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
