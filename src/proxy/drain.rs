//! The request path's part of a drain, for both paths: the answer a refused request gets, and
//! the body wrapper that keeps a forwarded request counted in flight until its response body
//! is done (the hyper path; the fast path holds its count for the whole exchange).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use http::header::{self, HeaderValue};
use http_body::{Frame, SizeHint};

use crate::app::ActiveDrain;
use crate::model::drain::RETRY_AFTER_SECS;
use crate::proxy::answers::{html_response, json_response};
use crate::upstream::{InFlight, Upstream};

/// What a request a drain refused gets: 503 with `X-Drain-Mode: true`, `Retry-After: 60` and
/// `Cache-Control: no-store`; the drain's page for browsers, JSON for everyone else.
pub(crate) fn drain_response(browser: bool, drain: &ActiveDrain, service: &str) -> Response {
    let mut r = if browser {
        html_response(drain.html.clone())
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({
                "error": "draining",
                "message": "this service is being taken out of rotation for an update; try again shortly",
                "service": service,
                "retry_after": RETRY_AFTER_SECS,
            }),
        )
    };
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let h = r.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    h.insert("x-drain-mode", HeaderValue::from_static("true"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    r
}

/// A response body that keeps its request counted in flight until it ends or is dropped.
pub(crate) struct Held<B> {
    pub(crate) inner: B,
    pub(crate) _flight: InFlight<Arc<Upstream>>,
}

impl<B> http_body::Body for Held<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
