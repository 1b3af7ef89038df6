//! The operator's maintenance bypass as operations: minting a link (control socket), opening
//! it once (kinfrad's `/kinfra/bypass` endpoint), and checking a request's cookie against the
//! record that would answer it (both request paths, only when a record applies). The signing
//! rules are in `model::bypass`; this file adds the clock, the admin token, random nonces, the
//! listen address for the link's default base, and the memory of links already opened.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::model::bypass::{self, LinkRefusal};
use crate::model::maintenance::Target;
use crate::protocol::ErrorCode;

use super::{Active, App, OpError};

/// The nonces of links opened already, each until its link's expiry. In memory only: after a
/// restart an unexpired link works once more (its cookie would anyway, until it expires).
#[derive(Debug, Default)]
pub struct Opened(Mutex<HashMap<String, u64>>);

impl Opened {
    /// Remember `nonce` (until `exp`); false when it was remembered already.
    fn first_use(&self, nonce: &str, exp: u64, now: u64) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, e| *e > now);
        if m.contains_key(nonce) {
            return false;
        }
        m.insert(nonce.to_string(), exp);
        true
    }
}

/// A minted link, for the control answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintedLink {
    pub url: String,
    pub expires_ms: u64,
    pub ttl_secs: u64,
    /// The target it is scoped to (`None`: every record).
    pub target: Option<String>,
}

/// A link opened: the cookie to set, how long it lives, where to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedLink {
    pub set_cookie: String,
    pub path: String,
}

/// `base` as the link's origin: `http(s)://authority[/prefix]`, no query or fragment, printable
/// ASCII; a trailing `/` dropped.
fn check_base(base: &str) -> Result<String, OpError> {
    let base = base.trim();
    let rest = base
        .strip_prefix("https://")
        .or_else(|| base.strip_prefix("http://"));
    let ok = rest.is_some_and(|r| {
        let authority = r.split('/').next().unwrap_or("");
        !authority.is_empty() && !authority.contains('@')
    }) && !base.contains(['?', '#', '\\'])
        && base.len() <= 1024
        && base.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        return Err(OpError::new(
            ErrorCode::InvalidArgument,
            format!(
                "base {base:?} must be an http:// or https:// origin kinfrad is reached at, like https://www.example.com (no query, no user)"
            ),
        ));
    }
    Ok(base.trim_end_matches('/').to_string())
}

impl App {
    /// The default base of a link: the first HTTP listen address (an unspecified address
    /// becomes the loopback one, which works at least on this machine).
    fn default_base(&self) -> Result<String, OpError> {
        let Some(mut a) = self.http_addrs.first().copied() else {
            return Err(OpError::new(
                ErrorCode::InvalidArgument,
                "kinfrad listens on no TCP address: name the public URL with --base",
            ));
        };
        if a.ip().is_unspecified() {
            a.set_ip(match a.ip() {
                std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        Ok(format!("http://{a}"))
    }

    /// Mint a bypass link living `ttl_secs` (default an hour, a week at most) for `target`
    /// (`None`: every record) that redirects to `path` (default `/`) on `base` (default the
    /// first listen address).
    pub fn bypass_link(
        &self,
        ttl_secs: Option<u64>,
        target: Option<&str>,
        base: Option<&str>,
        path: Option<&str>,
    ) -> Result<MintedLink, OpError> {
        let ttl = ttl_secs.unwrap_or(bypass::DEFAULT_TTL_SECS);
        if ttl == 0 || ttl > bypass::MAX_TTL_SECS {
            return Err(OpError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "ttl must be between 1 second and {} (a week); got {ttl} seconds",
                    crate::protocol::fmt::human_secs(bypass::MAX_TTL_SECS)
                ),
            ));
        }
        let target =
            match target.map(str::trim).filter(|t| !t.is_empty()) {
                None => None,
                Some(t) => Some(Target::parse(t).map_err(|e| {
                    OpError::new(ErrorCode::InvalidArgument, format!("target: {e}"))
                })?),
            };
        let path = path.map(str::trim).filter(|p| !p.is_empty()).unwrap_or("/");
        bypass::check_path(path).map_err(|e| OpError::new(ErrorCode::InvalidArgument, e))?;
        let base = match base.map(str::trim).filter(|b| !b.is_empty()) {
            Some(b) => check_base(b)?,
            None => self.default_base()?,
        };
        let mut nonce = [0u8; 16];
        crate::state::token::random_bytes(&mut nonce).map_err(|e| {
            OpError::new(
                ErrorCode::Internal,
                format!("no random bytes for the link: {e}"),
            )
        })?;
        let now = crate::model::now_ms() / 1000;
        let exp = now + ttl;
        let value = bypass::mint_link(
            &self.token(),
            exp,
            &bypass::scope_field(target.as_ref()),
            path,
            &bypass::hex(&nonce),
        );
        Ok(MintedLink {
            url: format!("{base}{LINK_PATH}?t={value}"),
            expires_ms: exp * 1000,
            ttl_secs: ttl,
            target: target.map(|t| t.to_string()),
        })
    }

    /// Open a link's token `t`: once, signed with the current admin token, not expired.
    pub fn bypass_open(&self, t: &str) -> Result<OpenedLink, LinkRefusal> {
        let now = crate::model::now_ms() / 1000;
        let token = self.token();
        let link = bypass::open_link(&token, t, now)?;
        if !self.bypass_opened.first_use(&link.nonce, link.exp, now) {
            return Err(LinkRefusal::Used);
        }
        let value = bypass::mint_cookie(&token, &link);
        Ok(OpenedLink {
            set_cookie: bypass::set_cookie(&value, link.exp.saturating_sub(now)),
            path: link.path,
        })
    }

    /// Does one of these `Cookie` header values carry a bypass cookie that lets its holder past
    /// the record `rec`? Asked only when a record applies to the request.
    pub fn bypass_admits<'a>(&self, rec: &Active, cookies: impl Iterator<Item = &'a [u8]>) -> bool {
        let mut token = None;
        let now = crate::model::now_ms() / 1000;
        for header in cookies {
            for value in bypass::cookie_values(header) {
                let token = token.get_or_insert_with(|| self.token());
                if bypass::admits(token, value, &rec.record.target, now) {
                    return true;
                }
            }
        }
        false
    }
}

/// Where a link is opened (kinfrad's own namespace).
pub const LINK_PATH: &str = "/kinfra/bypass";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_are_origins() {
        assert_eq!(
            check_base("https://www.example.com/").expect("ok"),
            "https://www.example.com"
        );
        assert_eq!(
            check_base("http://10.0.0.1:8080/shop").expect("ok"),
            "http://10.0.0.1:8080/shop"
        );
        for bad in [
            "www.example.com",
            "ftp://x",
            "https://",
            "https://a@evil.example",
            "https://x/?q",
            "https://x/#f",
            "https://x y",
        ] {
            assert!(check_base(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_nonce_is_used_once_until_it_expires() {
        let o = Opened::default();
        assert!(o.first_use("a", 100, 10));
        assert!(!o.first_use("a", 100, 50));
        assert!(o.first_use("b", 100, 50));
        // Past its expiry a nonce is forgotten (the link itself is refused as expired then).
        assert!(o.first_use("a", 200, 150));
    }
}
