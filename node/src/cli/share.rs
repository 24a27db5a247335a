//! `node share` run embedded: hash, print the ID, seed until interrupted.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::human::human;
use super::net::{start, NetArgs};
use super::serve::run_until_signal;

/// Hashes `path`, then seeds it from a node of its own until a signal.
pub async fn share(path: PathBuf, chunk_size: String, net: NetArgs) -> anyhow::Result<()> {
    let chunk_size = parse_chunk_size(&chunk_size)?;
    let path = path
        .canonicalize()
        .with_context(|| format!("cannot share {}: no such file or directory", path.display()))?;
    let started = Instant::now();
    let scan_path = path.clone();
    let scanned = tokio::task::spawn_blocking(move || {
        let mut last = Instant::now();
        node::scan::scan_share(&scan_path, chunk_size, &mut |done, total| {
            if last.elapsed() > Duration::from_millis(500) {
                last = Instant::now();
                eprintln!("hashing: {} / {}", human(done), human(total));
            }
        })
    })
    .await
    .context("hashing task failed")??;
    let node::scan::Scanned {
        manifest,
        tree,
        files,
    } = scanned;
    let id = manifest.id();
    println!("{id}");
    let _ = std::io::stdout().flush();
    eprintln!(
        "hashed {} ({} in {} chunks) in {:.1}s; link: {}",
        manifest.name,
        human(manifest.total_length()),
        manifest.chunk_count(),
        started.elapsed().as_secs_f64(),
        id.to_link()
    );
    // Served only while each file is the one just hashed (no link, no swap).
    let storage = node::storage::Storage::open_share(&manifest, &path, &files)?;
    let total = manifest.chunk_count();
    let client = start(&net, None).await?;
    client.share(manifest, tree, storage).await?;
    run_until_signal(&client, &net, Some((total, total))).await
}

/// `auto` → None (chosen from the content's size), else the size in bytes.
pub fn parse_chunk_size(s: &str) -> anyhow::Result<Option<u32>> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    let bytes =
        node::units::parse_size(s).map_err(|e| anyhow::anyhow!("invalid chunk size: {e}"))?;
    anyhow::ensure!(
        bytes > 0,
        "invalid chunk size: give a size such as 256KiB, or auto"
    );
    u32::try_from(bytes)
        .map(Some)
        .context("chunk size too large")
}
