//! Counting what both request paths answer (`kinfra_requests_total`), without a lock or an
//! allocation. What the fast path answers itself is counted where it is decided. A request that
//! goes through the router (every request on the hyper path, kinfrad's own and the unusual ones
//! on the fast path) runs inside `routed`: the front door counts its answer on the matched
//! route's counters (`answered`) and notes so in a task-local flag; `routed` counts whatever the
//! front door did not answer as kinfrad's own endpoint.

use std::cell::Cell;
use std::future::Future;

use axum::response::Response;

use crate::app::App;
use crate::model::metrics::Answer;
use crate::model::routes::Route;
use crate::proxy::ForwardError;
use crate::upstream::Upstream;

tokio::task_local! {
    /// Set when the request running in `routed` was counted by the front door.
    static COUNTED: Cell<bool>;
}

/// Count `resp` as answered `how` on `route` (`None`: no route), and return it.
pub(crate) fn answered(
    app: &App,
    resp: Response,
    how: Answer,
    route: Option<&Route<Upstream>>,
) -> Response {
    route
        .map_or(app.unrouted_requests(), |r| &*r.counts)
        .count(how, resp.status().as_u16());
    // Outside `routed` (a test calling the router itself) there is no flag to set.
    let _ = COUNTED.try_with(|c| c.set(true));
    resp
}

/// Run the router's answer to one request, counting it as kinfrad's own unless the front door
/// counted it.
pub async fn routed(app: &App, answer: impl Future<Output = Response>) -> Response {
    let (resp, counted) = COUNTED
        .scope(Cell::new(false), async {
            let r = answer.await;
            (r, COUNTED.with(Cell::get))
        })
        .await;
    if !counted {
        app.unrouted_requests()
            .count(Answer::Own, resp.status().as_u16());
    }
    resp
}

/// How a request whose forwarding failed is answered: the client's own faults (an oversized
/// or broken body, a stalled one) are refusals; everything else is the upstream's, answered by
/// the fallback page (or 502/504 without one).
pub(crate) fn failure_answer(e: &ForwardError) -> Answer {
    match e {
        ForwardError::TooLarge(_)
        | ForwardError::ClientBody(_)
        | ForwardError::ClientStalled(_) => Answer::Refused,
        _ => Answer::Fallback,
    }
}
