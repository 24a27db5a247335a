//! Tit-for-tat choking: upload to the peers that reciprocate best, plus one optimistic
//! unchoke to discover better partners (Kurose & Ross 2.5; libtorrent's choker).
//! An unchoke-all policy exists as a knob for incentive experiments; tit-for-tat is the default.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::time::{Duration, Instant};

use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;

/// Tunables.
#[derive(Clone, Debug)]
pub struct ChokerConfig {
    /// Peers unchoked for their rate (BitTorrent's 4), not counting the optimistic one.
    pub regular_slots: usize,
    /// Regular slots while seeding. A seed has no one to reciprocate with, and
    /// its uplink is often much faster than any one peer's: more slots spread
    /// its chunks over more peers at once, and each of those passes them on.
    pub seed_slots: usize,
    /// How often the regular slots are re-ranked.
    pub rechoke_interval: Duration,
    /// How long one peer keeps the optimistic slot.
    pub optimistic_interval: Duration,
    /// After this long in the optimistic slot, a holder that already uploads to
    /// us (a trading partner, not an exploration) gives the slot to an interested
    /// peer that does not, if one waits. Without it a young swarm's first
    /// traders can hold each other's every slot while the rest get nothing.
    pub optimistic_trial: Duration,
    /// How long a peer we wait on may send nothing before it counts as snubbing us.
    pub snub_timeout: Duration,
    /// Tit-for-tat, or unchoke every interested peer.
    pub policy: ChokePolicy,
}

/// Who gets upload slots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChokePolicy {
    /// The top `regular_slots` by rate plus one optimistic unchoke (BitTorrent; the node's policy).
    #[default]
    TitForTat,
    /// Every interested peer is unchoked, whatever it gives back (for comparison).
    UnchokeAll,
}

impl Default for ChokerConfig {
    /// BitTorrent's classic numbers: 4 slots, rechoke every 10 s, rotate every 30 s.
    fn default() -> Self {
        Self {
            regular_slots: 4,
            // Measured at N=30 with u_s = 10u (`testnet distribution`): 4 seed slots
            // 16.9-17.1 s, 9 slots 16.2-16.6 s, 15 slots 17.1 s.
            seed_slots: 9,
            rechoke_interval: Duration::from_secs(10),
            optimistic_interval: Duration::from_secs(30),
            optimistic_trial: Duration::from_secs(2),
            snub_timeout: Duration::from_secs(60),
            policy: ChokePolicy::TitForTat,
        }
    }
}

/// Whether we still download (rank by what peers send us) or only seed (rank by how fast
/// we send to them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Rank by `download_rate`: reward the peers that give us the most.
    Leeching,
    /// Rank by `upload_rate`: serve the peers that take data fastest.
    Seeding,
}

/// What the choker needs to know about one connected peer.
#[derive(Clone, Debug)]
pub struct PeerView<P> {
    /// Who this is.
    pub peer: P,
    /// They want chunks from us.
    pub interested: bool,
    /// Bytes per second they send us.
    pub download_rate: u64,
    /// Bytes per second we send them.
    pub upload_rate: u64,
    /// We want chunks from them but nothing arrived for `snub_timeout` (see [`is_snubbed`]).
    pub snubbed: bool,
}

/// The changes one rechoke made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChokeChanges<P> {
    /// Peers to unchoke now, in ascending order.
    pub unchoke: Vec<P>,
    /// Peers to choke now, in ascending order.
    pub choke: Vec<P>,
}

/// No changes (without the `P: Default` a derive would ask for).
impl<P> Default for ChokeChanges<P> {
    fn default() -> Self {
        Self {
            unchoke: Vec::new(),
            choke: Vec::new(),
        }
    }
}

/// Decides who we upload to: the top peers by rate plus one rotating optimistic unchoke.
#[derive(Clone, Debug)]
pub struct Choker<P> {
    config: ChokerConfig,
    /// Unchoked for their rate; at most `regular_slots` (`seed_slots` seeding), never snubbed, never `optimistic`.
    regular: BTreeSet<P>,
    optimistic: Option<P>,
    /// When `optimistic` got its slot; it rotates `optimistic_interval` later.
    optimistic_since: Option<Instant>,
    /// When the holder's trial ends (see `ChokerConfig::optimistic_trial`).
    trial_ends: Option<Instant>,
    last_rechoke: Option<Instant>,
}

impl<P: Copy + Eq + Hash + Ord + Debug> Choker<P> {
    /// A choker with everyone choked and a rechoke due at once.
    pub fn new(config: ChokerConfig) -> Self {
        Self {
            config,
            regular: BTreeSet::new(),
            optimistic: None,
            optimistic_since: None,
            trial_ends: None,
            last_rechoke: None,
        }
    }

    /// The tunables this choker runs with.
    pub fn config(&self) -> &ChokerConfig {
        &self.config
    }

    /// True if a peer that just became interested may be unchoked at once, with
    /// `unchoked` peers unchoked now (always, when unchoking everyone).
    pub fn has_free_slot(&self, unchoked: usize, mode: Mode) -> bool {
        match self.config.policy {
            ChokePolicy::TitForTat => unchoked < self.slots(mode).saturating_add(1),
            ChokePolicy::UnchokeAll => true,
        }
    }

    /// True if a rechoke is due at `now` (first call always due).
    pub fn is_due(&self, now: Instant) -> bool {
        match self.last_rechoke {
            None => true,
            Some(_) => self.rechoke_due().is_some_and(|due| now >= due),
        }
    }

    /// True if the optimistic holder's trial has ended: call `review_optimistic`.
    pub fn trial_is_due(&self, now: Instant) -> bool {
        self.trial_ends.is_some_and(|t| now >= t)
    }

    /// The regular rechoke or the optimistic rotation, whichever is sooner.
    fn rechoke_due(&self) -> Option<Instant> {
        let rechoke = self
            .last_rechoke
            .and_then(|t| t.checked_add(self.config.rechoke_interval));
        rechoke.into_iter().chain(self.rotation_due()).min()
    }

    /// Next time the caller's timer should fire: the regular rechoke, the
    /// optimistic rotation or the end of the optimistic holder's trial, whichever
    /// is sooner. `None` before the first rechoke (due at once) or when the
    /// intervals reach past what `Instant` can hold.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.rechoke_due().into_iter().chain(self.trial_ends).min()
    }

    /// Ends the optimistic holder's trial: if it uploads to us and an interested,
    /// unsnubbed peer outside the regular set does not, one of those (at random)
    /// takes the slot for a new period. Only the optimistic slot changes.
    pub fn review_optimistic<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        peers: &[PeerView<P>],
        rng: &mut R,
    ) -> ChokeChanges<P> {
        self.trial_ends = None;
        let Some(holder) = self.optimistic else {
            return ChokeChanges::default();
        };
        let trades = peers
            .iter()
            .find(|v| v.peer == holder)
            .is_some_and(|v| v.download_rate > 0);
        if !trades {
            return ChokeChanges::default();
        }
        let mut idle: Vec<P> = peers
            .iter()
            .filter(|v| {
                v.interested
                    && !v.snubbed
                    && v.download_rate == 0
                    && v.peer != holder
                    && !self.regular.contains(&v.peer)
            })
            .map(|v| v.peer)
            .collect();
        // Independent of the caller's slice order, as in `rechoke`.
        idle.sort_unstable();
        idle.dedup();
        let Some(&pick) = idle.choose(rng) else {
            return ChokeChanges::default();
        };
        self.optimistic = Some(pick);
        self.optimistic_since = Some(now);
        self.trial_ends = now.checked_add(self.config.optimistic_trial);
        ChokeChanges {
            unchoke: vec![pick],
            choke: vec![holder],
        }
    }

    /// Re-evaluates who is unchoked and returns only the changes.
    ///
    /// Interested, non-snubbed peers are ranked by `download_rate` (leeching) or
    /// `upload_rate` (seeding), ties broken by `rng`, and the top `regular_slots`
    /// (`seed_slots` seeding) are unchoked. One more interested peer outside that set
    /// holds the optimistic slot, picked at random when the slot is empty, its holder
    /// left, lost interest or earned a regular slot, or `optimistic_interval` has passed. Peers absent from `peers` are forgotten;
    /// if they were unchoked they appear in `choke`, so a caller mirroring the set stays in
    /// sync. For duplicate entries the first one counts. Under `ChokePolicy::UnchokeAll`
    /// every interested peer is unchoked and there is no optimistic slot.
    pub fn rechoke<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        peers: &[PeerView<P>],
        mode: Mode,
        rng: &mut R,
    ) -> ChokeChanges<P> {
        let before: BTreeSet<P> = self.unchoked().collect();
        let peers = dedup_sorted(peers);
        if self.config.policy == ChokePolicy::UnchokeAll {
            self.regular = peers
                .iter()
                .filter(|v| v.interested)
                .map(|v| v.peer)
                .collect();
            self.optimistic = None;
            self.optimistic_since = None;
            self.trial_ends = None;
            self.last_rechoke = Some(now);
            let after: BTreeSet<P> = self.unchoked().collect();
            return ChokeChanges {
                unchoke: after.difference(&before).copied().collect(),
                choke: before.difference(&after).copied().collect(),
            };
        }

        // Shuffle, then a stable sort by rate: equal rates end up in random order. Starting
        // from peer order makes the outcome independent of the caller's slice order.
        let mut ranked: Vec<&PeerView<P>> = peers
            .iter()
            .copied()
            .filter(|v| v.interested && !v.snubbed)
            .collect();
        ranked.shuffle(rng);
        ranked.sort_by_key(|v| Reverse(rank_rate(v, mode)));
        self.regular = ranked
            .iter()
            .take(self.slots(mode))
            .map(|v| v.peer)
            .collect();

        self.update_optimistic(now, &peers, rng);
        self.last_rechoke = Some(now);

        let after: BTreeSet<P> = self.unchoked().collect();
        ChokeChanges {
            unchoke: after.difference(&before).copied().collect(),
            choke: before.difference(&after).copied().collect(),
        }
    }

    /// Regular slots in `mode`.
    fn slots(&self, mode: Mode) -> usize {
        match mode {
            Mode::Leeching => self.config.regular_slots,
            Mode::Seeding => self.config.seed_slots,
        }
    }

    /// True if we currently upload to `peer`.
    pub fn is_unchoked(&self, peer: &P) -> bool {
        self.regular.contains(peer) || self.optimistic.as_ref() == Some(peer)
    }

    /// The peer holding the optimistic slot, if any.
    pub fn optimistic(&self) -> Option<P> {
        self.optimistic
    }

    /// Every unchoked peer: the regular ones in ascending order, then the optimistic one.
    pub fn unchoked(&self) -> impl Iterator<Item = P> + '_ {
        self.regular.iter().copied().chain(self.optimistic)
    }

    /// Forget a disconnected peer (frees its slot; the next rechoke may fill it).
    pub fn remove_peer(&mut self, peer: &P) {
        self.regular.remove(peer);
        if self.optimistic.as_ref() == Some(peer) {
            self.optimistic = None;
            self.optimistic_since = None;
            self.trial_ends = None;
        }
    }

    /// Keeps, rotates or refills the optimistic slot after the regular set was chosen.
    fn update_optimistic<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        peers: &[&PeerView<P>],
        rng: &mut R,
    ) {
        let current = self.optimistic.filter(|p| {
            !self.regular.contains(p)
                && peers
                    .binary_search_by(|v| v.peer.cmp(p))
                    .is_ok_and(|i| peers.get(i).is_some_and(|v| v.interested))
        });
        let rotation_due = self.rotation_due().is_none_or(|due| now >= due);
        if current.is_some() && !rotation_due {
            return;
        }
        // Rotating to the same peer would not explore, so the holder is excluded.
        let candidates: Vec<P> = peers
            .iter()
            .filter(|v| v.interested && !self.regular.contains(&v.peer) && Some(v.peer) != current)
            .map(|v| v.peer)
            .collect();
        match (candidates.choose(rng), current) {
            (Some(&pick), _) => {
                self.optimistic = Some(pick);
                self.optimistic_since = Some(now);
                self.trial_ends = now.checked_add(self.config.optimistic_trial);
            }
            // Nobody else to try: the holder keeps the slot for another period.
            (None, Some(_)) => self.optimistic_since = Some(now),
            (None, None) => {
                self.optimistic = None;
                self.optimistic_since = None;
                self.trial_ends = None;
            }
        }
    }

    /// When the optimistic slot rotates; `None` if it is empty (or beyond `Instant`).
    fn rotation_due(&self) -> Option<Instant> {
        self.optimistic_since
            .and_then(|t| t.checked_add(self.config.optimistic_interval))
    }
}

/// Helper: a peer is snubbed if we have been waiting on it and nothing arrived for `timeout`.
///
/// `waiting_since` is when we started waiting (e.g. our oldest outstanding request), `None`
/// if we want nothing from the peer; data received after that restarts the clock.
pub fn is_snubbed(
    now: Instant,
    last_received: Option<Instant>,
    waiting_since: Option<Instant>,
    timeout: Duration,
) -> bool {
    let Some(waiting_since) = waiting_since else {
        return false;
    };
    let quiet_since = last_received.map_or(waiting_since, |t| t.max(waiting_since));
    now.saturating_duration_since(quiet_since) >= timeout
}

fn rank_rate<P>(view: &PeerView<P>, mode: Mode) -> u64 {
    match mode {
        Mode::Leeching => view.download_rate,
        Mode::Seeding => view.upload_rate,
    }
}

/// The views sorted by peer, keeping only the first entry for each peer.
fn dedup_sorted<P: Copy + Eq + Hash + Ord>(peers: &[PeerView<P>]) -> Vec<&PeerView<P>> {
    let mut seen = HashSet::with_capacity(peers.len());
    let mut unique: Vec<&PeerView<P>> = peers.iter().filter(|v| seen.insert(v.peer)).collect();
    unique.sort_by_key(|v| v.peer);
    unique
}

#[cfg(test)]
mod tests;
