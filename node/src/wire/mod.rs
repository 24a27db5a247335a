//! The session wire (`/kadswarm/session/2`): one long-lived stream per peer
//! and direction, framed CBOR messages, the caps a peer's frames must fit,
//! and byte counters by kind.

pub mod frames;
pub mod streams;
mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use libp2p::{PeerId, StreamProtocol};
use protocol::merkle::{HASH_LEN, MAX_DEPTH};
use protocol::wire::{
    Answer, Message, MAX_BITFIELD_BYTES, MAX_MESSAGE_BYTES, MESSAGE_OVERHEAD_BYTES,
};

/// The protocol name as libp2p wants it.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new(protocol::wire::PROTOCOL_NAME);

/// Frame caps for what peers send us, shared by the event loop and the stream tasks.
#[derive(Debug)]
pub struct WireLimits {
    /// Largest frame from any peer: room for a message plus the largest
    /// bitfield, or chunk and proof, of the contents we hold. Raised as
    /// contents are added, never lowered.
    max_frame: AtomicUsize,
    /// Peers we await a manifest from, and how many asks: only their frames
    /// may be manifest-sized.
    manifest_from: Mutex<HashMap<PeerId, u32>>,
    /// A frame that moves no byte for this long is dropped (a reader that
    /// stopped reading, or a writer stuck mid-frame).
    pub stall_timeout: Duration,
}

impl WireLimits {
    /// Limits for a node holding no content yet.
    pub fn new(stall_timeout: Duration) -> Self {
        Self {
            max_frame: AtomicUsize::new(MESSAGE_OVERHEAD_BYTES),
            manifest_from: Mutex::new(HashMap::new()),
            stall_timeout,
        }
    }

    /// Accept frames a content of `chunks` chunks of `chunk_size` bytes needs.
    pub fn allow_content(&self, chunks: u32, chunk_size: u32) {
        let bitfield = (chunks as usize).div_ceil(8).min(MAX_BITFIELD_BYTES);
        let chunk = chunk_size as usize + MAX_DEPTH * HASH_LEN;
        let need = MESSAGE_OVERHEAD_BYTES + bitfield.max(chunk);
        self.max_frame
            .fetch_max(need.min(MAX_MESSAGE_BYTES), Ordering::Relaxed);
    }

    /// We asked `peer` for a manifest: its frames may be manifest-sized until answered.
    pub fn expect_manifest(&self, peer: PeerId) {
        if let Ok(mut m) = self.manifest_from.lock() {
            *m.entry(peer).or_default() += 1;
        }
    }

    /// One manifest ask to `peer` ended (answered, failed or timed out).
    pub fn manifest_done(&self, peer: &PeerId) {
        if let Ok(mut m) = self.manifest_from.lock() {
            if let Some(n) = m.get_mut(peer) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(peer);
                }
            }
        }
    }

    /// The largest frame `peer` may send us now.
    pub fn max_frame_from(&self, peer: &PeerId) -> usize {
        let awaiting = self
            .manifest_from
            .lock()
            .map(|m| m.contains_key(peer))
            .unwrap_or(false);
        if awaiting {
            MAX_MESSAGE_BYTES
        } else {
            self.max_frame.load(Ordering::Relaxed)
        }
    }
}

/// Bytes by kind in one direction.
#[derive(Debug, Default)]
pub struct WireBytes {
    /// Chunk data.
    pub payload: AtomicU64,
    /// Merkle proofs carried with chunks.
    pub proofs: AtomicU64,
    /// Every other message (haves, asks, manifests, peer lists, refusals).
    pub control: AtomicU64,
    /// Length prefixes and the CBOR around chunk data and proofs.
    pub framing: AtomicU64,
}

impl WireBytes {
    /// Counts one frame whose body is `len` bytes.
    pub fn count(&self, msg_len: usize, msg: &Message) {
        match msg {
            Message::Answer {
                answer: Answer::Chunk { data, proof, .. },
                ..
            } => self.count_chunk(msg_len, data.len(), proof.len()),
            _ => {
                self.control.fetch_add(msg_len as u64, Ordering::Relaxed);
                self.framing
                    .fetch_add(frames::PREFIX_LEN as u64, Ordering::Relaxed);
            }
        }
    }

    /// Counts a chunk answer of `msg_len` encoded bytes carrying `data` and `proof` bytes.
    pub fn count_chunk(&self, msg_len: usize, data: usize, proof: usize) {
        let framed = (msg_len + frames::PREFIX_LEN) as u64;
        let (d, p) = (data as u64, proof as u64);
        self.payload.fetch_add(d, Ordering::Relaxed);
        self.proofs.fetch_add(p, Ordering::Relaxed);
        self.framing
            .fetch_add(framed.saturating_sub(d + p), Ordering::Relaxed);
    }

    /// The four counts: payload, proofs, control, framing.
    pub fn snapshot(&self) -> [u64; 4] {
        [
            self.payload.load(Ordering::Relaxed),
            self.proofs.load(Ordering::Relaxed),
            self.control.load(Ordering::Relaxed),
            self.framing.load(Ordering::Relaxed),
        ]
    }
}

/// Byte counters shared with the node, for stats.
#[derive(Debug, Default)]
pub struct Counters {
    /// Chunk payload bytes sent.
    pub uploaded: AtomicU64,
    /// Chunk payload bytes received.
    pub downloaded: AtomicU64,
    /// Session bytes sent, by kind.
    pub sent: WireBytes,
    /// Session bytes received, by kind.
    pub received: WireBytes,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_cap_fits_the_largest_content_and_manifests_only_when_asked() {
        let limits = WireLimits::new(Duration::from_secs(10));
        let peer = PeerId::random();
        let other = PeerId::random();
        assert_eq!(limits.max_frame_from(&peer), MESSAGE_OVERHEAD_BYTES);
        limits.allow_content(64, 256 * 1024);
        let chunk_cap = MESSAGE_OVERHEAD_BYTES + 256 * 1024 + MAX_DEPTH * HASH_LEN;
        assert_eq!(limits.max_frame_from(&peer), chunk_cap);
        limits.allow_content(8, 1024);
        assert_eq!(limits.max_frame_from(&peer), chunk_cap, "never lowered");
        limits.expect_manifest(peer);
        limits.expect_manifest(peer);
        assert_eq!(limits.max_frame_from(&peer), MAX_MESSAGE_BYTES);
        assert_eq!(limits.max_frame_from(&other), chunk_cap);
        limits.manifest_done(&peer);
        assert_eq!(
            limits.max_frame_from(&peer),
            MAX_MESSAGE_BYTES,
            "one ask still open"
        );
        limits.manifest_done(&peer);
        assert_eq!(limits.max_frame_from(&peer), chunk_cap);
        limits.allow_content(u32::MAX, u32::MAX);
        assert_eq!(limits.max_frame_from(&peer), MAX_MESSAGE_BYTES);
    }
}
