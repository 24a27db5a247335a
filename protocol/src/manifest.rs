//! The manifest: what a content ID names (layout, chunk size, Merkle root).
//!
//! The content ID is SHA-256 of the manifest's CBOR encoding. Chunks are cut
//! from the concatenation of all files in manifest order, so a directory of
//! small files does not waste a chunk per file.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::id::ContentId;
use crate::merkle::{Hash, LeafHasher, MerkleTree};

/// Chunk size for tests and benches that want a fixed, typical one: 256 KiB.
pub const DEFAULT_CHUNK_SIZE: u32 = 256 * 1024;
/// How many chunks [`auto_chunk_size`] aims for.
pub const AUTO_TARGET_CHUNKS: u64 = 512;
/// Largest chunk size [`auto_chunk_size`] picks unless `MAX_CHUNKS` forces more.
pub const AUTO_MAX_CHUNK_SIZE: u32 = 1024 * 1024;
/// Smallest chunk size we accept.
pub const MIN_CHUNK_SIZE: u32 = 16 * 1024;
/// Largest chunk size we accept (bounds every chunk message).
pub const MAX_CHUNK_SIZE: u32 = 4 * 1024 * 1024;
/// Largest encoded manifest we accept from a peer.
pub const MAX_MANIFEST_BYTES: usize = 8 * 1024 * 1024;
/// Most entries a directory manifest may list.
pub const MAX_ENTRIES: usize = 200_000;
/// Longest path component, in bytes.
pub const MAX_COMPONENT_LEN: usize = 255;
/// Most chunks one manifest may have (so a bitfield fits in one message).
pub const MAX_CHUNKS: u64 = 1 << 23;
/// Deepest relative path.
pub const MAX_PATH_DEPTH: usize = 64;

/// The chunk size for content of `total` bytes when the user names none.
///
/// Like BitTorrent's piece size: about [`AUTO_TARGET_CHUNKS`] chunks, a power
/// of two from [`MIN_CHUNK_SIZE`] to [`AUTO_MAX_CHUNK_SIZE`]. Small chunks let
/// a swarm forward data sooner; large ones cut per-request overhead on big
/// files. Past 1 TiB it grows further so the count stays within [`MAX_CHUNKS`].
pub fn auto_chunk_size(total: u64) -> u32 {
    let wanted = total.div_ceil(AUTO_TARGET_CHUNKS).next_power_of_two();
    let mut size = wanted.clamp(u64::from(MIN_CHUNK_SIZE), u64::from(AUTO_MAX_CHUNK_SIZE));
    while total.div_ceil(size) > MAX_CHUNKS && size < u64::from(MAX_CHUNK_SIZE) {
        size *= 2;
    }
    size as u32
}

/// Describes one shared file or directory tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version; this code writes and reads 1.
    pub version: u8,
    /// Name of the shared file or top directory (one safe path component).
    pub name: String,
    /// Bytes per chunk (the last one may be shorter).
    pub chunk_size: u32,
    /// What the content is.
    pub layout: Layout,
    /// Merkle root over all chunk leaves.
    #[serde(with = "serde_bytes")]
    pub root: Hash,
}

/// A single file or a directory tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Layout {
    /// One file of this many bytes, stored as `name`.
    File { length: u64 },
    /// A tree under the directory `name`.
    Directory { entries: Vec<Entry> },
}

/// One item of a directory tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Path components relative to the top directory.
    pub path: Vec<String>,
    /// A file's length, or an (empty) directory.
    pub kind: EntryKind,
}

/// File with its length, or a directory that must exist even if empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum EntryKind {
    /// A regular file.
    File { length: u64 },
    /// A directory.
    Dir,
}

/// Why a manifest was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ManifestError {
    /// Bytes did not hash to the expected content ID.
    #[error("manifest does not match content ID {0}")]
    IdMismatch(ContentId),
    /// Encoded form larger than we accept.
    #[error("manifest is {0} bytes, over the {MAX_MANIFEST_BYTES}-byte limit")]
    TooLarge(usize),
    /// Not a manifest at all.
    #[error("manifest is not valid CBOR: {0}")]
    Malformed(String),
    /// Decodes, but is not the canonical encoding of what it decodes to, so the
    /// bytes we would serve again could differ from the bytes behind the ID.
    #[error("manifest is not canonically encoded")]
    NonCanonical,
    /// A version we do not speak.
    #[error("unsupported manifest version {0}")]
    UnsupportedVersion(u8),
    /// Chunk size out of range or not a power of two.
    #[error("chunk size {0} is not a power of two between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE}")]
    BadChunkSize(u32),
    /// A name or path that could escape the output directory or is not portable.
    #[error("unsafe path component {0:?}")]
    UnsafePath(String),
    /// The same path listed twice, or a file used as a directory.
    #[error("path {0:?} is listed twice or is both a file and a directory")]
    PathConflict(String),
    /// Too many entries, or content too large to index by u32 chunks.
    #[error("manifest too large: {0}")]
    Limits(&'static str),
}

impl Manifest {
    /// The content ID: SHA-256 of the canonical encoding.
    pub fn id(&self) -> ContentId {
        ContentId::from_bytes(Sha256::digest(self.to_bytes()).into())
    }

    /// Canonical CBOR encoding (fields in declaration order).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Encoding into a Vec cannot fail for these plain types.
        cbor4ii::serde::to_vec(Vec::new(), self).unwrap_or_default()
    }

    /// Decodes bytes received for `id`: checks the hash first, then validates.
    pub fn from_bytes_for(id: &ContentId, bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge(bytes.len()));
        }
        if Sha256::digest(bytes).as_slice() != id.as_bytes() {
            return Err(ManifestError::IdMismatch(*id));
        }
        Self::decode_untrusted(bytes)
    }

    /// Decodes and validates bytes of unknown origin (no ID check).
    ///
    /// Only the canonical encoding is accepted (re-encoding gives the same
    /// bytes), so whoever accepts a manifest can serve exactly the bytes that
    /// hash to its ID. Time is linear in the size of `bytes`.
    pub fn decode_untrusted(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge(bytes.len()));
        }
        let m: Manifest = cbor4ii::serde::from_slice(bytes)
            .map_err(|e| ManifestError::Malformed(e.to_string()))?;
        if m.to_bytes() != bytes {
            return Err(ManifestError::NonCanonical);
        }
        m.validate()?;
        Ok(m)
    }

    /// Checks every invariant code downstream relies on.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.version != 1 {
            return Err(ManifestError::UnsupportedVersion(self.version));
        }
        if !self.chunk_size.is_power_of_two()
            || !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size)
        {
            return Err(ManifestError::BadChunkSize(self.chunk_size));
        }
        check_component(&self.name)?;
        if let Layout::Directory { entries } = &self.layout {
            if entries.len() > MAX_ENTRIES {
                return Err(ManifestError::Limits("too many entries"));
            }
            check_tree(entries)?;
        }
        let total = self
            .files()
            .try_fold(0u64, |acc, (_, len)| acc.checked_add(len))
            .ok_or(ManifestError::Limits("total length overflows"))?;
        if total.div_ceil(u64::from(self.chunk_size)) > MAX_CHUNKS {
            return Err(ManifestError::Limits(
                "more than 2^23 chunks; use a larger chunk size",
            ));
        }
        Ok(())
    }

    /// Files in chunk-stream order, as (relative path components, length).
    /// A single-file share yields one file with an empty path.
    pub fn files(&self) -> impl Iterator<Item = (&[String], u64)> + '_ {
        let (single, entries): (Option<u64>, &[Entry]) = match &self.layout {
            Layout::File { length } => (Some(*length), &[]),
            Layout::Directory { entries } => (None, entries),
        };
        single
            .map(|l| (&[][..], l))
            .into_iter()
            .chain(entries.iter().filter_map(|e| match e.kind {
                EntryKind::File { length } => Some((&e.path[..], length)),
                EntryKind::Dir => None,
            }))
    }

    /// Total bytes of content.
    pub fn total_length(&self) -> u64 {
        self.files().map(|(_, l)| l).fold(0u64, u64::saturating_add)
    }

    /// Number of chunks.
    pub fn chunk_count(&self) -> u32 {
        let n = self
            .total_length()
            .div_ceil(u64::from(self.chunk_size.max(1)));
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Length of chunk `index` (the last may be short); 0 if out of range.
    pub fn chunk_len(&self, index: u32) -> u32 {
        let cs = u64::from(self.chunk_size);
        let start = u64::from(index) * cs;
        let total = self.total_length();
        if start >= total {
            return 0;
        }
        (total - start).min(cs) as u32
    }

    /// Byte range of chunk `index` within the concatenated content.
    pub fn chunk_range(&self, index: u32) -> std::ops::Range<u64> {
        let start = u64::from(index) * u64::from(self.chunk_size);
        start..start + u64::from(self.chunk_len(index))
    }

    /// The pieces of files that chunk `index` covers, as (file number, offset in file, length).
    pub fn chunk_spans(&self, index: u32) -> Vec<FileSpan> {
        let range = self.chunk_range(index);
        let mut out = Vec::new();
        let mut file_start = 0u64;
        for (n, (_, len)) in self.files().enumerate() {
            let file_end = file_start + len;
            let lo = range.start.max(file_start);
            let hi = range.end.min(file_end);
            if lo < hi {
                out.push(FileSpan {
                    file: n,
                    offset: lo - file_start,
                    len: hi - lo,
                });
            }
            if file_end >= range.end {
                break;
            }
            file_start = file_end;
        }
        out
    }
}

/// Part of one file inside a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileSpan {
    /// Index into `Manifest::files()`.
    pub file: usize,
    /// Offset within that file.
    pub offset: u64,
    /// Bytes of this file in the chunk.
    pub len: u64,
}

/// Checks that every path is safe, listed once, and that no entry lies under
/// a file, in time linear in the total path length.
///
/// Each distinct path prefix becomes a node of a trie keyed by (parent node,
/// component), so an entry costs one lookup per component rather than one hash
/// of every prefix (which would grow with depth squared).
fn check_tree(entries: &[Entry]) -> Result<(), ManifestError> {
    use std::collections::HashMap;
    /// Node 0 is the top directory.
    const ROOT: u32 = 0;
    #[derive(Clone, Copy, PartialEq)]
    enum Node {
        /// Implied by a deeper entry, not listed itself (yet).
        Implied,
        Dir,
        File,
    }
    let mut children: HashMap<(u32, &str), u32> = HashMap::new();
    let mut nodes: Vec<Node> = vec![Node::Dir];
    for e in entries {
        if e.path.is_empty() || e.path.len() > MAX_PATH_DEPTH {
            return Err(ManifestError::Limits("path empty or too deep"));
        }
        let mut at = ROOT;
        for (depth, c) in e.path.iter().enumerate() {
            check_component(c)?;
            let next = nodes.len() as u32;
            let node = *children.entry((at, c.as_str())).or_insert(next);
            let fresh = node == next;
            if fresh {
                nodes.push(Node::Implied);
            }
            let last = depth + 1 == e.path.len();
            let conflict = || ManifestError::PathConflict(e.path[..=depth].join("/"));
            let slot = nodes.get_mut(node as usize).ok_or_else(conflict)?;
            *slot = match (last, *slot, e.kind) {
                // An ancestor must be a directory, never a listed file.
                (false, Node::File, _) => return Err(conflict()),
                (false, state, _) => state,
                // Listed twice.
                (true, Node::Dir | Node::File, _) => return Err(conflict()),
                // A file where earlier, deeper entries need a directory.
                (true, Node::Implied, EntryKind::File { .. }) if !fresh => return Err(conflict()),
                (true, Node::Implied, EntryKind::File { .. }) => Node::File,
                (true, Node::Implied, EntryKind::Dir) => Node::Dir,
            };
            at = node;
        }
    }
    Ok(())
}

fn check_component(c: &str) -> Result<(), ManifestError> {
    let bad = c.is_empty()
        || c == "."
        || c == ".."
        || c.len() > MAX_COMPONENT_LEN
        || c.chars()
            .any(|ch| matches!(ch, '/' | '\\' | '\0') || ch.is_control())
        || (c.len() == 2 && c.ends_with(':'));
    if bad {
        Err(ManifestError::UnsafePath(c.to_string()))
    } else {
        Ok(())
    }
}

/// Builds a manifest by streaming the content through it once.
///
/// The caller (which owns the filesystem) describes the layout, then feeds
/// every file's bytes in `Manifest::files()` order.
pub struct ManifestBuilder {
    name: String,
    chunk_size: u32,
    layout: Layout,
    leaves: Vec<Hash>,
    current: LeafHasher,
    in_chunk: u64,
    fed: u64,
}

impl ManifestBuilder {
    /// Starts a manifest for `layout` under `name`.
    pub fn new(name: String, chunk_size: u32, layout: Layout) -> Result<Self, ManifestError> {
        let probe = Manifest {
            version: 1,
            name: name.clone(),
            chunk_size,
            layout: layout.clone(),
            root: [0; 32],
        };
        probe.validate()?;
        Ok(Self {
            name,
            chunk_size,
            layout,
            leaves: Vec::with_capacity(probe.chunk_count() as usize),
            current: LeafHasher::new(),
            in_chunk: 0,
            fed: 0,
        })
    }

    /// Feeds the next bytes of content.
    pub fn update(&mut self, mut data: &[u8]) {
        let cs = u64::from(self.chunk_size);
        while !data.is_empty() {
            let take = ((cs - self.in_chunk) as usize).min(data.len());
            self.current.update(&data[..take]);
            self.in_chunk += take as u64;
            self.fed += take as u64;
            data = &data[take..];
            if self.in_chunk == cs {
                let done = std::mem::take(&mut self.current);
                self.leaves.push(done.finish());
                self.in_chunk = 0;
            }
        }
    }

    /// Bytes fed so far.
    pub fn bytes_fed(&self) -> u64 {
        self.fed
    }

    /// Finishes: the manifest and the full Merkle tree (for serving proofs).
    /// Fails if the bytes fed differ from the layout's total length.
    pub fn finish(mut self) -> Result<(Manifest, MerkleTree), BuildError> {
        if self.in_chunk > 0 {
            let done = std::mem::take(&mut self.current);
            self.leaves.push(done.finish());
        }
        let mut manifest = Manifest {
            version: 1,
            name: self.name,
            chunk_size: self.chunk_size,
            layout: self.layout,
            root: [0; 32],
        };
        let expected = manifest.total_length();
        if self.fed != expected {
            return Err(BuildError::LengthMismatch {
                expected,
                fed: self.fed,
            });
        }
        let tree = MerkleTree::from_leaves(&self.leaves);
        manifest.root = tree.root();
        Ok((manifest, tree))
    }
}

/// Why building a manifest failed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BuildError {
    /// The content changed while it was being read.
    #[error("content length changed while hashing: layout says {expected} bytes, read {fed}")]
    LengthMismatch { expected: u64, fed: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::verify_chunk;
    use proptest::prelude::*;

    fn build(layout: Layout, content: &[u8], cs: u32) -> (Manifest, MerkleTree) {
        let mut b = ManifestBuilder::new("share".into(), cs, layout).unwrap();
        for piece in content.chunks(1000) {
            b.update(piece);
        }
        b.finish().unwrap()
    }

    #[test]
    fn auto_chunk_size_scales_with_content() {
        assert_eq!(auto_chunk_size(0), MIN_CHUNK_SIZE);
        assert_eq!(auto_chunk_size(1000), MIN_CHUNK_SIZE);
        assert_eq!(auto_chunk_size(16 << 20), 32 * 1024);
        assert_eq!(auto_chunk_size(64 << 20), 128 * 1024);
        assert_eq!(auto_chunk_size(1 << 30), 1024 * 1024);
        assert_eq!(auto_chunk_size(100 << 30), AUTO_MAX_CHUNK_SIZE);
        // 16 TiB at 1 MiB would be 2^24 chunks: the size doubles to stay within MAX_CHUNKS.
        let huge = 16u64 << 40;
        assert_eq!(auto_chunk_size(huge), 2 * 1024 * 1024);
        assert!(huge.div_ceil(u64::from(auto_chunk_size(huge))) <= MAX_CHUNKS);
        assert_eq!(auto_chunk_size(u64::MAX), MAX_CHUNK_SIZE);
    }

    #[test]
    fn sizes_edge_cases() {
        let cs = MIN_CHUNK_SIZE;
        for len in [0u64, 1, cs as u64, cs as u64 + 1, 3 * cs as u64 - 1] {
            let content: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let (m, tree) = build(Layout::File { length: len }, &content, cs);
            assert_eq!(m.chunk_count() as u64, len.div_ceil(cs as u64));
            for i in 0..m.chunk_count() {
                let r = m.chunk_range(i);
                let data = &content[r.start as usize..r.end as usize];
                verify_chunk(&m.root, m.chunk_count(), i, data, &tree.proof(i).unwrap()).unwrap();
            }
        }
    }

    #[test]
    fn directory_with_empty_file_and_dir_round_trips() {
        let layout = Layout::Directory {
            entries: vec![
                Entry {
                    path: vec!["a".into(), "b.txt".into()],
                    kind: EntryKind::File { length: 20_000 },
                },
                Entry {
                    path: vec!["empty".into()],
                    kind: EntryKind::File { length: 0 },
                },
                Entry {
                    path: vec!["void".into()],
                    kind: EntryKind::Dir,
                },
                Entry {
                    path: vec!["c".into()],
                    kind: EntryKind::File { length: 30_000 },
                },
            ],
        };
        let content = vec![5u8; 50_000];
        let (m, _) = build(layout, &content, MIN_CHUNK_SIZE);
        let bytes = m.to_bytes();
        assert!(bytes.len() < 400, "manifest is {} bytes", bytes.len());
        assert_eq!(Manifest::from_bytes_for(&m.id(), &bytes), Ok(m.clone()));
        assert_eq!(m.chunk_count(), 4);
        // Chunk 1 spans the tail of a/b.txt and the head of c.
        assert_eq!(
            m.chunk_spans(1),
            vec![
                FileSpan {
                    file: 0,
                    offset: 16_384,
                    len: 3_616
                },
                FileSpan {
                    file: 2,
                    offset: 0,
                    len: 12_768
                }
            ]
        );
    }

    #[test]
    fn manifest_stays_small_for_huge_file() {
        let m = Manifest {
            version: 1,
            name: "big.iso".into(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            layout: Layout::File { length: 100 << 30 },
            root: [7; 32],
        };
        m.validate().unwrap();
        assert!(m.to_bytes().len() < 200);
        assert_eq!(m.chunk_count(), 409_600);
    }

    #[test]
    fn rejects_unsafe_paths_and_conflicts() {
        let mk = |entries: Vec<Entry>| Manifest {
            version: 1,
            name: "x".into(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            layout: Layout::Directory { entries },
            root: [0; 32],
        };
        let f = |p: &[&str]| Entry {
            path: p.iter().map(|s| s.to_string()).collect(),
            kind: EntryKind::File { length: 1 },
        };
        assert!(matches!(
            mk(vec![f(&["..", "etc"])]).validate(),
            Err(ManifestError::UnsafePath(_))
        ));
        assert!(matches!(
            mk(vec![f(&["a/b"])]).validate(),
            Err(ManifestError::UnsafePath(_))
        ));
        assert!(matches!(
            mk(vec![f(&["a"]), f(&["a"])]).validate(),
            Err(ManifestError::PathConflict(_))
        ));
        assert!(matches!(
            mk(vec![f(&["a"]), f(&["a", "b"])]).validate(),
            Err(ManifestError::PathConflict(_))
        ));
        // A file listed after entries beneath it.
        assert!(matches!(
            mk(vec![f(&["a", "b"]), f(&["a"])]).validate(),
            Err(ManifestError::PathConflict(_))
        ));
        let d = |p: &[&str]| Entry {
            path: p.iter().map(|s| s.to_string()).collect(),
            kind: EntryKind::Dir,
        };
        assert!(matches!(
            mk(vec![d(&["a"]), d(&["a"])]).validate(),
            Err(ManifestError::PathConflict(_))
        ));
        // Directories may be listed before or after what they contain.
        mk(vec![
            f(&["a", "b"]),
            d(&["a"]),
            d(&["c"]),
            f(&["c", "d", "e"]),
        ])
        .validate()
        .unwrap();
        let mut m = mk(vec![]);
        m.name = "..".into();
        assert!(m.validate().is_err());
        m.name = "ok".into();
        m.chunk_size = 1000;
        assert_eq!(m.validate(), Err(ManifestError::BadChunkSize(1000)));
    }

    #[test]
    fn wrong_id_and_tampered_bytes_rejected() {
        let (m, _) = build(Layout::File { length: 5 }, b"hello", MIN_CHUNK_SIZE);
        let mut bytes = m.to_bytes();
        let id = m.id();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(
            Manifest::from_bytes_for(&id, &bytes),
            Err(ManifestError::IdMismatch(id))
        );
    }

    /// `bytes` with the first occurrence of `from` replaced by `to`.
    fn splice(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        let at = bytes
            .windows(from.len())
            .position(|w| w == from)
            .expect("pattern present");
        [&bytes[..at], to, &bytes[at + from.len()..]].concat()
    }

    #[test]
    fn non_canonical_encodings_are_rejected_even_with_a_matching_id() {
        let (m, _) = build(Layout::File { length: 5 }, b"hello", MIN_CHUNK_SIZE);
        let canonical = m.to_bytes();
        // version 1 as a one-byte-argument integer (0x18 0x01) instead of 0x01.
        let long_int = splice(&canonical, b"\x67version\x01", b"\x67version\x18\x01");
        // An extra field, with the map header bumped from 5 to 6 entries.
        let mut extra = canonical.clone();
        assert_eq!(extra[0], 0xa5);
        extra[0] = 0xa6;
        extra.extend_from_slice(b"\x65extra\x00");
        for bytes in [long_int, extra] {
            let id = ContentId::from_bytes(Sha256::digest(&bytes).into());
            assert!(
                Manifest::from_bytes_for(&id, &bytes).is_err(),
                "accepted non-canonical bytes {bytes:02x?}"
            );
        }
        assert_eq!(Manifest::from_bytes_for(&m.id(), &canonical), Ok(m));
    }

    #[test]
    fn deep_and_wide_trees_validate() {
        let deep: Vec<String> = (0..MAX_PATH_DEPTH).map(|i| format!("d{i}")).collect();
        let entries: Vec<Entry> = (0..2000)
            .map(|i| {
                let mut path = deep.clone();
                path.push(format!("f{i}"));
                path.remove(0);
                Entry {
                    path,
                    kind: EntryKind::File { length: 1 },
                }
            })
            .collect();
        let m = Manifest {
            version: 1,
            name: "deep".into(),
            chunk_size: MIN_CHUNK_SIZE,
            layout: Layout::Directory { entries },
            root: [0; 32],
        };
        m.validate().unwrap();
        assert_eq!(Manifest::decode_untrusted(&m.to_bytes()), Ok(m));
    }

    #[test]
    fn length_change_during_hashing_is_caught() {
        let mut b =
            ManifestBuilder::new("f".into(), MIN_CHUNK_SIZE, Layout::File { length: 10 }).unwrap();
        b.update(b"short");
        assert!(matches!(b.finish(), Err(BuildError::LengthMismatch { .. })));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Manifest::decode_untrusted(&bytes);
        }

        /// Whatever a mutation yields, an accepted manifest re-encodes to exactly the
        /// accepted bytes, so they are what we serve.
        #[test]
        fn accepted_bytes_are_canonical(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4), extra in proptest::collection::vec(any::<u8>(), 0..8)) {
            let (m, _) = build(Layout::File { length: 70_000 }, &[5u8; 70_000], MIN_CHUNK_SIZE);
            let mut bytes = m.to_bytes();
            for (at, val) in edits {
                let i = at.index(bytes.len());
                bytes[i] = val;
            }
            bytes.extend_from_slice(&extra);
            if let Ok(decoded) = Manifest::decode_untrusted(&bytes) {
                prop_assert_eq!(decoded.to_bytes(), bytes);
            }
        }

        #[test]
        fn encode_decode_round_trip(len in 0u64..1_000_000, name in "[a-z]{1,12}") {
            let m = Manifest { version: 1, name, chunk_size: MIN_CHUNK_SIZE, layout: Layout::File { length: len }, root: [3; 32] };
            prop_assert_eq!(Manifest::from_bytes_for(&m.id(), &m.to_bytes()), Ok(m));
        }
    }
}
