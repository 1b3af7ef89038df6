//! The fast path's request side (`h1::fuzzing::request`: `read_head`'s httparse call, then
//! `classify`) against real `App`s built once from a config with a few services: one without
//! maintenance, one with maintenance records for one service and one route, one with maintenance
//! everywhere.
//!
//! Input: a flags byte (which app, a loopback or remote client, the head limit), then the bytes
//! the client sent. A request planned for an upstream must be a well-formed head that carries
//! the client's end-to-end headers in order, no hop-by-hop header, one Host, kinfrad's
//! X-Forwarded-* and exactly the body bytes the client sent.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use kinfra::app::{App, AppParts};
use kinfra::proxy::h1::fuzzing::{Decision, request};
use kinfra::model::maintenance::{Maintenance, Target};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
[[service]]
name = "api"
url = "http://127.0.0.1:9/base/"
routes = ["/api/", "api.example.com/"]
strip_prefix = true

[[service]]
name = "web"
url = "http://127.0.0.1:9"
routes = ["/"]
preserve_host = true

[[service]]
name = "wild"
url = "http://127.0.0.1:9"
routes = ["*.example.com/static"]

[[service]]
name = "secure"
url = "https://127.0.0.1:9"
routes = ["/secure"]
"#;

fn app(tag: &str, targets: &[Target]) -> Arc<App> {
    let config = kinfra::config::Config::from_toml(
        "fuzz.toml",
        CONFIG,
        &kinfra::config::Overrides::default(),
    )
    .expect("config");
    let dir = std::env::temp_dir().join(format!("kinfra-fuzz-{}-{tag}", std::process::id()));
    let mut loaded = kinfra::state::StateFile::open(&dir).expect("state dir");
    // Nothing is written while classifying: the directory is not needed after this.
    let _ = std::fs::remove_dir_all(&dir);
    loaded.state.maintenance.records = targets
        .iter()
        .map(|target| Maintenance {
            message: "Back soon".into(),
            current_issue: String::new(),
            start_time_ms: 1,
            estimated_completion_ms: None,
            page_url: None,
            target: target.clone(),
            hits: 0,
        })
        .collect();
    let app = App::new(AppParts {
        pages: kinfra::pages::Pages::load(None).expect("pages"),
        state: loaded.state,
        state_file: loaded.file,
        state_problem: None,
        token: "0".repeat(64),
        notifier: kinfra::systemd::notify::Notifier::disabled(),
        http_addrs: vec!["127.0.0.1:9100".parse().expect("addr")],
        control_path: "control.sock".into(),
        client: kinfra::upstream::client::CustomClient::new(None).expect("client"),
        overrides: kinfra::config::Overrides::default(),
        config,
    })
    .expect("app");
    Arc::new(app)
}

fn apps() -> &'static [Arc<App>; 3] {
    static APPS: OnceLock<[Arc<App>; 3]> = OnceLock::new();
    APPS.get_or_init(|| {
        [
            app("none", &[]),
            app(
                "some",
                &[
                    Target::Service("web".into()),
                    Target::parse("/api/").expect("route"),
                ],
            ),
            app("all", &[Target::All]),
        ]
    })
}

/// Header names a proxy never forwards (RFC 9110 §7.6.1): the list both paths strip.
use kinfra::proxy::HOP;
/// Headers kinfrad writes itself on a forwarded request.
const OWN: &[&str] = &[
    "host",
    "content-length",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

fn lower(n: &str) -> String {
    n.to_ascii_lowercase()
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, sent)) = data.split_first() else {
        return;
    };
    let app = &apps()[usize::from(flags % 3)];
    let loopback = flags & 0x10 != 0;
    let peer: SocketAddr = if loopback {
        "127.0.0.1:40000".parse().expect("addr")
    } else {
        "192.0.2.7:40000".parse().expect("addr")
    };
    let max_head = if flags & 0x20 != 0 { 8192 } else { 32 * 1024 };
    match request(app, sent, peer, max_head) {
        Decision::Partial | Decision::TooLarge | Decision::Malformed | Decision::Handoff => {}
        Decision::Reject(code) => assert!(code == 400 || code == 405, "{code}"),
        Decision::Local { head_len } | Decision::Maintenance { head_len } => {
            assert!(head_len <= sent.len() && head_len <= max_head);
            assert!(sent[..head_len].ends_with(b"\n"));
        }
        // These apps never start a drain.
        Decision::Drained { consumed } => panic!("refused by a drain ({consumed} bytes)"),
        Decision::Proxy {
            service,
            upstream,
            consumed,
            body_len,
        } => check_proxied(app, sent, peer, &service, &upstream, consumed, body_len),
    }
});

fn check_proxied(
    app: &Arc<App>,
    sent: &[u8],
    peer: SocketAddr,
    service: &str,
    upstream: &[u8],
    consumed: usize,
    body_len: u64,
) {
    let body_len = usize::try_from(body_len).expect("small body");
    assert!(consumed <= sent.len(), "{consumed} > {}", sent.len());
    let head_len = consumed.checked_sub(body_len).expect("head before body");

    // What the client sent (parsed again here, with room for every line).
    let mut ch = vec![httparse::EMPTY_HEADER; 256];
    let mut creq = httparse::Request::new(&mut ch);
    assert_eq!(
        creq.parse(sent).expect("client head parsed"),
        httparse::Status::Complete(head_len)
    );
    let mut named: Vec<String> = Vec::new();
    let mut client_len = None;
    let mut client_host = None;
    for h in creq.headers.iter() {
        match lower(h.name).as_str() {
            "connection" => named.extend(
                String::from_utf8_lossy(h.value)
                    .split(',')
                    .map(|t| t.trim().to_ascii_lowercase()),
            ),
            "content-length" => client_len = Some(h.value),
            "host" => client_host = Some(h.value),
            _ => {}
        }
    }
    // Names with '_' stay behind (underscores_in_headers is off), and kinfrad's session cookie
    // is taken out of every Cookie (a Cookie left empty goes).
    let end_to_end: Vec<(String, Vec<u8>)> = creq
        .headers
        .iter()
        .map(|h| (lower(h.name), h.value))
        .filter(|(n, _)| {
            !HOP.contains(&n.as_str())
                && !OWN.contains(&n.as_str())
                && !named.contains(n)
                && !n.contains('_')
        })
        .filter_map(|(n, v)| {
            if n != "cookie" {
                return Some((n, v.to_vec()));
            }
            match kinfra::proxy::without_session_cookie(v) {
                None => Some((n, v.to_vec())),
                Some(rest) if rest.is_empty() => None,
                Some(rest) => Some((n, rest)),
            }
        })
        .collect();

    // What goes upstream.
    let mut uh = vec![httparse::EMPTY_HEADER; 256];
    let mut ureq = httparse::Request::new(&mut uh);
    let n = match ureq.parse(upstream) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!(
            "upstream head {:?}: {other:?}",
            String::from_utf8_lossy(upstream)
        ),
    };
    assert_eq!(upstream.len() - n, body_len, "body after the head");
    assert_eq!(&upstream[n..], &sent[head_len..consumed], "body bytes");
    assert_eq!(ureq.method, creq.method);
    assert_eq!(ureq.version, Some(1));

    let up = app
        .services()
        .get(service)
        .cloned()
        .expect("a configured service");
    let cfg = up.cfg();
    let target = ureq.path.expect("path");
    let client_target = creq.path.expect("path");
    assert!(
        target.starts_with(&format!("{}/", cfg.url.base_path)),
        "{target}"
    );
    if !cfg.strip_prefix {
        assert_eq!(target, format!("{}{client_target}", cfg.url.base_path));
    }

    let mut forwarded = Vec::new();
    let (mut hosts, mut xff, mut xfp, mut xfh, mut lens) = (0, 0, 0, 0, 0);
    for h in ureq.headers.iter() {
        let name = lower(h.name);
        assert!(!HOP.contains(&name.as_str()), "hop-by-hop {name} forwarded");
        match name.as_str() {
            "host" => {
                hosts += 1;
                if cfg.preserve_host {
                    assert_eq!(Some(h.value), client_host);
                } else {
                    assert_eq!(h.value, cfg.url.authority.as_str().as_bytes());
                }
            }
            "content-length" => {
                lens += 1;
                assert_eq!(h.value, body_len.to_string().as_bytes());
            }
            "x-forwarded-for" => {
                xff += 1;
                let ip = peer.ip().to_string();
                assert!(h.value.ends_with(ip.as_bytes()), "{:?}", h.value);
                if !peer.ip().is_loopback() {
                    assert_eq!(h.value, ip.as_bytes(), "a remote client's XFF is not kept");
                }
            }
            "x-forwarded-proto" => {
                xfp += 1;
                if !peer.ip().is_loopback() {
                    assert_eq!(h.value, b"http");
                }
            }
            "x-forwarded-host" => {
                xfh += 1;
                if !peer.ip().is_loopback() {
                    assert_eq!(Some(h.value), client_host);
                }
            }
            _ => {
                assert!(!named.contains(&name), "{name} is named by Connection");
                assert!(!name.contains('_'), "{name} has an underscore");
                if name == "cookie" {
                    assert_eq!(
                        kinfra::proxy::without_session_cookie(h.value),
                        None,
                        "the session cookie went upstream"
                    );
                }
                forwarded.push((name, h.value.to_vec()));
            }
        }
    }
    assert_eq!(hosts, 1, "one Host");
    assert_eq!(xff, 1, "one X-Forwarded-For");
    assert_eq!(lens, usize::from(client_len.is_some()), "Content-Length");
    if !peer.ip().is_loopback() {
        assert_eq!((xfp, xfh), (1, 1), "kinfrad's own X-Forwarded-Proto/Host");
    }
    assert_eq!(forwarded, end_to_end, "end-to-end headers, in order");
}
