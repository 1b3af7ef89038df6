//! What kinfrad speaks with systemd: sd_notify datagrams ([`notify`]), the listening sockets
//! systemd passes ([`sockets`]), and logging to the journal ([`logging`]). Leaves: nothing here
//! imports the rest of the crate.

pub mod logging;
pub mod notify;
pub mod sockets;
