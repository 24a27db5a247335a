//! The event loop's settings.

use std::time::Duration;

use libp2p::Multiaddr;
use protocol::transfer::TransferConfig;

/// How a node's event loop behaves.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Bootstrap peers to dial on start.
    pub bootstrap: Vec<Multiaddr>,
    /// Per-content transfer tunables.
    pub transfer: TransferConfig,
    /// Give up finding providers for a `get` after this long.
    pub find_timeout: Duration,
    /// Treat our listen addresses as reachable (LANs, loopback testnets).
    pub listen_addrs_are_external: bool,
    /// Target number of peers per content before peer exchange stops asking.
    pub wanted_peers: usize,
    /// Save resume state at most this often.
    pub save_interval: Duration,
    /// Most uploads (chunks and manifests) queued for a slot; beyond it
    /// requests are answered "choked".
    pub max_queued_uploads: usize,
    /// Most uploads queued for one peer (a little over a pipeline's depth).
    pub max_queued_uploads_per_peer: usize,
    /// Most upload bytes being read or sent at once (queued uploads are served
    /// neediest peer first, equals taking turns).
    pub max_active_upload_bytes: u64,
    /// Most upload bytes being read or sent to one peer at once, so a few
    /// peers that stop reading cannot hold the whole budget.
    pub max_active_upload_bytes_per_peer: u64,
    /// A peer with fewer uploads under way may start one whatever its bytes,
    /// so reading the next chunk overlaps sending this one.
    pub min_active_uploads_per_peer: usize,
    /// A peer that stalls an upload is choked for this long.
    pub stall_penalty: Duration,
    /// After this many strikes (stalled uploads, requests stuck mid-frame,
    /// oversize or malformed frames) a peer is disconnected and refused for `strike_block`.
    pub max_strikes: u32,
    /// How long a peer that kept misbehaving is refused.
    pub strike_block: Duration,
    /// Most peers remembered as banned (the oldest are forgotten first).
    pub max_banned_peers: usize,
    /// Most peers whose listen addresses we keep for peer exchange.
    pub max_known_peer_addrs: usize,
    /// Most providers remembered per content.
    pub max_providers_per_content: usize,
    /// Most peers asked for a manifest at once while searching.
    pub max_manifest_asks: usize,
    /// Asks (manifest, chunk, peer exchange) unanswered this long are given up.
    pub ask_timeout: Duration,
    /// A session stream with nothing pending and no traffic for this long is closed.
    pub session_idle: Duration,
    /// NAT traversal: relays to use, external addresses (see [`super::nat`]).
    pub nat: super::nat::NatConfig,
    /// Fault injection for tests: flip a bit in every chunk we upload, so
    /// peers' verification and banning can be exercised. Never set it otherwise.
    #[doc(hidden)]
    pub corrupt_uploads: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            bootstrap: Vec::new(),
            transfer: TransferConfig::default(),
            find_timeout: Duration::from_secs(60),
            listen_addrs_are_external: true,
            wanted_peers: 40,
            save_interval: Duration::from_secs(1),
            max_queued_uploads: 4096,
            max_queued_uploads_per_peer: 64,
            max_active_upload_bytes: 32 << 20,
            max_active_upload_bytes_per_peer: 1 << 20,
            min_active_uploads_per_peer: 2,
            stall_penalty: Duration::from_secs(30),
            max_strikes: 3,
            strike_block: Duration::from_secs(60),
            max_banned_peers: 10_000,
            max_known_peer_addrs: 10_000,
            max_providers_per_content: 1000,
            max_manifest_asks: 8,
            // No longer than the transfer waits for a chunk: an ask the transfer
            // gave up on but the session still awaited would block asking that
            // peer again, and its late failure would cancel the newer request.
            ask_timeout: TransferConfig::default().request_timeout,
            session_idle: Duration::from_secs(30),
            nat: super::nat::NatConfig::default(),
            corrupt_uploads: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_expire_no_later_than_the_transfer_gives_up_on_a_chunk() {
        // Otherwise a stale ask's failure releases the newer request for the
        // same chunk, and asking again earns a strike from an honest seeder.
        let c = EngineConfig::default();
        assert!(c.ask_timeout <= c.transfer.request_timeout);
    }
}
