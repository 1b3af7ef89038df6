//! The pages `App` renders: a service's fallback page and the status grid.

use std::sync::Arc;

use bytes::Bytes;

use crate::pages::FallbackFacts;
use crate::upstream::Upstream;

use super::App;

impl App {
    /// The status grid page, rendered now (it is not on a hot path).
    pub fn status_page(&self) -> Bytes {
        let now = std::time::Instant::now();
        let facts: Vec<_> = self
            .services
            .load()
            .list
            .iter()
            .map(|u| facts_of(&u.snapshot(now)))
            .collect();
        self.pages.load().render_status(&facts).unwrap_or_else(|e| {
            tracing::error!(error = %e, "status page failed to render");
            Bytes::from_static(b"<!doctype html><title>KInfra</title><p>status unavailable</p>")
        })
    }

    /// An upstream's state moved: re-render its page and publish.
    pub fn upstream_changed(&self, up: &Arc<Upstream>) {
        self.fallback_page(up);
        self.publish();
    }

    /// The upstream's fallback page for its current state, re-rendered only after a change.
    pub fn fallback_page(&self, up: &Upstream) -> Arc<crate::upstream::Rendered> {
        let cur = up.rendered.load_full();
        let v = up.version();
        if cur.version == v && !cur.html.is_empty() {
            return cur;
        }
        let now = std::time::Instant::now();
        let kind = up.page_kind(now);
        let facts = facts_of(&up.snapshot(now));
        let html = match self.pages.load().render_fallback(kind, &facts) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(service = %up.name, error = %e, "fallback page failed to render");
                Bytes::from_static(
                    b"<!doctype html><title>503</title><h1>Service temporarily unavailable</h1>",
                )
            }
        };
        let r = Arc::new(crate::upstream::Rendered {
            kind,
            html,
            version: v,
        });
        up.rendered.store(r.clone());
        r
    }
}

/// What a fallback page shows of an upstream's snapshot.
pub(crate) fn facts_of(s: &crate::upstream::Snapshot) -> FallbackFacts {
    FallbackFacts {
        id: s.name.clone(),
        display_name: s.display_name.clone(),
        status_message: s.status_message.clone(),
        fallback_message: s.fallback_message.clone(),
        down_since_ms: s
            .down_since
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0),
        port: s.port.clone(),
        pid: s.pid.clone(),
        uptime: s.uptime.clone(),
        health_status: s.health.label().to_string(),
        state: s.state.to_string(),
        steps: s.steps.clone(),
        refresh_interval: s.refresh_interval,
        // Fallback pages are public: a summary of the error, never its raw text.
        error_detail: crate::upstream::public_error(&s.error_detail),
    }
}
