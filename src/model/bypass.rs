//! The operator's way past maintenance: a signed, expiring link that, once opened, leaves a
//! signed, expiring cookie whose holder reaches the real service while visitors get the
//! maintenance page.
//!
//! Both values are stateless and keyed by the admin token (HMAC-SHA256), like the dashboard's
//! session cookie, so they survive a restart and die with the token:
//!
//! - the link's token: `v1.<expiry>.<scope>.<path>.<nonce>.<mac>`, redeemed once (the nonce is
//!   remembered by the caller until the expiry);
//! - the cookie: `v1.<expiry>.<scope>.<mac>`.
//!
//! `<scope>` is `-` (every record) or the hex of one target's text (only the record of that
//! target); `<path>` is the hex of the local path the link redirects to. Each MAC covers every
//! field under its own label, so a cookie is never a link, nor either a session. The rules take
//! `now` (seconds) as an argument.

use ring::hmac;

use crate::model::maintenance::Target;

/// The bypass cookie's name. The request path takes it out of every request it forwards.
pub const COOKIE: &str = "kinfra_bypass";
/// A link's lifetime when the operator names none.
pub const DEFAULT_TTL_SECS: u64 = 3600;
/// The longest lifetime a link (and its cookie) may have: a week.
pub const MAX_TTL_SECS: u64 = 7 * 24 * 3600;
/// Clock slack accepted on top of [`MAX_TTL_SECS`] when checking an expiry.
const SLACK_SECS: u64 = 60;

const LINK_LABEL: &str = "kinfra-bypass-link-v1";
const COOKIE_LABEL: &str = "kinfra-bypass-cookie-v1";

/// A link's token as it was minted, after its signature and expiry were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// The scope field as signed (`-` or hex): carried over into the cookie as it is.
    pub scope: String,
    /// The local path to redirect to.
    pub path: String,
    /// The link's one-time id.
    pub nonce: String,
}

/// Why a link is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRefusal {
    /// Not a link kinfrad minted with the current admin token (changed, cut, forged).
    Invalid,
    /// Past its expiry.
    Expired,
    /// Opened before (links work once).
    Used,
}

impl LinkRefusal {
    /// A sentence for the refusal page.
    pub fn message(self) -> &'static str {
        match self {
            LinkRefusal::Invalid => {
                "This maintenance bypass link is not valid: it was changed, cut short, or the admin token changed since it was made."
            }
            LinkRefusal::Expired => "This maintenance bypass link has expired.",
            LinkRefusal::Used => {
                "This maintenance bypass link was used already: each link works once."
            }
        }
    }
}

fn key(token: &str) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes())
}

/// Lower-case hex of `b`.
pub fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(DIGITS[(x >> 4) as usize] as char);
        s.push(DIGITS[(x & 15) as usize] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// The scope field for `target` (`None`: every record).
pub fn scope_field(target: Option<&Target>) -> String {
    match target {
        None => "-".to_string(),
        Some(t) => hex(t.to_string().as_bytes()),
    }
}

/// Is `path` a path a link may redirect to: local (`/…`, never `//host`), printable ASCII, at
/// most 2048 bytes?
pub fn check_path(path: &str) -> Result<(), String> {
    let ok = path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
        && path.len() <= 2048
        && path.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "path {path:?} must be a local path: it starts with one '/', and holds printable ASCII only (2048 bytes at most)"
        ))
    }
}

fn tag(token: &str, label: &str, fields: &[&str]) -> String {
    let msg = format!("{label}.{}", fields.join("."));
    hex(hmac::sign(&key(token), msg.as_bytes()).as_ref())
}

fn verify(token: &str, label: &str, fields: &[&str], mac: &str) -> bool {
    let Some(mac) = unhex(mac).filter(|m| m.len() == 32) else {
        return false;
    };
    let msg = format!("{label}.{}", fields.join("."));
    hmac::verify(&key(token), msg.as_bytes(), &mac).is_ok()
}

/// A link's token valid until `exp` for `scope` (from [`scope_field`]) that redirects to `path`
/// (checked with [`check_path`]); `nonce` is random hex, the link's one-time id.
pub fn mint_link(token: &str, exp: u64, scope: &str, path: &str, nonce: &str) -> String {
    let path = hex(path.as_bytes());
    let exp = exp.to_string();
    let mac = tag(token, LINK_LABEL, &[&exp, scope, &path, nonce]);
    format!("v1.{exp}.{scope}.{path}.{nonce}.{mac}")
}

/// The expiry field: a number no later than the longest lifetime from now.
fn expiry(exp: &str, now: u64) -> Option<u64> {
    let n = exp.parse::<u64>().ok()?;
    (n <= now.saturating_add(MAX_TTL_SECS + SLACK_SECS)).then_some(n)
}

fn valid_scope(scope: &str) -> bool {
    scope == "-" || (!scope.is_empty() && scope.len() <= 1024 && unhex(scope).is_some())
}

/// Check a link's token: signed with `token`, not expired at `now`. (Whether it was used is the
/// caller's to know.)
pub fn open_link(token: &str, value: &str, now: u64) -> Result<Link, LinkRefusal> {
    let mut it = value.split('.');
    let (Some("v1"), Some(exp), Some(scope), Some(path_hex), Some(nonce), Some(mac), None) = (
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
    ) else {
        return Err(LinkRefusal::Invalid);
    };
    let Some(exp_n) = expiry(exp, now) else {
        return Err(LinkRefusal::Invalid);
    };
    if !valid_scope(scope) || nonce.is_empty() || nonce.len() > 64 {
        return Err(LinkRefusal::Invalid);
    }
    if !verify(token, LINK_LABEL, &[exp, scope, path_hex, nonce], mac) {
        return Err(LinkRefusal::Invalid);
    }
    if exp_n <= now {
        return Err(LinkRefusal::Expired);
    }
    let path = unhex(path_hex)
        .and_then(|p| String::from_utf8(p).ok())
        .filter(|p| check_path(p).is_ok())
        .ok_or(LinkRefusal::Invalid)?;
    Ok(Link {
        exp: exp_n,
        scope: scope.to_string(),
        path,
        nonce: nonce.to_string(),
    })
}

/// The cookie value for an opened link: the same expiry and scope.
pub fn mint_cookie(token: &str, link: &Link) -> String {
    let exp = link.exp.to_string();
    let mac = tag(token, COOKIE_LABEL, &[&exp, &link.scope]);
    format!("v1.{exp}.{}.{mac}", link.scope)
}

/// The `Set-Cookie` value for `value`, living `max_age` seconds. SameSite=Lax: the cookie is
/// set on a redirect the operator's browser follows from a link opened elsewhere.
pub fn set_cookie(value: &str, max_age: u64) -> String {
    format!("{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax")
}

/// Does the cookie `value` let its holder past the record of `target` at `now`: signed with
/// `token`, not expired, and either unscoped or scoped to exactly that target?
pub fn admits(token: &str, value: &[u8], target: &Target, now: u64) -> bool {
    let Ok(value) = std::str::from_utf8(value) else {
        return false;
    };
    let mut it = value.split('.');
    let (Some("v1"), Some(exp), Some(scope), Some(mac), None) =
        (it.next(), it.next(), it.next(), it.next(), it.next())
    else {
        return false;
    };
    let Some(exp_n) = expiry(exp, now) else {
        return false;
    };
    if exp_n <= now || !valid_scope(scope) {
        return false;
    }
    if scope != "-" && scope != scope_field(Some(target)) {
        return false;
    }
    verify(token, COOKIE_LABEL, &[exp, scope], mac)
}

/// The bypass cookie's values in one `Cookie` header value (`a=1; kinfra_bypass=…`).
pub fn cookie_values(header: &[u8]) -> impl Iterator<Item = &[u8]> {
    header.split(|b| *b == b';').filter_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|b| *b == b'=')?;
        (pair[..eq].trim_ascii() == COOKIE.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_800_000_000;

    fn link(scope: Option<&Target>, ttl: u64) -> String {
        mint_link(TOKEN, NOW + ttl, &scope_field(scope), "/check?x=1", "00ff")
    }

    #[test]
    fn links_open_once_signed_and_in_time() {
        let l = open_link(TOKEN, &link(None, 60), NOW).expect("valid");
        assert_eq!(l.path, "/check?x=1");
        assert_eq!(l.exp, NOW + 60);
        assert_eq!(l.nonce, "00ff");
        assert_eq!(
            open_link(TOKEN, &link(None, 60), NOW + 60),
            Err(LinkRefusal::Expired)
        );
        assert_eq!(
            open_link("another-token-another-token", &link(None, 60), NOW),
            Err(LinkRefusal::Invalid)
        );
        // Any changed field breaks the signature.
        let good = link(None, 60);
        let longer = good.replacen(&format!("{}", NOW + 60), &format!("{}", NOW + 600), 1);
        assert_eq!(open_link(TOKEN, &longer, NOW), Err(LinkRefusal::Invalid));
        let other_path = good.replacen(&hex(b"/check?x=1"), &hex(b"/admin"), 1);
        assert_eq!(
            open_link(TOKEN, &other_path, NOW),
            Err(LinkRefusal::Invalid)
        );
        let t = Target::parse("api").expect("target");
        let widened = link(Some(&t), 60).replacen(&scope_field(Some(&t)), "-", 1);
        assert_eq!(open_link(TOKEN, &widened, NOW), Err(LinkRefusal::Invalid));
        for bad in [
            "",
            "v1",
            "v1.1.-.2f.00.zz",
            "v2.1.-.2f.00.00",
            "v1.x.-.2f.00.00",
        ] {
            assert_eq!(
                open_link(TOKEN, bad, NOW),
                Err(LinkRefusal::Invalid),
                "{bad}"
            );
        }
        // An expiry beyond the longest lifetime is refused even when signed.
        let far = mint_link(TOKEN, NOW + MAX_TTL_SECS + 3600, "-", "/", "00");
        assert_eq!(open_link(TOKEN, &far, NOW), Err(LinkRefusal::Invalid));
    }

    #[test]
    fn cookies_admit_their_scope_until_they_expire() {
        let api = Target::parse("api").expect("target");
        let web = Target::parse("web").expect("target");
        let all = Target::All;
        let open = |scope: Option<&Target>| open_link(TOKEN, &link(scope, 60), NOW).expect("open");
        let every = mint_cookie(TOKEN, &open(None));
        for t in [&api, &web, &all] {
            assert!(admits(TOKEN, every.as_bytes(), t, NOW), "{t}");
        }
        assert!(!admits(TOKEN, every.as_bytes(), &api, NOW + 60));
        assert!(!admits(
            "another-token-another-token",
            every.as_bytes(),
            &api,
            NOW
        ));
        let scoped = mint_cookie(TOKEN, &open(Some(&api)));
        assert!(admits(TOKEN, scoped.as_bytes(), &api, NOW));
        assert!(!admits(TOKEN, scoped.as_bytes(), &web, NOW));
        assert!(!admits(TOKEN, scoped.as_bytes(), &all, NOW));
        // A scoped cookie widened by hand, or a link's token used as a cookie: refused.
        let widened = scoped.replacen(&scope_field(Some(&api)), "-", 1);
        assert!(!admits(TOKEN, widened.as_bytes(), &web, NOW));
        assert!(!admits(TOKEN, link(None, 60).as_bytes(), &api, NOW));
        for bad in ["", "v1.1.-", "v1.99999999999999999999.-.00", "v1.x.-.00"] {
            assert!(!admits(TOKEN, bad.as_bytes(), &api, NOW), "{bad}");
        }
    }

    #[test]
    fn paths_and_cookie_headers() {
        assert!(check_path("/").is_ok());
        assert!(check_path("/a/b?c=d").is_ok());
        for bad in ["", "a", "//evil.example/", "/\\evil", "/a b", "/caf\u{e9}"] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        let h = b"a=1; kinfra_bypass=v1.2.-.ab ;kinfra_bypassx=no; b=2";
        let got: Vec<&[u8]> = cookie_values(h).collect();
        assert_eq!(got, vec![&b"v1.2.-.ab"[..]]);
        assert!(
            set_cookie("v", 30).contains("Max-Age=30; HttpOnly; SameSite=Lax")
                && set_cookie("v", 30).contains("Path=/")
        );
    }
}
