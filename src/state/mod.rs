//! `state.json`: all operator intent, written atomically before a change is acknowledged.
//!
//! Format evolution: fields are only added (with serde defaults), never renamed; `version` is
//! bumped only for a change an older kinfrad could misread, and a newer file is never overwritten.
//! A corrupt, unreadable, too-new or out-of-range file — or one that is not a regular file, or too
//! large — is moved aside (never silently overwritten) and the problem is reported; if it cannot
//! even be moved aside, writes are refused.
//!
//! The directory must be kinfrad's own: a real directory (not a symlink), owned by its uid and
//! writable by nobody else. Writes go to a fresh temp file created with `O_EXCL|O_NOFOLLOW` under a
//! random name, so nothing planted in the directory is followed or overwritten.
//!
//! `format` holds the file's contents and how they are decoded (`maint`: the maintenance part,
//! and the migration of format 1's one record); `checks` what the directory and
//! the file on disk must be before they are trusted; `file` opening, setting aside and writing.

pub mod token;

mod checks;
mod file;
mod format;
mod maint;
#[cfg(test)]
mod tests;

pub use checks::{MAX_STATE_BYTES, prepare_dir};
pub use file::{Loaded, StateFile};
pub use format::{FORMAT_VERSION, FleetApplied, PersistedState, decode};
pub use maint::MaintState;
