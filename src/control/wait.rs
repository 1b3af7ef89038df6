//! Requests that wait (`drain_wait`): answered when what they wait for happens, or dropped
//! when the client hangs up meanwhile, so an abandoned wait does not hold a connection slot.

use std::os::fd::AsRawFd;

use nix::sys::socket::{MsgFlags, recv};
use tokio::io::Interest;
use tokio::net::UnixStream;

/// Resolves once the peer has closed its end (or the socket failed); never while it is only
/// quiet, or when it sent more (the next request, read after the answer).
pub(super) async fn hung_up(stream: &UnixStream) {
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        let mut b = [0u8; 1];
        let peeked = stream.try_io(Interest::READABLE, || {
            recv(
                stream.as_raw_fd(),
                &mut b,
                MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
            )
            .map_err(std::io::Error::from)
        });
        match peeked {
            Ok(0) => return,
            Ok(_) => return std::future::pending().await,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        }
    }
}
