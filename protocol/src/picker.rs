//! Rarest-first piece picker: which missing chunk to ask a peer for next.
//!
//! Uses libtorrent's `piece_picker` layout so a pick never costs chunks × peers.
//! Random and sequential picking exist as a policy knob for experiments
//! (`testnet sim` compares them); the node always picks rarest first.

use crate::bitfield::{Bitfield, ChunkIndex};
use rand::Rng;

/// Random probes random-first mode makes before falling back to a scan.
const RANDOM_PROBES: u32 = 32;

/// Tunables of the piece picker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PickerConfig {
    /// While we hold fewer than this many chunks, pick at random among the peer's chunks instead of rarest first.
    pub random_first: u32,
    /// Which chunk to pick once past random-first mode.
    pub policy: PickPolicy,
}

impl Default for PickerConfig {
    fn default() -> Self {
        // BitTorrent's value: a newcomer wants *something* to trade quickly, and the
        // rarest chunks are the slowest to get because few peers can serve them.
        Self {
            random_first: 4,
            policy: PickPolicy::RarestFirst,
        }
    }
}

/// How the picker chooses among the chunks a peer can give us.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PickPolicy {
    /// Fewest holders first, random among equals (BitTorrent; the node's policy).
    #[default]
    RarestFirst,
    /// Uniformly at random, ignoring availability (for comparison).
    Random,
    /// Lowest index first, as a streaming client would (for comparison).
    Sequential,
}

/// Chooses which chunk to request next, rarest first, from availability and in-flight counts.
///
/// Layout: `order` lists every chunk. Its live region `[0, live)` holds the
/// chunks we lack, grouped into buckets by ascending availability; chunks we hold
/// sit after it. `pos` inverts `order`, and `ends[a]` is one past the last position
/// of bucket `a`, so the last entry of `ends` is `live`. Moving a chunk to the
/// neighbouring bucket is one swap with the bucket edge plus moving that edge.
#[derive(Clone)]
pub struct PiecePicker {
    config: PickerConfig,
    have: Bitfield,
    availability: Vec<u32>,
    requested: Vec<u32>,
    order: Vec<ChunkIndex>,
    pos: Vec<u32>,
    /// Never empty; every missing chunk's availability is below its length.
    ends: Vec<u32>,
    /// Missing chunks with no outstanding request; zero with chunks missing means endgame.
    unrequested_missing: u32,
    /// Chunks held or requested: a peer holding only these has nothing to pick,
    /// which `pick` sees in one pass over words instead of walking every bucket.
    blocked: Bitfield,
}

impl PiecePicker {
    /// A picker for `chunk_count` chunks, none held, no peers, nothing requested.
    pub fn new(chunk_count: u32, config: PickerConfig) -> Self {
        let n = chunk_count as usize;
        Self {
            config,
            have: Bitfield::new(chunk_count),
            availability: vec![0; n],
            requested: vec![0; n],
            order: (0..chunk_count).collect(),
            pos: (0..chunk_count).collect(),
            ends: vec![chunk_count],
            unrequested_missing: chunk_count,
            blocked: Bitfield::new(chunk_count),
        }
    }

    /// Number of chunks in the content.
    pub fn chunk_count(&self) -> u32 {
        self.have.len()
    }

    /// We now hold chunk `i` (verified): it is never picked again. Idempotent; clears its requested count.
    pub fn mark_have(&mut self, i: ChunkIndex) {
        if !self.is_missing(i) {
            return;
        }
        let c = i as usize;
        // Walk the chunk up through every bucket above its own, each time swapping it
        // to the bucket's end and shrinking the bucket, until it drops out of the live region.
        for b in self.availability[c] as usize..self.ends.len() {
            let last = self.ends[b] - 1;
            self.swap(self.pos[c], last);
            self.ends[b] = last;
        }
        self.trim();
        self.have.set(i);
        self.blocked.set(i);
        if self.requested[c] == 0 {
            self.unrequested_missing -= 1;
        }
        self.requested[c] = 0;
    }

    /// The chunks we hold.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// True when we hold every chunk.
    pub fn is_complete(&self) -> bool {
        self.have.is_full()
    }

    /// Number of chunks we still lack.
    pub fn missing(&self) -> u32 {
        self.live()
    }

    /// A peer holding `bf` joined: every chunk it has gains one in availability.
    pub fn add_peer(&mut self, bf: &Bitfield) {
        let n = self.chunk_count();
        for i in bf.iter_ones().take_while(|&i| i < n) {
            self.peer_gained(i);
        }
    }

    /// A peer holding `bf` left: every chunk it has loses one in availability (saturating).
    pub fn remove_peer(&mut self, bf: &Bitfield) {
        let n = self.chunk_count();
        for i in bf.iter_ones().take_while(|&i| i < n) {
            self.peer_lost(i);
        }
    }

    /// A known peer now also has chunk `i`.
    pub fn peer_gained(&mut self, i: ChunkIndex) {
        let Some(&a) = self.availability.get(i as usize) else {
            return;
        };
        let Some(next) = a.checked_add(1) else {
            return;
        };
        if !self.have.get(i) {
            let a = a as usize;
            if a + 1 == self.ends.len() {
                // The chunk opens a new top bucket, empty so far: it ends where bucket `a` does.
                self.ends.push(self.ends[a]);
            }
            // Swap to the end of bucket `a`, then let bucket `a + 1` start one earlier.
            let last = self.ends[a] - 1;
            self.swap(self.pos[i as usize], last);
            self.ends[a] = last;
        }
        self.availability[i as usize] = next;
    }

    /// A known peer no longer has chunk `i` (saturating at zero).
    pub fn peer_lost(&mut self, i: ChunkIndex) {
        let Some(&a) = self.availability.get(i as usize) else {
            return;
        };
        if a == 0 {
            return;
        }
        if !self.have.get(i) {
            // Swap to the start of bucket `a`, then let bucket `a - 1` end one later.
            let first = self.ends[a as usize - 1];
            self.swap(self.pos[i as usize], first);
            self.ends[a as usize - 1] = first + 1;
            self.trim();
        }
        self.availability[i as usize] = a - 1;
    }

    /// How many connected peers hold chunk `i` (0 out of range).
    pub fn availability(&self, i: ChunkIndex) -> u32 {
        self.availability.get(i as usize).copied().unwrap_or(0)
    }

    /// One more request for chunk `i` is outstanding; ignored for chunks we hold.
    pub fn mark_requested(&mut self, i: ChunkIndex) {
        if !self.is_missing(i) {
            return;
        }
        let r = &mut self.requested[i as usize];
        if *r == 0 {
            self.unrequested_missing -= 1;
            self.blocked.set(i);
        }
        *r = r.saturating_add(1);
    }

    /// A request for chunk `i` ended without the chunk (failed, choked, timed out, cancelled); saturating.
    pub fn mark_unrequested(&mut self, i: ChunkIndex) {
        let Some(r) = self.requested.get_mut(i as usize) else {
            return;
        };
        if *r == 1 {
            // Held chunks always count zero, so this chunk is missing.
            self.unrequested_missing += 1;
            self.blocked.clear(i);
        }
        *r = r.saturating_sub(1);
    }

    /// Number of outstanding requests for chunk `i` (0 out of range or held).
    pub fn requested_count(&self, i: ChunkIndex) -> u32 {
        self.requested.get(i as usize).copied().unwrap_or(0)
    }

    /// A chunk we lack, the peer has, and nobody has been asked for; rarest first, random among equals.
    ///
    /// While we hold fewer than `random_first` chunks, any such chunk at random
    /// instead. Chunks nobody is counted as having come last: they only qualify
    /// when the caller has not added this peer's bitfield, and then picking
    /// something beats stalling. The `Random` and `Sequential` policies pick
    /// uniformly or lowest index first among the same eligible chunks.
    pub fn pick<R: Rng + ?Sized>(&self, peer_has: &Bitfield, rng: &mut R) -> Option<ChunkIndex> {
        if self.unrequested_missing == 0 || !peer_has.has_any_missing_from(&self.blocked) {
            return None;
        }
        match self.config.policy {
            PickPolicy::RarestFirst => {}
            PickPolicy::Random => return self.pick_random(peer_has, rng),
            PickPolicy::Sequential => return self.pick_sequential(peer_has),
        }
        if self.have.count_ones() < self.config.random_first {
            return self.pick_random(peer_has, rng);
        }
        let eligible = |c: ChunkIndex| self.requested[c as usize] == 0 && peer_has.get(c);
        (1..self.ends.len())
            .chain(std::iter::once(0))
            .find_map(|a| self.scan(self.bucket_start(a), self.ends[a], &eligible, rng))
    }

    /// True when chunks are missing and every one of them has at least one outstanding request.
    pub fn in_endgame(&self) -> bool {
        self.unrequested_missing == 0 && self.live() > 0
    }

    /// A missing chunk the peer has, already requested elsewhere, not `already_asked` of this peer; fewest requests first, random among equals.
    ///
    /// Costs O(missing chunks), which in the endgame is at most the number of
    /// requests in flight.
    pub fn pick_endgame<R: Rng + ?Sized>(
        &self,
        peer_has: &Bitfield,
        already_asked: impl Fn(ChunkIndex) -> bool,
        rng: &mut R,
    ) -> Option<ChunkIndex> {
        let mut best = None;
        let mut best_requests = u32::MAX;
        let mut ties = 0u32;
        for &c in &self.order[..self.live() as usize] {
            let r = self.requested[c as usize];
            if r == 0 || r > best_requests || !peer_has.get(c) || already_asked(c) {
                continue;
            }
            if r < best_requests {
                best_requests = r;
                ties = 0;
            }
            // Reservoir sampling: the k-th equal candidate replaces the choice with chance 1/k.
            ties += 1;
            if ties == 1 || rng.random_range(0..ties) == 0 {
                best = Some(c);
            }
        }
        best
    }

    /// Random-first mode: uniform among eligible chunks, by rejection sampling and then by counting.
    fn pick_random<R: Rng + ?Sized>(&self, peer_has: &Bitfield, rng: &mut R) -> Option<ChunkIndex> {
        let live = self.live();
        if live == 0 {
            return None;
        }
        let eligible = |c: ChunkIndex| self.requested[c as usize] == 0 && peer_has.get(c);
        for _ in 0..RANDOM_PROBES {
            let c = self.order[rng.random_range(0..live) as usize];
            if eligible(c) {
                return Some(c);
            }
        }
        // Few chunks qualify, so probes rarely hit one: count them and take one
        // uniformly, as a scan from a random offset would favour clustered ones.
        let n = self.chunk_count();
        let candidates = || {
            peer_has
                .iter_ones()
                .take_while(move |&c| c < n)
                .filter(|&c| !self.have.get(c) && eligible(c))
        };
        let count = candidates().count();
        if count == 0 {
            return None;
        }
        candidates().nth(rng.random_range(0..count))
    }

    /// Sequential policy: the lowest-indexed missing, unrequested chunk the peer has.
    fn pick_sequential(&self, peer_has: &Bitfield) -> Option<ChunkIndex> {
        let n = self.chunk_count();
        peer_has
            .iter_ones()
            .take_while(|&c| c < n)
            .find(|&c| !self.have.get(c) && self.requested[c as usize] == 0)
    }

    /// First eligible chunk in positions `[start, end)`, beginning at a random offset and wrapping.
    fn scan<R: Rng + ?Sized>(
        &self,
        start: u32,
        end: u32,
        eligible: &impl Fn(ChunkIndex) -> bool,
        rng: &mut R,
    ) -> Option<ChunkIndex> {
        if start >= end {
            return None;
        }
        let from = if end - start == 1 {
            start
        } else {
            rng.random_range(start..end)
        };
        let order = &self.order;
        order[from as usize..end as usize]
            .iter()
            .chain(&order[start as usize..from as usize])
            .copied()
            .find(|&c| eligible(c))
    }

    fn live(&self) -> u32 {
        self.ends.last().copied().unwrap_or(0)
    }

    fn is_missing(&self, i: ChunkIndex) -> bool {
        i < self.chunk_count() && !self.have.get(i)
    }

    fn bucket_start(&self, a: usize) -> u32 {
        match a {
            0 => 0,
            _ => self.ends[a - 1],
        }
    }

    /// Exchanges the chunks at positions `p` and `q` of `order`, keeping `pos` in step.
    fn swap(&mut self, p: u32, q: u32) {
        let (x, y) = (self.order[p as usize], self.order[q as usize]);
        self.order[p as usize] = y;
        self.order[q as usize] = x;
        self.pos[y as usize] = p;
        self.pos[x as usize] = q;
    }

    /// Drops empty buckets at the top, so scans and `mark_have` only walk real ones.
    fn trim(&mut self) {
        while let [.., below, top] = self.ends[..] {
            if below != top {
                break;
            }
            self.ends.pop();
        }
    }
}

impl std::fmt::Debug for PiecePicker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The per-chunk tables are far too long to print.
        f.debug_struct("PiecePicker")
            .field("chunks", &self.chunk_count())
            .field("missing", &self.missing())
            .field("unrequested_missing", &self.unrequested_missing)
            .field("buckets", &self.ends.len())
            .finish()
    }
}

#[cfg(test)]
mod tests;
