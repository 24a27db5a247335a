//! Opening storage: a share in place, a download in its part folder, or a finished copy found at the output path.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use protocol::manifest::Layout;
use protocol::merkle::{hash_leaf, MerkleTree};
use protocol::{Bitfield, ContentId, Manifest};

use super::layout::{self, Base};
use super::nofollow::{self, lstat_at, open_dir_path};
use super::part::{self, part_name, Part, CONTENT};
use super::resume;
use super::{io_err, Built, Opened, Storage, StorageError};
use crate::scan::FileIdentity;

impl Storage {
    /// A share served in place; with `scanned`, only if every file is still the one hashed.
    pub(super) fn seed(
        manifest: &Manifest,
        path: &Path,
        scanned: Option<&[FileIdentity]>,
    ) -> Result<Storage, StorageError> {
        manifest.validate()?;
        // The share's own path was named by the user: it is opened as given.
        let base = match &manifest.layout {
            Layout::File { .. } => {
                let parent = path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                let name = path.file_name().ok_or_else(|| StorageError::NotAFile {
                    path: path.to_path_buf(),
                })?;
                let dir = open_dir_path(parent).map_err(|e| io_err(parent, "open folder of", e))?;
                Base::at(Arc::new(dir), name, path.to_path_buf(), &manifest.layout)
                    .map_err(|e| io_err(path, "open", e))?
            }
            Layout::Directory { .. } => Base {
                dir: Arc::new(
                    open_dir_path(path).map_err(|e| io_err(path, "open shared folder", e))?,
                ),
                top: None,
                path: path.to_path_buf(),
            },
        };
        let files = layout::slots(manifest);
        let ids = layout::identify(&base, &files)?;
        if let Some(scanned) = scanned {
            if scanned.len() != files.len() {
                return Err(StorageError::Replaced {
                    path: path.to_path_buf(),
                });
            }
            for ((slot, id), seen) in files.iter().zip(&ids).zip(scanned) {
                if id.dev != seen.dev || id.ino != seen.ino || slot.len != seen.len {
                    return Err(StorageError::Replaced {
                        path: base.path_of(slot),
                    });
                }
            }
        }
        let name = path.file_name().unwrap_or(OsStr::new("")).to_os_string();
        Ok(Storage::new(
            manifest,
            files,
            Built {
                base,
                ids,
                name,
                final_path: path.to_path_buf(),
                part: None,
                content_id: None,
                writable: false,
            },
        ))
    }

    /// `open_download` with the free-space figure injectable (tests).
    pub(super) fn download(
        manifest: &Manifest,
        id: &ContentId,
        out_dir: &Path,
        available: &dyn Fn(BorrowedFd<'_>) -> io::Result<u64>,
    ) -> Result<Opened, StorageError> {
        manifest.validate()?;
        let name = OsString::from(&manifest.name);
        let final_path = out_dir.join(&name);
        // The output folder was named by the user: created (and its path followed) as given.
        std::fs::create_dir_all(out_dir).map_err(|e| io_err(out_dir, "create output folder", e))?;
        let out_fd =
            Arc::new(open_dir_path(out_dir).map_err(|e| io_err(out_dir, "open output folder", e))?);
        let taken = |out_fd: &Arc<OwnedFd>| -> Result<bool, StorageError> {
            Ok(lstat_at(out_fd.as_fd(), &name)
                .map_err(|e| io_err(&final_path, "inspect", e))?
                .is_some())
        };
        if taken(&out_fd)? {
            return open_existing(manifest, &out_fd, &name, &final_path);
        }
        let (part, created) = Part::open(Arc::clone(&out_fd), out_dir, id)?;
        // Another process may have finished this content while we took the folder.
        if taken(&out_fd)? {
            if created {
                let _ = part.remove();
            }
            drop(part);
            return open_existing(manifest, &out_fd, &name, &final_path);
        }
        let opened = Storage::prepare(manifest, part, name, final_path, available);
        if let (Err(_), true) = (&opened, created) {
            // Nothing worth keeping was made: leave no empty folder behind.
            if let Err(e) = nofollow::remove_tree_at(out_fd.as_fd(), &part_name(id)) {
                tracing::warn!(error = %e, "could not remove the download folder just created");
            }
        }
        opened
    }

    /// Lays out the download in its (locked) part folder and loads what a resume state proves.
    fn prepare(
        manifest: &Manifest,
        part: Part,
        name: OsString,
        final_path: PathBuf,
        available: &dyn Fn(BorrowedFd<'_>) -> io::Result<u64>,
    ) -> Result<Opened, StorageError> {
        let id = part.id;
        let saved = resume::load(&part, manifest, &id);
        if saved.is_none() {
            // Without a resume state no byte in `content` can be trusted: start clean,
            // which also drops files an interrupted earlier attempt left there.
            nofollow::remove_tree_at(part.fd(), OsStr::new(CONTENT))
                .map_err(|e| io_err(&part.dir.join(CONTENT), "remove stale download data", e))?;
        }
        // What is not yet on disk must fit; claimed chunks are assumed present (they mostly are).
        let claimed = saved.as_ref().map_or(0, |s| {
            u64::from(s.have.count_ones()).saturating_mul(u64::from(manifest.chunk_size))
        });
        let needed = manifest.total_length().saturating_sub(claimed);
        match available(part.fd()) {
            Ok(free) => part::check_space(&part.out_dir, needed, free)?,
            Err(e) => {
                tracing::warn!(path = %part.dir.display(), error = %e, "cannot tell the free space; downloading anyway")
            }
        }
        let files = layout::slots(manifest);
        let (base, ids, content_id) = layout::create(manifest, &part, &files)?;

        let count = manifest.chunk_count();
        let storage = Storage::new(
            manifest,
            files,
            Built {
                base,
                ids,
                name,
                final_path,
                part: Some(part),
                content_id: Some(content_id),
                writable: true,
            },
        );
        let mut tree = MerkleTree::with_root(manifest.root, count);
        let mut have = Bitfield::new(count);
        if let Some(saved) = saved {
            tree.restore_nodes(saved.nodes);
            for i in saved.have.iter_ones() {
                if storage.chunk_is_good(i, &tree) {
                    have.set(i);
                } else {
                    tracing::warn!(chunk = i, path = %storage.final_path.display(), "saved chunk failed verification; it will be fetched again");
                }
            }
            tracing::info!(have = have.count_ones(), of = count, "resumed download");
        }
        Ok(Opened {
            storage,
            have,
            tree,
            complete: false,
        })
    }
}

/// Checks an existing output in full: complete content is returned read-only, anything else is refused.
fn open_existing(
    manifest: &Manifest,
    out_fd: &Arc<OwnedFd>,
    name: &OsStr,
    path: &Path,
) -> Result<Opened, StorageError> {
    let refuse = |reason: String| StorageError::OutputExists {
        path: path.to_path_buf(),
        reason,
    };
    let meta = lstat_at(out_fd.as_fd(), name)
        .map_err(|e| refuse(format!("cannot be checked ({e})")))?
        .ok_or_else(|| refuse("vanished while being checked".into()))?;
    if meta.file_type().is_symlink() {
        return Err(refuse("is a symbolic link".into()));
    }
    match manifest.layout {
        Layout::Directory { .. } if !meta.is_dir() => {
            return Err(refuse("is not a directory".into()))
        }
        Layout::File { .. } if !meta.is_file() => {
            return Err(refuse("is not a regular file".into()))
        }
        _ => {}
    }
    let base = Base::at(
        Arc::clone(out_fd),
        name,
        path.to_path_buf(),
        &manifest.layout,
    )
    .map_err(|e| refuse(format!("cannot be opened ({e})")))?;
    let files = layout::slots(manifest);
    let ids = layout::identify(&base, &files).map_err(|e| {
        refuse(match e {
            StorageError::LengthMismatch {
                path,
                expected,
                found,
            } => format!(
                "differs from this content ({} has {found} bytes, not {expected})",
                path.display()
            ),
            StorageError::NotAFile { path } => {
                format!(
                    "differs from this content ({} is not a file)",
                    path.display()
                )
            }
            other => format!("cannot be checked ({other})"),
        })
    })?;
    let storage = Storage::new(
        manifest,
        files,
        Built {
            base,
            ids,
            name: name.to_os_string(),
            final_path: path.to_path_buf(),
            part: None,
            content_id: None,
            writable: false,
        },
    );
    tracing::info!(path = %path.display(), "output exists; verifying it against the manifest");
    let count = manifest.chunk_count();
    let mut leaves = Vec::with_capacity(count as usize);
    for i in 0..count {
        let data = storage
            .read_chunk(i)
            .map_err(|e| refuse(format!("cannot be read ({e})")))?;
        leaves.push(hash_leaf(&data));
    }
    let tree = MerkleTree::from_leaves(&leaves);
    if tree.root() != manifest.root {
        return Err(refuse("its content differs from this download".into()));
    }
    Ok(Opened {
        storage,
        have: Bitfield::full(count),
        tree,
        complete: true,
    })
}
