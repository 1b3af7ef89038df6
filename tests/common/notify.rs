//! A NOTIFY_SOCKET receiver: what kinfrad tells systemd (READY=1, STATUS=..., WATCHDOG=1,
//! STOPPING=1), caught on a datagram socket of the test's own, kept and waited for.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A bound NOTIFY_SOCKET receiver.
pub struct NotifyRx {
    pub path: PathBuf,
    sock: UnixDatagram,
    pub seen: Vec<String>,
}

impl NotifyRx {
    pub fn new(dir: &Path) -> NotifyRx {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        NotifyRx {
            path,
            sock,
            seen: Vec::new(),
        }
    }

    /// Read datagrams until one satisfies `pred`; returns it. All are kept in `seen`.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        if let Some(m) = self.seen.iter().find(|m| pred(m)) {
            return m.clone();
        }
        let start = Instant::now();
        let mut buf = vec![0u8; 8192];
        while start.elapsed() < timeout {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).to_string();
                self.seen.push(m.clone());
                if pred(&m) {
                    return m;
                }
            }
        }
        panic!(
            "no sd_notify message for {what} within {timeout:?}; seen: {:?}",
            self.seen
        );
    }

    /// Drain what has arrived so far (without waiting: with a 100 ms read timeout, a sender
    /// pinging every 100 ms would keep a blocking drain from ever returning).
    pub fn drain(&mut self) {
        let mut buf = vec![0u8; 8192];
        self.sock.set_nonblocking(true).expect("nonblocking");
        while let Ok(n) = self.sock.recv(&mut buf) {
            self.seen
                .push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
        self.sock.set_nonblocking(false).expect("blocking");
    }
}
