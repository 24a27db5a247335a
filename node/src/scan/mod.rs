//! Turns a user's file or directory into a manifest and its full Merkle tree.
//!
//! Directories are walked in byte-wise name order so the same tree always
//! gives the same content ID. Symlinks and special files are skipped, never
//! followed, so a share cannot reach outside the tree it names. Every file is
//! streamed through a 1 MiB buffer; nothing is held whole in memory. The
//! identity of each file hashed (device, inode, length) is recorded, so
//! serving can check it is still the same file ([`scan_share`]).

use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use protocol::manifest::{
    auto_chunk_size, BuildError, Entry, EntryKind, Layout, ManifestBuilder, ManifestError,
    MAX_ENTRIES, MAX_PATH_DEPTH,
};
use protocol::merkle::MerkleTree;
use protocol::Manifest;
use thiserror::Error;

/// Read buffer size while hashing.
const READ_BUF: usize = 1 << 20;
/// How often `progress` is called, in bytes.
const PROGRESS_EVERY: u64 = 4 << 20;

/// Why a path could not be scanned.
#[derive(Debug, Error)]
pub enum ScanError {
    /// The path does not exist.
    #[error("{path}: not found; check the path and try again")]
    NotFound { path: PathBuf },
    /// The OS refused access.
    #[error("{path}: permission denied; make it readable or share something else")]
    PermissionDenied { path: PathBuf },
    /// Neither a regular file nor a directory (device, socket, fifo...).
    #[error("{path}: not a regular file or directory; only files and directories can be shared")]
    NotFileOrDirectory { path: PathBuf },
    /// A name that is not UTF-8 cannot go into a manifest.
    #[error("{path}: name is not valid UTF-8; rename it to share it")]
    NonUtf8Name { path: PathBuf },
    /// A name the manifest rules reject (could be unsafe on another system).
    #[error("{path}: name {name:?} is not allowed in a share (empty, '.', '..', too long, or contains '/', '\\\\', control characters); rename it")]
    UnsafeName { path: PathBuf, name: String },
    /// The file changed (length, identity or modification time) while it was read.
    #[error("{path}: changed during the scan ({detail}); wait until it is no longer being written and share it again")]
    Changed { path: PathBuf, detail: String },
    /// The tree breaks a manifest limit (too many entries, too deep, too large, bad chunk size).
    #[error("{path}: cannot be shared: {reason}")]
    Limits { path: PathBuf, reason: String },
    /// Any other IO failure.
    #[error("{path}: could not {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Scans and hashes `path` with a fixed chunk size; see [`scan_path_with`].
pub fn scan_path(
    path: &Path,
    chunk_size: u32,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(Manifest, MerkleTree), ScanError> {
    scan_path_with(path, Some(chunk_size), progress)
}

/// Scans and hashes `path` into a manifest plus its full Merkle tree.
///
/// `chunk_size: None` picks one from the total size ([`auto_chunk_size`]).
/// `progress(done_bytes, total_bytes)` is called every few MiB.
pub fn scan_path_with(
    path: &Path,
    chunk_size: Option<u32>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(Manifest, MerkleTree), ScanError> {
    scan_share(path, chunk_size, progress).map(|s| (s.manifest, s.tree))
}

/// A scanned share: its manifest, Merkle tree, and which file each entry was.
#[derive(Debug)]
pub struct Scanned {
    /// The manifest of the share.
    pub manifest: Manifest,
    /// Its full Merkle tree.
    pub tree: MerkleTree,
    /// The identity of each file hashed, in `Manifest::files()` order.
    pub files: Vec<FileIdentity>,
}

/// Which file was hashed: serving checks it is still the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileIdentity {
    /// Device of the file system holding it.
    pub dev: u64,
    /// Inode number on that device.
    pub ino: u64,
    /// Length when hashed.
    pub len: u64,
}

/// Like [`scan_path_with`], also recording each file's identity for [`crate::storage::Storage::open_share`].
pub fn scan_share(
    path: &Path,
    chunk_size: Option<u32>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Scanned, ScanError> {
    // The top path itself is followed if it is a symlink: the user named it.
    let meta = fs::metadata(path).map_err(|e| io_error(path, "read metadata of", e))?;
    let name = share_name(path)?;
    let mut sources = Vec::new();
    let layout = if meta.is_file() {
        sources.push(Source::new(path.to_path_buf(), &meta));
        Layout::File { length: meta.len() }
    } else if meta.is_dir() {
        let mut entries = Vec::new();
        let mut rel = Vec::new();
        walk(path, &mut rel, &mut entries, &mut sources)?;
        Layout::Directory { entries }
    } else {
        return Err(ScanError::NotFileOrDirectory {
            path: path.to_path_buf(),
        });
    };

    let total = sources.iter().fold(0u64, |a, s| a.saturating_add(s.len));
    let chunk_size = chunk_size.unwrap_or_else(|| auto_chunk_size(total));
    let mut builder = ManifestBuilder::new(name, chunk_size, layout.clone())
        .map_err(|e| manifest_error(path, &layout, e))?;
    let mut meter = Meter {
        done: 0,
        last: 0,
        total,
        progress,
    };
    (meter.progress)(0, total);
    let mut buf = vec![0u8; READ_BUF];
    for source in &sources {
        hash_file(source, &mut builder, &mut buf, &mut meter)?;
    }
    let out = builder.finish().map_err(|e| match e {
        BuildError::LengthMismatch { expected, fed } => ScanError::Changed {
            path: path.to_path_buf(),
            detail: format!("listed {expected} bytes in total, read {fed}"),
        },
    })?;
    (meter.progress)(total, total);
    let (manifest, tree) = out;
    let files = sources
        .iter()
        .map(|s| FileIdentity {
            dev: s.dev,
            ino: s.ino,
            len: s.len,
        })
        .collect();
    Ok(Scanned {
        manifest,
        tree,
        files,
    })
}

/// Where each file of `manifest` lives under a shared `path` (same order as `Manifest::files()`).
pub fn file_paths(manifest: &Manifest, base: &Path) -> Vec<PathBuf> {
    match &manifest.layout {
        Layout::File { .. } => vec![base.to_path_buf()],
        Layout::Directory { .. } => manifest
            .files()
            .map(|(components, _)| {
                let mut p = base.to_path_buf();
                p.extend(components);
                p
            })
            .collect(),
    }
}

/// One file to hash, as listed during the walk.
struct Source {
    path: PathBuf,
    len: u64,
    dev: u64,
    ino: u64,
}

impl Source {
    fn new(path: PathBuf, meta: &Metadata) -> Self {
        Self {
            path,
            len: meta.len(),
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// Progress bookkeeping: calls back only every `PROGRESS_EVERY` bytes.
struct Meter<'a> {
    done: u64,
    last: u64,
    total: u64,
    progress: &'a mut dyn FnMut(u64, u64),
}

impl Meter<'_> {
    fn advance(&mut self, n: u64) {
        self.done = self.done.saturating_add(n);
        if self.done - self.last >= PROGRESS_EVERY {
            self.last = self.done;
            (self.progress)(self.done.min(self.total), self.total);
        }
    }
}

/// The share's name: the final component of `path` (resolved for `.` and the like).
fn share_name(path: &Path) -> Result<String, ScanError> {
    let resolved;
    let last = match path.file_name() {
        Some(n) => n,
        None => {
            resolved = fs::canonicalize(path).map_err(|e| io_error(path, "resolve", e))?;
            resolved.file_name().ok_or_else(|| ScanError::UnsafeName {
                path: path.to_path_buf(),
                name: String::new(),
            })?
        }
    };
    last.to_str()
        .map(str::to_owned)
        .ok_or_else(|| ScanError::NonUtf8Name {
            path: path.to_path_buf(),
        })
}

/// Lists `dir` (at relative path `rel`) depth-first in byte-wise name order.
fn walk(
    dir: &Path,
    rel: &mut Vec<String>,
    entries: &mut Vec<Entry>,
    sources: &mut Vec<Source>,
) -> Result<(), ScanError> {
    if rel.len() >= MAX_PATH_DEPTH {
        return Err(ScanError::Limits {
            path: dir.to_path_buf(),
            reason: format!("nested more than {MAX_PATH_DEPTH} levels deep"),
        });
    }
    let mut children = Vec::new();
    for item in fs::read_dir(dir).map_err(|e| io_error(dir, "list directory", e))? {
        let item = item.map_err(|e| io_error(dir, "list directory", e))?;
        children.push(item);
        if entries.len() + children.len() > MAX_ENTRIES {
            return Err(too_many(dir));
        }
    }
    children.sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()));

    for child in children {
        let path = child.path();
        // DirEntry::file_type does not follow symlinks.
        let ft = child
            .file_type()
            .map_err(|e| io_error(&path, "read type of", e))?;
        if ft.is_symlink() {
            tracing::warn!(path = %path.display(), "skipping symlink (links are never followed)");
            continue;
        }
        if !ft.is_file() && !ft.is_dir() {
            tracing::warn!(path = %path.display(), "skipping special file");
            continue;
        }
        let name = child
            .file_name()
            .to_str()
            .map(str::to_owned)
            .ok_or_else(|| ScanError::NonUtf8Name { path: path.clone() })?;
        rel.push(name);
        if ft.is_dir() {
            let before = entries.len();
            walk(&path, rel, entries, sources)?;
            if entries.len() == before {
                // Nothing listable inside: record the directory itself so it survives.
                entries.push(Entry {
                    path: rel.clone(),
                    kind: EntryKind::Dir,
                });
            }
        } else {
            let meta =
                fs::symlink_metadata(&path).map_err(|e| io_error(&path, "read metadata of", e))?;
            entries.push(Entry {
                path: rel.clone(),
                kind: EntryKind::File { length: meta.len() },
            });
            sources.push(Source::new(path, &meta));
        }
        rel.pop();
        if entries.len() > MAX_ENTRIES {
            return Err(too_many(dir));
        }
    }
    Ok(())
}

fn too_many(dir: &Path) -> ScanError {
    ScanError::Limits {
        path: dir.to_path_buf(),
        reason: format!("more than {MAX_ENTRIES} files and directories"),
    }
}

/// Streams one file into the builder, checking it did not change meanwhile.
fn hash_file(
    source: &Source,
    builder: &mut ManifestBuilder,
    buf: &mut [u8],
    meter: &mut Meter<'_>,
) -> Result<(), ScanError> {
    let path = &source.path;
    let changed = |detail: String| ScanError::Changed {
        path: path.clone(),
        detail,
    };
    let file = File::open(path).map_err(|e| io_error(path, "open", e))?;
    let before = file
        .metadata()
        .map_err(|e| io_error(path, "read metadata of", e))?;
    // Catches a file swapped for another (or for a symlink) since the walk.
    if !before.is_file() || before.dev() != source.dev || before.ino() != source.ino {
        return Err(changed("it was replaced".into()));
    }
    if before.len() != source.len {
        return Err(changed(format!(
            "{} bytes when listed, {} when opened",
            source.len,
            before.len()
        )));
    }
    // Read one byte past the listed length at most, so a growing file cannot keep us reading.
    let mut reader = (&file).take(source.len.saturating_add(1));
    let mut read = 0u64;
    loop {
        let n = match reader.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(path, "read", e)),
        };
        read += n as u64;
        if read > source.len {
            return Err(changed(format!("grew past {} bytes", source.len)));
        }
        builder.update(&buf[..n]);
        meter.advance(n as u64);
    }
    if read != source.len {
        return Err(changed(format!(
            "listed {} bytes, read only {read}",
            source.len
        )));
    }
    let after = file
        .metadata()
        .map_err(|e| io_error(path, "read metadata of", e))?;
    if after.len() != source.len || after.modified().ok() != before.modified().ok() {
        return Err(changed("modified while it was read".into()));
    }
    Ok(())
}

/// Names the failing path, with the common cases given their own variant.
fn io_error(path: &Path, action: &'static str, e: io::Error) -> ScanError {
    let path = path.to_path_buf();
    match e.kind() {
        io::ErrorKind::NotFound => ScanError::NotFound { path },
        io::ErrorKind::PermissionDenied => ScanError::PermissionDenied { path },
        _ => ScanError::Io {
            path,
            action,
            source: e,
        },
    }
}

/// Maps a manifest validation failure back to the file that caused it.
fn manifest_error(root: &Path, layout: &Layout, e: ManifestError) -> ScanError {
    match e {
        ManifestError::UnsafePath(name) => {
            let mut path = root.to_path_buf();
            if let Layout::Directory { entries } = layout {
                if let Some(entry) = entries.iter().find(|en| en.path.contains(&name)) {
                    for c in &entry.path {
                        path.push(c);
                        if c == &name {
                            break;
                        }
                    }
                }
            }
            ScanError::UnsafeName { path, name }
        }
        other => ScanError::Limits {
            path: root.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests;
