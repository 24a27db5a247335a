//! Finding a victim's full address: `node share` prints only the content ID,
//! so it is started on a port we picked and its peer ID is read back from
//! its stats file.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

use crate::stats::NodeStats;

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it).
pub fn free_loopback_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .context("cannot bind a probe socket on 127.0.0.1")?;
    Ok(l.local_addr()?.port())
}

/// `--listen` value for a node on 127.0.0.1 at `port`.
pub fn listen_arg(port: u16) -> String {
    format!("/ip4/127.0.0.1/tcp/{port}")
}

/// Waits until the node writing `stats` has written its peer ID, and returns it.
pub async fn peer_id_from_stats(stats: &Path, timeout: Duration) -> anyhow::Result<PeerId> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(stats) {
            if let Ok(s) = NodeStats::parse(&text) {
                return s.peer_id.parse().with_context(|| {
                    format!(
                        "{} holds an invalid peer ID {:?}",
                        stats.display(),
                        s.peer_id
                    )
                });
            }
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "no peer ID in {} after {timeout:?}; is the node running with --stats-file?",
                stats.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The full address of a node listening on 127.0.0.1 at `port` as `peer`.
pub fn addr(port: u16, peer: PeerId) -> Multiaddr {
    Multiaddr::empty()
        .with(Protocol::Ip4(Ipv4Addr::LOCALHOST))
        .with(Protocol::Tcp(port))
        .with(Protocol::P2p(peer))
}
