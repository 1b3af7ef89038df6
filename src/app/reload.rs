//! Reload: configuration, templates and token read again; on failure the old ones stay.

use std::sync::Arc;

use crate::config::Config;
use crate::pages::Pages;
use crate::protocol::ErrorCode;

use super::records::rerender;
use super::{App, OpError, Services, lock_problems, now_ms};

impl App {
    /// Reload configuration and templates; on failure keep the old ones.
    pub async fn reload(self: &Arc<Self>) -> Result<String, OpError> {
        self.notifier.reloading();
        let result = self.try_reload().await;
        self.sync_supervisors();
        self.sync_probes();
        match &result {
            Ok(src) => {
                lock_problems(&self.problems).reload = None;
                tracing::info!(config = %src, "configuration reloaded");
            }
            Err(e) => {
                lock_problems(&self.problems).reload =
                    Some(format!("reload failed, old config kept: {}", e.message));
                tracing::error!(error = %e.message, "reload failed; keeping the previous configuration");
            }
        }
        // Either way kinfrad's own component changed (its config check), maybe the services.
        self.forget_health_components();
        self.notifier.ready(&self.status_line());
        self.changed.send_modify(|n| *n += 1);
        result
    }

    async fn try_reload(&self) -> Result<String, OpError> {
        let old = self.config();
        let path = match &old.source {
            crate::config::ConfigSource::File(p) => Some(p.clone()),
            crate::config::ConfigSource::Embedded => None,
        };
        let overrides = self.overrides.clone();
        let loaded = tokio::task::spawn_blocking(
            move || -> Result<(Config, Pages, crate::upstream::client::CustomClient), String> {
                let cfg = Config::load(path.as_deref(), &overrides).map_err(|e| e.to_string())?;
                let pages = Pages::load_with(cfg.templates_dir.as_deref(), &cfg.page_config)?;
                let client =
                    crate::upstream::client::CustomClient::new(cfg.upstream_ca_file.as_deref())?;
                Ok((cfg, pages, client))
            },
        )
        .await
        .map_err(|e| OpError::new(ErrorCode::Internal, e.to_string()))?;
        let (cfg, pages, client) = loaded.map_err(|e| OpError::new(ErrorCode::ReloadFailed, e))?;
        for (what, changed) in [
            ("listen", cfg.listen != old.listen),
            ("control_socket", cfg.control_socket != old.control_socket),
            ("state_dir", cfg.state_dir != old.state_dir),
            ("fleet", cfg.fleet != old.fleet),
        ] {
            if changed {
                tracing::warn!(
                    key = what,
                    "changed in the config; takes effect after a restart"
                );
            }
        }
        let token = if cfg.token_path() != old.token_path() {
            let path = cfg.token_path();
            let generate = cfg.admin_token_file.is_none();
            Some(
                tokio::task::spawn_blocking(move || {
                    crate::state::token::load_or_create(&path, generate)
                })
                .await
                .map_err(|e| OpError::new(ErrorCode::Internal, e.to_string()))?
                .map_err(|e| OpError::new(ErrorCode::ReloadFailed, e.to_string()))?,
            )
        } else {
            None
        };
        let services = Services::build(&cfg, Some(&self.services.load_full()), &self.eventlog)
            .map_err(|e| OpError::new(ErrorCode::ReloadFailed, e))?;
        // Re-render the maintenance page with the new templates under the writer lock.
        let _store = self.store.lock().await;
        let cur = self.maint.load_full();
        let view = rerender(&pages, &cur, now_ms())
            .map_err(|e| OpError::new(ErrorCode::ReloadFailed, e))?;
        let src = cfg.source.to_string();
        for (name, from) in &pages.sources {
            tracing::info!(template = %name, source = %from, "template loaded");
        }
        self.pages.store(Arc::new(pages));
        self.maint.store(Arc::new(view));
        self.config.store(Arc::new(cfg));
        self.client.store(Arc::new(client));
        // Pages of every upstream are re-rendered on their next use.
        for up in &services.list {
            up.rendered
                .store(Arc::new(crate::upstream::Rendered::default()));
        }
        self.services.store(Arc::new(services));
        if let Some(t) = token {
            self.token.store(Arc::new(t));
        }
        Ok(src)
    }
}
