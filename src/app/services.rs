//! Health probes and process supervisors of the services, and the operator's commands to them.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::watch;

use crate::model::maintenance;
use crate::protocol::ErrorCode;
use crate::upstream::Upstream;

use super::{App, OpError, write_state};

pub(super) struct Supervised {
    spec: crate::config::service::ProcessConfig,
    stop: watch::Sender<bool>,
    handle: crate::supervisor::Handle,
}

impl App {
    /// Start a health task for every upstream that has none; stop those of removed upstreams.
    pub fn sync_probes(self: &Arc<Self>) {
        let services = self.services.load_full();
        let mut probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        probes.retain(|name, stop| {
            let keep = services.get(name).is_some();
            if !keep {
                let _ = stop.send(true);
            }
            keep
        });
        for up in &services.list {
            if probes.contains_key(&up.name) {
                continue;
            }
            let (tx, rx) = watch::channel(false);
            probes.insert(up.name.clone(), tx);
            let weak = Arc::downgrade(self);
            tokio::spawn(crate::upstream::health::run(up.clone(), rx, move |u| {
                if let Some(app) = weak.upgrade() {
                    app.upstream_changed(u);
                }
            }));
        }
    }

    /// Start a supervisor for every service with `command` that has none (or whose process
    /// settings changed on reload); stop those of removed services.
    pub fn sync_supervisors(self: &Arc<Self>) {
        let services = self.services.load_full();
        let mut sups = self.supervisors.lock().unwrap_or_else(|p| p.into_inner());
        if !self.reaped.swap(true, Ordering::AcqRel) {
            // Before the first child: what a crashed predecessor left is a leftover.
            let owner = self.config().state_dir.display().to_string();
            let n = crate::supervisor::reap_leftovers(&owner);
            if n > 0 {
                tracing::warn!(
                    processes = n,
                    "killed processes a previous kinfrad left behind"
                );
            }
        }
        sups.retain(|name, s| {
            let keep = services
                .get(name)
                .and_then(|u| u.cfg().process.clone())
                .is_some_and(|p| p == s.spec);
            if !keep {
                let _ = s.stop.send(true);
            }
            keep
        });
        for up in &services.list {
            let Some(spec) = up.cfg().process.clone() else {
                up.set_process(None);
                continue;
            };
            if let Some(s) = sups.get(&up.name) {
                up.set_process(Some(Arc::new(s.handle.clone())));
                continue;
            }
            let (tx, rx) = watch::channel(false);
            let ps = crate::supervisor::ProcessSpec {
                name: up.name.clone(),
                argv: spec.argv.clone(),
                cwd: spec.cwd.clone(),
                env: spec.env.clone(),
                preferred_port: spec.preferred_port,
                port_range: spec.port_range,
                restart: spec.restart,
                stop_signal: spec.stop_signal,
                stop_timeout: spec.stop_timeout,
                log_lines: spec.log_lines,
                instance: self.instance.clone(),
                owner: self.config().state_dir.display().to_string(),
                notify_dir: Some(self.config().state_dir.join("notify")),
                events: self.eventlog().clone(),
            };
            let weak_up = Arc::downgrade(up);
            let start = !self
                .stopped
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&up.name);
            let handle = crate::supervisor::spawn(
                ps,
                start,
                move |port| {
                    if let Some(u) = weak_up.upgrade() {
                        u.process_started(port);
                    }
                },
                rx,
            );
            // Page and status follow the process's state changes.
            let mut status = handle.status.clone();
            let weak_app = Arc::downgrade(self);
            let weak_up = Arc::downgrade(up);
            tokio::spawn(async move {
                while status.changed().await.is_ok() {
                    let (Some(app), Some(u)) = (weak_app.upgrade(), weak_up.upgrade()) else {
                        return;
                    };
                    u.process_changed();
                    app.upstream_changed(&u);
                }
            });
            up.set_process(Some(Arc::new(handle.clone())));
            sups.insert(
                up.name.clone(),
                Supervised {
                    spec,
                    stop: tx,
                    handle,
                },
            );
        }
    }

    /// Stop every supervised process, waiting (at most their stop timeouts) until they are gone.
    pub async fn stop_supervisors(&self) {
        let stopping: Vec<(
            watch::Receiver<crate::supervisor::ProcStatus>,
            std::time::Duration,
        )> = {
            let mut sups = self.supervisors.lock().unwrap_or_else(|p| p.into_inner());
            sups.drain()
                .map(|(_, s)| {
                    let _ = s.stop.send(true);
                    (s.handle.status.clone(), s.spec.stop_timeout)
                })
                .collect()
        };
        for (mut st, limit) in stopping {
            let _ = tokio::time::timeout(
                limit + std::time::Duration::from_secs(1),
                st.wait_for(|s| s.pid.is_none()),
            )
            .await;
        }
    }

    /// An operator's start / stop / restart of a supervised service.
    pub async fn service_command(
        &self,
        name: &str,
        cmd: crate::supervisor::Command,
    ) -> Result<(), OpError> {
        let handle = self.supervised(name)?;
        // Operator intent first: persisted before it is acted on and acknowledged.
        {
            let store = self.store.lock().await;
            let mut next = self.stopped_list();
            match cmd {
                crate::supervisor::Command::Stop => next.push(name.to_string()),
                _ => next.retain(|n| n != name),
            }
            next.sort();
            next.dedup();
            if next != self.stopped_list() {
                let state = self.persisted(self.maint_snapshot(), next.clone());
                write_state(&store, state).await?;
                *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) =
                    next.into_iter().collect();
            }
        }
        handle.commands.send(cmd).await.map_err(|_| {
            OpError::new(
                ErrorCode::Internal,
                format!("the supervisor of {name:?} is gone"),
            )
        })
    }

    /// A deploy script's progress for a service's loading page (`kinfractl progress`).
    pub fn service_progress(
        &self,
        name: &str,
        message: Option<String>,
        steps: Vec<crate::protocol::StepSpec>,
        clear: bool,
    ) -> Result<(), OpError> {
        let up = self.upstream(name)?;
        if clear {
            up.set_progress(None);
            self.upstream_changed(&up);
            return Ok(());
        }
        let bad =
            |e: maintenance::InvalidInput| OpError::new(ErrorCode::InvalidArgument, e.to_string());
        let message = message
            .map(|m| maintenance::clean_text("message", &m))
            .transpose()
            .map_err(bad)?;
        if steps.len() > crate::supervisor::MAX_STEPS {
            return Err(OpError::new(
                ErrorCode::InvalidArgument,
                format!("at most {} steps", crate::supervisor::MAX_STEPS),
            ));
        }
        let mut out = Vec::new();
        for s in steps {
            let text = maintenance::clean_text("step", &s.text).map_err(bad)?;
            if text.is_empty() {
                return Err(OpError::new(
                    ErrorCode::InvalidArgument,
                    "a step needs text",
                ));
            }
            let status = match s.status.as_str() {
                "pending" => "pending",
                "active" => "active",
                "completed" => "completed",
                "failed" => "failed",
                o => {
                    return Err(OpError::new(
                        ErrorCode::InvalidArgument,
                        format!("step status {o:?} must be pending, active, completed or failed"),
                    ));
                }
            };
            out.push(crate::model::Step { text, status });
        }
        if message.is_none() && out.is_empty() {
            return Err(OpError::new(
                ErrorCode::InvalidArgument,
                "give a message, steps, or clear",
            ));
        }
        up.set_progress(Some((message, out)));
        self.upstream_changed(&up);
        Ok(())
    }

    /// Services an operator stopped, sorted.
    pub(super) fn stopped_list(&self) -> Vec<String> {
        self.stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// The last `n` captured lines of a supervised service, and how many were dropped.
    pub fn service_logs(
        &self,
        name: &str,
        n: usize,
    ) -> Result<(Vec<crate::supervisor::LogLine>, u64), OpError> {
        let h = self.supervised(name)?;
        Ok((h.logs.tail(n), h.logs.dropped()))
    }

    /// The configured service `name`.
    fn upstream(&self, name: &str) -> Result<Arc<Upstream>, OpError> {
        self.services.load().get(name).cloned().ok_or_else(|| {
            OpError::new(
                ErrorCode::InvalidArgument,
                format!("no service named {name:?}"),
            )
        })
    }

    /// The supervisor of service `name`, which kinfrad must run (`command`). The one lookup
    /// both front ends use; each answers the two refusals its own way.
    pub fn supervisor_of(
        &self,
        name: &str,
    ) -> Result<Arc<crate::supervisor::Handle>, NotSupervised> {
        let up = self.services.load().get(name).cloned();
        let up = up.ok_or(NotSupervised::UnknownService)?;
        up.process().clone().ok_or(NotSupervised::HasUrl)
    }

    /// [`App::supervisor_of`] for the control socket's operations.
    pub(super) fn supervised(&self, name: &str) -> Result<Arc<crate::supervisor::Handle>, OpError> {
        self.supervisor_of(name)
            .map_err(|e| OpError::new(ErrorCode::InvalidArgument, e.message(name)))
    }

    /// Stop every health task.
    pub fn stop_probes(&self) {
        let mut probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        for (_, stop) in probes.drain() {
            let _ = stop.send(true);
        }
    }
}

/// Why a service has no supervisor to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSupervised {
    /// No service of that name.
    UnknownService,
    /// The service has a `url`: kinfrad does not run it.
    HasUrl,
}

impl NotSupervised {
    /// The refusal's text, the same on every front end.
    pub fn message(self, name: &str) -> String {
        match self {
            NotSupervised::UnknownService => format!("no service named {name:?}"),
            NotSupervised::HasUrl => {
                format!("{name:?} is not run by kinfrad (it has a url, not a command)")
            }
        }
    }
}
