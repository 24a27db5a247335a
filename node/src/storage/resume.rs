//! The resume state in a part folder: which chunks are verified on disk, and their tree nodes.
//!
//! Written to a temp file, synced, then renamed over the old state, so a
//! crash leaves either the old state or the new one; a failed write removes
//! its temp file. Read back bounded and fully checked: a missing, corrupt or
//! foreign state is ignored with a warning, never trusted.

use std::ffi::OsStr;
use std::fmt;
use std::io::{self, Read, Write};

use protocol::merkle::Hash;
use protocol::{Bitfield, ContentId, Manifest};
use serde::{Deserialize, Serialize};

use super::nofollow::{create_new_at, open_file_at, rename_at, sync_dir, unlink_at};
use super::part::Part;

/// Inside the part folder: which chunks are verified on disk.
pub const RESUME: &str = "resume.cbor";
/// Inside the part folder: the next resume state while it is written.
pub const RESUME_TMP: &str = "resume.cbor.tmp";
pub const RESUME_VERSION: u8 = 1;
/// Allowance over what the manifest needs before a resume file is rejected unread.
pub const RESUME_SLACK: u64 = 64 << 20;
/// One packed tree node: level (u8), position (u32 BE), hash.
pub const NODE_LEN: usize = 1 + 4 + 32;

/// The resume file's encoded form.
#[derive(Serialize, Deserialize)]
pub struct ResumeFile {
    pub version: u8,
    pub id: ContentId,
    #[serde(with = "serde_bytes")]
    pub have: Vec<u8>,
    /// Packed known tree nodes, `NODE_LEN` bytes each.
    #[serde(with = "serde_bytes")]
    pub nodes: Vec<u8>,
}

/// A resume state that decoded cleanly for this download (its chunks not yet re-checked).
pub struct Saved {
    pub have: Bitfield,
    pub nodes: Vec<(u8, u32, Hash)>,
}

/// Encodes the state for `id`.
pub fn encode(
    id: ContentId,
    have: &Bitfield,
    nodes: impl Iterator<Item = (u8, u32, Hash)>,
) -> io::Result<Vec<u8>> {
    let mut packed = Vec::new();
    for (level, pos, hash) in nodes {
        packed.push(level);
        packed.extend_from_slice(&pos.to_be_bytes());
        packed.extend_from_slice(&hash);
    }
    let record = ResumeFile {
        version: RESUME_VERSION,
        id,
        have: have.to_bytes(),
        nodes: packed,
    };
    cbor4ii::serde::to_vec(Vec::new(), &record)
        .map_err(|e| io::Error::other(format!("encoding resume state: {e}")))
}

/// Replaces the part folder's resume state with `bytes`: temp file, fsync, rename, fsync of the folder.
///
/// On any failure the temp file is removed, so a full disk leaves no stray
/// file behind, and the previous state stays as it was.
pub fn store(part: &Part, bytes: &[u8]) -> io::Result<()> {
    let dir = part.fd();
    let tmp = OsStr::new(RESUME_TMP);
    // A temp file left by a crash (or planted) is removed, never written through.
    unlink_at(dir, tmp)?;
    let write = || -> io::Result<()> {
        let mut f = create_new_at(dir, tmp, 0o600)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        rename_at(dir, tmp, dir, OsStr::new(RESUME))?;
        sync_dir(dir)
    };
    let result = write();
    if result.is_err() {
        if let Err(e) = unlink_at(dir, tmp) {
            tracing::warn!(path = %part.dir.join(RESUME_TMP).display(), error = %e, "could not remove a failed resume state");
        }
    }
    result
}

/// Loads the resume state for `id`, or None (with a warning) if it is missing, foreign or corrupt.
pub fn load(part: &Part, manifest: &Manifest, id: &ContentId) -> Option<Saved> {
    let path = part.dir.join(RESUME);
    let ignore = |why: &dyn fmt::Display| {
        tracing::warn!(path = %path.display(), "ignoring resume state ({why}); its chunks will be fetched again");
    };
    let file = match open_file_at(part.fd(), OsStr::new(RESUME), false) {
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
    decode(&bytes, count, id).map_err(|why| ignore(&why)).ok()
}

/// Decodes and checks a resume state for content `id` with `count` chunks.
fn decode(bytes: &[u8], count: u32, id: &ContentId) -> Result<Saved, String> {
    let record: ResumeFile =
        cbor4ii::serde::from_slice(bytes).map_err(|e| format!("not a valid resume file: {e}"))?;
    if record.version != RESUME_VERSION {
        return Err(format!("unknown version {}", record.version));
    }
    if record.id != *id {
        return Err(format!("it belongs to content {}", record.id));
    }
    let have = Bitfield::from_bytes(count, &record.have).map_err(|e| e.to_string())?;
    if !record.nodes.len().is_multiple_of(NODE_LEN) {
        return Err("tree nodes are truncated".into());
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
    Ok(Saved { have, nodes })
}
