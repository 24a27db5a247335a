//! Uploads waiting for a slot, served by rank across peers, with per-peer budgets.
//!
//! The caller ranks peers (the node: fewest chunks held first); peers of
//! equal rank take turns, however many requests each keeps queued. Served in
//! arrival order, a peer with a deep pipeline would take most of our upload
//! and the swarm's slowest member would finish last by far. The bytes being read or
//! written at once are bounded, which also keeps socket buffers short so a
//! chunk leaves soon after it is dispatched.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// How many uploads and bytes may wait or run, in total and per peer.
#[derive(Clone, Copy, Debug)]
pub struct UploadLimits {
    /// Most uploads waiting in total.
    pub max_waiting: usize,
    /// Most uploads waiting for one peer (a little over its pipeline depth).
    pub max_waiting_per_peer: usize,
    /// Most bytes being read or sent at once in total.
    pub max_active_bytes: u64,
    /// Most bytes being read or sent to one peer at once, so peers that stop
    /// reading cannot hold the whole budget. A peer with nothing active may
    /// always start one upload, however large.
    pub max_active_bytes_per_peer: u64,
    /// A peer with fewer uploads than this under way may start one more
    /// whatever its bytes, so reading the next chunk overlaps sending this
    /// one even when chunks are as large as the byte budget.
    pub min_active_per_peer: usize,
}

/// Why an upload was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Every peer's waiting uploads together reached the cap.
    Full,
    /// This peer's waiting uploads reached its cap.
    PeerFull,
}

/// A bounded, per-peer round-robin queue of uploads, with caps on bytes in
/// progress in total and per peer.
pub struct UploadQueue<P, R, T> {
    limits: UploadLimits,
    waiting: HashMap<P, VecDeque<(u64, T)>>,
    /// Peers with waiting uploads, in turn order.
    turn: VecDeque<P>,
    waiting_len: usize,
    /// Uploads in progress, by request ID, with their peer and size.
    active: HashMap<R, (P, u64)>,
    active_bytes: u64,
    /// Bytes in progress per peer (peers with none are absent).
    /// Bytes and uploads under way per peer.
    peer_active: HashMap<P, (u64, usize)>,
}

impl<P: Copy + Eq + Hash, R: Copy + Eq + Hash, T> UploadQueue<P, R, T> {
    /// An empty queue enforcing `limits`.
    pub fn new(limits: UploadLimits) -> Self {
        Self {
            limits,
            waiting: HashMap::new(),
            turn: VecDeque::new(),
            waiting_len: 0,
            active: HashMap::new(),
            active_bytes: 0,
            peer_active: HashMap::new(),
        }
    }

    /// Queues an upload of `bytes` for `peer`; gives it back if a cap is reached.
    pub fn push(&mut self, peer: P, bytes: u64, item: T) -> Result<(), (Refused, T)> {
        if self.waiting_len >= self.limits.max_waiting {
            return Err((Refused::Full, item));
        }
        let queue = self.waiting.entry(peer).or_default();
        if queue.len() >= self.limits.max_waiting_per_peer {
            return Err((Refused::PeerFull, item));
        }
        if queue.is_empty() {
            self.turn.push_back(peer);
        }
        queue.push_back((bytes, item));
        self.waiting_len += 1;
        Ok(())
    }

    /// The next upload to start, if budgets allow: among waiting peers whose
    /// head upload fits their own budget, the one with the lowest `rank` goes
    /// first; equal ranks take turns.
    ///
    /// The caller starts it and reports it with [`UploadQueue::started`].
    pub fn next_by(&mut self, mut rank: impl FnMut(&P, &T) -> u64) -> Option<(P, u64, T)> {
        let mut best: Option<(usize, u64)> = None;
        for (pos, peer) in self.turn.iter().enumerate() {
            let Some((bytes, item)) = self.waiting.get(peer).and_then(|q| q.front()) else {
                continue;
            };
            if !self.fits_peer(peer, *bytes) {
                continue;
            }
            let r = rank(peer, item);
            if best.is_none_or(|(_, b)| r < b) {
                best = Some((pos, r));
            }
        }
        let (pos, _) = best?;
        let peer = *self.turn.get(pos)?;
        let queue = self.waiting.get_mut(&peer)?;
        let &(bytes, _) = queue.front()?;
        if !self.active.is_empty()
            && self.active_bytes.saturating_add(bytes) > self.limits.max_active_bytes
        {
            return None;
        }
        let (bytes, item) = queue.pop_front()?;
        self.waiting_len -= 1;
        self.turn.remove(pos);
        if queue.is_empty() {
            self.waiting.remove(&peer);
        } else {
            self.turn.push_back(peer);
        }
        Some((peer, bytes, item))
    }

    /// An upload returned by `next_by` for `peer` is under way as request `id`.
    pub fn started(&mut self, peer: P, id: R, bytes: u64) {
        if self.active.insert(id, (peer, bytes)).is_none() {
            self.active_bytes = self.active_bytes.saturating_add(bytes);
            let a = self.peer_active.entry(peer).or_default();
            a.0 += bytes;
            a.1 += 1;
        }
    }

    /// Upload `id` finished or failed; true if it was ours (a slot is free again).
    pub fn finished(&mut self, id: R) -> bool {
        let Some((peer, bytes)) = self.active.remove(&id) else {
            return false;
        };
        self.active_bytes = self.active_bytes.saturating_sub(bytes);
        if let Some(a) = self.peer_active.get_mut(&peer) {
            a.0 = a.0.saturating_sub(bytes);
            a.1 = a.1.saturating_sub(1);
            if a.1 == 0 {
                self.peer_active.remove(&peer);
            }
        }
        true
    }

    /// Whether upload `id` is under way.
    pub fn is_active(&self, id: &R) -> bool {
        self.active.contains_key(id)
    }

    /// Ends every upload under way to `peer` (its stream is gone, so none
    /// will report being sent); returns how many.
    pub fn finish_peer(&mut self, peer: &P) -> usize {
        let ids: Vec<R> = self
            .active
            .iter()
            .filter(|(_, (p, _))| p == peer)
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.finished(*id);
        }
        ids.len()
    }

    /// Drops everything queued for `peer` (it left or was banned).
    pub fn remove_peer(&mut self, peer: &P) -> Vec<T> {
        let Some(queue) = self.waiting.remove(peer) else {
            return Vec::new();
        };
        self.waiting_len -= queue.len();
        self.turn.retain(|p| p != peer);
        queue.into_iter().map(|(_, item)| item).collect()
    }

    /// Uploads in progress.
    pub fn active(&self) -> usize {
        self.active.len()
    }

    /// Uploads waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.waiting_len
    }

    /// Bytes in progress to `peer`.
    pub fn active_bytes_of(&self, peer: &P) -> u64 {
        self.peer_active.get(peer).map_or(0, |a| a.0)
    }

    fn fits_peer(&self, peer: &P, bytes: u64) -> bool {
        match self.peer_active.get(peer) {
            None => true,
            Some(&(b, n)) => {
                n < self.limits.min_active_per_peer
                    || b.saturating_add(bytes) <= self.limits.max_active_bytes_per_peer
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Q = UploadQueue<u32, u32, &'static str>;

    fn queue(max_waiting: usize, max_active_bytes: u64) -> Q {
        Q::new(UploadLimits {
            max_waiting,
            max_waiting_per_peer: max_waiting,
            max_active_bytes,
            max_active_bytes_per_peer: max_active_bytes,
            min_active_per_peer: 1,
        })
    }

    /// Every peer ranks the same: pure turn-taking.
    fn same_rank(_: &u32, _: &&'static str) -> u64 {
        0
    }

    #[test]
    fn peers_take_turns_however_deep_their_queues() {
        let mut q = queue(100, 1 << 20);
        for _ in 0..10 {
            q.push(1, 10, "greedy").unwrap();
        }
        q.push(2, 10, "modest").unwrap();
        q.push(3, 10, "modest").unwrap();
        let order: Vec<u32> = (0..5).map(|_| q.next_by(same_rank).unwrap().0).collect();
        assert_eq!(order, [1, 2, 3, 1, 1]);
        assert_eq!(q.waiting(), 7);
    }

    #[test]
    fn the_lowest_rank_goes_first_and_equals_take_turns() {
        let mut q = queue(100, 1 << 20);
        for p in [1, 2, 3] {
            q.push(p, 10, "x").unwrap();
            q.push(p, 10, "x").unwrap();
        }
        // Peer 2 is furthest behind; 1 and 3 are level.
        let rank = |p: &u32, _: &&str| if *p == 2 { 0 } else { 5 };
        let order: Vec<u32> = (0..6).map(|_| q.next_by(rank).unwrap().0).collect();
        assert_eq!(order, [2, 2, 1, 3, 1, 3]);
    }

    #[test]
    fn bytes_in_progress_are_capped_and_freed() {
        let mut q = queue(100, 25);
        for r in 0..4 {
            q.push(r, 10, "x").unwrap();
        }
        let (_, b1, _) = q.next_by(same_rank).unwrap();
        q.started(0, 100, b1);
        let (_, b2, _) = q.next_by(same_rank).unwrap();
        q.started(1, 101, b2);
        assert!(
            q.next_by(same_rank).is_none(),
            "a third 10-byte upload exceeds 25 bytes"
        );
        assert!(q.finished(100));
        assert!(!q.finished(100), "finishing twice frees one slot");
        assert!(q.next_by(same_rank).is_some());
        assert_eq!(q.active(), 1);
    }

    #[test]
    fn one_upload_always_fits_even_if_larger_than_the_cap() {
        let mut q = queue(10, 5);
        q.push(1, 100, "big").unwrap();
        assert!(q.next_by(same_rank).is_some());
    }

    #[test]
    fn a_full_queue_hands_the_upload_back() {
        let mut q = queue(2, 100);
        q.push(1, 1, "a").unwrap();
        q.push(2, 1, "b").unwrap();
        assert_eq!(q.push(3, 1, "c"), Err((Refused::Full, "c")));
    }

    #[test]
    fn removing_a_peer_drops_its_queue_and_its_turn() {
        let mut q = queue(10, 100);
        q.push(1, 1, "a").unwrap();
        q.push(1, 1, "a").unwrap();
        q.push(2, 1, "b").unwrap();
        assert_eq!(q.remove_peer(&1).len(), 2);
        assert_eq!(q.waiting(), 1);
        assert_eq!(q.next_by(same_rank).map(|(p, _, _)| p), Some(2));
        assert!(q.next_by(same_rank).is_none());
    }

    #[test]
    fn peers_that_stop_reading_cannot_hold_the_whole_budget() {
        let mut q = Q::new(UploadLimits {
            max_waiting: 100,
            max_waiting_per_peer: 8,
            max_active_bytes: 100,
            max_active_bytes_per_peer: 30,
            min_active_per_peer: 1,
        });
        // Three stalled peers each ask for far more than their share.
        for p in [1, 2, 3] {
            for _ in 0..8 {
                q.push(p, 10, "stalled").unwrap();
            }
            assert_eq!(q.push(p, 10, "x"), Err((Refused::PeerFull, "x")));
        }
        let mut id = 0;
        while let Some((p, b, _)) = q.next_by(same_rank) {
            q.started(p, id, b);
            id += 1;
        }
        for p in [1, 2, 3] {
            assert_eq!(q.active_bytes_of(&p), 30);
        }
        // None of them ever finishes, yet an honest peer still gets served.
        q.push(4, 10, "honest").unwrap();
        assert_eq!(q.next_by(same_rank).map(|(p, _, _)| p), Some(4));
    }

    #[test]
    fn a_peer_with_nothing_active_may_start_one_oversized_upload() {
        let mut q = Q::new(UploadLimits {
            max_waiting: 10,
            max_waiting_per_peer: 10,
            max_active_bytes: 1000,
            max_active_bytes_per_peer: 5,
            min_active_per_peer: 1,
        });
        q.push(1, 100, "big").unwrap();
        q.push(1, 100, "big").unwrap();
        let (p, b, _) = q.next_by(same_rank).unwrap();
        q.started(p, 0, b);
        assert!(
            q.next_by(same_rank).is_none(),
            "a second one exceeds the peer's share"
        );
        assert!(q.finished(0));
        assert!(q.next_by(same_rank).is_some());
    }

    #[test]
    fn a_peer_may_overlap_uploads_as_large_as_its_budget() {
        let mut q = Q::new(UploadLimits {
            max_waiting: 10,
            max_waiting_per_peer: 10,
            max_active_bytes: 100,
            max_active_bytes_per_peer: 10,
            min_active_per_peer: 2,
        });
        for item in ["a", "b", "c"] {
            q.push(1, 10, item).unwrap();
        }
        let (_, _, first) = q.next_by(same_rank).unwrap();
        q.started(1, 1, 10);
        let (_, _, second) = q.next_by(same_rank).unwrap();
        q.started(1, 2, 10);
        assert_eq!(
            (first, second),
            ("a", "b"),
            "two under way although each fills the budget"
        );
        assert!(q.next_by(same_rank).is_none(), "a third waits");
        q.finished(1);
        assert_eq!(q.next_by(same_rank).map(|u| u.2), Some("c"));
    }
}
