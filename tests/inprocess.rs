//! The daemon's entry point is a library function: run it inside the test process, drive it
//! through `App` and over loopback HTTP, and stop it through its stop channel.

mod common;

use std::time::Duration;

use kinfra::app::MaintRequest;
use kinfra::config::{Config, Overrides};
use kinfra::daemon::{RunOptions, run};
use kinfra::systemd::notify::{Boot, Notifier};
use kinfra::systemd::sockets::Inherited;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_runs_in_process() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = common::free_port();
    let ov = Overrides {
        listen: vec![format!("127.0.0.1:{port}")],
        control_socket: Some(dir.path().join("control.sock")),
        state_dir: Some(dir.path().join("state")),
        demo: None,
    };
    let config = Config::from_toml("test.toml", "shutdown_grace = \"1s\"\n", &ov).expect("config");
    let notify_path = dir.path().join("notify.sock");
    let rx = std::os::unix::net::UnixDatagram::bind(&notify_path).expect("bind");
    rx.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let daemon = tokio::spawn(run(RunOptions {
        config,
        overrides: ov,
        boot: Boot {
            notifier: Notifier::to_path(&notify_path),
            ..Boot::default()
        },
        inherited: Inherited::default(),
        stop: Some(stop_rx),
        ready: Some(ready_tx),
    }));
    let app = ready_rx.await.expect("ready");
    let mut buf = [0u8; 1024];
    let n = rx.recv(&mut buf).expect("READY datagram");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("READY=1\nSTATUS=Serving on 127.0.0.1:")
    );

    let view = app
        .enter(MaintRequest {
            message: Some("In-process".into()),
            countdown_secs: Some(60),
            ..MaintRequest::default()
        })
        .await
        .expect("enter");
    assert!(view.is_active);
    let addr = app.http_addrs[0];
    let r = tokio::task::spawn_blocking(move || common::get_html(addr, "/"))
        .await
        .expect("join");
    assert_eq!(r.status, 503);
    assert!(r.text().contains("In-process"));
    assert_eq!(app.status_view().hits, 1);

    // Invalid input through the same operation the control socket uses.
    let err = app
        .enter(MaintRequest {
            countdown_secs: Some(-1),
            ..MaintRequest::default()
        })
        .await
        .expect_err("negative countdown");
    assert_eq!(err.code, kinfra::protocol::ErrorCode::InvalidArgument);

    stop_tx.send(true).expect("stop");
    tokio::time::timeout(Duration::from_secs(5), daemon)
        .await
        .expect("stops in time")
        .expect("join")
        .expect("clean stop");
    let state = std::fs::read_to_string(dir.path().join("state/state.json")).expect("state");
    assert!(
        state.contains("In-process") && state.contains("\"hits\": 1"),
        "{state}"
    );
}
