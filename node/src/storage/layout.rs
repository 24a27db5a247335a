//! Where a content's files are and which files they are.
//!
//! A `Base` is a directory we hold open plus how each file is reached from
//! it; every file is opened below it without following links. `create`
//! lays a download out in its part folder, `identify` records (or checks)
//! the identity and length of each file of an existing tree.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use protocol::manifest::{EntryKind, Layout};
use protocol::Manifest;

use super::nofollow::{
    create_file_at, ensure_dir_at, open_below, open_file_at, DirCursor, Identity,
};
use super::part::{Part, CONTENT};
use super::{io_err, StorageError};

/// One file in the chunk stream.
pub struct Slot {
    /// Path components below the base; empty for a single-file content.
    pub rel: Vec<String>,
    /// Offset of its first byte in the concatenated content.
    pub start: u64,
    pub len: u64,
}

/// The slots of `manifest`, in chunk-stream order.
pub fn slots(manifest: &Manifest) -> Vec<Slot> {
    let mut start = 0u64;
    manifest
        .files()
        .map(|(rel, len)| {
            let slot = Slot {
                rel: rel.to_vec(),
                start,
                len,
            };
            start = start.saturating_add(len);
            slot
        })
        .collect()
}

/// Where a content's files live: an open directory, and for a single file its name there.
pub struct Base {
    /// For a directory content: the content's root. For a single file: the folder holding it.
    pub dir: Arc<OwnedFd>,
    /// For a single file: its name in `dir`.
    pub top: Option<OsString>,
    /// The content's path, for messages only (never opened).
    pub path: PathBuf,
}

impl Base {
    /// A content's base from the folder holding it (`parent`) and its name there.
    pub fn at(
        parent: Arc<OwnedFd>,
        name: &OsStr,
        path: PathBuf,
        layout: &Layout,
    ) -> io::Result<Base> {
        match layout {
            Layout::File { .. } => Ok(Base {
                dir: parent,
                top: Some(name.to_os_string()),
                path,
            }),
            Layout::Directory { .. } => Ok(Base {
                dir: Arc::new(super::nofollow::open_dir_at(parent.as_fd(), name)?),
                top: None,
                path,
            }),
        }
    }

    /// Opens `slot`'s file without following links.
    pub fn open(&self, slot: &Slot, write: bool) -> io::Result<File> {
        match &self.top {
            Some(name) => open_file_at(self.dir.as_fd(), name, write),
            None => open_below(self.dir.as_fd(), &slot.rel, write),
        }
    }

    /// `slot`'s path, for messages.
    pub fn path_of(&self, slot: &Slot) -> PathBuf {
        let mut p = self.path.clone();
        if self.top.is_none() {
            p.extend(&slot.rel);
        }
        p
    }
}

/// Creates every file (sparse, at its final length) and directory of the layout as `content` in the part folder.
///
/// Returns the base, each file's identity, and the identity of `content` itself.
pub fn create(
    manifest: &Manifest,
    part: &Part,
    slots: &[Slot],
) -> Result<(Base, Vec<Identity>, Identity), StorageError> {
    let content_path = part.dir.join(CONTENT);
    let name = OsStr::new(CONTENT);
    match &manifest.layout {
        Layout::File { length } => {
            let file = create_file_at(part.fd(), name)
                .map_err(|e| io_err(&content_path, "create file", e))?;
            let id = sized(&file, *length, &content_path)?;
            let dir = part
                .fd
                .try_clone()
                .map_err(|e| io_err(&part.dir, "open download folder", e))?;
            let base = Base {
                dir: Arc::new(dir),
                top: Some(name.to_os_string()),
                path: content_path,
            };
            Ok((base, vec![id], id))
        }
        Layout::Directory { entries } => {
            let root = ensure_dir_at(part.fd(), name, 0o777)
                .map_err(|e| io_err(&content_path, "create directory", e))?;
            let root_id = Identity::of(
                &File::from(
                    root.try_clone()
                        .map_err(|e| io_err(&content_path, "open directory", e))?,
                )
                .metadata()
                .map_err(|e| io_err(&content_path, "read metadata of", e))?,
            );
            let mut ids = Vec::with_capacity(slots.len());
            let mut cursor = DirCursor::new(root.as_fd());
            for entry in entries {
                let mut path = content_path.clone();
                path.extend(&entry.path);
                match entry.kind {
                    EntryKind::Dir => {
                        cursor
                            .dir(&entry.path, true)
                            .map_err(|e| io_err(&path, "create directory", e))?;
                    }
                    EntryKind::File { length } => {
                        let Some((file_name, dirs)) = entry.path.split_last() else {
                            continue; // validated manifests have no empty paths
                        };
                        let dir = cursor
                            .dir(dirs, true)
                            .map_err(|e| io_err(&path, "create directory for", e))?;
                        let file = create_file_at(dir, OsStr::new(file_name.as_str()))
                            .map_err(|e| io_err(&path, "create file", e))?;
                        ids.push(sized(&file, length, &path)?);
                    }
                }
            }
            drop(cursor);
            let base = Base {
                dir: Arc::new(root),
                top: None,
                path: content_path,
            };
            Ok((base, ids, root_id))
        }
    }
}

/// Sets `file` to `length` if it is not already, and returns its identity.
fn sized(file: &File, length: u64, path: &Path) -> Result<Identity, StorageError> {
    let meta = file
        .metadata()
        .map_err(|e| io_err(path, "read metadata of", e))?;
    if meta.len() != length {
        file.set_len(length)
            .map_err(|e| io_err(path, "allocate file", e))?;
    }
    Ok(Identity::of(&meta))
}

/// Opens every file of an existing tree without following links and returns their identities.
///
/// A file that is missing, a link or not a regular file is `NotAFile`, one
/// of the wrong length `LengthMismatch`.
pub fn identify(base: &Base, slots: &[Slot]) -> Result<Vec<Identity>, StorageError> {
    let mut ids = Vec::with_capacity(slots.len());
    let mut cursor = DirCursor::new(base.dir.as_fd());
    for slot in slots {
        let path = base.path_of(slot);
        let opened = match (&base.top, slot.rel.split_last()) {
            (Some(name), _) => open_file_at(base.dir.as_fd(), name, false),
            (None, Some((name, dirs))) => cursor
                .dir(dirs, false)
                .and_then(|d| open_file_at(d, OsStr::new(name.as_str()), false)),
            (None, None) => Err(io::ErrorKind::InvalidInput.into()),
        };
        let file = opened.map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => {
                io_err(&path, "open shared file", e)
            }
            _ => StorageError::NotAFile { path: path.clone() },
        })?;
        let meta = file
            .metadata()
            .map_err(|e| io_err(&path, "read metadata of", e))?;
        if meta.len() != slot.len {
            return Err(StorageError::LengthMismatch {
                path,
                expected: slot.len,
                found: meta.len(),
            });
        }
        ids.push(Identity::of(&meta));
    }
    Ok(ids)
}
