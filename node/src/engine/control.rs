//! Control commands a daemon needs beyond share and get: list the contents,
//! stop one, list the peers.

use libp2p::kad;
use protocol::ContentId;

use super::content::{Content, Phase};
use super::disk::save_off_loop;
use super::lifecycle::UNAVAILABLE_EXAMPLES;
use super::Engine;
use crate::client::{ContentState, ContentStatus, PeerStatus};

impl Engine {
    /// Every content the loop holds, sorted by ID.
    pub(super) fn content_statuses(&self) -> Vec<ContentStatus> {
        let mut out: Vec<ContentStatus> = self
            .contents
            .iter()
            .map(|(id, c)| status_of(*id, c))
            .collect();
        out.sort_by(|a, b| a.id.as_bytes().cmp(b.id.as_bytes()));
        out
    }

    /// Connected peers and the addresses we know for each.
    pub(super) fn peer_statuses(&self) -> Vec<PeerStatus> {
        let mut out: Vec<PeerStatus> = self
            .connected
            .iter()
            .map(|p| PeerStatus {
                peer: *p,
                addrs: self.peer_addrs.get(p).cloned().unwrap_or_default(),
                swarms: self
                    .contents
                    .values()
                    .filter(|c| match &c.phase {
                        Phase::Active(a) => a.transfer.peers().any(|q| q == *p),
                        _ => false,
                    })
                    .count(),
            })
            .collect();
        out.sort_by_key(|s| s.peer.to_bytes());
        out
    }

    /// Drops `id`: no more exchange or announcements; a partial download
    /// keeps its verified chunks for a later `get`. False if unknown.
    pub(super) fn stop_content(&mut self, id: ContentId) -> bool {
        let Some(mut c) = self.contents.remove(&id) else {
            return false;
        };
        c.end(Err(format!("{id}: stopped")));
        self.swarm
            .behaviour_mut()
            .kad
            .stop_providing(&kad::RecordKey::new(id.as_bytes()));
        if let Phase::Active(a) = c.phase {
            if !a.finished {
                save_off_loop(&self.io_tx, id, &a);
            }
            // Peers still sending haves for it are told `Unknown` and stop.
            for p in a.transfer.peers() {
                self.sessions.forget_told(&p, &id);
            }
        }
        self.provider_queries.retain(|_, c| *c != id);
        self.announce_queries.retain(|_, c| *c != id);
        true
    }
}

fn status_of(id: ContentId, c: &Content) -> ContentStatus {
    let mut s = ContentStatus {
        id,
        state: ContentState::Searching,
        name: None,
        have: 0,
        total: 0,
        bytes: 0,
        peers: c.providers.len(),
        availability: None,
        path: None,
    };
    match &c.phase {
        Phase::Searching { .. } => {}
        Phase::Opening { manifest } => {
            s.state = ContentState::Opening;
            s.name = Some(manifest.name.clone());
            s.total = manifest.chunk_count();
            s.bytes = manifest.total_length();
        }
        Phase::Active(a) => {
            let m = a.transfer.manifest();
            s.name = Some(m.name.clone());
            s.have = a.transfer.have().count_ones();
            s.total = a.transfer.have().len();
            s.bytes = m.total_length();
            s.peers = a.transfer.peer_count();
            s.availability = Some(a.transfer.availability(UNAVAILABLE_EXAMPLES));
            s.state = if !a.finished {
                ContentState::Fetching
            } else if c.waiters.is_empty() {
                ContentState::Seeding
            } else {
                ContentState::Finishing
            };
            if a.finished {
                s.path = a
                    .storage
                    .read()
                    .ok()
                    .map(|st| st.final_path().to_path_buf());
            }
        }
    }
    s
}
