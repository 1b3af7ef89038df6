//! The control protocol between kinfractl (or any script) and kinfrad, over a Unix stream socket.
//!
//! ```text
//! | len: u32, big-endian | JSON payload, `len` bytes (at most MAX_FRAME) |
//! ```
//!
//! Every message is one JSON object tagged by `"type"` (snake_case). The client's first request
//! must be [`Request::Hello`] carrying [`PROTOCOL_VERSION`]; the daemon answers
//! [`Response::Hello`] or an `unsupported_version` error and closes. After that, each request gets
//! exactly one response, in order. Errors are data: [`Response::Error`] with a stable `code`.
//! A malformed, oversized or unknown message gets an error; an oversized frame also closes the
//! connection (its bytes cannot be skipped safely). The daemon is never disturbed by either.
//! Every answer fits one frame ([`encode_response`]): an error that quotes the request is cut,
//! and an answer too large for a frame becomes an `internal` error saying so.
//!
//! Evolution rules: variants and fields are only added, never renamed or repurposed; new fields
//! are optional, and a peer ignores fields it does not know. A change an older peer could
//! misread bumps [`PROTOCOL_VERSION`].
//!
//! This crate is what kinfrad and kinfractl share, and nothing else: the messages and the
//! reports they carry, the frame codec, the [`client`], the default [`paths`] and the time
//! formatting ([`fmt`]) both print. It knows nothing of the daemon, so kinfractl links none of it.

mod fleet;
mod frame;
mod message;
mod report;
mod schedule;

pub mod client;
pub mod fmt;
pub mod paths;

pub use fleet::*;
pub use frame::*;
pub use message::*;
pub use report::*;
pub use schedule::*;
