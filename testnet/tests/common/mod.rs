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

/// Asserts every one of `leechers` copies was verified and hashes to `source_sha256`.
pub fn assert_copies_match(report: &testnet::report::Report, leechers: usize, source_sha256: &str) {
    assert_eq!(report.mismatches(), 0, "{}", report.render());
    let copies: Vec<_> = report
        .nodes
        .iter()
        .filter_map(|n| n.sha256.as_ref())
        .collect();
    assert_eq!(copies.len(), leechers);
    assert!(copies.iter().all(|h| *h == source_sha256));
}

/// True when a root-only test may go on; false (after saying why) when it
/// must skip. Under `CI=true` CI runs as root, so a skip would hide a broken
/// setup: it panics instead.
pub fn root_or_skip(test: &str, needs: &str) -> bool {
    if testnet::netns::is_root() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: CI=true but not running as root; root tests must run in CI");
    }
    eprintln!("skipping {test}: it needs root ({needs})");
    false
}

/// Namespaces named with `prefix` that still exist.
pub fn namespaces_left(prefix: &str) -> Vec<String> {
    testnet::netns::list_namespaces()
        .expect("ip netns list")
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
}
