//! A download's part folder: `<out>/.kadswarm-<content id>.part/`, private and locked.
//!
//! Keyed by content ID, so two downloads of different content with the same
//! name never share one, and its name is short whatever the content is
//! called. It is created with mode 0700, never reached through a link, and
//! an existing one is used only if it is a real directory of ours that no one
//! else can write to. A lock file inside is held (flock) for the life of the
//! `Storage`, so a second process on the same content stops with a clear
//! error instead of writing into the first one's files.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use protocol::ContentId;
use rustix::fs::FlockOperation;
use rustix::io::Errno;

use super::nofollow::{self, create_file_at, ensure_dir_at, lstat_at, remove_tree_at};
use super::{io_err, StorageError};

/// Inside the part folder: held locked while a process downloads into it.
const LOCK: &str = "lock";
/// Inside the part folder: the file or directory tree being downloaded.
pub const CONTENT: &str = "content";

/// The part folder's name for content `id`.
pub fn part_name(id: &ContentId) -> OsString {
    OsString::from(format!(".kadswarm-{id}.part"))
}

/// An open, locked part folder.
pub struct Part {
    /// `<out>` as the user named it (for messages).
    pub out_dir: PathBuf,
    /// `<out>`, opened once: every name below is resolved from here.
    pub out_fd: Arc<OwnedFd>,
    /// The part folder's path (for messages).
    pub dir: PathBuf,
    /// The part folder.
    pub fd: OwnedFd,
    /// The content being downloaded.
    pub id: ContentId,
    /// Holds the flock until dropped.
    _lock: File,
}

impl Part {
    /// Creates or reopens the part folder for `id` in `out_fd` and locks it.
    ///
    /// Returns `created: true` if the folder did not exist before.
    pub fn open(
        out_fd: Arc<OwnedFd>,
        out_dir: &Path,
        id: &ContentId,
    ) -> Result<(Part, bool), StorageError> {
        let name = part_name(id);
        let dir = out_dir.join(&name);
        let existed = lstat_at(out_fd.as_fd(), &name)
            .map_err(|e| io_err(&dir, "inspect download folder", e))?
            .is_some();
        let fd = ensure_dir_at(out_fd.as_fd(), &name, 0o700).map_err(|e| unsafe_or(&dir, e))?;
        check_private(&fd, &dir)?;
        let lock = create_file_at(fd.as_fd(), OsStr::new(LOCK))
            .map_err(|e| io_err(&dir.join(LOCK), "open lock file", e))?;
        match rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => {
                return Err(StorageError::Busy {
                    id: *id,
                    out: out_dir.to_path_buf(),
                })
            }
            Err(e) => return Err(io_err(&dir.join(LOCK), "lock", e.into())),
        }
        Ok((
            Part {
                out_dir: out_dir.to_path_buf(),
                out_fd,
                dir,
                fd,
                id: *id,
                _lock: lock,
            },
            !existed,
        ))
    }

    /// The part folder's name inside `<out>`.
    pub fn name(&self) -> OsString {
        part_name(&self.id)
    }

    /// What is at `content` now (the link itself if it is one).
    pub fn content_meta(&self) -> io::Result<Option<std::fs::Metadata>> {
        lstat_at(self.fd.as_fd(), OsStr::new(CONTENT))
    }

    /// Removes the whole part folder (its lock goes with it; we still hold it until drop).
    pub fn remove(&self) -> io::Result<()> {
        remove_tree_at(self.out_fd.as_fd(), &self.name())
    }

    /// The part folder as a borrowed fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A link or non-directory where the part folder should be is refused, not followed.
fn unsafe_or(dir: &Path, e: io::Error) -> StorageError {
    let raw = e.raw_os_error();
    if raw == Some(Errno::LOOP.raw_os_error()) || raw == Some(Errno::NOTDIR.raw_os_error()) {
        StorageError::UnsafePart {
            path: dir.to_path_buf(),
            reason: "is a link or not a directory".into(),
        }
    } else {
        io_err(dir, "create download folder", e)
    }
}

/// The folder must be ours and closed to everyone else, or its files cannot be trusted.
fn check_private(fd: &OwnedFd, dir: &Path) -> Result<(), StorageError> {
    let meta = File::from(
        fd.try_clone()
            .map_err(|e| io_err(dir, "inspect download folder", e))?,
    )
    .metadata()
    .map_err(|e| io_err(dir, "inspect download folder", e))?;
    let me = rustix::process::geteuid().as_raw();
    let refuse = |reason: String| StorageError::UnsafePart {
        path: dir.to_path_buf(),
        reason,
    };
    if meta.uid() != me {
        return Err(refuse(format!(
            "belongs to user {}, not to you (user {me})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refuse(format!(
            "can be written by other users (mode {:o})",
            meta.mode() & 0o777
        )));
    }
    Ok(())
}

/// Fails with `NoSpace` if `needed` bytes exceed `available`.
pub fn check_space(path: &Path, needed: u64, available: u64) -> Result<(), StorageError> {
    if needed > available {
        return Err(StorageError::NoSpace {
            path: path.to_path_buf(),
            needed,
            available,
        });
    }
    Ok(())
}

/// Checks that files can be created in `dir`: creates a fresh private file there and removes it.
///
/// The probe is created with O_EXCL (never through a link, never truncating
/// anything) under a random name; a name that is taken is skipped.
pub fn check_writable(dir: &Path) -> io::Result<()> {
    let fd = nofollow::open_dir_path(dir)?;
    let mut last = None;
    for _ in 0..8 {
        let name = format!(
            ".kadswarm-write-test-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        );
        match probe(fd.as_fd(), OsStr::new(&name)) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            other => return other,
        }
    }
    Err(last.unwrap_or_else(|| io::ErrorKind::AlreadyExists.into()))
}

/// Creates `name` exclusively in `dir` and removes it again.
pub fn probe(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    drop(nofollow::create_new_at(dir, name, 0o600)?);
    nofollow::unlink_at(dir, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn out(tmp: &Path) -> (PathBuf, Arc<OwnedFd>) {
        let out = tmp.join("out");
        fs::create_dir_all(&out).unwrap();
        let fd = Arc::new(nofollow::open_dir_path(&out).unwrap());
        (out, fd)
    }

    #[test]
    fn part_folder_is_private_and_keyed_by_id() {
        let tmp = tempfile::tempdir().unwrap();
        let (out, fd) = out(tmp.path());
        let id = ContentId::from_bytes([7; 32]);
        let (part, created) = Part::open(fd, &out, &id).unwrap();
        assert!(created);
        assert_eq!(part.dir, out.join(format!(".kadswarm-{id}.part")));
        let mode = fs::metadata(&part.dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn second_opener_of_the_same_id_gets_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let (out, fd) = out(tmp.path());
        let id = ContentId::from_bytes([1; 32]);
        let (first, _) = Part::open(fd.clone(), &out, &id).unwrap();
        let err = Part::open(fd.clone(), &out, &id).err().unwrap();
        assert!(matches!(err, StorageError::Busy { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("another kadswarm process") && msg.contains(&id.to_string()),
            "{msg}"
        );
        // Another content in the same folder is independent.
        Part::open(fd.clone(), &out, &ContentId::from_bytes([2; 32])).unwrap();
        // Once the first is gone, the folder can be taken (and is resumed, not recreated).
        drop(first);
        let (_again, created) = Part::open(fd, &out, &id).unwrap();
        assert!(!created);
    }

    #[test]
    fn planted_link_or_open_folder_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (out, fd) = out(tmp.path());
        let victim = tmp.path().join("victim");
        fs::create_dir(&victim).unwrap();
        fs::write(victim.join("content"), b"precious").unwrap();
        let id = ContentId::from_bytes([3; 32]);
        symlink(&victim, out.join(part_name(&id))).unwrap();
        let err = Part::open(fd.clone(), &out, &id).err().unwrap();
        assert!(matches!(err, StorageError::UnsafePart { .. }), "{err}");
        assert_eq!(fs::read_dir(&victim).unwrap().count(), 1);
        assert_eq!(fs::read(victim.join("content")).unwrap(), b"precious");

        let id = ContentId::from_bytes([4; 32]);
        let dir = out.join(part_name(&id));
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let err = Part::open(fd, &out, &id).err().unwrap();
        assert!(
            matches!(&err, StorageError::UnsafePart { reason, .. } if reason.contains("other users")),
            "{err}"
        );
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
    }

    #[test]
    fn free_space_check_names_both_figures() {
        let p = Path::new("/data/out");
        check_space(p, 100, 100).unwrap();
        let err = check_space(p, 5_000_000, 1_000).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("5000000") && msg.contains("1000") && msg.contains("/data/out"),
            "{msg}"
        );
    }

    #[test]
    fn write_probe_never_follows_or_truncates() {
        let tmp = tempfile::tempdir().unwrap();
        let (out, fd) = out(tmp.path());
        let victim = tmp.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let name = OsStr::new(".kadswarm-write-test-1");
        symlink(&victim, out.join(name)).unwrap();
        let err = probe(fd.as_fd(), name).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        // The link is left alone and the directory still counts as writable.
        check_writable(&out).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(fs::read_dir(&out).unwrap().count(), 1);
    }
}
