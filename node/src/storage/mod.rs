//! Chunk storage on disk: positioned reads and writes across the files a chunk spans.
//!
//! A seed serves an existing share in place, read-only. A download lives in
//! its part folder `<out>/.kadswarm-<content id>.part/` (`content` plus
//! `resume.cbor`, see [`part`]) until every chunk is present, then `content`
//! is moved to `<out>/<name>`, never replacing anything there. Data is synced
//! before the resume state that claims it, and that state is replaced
//! atomically (temp file, fsync, rename), so a crash never makes us trust
//! bytes that are not on disk; on reopen every claimed chunk is re-hashed
//! anyway. No call holds more than one chunk in memory.
//!
//! Nothing here follows a symbolic link below the folder the user named
//! ([`nofollow`]), and every file is checked to be the file we created (a
//! download) or scanned (a share) before it is read, written or moved into
//! place, so a file swapped behind our back is an error, not other bytes.

mod handles;
mod layout;
pub(crate) mod nofollow;
mod open;
mod part;
mod resume;

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use protocol::manifest::ManifestError;
use protocol::merkle::{hash_leaf, verify_leaf, Hash, MerkleTree};
use protocol::{Bitfield, ContentId, Manifest};
use thiserror::Error;

use crate::scan::FileIdentity;
use handles::HandleCache;
use layout::{Base, Slot};
use nofollow::{lstat_at, Identity};
use part::{Part, CONTENT};

pub use part::{check_writable, part_name};

/// Most file handles kept open at once; beyond that the least recently used is closed.
const MAX_OPEN_FILES: usize = 128;

/// Why storage could not be opened or finished.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The output path is taken by something that is not (all of) this content.
    #[error("{path} already exists and {reason}; move it away or choose another --out")]
    OutputExists { path: PathBuf, reason: String },
    /// A shared file's length differs from the manifest.
    #[error("{path} is {found} bytes but the manifest says {expected}: it changed since it was shared; share it again")]
    LengthMismatch {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    /// Something other than a regular file is where a shared file should be.
    #[error(
        "{path} is not a regular file: the share changed since it was scanned; share it again"
    )]
    NotAFile { path: PathBuf },
    /// A shared file is no longer the file that was scanned (replaced, or a link now).
    #[error("{path} was replaced since it was scanned; share it again")]
    Replaced { path: PathBuf },
    /// The manifest breaks its own rules.
    #[error("invalid manifest: {0}")]
    Manifest(#[from] ManifestError),
    /// Another process holds the part folder of this content.
    #[error(
        "another kadswarm process is downloading {id} into {out}; wait for it to finish or stop it"
    )]
    Busy { id: ContentId, out: PathBuf },
    /// The part folder is a link, not ours, or open to other users.
    #[error("download folder {path} {reason}; it was not made by this program for you: remove it and try again")]
    UnsafePart { path: PathBuf, reason: String },
    /// The download's files were replaced or changed by something else before they could be moved into place.
    #[error("the download in {path} was changed by another program ({detail}); nothing was moved into place; remove {path} and get again")]
    Changed { path: PathBuf, detail: String },
    /// Not enough free space for the download.
    #[error("not enough free space in {path}: the download needs {needed} more bytes but only {available} are available; free some space or choose another --out")]
    NoSpace {
        path: PathBuf,
        needed: u64,
        available: u64,
    },
    /// Any other IO failure.
    #[error("could not {action} {path}: {source}; check the path's permissions and free space")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Chunk storage for one manifest: positioned reads and writes across the files a chunk spans.
pub struct Storage {
    files: Vec<Slot>,
    chunk_size: u32,
    count: u32,
    total: u64,
    root: Hash,
    /// The content's name in its output folder.
    name: OsString,
    final_path: PathBuf,
    /// Set for downloads until they are finished.
    part: Option<Part>,
    /// For downloads: the identity of the part folder's `content`.
    content_id: Option<Identity>,
    state: Mutex<State>,
    /// Serialises save_resume and finish (one temp file, one rename at a time).
    save_lock: Mutex<()>,
    max_open: usize,
}

/// What open_download found.
#[derive(Debug)]
pub struct Opened {
    /// Where to read and write chunks.
    pub storage: Storage,
    /// Chunks verified on disk.
    pub have: Bitfield,
    /// The Merkle tree, with the nodes of every chunk in `have`.
    pub tree: MerkleTree,
    /// True if the output already existed complete: `storage` serves it read-only and nothing was written.
    pub complete: bool,
}

impl Storage {
    /// Serve an existing share in place, read-only; checks each file's type and length and remembers which file it is.
    pub fn open_seed(manifest: &Manifest, path: &Path) -> Result<Storage, StorageError> {
        Storage::seed(manifest, path, None)
    }

    /// Serve a share in place, read-only, only while its files are the ones `scanned` lists (same file, same length).
    pub fn open_share(
        manifest: &Manifest,
        path: &Path,
        scanned: &[FileIdentity],
    ) -> Result<Storage, StorageError> {
        Storage::seed(manifest, path, Some(scanned))
    }

    /// Prepare a download of `manifest` (content id `id`) into `out_dir`. Layout on disk while partial: `<out_dir>/.kadswarm-<id>.part/` containing `content`, `resume.cbor` and a lock file.
    ///
    /// A resume state for the same id is loaded and every chunk it claims is
    /// re-hashed; a missing, corrupt or foreign one is ignored with a warning
    /// (and the stale content discarded: without a state it cannot be
    /// trusted). If `<out_dir>/<name>` exists it is verified in full: complete
    /// content is returned read-only with `complete: true`, anything else is
    /// `OutputExists` and left untouched. A part folder locked by another
    /// process is `Busy`; too little free space is `NoSpace`.
    pub fn open_download(
        manifest: &Manifest,
        id: &ContentId,
        out_dir: &Path,
    ) -> Result<Opened, StorageError> {
        Storage::download(manifest, id, out_dir, &|fd| nofollow::available_bytes(fd))
    }

    /// Reads chunk `index` (exactly its length); an error if out of range or a file is no longer ours.
    pub fn read_chunk(&self, index: u32) -> io::Result<Vec<u8>> {
        let len = self.chunk_len(index)?;
        let mut buf = vec![0u8; len];
        let mut at = 0usize;
        for span in self.spans(index) {
            let file = self.handle(span.file)?;
            file.read_exact_at(&mut buf[at..at + span.len], span.offset)
                .map_err(|e| self.annotate(e, "read", span.file, index))?;
            at += span.len;
        }
        Ok(buf)
    }

    /// Writes chunk `index`; `data` must be exactly its length. Only for downloads.
    pub fn write_chunk(&self, index: u32, data: &[u8]) -> io::Result<()> {
        let len = self.chunk_len(index)?;
        if data.len() != len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("chunk {index} is {len} bytes, got {}", data.len()),
            ));
        }
        if !lock(&self.state).writable {
            return Err(self.read_only());
        }
        let mut at = 0usize;
        for span in self.spans(index) {
            let file = self.handle(span.file)?;
            file.write_all_at(&data[at..at + span.len], span.offset)
                .map_err(|e| self.annotate(e, "write", span.file, index))?;
            at += span.len;
            // Marked only after the write, so a concurrent save_resume cannot clear
            // the mark before the bytes it covers exist.
            lock(&self.state).dirty.insert(span.file);
        }
        Ok(())
    }

    /// Durably record progress: fsync the data files FIRST, then write resume.cbor via temp file + fsync + rename (+ fsync of the directory).
    pub fn save_resume(&self, have: &Bitfield, tree: &MerkleTree) -> io::Result<()> {
        let _save = lock(&self.save_lock);
        let part = match &self.part {
            Some(p) if lock(&self.state).writable => p,
            _ => return Err(self.read_only()),
        };
        if have.len() != self.count || tree.count() != self.count {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "resume state covers {} chunks (tree {}), content has {}",
                    have.len(),
                    tree.count(),
                    self.count
                ),
            ));
        }
        self.sync_dirty()?;
        let target = part.dir.join(resume::RESUME);
        let bytes = resume::encode(part.id, have, tree.known_nodes())?;
        resume::store(part, &bytes).map_err(|e| annotate_path(e, "save resume state to", &target))
    }

    /// All chunks present: fsync, check the files are still the ones this download wrote, move `content` to `<out_dir>/<name>` (never replacing anything), remove the part folder; afterwards serves read-only from the final location.
    ///
    /// Call it once every chunk is written and verified; it does not re-hash.
    /// If the final path was taken meanwhile it fails with `OutputExists` and
    /// the download stays in its part folder, so finish can be retried.
    /// Content that was already complete (or a share) is already in place:
    /// finishing it just returns its path.
    pub fn finish(&mut self) -> Result<PathBuf, StorageError> {
        let _save = lock(&self.save_lock);
        let Some(part) = &self.part else {
            return Ok(self.final_path.clone());
        };
        let mut state = lock(&self.state);
        if !state.writable {
            return Ok(self.final_path.clone());
        }
        let dirty: Vec<usize> = state.dirty.iter().copied().collect();
        for i in dirty {
            let file = self
                .handle_locked(&mut state, i)
                .and_then(|f| f.sync_data().map(|()| f));
            if let Err(e) = file {
                return Err(io_err(&self.path_in(&state, i), "sync", e));
            }
            state.dirty.remove(&i);
        }
        self.check_unchanged(part, &state)?;
        self.move_into_place(part)?;
        // From here on the content is in its final place, whatever else fails.
        state.open.clear();
        state.writable = false;
        if state.base.top.is_some() {
            // A single file left the part folder: reach it from the output folder now.
            state.base = Base {
                dir: Arc::clone(&part.out_fd),
                top: Some(self.name.clone()),
                path: self.final_path.clone(),
            };
        } else {
            // The directory we hold open is the one that moved.
            state.base.path = self.final_path.clone();
        }
        drop(state);
        if let Err(e) = nofollow::sync_dir(part.out_fd.as_fd()) {
            tracing::warn!(path = %part.out_dir.display(), error = %e, "could not sync the output folder");
        }
        if let Err(e) = part.remove() {
            tracing::warn!(path = %part.dir.display(), error = %e, "download finished but its part folder could not be removed; delete it by hand");
        }
        self.part = None;
        Ok(self.final_path.clone())
    }

    /// Where the finished content lives (or will live).
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    fn new(manifest: &Manifest, files: Vec<Slot>, built: Built) -> Storage {
        Storage {
            files,
            chunk_size: manifest.chunk_size,
            count: manifest.chunk_count(),
            total: manifest.total_length(),
            root: manifest.root,
            name: built.name,
            final_path: built.final_path,
            part: built.part,
            content_id: built.content_id,
            state: Mutex::new(State {
                base: built.base,
                ids: built.ids,
                writable: built.writable,
                open: HandleCache::default(),
                dirty: HashSet::new(),
            }),
            save_lock: Mutex::new(()),
            max_open: MAX_OPEN_FILES,
        }
    }

    /// Length of chunk `index`, or an error if out of range.
    fn chunk_len(&self, index: u32) -> io::Result<usize> {
        if index >= self.count {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "chunk {index} out of range ({} has {} chunks)",
                    self.final_path.display(),
                    self.count
                ),
            ));
        }
        let start = u64::from(index) * u64::from(self.chunk_size);
        Ok((self.total - start).min(u64::from(self.chunk_size)) as usize)
    }

    /// The file pieces chunk `index` covers (same as `Manifest::chunk_spans`, by binary search).
    fn spans(&self, index: u32) -> impl Iterator<Item = Span> + '_ {
        let start = u64::from(index) * u64::from(self.chunk_size);
        let end = start
            .saturating_add(u64::from(self.chunk_size))
            .min(self.total);
        let first = self.files.partition_point(|f| f.start + f.len <= start);
        self.files[first..]
            .iter()
            .enumerate()
            .take_while(move |(_, f)| f.start < end)
            .filter_map(move |(k, f)| {
                let lo = start.max(f.start);
                let hi = end.min(f.start + f.len);
                (lo < hi).then(|| Span {
                    file: first + k,
                    offset: lo - f.start,
                    len: (hi - lo) as usize,
                })
            })
    }

    fn handle(&self, file: usize) -> io::Result<Arc<File>> {
        let mut state = lock(&self.state);
        self.handle_locked(&mut state, file)
    }

    /// An open handle to file `file`, opened without following links and checked to be the file we know.
    fn handle_locked(&self, state: &mut State, file: usize) -> io::Result<Arc<File>> {
        if let Some(f) = state.open.get(file) {
            return Ok(f);
        }
        let (Some(slot), Some(&want)) = (self.files.get(file), state.ids.get(file)) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no file {file} in {}", self.final_path.display()),
            ));
        };
        let path = state.base.path_of(slot);
        let f = state
            .base
            .open(slot, state.writable)
            .map_err(|e| annotate_path(e, "open", &path))?;
        let meta = f
            .metadata()
            .map_err(|e| annotate_path(e, "inspect", &path))?;
        if Identity::of(&meta) != want || meta.len() != slot.len {
            // Another file (or a link's target) now sits under this name: never serve it.
            return Err(io::Error::other(format!(
                "{} was replaced or resized after it was {}; it is not used",
                path.display(),
                if self.content_id.is_some() || state.writable {
                    "created"
                } else {
                    "checked"
                }
            )));
        }
        let f = Arc::new(f);
        state.open.insert(file, Arc::clone(&f), self.max_open);
        Ok(f)
    }

    fn path_in(&self, state: &State, file: usize) -> PathBuf {
        match self.files.get(file) {
            Some(slot) => state.base.path_of(slot),
            None => state.base.path.clone(),
        }
    }

    fn annotate(&self, e: io::Error, action: &str, file: usize, index: u32) -> io::Error {
        let path = self.path_in(&lock(&self.state), file);
        io::Error::new(
            e.kind(),
            format!(
                "could not {action} chunk {index} in {}: {e}",
                path.display()
            ),
        )
    }

    fn read_only(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is served read-only; only an unfinished download can be written",
                self.final_path.display()
            ),
        )
    }

    /// Fsyncs every file written since the last sync; on failure they stay marked.
    fn sync_dirty(&self) -> io::Result<()> {
        let dirty: Vec<usize> = lock(&self.state).dirty.drain().collect();
        for (k, &i) in dirty.iter().enumerate() {
            if let Err(e) = self.handle(i).and_then(|f| f.sync_data()) {
                let mut state = lock(&self.state);
                state.dirty.extend(&dirty[k..]);
                let path = self.path_in(&state, i);
                return Err(annotate_path(e, "sync", &path));
            }
        }
        Ok(())
    }

    /// Re-hashes chunk `index` and checks it against the tree's proof and the root.
    fn chunk_is_good(&self, index: u32, tree: &MerkleTree) -> bool {
        let Some(proof) = tree.proof(index) else {
            return false;
        };
        match self.read_chunk(index) {
            Ok(data) => {
                verify_leaf(&self.root, self.count, index, &hash_leaf(&data), &proof).is_ok()
            }
            Err(e) => {
                tracing::warn!(chunk = index, error = %e, "could not re-read saved chunk");
                false
            }
        }
    }

    /// Checks that `content` in the part folder, and every file in it, is what this download created.
    fn check_unchanged(&self, part: &Part, state: &State) -> Result<(), StorageError> {
        let changed = |detail: String| StorageError::Changed {
            path: part.dir.clone(),
            detail,
        };
        let now = part
            .content_meta()
            .map_err(|e| io_err(&part.dir.join(CONTENT), "inspect", e))?;
        let Some(now) = now else {
            return Err(changed(format!("{CONTENT} is gone")));
        };
        if now.file_type().is_symlink() {
            return Err(changed(format!("{CONTENT} is now a link")));
        }
        if Some(Identity::of(&now)) != self.content_id {
            return Err(changed(format!("{CONTENT} was replaced")));
        }
        if let (Some(_), [only]) = (&state.base.top, self.files.as_slice()) {
            if now.len() != only.len {
                return Err(changed(format!(
                    "{CONTENT} is {} bytes, not {}",
                    now.len(),
                    only.len
                )));
            }
        }
        if state.base.top.is_none() {
            // `content` is our directory (checked above); each file in it must be ours too.
            let found =
                layout::identify(&state.base, &self.files).map_err(|e| changed(e.to_string()))?;
            if let Some(k) = (0..found.len()).find(|&k| state.ids.get(k) != found.get(k)) {
                return Err(changed(format!(
                    "{} was replaced",
                    state.base.path_of(&self.files[k]).display()
                )));
            }
        }
        Ok(())
    }

    /// Moves the part folder's content to the final path without replacing anything there.
    fn move_into_place(&self, part: &Part) -> Result<(), StorageError> {
        let dest = &self.final_path;
        let content = part.dir.join(CONTENT);
        let is_dir = self.files.first().is_none_or(|only| !only.rel.is_empty());
        nofollow::rename_noreplace(
            part.fd(),
            OsStr::new(CONTENT),
            part.out_fd.as_fd(),
            &self.name,
            is_dir,
        )
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists
                || lstat_at(part.out_fd.as_fd(), &self.name).is_ok_and(|m| m.is_some())
            {
                StorageError::OutputExists {
                    path: dest.clone(),
                    reason: format!(
                        "appeared while downloading (the download is kept in {})",
                        content.display()
                    ),
                }
            } else {
                io_err(&content, "move download into place", e)
            }
        })
    }

    #[cfg(test)]
    fn open_handles(&self) -> usize {
        lock(&self.state).open.len()
    }
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("Storage")
            .field("final_path", &self.final_path)
            .field("base", &state.base.path)
            .field("writable", &state.writable)
            .field("files", &self.files.len())
            .field("chunks", &self.count)
            .finish()
    }
}

/// Everything `Storage::new` takes besides the manifest's figures.
struct Built {
    base: Base,
    ids: Vec<Identity>,
    name: OsString,
    final_path: PathBuf,
    part: Option<Part>,
    content_id: Option<Identity>,
    writable: bool,
}

/// Part of one file inside a chunk.
struct Span {
    file: usize,
    offset: u64,
    len: usize,
}

/// What changes under the lock: where files are, whether they may be written, open handles.
struct State {
    base: Base,
    /// Which file each slot must be (recorded when created, scanned or first checked).
    ids: Vec<Identity>,
    writable: bool,
    open: HandleCache,
    /// Files written since they were last synced.
    dirty: HashSet<usize>,
}

fn io_err(path: &Path, action: &'static str, source: io::Error) -> StorageError {
    StorageError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

fn annotate_path(e: io::Error, action: &str, path: &Path) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("could not {action} {}: {e}", path.display()),
    )
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take storage down with it; the state stays consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_safety;
