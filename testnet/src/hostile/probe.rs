//! One honest question to a node over a fresh connection, for tests that
//! check what a node serves (e.g. that its manifest hashes to its ID).

use std::time::Duration;

use anyhow::Context;
use libp2p::Multiaddr;
use protocol::wire::{Request, Response};
use tokio::task::JoinSet;

use super::frame::ask;
use super::net::{self, CHUNKS};
use super::{check_loopback, peer_of};

/// Connects to `target` (127.0.0.1, with `/p2p/<id>`), sends `req` and returns the answer.
pub async fn ask_once(target: &Multiaddr, req: &Request) -> anyhow::Result<Response> {
    check_loopback(target, "target")?;
    let peer = peer_of(target)?;
    let mut tasks = JoinSet::new();
    let mut net = net::start(&mut tasks, vec![(peer, target.clone())], None).await?;
    let mut s = tokio::time::timeout(
        Duration::from_secs(10),
        net.control.open_stream(peer, CHUNKS),
    )
    .await
    .with_context(|| format!("{target} did not accept a stream within 10 s"))?
    .map_err(|e| anyhow::anyhow!("cannot open a stream to {target}: {e}"))?;
    let answer = ask(&mut s, req, Duration::from_secs(30))
        .await
        .with_context(|| format!("{target} did not answer {req:?}"))?;
    tasks.shutdown().await;
    Ok(answer)
}

/// SHA-256 of `bytes` as lowercase hex, the form content IDs are shown in.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes).as_slice())
}
