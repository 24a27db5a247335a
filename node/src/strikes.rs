//! Strikes against misbehaving peers (stalled uploads, broken requests,
//! chunks asked for twice) and the temporary blocks they earn. Sans-IO: time
//! comes in, verdicts go out; the event loop does the disconnecting.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Most peers whose strikes, or blocks, are remembered at once.
pub const MAX_RECORDS: usize = 4096;
/// A peer's strikes are forgotten after this long without a new one.
pub const MEMORY: Duration = Duration::from_secs(600);

/// What one strike means for the peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Counted; the peer has this many strikes now.
    Counted(u32),
    /// Enough: disconnect it and refuse it until [`Strikes::release`] names it.
    Block,
    /// Enough, but the block list is full: disconnect it only.
    Disconnect,
}

/// Strike counts per peer and the peers blocked for them, all bounded.
pub struct Strikes<P> {
    max_strikes: u32,
    block_for: Duration,
    counts: HashMap<P, (u32, Instant)>,
    blocked: Vec<(P, Instant)>,
}

impl<P: Copy + Eq + Hash> Strikes<P> {
    /// `max_strikes` strikes within [`MEMORY`] of each other block a peer for `block_for`.
    pub fn new(max_strikes: u32, block_for: Duration) -> Self {
        Self {
            max_strikes: max_strikes.max(1),
            block_for,
            counts: HashMap::new(),
            blocked: Vec::new(),
        }
    }

    /// Counts one strike against `peer` at `now`.
    pub fn strike(&mut self, now: Instant, peer: P) -> Verdict {
        if self.counts.len() >= MAX_RECORDS && !self.counts.contains_key(&peer) {
            self.forget_old(now);
            if self.counts.len() >= MAX_RECORDS {
                let oldest = self
                    .counts
                    .iter()
                    .min_by_key(|(_, (_, last))| *last)
                    .map(|(p, _)| *p);
                if let Some(oldest) = oldest {
                    self.counts.remove(&oldest);
                }
            }
        }
        let record = self.counts.entry(peer).or_insert((0, now));
        record.0 += 1;
        record.1 = now;
        let count = record.0;
        if count < self.max_strikes {
            return Verdict::Counted(count);
        }
        self.counts.remove(&peer);
        if self.blocked.len() >= MAX_RECORDS {
            return Verdict::Disconnect;
        }
        self.blocked.push((peer, now + self.block_for));
        Verdict::Block
    }

    /// Peers whose block has ended by `now` (each named once); also forgets old strikes.
    pub fn release(&mut self, now: Instant) -> Vec<P> {
        let mut released = Vec::new();
        self.blocked.retain(|&(peer, until)| {
            let over = until <= now;
            if over {
                released.push(peer);
            }
            !over
        });
        self.forget_old(now);
        released
    }

    fn forget_old(&mut self, now: Instant) {
        self.counts
            .retain(|_, (_, last)| now.saturating_duration_since(*last) < MEMORY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: Duration = Duration::from_secs(60);

    #[test]
    fn the_third_strike_blocks_until_the_block_ends() {
        let t = Instant::now();
        let mut s = Strikes::new(3, BLOCK);
        assert_eq!(s.strike(t, 1u32), Verdict::Counted(1));
        assert_eq!(s.strike(t, 2u32), Verdict::Counted(1));
        assert_eq!(s.strike(t, 1u32), Verdict::Counted(2));
        assert_eq!(s.strike(t, 1u32), Verdict::Block);
        assert!(s.release(t + BLOCK - Duration::from_secs(1)).is_empty());
        assert_eq!(s.release(t + BLOCK), vec![1]);
        assert!(s.release(t + BLOCK).is_empty(), "named once");
        // A released peer starts from zero.
        assert_eq!(s.strike(t + BLOCK, 1u32), Verdict::Counted(1));
    }

    #[test]
    fn strikes_far_apart_are_forgotten() {
        let t = Instant::now();
        let mut s = Strikes::new(2, BLOCK);
        assert_eq!(s.strike(t, 1u32), Verdict::Counted(1));
        s.release(t + MEMORY);
        assert_eq!(s.strike(t + MEMORY, 1u32), Verdict::Counted(1));
    }

    #[test]
    fn records_stay_bounded_however_many_peers_strike() {
        let t = Instant::now();
        let mut s = Strikes::new(2, BLOCK);
        for p in 0..(2 * MAX_RECORDS as u32) {
            s.strike(t + Duration::from_millis(u64::from(p)), p);
        }
        assert!(s.counts.len() <= MAX_RECORDS);
        // The block list is bounded too: past it, peers are only disconnected.
        let mut verdicts = Vec::new();
        for p in 0..(MAX_RECORDS as u32 + 1) {
            let peer = 1_000_000 + p;
            s.strike(t, peer);
            verdicts.push(s.strike(t, peer));
        }
        assert_eq!(s.blocked.len(), MAX_RECORDS);
        assert_eq!(verdicts.last(), Some(&Verdict::Disconnect));
    }
}
