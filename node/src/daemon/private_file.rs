//! The daemon's own files in the data directory: written 0600 without ever
//! following a link another user planted, read only if we own them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Largest daemon file we read (the item list is bounded well below this).
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// Replaces `path` with `bytes`, mode 0600: written to a fresh temporary
/// file beside it, synced, then renamed over it, so a crash leaves the old
/// or the new file, never half of one.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

/// Reads `path` if it exists, is a regular file we own, private to us and
/// small; `Ok(None)` if it does not exist.
pub fn read(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let mut f = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    check_private(&f, path)?;
    let mut bytes = Vec::new();
    Read::by_ref(&mut f)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {MAX_FILE_BYTES} bytes", path.display()),
        ));
    }
    Ok(Some(bytes))
}

/// Fails unless `f` is a regular file owned by us that nobody else may read or write.
fn check_private(f: &File, path: &Path) -> io::Result<()> {
    let meta = f.metadata()?;
    let uid = rustix::process::geteuid().as_raw();
    if !meta.is_file() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a private file of this user (owner {}, mode {:o}); remove it",
                path.display(),
                meta.uid(),
                meta.mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        replace(&p, b"one").unwrap();
        replace(&p, b"two").unwrap();
        assert_eq!(read(&p).unwrap().unwrap(), b"two");
        let mode = fs::metadata(&p).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(read(&dir.path().join("missing")).unwrap().is_none());
    }

    #[test]
    fn a_planted_link_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        let p = dir.path().join("control.json");
        std::os::unix::fs::symlink(&victim, p.with_extension("tmp")).unwrap();
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        assert!(read(&p).is_err(), "a link is never read through");
        replace(&p, b"new").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert_eq!(read(&p).unwrap().unwrap(), b"new");
    }

    #[test]
    fn a_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("control.json");
        fs::write(&p, b"{}").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read(&p).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    }
}
