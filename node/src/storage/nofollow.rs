//! File system calls that never follow a symbolic link.
//!
//! Every path below a directory we hold open is walked one component at a
//! time with `openat(O_NOFOLLOW)`, so a link planted anywhere on the way (in
//! `--out`, in a part folder, in a shared tree) makes the call fail instead of
//! reaching a file outside. Only the directory the user named (`--out`, the
//! share root) is opened by path.

use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

/// Deepest tree `remove_tree_at` descends into (manifests allow 64 levels).
const MAX_REMOVE_DEPTH: usize = 128;

/// Which file a handle refers to; compared before a file is trusted again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Device of the file system holding it.
    pub dev: u64,
    /// Inode number on that device.
    pub ino: u64,
}

impl Identity {
    /// The identity in `meta`.
    pub fn of(meta: &Metadata) -> Identity {
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// Opens a directory the user named, following links in its path (the user chose it).
pub fn open_dir_path(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens directory `name` inside `dir`; fails if it is a link or not a directory.
pub fn open_dir_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    check_name(name)?;
    openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
        Mode::empty(),
    )
}

/// Opens directory `name` inside `dir`, creating it with `mode` first if it is missing.
pub fn ensure_dir_at(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<OwnedFd> {
    check_name(name)?;
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    open_dir_at(dir, name)
}

/// Opens regular file `name` in `dir` without following a link, read-only or read-write.
pub fn open_file_at(dir: BorrowedFd<'_>, name: &OsStr, write: bool) -> io::Result<File> {
    check_name(name)?;
    let access = if write { OFlags::RDWR } else { OFlags::RDONLY };
    // NONBLOCK: a fifo planted in place of a file must not hang the open.
    let fd = openat(
        dir,
        name,
        access | OFlags::NOFOLLOW | OFlags::NONBLOCK,
        Mode::empty(),
    )?;
    regular(File::from(fd))
}

/// Opens regular file `name` in `dir` read-write, creating it (mode 0666 less umask) if missing.
pub fn create_file_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<File> {
    check_name(name)?;
    let fd = openat(
        dir,
        name,
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK,
        Mode::from_raw_mode(0o666),
    )?;
    regular(File::from(fd))
}

/// Creates file `name` in `dir` that must not exist yet (O_EXCL: never a link's target).
pub fn create_new_at(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<File> {
    check_name(name)?;
    let fd = openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW,
        Mode::from_raw_mode(mode),
    )?;
    Ok(File::from(fd))
}

/// What is at `name` in `dir` (the link itself for a link), or None if nothing is.
pub fn lstat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<Metadata>> {
    check_name(name)?;
    // O_PATH opens even a link or an unreadable file without side effects.
    match openat(dir, name, OFlags::PATH | OFlags::NOFOLLOW, Mode::empty()) {
        Ok(fd) => File::from(fd).metadata().map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes file or tree `name` in `dir` if present; links are removed, never followed.
pub fn remove_tree_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    remove_tree_depth(dir, name, 0)
}

fn remove_tree_depth(dir: BorrowedFd<'_>, name: &OsStr, depth: usize) -> io::Result<()> {
    let Some(meta) = lstat_at(dir, name)? else {
        return Ok(());
    };
    if !meta.is_dir() {
        return unlink_at(dir, name);
    }
    if depth >= MAX_REMOVE_DEPTH {
        return Err(io::Error::other(format!(
            "nested more than {MAX_REMOVE_DEPTH} levels deep"
        )));
    }
    let sub = open_dir_at(dir, name)?;
    let mut names: Vec<OsString> = Vec::new();
    for entry in rustix::fs::Dir::read_from(&sub)? {
        let entry = entry?;
        let n = OsStr::from_bytes(entry.file_name().to_bytes());
        if n != "." && n != ".." {
            names.push(n.to_os_string());
        }
    }
    for n in names {
        remove_tree_depth(sub.as_fd(), &n, depth + 1)?;
    }
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes file `name` in `dir` (a link is removed itself); absent is fine.
pub fn unlink_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    check_name(name)?;
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Replaces `to` in `to_dir` with `from` in `from_dir` (rename(2): a link at `to` is replaced, not followed).
pub fn rename_at(
    from_dir: BorrowedFd<'_>,
    from: &OsStr,
    to_dir: BorrowedFd<'_>,
    to: &OsStr,
) -> io::Result<()> {
    check_name(from)?;
    check_name(to)?;
    Ok(rustix::fs::renameat(from_dir, from, to_dir, to)?)
}

/// Moves `from` to `to` only if nothing is at `to`: `AlreadyExists` otherwise.
///
/// Uses renameat2(RENAME_NOREPLACE); where the file system lacks it, a hard
/// link for files (it cannot replace either) or a check-then-rename for
/// directories (a rename onto an existing non-empty directory fails too).
pub fn rename_noreplace(
    from_dir: BorrowedFd<'_>,
    from: &OsStr,
    to_dir: BorrowedFd<'_>,
    to: &OsStr,
    is_dir: bool,
) -> io::Result<()> {
    check_name(from)?;
    check_name(to)?;
    match rustix::fs::renameat_with(from_dir, from, to_dir, to, RenameFlags::NOREPLACE) {
        Ok(()) => return Ok(()),
        Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {}
        Err(e) => return Err(e.into()),
    }
    tracing::debug!("renameat2(RENAME_NOREPLACE) unsupported here; using a fallback");
    if is_dir {
        if lstat_at(to_dir, to)?.is_some() {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        return Ok(rustix::fs::renameat(from_dir, from, to_dir, to)?);
    }
    rustix::fs::linkat(from_dir, from, to_dir, to, AtFlags::empty())?;
    unlink_at(from_dir, from)
}

/// Syncs a directory we hold open (so a rename in it is durable).
pub fn sync_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::fs::fsync(dir)?)
}

/// Bytes an unprivileged user may still write on the file system holding `dir`.
pub fn available_bytes(dir: BorrowedFd<'_>) -> io::Result<u64> {
    let s = rustix::fs::fstatvfs(dir)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Walks directories below a base directory without following links, keeping the last path's fds open.
///
/// Entries come in depth-first order, so consecutive lookups share most of
/// their path and each directory is opened once.
pub struct DirCursor<'a> {
    base: BorrowedFd<'a>,
    /// The directories of the last path walked, outermost first.
    stack: Vec<(OsString, OwnedFd)>,
}

impl<'a> DirCursor<'a> {
    /// A cursor at `base`.
    pub fn new(base: BorrowedFd<'a>) -> Self {
        DirCursor {
            base,
            stack: Vec::new(),
        }
    }

    /// The directory at `dirs` below the base (created with mode 0777 less umask if `create`).
    pub fn dir(&mut self, dirs: &[String], create: bool) -> io::Result<BorrowedFd<'_>> {
        let shared = self
            .stack
            .iter()
            .zip(dirs)
            .take_while(|((have, _), want)| have.as_os_str() == OsStr::new(want.as_str()))
            .count();
        self.stack.truncate(shared);
        for name in &dirs[shared..] {
            let parent = self.stack.last().map_or(self.base, |(_, fd)| fd.as_fd());
            let name = OsStr::new(name.as_str());
            let fd = if create {
                ensure_dir_at(parent, name, 0o777)?
            } else {
                open_dir_at(parent, name)?
            };
            self.stack.push((name.to_os_string(), fd));
        }
        Ok(self.stack.last().map_or(self.base, |(_, fd)| fd.as_fd()))
    }
}

/// Opens regular file `rel` (components) below `base` without following any link on the way.
pub fn open_below(base: BorrowedFd<'_>, rel: &[String], write: bool) -> io::Result<File> {
    let Some((name, dirs)) = rel.split_last() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty path below the content folder",
        ));
    };
    let mut cursor = DirCursor::new(base);
    let dir = cursor.dir(dirs, false)?;
    open_file_at(dir, OsStr::new(name.as_str()), write)
}

/// Fails unless `file` is a regular file (not a directory, device or fifo).
fn regular(file: File) -> io::Result<File> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// One path component only: a `/` would let a name walk past the no-follow checks.
fn check_name(name: &OsStr) -> io::Result<()> {
    let b = name.as_bytes();
    if b.is_empty() || b.contains(&b'/') || b.contains(&0) || b == b"." || b == b".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a single file name"),
        ));
    }
    Ok(())
}

fn openat(dir: BorrowedFd<'_>, name: &OsStr, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        flags | OFlags::CLOEXEC,
        mode,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_are_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let victim_dir = tmp.path().join("victim");
        fs::create_dir(&victim_dir).unwrap();
        fs::write(victim_dir.join("f"), b"precious").unwrap();
        let base = tmp.path().join("base");
        fs::create_dir(&base).unwrap();
        symlink(victim_dir.join("f"), base.join("file-link")).unwrap();
        symlink(&victim_dir, base.join("dir-link")).unwrap();
        let fd = open_dir_path(&base).unwrap();
        let b = fd.as_fd();

        assert!(open_file_at(b, OsStr::new("file-link"), false).is_err());
        assert!(create_file_at(b, OsStr::new("file-link")).is_err());
        assert!(create_new_at(b, OsStr::new("file-link"), 0o600).is_err());
        assert!(open_dir_at(b, OsStr::new("dir-link")).is_err());
        assert!(ensure_dir_at(b, OsStr::new("dir-link"), 0o700).is_err());
        assert!(open_below(b, &["dir-link".into(), "f".into()], true).is_err());
        assert!(DirCursor::new(b)
            .dir(&["dir-link".into(), "x".into()], true)
            .is_err());
        assert!(lstat_at(b, OsStr::new("file-link"))
            .unwrap()
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(open_file_at(b, OsStr::new("../victim/f"), false).is_err());
        remove_tree_at(b, OsStr::new("dir-link")).unwrap();
        remove_tree_at(b, OsStr::new("file-link")).unwrap();
        assert_eq!(fs::read(victim_dir.join("f")).unwrap(), b"precious");
        assert_eq!(fs::read_dir(&base).unwrap().count(), 0);
    }

    #[test]
    fn tree_removal_keeps_what_links_point_to() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        fs::create_dir(&victim).unwrap();
        fs::write(victim.join("keep"), b"x").unwrap();
        let base = tmp.path().join("base");
        fs::create_dir_all(base.join("t/a/b")).unwrap();
        fs::write(base.join("t/a/b/f"), b"y").unwrap();
        symlink(&victim, base.join("t/a/link")).unwrap();
        let fd = open_dir_path(&base).unwrap();
        remove_tree_at(fd.as_fd(), OsStr::new("t")).unwrap();
        assert!(!base.join("t").exists());
        assert_eq!(fs::read(victim.join("keep")).unwrap(), b"x");
        // Absent is fine.
        remove_tree_at(fd.as_fd(), OsStr::new("t")).unwrap();
    }

    #[test]
    fn noreplace_rename_never_replaces() {
        let tmp = tempfile::tempdir().unwrap();
        let fd = open_dir_path(tmp.path()).unwrap();
        fs::write(tmp.path().join("a"), b"new").unwrap();
        fs::write(tmp.path().join("b"), b"old").unwrap();
        let err = rename_noreplace(
            fd.as_fd(),
            OsStr::new("a"),
            fd.as_fd(),
            OsStr::new("b"),
            false,
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(tmp.path().join("b")).unwrap(), b"old");
        rename_noreplace(
            fd.as_fd(),
            OsStr::new("a"),
            fd.as_fd(),
            OsStr::new("c"),
            false,
        )
        .unwrap();
        assert_eq!(fs::read(tmp.path().join("c")).unwrap(), b"new");
    }
}
