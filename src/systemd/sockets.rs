//! Listening sockets: taken from systemd by `FileDescriptorName=` (LISTEN_FDNAMES), else bound
//! from the configuration.
//!
//! systemd's fd order is not stable across several `.socket` units, so sockets are matched by
//! name: `http` (any number of TCP listeners) and `control` (one Unix stream listener). Unnamed
//! sockets (`unknown`, e.g. from a bare `systemd-socket-activate -l`) are classified by family.
//! `conn` names a client connection the previous kinfrad left in systemd's file descriptor
//! store at its stop (idle, between two requests): this kinfrad serves it on.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::sys::socket::{
    AddressFamily, SockType, SockaddrLike, SockaddrStorage, getsockname, getsockopt, sockopt,
};

/// The FDNAME of a client connection kept in systemd's file descriptor store across a restart.
pub const CONN: &str = "conn";
/// The FDNAME of an HTTP listener (a `.socket` unit's, or one kinfrad bound and stored).
pub const HTTP: &str = "http";

/// Sockets systemd passed to this process.
#[derive(Debug, Default)]
pub struct Inherited {
    pub http: Vec<std::net::TcpListener>,
    pub control: Option<std::os::unix::net::UnixListener>,
    /// Client connections handed over by the previous kinfrad (`conn`).
    pub conns: Vec<std::net::TcpStream>,
    /// Human-readable notes on what was received, for the log.
    pub notes: Vec<String>,
}

/// Take the sockets passed by systemd and clear LISTEN_* from the environment.
///
/// # Safety
/// Calls `std::env::remove_var`: must run before any other thread exists.
pub unsafe fn take_from_systemd() -> Result<Inherited, String> {
    // SAFETY: forwarded to the caller.
    let fds = unsafe { sd_notify::listen_fds_with_names_and_unset_env() }
        .map_err(|e| format!("bad socket activation environment: {e}"))?;
    let mut out = Inherited::default();
    for (fd, name) in fds {
        classify(fd, &name, &mut out)?;
    }
    if !out.conns.is_empty() {
        out.notes.push(format!(
            "{} client connections handed over by the previous kinfrad",
            out.conns.len()
        ));
    }
    Ok(out)
}

fn classify(fd: RawFd, name: &str, out: &mut Inherited) -> Result<(), String> {
    // SAFETY: systemd hands these descriptors to us; each is owned exactly once here.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let family = getsockname::<SockaddrStorage>(fd)
        .ok()
        .and_then(|a| a.family());
    let stype = getsockopt(&owned, sockopt::SockType).ok();
    let listening = getsockopt(&owned, sockopt::AcceptConn).unwrap_or(false);
    let is_tcp = matches!(family, Some(AddressFamily::Inet | AddressFamily::Inet6))
        && stype == Some(SockType::Stream);
    let is_unix = family == Some(AddressFamily::Unix) && stype == Some(SockType::Stream);
    if name == CONN {
        if !is_tcp || listening {
            out.notes.push(format!(
                "ignored fd {fd} named {CONN:?}: not a connected TCP socket"
            ));
            return Ok(());
        }
        out.conns.push(std::net::TcpStream::from(owned));
        return Ok(());
    }
    let want = match name {
        "http" => "http",
        "control" => "control",
        _ if is_tcp => "http",
        _ if is_unix => "control",
        _ => {
            out.notes.push(format!(
                "ignored socket fd {fd} named {name:?} (not TCP or Unix stream)"
            ));
            return Ok(());
        }
    };
    if !listening {
        return Err(format!(
            "socket fd {fd} ({name}) is not listening: use a stream socket with Accept=no"
        ));
    }
    match want {
        "http" if is_tcp => {
            let l = std::net::TcpListener::from(owned);
            let addr = l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "?".into());
            out.notes.push(format!(
                "http socket {addr} from systemd (fd {fd}, name {name})"
            ));
            out.http.push(l);
        }
        "control" if is_unix => {
            if out.control.is_some() {
                return Err(format!("more than one control socket passed (fd {fd})"));
            }
            let l = std::os::unix::net::UnixListener::from(owned);
            let addr = l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
                .unwrap_or_else(|| "?".into());
            out.notes.push(format!(
                "control socket {addr} from systemd (fd {fd}, name {name})"
            ));
            out.control = Some(l);
        }
        _ => {
            return Err(format!(
                "socket fd {fd} is named {name:?} but is not a {} socket",
                if want == "http" {
                    "TCP stream"
                } else {
                    "Unix stream"
                }
            ));
        }
    }
    Ok(())
}

/// Bind the control socket ourselves: remove a stale socket file, bind, chmod 0660.
pub fn bind_control(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!(
                        "{} exists and is not a socket; refusing to replace it",
                        path.display()
                    ),
                ));
            }
            // A live daemon answers; a stale file does not.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("{} is in use by another kinfrad", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let l = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(l)
}

/// Bind a TCP listener with SO_REUSEADDR and a deep backlog.
pub fn bind_http(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    let l = sock.listen(1024)?;
    l.into_std()
}
