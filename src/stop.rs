//! Stop signals shared by the daemon's tasks: a `watch<bool>` that turns true once.

use tokio::sync::watch;

/// Resolves once `rx` turns true (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it before the future ends.
    let ok = rx.wait_for(|v| *v).await.is_ok();
    let _ = ok;
}
