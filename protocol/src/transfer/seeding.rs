//! First copy first: a seed gets every distinct chunk into the swarm before it
//! sends any chunk twice.
//!
//! Leechers pick rarest first, but each sees the others' holdings late (have
//! messages are batched) and never sees their requests in flight, so several
//! ask a seed for the same chunk. A seed that serves them all spends its first
//! copy partly on chunks the swarm already has; if it then leaves, chunks it
//! never sent are lost to the swarm (measured: killed after 1.11 copies, four
//! leechers stalled at 469/512). BEP 16 super-seeding fixes this by revealing
//! chunks one peer at a time; on our request/response wire the same effect
//! comes from refusing: while some chunk is neither held by a connected peer
//! nor given to one, a seed answers a request for a chunk that is "don't
//! have", which makes the asker drop it from its picture of us and pick
//! another. Once every chunk is out, nothing is refused and the seed serves
//! duplicates as fast as peers want them (a fast seed in a small swarm should
//! upload several copies), and peers we refused hear our whole holdings again.
//!
//! Only a seed from the start holds back. A peer that completed a download
//! serves freely: complete peers send each other no haves, so its picture of
//! what is out is stale, and several such peers each refused a returning
//! leecher chunks they thought out, until it had none left to ask for
//! (`testnet/tests/churn.rs`). Whatever it holds, the swarm had already.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::Transfer;
use crate::bitfield::{Bitfield, ChunkIndex};

/// What a complete peer has given to whom since each peer connected.
pub(super) struct FirstCopy<P> {
    /// Per chunk: connected peers we promised or delivered it to.
    given: Vec<u32>,
    /// Per peer: the chunks counted in `given` for it.
    by_peer: BTreeMap<P, Bitfield>,
    /// Peers we refused a chunk: their picture of us is narrowed until our next have.
    refused: BTreeSet<P>,
    /// Every chunk was out at the last look; stays so until a peer is forgotten.
    all_out: bool,
    /// We were complete from the start: the only case the rule applies in.
    seed_from_start: bool,
}

impl<P: Copy + Ord> FirstCopy<P> {
    /// Nothing given yet, for content of `chunks` chunks; `seed_from_start`:
    /// we held every chunk before any peer came (otherwise nothing is refused).
    pub(super) fn new(chunks: u32, seed_from_start: bool) -> Self {
        Self {
            given: vec![0; chunks as usize],
            by_peer: BTreeMap::new(),
            refused: BTreeSet::new(),
            all_out: false,
            seed_from_start,
        }
    }

    /// We promised chunk `index` to `peer` (its upload was queued).
    pub(super) fn give(&mut self, peer: P, index: ChunkIndex) {
        let chunks = self.given.len() as u32;
        if index >= chunks {
            return;
        }
        let mine = self
            .by_peer
            .entry(peer)
            .or_insert_with(|| Bitfield::new(chunks));
        if mine.set(index) {
            self.given[index as usize] += 1;
        }
    }

    /// The promise of `index` to `peer` was not kept (its upload was dropped).
    pub(super) fn take_back(&mut self, peer: P, index: ChunkIndex) {
        let Some(mine) = self.by_peer.get_mut(&peer) else {
            return;
        };
        if mine.clear(index) {
            if let Some(count) = self.given.get_mut(index as usize) {
                *count = count.saturating_sub(1);
            }
            self.all_out = false;
        }
    }

    /// `peer` left, or its stream broke: what we gave it may be lost.
    pub(super) fn forget(&mut self, peer: &P) {
        self.refused.remove(peer);
        let Some(mine) = self.by_peer.remove(peer) else {
            return;
        };
        for i in mine.iter_ones() {
            if let Some(count) = self.given.get_mut(i as usize) {
                *count = count.saturating_sub(1);
            }
        }
        self.all_out = false;
    }

    /// Whether a request from `peer` (holding `peer_has`) for `index` should be
    /// refused because some chunk not yet out would serve the swarm better.
    ///
    /// `held` says how many connected peers hold a chunk by their own word. When
    /// this finds every chunk out, it returns the peers refused so far (they
    /// should hear our holdings again) in `lifted`.
    pub(super) fn hold_back(
        &mut self,
        peer: P,
        index: ChunkIndex,
        peer_has: &Bitfield,
        held: impl Fn(ChunkIndex) -> u32,
        lifted: &mut Vec<P>,
    ) -> bool {
        let n = self.given.len() as u32;
        let out = |i: ChunkIndex| self.given[i as usize] > 0 || held(i) > 0;
        if !self.seed_from_start || self.all_out || index >= n || !out(index) {
            return false;
        }
        // Start at the asked index so a scan in a mostly fresh swarm ends early.
        let mut any_fresh = false;
        for k in 0..n {
            let i = (index + k) % n;
            if out(i) {
                continue;
            }
            if !peer_has.get(i) {
                self.refused.insert(peer);
                return true;
            }
            any_fresh = true;
        }
        if !any_fresh {
            self.all_out = true;
            lifted.extend(std::mem::take(&mut self.refused));
        }
        false
    }
}

impl<P: Copy + Ord + std::hash::Hash + std::fmt::Debug> Transfer<P> {
    /// A complete peer's first-copy rule for `peer`'s request of `index`:
    /// true means answer "don't have" (see the module doc).
    pub(super) fn first_copy_refuses(&mut self, now: Instant, peer: P, index: ChunkIndex) -> bool {
        if !self.config.first_copy_first || !self.completed {
            return false;
        }
        let Some(p) = self.peers.get(&peer) else {
            return false;
        };
        let picker = &self.picker;
        let mut lifted = Vec::new();
        let refuse = self.first_copy.hold_back(
            peer,
            index,
            &p.have,
            |i| picker.availability(i),
            &mut lifted,
        );
        if !refuse {
            self.first_copy.give(peer, index);
        }
        if !lifted.is_empty() {
            for q in lifted {
                if let Some(p) = self.peers.get_mut(&q) {
                    p.next_have = now;
                }
            }
            self.have_due_by(now);
            self.queue_due_haves(now);
        }
        refuse
    }

    /// The upload of `index` we promised `peer` was dropped unsent (queue full,
    /// read error): the chunk is not out on its account.
    pub fn handle_upload_dropped(&mut self, peer: P, index: ChunkIndex) {
        self.first_copy.take_back(peer, index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by_none(_: ChunkIndex) -> u32 {
        0
    }

    #[test]
    fn refuses_a_given_chunk_while_fresh_ones_remain() {
        let mut f = FirstCopy::<u8>::new(4, true);
        let none = Bitfield::new(4);
        let mut lifted = Vec::new();
        assert!(!f.hold_back(1, 0, &none, held_by_none, &mut lifted));
        f.give(1, 0);
        assert!(f.hold_back(2, 0, &none, held_by_none, &mut lifted));
        // A chunk some peer holds by its own word counts as out too.
        assert!(f.hold_back(2, 3, &none, |i| u32::from(i == 3), &mut lifted));
        assert!(lifted.is_empty());
    }

    #[test]
    fn serves_duplicates_once_everything_is_out_and_lifts_refusals() {
        let mut f = FirstCopy::<u8>::new(3, true);
        let none = Bitfield::new(3);
        let mut lifted = Vec::new();
        f.give(1, 0);
        f.give(1, 1);
        assert!(f.hold_back(2, 0, &none, held_by_none, &mut lifted));
        f.give(2, 2);
        assert!(!f.hold_back(3, 0, &none, held_by_none, &mut lifted));
        assert_eq!(lifted, vec![2]);
    }

    #[test]
    fn a_peer_holding_every_fresh_chunk_is_served() {
        let mut f = FirstCopy::<u8>::new(3, true);
        f.give(1, 0);
        let mut has = Bitfield::new(3);
        has.set(1);
        has.set(2);
        let mut lifted = Vec::new();
        assert!(!f.hold_back(2, 0, &has, held_by_none, &mut lifted));
        assert!(lifted.is_empty(), "chunks 1 and 2 are still fresh");
    }

    #[test]
    fn forgetting_a_peer_makes_its_chunks_fresh_again() {
        let mut f = FirstCopy::<u8>::new(2, true);
        let none = Bitfield::new(2);
        let mut lifted = Vec::new();
        f.give(1, 0);
        f.give(1, 1);
        assert!(!f.hold_back(2, 0, &none, held_by_none, &mut lifted));
        f.forget(&1);
        f.give(2, 0);
        assert!(f.hold_back(3, 0, &none, held_by_none, &mut lifted));
        f.take_back(2, 0);
        assert!(!f.hold_back(3, 0, &none, held_by_none, &mut lifted));
    }

    #[test]
    fn a_peer_that_completed_a_download_never_holds_back() {
        // Its picture of the swarm is stale (complete peers exchange no haves).
        let mut f = FirstCopy::<u8>::new(3, false);
        let none = Bitfield::new(3);
        let mut lifted = Vec::new();
        f.give(1, 0);
        assert!(!f.hold_back(2, 0, &none, held_by_none, &mut lifted));
        assert!(!f.hold_back(2, 1, &none, |_| 5, &mut lifted));
    }

    #[test]
    fn out_of_range_indices_are_ignored() {
        let mut f = FirstCopy::<u8>::new(2, true);
        f.give(1, 7);
        f.take_back(1, 9);
        let mut lifted = Vec::new();
        assert!(!f.hold_back(1, 5, &Bitfield::new(2), held_by_none, &mut lifted));
        assert!(!f.hold_back(2, 0, &Bitfield::new(2), held_by_none, &mut lifted));
    }
}
