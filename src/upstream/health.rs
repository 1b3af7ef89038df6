//! Active health probes: one task per upstream, HTTP GET (expected status range) or TCP connect,
//! with thresholds. While an upstream is not healthy it is probed at least every second, so a
//! recovery reaches visitors' fallback pages within their 1.5 s poll.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::Request;
use tokio::sync::watch;

use crate::config::service::ProbeKind;
use crate::upstream::{Health, ProbeOutcome, Upstream};

/// Probe interval while not healthy.
pub const FAST_INTERVAL: Duration = Duration::from_millis(500);

/// Run one probe.
pub async fn probe(up: &Upstream) -> ProbeOutcome {
    let cfg = up.cfg();
    let addr = (cfg.url.host.clone(), cfg.url.port);
    let timeout = cfg.health.timeout;
    match &cfg.health.kind {
        ProbeKind::Tcp => {
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(_)) => ProbeOutcome::Ok,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    ProbeOutcome::ConnectFailed("Connection refused".into())
                }
                Ok(Err(e)) => ProbeOutcome::ConnectFailed(e.to_string()),
                Err(_) => ProbeOutcome::ConnectFailed(format!(
                    "Connect timed out after {}",
                    humantime::format_duration(timeout)
                )),
            }
        }
        ProbeKind::Http { path, expect } => {
            let uri = format!(
                "{}://{}{}{}",
                if cfg.url.https { "https" } else { "http" },
                cfg.url.authority,
                cfg.url.base_path,
                path
            );
            let req = match Request::get(&uri)
                .header(
                    "user-agent",
                    concat!("kinfrad/", env!("CARGO_PKG_VERSION"), " health-check"),
                )
                .body(Body::empty())
            {
                Ok(r) => r,
                Err(e) => return ProbeOutcome::CheckFailed(format!("bad probe URL {uri}: {e}")),
            };
            let client = up.client.load_full();
            match tokio::time::timeout(timeout, client.probe(req)).await {
                Err(_) => ProbeOutcome::CheckFailed(format!(
                    "Health check timed out after {}",
                    humantime::format_duration(timeout)
                )),
                Ok(Err((true, e))) => ProbeOutcome::ConnectFailed(e),
                Ok(Err((false, e))) => ProbeOutcome::CheckFailed(e),
                Ok(Ok(status)) if (expect.0..=expect.1).contains(&status) => ProbeOutcome::Ok,
                Ok(Ok(status)) => {
                    ProbeOutcome::CheckFailed(format!("Health check GET {path} returned {status}"))
                }
            }
        }
    }
}

/// Resolves once `status` says the process is started, or (its supervisor gone, or none)
/// after a short pause.
async fn started(status: Option<watch::Receiver<crate::supervisor::ProcStatus>>) {
    if let Some(mut rx) = status
        && rx
            .wait_for(|s| s.state == crate::supervisor::ProcState::Started)
            .await
            .is_ok()
    {
        return;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Probe `up` until `stop` turns true; `changed` is called after every visible change.
pub async fn run(
    up: Arc<Upstream>,
    mut stop: watch::Receiver<bool>,
    changed: impl Fn(&Arc<Upstream>) + Send + 'static,
) {
    loop {
        // A supervised service is probed only while its process runs (its port is known then).
        if !up.probe_wanted() {
            // Wait for the supervisor to publish a started process; if it goes away (a reload
            // replaced or removed it), look again shortly.
            let status = up.process().as_ref().map(|h| h.status.clone());
            tokio::select! {
                _ = started(status) => {}
                _ = crate::stop::stopped(&mut stop) => return,
            }
            continue;
        }
        let starts = up.starts();
        let began = std::time::Instant::now();
        let outcome = tokio::select! {
            o = probe(&up) => o,
            _ = crate::stop::stopped(&mut stop) => return,
        };
        if up.starts() != starts {
            // A new process started meanwhile: this probe saw its predecessor (or its port).
            continue;
        }
        // A health change is recorded (and logged, with its reason) as an event.
        if up.on_probe_timed(outcome, began.elapsed()) {
            changed(&up);
        }
        let cfg = up.cfg();
        let wait = if up.health() == Health::Healthy {
            cfg.health.interval
        } else {
            cfg.health.interval.min(FAST_INTERVAL)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = crate::stop::stopped(&mut stop) => return,
        }
    }
}
