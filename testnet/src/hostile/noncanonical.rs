//! Content under a manifest whose bytes are valid but not canonical: the
//! manifest a node builds, re-encoded with an extra map field (or a
//! non-minimal integer). Its content ID is the SHA-256 of those exact bytes,
//! so a node that checks only the hash accepts it, then serves its own
//! re-encoding, which hashes to something else.

use std::path::Path;

use anyhow::{bail, Context};
use protocol::manifest::{auto_chunk_size, Layout, ManifestBuilder};
use protocol::merkle::MerkleTree;
use protocol::{ContentId, Manifest};
use sha2::{Digest, Sha256};

/// Largest file [`Share::from_file`] loads (it is held in memory).
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// How the canonical bytes are bent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Not at all: the manifest a node builds (for wrong-chunks, which lies in chunks only).
    Canonical,
    /// One more map entry, `"x-hostile": 1`, which a lenient decoder skips.
    ExtraField,
    /// `version` written as a two-byte integer (`0x18 0x01`) instead of one byte.
    LongInteger,
}

/// A file shared under a manifest encoding of our choice, ready to serve.
pub struct Share {
    /// The manifest the bytes decode to.
    pub manifest: Manifest,
    /// The non-canonical encoding served as the manifest.
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`.
    pub id: ContentId,
    tree: MerkleTree,
    data: Vec<u8>,
}

impl Share {
    /// Loads `path` and builds its non-canonical share ([`Variant::ExtraField`]).
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        Self::from_file_with(path, Variant::ExtraField)
    }

    /// Loads `path` and builds its non-canonical share in `variant`.
    pub fn from_file_with(path: &Path, variant: Variant) -> anyhow::Result<Self> {
        let len = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        if len > MAX_FILE_BYTES {
            bail!(
                "{} is {len} bytes; the hostile peer holds what it shares in memory, so at most {MAX_FILE_BYTES}",
                path.display()
            );
        }
        let data =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no UTF-8 file name", path.display()))?
            .to_string();
        let mut builder = ManifestBuilder::new(
            name,
            auto_chunk_size(data.len() as u64),
            Layout::File {
                length: data.len() as u64,
            },
        )?;
        builder.update(&data);
        let (manifest, tree) = builder
            .finish()
            .map_err(|e| anyhow::anyhow!("cannot build the manifest: {e:?}"))?;
        let bytes = bend(&manifest.to_bytes(), variant)?;
        let id = ContentId::from_bytes(Sha256::digest(&bytes).into());
        Ok(Self {
            manifest,
            bytes,
            id,
            tree,
            data,
        })
    }

    /// Chunk `index` and its proof, as a seeder serves them.
    pub fn chunk(&self, index: u32) -> Option<(Vec<u8>, Vec<u8>)> {
        let range = self.manifest.chunk_range(index);
        let data = self
            .data
            .get(range.start as usize..range.end as usize)?
            .to_vec();
        let proof = self.tree.proof(index)?.to_bytes();
        Some((data, proof))
    }
}

/// The canonical encoding `canonical` made non-canonical in `variant`.
pub fn bend(canonical: &[u8], variant: Variant) -> anyhow::Result<Vec<u8>> {
    match variant {
        Variant::Canonical => Ok(canonical.to_vec()),
        Variant::ExtraField => {
            // Manifest is a map of 5 entries: header 0xa5. Make it 6 and append one.
            let Some((&0xa5, rest)) = canonical.split_first() else {
                bail!("the manifest encoding does not start with a 5-entry map header");
            };
            let mut out = vec![0xa6];
            out.extend_from_slice(rest);
            out.push(0x69); // text string of 9 bytes
            out.extend_from_slice(b"x-hostile");
            out.push(0x01);
            Ok(out)
        }
        Variant::LongInteger => {
            let key = b"\x67version\x01";
            let at = canonical
                .windows(key.len())
                .position(|w| w == key)
                .context("the manifest encoding has no `version: 1` entry")?;
            let mut out = canonical[..at + key.len() - 1].to_vec();
            out.extend_from_slice(&[0x18, 0x01]);
            out.extend_from_slice(&canonical[at + key.len()..]);
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bent_bytes_name_other_content_than_the_canonical_ones() {
        let dir = std::env::temp_dir().join(format!("hostile-noncanon-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f.bin");
        crate::datagen::generate(&file, 100_000, 9).unwrap();
        for variant in [Variant::ExtraField, Variant::LongInteger] {
            let share = Share::from_file_with(&file, variant).unwrap();
            let canonical = share.manifest.to_bytes();
            assert_ne!(share.bytes, canonical);
            assert_ne!(share.id, share.manifest.id());
            let grown = match variant {
                Variant::ExtraField => 11,
                Variant::LongInteger | Variant::Canonical => 1,
            };
            assert_eq!(share.bytes.len(), canonical.len() + grown);
            let (data, proof) = share.chunk(0).unwrap();
            assert_eq!(data.len(), share.manifest.chunk_len(0) as usize);
            assert!(!proof.is_empty() || share.manifest.chunk_count() == 1);
        }
        let honest = Share::from_file_with(&file, Variant::Canonical).unwrap();
        assert_eq!(honest.id, honest.manifest.id());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
