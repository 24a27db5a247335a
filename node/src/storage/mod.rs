//! Chunk storage on disk: positioned reads and writes across the files a chunk spans.
//!
//! A seed serves an existing share in place, read-only. A download lives in
//! `<out>/<name>.kadswarm-part/` (`content` plus `resume.cbor`) until every
//! chunk is present, then `content` is moved to `<out>/<name>`. Data is synced
//! before the resume state that claims it, and that state is replaced
//! atomically (temp file, fsync, rename), so a crash never makes us trust
//! bytes that are not on disk; on reopen every claimed chunk is re-hashed
//! anyway. No call holds more than one chunk in memory.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use protocol::manifest::{EntryKind, Layout, ManifestError};
use protocol::merkle::{hash_leaf, verify_leaf, Hash, MerkleTree};
use protocol::{Bitfield, ContentId, Manifest};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::scan::file_paths;

/// Suffix of the folder a download lives in until it is complete.
pub const PART_SUFFIX: &str = ".kadswarm-part";
/// Inside the part folder: the file or directory tree being downloaded.
const CONTENT: &str = "content";
/// Inside the part folder: which chunks are verified on disk.
const RESUME: &str = "resume.cbor";
const RESUME_TMP: &str = "resume.cbor.tmp";
const RESUME_VERSION: u8 = 1;
/// Allowance over what the manifest needs before a resume file is rejected unread.
const RESUME_SLACK: u64 = 64 << 20;
/// One packed tree node: level (u8), position (u32 BE), hash.
const NODE_LEN: usize = 1 + 4 + 32;
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
    /// The manifest breaks its own rules.
    #[error("invalid manifest: {0}")]
    Manifest(#[from] ManifestError),
    /// Finishing a share that is not a download.
    #[error("{path} is served read-only; only a download can be finished")]
    ReadOnly { path: PathBuf },
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
    final_path: PathBuf,
    /// Set for downloads (also once finished).
    part: Option<Part>,
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
    /// Serve an existing share in place (files opened read-only at `file_paths(manifest, path)`); checks each file's length matches.
    pub fn open_seed(manifest: &Manifest, path: &Path) -> Result<Storage, StorageError> {
        manifest.validate()?;
        let storage = Storage::new(
            manifest,
            path.to_path_buf(),
            path.to_path_buf(),
            None,
            false,
        );
        for (path, (_, expected)) in file_paths(manifest, path).into_iter().zip(manifest.files()) {
            let meta = fs::metadata(&path).map_err(|e| io_err(&path, "open shared file", e))?;
            if !meta.is_file() {
                return Err(StorageError::NotAFile { path });
            }
            if meta.len() != expected {
                return Err(StorageError::LengthMismatch {
                    path,
                    expected,
                    found: meta.len(),
                });
            }
        }
        Ok(storage)
    }

    /// Prepare a download of `manifest` (content id `id`) into `out_dir`. Layout on disk while partial: `<out_dir>/<name>.kadswarm-part/` containing `content` and `resume.cbor`.
    ///
    /// A resume state for the same id is loaded and every chunk it claims is
    /// re-hashed; a missing, corrupt or foreign one is ignored with a warning
    /// (and the stale content discarded: without a state it cannot be
    /// trusted). If `<out_dir>/<name>` exists it is verified in full: complete
    /// content is returned read-only with `complete: true`, anything else is
    /// `OutputExists` and left untouched.
    pub fn open_download(
        manifest: &Manifest,
        id: &ContentId,
        out_dir: &Path,
    ) -> Result<Opened, StorageError> {
        manifest.validate()?;
        let final_path = out_dir.join(&manifest.name);
        if fs::symlink_metadata(&final_path).is_ok() {
            return open_existing(manifest, &final_path);
        }
        let part = Part {
            dir: out_dir.join(format!("{}{PART_SUFFIX}", manifest.name)),
            out_dir: out_dir.to_path_buf(),
            id: *id,
        };
        fs::create_dir_all(&part.dir)
            .map_err(|e| io_err(&part.dir, "create download folder", e))?;
        let content = part.content();
        let resume = load_resume(&part.resume(), manifest, id);
        if resume.is_none() {
            // Without a resume state no byte in `content` can be trusted: start clean,
            // which also drops files a different download may have left there.
            remove_any(&content)?;
        }
        create_layout(manifest, &content)?;

        let count = manifest.chunk_count();
        let storage = Storage::new(manifest, content, final_path, Some(part), true);
        let mut tree = MerkleTree::with_root(manifest.root, count);
        let mut have = Bitfield::new(count);
        if let Some(saved) = resume {
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

    /// Reads chunk `index` (exactly its length); an error if out of range.
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

        let mut nodes = Vec::new();
        for (level, pos, hash) in tree.known_nodes() {
            nodes.push(level);
            nodes.extend_from_slice(&pos.to_be_bytes());
            nodes.extend_from_slice(&hash);
        }
        let record = ResumeFile {
            version: RESUME_VERSION,
            id: part.id,
            have: have.to_bytes(),
            nodes,
        };
        let bytes = cbor4ii::serde::to_vec(Vec::new(), &record)
            .map_err(|e| io::Error::other(format!("encoding resume state: {e}")))?;
        let tmp = part.dir.join(RESUME_TMP);
        let target = part.resume();
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &target)?;
            sync_dir(&part.dir)
        };
        write().map_err(|e| annotate_path(e, "save resume state to", &target))
    }

    /// All chunks present: fsync, move `content` to `<out_dir>/<name>`, remove the part folder; afterwards serves read-only from the final location.
    ///
    /// Call it once every chunk is written and verified; it does not re-check.
    /// If the final path was taken meanwhile it fails with `OutputExists` and
    /// the download stays in its part folder, so finish can be retried.
    pub fn finish(&mut self) -> Result<PathBuf, StorageError> {
        let _save = lock(&self.save_lock);
        let Some(part) = &self.part else {
            return Err(StorageError::ReadOnly {
                path: self.final_path.clone(),
            });
        };
        let mut state = lock(&self.state);
        if !state.writable {
            return Ok(self.final_path.clone()); // already finished
        }
        let content = part.content();
        let dirty: Vec<usize> = state.dirty.iter().copied().collect();
        for i in dirty {
            let file = self
                .handle_locked(&mut state, i)
                .and_then(|f| f.sync_data().map(|()| f));
            if let Err(e) = file {
                return Err(io_err(&self.path_in(&state.base, i), "sync", e));
            }
            state.dirty.remove(&i);
        }
        self.move_into_place(&content)?;
        // From here on the content is in its final place, whatever else fails.
        state.base = self.final_path.clone();
        state.writable = false;
        state.open.clear();
        drop(state);
        if let Err(e) = sync_dir(&part.out_dir) {
            tracing::warn!(path = %part.out_dir.display(), error = %e, "could not sync the output folder");
        }
        if let Err(e) = fs::remove_dir_all(&part.dir) {
            tracing::warn!(path = %part.dir.display(), error = %e, "download finished but its part folder could not be removed; delete it by hand");
        }
        Ok(self.final_path.clone())
    }

    /// Where the finished content lives (or will live).
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    fn new(
        manifest: &Manifest,
        base: PathBuf,
        final_path: PathBuf,
        part: Option<Part>,
        writable: bool,
    ) -> Storage {
        let mut start = 0u64;
        let files = file_paths(manifest, Path::new(""))
            .into_iter()
            .zip(manifest.files())
            .map(|(rel, (_, len))| {
                let slot = Slot { rel, start, len };
                start = start.saturating_add(len);
                slot
            })
            .collect();
        Storage {
            files,
            chunk_size: manifest.chunk_size,
            count: manifest.chunk_count(),
            total: manifest.total_length(),
            root: manifest.root,
            final_path,
            part,
            state: Mutex::new(State {
                base,
                writable,
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

    fn handle_locked(&self, state: &mut State, file: usize) -> io::Result<Arc<File>> {
        if let Some(f) = state.open.get(file) {
            return Ok(f);
        }
        let path = self.path_in(&state.base, file);
        let f = OpenOptions::new()
            .read(true)
            .write(state.writable)
            .open(&path)
            .map_err(|e| annotate_path(e, "open", &path))?;
        let f = Arc::new(f);
        state.open.insert(file, Arc::clone(&f), self.max_open);
        Ok(f)
    }

    fn path_in(&self, base: &Path, file: usize) -> PathBuf {
        match self.files.get(file) {
            Some(slot) if !slot.rel.as_os_str().is_empty() => base.join(&slot.rel),
            _ => base.to_path_buf(),
        }
    }

    fn annotate(&self, e: io::Error, action: &str, file: usize, index: u32) -> io::Error {
        let path = self.path_in(&lock(&self.state).base, file);
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
                lock(&self.state).dirty.extend(&dirty[k..]);
                let path = self.path_in(&lock(&self.state).base, i);
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

    /// Moves the part folder's content to the final path without replacing anything there.
    fn move_into_place(&self, content: &Path) -> Result<(), StorageError> {
        let dest = &self.final_path;
        let taken = |reason: &str| StorageError::OutputExists {
            path: dest.clone(),
            reason: format!("{reason} (the download is kept in {})", content.display()),
        };
        if fs::symlink_metadata(dest).is_ok() {
            return Err(taken("appeared while downloading"));
        }
        let single_file =
            matches!(self.files.as_slice(), [only] if only.rel.as_os_str().is_empty());
        if single_file {
            // A hard link fails if the name is taken, where rename would replace a file.
            match fs::hard_link(content, dest) {
                Ok(()) => {
                    // The content is in place; a leftover link goes with the part folder.
                    if let Err(e) = fs::remove_file(content) {
                        tracing::warn!(path = %content.display(), error = %e, "could not remove the download's second link");
                    }
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(taken("appeared while downloading"));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "hard link unavailable, renaming instead");
                }
            }
        }
        // rename(2) fails onto a non-empty directory or a file of the other type.
        fs::rename(content, dest).map_err(|e| {
            if fs::symlink_metadata(dest).is_ok() {
                taken("appeared while downloading")
            } else {
                io_err(content, "move download into place", e)
            }
        })
    }

    #[cfg(test)]
    fn open_handles(&self) -> usize {
        lock(&self.state).open.map.len()
    }
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("Storage")
            .field("final_path", &self.final_path)
            .field("base", &state.base)
            .field("writable", &state.writable)
            .field("files", &self.files.len())
            .field("chunks", &self.count)
            .finish()
    }
}

/// One file in the chunk stream.
struct Slot {
    /// Path below the base; empty for a single-file share.
    rel: PathBuf,
    /// Offset of its first byte in the concatenated content.
    start: u64,
    len: u64,
}

/// Part of one file inside a chunk.
struct Span {
    file: usize,
    offset: u64,
    len: usize,
}

/// A download's part folder.
struct Part {
    dir: PathBuf,
    out_dir: PathBuf,
    id: ContentId,
}

impl Part {
    fn content(&self) -> PathBuf {
        self.dir.join(CONTENT)
    }

    fn resume(&self) -> PathBuf {
        self.dir.join(RESUME)
    }
}

/// What changes under the lock: where files are, whether they may be written, open handles.
struct State {
    base: PathBuf,
    writable: bool,
    open: HandleCache,
    /// Files written since they were last synced.
    dirty: HashSet<usize>,
}

/// A small LRU of open files, so a tree of many files never exhausts descriptors.
#[derive(Default)]
struct HandleCache {
    map: HashMap<usize, (Arc<File>, u64)>,
    tick: u64,
}

impl HandleCache {
    fn get(&mut self, file: usize) -> Option<Arc<File>> {
        self.tick += 1;
        let now = self.tick;
        self.map.get_mut(&file).map(|(f, used)| {
            *used = now;
            Arc::clone(f)
        })
    }

    fn insert(&mut self, file: usize, handle: Arc<File>, cap: usize) {
        while self.map.len() >= cap.max(1) {
            let oldest = self
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k);
            match oldest {
                Some(k) => self.map.remove(&k),
                None => break,
            };
        }
        self.tick += 1;
        self.map.insert(file, (handle, self.tick));
    }

    fn clear(&mut self) {
        self.map.clear();
    }
}

/// The resume file's encoded form.
#[derive(Serialize, Deserialize)]
struct ResumeFile {
    version: u8,
    id: ContentId,
    #[serde(with = "serde_bytes")]
    have: Vec<u8>,
    /// Packed known tree nodes, `NODE_LEN` bytes each.
    #[serde(with = "serde_bytes")]
    nodes: Vec<u8>,
}

/// A resume state that decoded cleanly for this download (its chunks not yet re-checked).
struct Saved {
    have: Bitfield,
    nodes: Vec<(u8, u32, Hash)>,
}

/// Loads the resume state for `id`, or None (with a warning) if it is missing, foreign or corrupt.
fn load_resume(path: &Path, manifest: &Manifest, id: &ContentId) -> Option<Saved> {
    let ignore = |why: &dyn fmt::Display| {
        tracing::warn!(path = %path.display(), "ignoring resume state ({why}); its chunks will be fetched again");
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            ignore(&e);
            return None;
        }
    };
    let count = manifest.chunk_count();
    // Bitfield plus every node of a full tree, plus slack for CBOR framing.
    let limit =
        RESUME_SLACK + u64::from(count).div_ceil(8) + (2 * u64::from(count) + 64) * NODE_LEN as u64;
    if let Ok(meta) = file.metadata() {
        if meta.len() > limit {
            ignore(&format_args!("larger than {limit} bytes"));
            return None;
        }
    }
    let mut bytes = Vec::new();
    // Bounded again while reading, in case it grows meanwhile.
    if let Err(e) = file.take(limit + 1).read_to_end(&mut bytes) {
        ignore(&e);
        return None;
    }
    if bytes.len() as u64 > limit {
        ignore(&format_args!("larger than {limit} bytes"));
        return None;
    }
    let record: ResumeFile = match cbor4ii::serde::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            ignore(&format_args!("not a valid resume file: {e}"));
            return None;
        }
    };
    if record.version != RESUME_VERSION {
        ignore(&format_args!("unknown version {}", record.version));
        return None;
    }
    if record.id != *id {
        ignore(&format_args!("it belongs to content {}", record.id));
        return None;
    }
    let have = match Bitfield::from_bytes(count, &record.have) {
        Ok(h) => h,
        Err(e) => {
            ignore(&e);
            return None;
        }
    };
    if !record.nodes.len().is_multiple_of(NODE_LEN) {
        ignore(&"tree nodes are truncated");
        return None;
    }
    let nodes = record
        .nodes
        .chunks_exact(NODE_LEN)
        .map(|n| {
            let mut pos = [0u8; 4];
            pos.copy_from_slice(&n[1..5]);
            let mut hash = [0u8; 32];
            hash.copy_from_slice(&n[5..]);
            (n[0], u32::from_be_bytes(pos), hash)
        })
        .collect();
    Some(Saved { have, nodes })
}

/// Checks an existing output in full: complete content is returned as a seed, anything else is refused.
fn open_existing(manifest: &Manifest, path: &Path) -> Result<Opened, StorageError> {
    let refuse = |reason: String| StorageError::OutputExists {
        path: path.to_path_buf(),
        reason,
    };
    if matches!(manifest.layout, Layout::Directory { .. }) && !path.is_dir() {
        return Err(refuse("is not a directory".into()));
    }
    let storage = Storage::open_seed(manifest, path).map_err(|e| {
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

/// Creates every file (sparse, at its final length) and directory of the layout under `content`.
fn create_layout(manifest: &Manifest, content: &Path) -> Result<(), StorageError> {
    match &manifest.layout {
        Layout::File { length } => create_sized(content, *length),
        Layout::Directory { entries } => {
            fs::create_dir_all(content).map_err(|e| io_err(content, "create directory", e))?;
            for entry in entries {
                let mut path = content.to_path_buf();
                path.extend(&entry.path);
                match entry.kind {
                    EntryKind::Dir => fs::create_dir_all(&path)
                        .map_err(|e| io_err(&path, "create directory", e))?,
                    EntryKind::File { length } => {
                        if let Some(parent) = path.parent() {
                            fs::create_dir_all(parent)
                                .map_err(|e| io_err(parent, "create directory", e))?;
                        }
                        create_sized(&path, length)?;
                    }
                }
            }
            Ok(())
        }
    }
}

fn create_sized(path: &Path, length: u64) -> Result<(), StorageError> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| io_err(path, "create file", e))?;
    let len = f
        .metadata()
        .map_err(|e| io_err(path, "read metadata of", e))?
        .len();
    if len != length {
        f.set_len(length)
            .map_err(|e| io_err(path, "allocate file", e))?;
    }
    Ok(())
}

/// Removes a file or directory tree if present (symlinks are removed, not followed).
fn remove_any(path: &Path) -> Result<(), StorageError> {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    result.map_err(|e| io_err(path, "remove stale download data", e))
}

fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
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
mod tests {
    use super::*;
    use crate::scan::scan_path;
    use protocol::manifest::MIN_CHUNK_SIZE;

    const CS: u32 = MIN_CHUNK_SIZE;

    fn bytes(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| ((i * 7 + i / 251) as u8).wrapping_add(seed))
            .collect()
    }

    /// src/share: a.bin, sub/b.bin (crosses several chunks), sub/empty, void/ (empty), z.bin.
    fn source_tree(tmp: &Path) -> PathBuf {
        let root = tmp.join("src").join("share");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::create_dir_all(root.join("void")).unwrap();
        fs::write(root.join("a.bin"), bytes(20_000, 1)).unwrap();
        fs::write(root.join("sub/b.bin"), bytes(100_000, 2)).unwrap();
        fs::write(root.join("sub/empty"), b"").unwrap();
        fs::write(root.join("z.bin"), bytes(5, 3)).unwrap();
        root
    }

    fn scan(path: &Path) -> (Manifest, MerkleTree) {
        scan_path(path, CS, &mut |_, _| {}).unwrap()
    }

    /// Fetches `which` chunks from the seed into the download, verifying each as the node would.
    fn fetch(
        seed: &Storage,
        seed_tree: &MerkleTree,
        dl: &mut Opened,
        which: impl Iterator<Item = u32>,
    ) {
        for i in which {
            let data = seed.read_chunk(i).unwrap();
            dl.tree
                .verify_and_insert(i, &data, &seed_tree.proof(i).unwrap())
                .unwrap();
            dl.storage.write_chunk(i, &data).unwrap();
            dl.have.set(i);
        }
    }

    fn files_under(root: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                let rel = p.strip_prefix(root).unwrap().to_path_buf();
                if p.is_dir() {
                    stack.push(p);
                    out.push((rel, None));
                } else {
                    out.push((rel, Some(fs::read(&p).unwrap())));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn storage_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Storage>();
        check::<Arc<Storage>>();
    }

    #[test]
    fn round_trip_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let src = source_tree(tmp.path());
        let (m, seed_tree) = scan(&src);
        assert_eq!(m.chunk_count(), 8);
        let seed = Storage::open_seed(&m, &src).unwrap();
        let out = tmp.path().join("out");
        let mut dl = Storage::open_download(&m, &m.id(), &out).unwrap();
        assert!(!dl.complete);
        assert!(dl.have.none_set());
        fetch(&seed, &seed_tree, &mut dl, 0..m.chunk_count());
        assert!(dl.have.is_full());
        dl.storage.save_resume(&dl.have, &dl.tree).unwrap();
        let done = dl.storage.finish().unwrap();
        assert_eq!(done, out.join("share"));
        assert_eq!(dl.storage.final_path(), out.join("share"));

        assert_eq!(files_under(&src), files_under(&done));
        assert_eq!(fs::read(done.join("sub/empty")).unwrap(), b"");
        assert!(done.join("void").is_dir());
        assert!(!out.join("share.kadswarm-part").exists());
        assert_eq!(fs::read_dir(&out).unwrap().count(), 1);

        // Seeding continues from the final location, read-only.
        for i in 0..m.chunk_count() {
            assert_eq!(
                dl.storage.read_chunk(i).unwrap(),
                seed.read_chunk(i).unwrap()
            );
        }
        let err = dl
            .storage
            .write_chunk(0, &seed.read_chunk(0).unwrap())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(dl.storage.save_resume(&dl.have, &dl.tree).is_err());
        // Finishing twice is harmless.
        assert_eq!(dl.storage.finish().unwrap(), done);
    }

    #[test]
    fn round_trip_single_file() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("movie.bin");
        fs::write(&src, bytes(3 * CS as usize + 17, 9)).unwrap();
        let (m, seed_tree) = scan(&src);
        let seed = Storage::open_seed(&m, &src).unwrap();
        let out = tmp.path().join("out");
        let mut dl = Storage::open_download(&m, &m.id(), &out).unwrap();
        let content = out.join("movie.bin.kadswarm-part/content");
        assert!(content.is_file());
        assert_eq!(fs::metadata(&content).unwrap().len(), m.total_length());
        fetch(&seed, &seed_tree, &mut dl, (0..m.chunk_count()).rev());
        let done = dl.storage.finish().unwrap();
        assert_eq!(fs::read(&done).unwrap(), fs::read(&src).unwrap());
        assert!(!out.join("movie.bin.kadswarm-part").exists());
        assert_eq!(dl.storage.read_chunk(3).unwrap().len(), 17);
    }

    #[test]
    fn chunks_spanning_file_boundaries() {
        let tmp = tempfile::tempdir().unwrap();
        let src = source_tree(tmp.path());
        let (m, _) = scan(&src);
        let seed = Storage::open_seed(&m, &src).unwrap();
        let mut all = bytes(20_000, 1);
        all.extend(bytes(100_000, 2));
        all.extend(bytes(5, 3));
        assert_eq!(all.len() as u64, m.total_length());
        for i in 0..m.chunk_count() {
            let r = m.chunk_range(i);
            assert_eq!(
                seed.read_chunk(i).unwrap(),
                &all[r.start as usize..r.end as usize],
                "chunk {i}"
            );
            let mine: Vec<_> = seed
                .spans(i)
                .map(|s| (s.file, s.offset, s.len as u64))
                .collect();
            let theirs: Vec<_> = m
                .chunk_spans(i)
                .iter()
                .map(|s| (s.file, s.offset, s.len))
                .collect();
            assert_eq!(mine, theirs, "chunk {i}");
        }
        // Chunk 1 covers the end of a.bin and the start of sub/b.bin; the last
        // one the end of b.bin, the empty file (nothing) and z.bin.
        assert_eq!(seed.spans(1).count(), 2);
        assert_eq!(
            seed.spans(7).map(|s| s.file).collect::<Vec<_>>(),
            vec![1, 3]
        );
        // Written across the boundary, read back the same.
        let out = tmp.path().join("out");
        let dl = Storage::open_download(&m, &m.id(), &out).unwrap();
        dl.storage
            .write_chunk(1, &seed.read_chunk(1).unwrap())
            .unwrap();
        let part = out.join("share.kadswarm-part/content");
        let a = fs::read(part.join("a.bin")).unwrap();
        let b = fs::read(part.join("sub/b.bin")).unwrap();
        assert_eq!(&a[CS as usize..], &all[CS as usize..20_000]);
        assert_eq!(
            &b[..2 * CS as usize - 20_000],
            &all[20_000..2 * CS as usize]
        );
    }

    #[test]
    fn partial_folder_is_used_until_finish() {
        let tmp = tempfile::tempdir().unwrap();
        let src = source_tree(tmp.path());
        let (m, seed_tree) = scan(&src);
        let seed = Storage::open_seed(&m, &src).unwrap();
        let out = tmp.path().join("out");
        let mut dl = Storage::open_download(&m, &m.id(), &out).unwrap();
        let part = out.join("share.kadswarm-part");
        // Every file at its final length, the empty ones too, before any chunk arrives.
        assert_eq!(
            fs::metadata(part.join("content/sub/b.bin")).unwrap().len(),
            100_000
        );
        assert_eq!(
            fs::metadata(part.join("content/sub/empty")).unwrap().len(),
            0
        );
        assert!(part.join("content/void").is_dir());
        fetch(&seed, &seed_tree, &mut dl, 0..3);
        assert!(!lock(&dl.storage.state).dirty.is_empty());
        dl.storage.save_resume(&dl.have, &dl.tree).unwrap();
        // Data was synced before the state claiming it was written.
        assert!(lock(&dl.storage.state).dirty.is_empty());
        assert!(part.join("resume.cbor").is_file());
        assert!(!part.join("resume.cbor.tmp").exists());
        assert!(!out.join("share").exists());
        assert_eq!(dl.storage.final_path(), out.join("share"));
        fetch(&seed, &seed_tree, &mut dl, 3..m.chunk_count());
        assert!(!out.join("share").exists());
        dl.storage.finish().unwrap();
        assert!(out.join("share").is_dir());
        assert!(!part.exists());
    }

    #[test]
    fn resume_keeps_saved_chunks_and_drops_corrupted_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let src = source_tree(tmp.path());
        let (m, seed_tree) = scan(&src);
        let seed = Storage::open_seed(&m, &src).unwrap();
        let out = tmp.path().join("out");
        let mut dl = Storage::open_download(&m, &m.id(), &out).unwrap();
        let saved = [0u32, 2, 3, 7];
        fetch(&seed, &seed_tree, &mut dl, saved.iter().copied());
        dl.storage.save_resume(&dl.have, &dl.tree).unwrap();
        // Written after the save: not claimed on reopen.
        fetch(&seed, &seed_tree, &mut dl, [5].into_iter());
        drop(dl);

        let dl = Storage::open_download(&m, &m.id(), &out).unwrap();
        assert!(!dl.complete);
        assert_eq!(dl.have.iter_ones().collect::<Vec<_>>(), saved);
        for i in saved {
            assert_eq!(dl.tree.proof(i), seed_tree.proof(i), "proof for chunk {i}");
        }
        drop(dl);

        // Flip one byte of chunk 3 (it lies inside sub/b.bin) on disk.
        let b = out.join("share.kadswarm-part/content/sub/b.bin");
        let mut data = fs::read(&b).unwrap();
        let at = 3 * CS as usize - 20_000 + 10;
        data[at] ^= 0xff;
        fs::write(&b, &data).unwrap();
        let mut dl = Storage::open_download(&m, &m.id(), &out).unwrap();
        assert_eq!(dl.have.iter_ones().collect::<Vec<_>>(), [0, 2, 7]);

        // The rest can still be fetched and the result is exact.
        let missing: Vec<u32> = (0..m.chunk_count()).filter(|&i| !dl.have.get(i)).collect();
        fetch(&seed, &seed_tree, &mut dl, missing.into_iter());
        let done = dl.storage.finish().unwrap();
        assert_eq!(files_under(&src), files_under(&done));
    }

    fn rewrite_resume(out: &Path, edit: impl FnOnce(&mut ResumeFile)) {
        let path = out.join("share.kadswarm-part/resume.cbor");
        let mut r: ResumeFile = cbor4ii::serde::from_slice(&fs::read(&path).unwrap()).unwrap();
        edit(&mut r);
        fs::write(&path, cbor4ii::serde::to_vec(Vec::new(), &r).unwrap()).unwrap();
    }

    fn saved_download(tmp: &Path) -> (Manifest, PathBuf) {
        let src = source_tree(tmp);
        let (m, seed_tree) = scan(&src);
        let seed = Storage::open_seed(&m, &src).unwrap();
        let out = tmp.join("out");
        let mut dl = Storage::open_download(&m, &m.id(), &out).unwrap();
        fetch(&seed, &seed_tree, &mut dl, 0..4);
        dl.storage.save_resume(&dl.have, &dl.tree).unwrap();
        (m, out)
    }

    #[test]
    fn resume_for_a_different_id_is_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let (m, out) = saved_download(tmp.path());
        rewrite_resume(&out, |r| r.id = ContentId::from_bytes([0xab; 32]));
        // A stray file from the other download must not survive into our content.
        fs::write(out.join("share.kadswarm-part/content/stray"), b"x").unwrap();
        let dl = Storage::open_download(&m, &m.id(), &out).unwrap();
        assert!(dl.have.none_set());
        assert!(!out.join("share.kadswarm-part/content/stray").exists());
        assert_eq!(
            fs::metadata(out.join("share.kadswarm-part/content/sub/b.bin"))
                .unwrap()
                .len(),
            100_000
        );
    }

    #[test]
    fn forged_claims_in_resume_are_rechecked() {
        let tmp = tempfile::tempdir().unwrap();
        let (m, out) = saved_download(tmp.path());
        // Claims every chunk and adds a forged leaf: only the four written ones survive.
        rewrite_resume(&out, |r| {
            r.have = Bitfield::full(m.chunk_count()).to_bytes();
            let mut forged = vec![0u8; NODE_LEN];
            forged[4] = 6; // level 0, position 6
            r.nodes.extend_from_slice(&forged);
        });
        let dl = Storage::open_download(&m, &m.id(), &out).unwrap();
        assert_eq!(dl.have.iter_ones().collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert!(!dl.tree.has_leaf(6));
    }

    #[test]
    fn corrupt_resume_is_ignored_without_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let resume_of = |out: &Path| out.join("share.kadswarm-part/resume.cbor");
        let edits: [fn(&Path); 4] = [
            |p| fs::write(p, b"not cbor at all").unwrap(),
            |p| fs::write(p, b"").unwrap(),
            |p| {
                let good = fs::read(p).unwrap();
                fs::write(p, &good[..good.len() / 2]).unwrap()
            },
            |p| {
                // Over the size bound: rejected unread.
                let f = File::create(p).unwrap();
                f.set_len(RESUME_SLACK + (1 << 20)).unwrap();
            },
        ];
        for (k, edit) in edits.iter().enumerate() {
            let (m, out) = saved_download(&tmp.path().join(format!("bytes{k}")));
            edit(&resume_of(&out));
            let dl = Storage::open_download(&m, &m.id(), &out).unwrap();
            assert!(dl.have.none_set(), "case {k}: {:?}", dl.have);
        }
        // A bitfield of the wrong length, ragged nodes, an unknown version.
        let fields: [fn(&mut ResumeFile); 3] =
            [|r| r.have.push(0), |r| r.nodes.push(0), |r| r.version = 9];
        for (k, edit) in fields.into_iter().enumerate() {
            let (m, out) = saved_download(&tmp.path().join(format!("field{k}")));
            rewrite_resume(&out, edit);
            let dl = Storage::open_download(&m, &m.id(), &out).unwrap();
            assert!(dl.have.none_set(), "case {k}: {:?}", dl.have);
        }
    }

    #[test]
    fn existing_complete_output_is_detected() {
        let tmp = tempfile::tempdir().unwrap();
        let src = source_tree(tmp.path());
        let (m, seed_tree) = scan(&src);
        // The source's parent already holds the complete content.
        let opened = Storage::open_download(&m, &m.id(), src.parent().unwrap()).unwrap();
        assert!(opened.complete);
        assert!(opened.have.is_full());
        assert_eq!(opened.tree.root(), m.root);
        for i in 0..m.chunk_count() {
            assert_eq!(opened.tree.proof(i), seed_tree.proof(i));
        }
        assert_eq!(opened.storage.read_chunk(0).unwrap().len(), CS as usize);
        assert!(opened
            .storage
            .write_chunk(0, &vec![0; CS as usize])
            .is_err());
        // Nothing was written next to it.
        assert!(!src.with_file_name("share.kadswarm-part").exists());
        assert_eq!(fs::read_dir(src.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn existing_different_output_is_refused_and_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let src = source_tree(tmp.path());
        let (m, _) = scan(&src);
        let out = src.parent().unwrap();
        let before = files_under(&src);

        // Same lengths, one byte different.
        let z = src.join("z.bin");
        let mut data = fs::read(&z).unwrap();
        data[0] ^= 1;
        fs::write(&z, &data).unwrap();
        let before_edit = files_under(&src);
        let err = Storage::open_download(&m, &m.id(), out).unwrap_err();
        match &err {
            StorageError::OutputExists { path, .. } => assert_eq!(path, &src),
            other => panic!("expected OutputExists, got {other}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("--out") && msg.contains("share"), "{msg}");
        assert_eq!(files_under(&src), before_edit);
        assert_ne!(files_under(&src), before);

        // Different length.
        fs::write(&z, b"longer than before").unwrap();
        let err = Storage::open_download(&m, &m.id(), out).unwrap_err();
        assert!(matches!(err, StorageError::OutputExists { .. }), "{err}");
        assert_eq!(fs::read(&z).unwrap(), b"longer than before");

        // A file where the directory should be.
        let other_out = tmp.path().join("o2");
        fs::create_dir(&other_out).unwrap();
        fs::write(other_out.join("share"), b"hi").unwrap();
        let err = Storage::open_download(&m, &m.id(), &other_out).unwrap_err();
        assert!(matches!(err, StorageError::OutputExists { .. }), "{err}");
        assert_eq!(fs::read(other_out.join("share")).unwrap(), b"hi");
        assert!(!out.join("share.kadswarm-part").exists());
        assert!(!other_out.join("share.kadswarm-part").exists());
    }

    #[test]
    fn output_appearing_before_finish_is_not_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("f.bin");
        fs::write(&src, bytes(40_000, 4)).unwrap();
        let (m, seed_tree) = scan(&src);
        let seed = Storage::open_seed(&m, &src).unwrap();
        let out = tmp.path().join("out");
        let mut dl = Storage::open_download(&m, &m.id(), &out).unwrap();
        fetch(&seed, &seed_tree, &mut dl, 0..m.chunk_count());
        fs::write(out.join("f.bin"), b"mine").unwrap();
        let err = dl.storage.finish().unwrap_err();
        assert!(matches!(err, StorageError::OutputExists { .. }), "{err}");
        assert_eq!(fs::read(out.join("f.bin")).unwrap(), b"mine");
        // The download is intact and still writable; it finishes once the way is clear.
        fs::remove_file(out.join("f.bin")).unwrap();
        dl.storage
            .write_chunk(0, &seed.read_chunk(0).unwrap())
            .unwrap();
        let done = dl.storage.finish().unwrap();
        assert_eq!(fs::read(done).unwrap(), fs::read(&src).unwrap());
    }

    #[test]
    fn wrong_length_and_out_of_range_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let src = source_tree(tmp.path());
        let (m, _) = scan(&src);
        let out = tmp.path().join("out");
        let dl = Storage::open_download(&m, &m.id(), &out).unwrap();
        let s = &dl.storage;
        let err = s.write_chunk(0, &vec![1; CS as usize - 1]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(s.write_chunk(0, &vec![1; CS as usize + 1]).is_err());
        // The last chunk is short: a full-size write is wrong there.
        assert!(s.write_chunk(7, &vec![1; CS as usize]).is_err());
        assert!(s.write_chunk(8, &[]).is_err());
        assert!(s.read_chunk(8).is_err());
        assert!(s.read_chunk(u32::MAX).is_err());
        // Nothing reached the disk.
        assert_eq!(
            fs::read(out.join("share.kadswarm-part/content/a.bin")).unwrap(),
            vec![0; 20_000]
        );
        // A seed is read-only.
        let mut seed = Storage::open_seed(&m, &src).unwrap();
        let err = seed.write_chunk(0, &vec![0; CS as usize]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(matches!(seed.finish(), Err(StorageError::ReadOnly { .. })));
        assert!(seed
            .save_resume(&Bitfield::new(8), &MerkleTree::with_root(m.root, 8))
            .is_err());
        assert_eq!(fs::read(src.join("a.bin")).unwrap(), bytes(20_000, 1));
    }

    #[test]
    fn seed_checks_file_lengths() {
        let tmp = tempfile::tempdir().unwrap();
        let src = source_tree(tmp.path());
        let (m, _) = scan(&src);
        fs::write(src.join("z.bin"), b"123456").unwrap();
        match Storage::open_seed(&m, &src) {
            Err(StorageError::LengthMismatch {
                path,
                expected,
                found,
            }) => {
                assert_eq!((path, expected, found), (src.join("z.bin"), 5, 6));
            }
            other => panic!("expected LengthMismatch, got {other:?}"),
        }
        fs::remove_file(src.join("z.bin")).unwrap();
        let err = Storage::open_seed(&m, &src).unwrap_err();
        assert!(err.to_string().contains("z.bin"), "{err}");
    }

    #[test]
    fn open_handles_stay_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("many");
        fs::create_dir(&root).unwrap();
        let mut all = Vec::new();
        for k in 0..12u8 {
            let data = bytes(5_000 + usize::from(k) * 300, k);
            fs::write(root.join(format!("f{k:02}")), &data).unwrap();
            all.extend(data);
        }
        let (m, seed_tree) = scan(&root);
        let mut seed = Storage::open_seed(&m, &root).unwrap();
        seed.max_open = 3;
        let out = tmp.path().join("out");
        let mut dl = Storage::open_download(&m, &m.id(), &out).unwrap();
        dl.storage.max_open = 3;
        for i in 0..m.chunk_count() {
            let r = m.chunk_range(i);
            assert_eq!(
                seed.read_chunk(i).unwrap(),
                &all[r.start as usize..r.end as usize]
            );
            assert!(seed.open_handles() <= 3);
        }
        fetch(&seed, &seed_tree, &mut dl, 0..m.chunk_count());
        assert!(dl.storage.open_handles() <= 3);
        dl.storage.save_resume(&dl.have, &dl.tree).unwrap();
        let done = dl.storage.finish().unwrap();
        assert_eq!(files_under(&root), files_under(&done));
    }

    #[test]
    fn empty_content_downloads_and_finishes() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("hollow");
        fs::create_dir_all(root.join("inner/deeper")).unwrap();
        fs::write(root.join("zero"), b"").unwrap();
        let (m, _) = scan(&root);
        assert_eq!(m.chunk_count(), 0);
        let out = tmp.path().join("out");
        let mut dl = Storage::open_download(&m, &m.id(), &out).unwrap();
        assert!(dl.have.is_full() && !dl.complete);
        dl.storage.save_resume(&dl.have, &dl.tree).unwrap();
        let done = dl.storage.finish().unwrap();
        assert!(done.join("inner/deeper").is_dir());
        assert_eq!(fs::metadata(done.join("zero")).unwrap().len(), 0);
        // And once there, it is recognised as complete.
        assert!(Storage::open_download(&m, &m.id(), &out).unwrap().complete);
    }

    #[test]
    fn concurrent_reads_and_writes_through_arc() {
        let tmp = tempfile::tempdir().unwrap();
        let src = source_tree(tmp.path());
        let (m, _) = scan(&src);
        let seed = Arc::new(Storage::open_seed(&m, &src).unwrap());
        let dl = Storage::open_download(&m, &m.id(), &tmp.path().join("out")).unwrap();
        let dst = Arc::new(dl.storage);
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let (seed, dst) = (Arc::clone(&seed), Arc::clone(&dst));
                std::thread::spawn(move || {
                    for i in (t..8).step_by(4) {
                        dst.write_chunk(i, &seed.read_chunk(i).unwrap()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for i in 0..m.chunk_count() {
            assert_eq!(dst.read_chunk(i).unwrap(), seed.read_chunk(i).unwrap());
        }
        let mut dst = Arc::try_unwrap(dst).unwrap();
        let done = dst.finish().unwrap();
        assert_eq!(files_under(&src), files_under(&done));
    }
}
