//! The live dashboard and its APIs: `/kinfra` (page, login, logout), `/__events__` (SSE),
//! `/__logs__/{service}`, `/__action__/{restart|stop|start}/{service}` and
//! `/api/dashboard/{routes,maintenance,logs/{service},session}`.
//!
//! Reading follows `dashboard_access` (`auth::can_read`); acting always needs the admin token
//! or a session (`auth::admin`). Everything here answers from kinfrad's own state, so the
//! dashboard works when every service is down.

use std::sync::Arc;

use axum::Form;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use serde::Deserialize;

use crate::app::{App, NotSupervised};
use crate::model::now_secs;
use crate::proxy::answers::{Peer, error_response, json_response, wants_html};
use crate::web::auth::{self, Denied};

fn html(status: StatusCode, body: Bytes) -> Response {
    let mut r = crate::proxy::answers::html_response(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The dashboard is never framed (clickjacking of its buttons).
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    r
}

fn see_other(location: &str) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn render_failed(what: &str, e: &str) -> Response {
    tracing::error!(error = %e, "{what} failed to render");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        &format!("{what} failed to render (see kinfrad's log)"),
    )
}

/// May this request read the dashboard (and the log lines in `/__status__`)?
pub(crate) fn readable(
    app: &App,
    uri: &http::Uri,
    req_headers: &HeaderMap,
    peer: Option<Peer>,
) -> bool {
    let cfg = app.config();
    auth::can_read(
        cfg.dashboard_access,
        &cfg.dashboard_hosts,
        &app.token(),
        uri,
        req_headers,
        peer.map(|p| p.0),
        now_secs(),
    )
}

/// The answer to a reader who may not read: browsers go to the login form, API clients get 401.
fn not_readable(h: &HeaderMap, next: &str) -> Response {
    if wants_html(h) {
        let q: String = url_encode(next);
        return see_other(&format!("/kinfra/login?next={q}"));
    }
    unauthorized(Denied::Unauthenticated)
}

/// 401 (with `WWW-Authenticate`) or 403, in kinfrad's error shape.
pub(crate) fn unauthorized(d: Denied) -> Response {
    challenge(error_response(d.status(), d.code(), d.message()), d)
}

/// Ask for the token on a 401.
fn challenge(mut r: Response, d: Denied) -> Response {
    if d == Denied::Unauthenticated {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"kinfra\""),
        );
    }
    r
}

/// Percent-encode for a query value (RFC 3986 unreserved characters and '/' stay).
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn peer_of(req: &Request) -> Option<Peer> {
    req.extensions().get::<Peer>().copied()
}

/// `GET /kinfra`.
pub async fn page(State(app): State<Arc<App>>, req: Request) -> Response {
    let h = req.headers();
    if !readable(&app, req.uri(), h, peer_of(&req)) {
        return not_readable(h, "/kinfra");
    }
    let logged_in = auth::session(&app.token(), h, now_secs());
    let initial = crate::web::events::status_value(&app);
    let access = app.config().dashboard_access.as_str();
    match app.pages().render_dashboard(&initial, logged_in, access) {
        Ok(b) => html(StatusCode::OK, b),
        Err(e) => render_failed("the dashboard", &e),
    }
}

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// `GET /kinfra/login`.
pub async fn login_form(State(app): State<Arc<App>>, Query(q): Query<NextQuery>) -> Response {
    let next = auth::local_next(q.next.as_deref().unwrap_or("/kinfra"));
    match app.pages().render_login("", next) {
        Ok(b) => html(StatusCode::OK, b),
        Err(e) => render_failed("the login page", &e),
    }
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

/// `POST /kinfra/login` (form: token, next): a session cookie and back to `next`.
pub async fn login(
    State(app): State<Arc<App>>,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return match app.pages().render_login(
            "The form was incomplete; paste the token and try again.",
            "/kinfra",
        ) {
            Ok(b) => html(StatusCode::BAD_REQUEST, b),
            Err(e) => render_failed("the login page", &e),
        };
    };
    let next = auth::local_next(form.next.as_deref().unwrap_or("/kinfra")).to_string();
    let token = app.token();
    if !crate::state::token::constant_time_eq(form.token.trim().as_bytes(), token.as_bytes()) {
        // Slow down guessing (a 256-bit token can't be guessed, a short configured one might).
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        tracing::warn!("dashboard login with a wrong token");
        return match app.pages().render_login(
            "That is not the admin token. `kinfractl token` prints it.",
            &next,
        ) {
            Ok(b) => html(StatusCode::UNAUTHORIZED, b),
            Err(e) => render_failed("the login page", &e),
        };
    }
    let mut r = see_other(&next);
    let cookie = auth::set_cookie(&auth::mint(&token, now_secs()));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    tracing::info!("dashboard login");
    r
}

/// `POST /kinfra/logout`.
pub async fn logout() -> Response {
    let mut r = see_other("/kinfra");
    if let Ok(v) = HeaderValue::from_str(&auth::clear_cookie()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    logs: Option<String>,
    since: Option<u64>,
}

fn sse(
    body: impl http_body::Body<Data = Bytes, Error = std::convert::Infallible> + Send + 'static,
) -> Response {
    let mut r = Response::new(Body::new(body));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Proxies in front of kinfrad (nginx) must not buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

/// `GET /__events__`: status and countdown events; `?logs=SERVICE[&since=CURSOR]`: that
/// service's log (every line kept, or those after the cursor).
pub async fn events(
    State(app): State<Arc<App>>,
    Query(q): Query<EventsQuery>,
    req: Request,
) -> Response {
    let h = req.headers();
    if !readable(&app, req.uri(), h, peer_of(&req)) {
        return unauthorized(Denied::Unauthenticated);
    }
    match q.logs {
        None => sse(crate::web::events::status_stream(&app)),
        Some(name) => match ring(&app, &name) {
            Ok(ring) => sse(crate::web::events::log_stream(&app, ring, q.since)),
            Err(e) => e.response(),
        },
    }
}

/// Why a request about a service kinfrad runs can't be served: status, code, message.
struct Refusal(StatusCode, &'static str, String);

impl Refusal {
    fn response(self) -> Response {
        error_response(self.0, self.1, &self.2)
    }
}

/// The supervisor of service `name`, which kinfrad must run (404 unknown, 409 it has a url).
fn supervised(app: &App, name: &str) -> Result<Arc<crate::supervisor::Handle>, Refusal> {
    app.supervisor_of(name).map_err(|e| match e {
        NotSupervised::UnknownService => {
            Refusal(StatusCode::NOT_FOUND, "unknown_service", e.message(name))
        }
        NotSupervised::HasUrl => Refusal(StatusCode::CONFLICT, "not_supervised", e.message(name)),
    })
}

/// The log ring of `name` (404 unknown, 409 not run by kinfrad).
fn ring(app: &App, name: &str) -> Result<Arc<crate::supervisor::LogRing>, Refusal> {
    supervised(app, name)
        .map(|h| h.logs.clone())
        .map_err(|Refusal(s, c, m)| Refusal(s, c, format!("{m}: no captured logs")))
}

#[derive(Debug, Deserialize)]
pub struct LogsQuery {
    since: Option<u64>,
    limit: Option<usize>,
}

/// `GET /api/dashboard/logs/{service}?since=CURSOR&limit=N`: lines after a cursor (the
/// dashboard's polling fallback for the live tail).
pub async fn logs_json(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
    req: Request,
) -> Response {
    if !readable(&app, req.uri(), req.headers(), peer_of(&req)) {
        return unauthorized(Denied::Unauthenticated);
    }
    let ring = match ring(&app, &name) {
        Ok(r) => r,
        Err(e) => return e.response(),
    };
    let limit = q
        .limit
        .unwrap_or(crate::web::events::LOG_BATCH)
        .clamp(1, 10_000);
    let since = q
        .since
        .unwrap_or_else(|| (ring.dropped() + ring.len() as u64).saturating_sub(limit as u64));
    let (lines, next, skipped) = ring.since(since, limit);
    let mut v = crate::web::events::log_json(&lines, next, skipped);
    v["service"] = name.into();
    v["dropped"] = ring.dropped().into();
    json_response(StatusCode::OK, &v)
}

/// `GET /__logs__/{service}`: the whole captured log with live tail and search.
pub async fn logs_page(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    if name.contains('/') {
        return error_response(StatusCode::NOT_FOUND, "not_found", "no such page");
    }
    let h = req.headers();
    if !readable(&app, req.uri(), h, peer_of(&req)) {
        return not_readable(h, &format!("/__logs__/{name}"));
    }
    let Some(up) = app.services().get(&name).cloned() else {
        return error_response(
            StatusCode::NOT_FOUND,
            "unknown_service",
            &format!("no service named {name:?}"),
        );
    };
    let display = up.cfg().display_name.clone();
    let (supervised, initial) = match up.process().as_ref().map(|h| h.logs.clone()) {
        Some(ring) => {
            let (lines, next, _) = ring.since(0, usize::MAX);
            let mut v = crate::web::events::log_json(&lines, next, 0);
            v["dropped"] = ring.dropped().into();
            (true, v)
        }
        None => (
            false,
            serde_json::json!({"lines": [], "cursor": 0, "dropped": 0}),
        ),
    };
    let mut initial = initial;
    initial["service"] = name.clone().into();
    match app
        .pages()
        .render_logs(&name, &display, supervised, &initial)
    {
        Ok(b) => html(StatusCode::OK, b),
        Err(e) => render_failed("the log page", &e),
    }
}

/// `POST /__action__/{action}/{service}` → `{"success": true, "service": "api"}`.
pub async fn action(
    State(app): State<Arc<App>>,
    Path(rest): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let Some((verb, name)) = rest
        .split_once('/')
        .filter(|(v, n)| !v.is_empty() && !n.is_empty() && !n.contains('/'))
    else {
        return error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            "actions are POST /__action__/{restart|stop|start}/{service}",
        );
    };
    let (verb, name) = (verb.to_string(), name.to_string());
    let fail = |status: StatusCode, code: &str, message: &str| {
        json_response(
            status,
            &serde_json::json!({"success": false, "service": name, "error": {"code": code, "message": message}}),
        )
    };
    if method != Method::POST {
        let mut r = fail(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "actions are POST requests",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    if let Err(d) = auth::admin(&app.token(), &headers, now_secs()) {
        return challenge(fail(d.status(), d.code(), d.message()), d);
    }
    let Some(cmd) = crate::supervisor::Command::parse(&verb) else {
        return fail(
            StatusCode::NOT_FOUND,
            "unknown_action",
            &format!("{verb:?} is not an action; use restart, stop or start"),
        );
    };
    if let Err(Refusal(status, code, message)) = supervised(&app, &name) {
        return fail(status, code, &message);
    }
    match app.service_command(&name, cmd).await {
        Ok(()) => {
            tracing::info!(service = %name, action = %verb, "dashboard action");
            json_response(
                StatusCode::OK,
                &serde_json::json!({"success": true, "service": name}),
            )
        }
        Err(e) => fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.code.as_str(),
            &e.message,
        ),
    }
}

/// `GET /api/dashboard/routes`.
pub async fn routes(State(app): State<Arc<App>>, req: Request) -> Response {
    if !readable(&app, req.uri(), req.headers(), peer_of(&req)) {
        return unauthorized(Denied::Unauthenticated);
    }
    json_response(StatusCode::OK, &crate::web::status::routes_json(&app))
}

/// `GET /api/dashboard/maintenance`.
pub async fn maintenance(State(app): State<Arc<App>>, req: Request) -> Response {
    if !readable(&app, req.uri(), req.headers(), peer_of(&req)) {
        return unauthorized(Denied::Unauthenticated);
    }
    json_response(StatusCode::OK, &crate::web::status::maintenance_json(&app))
}

/// `GET /api/dashboard/session`: what this client may do.
pub async fn session(State(app): State<Arc<App>>, req: Request) -> Response {
    let h = req.headers();
    let token = app.token();
    json_response(
        StatusCode::OK,
        &serde_json::json!({
            "read": readable(&app, req.uri(), h, peer_of(&req)),
            "logged_in": auth::session(&token, h, now_secs()),
            "bearer": auth::bearer(&token, h),
            "access": app.config().dashboard_access.as_str(),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_encoded() {
        assert_eq!(url_encode("/__logs__/a b&c"), "/__logs__/a%20b%26c");
    }
}
