//! `GET /kinfra/bypass?t=…`: where a maintenance bypass link is opened. A valid link (signed
//! with the current admin token, not expired, not opened before) sets the bypass cookie and
//! redirects to the link's path; any other gets a 403 page that says why. The link needs no
//! login: it is itself the credential, minted on the control socket (`kinfractl maint
//! bypass-link`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use http::StatusCode;
use http::header::{self, HeaderValue};

use crate::app::App;

/// The `t` parameter of a query string, as it is (a link's token needs no decoding).
fn token_param(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("t="))
        .filter(|t| !t.is_empty())
}

/// `GET /kinfra/bypass`.
pub async fn open(State(app): State<Arc<App>>, RawQuery(query): RawQuery) -> Response {
    let opened = match token_param(query.as_deref()) {
        None => Err(crate::model::bypass::LinkRefusal::Invalid),
        Some(t) => app.bypass_open(t),
    };
    let mut r = match opened {
        Ok(o) => {
            tracing::info!(path = %o.path, "maintenance bypass link opened");
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::SEE_OTHER;
            let h = r.headers_mut();
            if let (Ok(loc), Ok(cookie)) = (
                HeaderValue::from_str(&o.path),
                HeaderValue::from_str(&o.set_cookie),
            ) {
                h.insert(header::LOCATION, loc);
                h.insert(header::SET_COOKIE, cookie);
            }
            r
        }
        Err(why) => {
            tracing::info!(why = ?why, "maintenance bypass link refused");
            refused(why.message())
        }
    };
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The link's token must not leak to wherever the page leads.
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    r
}

/// The 403 page for a link that does not open.
fn refused(message: &str) -> Response {
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>Bypass link refused</title></head>\n<body style=\"font-family:system-ui,sans-serif;\
max-width:40rem;margin:4rem auto;padding:0 1rem;line-height:1.5\">\n\
<h1>Bypass link refused</h1>\n<p>{message}</p>\n<p>Ask an operator for a new link \
(<code>kinfractl maint bypass-link</code>).</p>\n</body></html>\n"
    );
    let mut r = crate::proxy::answers::html_response(body);
    *r.status_mut() = StatusCode::FORBIDDEN;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_the_t_parameter() {
        assert_eq!(token_param(Some("t=v1.2")), Some("v1.2"));
        assert_eq!(token_param(Some("a=b&t=v1.2&c")), Some("v1.2"));
        assert_eq!(token_param(Some("t=")), None);
        assert_eq!(token_param(Some("at=x")), None);
        assert_eq!(token_param(None), None);
    }
}
