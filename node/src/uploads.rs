//! Chunk uploads waiting for a slot, served by rank across peers.
//!
//! The caller ranks peers (the node: fewest chunks held first); peers of
//! equal rank take turns, however many requests each keeps queued. Served in
//! arrival order, a peer with a deep pipeline would take most of our upload
//! and the swarm's slowest member would finish last by far. The bytes being read or
//! written at once are bounded, which also keeps socket buffers short so a
//! chunk leaves soon after it is dispatched.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// A bounded, per-peer round-robin queue of uploads, with a cap on bytes in progress.
pub struct UploadQueue<P, R, T> {
    waiting: HashMap<P, VecDeque<(u64, T)>>,
    /// Peers with waiting uploads, in turn order.
    turn: VecDeque<P>,
    waiting_len: usize,
    max_waiting: usize,
    /// Uploads in progress, by request ID, with their size.
    active: HashMap<R, u64>,
    active_bytes: u64,
    max_active_bytes: u64,
}

impl<P: Copy + Eq + Hash, R: Copy + Eq + Hash, T> UploadQueue<P, R, T> {
    /// At most `max_waiting` queued uploads and `max_active_bytes` in progress
    /// (one upload is always allowed, however large).
    pub fn new(max_waiting: usize, max_active_bytes: u64) -> Self {
        Self {
            waiting: HashMap::new(),
            turn: VecDeque::new(),
            waiting_len: 0,
            max_waiting,
            active: HashMap::new(),
            active_bytes: 0,
            max_active_bytes,
        }
    }

    /// Queues an upload of `bytes` for `peer`; gives it back if the queue is full.
    pub fn push(&mut self, peer: P, bytes: u64, item: T) -> Result<(), T> {
        if self.waiting_len >= self.max_waiting {
            return Err(item);
        }
        let queue = self.waiting.entry(peer).or_default();
        if queue.is_empty() {
            self.turn.push_back(peer);
        }
        queue.push_back((bytes, item));
        self.waiting_len += 1;
        Ok(())
    }

    /// The next upload to start, if a slot is free: the waiting peer whose
    /// head upload has the lowest `rank` goes first; equal ranks take turns.
    ///
    /// The caller starts it and reports it with [`UploadQueue::started`].
    pub fn next_by(&mut self, mut rank: impl FnMut(&P, &T) -> u64) -> Option<(P, u64, T)> {
        let mut best: Option<(usize, u64)> = None;
        for (pos, peer) in self.turn.iter().enumerate() {
            let Some((_, item)) = self.waiting.get(peer).and_then(|q| q.front()) else {
                continue;
            };
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
            && self.active_bytes.saturating_add(bytes) > self.max_active_bytes
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

    /// An upload returned by `next_by` is under way as request `id`.
    pub fn started(&mut self, id: R, bytes: u64) {
        if self.active.insert(id, bytes).is_none() {
            self.active_bytes = self.active_bytes.saturating_add(bytes);
        }
    }

    /// Upload `id` finished or failed; true if it was ours (a slot is free again).
    pub fn finished(&mut self, id: R) -> bool {
        match self.active.remove(&id) {
            Some(bytes) => {
                self.active_bytes = self.active_bytes.saturating_sub(bytes);
                true
            }
            None => false,
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    type Q = UploadQueue<u32, u32, &'static str>;

    /// Every peer ranks the same: pure turn-taking.
    fn same_rank(_: &u32, _: &&'static str) -> u64 {
        0
    }

    #[test]
    fn peers_take_turns_however_deep_their_queues() {
        let mut q = Q::new(100, 1 << 20);
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
        let mut q = Q::new(100, 1 << 20);
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
        let mut q = Q::new(100, 25);
        for r in 0..4 {
            q.push(r, 10, "x").unwrap();
        }
        let (_, b1, _) = q.next_by(same_rank).unwrap();
        q.started(100, b1);
        let (_, b2, _) = q.next_by(same_rank).unwrap();
        q.started(101, b2);
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
        let mut q = Q::new(10, 5);
        q.push(1, 100, "big").unwrap();
        assert!(q.next_by(same_rank).is_some());
    }

    #[test]
    fn a_full_queue_hands_the_upload_back() {
        let mut q = Q::new(2, 100);
        q.push(1, 1, "a").unwrap();
        q.push(2, 1, "b").unwrap();
        assert_eq!(q.push(3, 1, "c"), Err("c"));
    }

    #[test]
    fn removing_a_peer_drops_its_queue_and_its_turn() {
        let mut q = Q::new(10, 100);
        q.push(1, 1, "a").unwrap();
        q.push(1, 1, "a").unwrap();
        q.push(2, 1, "b").unwrap();
        assert_eq!(q.remove_peer(&1).len(), 2);
        assert_eq!(q.waiting(), 1);
        assert_eq!(q.next_by(same_rank).map(|(p, _, _)| p), Some(2));
        assert!(q.next_by(same_rank).is_none());
    }
}
