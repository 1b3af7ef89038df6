//! What the state directory and file must be before kinfrad trusts them: a directory it owns
//! alone, and a regular file of bounded size, read without following links or waiting on FIFOs.

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Largest state file read (kinfrad writes a few KiB at most).
pub const MAX_STATE_BYTES: u64 = 1024 * 1024;

/// Create the state directory (0700) if it is missing; refuse one kinfrad does not own alone.
pub fn prepare_dir(dir: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot create state directory {}: {e}", dir.display()),
                    )
                })?;
        }
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot inspect state directory {}: {e}", dir.display()),
            ));
        }
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot inspect state directory {}: {e}", dir.display()),
        )
    })?;
    check_dir(dir, &meta, nix::unistd::geteuid().as_raw())
}

/// The state directory's own checks, apart from the lookup (unit-tested with any uid).
pub(super) fn check_dir(dir: &Path, meta: &fs::Metadata, euid: u32) -> io::Result<()> {
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("state directory {}: {why}", dir.display()),
        ))
    };
    let ft = meta.file_type();
    if ft.is_symlink() {
        return refuse(
            "is a symbolic link, which kinfrad does not follow; give the real directory".into(),
        );
    }
    if !ft.is_dir() {
        return refuse("is not a directory".into());
    }
    if meta.uid() != euid {
        return refuse(format!(
            "is owned by uid {}, not by kinfrad's uid {euid}; chown it or use another directory",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return refuse(format!(
            "is writable by group or others (mode {mode:04o}); chmod go-w it"
        ));
    }
    Ok(())
}

/// Why a present state file cannot be used.
fn kind_of(ft: &fs::FileType) -> &'static str {
    if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() || ft.is_block_device() {
        "device"
    } else {
        "special file"
    }
}

/// Read `path` if it is a regular file of at most `MAX_STATE_BYTES`: never follows a symlink,
/// never blocks on a FIFO. `Ok(None)`: no file. `Err`: the sentence saying what is wrong.
pub(super) fn read_capped(path: &Path) -> Result<Option<Vec<u8>>, String> {
    let f = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(format!(
                "{} is a symbolic link, which kinfrad does not follow",
                path.display()
            ));
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let meta = f
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.file_type().is_file() {
        return Err(format!(
            "{} is a {}, not a regular file",
            path.display(),
            kind_of(&meta.file_type())
        ));
    }
    let too_big = || {
        format!(
            "{} is larger than {MAX_STATE_BYTES} bytes, more than kinfrad ever writes",
            path.display()
        )
    };
    if meta.len() > MAX_STATE_BYTES {
        return Err(too_big());
    }
    let mut buf = Vec::new();
    f.take(MAX_STATE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if buf.len() as u64 > MAX_STATE_BYTES {
        return Err(too_big());
    }
    Ok(Some(buf))
}
