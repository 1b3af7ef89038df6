//! Who may read the dashboard and who may act: the admin token (`Authorization: Bearer`), or a
//! browser session cookie minted by the login form.
//!
//! The session cookie is stateless: `v1.<expiry>.<HMAC-SHA256(token, expiry)>`, so it survives a
//! restart and dies with the token. It is HttpOnly and SameSite=Strict; on top of that, a POST
//! authenticated by the cookie must carry `X-Requested-With` (a header a cross-site form can't
//! send, and a cross-site `fetch` can't send without a CORS preflight kinfrad never grants) and
//! must not come from another origin (`Origin`, `Sec-Fetch-Site`).

use std::net::SocketAddr;

use http::header::{self, HeaderMap};
use ring::hmac;

use crate::config::DashboardAccess;

/// The session cookie's name (defined with `App`: the request path strips it too).
pub use crate::app::SESSION_COOKIE as COOKIE;
/// How long a login lasts.
pub const SESSION_SECS: u64 = 12 * 3600;
/// The header a cookie-authenticated POST must carry.
pub const CSRF_HEADER: &str = "x-requested-with";

fn key(token: &str) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes())
}

/// A session value valid until `now_secs + SESSION_SECS`.
pub fn mint(token: &str, now_secs: u64) -> String {
    let exp = now_secs + SESSION_SECS;
    let tag = hmac::sign(&key(token), format!("kinfra-session-v1.{exp}").as_bytes());
    format!("v1.{exp}.{}", crate::state::token::hex(tag.as_ref()))
}

/// Is `value` a session minted with `token` that has not expired?
pub fn valid(token: &str, value: &str, now_secs: u64) -> bool {
    let mut it = value.split('.');
    let (Some("v1"), Some(exp), Some(tag), None) = (it.next(), it.next(), it.next(), it.next())
    else {
        return false;
    };
    let Ok(exp_n) = exp.parse::<u64>() else {
        return false;
    };
    if exp_n <= now_secs || exp_n > now_secs + SESSION_SECS + 60 {
        return false;
    }
    let Some(tag) = unhex(tag) else {
        return false;
    };
    hmac::verify(
        &key(token),
        format!("kinfra-session-v1.{exp}").as_bytes(),
        &tag,
    )
    .is_ok()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// The `Set-Cookie` value for a fresh session.
pub fn set_cookie(value: &str) -> String {
    format!("{COOKIE}={value}; Path=/; Max-Age={SESSION_SECS}; HttpOnly; SameSite=Strict")
}

/// The `Set-Cookie` value that ends a session.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")
}

/// The session cookie's value, if the request carries one.
fn cookie(h: &HeaderMap) -> Option<&str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim())
}

/// Does the request carry the admin token as `Authorization: Bearer`?
pub fn bearer(token: &str, h: &HeaderMap) -> bool {
    let Some(v) = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(given) = v.strip_prefix("Bearer ").map(str::trim) else {
        return false;
    };
    crate::state::token::constant_time_eq(given.as_bytes(), token.as_bytes())
}

/// Does the request carry a valid session cookie?
pub fn session(token: &str, h: &HeaderMap, now_secs: u64) -> bool {
    cookie(h).is_some_and(|v| valid(token, v, now_secs))
}

/// Why a request may not act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No token and no session: 401.
    Unauthenticated,
    /// A session, but the request may come from another site: 403.
    CrossSite,
}

impl Denied {
    /// 401 without credentials, 403 for a cross-site request.
    pub fn status(self) -> http::StatusCode {
        match self {
            Denied::Unauthenticated => http::StatusCode::UNAUTHORIZED,
            Denied::CrossSite => http::StatusCode::FORBIDDEN,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Denied::Unauthenticated => "unauthorized",
            Denied::CrossSite => "forbidden",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Denied::Unauthenticated => {
                "log in at /kinfra/login, or send the admin token as 'Authorization: Bearer TOKEN' (kinfractl token prints it)"
            }
            Denied::CrossSite => {
                "refused: a cookie-authenticated request must come from kinfrad's own pages (same origin, X-Requested-With)"
            }
        }
    }
}

/// Was the request sent by a page of another site? Judged by `Sec-Fetch-Site` and `Origin`
/// (compared with `Host`); a request with neither (curl, old browsers) is not.
fn cross_site(h: &HeaderMap) -> bool {
    if let Some(site) = h.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return true;
    }
    let Some(origin) = h.get(header::ORIGIN) else {
        return false;
    };
    let Ok(origin) = origin.to_str() else {
        return true;
    };
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
    let bare = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match (bare, host) {
        (Some(o), Some(host)) => !o.eq_ignore_ascii_case(host),
        _ => true,
    }
}

/// May this request change things? The bearer token always may; a session cookie may when the
/// request is same-origin and carries `X-Requested-With`.
pub fn admin(token: &str, h: &HeaderMap, now_secs: u64) -> Result<(), Denied> {
    if bearer(token, h) {
        return Ok(());
    }
    if !session(token, h, now_secs) {
        return Err(Denied::Unauthenticated);
    }
    if !h.contains_key(CSRF_HEADER) || cross_site(h) {
        return Err(Denied::CrossSite);
    }
    Ok(())
}

/// May this request read the dashboard and its data? In `loopback` mode a reader without a
/// token or session must connect from a loopback address *and* name a loopback host
/// ([`loopback_host`]; `extra_hosts` are `dashboard_hosts`): a page of another site whose name
/// was pointed at 127.0.0.1 (DNS rebinding), or a local proxy or tunnel passing on outside
/// requests, connects from loopback but names another host.
pub fn can_read(
    access: DashboardAccess,
    extra_hosts: &[String],
    token: &str,
    uri: &http::Uri,
    h: &HeaderMap,
    peer: Option<SocketAddr>,
    now_secs: u64,
) -> bool {
    let local = || {
        peer.is_some_and(|p| p.ip().to_canonical().is_loopback())
            && request_host(uri, h).is_some_and(|host| loopback_host(&host, extra_hosts))
    };
    match access {
        DashboardAccess::Public => true,
        DashboardAccess::Loopback if local() => true,
        _ => bearer(token, h) || session(token, h, now_secs),
    }
}

/// The host a request names ([`crate::proxy::answers::host_of`], the request path's own
/// reading), without a trailing dot; `None` when it names none, names two, or is not a host.
pub fn request_host(uri: &http::Uri, h: &HeaderMap) -> Option<String> {
    let host = crate::proxy::answers::host_of(uri, h).ok()?;
    let host = host.strip_suffix('.').unwrap_or(&host);
    (!host.is_empty()).then(|| host.to_string())
}

/// Is `host` (as [`request_host`] gives it) a name of this machine's loopback: `localhost`, an
/// address in 127.0.0.0/8, `[::1]` (IPv4-mapped loopback too), or one of `extra`? Names under
/// `.localhost` are not: not every resolver keeps them on the loopback, so they are listed in
/// `extra` when wanted.
pub fn loopback_host(host: &str, extra: &[String]) -> bool {
    let ip = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(std::net::IpAddr::V6),
        None => host
            .parse::<std::net::Ipv4Addr>()
            .ok()
            .map(std::net::IpAddr::V4),
    };
    match ip {
        Some(ip) => ip.to_canonical().is_loopback(),
        None => host == "localhost" || extra.iter().any(|e| e == host),
    }
}

/// A `next=` target for after login: a local path only (never `//host` or a URL), in
/// printable ASCII so it can always go back out as a `Location` header.
pub fn local_next(next: &str) -> &str {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.bytes().all(|b| b.is_ascii_graphic());
    if ok { next } else { "/kinfra" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_800_000_000;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn sessions_verify_expire_and_die_with_the_token() {
        let s = mint(TOKEN, NOW);
        assert!(valid(TOKEN, &s, NOW));
        assert!(valid(TOKEN, &s, NOW + SESSION_SECS - 1));
        assert!(!valid(TOKEN, &s, NOW + SESSION_SECS));
        assert!(!valid("another-token-another-token", &s, NOW));
        // A changed expiry breaks the tag.
        let forged = s.replacen(
            &format!("{}", NOW + SESSION_SECS),
            &format!("{}", NOW + SESSION_SECS + 5),
            1,
        );
        assert!(!valid(TOKEN, &forged, NOW));
        for bad in [
            "",
            "v1",
            "v1.x.y",
            "v2.1.2",
            "v1.99999999999999999999.00",
            "v1.1.zz",
        ] {
            assert!(!valid(TOKEN, bad, NOW), "{bad}");
        }
    }

    #[test]
    fn admin_needs_token_or_same_origin_session() {
        assert_eq!(
            admin(TOKEN, &headers(&[]), NOW),
            Err(Denied::Unauthenticated)
        );
        let bearer = format!("Bearer {TOKEN}");
        assert_eq!(
            admin(TOKEN, &headers(&[("authorization", &bearer)]), NOW),
            Ok(())
        );
        assert_eq!(
            admin(TOKEN, &headers(&[("authorization", "Bearer wrong")]), NOW),
            Err(Denied::Unauthenticated)
        );
        let c = format!("a=b; {COOKIE}={}", mint(TOKEN, NOW));
        let host = ("host", "127.0.0.1:9100");
        // The cookie alone (a cross-site form post would look like this): refused.
        assert_eq!(
            admin(TOKEN, &headers(&[("cookie", &c), host]), NOW),
            Err(Denied::CrossSite)
        );
        let xrw = ("x-requested-with", "kinfra");
        assert_eq!(
            admin(TOKEN, &headers(&[("cookie", &c), host, xrw]), NOW),
            Ok(())
        );
        let same = ("origin", "http://127.0.0.1:9100");
        assert_eq!(
            admin(TOKEN, &headers(&[("cookie", &c), host, xrw, same]), NOW),
            Ok(())
        );
        let other = ("origin", "http://evil.example");
        assert_eq!(
            admin(TOKEN, &headers(&[("cookie", &c), host, xrw, other]), NOW),
            Err(Denied::CrossSite)
        );
        let fetch_site = ("sec-fetch-site", "cross-site");
        assert_eq!(
            admin(
                TOKEN,
                &headers(&[("cookie", &c), host, xrw, fetch_site]),
                NOW
            ),
            Err(Denied::CrossSite)
        );
    }

    #[test]
    fn read_access_follows_the_setting() {
        let lo: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let lo_mapped: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().expect("addr");
        let far: SocketAddr = "192.0.2.7:5000".parse().expect("addr");
        let origin = http::Uri::from_static("/kinfra");
        let local = headers(&[("host", "localhost:9100")]);
        let read =
            |access, h: &HeaderMap, peer| can_read(access, &[], TOKEN, &origin, h, Some(peer), NOW);
        assert!(read(DashboardAccess::Loopback, &local, lo));
        assert!(read(DashboardAccess::Loopback, &local, lo_mapped));
        assert!(!read(DashboardAccess::Loopback, &local, far));
        assert!(read(DashboardAccess::Public, &local, far));
        assert!(!read(DashboardAccess::Login, &local, lo));
        let c = format!("{COOKIE}={}", mint(TOKEN, NOW));
        assert!(read(
            DashboardAccess::Login,
            &headers(&[("cookie", &c)]),
            far
        ));
    }

    #[test]
    fn loopback_reading_needs_a_loopback_host() {
        let lo: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let origin = http::Uri::from_static("/api/dashboard/routes");
        let extra = vec!["box.lan".to_string()];
        let read = |uri: &http::Uri, h: &HeaderMap| {
            can_read(
                DashboardAccess::Loopback,
                &extra,
                TOKEN,
                uri,
                h,
                Some(lo),
                NOW,
            )
        };
        for host in [
            "localhost",
            "localhost:9100",
            "LOCALHOST.",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]:9100",
            "[::ffff:127.0.0.1]",
            "box.lan:9100",
            "Box.Lan",
        ] {
            assert!(read(&origin, &headers(&[("host", host)])), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:9100",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "app.localhost",
            "sub.box.lan",
            "0.0.0.0:9100",
            "[::]:9100",
            "192.0.2.7",
            "user@localhost",
            "local host",
            "",
        ] {
            assert!(!read(&origin, &headers(&[("host", host)])), "{host:?}");
        }
        // No Host, or two: not a loopback reader.
        assert!(!read(&origin, &headers(&[])));
        assert!(!read(
            &origin,
            &headers(&[("host", "localhost"), ("host", "evil.example")])
        ));
        // A target's authority is the request's host, whatever Host says.
        let absolute = http::Uri::from_static("http://evil.example/api/dashboard/routes");
        assert!(!read(&absolute, &headers(&[("host", "localhost")])));
        let absolute = http::Uri::from_static("http://localhost:9100/api/dashboard/routes");
        assert!(read(&absolute, &headers(&[])));
        // The token and a session still read from anywhere.
        let bearer = format!("Bearer {TOKEN}");
        let h = headers(&[("host", "evil.example"), ("authorization", &bearer)]);
        assert!(read(&origin, &h));
    }

    #[test]
    fn next_is_a_local_path() {
        assert_eq!(local_next("/kinfra"), "/kinfra");
        assert_eq!(local_next("/__logs__/api"), "/__logs__/api");
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "kinfra",
            "",
            "/caf\u{e9}",
            "/a b",
        ] {
            assert_eq!(local_next(bad), "/kinfra", "{bad}");
        }
    }
}
