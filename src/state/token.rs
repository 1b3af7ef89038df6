//! The admin token for the HTTP API: read from `admin_token_file`, or generated once (mode 0600)
//! in the state directory.

use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Shortest token accepted from a configured file.
pub const MIN_TOKEN_LEN: usize = 16;

/// Load the token at `path`; when `generate` and the file is missing, create it.
pub fn load_or_create(path: &Path, generate: bool) -> io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let t = s.trim().to_string();
            if t.len() < MIN_TOKEN_LEN || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: the admin token must be one line of at least {MIN_TOKEN_LEN} non-space characters",
                        path.display()
                    ),
                ));
            }
            if let Ok(meta) = std::fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(file = %path.display(), "admin token file is readable by others; chmod 600 it");
            }
            Ok(t)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && generate => create(path),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("{}: cannot read admin token: {e}", path.display()),
        )),
    }
}

/// Lower-case hex of `b` (tokens, session MACs, the instance id).
pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Fill `buf` from the kernel's random source (tokens, the instance id).
pub(crate) fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// `N` random bytes from the kernel, in lower-case hex (tokens, the instance id, change ids).
pub(crate) fn random_hex<const N: usize>() -> io::Result<String> {
    let mut raw = [0u8; N];
    random_bytes(&mut raw)?;
    Ok(hex(&raw))
}

fn create(path: &Path) -> io::Result<String> {
    let token = random_hex::<32>()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{}: cannot create admin token: {e}", path.display()),
            )
        })?;
    f.write_all(format!("{token}\n").as_bytes())?;
    f.sync_all()?;
    tracing::info!(file = %path.display(), "generated a new admin token");
    Ok(token)
}

/// Compare in time independent of where the first difference is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_with_mode_0600() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("admin-token");
        let t1 = load_or_create(&p, true).expect("create");
        assert_eq!(t1.len(), 64);
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create(&p, true).expect("reload"), t1);
    }

    #[test]
    fn configured_file_must_exist_and_be_sane() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("tok");
        assert!(load_or_create(&p, false).is_err());
        std::fs::write(&p, "short\n").expect("w");
        assert!(load_or_create(&p, false).is_err());
        std::fs::write(&p, "0123456789abcdef0123\n").expect("w");
        assert_eq!(
            load_or_create(&p, false).expect("ok"),
            "0123456789abcdef0123"
        );
    }

    #[test]
    fn compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
