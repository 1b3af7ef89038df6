//! Which request and response headers cross kinfrad, and which never do: hop-by-hop headers,
//! kinfrad's session cookie, underscored names, h2c upgrades; `X-Forwarded-*`.

use std::net::SocketAddr;

use axum::body::Body;
use http::Request;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded in either direction.
pub const HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Remove hop-by-hop headers, including those named in `Connection`.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    if h.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            // A message's own framing and Host are never "hop-by-hop by Connection": an
            // upstream's `Connection: content-length` must not unframe its response.
            .filter(|n| *n != header::CONTENT_LENGTH && *n != header::HOST)
            .collect();
        for n in named {
            h.remove(n);
        }
    }
    for n in HOP {
        h.remove(*n);
    }
}

/// A `Cookie` header value without kinfrad's own cookies: the session (an admin credential) and
/// the maintenance bypass, which no upstream may see. `None`: the value carries neither
/// (forward it as it is); `Some(rest)`: the other cookies, `"; "`-joined (empty when nothing
/// else was left).
pub fn without_session_cookie(value: &[u8]) -> Option<Vec<u8>> {
    let session = crate::app::SESSION_COOKIE.as_bytes();
    let bypass = crate::model::bypass::COOKIE.as_bytes();
    // Both names start with `kinfra_`: one search rules out most Cookie headers.
    memchr::memmem::find(value, b"kinfra_")?;
    let mut out = Vec::with_capacity(value.len());
    let mut dropped = false;
    for pair in value.split(|b| *b == b';') {
        let pair = pair.trim_ascii();
        if pair.is_empty() {
            continue;
        }
        let key = pair
            .split(|b| *b == b'=')
            .next()
            .unwrap_or(pair)
            .trim_ascii();
        if key == session || key == bypass {
            dropped = true;
            continue;
        }
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(pair);
    }
    dropped.then_some(out)
}

/// Remove kinfrad's session and bypass cookies from every `Cookie` header (HTTP/2 clients send one header
/// per cookie); a header left empty goes.
pub fn strip_session_cookie(h: &mut HeaderMap) {
    if !h
        .get_all(header::COOKIE)
        .iter()
        .any(|v| without_session_cookie(v.as_bytes()).is_some())
    {
        return;
    }
    let kept: Vec<HeaderValue> = h
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| match without_session_cookie(v.as_bytes()) {
            None => Some(v.clone()),
            Some(rest) if rest.is_empty() => None,
            Some(rest) => HeaderValue::from_bytes(&rest).ok(),
        })
        .collect();
    h.remove(header::COOKIE);
    for v in kept {
        h.append(header::COOKIE, v);
    }
}

/// Drop request headers whose names contain `_` (unless `underscores_in_headers` allows them):
/// `X_Forwarded_For` would pass kinfrad's `X-Forwarded-For` rule and reach an application that
/// maps `_` and `-` to the same CGI variable.
pub fn strip_underscore_names(h: &mut HeaderMap) {
    if !h.keys().any(|k| k.as_str().contains('_')) {
        return;
    }
    let names: Vec<HeaderName> = h
        .keys()
        .filter(|k| k.as_str().contains('_'))
        .cloned()
        .collect();
    for n in names {
        h.remove(n);
    }
}

/// Is this an HTTP/1.1 upgrade request (WebSocket and friends)?
pub fn upgrade_protocol(req: &Request<Body>) -> Option<HeaderValue> {
    let conn_upgrade = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
    if !conn_upgrade {
        return None;
    }
    let proto = req.headers().get(header::UPGRADE)?;
    // h2c (RFC 7540 §3.2, removed by RFC 9113) is refused: kinfrad speaks HTTP/2 to clients
    // itself and upstreams get HTTP/1.1, so an h2c upgrade would only open a raw tunnel past
    // kinfrad's HTTP handling. The request is served as plain HTTP/1.1 instead (RFC 9110 §7.8:
    // a server may ignore Upgrade).
    let h2c = proto
        .to_str()
        .map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("h2c")))
        .unwrap_or(true);
    (!h2c).then(|| proto.clone())
}

/// Set `X-Forwarded-For/-Proto/-Host`. `host` is the client's Host (or HTTP/2 authority) as
/// sent, port and case included.
pub(crate) fn add_forwarded(
    h: &mut HeaderMap,
    peer: Option<SocketAddr>,
    host: Option<&HeaderValue>,
) {
    let trusted = peer.is_some_and(|p| p.ip().is_loopback());
    if let Some(peer) = peer {
        let ip = peer.ip().to_string();
        let v = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prev) if trusted => format!("{prev}, {ip}"),
            _ => ip,
        };
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert("x-forwarded-for", v);
        }
    }
    // A loopback peer (a tunnel or a TLS terminator on this host) may already have set these.
    if !(trusted && h.contains_key("x-forwarded-proto")) {
        h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    }
    if !(trusted && h.contains_key("x-forwarded-host"))
        && let Some(v) = host
    {
        h.insert("x-forwarded-host", v.clone());
    }
}
