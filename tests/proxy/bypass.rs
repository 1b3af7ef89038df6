//! The operator's maintenance bypass on the request path: a link minted with `kinfractl maint
//! bypass-link` opens once and sets a signed cookie; during maintenance its holder reaches the
//! service (marked `X-Maintenance-Bypass: active`, with a ribbon in plain HTML pages) while
//! visitors get the maintenance page; the service never sees the cookie; expired and forged
//! links (403) and cookies (maintenance page) are refused; a scoped link passes its target's
//! record only; a drain still refuses; the cookie outlives a restart but not a new admin token.
//! Run with the fast path and (KINFRA_TEST_FAST_PATH=0) without it.

use crate::prelude::*;

const API: &str = "api.example.com/v1";
const BROWSER: &[(&str, &str)] = &[("Accept", "text/html,application/xhtml+xml")];
const JSON: &[(&str, &str)] = &[("Accept", "application/json")];
const PAGE: &str = "<!doctype html><html><body><h1>the new version</h1></body></html>";

/// The api's upstream: an HTML page at `/v1/page.html`, the echo elsewhere.
fn api_upstream() -> Upstream {
    let echo = echo("api");
    Upstream::start(0, move |s| {
        if s.target == "/v1/page.html" {
            Reply::Full(
                200,
                vec![("Content-Type".into(), "text/html; charset=utf-8".into())],
                PAGE.as_bytes().to_vec(),
            )
        } else {
            echo(s)
        }
    })
}

/// Service `api` on api.example.com/v1, service `web` on every other host.
fn config(api: &Upstream, web: &Upstream) -> String {
    format!(
        "{}{}",
        service("api", api.port(), &[API], FAST_HEALTH),
        service("web", web.port(), &["/"], FAST_HEALTH)
    )
}

fn setup() -> (Upstream, Upstream, Daemon) {
    let api = api_upstream();
    let web = Upstream::start(0, echo("web"));
    let d = start(&config(&api, &web));
    wait_running(&d, "api");
    wait_running(&d, "web");
    (api, web, d)
}

/// `GET path` on `host`, kept alive (a browser's request may then meet the fast path's cached
/// maintenance page), with these headers.
fn fetch(d: &Daemon, host: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut h = headers.to_vec();
    h.push(("Connection", "keep-alive"));
    let bytes = request_bytes(d.addr, "GET", path, Some(host), &h, b"");
    send_and_read(d.addr, &bytes, T).unwrap_or_else(|e| panic!("GET {host}{path}: {e}"))
}

/// The same with the bypass cookie `cookie` among other cookies.
fn holder(d: &Daemon, host: &str, path: &str, accept: &[(&str, &str)], cookie: &str) -> Resp {
    let c = format!("theme=dark; kinfra_bypass={cookie}; lang=en");
    let mut h = accept.to_vec();
    h.push(("Cookie", &c));
    fetch(d, host, path, &h)
}

/// Mint a link with these extra arguments; its path and query on kinfrad.
fn mint(d: &Daemon, args: &[&str]) -> String {
    let mut a = vec!["maint", "bypass-link"];
    a.extend_from_slice(args);
    let out = d.ctl_ok(&a);
    let url = out.lines().next().unwrap_or_default();
    let origin = format!("http://{}", d.addr);
    url.strip_prefix(&origin)
        .unwrap_or_else(|| panic!("the link is not on {origin}: {out}"))
        .to_string()
}

/// Open a link; the cookie's value it set and the Set-Cookie line, after checking the redirect.
fn open(d: &Daemon, link: &str, to: &str) -> (String, String) {
    let r = fetch(d, &d.addr.to_string(), link, BROWSER);
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some(to));
    let set = r
        .header("set-cookie")
        .unwrap_or_else(|| panic!("no cookie: {r:?}"))
        .to_string();
    let value = set
        .strip_prefix("kinfra_bypass=")
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("not the bypass cookie: {set}"))
        .to_string();
    (value, set)
}

fn refused_link(d: &Daemon, link: &str) -> Resp {
    let r = fetch(d, &d.addr.to_string(), link, BROWSER);
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.header("set-cookie").is_none(), "{r:?}");
    assert!(r.text().contains("Bypass link refused"), "{}", r.text());
    r
}

fn maintenance(r: &Resp) {
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("x-maintenance-mode"), Some("true"), "{r:?}");
    assert!(r.header("x-maintenance-bypass").is_none(), "{r:?}");
}

fn served_by(r: &Resp, tag: &str) {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-upstream"), Some(tag), "{}", r.text());
    assert!(r.header("x-maintenance-mode").is_none());
}

/// No request the upstream saw carried the bypass cookie; the others' cookies did arrive.
fn never_saw_the_cookie(up: &Upstream) {
    let seen = up.requests();
    assert!(!seen.is_empty());
    for s in &seen {
        let head = s.head_text();
        assert!(!head.contains("kinfra_bypass"), "{head}");
        if s.target != "/health" && s.header("cookie").is_some() {
            assert_eq!(s.all("cookie"), ["theme=dark; lang=en"], "{head}");
        }
    }
}

#[test]
fn a_bypass_link_lets_its_holder_past_maintenance() {
    let (api, web, d) = setup();
    d.ctl_ok(&["maint", "enter", "--message", "Upgrading"]);
    let link = mint(&d, &["--path", "/v1/page.html"]);
    assert!(link.starts_with("/kinfra/bypass?t=v1."), "{link}");

    let (cookie, set) = open(&d, &link, "/v1/page.html");
    for part in ["Path=/", "HttpOnly", "SameSite=Lax"] {
        assert!(set.contains(part), "{set}");
    }
    let max_age: u64 = set
        .split(';')
        .find_map(|p| p.trim().strip_prefix("Max-Age="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Max-Age: {set}"));
    assert!((3500..=3600).contains(&max_age), "{set}");
    // A link opens once.
    assert!(refused_link(&d, &link).text().contains("used"));

    // A visitor gets the maintenance page; the holder gets the service, JSON and HTML alike.
    for accept in [BROWSER, JSON] {
        maintenance(&fetch(&d, "api.example.com", "/v1/item", accept));
        maintenance(&fetch(&d, "www.example.com", "/", accept));
        let r = holder(&d, "api.example.com", "/v1/item", accept, &cookie);
        served_by(&r, "api");
        assert_eq!(r.header("x-maintenance-bypass"), Some("active"));
        served_by(&holder(&d, "www.example.com", "/", accept, &cookie), "web");
    }

    // An HTML page gets the ribbon, framed by its new length.
    let r = holder(&d, "api.example.com", "/v1/page.html", BROWSER, &cookie);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-maintenance-bypass"), Some("active"));
    let page = r.text();
    assert!(page.contains("the new version"), "{page}");
    let ribbon = page
        .find("bypassing maintenance")
        .unwrap_or_else(|| panic!("no ribbon: {page}"));
    assert!(ribbon < page.rfind("</body>").expect("body"), "{page}");
    assert_eq!(
        r.header("content-length").and_then(|v| v.parse().ok()),
        Some(r.body.len())
    );

    // A forged cookie (one changed digit), a cookie of another name: the maintenance page.
    let last = cookie.chars().last().expect("mac");
    let forged = format!(
        "{}{}",
        &cookie[..cookie.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    maintenance(&holder(&d, "api.example.com", "/v1/item", BROWSER, &forged));
    let other = format!("kinfra_session={cookie}");
    maintenance(&fetch(
        &d,
        "api.example.com",
        "/v1/item",
        &[("Cookie", &other), BROWSER[0]],
    ));
    // A forged link, a cut one, none: 403.
    let forged_link = link.replacen("t=v1.", "t=v1.1", 1);
    refused_link(&d, &forged_link);
    refused_link(&d, &link[..link.len() - 4]);
    refused_link(&d, "/kinfra/bypass");

    // Out of maintenance the cookie changes nothing, and is still never forwarded.
    d.ctl_ok(&["maint", "exit"]);
    let r = holder(&d, "api.example.com", "/v1/item", BROWSER, &cookie);
    served_by(&r, "api");
    assert!(r.header("x-maintenance-bypass").is_none(), "{r:?}");
    never_saw_the_cookie(&api);
    never_saw_the_cookie(&web);
}

#[test]
fn a_scoped_link_bypasses_only_its_target() {
    let (_api, _web, d) = setup();
    d.ctl_ok(&["maint", "enter", "--target", "api"]);
    d.ctl_ok(&["maint", "enter", "--target", "web"]);
    let out = d.ctl_ok(&["maint", "bypass-link", "--target", "api"]);
    assert!(out.contains("the maintenance of api"), "{out}");
    let link = mint(&d, &["--target", "api"]);
    let (cookie, _) = open(&d, &link, "/");
    for accept in [BROWSER, JSON] {
        served_by(
            &holder(&d, "api.example.com", "/v1/item", accept, &cookie),
            "api",
        );
        maintenance(&holder(&d, "www.example.com", "/", accept, &cookie));
    }
    // A global record does not answer the api's route while its own record does; once the
    // api's record is gone the global one answers there too, and the scoped cookie is refused.
    d.ctl_ok(&["maint", "enter"]);
    served_by(
        &holder(&d, "api.example.com", "/v1/item", BROWSER, &cookie),
        "api",
    );
    d.ctl_ok(&["maint", "exit", "--target", "api"]);
    maintenance(&holder(&d, "api.example.com", "/v1/item", BROWSER, &cookie));
}

#[test]
fn expired_links_and_cookies_are_refused() {
    let (_api, _web, d) = setup();
    d.ctl_ok(&["maint", "enter"]);
    let unopened = mint(&d, &["--ttl", "3s"]);
    let link = mint(&d, &["--ttl", "3s"]);
    let (cookie, set) = open(&d, &link, "/");
    assert!(
        ["Max-Age=1;", "Max-Age=2;", "Max-Age=3;"]
            .iter()
            .any(|m| set.contains(m)),
        "{set}"
    );
    served_by(
        &holder(&d, "api.example.com", "/v1/item", JSON, &cookie),
        "api",
    );
    eventually(T, "the bypass cookie expires", || {
        let r = holder(&d, "api.example.com", "/v1/item", JSON, &cookie);
        (r.status == 503).then_some(())
    });
    maintenance(&holder(&d, "api.example.com", "/v1/item", BROWSER, &cookie));
    eventually(T, "the unopened link expires", || {
        let r = fetch(&d, &d.addr.to_string(), &unopened, BROWSER);
        (r.status == 403 && r.text().contains("expired")).then_some(())
    });

    // What kinfractl refuses before anything is minted.
    for bad in [
        &["--ttl", "0"][..],
        &["--ttl", "8d"],
        &["--path", "//evil.example/"],
        &["--base", "ftp://x"],
        &["--target", "bad name"],
    ] {
        let mut a = vec!["maint", "bypass-link"];
        a.extend_from_slice(bad);
        let o = d.ctl(&a);
        assert!(!o.status.success(), "{bad:?} was accepted");
        assert!(
            output_text(&o).contains("invalid_argument"),
            "{bad:?}: {}",
            output_text(&o)
        );
    }
    // The base names the public origin.
    let out = d.ctl_ok(&["maint", "bypass-link", "--base", "https://www.example.com/"]);
    assert!(
        out.starts_with("https://www.example.com/kinfra/bypass?t=v1."),
        "{out}"
    );
}

#[test]
fn a_drain_is_not_bypassed() {
    let (_api, _web, d) = setup();
    d.ctl_ok(&["maint", "enter", "--target", "web"]);
    let link = mint(&d, &[]);
    let (cookie, _) = open(&d, &link, "/");
    served_by(&holder(&d, "www.example.com", "/", JSON, &cookie), "web");
    // A zero-length drain refuses everything on `web` at once, bypass cookie or not.
    d.ctl_ok(&["drain", "start", "--target", "web", "--duration", "0s"]);
    for accept in [BROWSER, JSON] {
        let r = holder(&d, "www.example.com", "/", accept, &cookie);
        assert_eq!(r.status, 503, "{r:?}");
        assert_eq!(r.header("x-drain-mode"), Some("true"), "{r:?}");
    }
    served_by(
        &holder(&d, "api.example.com", "/v1/item", JSON, &cookie),
        "api",
    );
}

#[test]
fn links_and_cookies_outlive_a_restart_but_not_the_admin_token() {
    let (api, web, d) = setup();
    let cfg = config(&api, &web);
    let fast = if fast_path() { "1" } else { "0" };
    d.ctl_ok(&["maint", "enter"]);
    let link = mint(&d, &[]);
    let unopened = mint(&d, &[]);
    let (cookie, _) = open(&d, &link, "/");

    // The same token after a restart: the cookie still admits.
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let mut d = d;
    assert!(d.wait_exit(T).success());
    let d = start_config(d.crash(), &cfg, &[("KINFRA_FAST_PATH", fast)]);
    wait_running(&d, "api");
    maintenance(&fetch(&d, "api.example.com", "/v1/item", JSON));
    served_by(
        &holder(&d, "api.example.com", "/v1/item", JSON, &cookie),
        "api",
    );

    // A new admin token: the cookie and the unopened link are refused.
    let dir = d.crash();
    std::fs::remove_file(dir.path().join("state").join("admin-token")).expect("token file");
    let d = start_config(dir, &cfg, &[("KINFRA_FAST_PATH", fast)]);
    wait_running(&d, "api");
    for accept in [BROWSER, JSON] {
        maintenance(&holder(&d, "api.example.com", "/v1/item", accept, &cookie));
    }
    assert!(refused_link(&d, &unopened).text().contains("not valid"));
}
