//! Helpers shared by testnet's integration tests.

#![allow(dead_code)] // each test file uses its own subset

use std::path::PathBuf;

/// The kadswarm `node` binary, built (release, like these tests) if needed.
pub async fn node_bin() -> PathBuf {
    match testnet::nodebin::resolve(None).await {
        Ok(bin) => bin,
        Err(e) => panic!("cannot find or build the node binary: {e:#}"),
    }
}

/// A fresh run folder under the system temp dir, removed by the caller on success.
pub fn run_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "testnet-it-{label}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    testnet::rundir::create(Some(&dir), label).expect("run folder")
}

/// Whether process `pid` still runs (a zombie awaiting its reaper counts as gone).
pub fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .trim_start()
        .chars()
        .next();
    !matches!(state, None | Some('Z') | Some('X'))
}
