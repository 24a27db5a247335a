//! Test content: files of pseudo-random bytes that are the same on every
//! machine for a given seed (SplitMix64), and SHA-256 of files on disk.
//!
//! These functions block (except `generate_source`, which moves the work to
//! a blocking thread); run them with `tokio::task::spawn_blocking`.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

const BLOCK: usize = 1 << 20;

/// SplitMix64: tiny, fast and fully specified, so a seed names the same bytes everywhere.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64-bit output.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Fills `buf` with the next bytes of the stream (little-endian words).
    /// `buf.len()` must be a multiple of 8 except for the last call.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut words = buf.chunks_exact_mut(8);
        for w in &mut words {
            w.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let tail = words.into_remainder();
        if !tail.is_empty() {
            let bytes = self.next_u64().to_le_bytes();
            tail.copy_from_slice(&bytes[..tail.len()]);
        }
    }
}

/// Generates the file a run shares, `<run>/source/<file_name>`, off the
/// async runtime; returns the `source` folder, the file and its SHA-256.
pub async fn generate_source(
    run: &Path,
    file_name: &str,
    size: u64,
    seed: u64,
) -> anyhow::Result<(PathBuf, PathBuf, String)> {
    let dir = run.join("source");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file = dir.join(file_name);
    eprintln!("testnet: generating {file_name} (seed {seed})");
    let path = file.clone();
    let sha256 = tokio::task::spawn_blocking(move || generate(&path, size, seed)).await??;
    Ok((dir, file, sha256))
}

/// Writes `size` pseudo-random bytes for `seed` to a new file at `path` and
/// returns their SHA-256 as lowercase hex.
pub fn generate(path: &Path, size: u64, seed: u64) -> anyhow::Result<String> {
    let file =
        File::create_new(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(BLOCK, file);
    let mut rng = SplitMix64::new(seed);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BLOCK];
    let mut left = size;
    while left > 0 {
        let n = left.min(BLOCK as u64) as usize;
        rng.fill(&mut buf[..n]);
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .with_context(|| format!("cannot write {}", path.display()))?;
        left -= n as u64;
    }
    let file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("cannot sync {}", path.display()))?;
    Ok(hex::encode(hasher.finalize().as_slice()))
}

/// SHA-256 of a file's contents as lowercase hex.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BLOCK];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize().as_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_stream() {
        // Reference values of SplitMix64 seeded with 0.
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn fill_is_a_prefix_of_the_stream() {
        let mut whole = [0u8; 24];
        SplitMix64::new(7).fill(&mut whole);
        let mut part = [0u8; 13];
        SplitMix64::new(7).fill(&mut part);
        assert_eq!(part[..], whole[..13]);
    }

    #[test]
    fn generated_file_hashes_to_what_generate_returned() {
        let dir = std::env::temp_dir().join(format!("testnet-datagen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("a.bin");
        let b = dir.join("b.bin");
        let size = BLOCK as u64 + 1001;
        let ha = generate(&a, size, 42).unwrap();
        assert_eq!(std::fs::metadata(&a).unwrap().len(), size);
        assert_eq!(sha256_file(&a).unwrap(), ha);
        assert_eq!(generate(&b, size, 42).unwrap(), ha, "same seed, same bytes");
        assert!(generate(&a, 1, 42).is_err(), "never overwrites");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
