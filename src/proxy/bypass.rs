//! What a response to a maintenance bypass holder carries: always the header
//! `X-Maintenance-Bypass: active`, and for a small, complete, uncompressed HTML page a fixed
//! "bypassing maintenance" ribbon inserted before its last `</body>`.
//!
//! Both request paths send a bypass holder's request here through the hyper path (the fast
//! path's `classify` hands such a request to the router instead of relaying it verbatim), so
//! this is the one place a body is touched. The ribbon is added only when that is safe: a
//! `200` answer to a non-`HEAD` request, `Content-Type: text/html`, no `Content-Encoding`
//! (other than `identity`), a `Content-Length` of at most [`MAX_RIBBON_BODY`], and a
//! `</body>` in it. Anything else (streams, compressed or larger pages, other types, ranges)
//! passes untouched with the header alone. A page with the ribbon gets its `Content-Length`
//! recomputed, loses its `ETag` (the bytes changed) and is marked `Cache-Control: no-store`, so
//! no cache keeps the ribbon for visitors.

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;
use http::header::{self, HeaderValue};

/// The largest page that gets the ribbon (it is read whole to insert it).
pub const MAX_RIBBON_BODY: u64 = 2 * 1024 * 1024;

/// The response header that says a bypass cookie let the request through.
pub const HEADER: &str = "x-maintenance-bypass";

/// The ribbon: a fixed element, inline-styled, that ignores the pointer.
pub const RIBBON: &str = "<div id=\"kinfra-bypass-ribbon\" role=\"status\" style=\"position:fixed;\
right:0;bottom:0;z-index:2147483647;margin:0;padding:2px 10px;background:#b45309;color:#fff;\
font:12px/1.6 system-ui,sans-serif;border-top-left-radius:4px;pointer-events:none\">\
bypassing maintenance</div>";

/// Should this response get the ribbon? (`Some(len)`: its declared length.)
fn ribbon_fits(r: &Response, head_only: bool) -> Option<u64> {
    if head_only || r.status() != StatusCode::OK {
        return None;
    }
    let h = r.headers();
    let html = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/html"))
        });
    let plain = h.get_all(header::CONTENT_ENCODING).iter().all(|v| {
        v.to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("identity"))
    });
    if !html || !plain || h.contains_key(header::CONTENT_RANGE) {
        return None;
    }
    let len = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())?;
    (len <= MAX_RIBBON_BODY).then_some(len)
}

/// Where the ribbon goes: before the last `</body>` (any case), if there is one.
pub fn insert_at(body: &[u8]) -> Option<usize> {
    const END: &[u8] = b"</body";
    body.windows(END.len())
        .rposition(|w| w.eq_ignore_ascii_case(END))
}

/// `body` with the ribbon before its last `</body>`, when it has one.
pub fn with_ribbon(body: &[u8]) -> Option<Vec<u8>> {
    let at = insert_at(body)?;
    let mut out = Vec::with_capacity(body.len() + RIBBON.len());
    out.extend_from_slice(&body[..at]);
    out.extend_from_slice(RIBBON.as_bytes());
    out.extend_from_slice(&body[at..]);
    Some(out)
}

/// Mark a response served to a bypass holder (see the module doc).
pub async fn mark(mut r: Response, head_only: bool) -> Response {
    r.headers_mut()
        .insert(HEADER, HeaderValue::from_static("active"));
    let Some(len) = ribbon_fits(&r, head_only) else {
        return r;
    };
    let (mut parts, body) = r.into_parts();
    // The declared length bounds the read; a body that breaks off or runs longer than declared
    // is an upstream fault, answered like one.
    let bytes = match axum::body::to_bytes(body, len as usize).await {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!(error = %e, "bypass: upstream page broke off while read for the ribbon");
            let mut r = crate::proxy::answers::error_response(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "the upstream's page broke off",
            );
            r.headers_mut()
                .insert(HEADER, HeaderValue::from_static("active"));
            return r;
        }
    };
    let Some(out) = with_ribbon(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let h = &mut parts.headers;
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(out.len()));
    h.remove(header::ETAG);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Response::from_parts(parts, Body::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(ct: &str, body: &str, extra: &[(&'static str, &str)]) -> Response {
        let mut r = Response::new(Body::from(body.to_string()));
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).expect("ct"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        h.insert(header::ETAG, HeaderValue::from_static("\"x\""));
        for (k, v) in extra {
            h.insert(*k, HeaderValue::from_str(v).expect("v"));
        }
        r
    }

    async fn body_of(r: Response) -> String {
        let b = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .expect("body");
        String::from_utf8(b.to_vec()).expect("utf8")
    }

    #[tokio::test]
    async fn the_ribbon_goes_into_plain_html_only() {
        let html = "<html><body><p>new</p></BODY></html>";
        let r = mark(page("text/html; charset=utf-8", html, &[]), false).await;
        assert_eq!(r.headers()[HEADER], "active");
        let len: usize = r.headers()[header::CONTENT_LENGTH]
            .to_str()
            .expect("len")
            .parse()
            .expect("n");
        assert!(r.headers().get(header::ETAG).is_none());
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        let b = body_of(r).await;
        assert_eq!(b.len(), len);
        assert_eq!(b, format!("<html><body><p>new</p>{RIBBON}</BODY></html>"));

        // Untouched, with the header: compressed, JSON, HEAD, no </body>, not 200.
        let gz = mark(
            page("text/html", html, &[("content-encoding", "gzip")]),
            false,
        )
        .await;
        assert_eq!(gz.headers()[HEADER], "active");
        assert_eq!(body_of(gz).await, html);
        let json = mark(page("application/json", "{}", &[]), false).await;
        assert_eq!(body_of(json).await, "{}");
        let head = mark(page("text/html", html, &[]), true).await;
        assert_eq!(head.headers()[header::ETAG], "\"x\"");
        let bare = mark(page("text/html", "<p>hi</p>", &[]), false).await;
        assert_eq!(body_of(bare).await, "<p>hi</p>");
        let mut created = page("text/html", html, &[]);
        *created.status_mut() = StatusCode::CREATED;
        assert_eq!(body_of(mark(created, false).await).await, html);
    }
}
