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

use std::collections::BTreeMap;
use std::time::Instant;

use super::{mark_urgent, Transfer};
use crate::bitfield::{Bitfield, ChunkIndex};

/// What a complete peer has given to whom since each peer connected.
pub(super) struct FirstCopy<P> {
    /// Per chunk: connected peers we promised or sent it to.
    given: Vec<u32>,
    /// Per chunk: connected peers we finished sending it to.
    sent: Vec<u32>,
    /// Per peer: the chunks counted in `given` and in `sent` for it.
    by_peer: BTreeMap<P, Gifts>,
    /// Peers we refused a chunk, and when last: their picture of us is
    /// narrowed until our next have.
    refused: BTreeMap<P, Instant>,
    /// Every chunk was out at the last look; stays so until a peer is forgotten.
    all_out: bool,
    /// Every chunk below this one was sent or held at the last look.
    landed_below: u32,
    /// We were complete from the start: the only case the rule applies in.
    seed_from_start: bool,
}

/// The chunks promised and sent to one peer.
struct Gifts {
    given: Bitfield,
    sent: Bitfield,
}

impl<P: Copy + Ord> FirstCopy<P> {
    /// Nothing given yet, for content of `chunks` chunks; `seed_from_start`:
    /// we held every chunk before any peer came (otherwise nothing is refused).
    pub(super) fn new(chunks: u32, seed_from_start: bool) -> Self {
        Self {
            given: vec![0; chunks as usize],
            sent: vec![0; chunks as usize],
            by_peer: BTreeMap::new(),
            refused: BTreeMap::new(),
            all_out: false,
            landed_below: 0,
            seed_from_start,
        }
    }

    fn gifts(&mut self, peer: P) -> &mut Gifts {
        let chunks = self.given.len() as u32;
        self.by_peer.entry(peer).or_insert_with(|| Gifts {
            given: Bitfield::new(chunks),
            sent: Bitfield::new(chunks),
        })
    }

    /// We promised chunk `index` to `peer` (its upload was queued).
    pub(super) fn give(&mut self, peer: P, index: ChunkIndex) {
        if index as usize >= self.given.len() {
            return;
        }
        if self.gifts(peer).given.set(index) {
            self.given[index as usize] += 1;
        }
    }

    /// Chunk `index` was written out to `peer`; true if it had reached nobody connected before.
    fn sent(&mut self, peer: P, index: ChunkIndex) -> bool {
        if index as usize >= self.sent.len() {
            return false;
        }
        self.give(peer, index);
        if !self.gifts(peer).sent.set(index) {
            return false;
        }
        self.sent[index as usize] += 1;
        self.sent[index as usize] == 1
    }

    /// The promise of `index` to `peer` was not kept (its upload was dropped).
    pub(super) fn take_back(&mut self, peer: P, index: ChunkIndex) {
        let Some(g) = self.by_peer.get_mut(&peer) else {
            return;
        };
        if g.sent.get(index) || !g.given.clear(index) {
            return;
        }
        if let Some(count) = self.given.get_mut(index as usize) {
            *count = count.saturating_sub(1);
        }
        self.all_out = false;
    }

    /// `peer`'s queued uploads were dropped: what was promised and not sent is not out.
    pub(super) fn take_back_unsent(&mut self, peer: &P) {
        let Some(g) = self.by_peer.get(peer) else {
            return;
        };
        let unsent: Vec<ChunkIndex> = g.given.iter_ones().filter(|&i| !g.sent.get(i)).collect();
        for i in unsent {
            self.take_back(*peer, i);
        }
    }

    /// `peer` left, or its stream broke: what we gave it may be lost.
    pub(super) fn forget(&mut self, peer: &P) {
        self.refused.remove(peer);
        let Some(g) = self.by_peer.remove(peer) else {
            return;
        };
        for i in g.given.iter_ones() {
            if let Some(count) = self.given.get_mut(i as usize) {
                *count = count.saturating_sub(1);
            }
        }
        for i in g.sent.iter_ones() {
            if let Some(count) = self.sent.get_mut(i as usize) {
                *count = count.saturating_sub(1);
            }
        }
        self.all_out = false;
        self.landed_below = 0;
    }

    /// Whether every chunk has been sent to or is held by a connected peer
    /// (amortized: resumes where the last look stopped).
    fn all_landed(&mut self, held: impl Fn(ChunkIndex) -> u32) -> bool {
        let n = self.sent.len() as u32;
        while self.landed_below < n {
            let i = self.landed_below;
            if self.sent[i as usize] == 0 && held(i) == 0 {
                return false;
            }
            self.landed_below += 1;
        }
        true
    }

    /// Chunk `index` was written out to `peer`. If that was the last chunk the
    /// swarm lacked, nothing is refused any more, and the peers refused so far
    /// are returned with when each was last refused.
    pub(super) fn delivered(
        &mut self,
        peer: P,
        index: ChunkIndex,
        held: impl Fn(ChunkIndex) -> u32,
    ) -> Vec<(P, Instant)> {
        let first = self.sent(peer, index);
        if !first || self.all_out || self.refused.is_empty() || !self.all_landed(held) {
            return Vec::new();
        }
        self.all_out = true;
        std::mem::take(&mut self.refused).into_iter().collect()
    }

    /// Whether a request from `peer` (holding `peer_has`) for `index` should be
    /// refused because the swarm lacks some chunk more than it lacks this one.
    ///
    /// A chunk already out is refused while some chunk is neither promised nor
    /// held (the asker lacks it: it should ask for that one), and while some
    /// promised chunk has not been sent yet (a duplicate queued now could go out
    /// before it). `held` says how many connected peers hold a chunk by their
    /// own word. When every chunk has landed, the peers refused so far are
    /// returned in `lifted` (they should hear our holdings again).
    pub(super) fn hold_back(
        &mut self,
        now: Instant,
        peer: P,
        index: ChunkIndex,
        peer_has: &Bitfield,
        held: impl Fn(ChunkIndex) -> u32,
        lifted: &mut Vec<P>,
    ) -> bool {
        let n = self.given.len() as u32;
        if !self.seed_from_start || self.all_out || index >= n {
            return false;
        }
        let fresh_for_asker = {
            let given = &self.given;
            let out = |i: ChunkIndex| given[i as usize] > 0 || held(i) > 0;
            if !out(index) {
                return false;
            }
            // Start at the asked index so a scan in a mostly fresh swarm ends early.
            (0..n)
                .map(|k| (index + k) % n)
                .any(|i| !out(i) && !peer_has.get(i))
        };
        if fresh_for_asker || !self.all_landed(&held) {
            self.refused.insert(peer, now);
            return true;
        }
        let any_fresh = (0..n).any(|i| self.given[i as usize] == 0 && held(i) == 0);
        if !any_fresh {
            self.all_out = true;
            lifted.extend(std::mem::take(&mut self.refused).into_keys());
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
            now,
            peer,
            index,
            &p.have,
            |i| picker.availability(i),
            &mut lifted,
        );
        if !refuse {
            self.first_copy.give(peer, index);
        }
        self.first_copy_lifted(now, lifted);
        refuse
    }

    /// Peers we refused may ask for anything again: tell them our holdings now.
    fn first_copy_lifted(&mut self, now: Instant, lifted: Vec<P>) {
        if lifted.is_empty() {
            return;
        }
        for q in lifted {
            if let Some(p) = self.peers.get_mut(&q) {
                mark_urgent(&mut self.urgent_haves, q, p, now);
            }
        }
        self.queue_due_haves(now);
    }

    /// Bookkeeping for [`Transfer::handle_chunk_delivered`]: when this was the
    /// last chunk a seed still owed the swarm, peers it refused hear at once
    /// (their next have falls due at their last refusal, so the driver's timer
    /// fires now) that it serves everything again.
    pub(super) fn first_copy_delivered(&mut self, peer: P, index: ChunkIndex) {
        let picker = &self.picker;
        let lifted = self
            .first_copy
            .delivered(peer, index, |i| picker.availability(i));
        for (q, at) in lifted {
            if let Some(p) = self.peers.get_mut(&q) {
                p.next_have = p.next_have.min(at);
                self.have_due_by(at);
            }
        }
    }

    /// The upload of `index` we promised `peer` was dropped unsent (queue full,
    /// read error): the chunk is not out on its account.
    pub fn handle_upload_dropped(&mut self, peer: P, index: ChunkIndex) {
        self.first_copy.take_back(peer, index);
    }

    /// Every upload queued for `peer` was dropped unsent (it stopped reading).
    pub fn handle_uploads_dropped(&mut self, peer: P) {
        self.first_copy.take_back_unsent(&peer);
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
        let t0 = Instant::now();
        assert!(!f.hold_back(t0, 1, 0, &none, held_by_none, &mut lifted));
        f.give(1, 0);
        assert!(f.hold_back(t0, 2, 0, &none, held_by_none, &mut lifted));
        // A chunk some peer holds by its own word counts as out too.
        assert!(f.hold_back(t0, 2, 3, &none, |i| u32::from(i == 3), &mut lifted));
        assert!(lifted.is_empty());
    }

    #[test]
    fn serves_duplicates_once_everything_is_out_and_lifts_refusals() {
        let mut f = FirstCopy::<u8>::new(3, true);
        let none = Bitfield::new(3);
        let mut lifted = Vec::new();
        let t0 = Instant::now();
        f.give(1, 0);
        f.give(1, 1);
        assert!(f.hold_back(t0, 2, 0, &none, held_by_none, &mut lifted));
        f.give(2, 2);
        // Every chunk promised, but chunk 2 not yet sent: a duplicate queued now could overtake it.
        assert!(f.hold_back(t0, 3, 0, &none, held_by_none, &mut lifted));
        assert!(f.delivered(1, 0, held_by_none).is_empty());
        assert!(f.delivered(1, 1, held_by_none).is_empty());
        let lifted_at = f.delivered(2, 2, held_by_none);
        assert_eq!(lifted_at, vec![(2, t0), (3, t0)], "the last chunk landed");
        assert!(!f.hold_back(t0, 3, 0, &none, held_by_none, &mut lifted));
        assert!(lifted.is_empty(), "already lifted");
    }

    #[test]
    fn a_peer_holding_every_other_chunk_gets_a_landed_one_again() {
        // Chunk 0 reached peer 1; the asker, peer 2, holds chunks 1 and 2.
        let mut f = FirstCopy::<u8>::new(3, true);
        f.delivered(1, 0, held_by_none);
        let mut has = Bitfield::new(3);
        has.set(1);
        has.set(2);
        let held = |i: ChunkIndex| u32::from(i > 0);
        let mut lifted = Vec::new();
        let t0 = Instant::now();
        assert!(!f.hold_back(t0, 2, 0, &has, held, &mut lifted));
        // While chunk 0 is only promised, a duplicate could overtake it: refused.
        let mut g = FirstCopy::<u8>::new(3, true);
        g.give(1, 0);
        assert!(g.hold_back(t0, 2, 0, &has, held, &mut lifted));
    }

    #[test]
    fn forgetting_a_peer_makes_its_chunks_fresh_again() {
        let mut f = FirstCopy::<u8>::new(2, true);
        let none = Bitfield::new(2);
        let mut lifted = Vec::new();
        let t0 = Instant::now();
        f.delivered(1, 0, held_by_none);
        f.delivered(1, 1, held_by_none);
        assert!(!f.hold_back(t0, 2, 0, &none, held_by_none, &mut lifted));
        f.forget(&1);
        f.give(2, 0);
        assert!(f.hold_back(t0, 3, 0, &none, held_by_none, &mut lifted));
        f.take_back(2, 0);
        assert!(!f.hold_back(t0, 3, 0, &none, held_by_none, &mut lifted));
    }

    #[test]
    fn a_peer_that_completed_a_download_never_holds_back() {
        // Its picture of the swarm is stale (complete peers exchange no haves).
        let mut f = FirstCopy::<u8>::new(3, false);
        let none = Bitfield::new(3);
        let mut lifted = Vec::new();
        let t0 = Instant::now();
        f.give(1, 0);
        assert!(!f.hold_back(t0, 2, 0, &none, held_by_none, &mut lifted));
        assert!(!f.hold_back(t0, 2, 1, &none, |_| 5, &mut lifted));
    }

    #[test]
    fn out_of_range_indices_are_ignored() {
        let mut f = FirstCopy::<u8>::new(2, true);
        f.give(1, 7);
        f.take_back(1, 9);
        let mut lifted = Vec::new();
        let t0 = Instant::now();
        assert!(!f.hold_back(t0, 1, 5, &Bitfield::new(2), held_by_none, &mut lifted));
        assert!(!f.hold_back(t0, 2, 0, &Bitfield::new(2), held_by_none, &mut lifted));
    }

    #[test]
    fn dropped_uploads_are_taken_back_but_sent_ones_stay_out() {
        let mut f = FirstCopy::<u8>::new(3, true);
        let none = Bitfield::new(3);
        let mut lifted = Vec::new();
        let t0 = Instant::now();
        f.give(1, 0);
        f.give(1, 1);
        f.delivered(1, 0, held_by_none);
        f.take_back_unsent(&1);
        // Chunk 0 reached peer 1; chunk 1 never left: it is fresh again, so 0 is refused.
        assert!(f.hold_back(t0, 2, 0, &none, held_by_none, &mut lifted));
        assert!(!f.hold_back(t0, 2, 1, &none, held_by_none, &mut lifted));
    }
}
