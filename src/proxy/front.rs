//! The front door of the hyper path: everything that is not kinfrad's own endpoint. A request
//! is matched to a route; then maintenance (the default page or the operator's custom page),
//! a drain's refusal, the proxied service (or its fallback page), or, when nothing matches, the
//! landing page, the status grid or a JSON 404. Every answer is counted on the matched
//! route's request counters with how it was answered (`tally`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Request, State};
use axum::response::Response;
use http::StatusCode;
use http::header::{self, HeaderValue};

use crate::app::App;
use crate::model::metrics::Answer;
use crate::model::now_ms;
use crate::proxy::answers::*;
use crate::proxy::tally::{answered, failure_answer};

/// Everything that is not kinfrad's own: maintenance, a proxied upstream (or its fallback page),
/// or kinfrad's own landing / status page.
pub async fn front(State(app): State<Arc<App>>, req: Request) -> Response {
    let host = match request_host(&req) {
        Ok(h) => h,
        Err(e) => {
            let r = error_response(StatusCode::BAD_REQUEST, "bad_request", &e);
            return answered(&app, r, Answer::Refused, None);
        }
    };
    let services = app.services_full();
    let route = services.table.lookup(&host, req.uri().path());
    // The record that answers this route (route, then service, then global), if any.
    let view = app.maint_full();
    let mut bypass = false;
    if let Some(i) = view.index_for(route) {
        // An operator's bypass cookie (asked only here, when a record applies) lets its
        // holder through to the service; a drain still refuses.
        let cookies = req.headers().get_all(header::COOKIE);
        if !app.bypass_admits(&view.active[i], cookies.iter().map(|v| v.as_bytes())) {
            let r = serve_maintenance(&app, req, &view, i, route.map(|r| &r.spec)).await;
            return answered(&app, r, Answer::Maintenance, route);
        }
        bypass = true;
    }
    drop(view);
    let head_only = req.method() == http::Method::HEAD;
    let Some(route) = route else {
        let mut r = unrouted(&app, &req, &services);
        if bypass {
            r = crate::proxy::bypass::mark(r, head_only).await;
        }
        let how = if r.status() == StatusCode::NOT_FOUND {
            Answer::Refused
        } else {
            Answer::Own
        };
        return answered(&app, r, how, None);
    };
    let up = route.target.clone();
    if let Some(d) = app.drain_check(route) {
        let r = crate::proxy::drain::drain_response(wants_html(req.headers()), &d, &up.name);
        return answered(&app, r, Answer::Drain, Some(route));
    }
    let gate = up.cfg().fallback.enabled;
    let peer = req.extensions().get::<Peer>().map(|p| p.0);
    let browser = wants_html(req.headers());
    let (mut r, how) =
        match crate::proxy::forward(&up, route, req, peer, gate, services.underscores).await {
            Ok(mut r) => {
                crate::proxy::schedule::add_header(&app, route, r.headers_mut());
                (r, Answer::Proxied)
            }
            Err(e) => {
                let how = failure_answer(&e);
                (failure_response(&app, &up, browser, gate, e), how)
            }
        };
    if bypass {
        r = crate::proxy::bypass::mark(r, head_only).await;
    }
    answered(&app, r, how, Some(route))
}

/// A request that matched no route.
fn unrouted(app: &App, req: &Request, services: &crate::app::Services) -> Response {
    let status = if req.uri().path() == "/" && services.list.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    if wants_html(req.headers()) {
        let body = if services.list.is_empty() {
            app.pages().landing.clone()
        } else {
            app.status_page()
        };
        let mut r = html_response(body);
        *r.status_mut() = status;
        r.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Accept"));
        r
    } else {
        json_response(
            status,
            &serde_json::json!({
                "service": "kinfrad",
                "message": if status == StatusCode::OK { "KInfra is running; no services are configured" } else { "no route matches this host and path" },
                "status": crate::pages::SERVICE_STATUS_URL,
                "health": crate::pages::HEALTH_URL,
            }),
        )
    }
}

/// Maintenance for a request, answered by the record `view.active[i]`; `route`: the route it
/// matched, whose hits it counts (`None`: no route).
async fn serve_maintenance(
    app: &Arc<App>,
    req: Request,
    view: &Arc<crate::app::MaintView>,
    i: usize,
    route: Option<&crate::model::routes::RouteSpec>,
) -> Response {
    let rec = &view.active[i];
    app.count_hit(rec, route);
    let now = now_ms();
    let retry = rec.record.retry_after_secs(now);
    let browser = wants_html(req.headers());
    if let Some(page) = rec.page_url.clone() {
        let peer = req.extensions().get::<Peer>().map(|p| p.0);
        let underscores = app.services().underscores;
        match crate::proxy::custom::forward(
            &app.client(),
            &app.instance,
            &page,
            req,
            peer,
            retry,
            underscores,
        )
        .await
        {
            Ok(r) => return r,
            Err(e) => warn_custom_page(&e),
        }
    }
    let status = crate::model::maintenance::status_view(Some(&rec.record), rec.hits(), now);
    maintenance_response(browser, rec.html.clone(), &status, retry)
}

fn warn_custom_page(e: &str) {
    use std::sync::atomic::AtomicU64;
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = now_ms() / 1000;
    let last = LAST.load(Ordering::Relaxed);
    if now >= last + 10
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(error = %e, "custom maintenance page failed; serving the default page");
    } else {
        tracing::debug!(error = %e, "custom maintenance page failed");
    }
}
