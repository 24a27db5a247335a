//! `node share` run embedded: hash, print the ID, seed until interrupted.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

use super::net::{start, DhtRole, NetArgs};
use super::output::Output;
use super::serve::run_until_signal;

/// Hashes `path`, then seeds it from a node of its own until a signal.
/// `json`: events as JSON lines on stdout (see cli::output).
pub async fn share(
    path: PathBuf,
    chunk_size: String,
    net: NetArgs,
    json: bool,
) -> anyhow::Result<()> {
    let mut output = Output::new(json);
    let r = seed(path, chunk_size, net, &mut output).await;
    if let Err(e) = &r {
        output.failed(&format!("{e:#}"));
    }
    r
}

async fn seed(
    path: PathBuf,
    chunk_size: String,
    net: NetArgs,
    output: &mut Output,
) -> anyhow::Result<()> {
    let chunk_size = parse_chunk_size(&chunk_size)?;
    let path = path
        .canonicalize()
        .with_context(|| format!("cannot share {}: no such file or directory", path.display()))?;
    let started = Instant::now();
    let scan_path = path.clone();
    // The output moves to the hashing thread for its progress and comes back.
    let mut moved = std::mem::replace(output, Output::with_mode(output.mode()));
    let (scanned, moved) = tokio::task::spawn_blocking(move || {
        let r = node::scan::scan_share(&scan_path, chunk_size, &mut |done, total| {
            moved.hashing(done, total)
        });
        (r, moved)
    })
    .await
    .context("hashing task failed")?;
    *output = moved;
    let node::scan::Scanned {
        manifest,
        tree,
        files,
    } = scanned?;
    let id = manifest.id();
    output.hashed(
        &id.to_string(),
        &manifest.name,
        manifest.total_length(),
        manifest.chunk_count(),
        started.elapsed().as_secs_f64(),
    );
    // Served only while each file is the one just hashed (no link, no swap).
    let storage = node::storage::Storage::open_share(&manifest, &path, &files)?;
    let total = manifest.chunk_count();
    let client = start(&net, None, DhtRole::Server).await?;
    client.share(manifest, tree, storage).await?;
    output.seeding();
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
