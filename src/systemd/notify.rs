//! sd_notify: READY, RELOADING, STOPPING, STATUS and WATCHDOG datagrams to `$NOTIFY_SOCKET`, and
//! FDSTORE: descriptors handed to the service manager to keep across a restart.
//!
//! The socket path and watchdog interval are captured (and removed from the environment) by
//! [`Boot::capture`] before any thread starts, so supervised children never inherit them.
//! Without a NOTIFY_SOCKET every call is a no-op.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::time::Duration;

/// Where to send notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

/// A handle that sends sd_notify messages; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    target: Option<Target>,
}

/// Process-level facts handed over by systemd, taken before threads exist.
#[derive(Debug, Default)]
pub struct Boot {
    pub notifier: Notifier,
    /// Half of WATCHDOG_USEC when the watchdog is enabled for this process.
    pub watchdog_interval: Option<Duration>,
    pub watchdog_usec: Option<u64>,
}

impl Boot {
    /// Read NOTIFY_SOCKET and WATCHDOG_USEC/WATCHDOG_PID and remove them from the environment.
    ///
    /// # Safety
    /// Calls `std::env::remove_var`: must run before any other thread exists.
    pub unsafe fn capture() -> Boot {
        let notifier = Notifier::from_env();
        let pid_ok = match std::env::var("WATCHDOG_PID") {
            Ok(p) => p.trim().parse::<u32>().ok() == Some(std::process::id()),
            Err(_) => true,
        };
        let usec = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|u| *u > 0 && pid_ok);
        // SAFETY: the caller guarantees no other thread runs yet.
        unsafe {
            std::env::remove_var("NOTIFY_SOCKET");
            std::env::remove_var("WATCHDOG_USEC");
            std::env::remove_var("WATCHDOG_PID");
        }
        Boot {
            notifier,
            watchdog_interval: usec.map(|u| Duration::from_micros(u / 2)),
            watchdog_usec: usec,
        }
    }
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier::default()
    }

    /// The notifier NOTIFY_SOCKET names (a path, or `@name` in the abstract namespace), left in
    /// the environment; disabled without it.
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|v| {
            let s = v.to_string_lossy().to_string();
            if let Some(name) = s.strip_prefix('@') {
                Some(Target::Abstract(name.as_bytes().to_vec()))
            } else if s.starts_with('/') {
                Some(Target::Path(PathBuf::from(s)))
            } else {
                None
            }
        });
        Notifier { target }
    }

    /// A notifier for an explicit socket path (tests, in-process daemons).
    pub fn to_path(path: impl Into<PathBuf>) -> Notifier {
        Notifier {
            target: Some(Target::Path(path.into())),
        }
    }

    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Send raw `KEY=VALUE` lines in one datagram.
    pub fn send(&self, lines: &[String]) -> io::Result<()> {
        let Some(target) = &self.target else {
            return Ok(());
        };
        let msg = lines.join("\n");
        let sock = UnixDatagram::unbound()?;
        match target {
            Target::Path(p) => sock.send_to(msg.as_bytes(), p).map(|_| ()),
            Target::Abstract(name) => {
                let addr = SocketAddr::from_abstract_name(name)?;
                sock.send_to_addr(msg.as_bytes(), &addr).map(|_| ())
            }
        }
    }

    /// Hand `fds` to the service manager's file descriptor store under `name` (FDSTORE=1,
    /// FDNAME=): systemd passes them back to the next kinfrad in LISTEN_FDS, named so. Sent in
    /// batches of at most [`FDS_PER_MESSAGE`]. Returns how many were sent; with no NOTIFY_SOCKET,
    /// none. (systemd keeps them only with `FileDescriptorStoreMax=` set; otherwise it closes
    /// them.)
    pub fn store_fds(&self, name: &str, fds: &[std::os::fd::BorrowedFd<'_>]) -> io::Result<usize> {
        use nix::sys::socket::{ControlMessage, MsgFlags, UnixAddr, sendmsg};
        use std::os::fd::{AsFd, AsRawFd, RawFd};
        let Some(target) = &self.target else {
            return Ok(0);
        };
        let addr = match target {
            Target::Path(p) => UnixAddr::new(p.as_path()),
            Target::Abstract(n) => UnixAddr::new_abstract(n),
        }
        .map_err(io::Error::from)?;
        let sock = UnixDatagram::unbound()?;
        let msg = format!("FDSTORE=1\nFDNAME={name}");
        let mut sent = 0;
        for batch in fds.chunks(FDS_PER_MESSAGE) {
            let raw: Vec<RawFd> = batch.iter().map(|f| f.as_raw_fd()).collect();
            let iov = [io::IoSlice::new(msg.as_bytes())];
            let cmsg = [ControlMessage::ScmRights(&raw)];
            sendmsg(
                sock.as_fd().as_raw_fd(),
                &iov,
                &cmsg,
                MsgFlags::empty(),
                Some(&addr),
            )
            .map_err(io::Error::from)?;
            sent += batch.len();
        }
        Ok(sent)
    }

    /// Drop the descriptors stored under `name` from the service manager's store
    /// (FDSTOREREMOVE=1): systemd keeps its copies after passing them on, and a connection is
    /// only closed once every copy is, so a kinfrad that took its predecessor's connections
    /// must release systemd's.
    pub fn remove_stored(&self, name: &str) {
        self.send_logged(&["FDSTOREREMOVE=1".to_string(), format!("FDNAME={name}")]);
    }

    fn send_logged(&self, lines: &[String]) {
        if let Err(e) = self.send(lines) {
            tracing::warn!(error = %e, "sd_notify failed");
        }
    }

    pub fn ready(&self, status: &str) {
        self.send_logged(&["READY=1".to_string(), status_line(status)]);
    }

    pub fn reloading(&self) {
        let mut lines = vec!["RELOADING=1".to_string()];
        if let Some(us) = monotonic_usec() {
            lines.push(format!("MONOTONIC_USEC={us}"));
        }
        lines.push(status_line("Reloading configuration"));
        self.send_logged(&lines);
    }

    pub fn stopping(&self) {
        self.send_logged(&[
            "STOPPING=1".to_string(),
            status_line("Stopping: finishing in-flight requests"),
        ]);
    }

    pub fn status(&self, status: &str) {
        self.send_logged(&[status_line(status)]);
    }

    pub fn watchdog(&self) {
        self.send_logged(&["WATCHDOG=1".to_string()]);
    }
}

/// The kernel's limit of descriptors in one SCM_RIGHTS message is 253.
pub const FDS_PER_MESSAGE: usize = 250;

/// STATUS= must be one line.
fn status_line(s: &str) -> String {
    let one: String = s
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    format!("STATUS={one}")
}

fn monotonic_usec() -> Option<u64> {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok()?;
    Some(ts.tv_sec() as u64 * 1_000_000 + ts.tv_nsec() as u64 / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_real_datagram_socket() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("notify.sock");
        let rx = UnixDatagram::bind(&p).expect("bind");
        let n = Notifier::to_path(&p);
        n.ready("line one\nline two");
        let mut buf = [0u8; 512];
        let k = rx.recv(&mut buf).expect("recv");
        let got = String::from_utf8_lossy(&buf[..k]).to_string();
        assert_eq!(got, "READY=1\nSTATUS=line one line two");
        n.reloading();
        let k = rx.recv(&mut buf).expect("recv");
        let got = String::from_utf8_lossy(&buf[..k]).to_string();
        assert!(got.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{got}");
    }

    #[test]
    fn stores_descriptors_with_their_name() {
        use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
        use std::os::fd::{AsFd, AsRawFd};
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("notify.sock");
        let rx = UnixDatagram::bind(&p).expect("bind");
        let files: Vec<std::fs::File> = (0..3)
            .map(|_| std::fs::File::open("/dev/null").expect("open"))
            .collect();
        let fds: Vec<_> = files.iter().map(|f| f.as_fd()).collect();
        let n = Notifier::to_path(&p);
        assert_eq!(n.store_fds("conn", &fds).expect("store"), 3);
        let mut buf = [0u8; 128];
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 8]);
        let m = recvmsg::<()>(
            rx.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .expect("recvmsg");
        let got: Vec<std::os::fd::RawFd> = m
            .cmsgs()
            .expect("cmsgs")
            .flat_map(|c| match c {
                ControlMessageOwned::ScmRights(v) => v,
                _ => Vec::new(),
            })
            .collect();
        let text = String::from_utf8_lossy(m.iovs().next().expect("iov")).to_string();
        assert_eq!(text, "FDSTORE=1\nFDNAME=conn");
        assert_eq!(got.len(), 3);
        for fd in got {
            let _ = nix::unistd::close(fd);
        }
        assert_eq!(
            Notifier::disabled().store_fds("conn", &fds).expect("no-op"),
            0
        );
        n.remove_stored("conn");
        let k = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..k], b"FDSTOREREMOVE=1\nFDNAME=conn");
    }

    #[test]
    fn disabled_is_a_no_op() {
        assert!(Notifier::disabled().send(&["READY=1".into()]).is_ok());
    }
}
