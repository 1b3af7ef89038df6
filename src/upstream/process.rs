//! Following the supervised child of a `command` service: its handle and published status,
//! whether traffic may flow to it, the port it started on, and the progress an operator announced.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Health, Upstream, lock};
use crate::model::Step;

impl Upstream {
    /// The supervisor of a service kinfrad runs (none for a `url` service).
    pub fn process(&self) -> arc_swap::Guard<Option<std::sync::Arc<crate::supervisor::Handle>>> {
        self.process.load()
    }

    /// The supervisor's state, for a service kinfrad runs.
    pub fn process_status(&self) -> Option<crate::supervisor::ProcStatus> {
        self.process
            .load()
            .as_ref()
            .map(|h| h.status.borrow().clone())
    }

    /// No supervisor, or its process is started (and, with `ready = "notify"`, said READY=1).
    /// Read by the request path: an atomic kept by `refresh_process`, never the watch.
    pub(super) fn process_up(&self) -> bool {
        self.proc_up.load(Ordering::Acquire)
    }

    /// Recompute `proc_up` from the supervisor's published status and the config. The status
    /// watcher and a reload may both call this: one at a time, so the last store is computed
    /// from the newest handle, config and status (never an older read stored late).
    pub(super) fn refresh_process(&self) {
        let _one = lock(&self.refreshing);
        let needs_notify = self
            .cfg
            .load()
            .process
            .as_ref()
            .is_some_and(|p| p.ready == crate::config::service::Ready::Notify);
        let up = self.process.load().as_ref().is_none_or(|h| {
            let s = h.status.borrow();
            s.state == crate::supervisor::ProcState::Started && (s.ready || !needs_notify)
        });
        self.proc_up.store(up, Ordering::Release);
    }

    /// Attach (or detach) the supervisor of a service kinfrad runs.
    pub fn set_process(&self, h: Option<std::sync::Arc<crate::supervisor::Handle>>) {
        self.process.store(h);
        self.refresh_process();
    }

    /// Set (or, with `None`, clear) the message and steps an operator announced.
    pub fn set_progress(&self, p: Option<(Option<String>, Vec<Step>)>) {
        *lock(&self.progress) = p;
        self.bump();
    }

    /// How many processes the supervisor has started: a probe that began under another count
    /// probed a process (or port) that is gone, and its verdict is void.
    pub fn starts(&self) -> u64 {
        self.starts.load(Ordering::Acquire)
    }

    /// Worth probing: a `url` service, or a supervised one whose process is started.
    pub fn probe_wanted(&self) -> bool {
        self.process
            .load()
            .as_ref()
            .is_none_or(|h| h.status.borrow().state == crate::supervisor::ProcState::Started)
    }

    /// The supervisor started a process on `port`: traffic follows the port, and health starts
    /// over (the loading page shows while it comes up).
    pub fn process_started(&self, port: u16) {
        self.starts.fetch_add(1, Ordering::AcqRel);
        *lock(&self.progress) = None;
        let cur = self.cfg.load_full();
        if cur.url.port != port {
            let mut next = (*cur).clone();
            let text = format!("http://127.0.0.1:{port}");
            if let Ok(u) = crate::config::service::parse_upstream_url(&text) {
                next.url = u;
                next.url_text = text;
                self.cfg.store(std::sync::Arc::new(next));
            }
        }
        let mut d = lock(&self.detail);
        d.consecutive_ok = 0;
        d.consecutive_fail = 0;
        d.last_probe = None;
        d.ever_healthy = false;
        d.grace_from = Some(Instant::now());
        self.set_health(Health::Starting, &mut d);
        drop(d);
        lock(&self.idle).clear();
        self.bump();
    }

    /// Something about the process changed (state, exit, readiness): traffic and pages follow.
    pub fn process_changed(&self) {
        self.refresh_process();
        self.bump();
    }
}
