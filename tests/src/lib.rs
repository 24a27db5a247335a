//! Shared helpers for the workspace integration tests: content generation,
//! hashing, and locating (building if needed) the `node` binary.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let data = std::fs::read(path)?;
    Ok(hex::encode(Sha256::digest(&data)))
}

/// Path of the `node` binary of this workspace, built once with the same profile as the tests.
///
/// Never `node` from PATH: on these machines that is Node.js.
pub fn node_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let release = !cfg!(debug_assertions);
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.current_dir(&root)
            .args(["build", "-p", "node", "--bin", "node"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .expect("cannot run cargo to build the node binary");
        assert!(status.success(), "building the node binary failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let bin = target
            .join(if release { "release" } else { "debug" })
            .join("node");
        assert!(bin.exists(), "node binary not found at {}", bin.display());
        bin
    })
    .clone()
}
