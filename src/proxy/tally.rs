//! Counting what both request paths answer (`kinfra_requests_total`). A response kinfrad
//! writes itself on the fast path is counted where it is decided; a response that comes out of
//! the router (both paths) carries a `Tally` saying how it was answered and on which route's
//! counters, and is counted by `count` where the router was called. A router response without
//! one is kinfrad's own endpoint.

use std::sync::Arc;

use axum::response::Response;

use crate::app::App;
use crate::model::metrics::{Answer, RequestCounts};
use crate::model::routes::Route;
use crate::proxy::ForwardError;
use crate::upstream::Upstream;

/// How a router response was answered, and the counters of the route it matched (`None`: no
/// route).
#[derive(Debug, Clone)]
pub(crate) struct Tally {
    pub(crate) how: Answer,
    pub(crate) counts: Option<Arc<RequestCounts>>,
}

/// `resp`, marked as answered `how` on `route` (`None`: no route).
pub(crate) fn mark(mut resp: Response, how: Answer, route: Option<&Route<Upstream>>) -> Response {
    resp.extensions_mut().insert(Tally {
        how,
        counts: route.map(|r| r.counts.clone()),
    });
    resp
}

/// Count a response that came out of the router, by its mark (unmarked: kinfrad's own).
pub fn count(app: &App, resp: &mut Response) {
    let status = resp.status().as_u16();
    match resp.extensions_mut().remove::<Tally>() {
        Some(Tally {
            how,
            counts: Some(c),
        }) => c.count(how, status),
        Some(Tally { how, counts: None }) => app.unrouted_requests().count(how, status),
        None => app.unrouted_requests().count(Answer::Own, status),
    }
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
