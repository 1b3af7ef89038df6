//! Starting one child: its port, argv, NOTIFY_SOCKET, environment and output capture.

use std::io;
use std::path::PathBuf;

use tokio::sync::watch;

use super::ProcStatus;
use super::logs::{Stream, capture};
use super::reap::OWNER_ENV;
use super::task::Task;

/// Is `port` free on 127.0.0.1 right now?
pub fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// `preferred`, or the next free port above it within `range` (wrapping to its start).
pub fn pick_port(preferred: u16, range: (u16, u16)) -> Option<u16> {
    let (lo, hi) = range;
    let start = preferred.clamp(lo, hi);
    (start..=hi)
        .chain(lo..start)
        .find(|p| *p != 0 && port_free(*p))
}

/// `{port}` replaced in every argument.
pub fn expand_argv(argv: &[String], port: u16) -> Vec<String> {
    let p = port.to_string();
    argv.iter().map(|a| a.replace("{port}", &p)).collect()
}

impl Task {
    /// A datagram socket for this start's NOTIFY_SOCKET (a stale one is replaced).
    pub(super) fn notify_socket(
        &self,
    ) -> Result<Option<(tokio::net::UnixDatagram, PathBuf)>, String> {
        let Some(dir) = &self.spec.notify_dir else {
            return Ok(None);
        };
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(format!("{}.notify", self.spec.name));
        let _ = std::fs::remove_file(&path);
        let sock = tokio::net::UnixDatagram::bind(&path)
            .map_err(|e| format!("NOTIFY_SOCKET {}: {e}", path.display()))?;
        Ok(Some((sock, path)))
    }

    pub(super) fn start_child(
        &self,
        port: u16,
        notify: Option<&std::path::Path>,
    ) -> Result<tokio::process::Child, String> {
        let argv = expand_argv(&self.spec.argv, port);
        let Some((prog, args)) = argv.split_first() else {
            return Err("empty command".to_string());
        };
        let mut cmd = tokio::process::Command::new(prog);
        cmd.args(args)
            .env("PORT", port.to_string())
            .env("KINFRA_INSTANCE", &self.spec.instance)
            .env(OWNER_ENV, &self.spec.owner)
            .env("KINFRA_SERVICE", &self.spec.name)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        for v in [
            "NOTIFY_SOCKET",
            "LISTEN_FDS",
            "LISTEN_PID",
            "LISTEN_FDNAMES",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
        ] {
            cmd.env_remove(v);
        }
        for (k, v) in &self.spec.env {
            cmd.env(k, v);
        }
        if let Some(p) = notify {
            cmd.env("NOTIFY_SOCKET", p);
        }
        if let Some(d) = &self.spec.cwd {
            cmd.current_dir(d);
        }
        let parent = std::process::id();
        // SAFETY: runs in the forked child before exec; it only calls the async-signal-safe
        // prctl and getppid and builds an io::Error from errno.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // kinfrad died between fork and prctl: don't outlive it.
                if libc::getppid() as u32 != parent {
                    return Err(io::Error::other("kinfrad is gone"));
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {prog:?}: {e}"))?;
        if let Some(out) = child.stdout.take() {
            tokio::spawn(capture(
                self.spec.name.clone(),
                Stream::Stdout,
                out,
                self.logs.clone(),
            ));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(capture(
                self.spec.name.clone(),
                Stream::Stderr,
                err,
                self.logs.clone(),
            ));
        }
        Ok(child)
    }
}

/// Read a child's sd_notify datagrams into its status while it is the published process
/// (published before this starts).
pub(super) async fn read_notify(
    sock: tokio::net::UnixDatagram,
    status: watch::Sender<ProcStatus>,
    pid: Option<u32>,
) {
    let mut rx = status.subscribe();
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            r = sock.recv(&mut buf) => {
                let Ok(n) = r else { return };
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                status.send_modify(|s| s.apply_notify(&text));
            }
            // This start is over once another pid (or none) is published.
            _ = rx.wait_for(|s| s.pid != pid) => return,
        }
    }
}
