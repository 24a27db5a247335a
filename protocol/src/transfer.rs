//! The per-swarm state machine: one content ID, all its peers, in the quinn-proto style.
//!
//! The driver feeds events in with `handle_*(now, ..)`, takes the resulting
//! work out with `poll_action()`, and calls `handle_timeout(now)` once
//! `poll_timeout()` has passed. Nothing here does IO or reads a clock; the
//! only randomness is a PRNG seeded by the caller.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use thiserror::Error;

use crate::bitfield::{Bitfield, ChunkIndex};
use crate::choker::{is_snubbed, ChokeChanges, Choker, ChokerConfig, Mode, PeerView};
use crate::manifest::Manifest;
use crate::merkle::{hash_leaf, Hash, MerkleTree, Proof, ProofError};
use crate::picker::{PickerConfig, PiecePicker};
use crate::rate::RateMeter;
use crate::wire::{HaveInfo, HaveSet};
use seeding::FirstCopy;

mod availability;
mod seeding;

pub use availability::Availability;

/// Most outstanding requests for one chunk (the endgame adds at most one duplicate).
const MAX_REQUESTS_PER_CHUNK: u32 = 2;

/// Tunables of one transfer.
#[derive(Clone, Debug)]
pub struct TransferConfig {
    /// Most chunk requests outstanding per peer.
    pub pipeline_depth: usize,
    /// Most chunk bytes outstanding per peer (caps the depth for big chunks).
    pub max_in_flight_bytes: u64,
    /// No new requests while this many received bytes still wait to be written.
    pub max_unwritten_bytes: u64,
    /// Fewest chunk requests outstanding per peer (before its rate is known).
    pub min_pipeline_depth: usize,
    /// Keep about this much time's worth of a peer's download rate requested,
    /// so a slow peer is not handed chunks that faster peers could fetch sooner.
    pub request_queue_time: Duration,
    /// A request unanswered this long is given up and its chunk re-picked.
    pub request_timeout: Duration,
    /// Have exchange with each peer at least this often.
    pub have_interval: Duration,
    /// After we gain chunks, tell peers within this delay (batches announcements).
    pub have_batch_delay: Duration,
    /// Most peers tracked at once; further ones are refused.
    pub max_peers: usize,
    /// Most banned peers remembered.
    pub max_banned: usize,
    /// Window of the per-peer rate meters.
    pub rate_window: Duration,
    /// Choker tunables.
    pub choker: ChokerConfig,
    /// Picker tunables.
    pub picker: PickerConfig,
    /// When false we never upload (client-server experiments); choke everyone.
    pub upload_enabled: bool,
    /// A peer that asks again for a chunk we already delivered to it is choked this long.
    pub redundant_penalty: Duration,
    /// A complete peer sends every chunk once before any twice (see `transfer::seeding`).
    pub first_copy_first: bool,
    /// In the endgame a chunk is asked for a second time only once its first
    /// ask is this old: a younger one is probably just queued behind others.
    pub endgame_patience: Duration,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            pipeline_depth: 32,
            max_in_flight_bytes: 8 << 20,
            max_unwritten_bytes: 32 << 20,
            min_pipeline_depth: 3,
            request_queue_time: Duration::from_millis(500),
            request_timeout: Duration::from_secs(30),
            have_interval: Duration::from_secs(5),
            have_batch_delay: Duration::from_millis(100),
            max_peers: 200,
            max_banned: 10_000,
            rate_window: Duration::from_secs(20),
            choker: ChokerConfig::default(),
            picker: PickerConfig::default(),
            upload_enabled: true,
            redundant_penalty: Duration::from_secs(30),
            first_copy_first: true,
            // Twice `request_queue_time`: a peer's pipeline holds about that much of its rate.
            endgame_patience: Duration::from_secs(1),
        }
    }
}

/// Work for the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<P> {
    /// Send a have exchange to `peer` carrying `info`.
    SendHave { peer: P, info: HaveInfo },
    /// Ask `peer` for chunk `index`.
    RequestChunk { peer: P, index: ChunkIndex },
    /// Disconnect `peer` and never talk to it again.
    Ban { peer: P, reason: BanReason },
    /// We hold a verified chunk now: announce ourselves as a provider.
    Announce,
    /// Every chunk is verified and stored.
    Completed,
}

/// Why a peer was banned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BanReason {
    /// It sent a chunk that failed verification.
    BadChunk(ChunkIndex),
    /// Its have message was malformed.
    BadHave,
}

/// How to answer a peer's chunk request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkAnswer {
    /// Read the chunk from storage and send it with this proof.
    Serve(Proof),
    /// We are choking the peer.
    Choked,
    /// We do not hold the chunk (or it is out of range), or, as a seed, we
    /// offer it only once every chunk is out in the swarm (`first_copy_first`).
    DontHave,
    /// We already delivered this chunk to this peer while it stayed connected:
    /// no honest peer asks twice, so it is choked for `redundant_penalty`
    /// (answer "choked") and our upload goes to peers that need it.
    AlreadySent,
}

/// What became of a received chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkVerdict {
    /// Verified: write it, then call `handle_chunk_stored`.
    Store,
    /// Verified, but we already hold it or another copy is being stored.
    Duplicate,
}

/// Errors a handler reports to the driver.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TransferError {
    /// The chunk failed verification; the peer is being banned.
    #[error("peer sent a bad chunk: {0}")]
    BadChunk(#[from] ProofError),
    /// The peer's have message did not fit this content.
    #[error("peer sent a malformed have message")]
    BadHave,
    /// The peer is banned or unknown.
    #[error("peer is banned or not connected")]
    UnknownPeer,
}

/// Per-peer counters for display.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStats {
    /// Chunks the peer holds.
    pub chunks: u32,
    /// Bytes received from it.
    pub downloaded: u64,
    /// Bytes sent to it.
    pub uploaded: u64,
    /// We currently choke it.
    pub choked_by_us: bool,
    /// It currently chokes us.
    pub choking_us: bool,
}

struct Peer {
    have: Bitfield,
    heard_from: bool,
    interested_in_us: bool,
    choking_us: bool,
    we_choke: bool,
    we_interested: bool,
    in_flight: BTreeMap<ChunkIndex, Instant>,
    next_have: Instant,
    /// In `Transfer::urgent_haves`: its have goes out before the handler returns.
    urgent: bool,
    /// What only rates, uploads and penalties read: kept out of line so the
    /// walks over every peer (interest, haves, requests) stay in few cache lines.
    cold: Box<PeerCold>,
}

struct PeerCold {
    download: RateMeter,
    upload: RateMeter,
    last_received: Option<Instant>,
    /// Stopped reading what we sent, or asked for a chunk again: kept choked until then.
    penalized_until: Option<Instant>,
    /// Chunks we delivered to this peer since it connected.
    delivered: Bitfield,
}

/// State of one swarm: what we hold, every peer, and what to do next.
pub struct Transfer<P> {
    manifest: Manifest,
    tree: MerkleTree,
    picker: PiecePicker,
    choker: Choker<P>,
    config: TransferConfig,
    peers: BTreeMap<P, Peer>,
    banned: BTreeSet<P>,
    storing: BTreeSet<ChunkIndex>,
    /// Every peer's in-flight requests by send time, so the oldest is found
    /// without walking every peer (`poll_timeout` runs after every event).
    requests: BTreeSet<(Instant, P, ChunkIndex)>,
    /// No peer's `next_have` is earlier than this (it may be later than the
    /// true minimum after a peer leaves); lets `queue_due_haves` and
    /// `poll_timeout` skip the walk over every peer. Lower it with `have_due_by`.
    have_due: Option<Instant>,
    /// Peers whose have is due at once (`mark_urgent`): sent without a walk over every peer.
    urgent_haves: Vec<P>,
    actions: VecDeque<Action<P>>,
    rng: SmallRng,
    announced: bool,
    completed: bool,
    first_copy: FirstCopy<P>,
    /// When an endgame ask passed over as too young may be duplicated (a timer).
    endgame_wake: Option<Instant>,
}

impl<P: Copy + Ord + std::hash::Hash + std::fmt::Debug> Transfer<P> {
    /// A transfer for `manifest`, holding the chunks in `have` whose leaves `tree` knows.
    ///
    /// A seeder passes its full tree and a full bitfield; a new downloader passes
    /// `MerkleTree::with_root` and an empty bitfield. Chunks in `have` whose proof
    /// the tree cannot produce are treated as missing.
    pub fn new(
        manifest: Manifest,
        tree: MerkleTree,
        have: &Bitfield,
        config: TransferConfig,
        seed: u64,
    ) -> Self {
        let count = manifest.chunk_count();
        let mut picker = PiecePicker::new(count, config.picker);
        for i in have.iter_ones() {
            if tree.proof(i).is_some() {
                picker.mark_have(i);
            }
        }
        let completed = picker.is_complete();
        let announced = picker.have().count_ones() > 0;
        Self {
            manifest,
            tree,
            picker,
            choker: Choker::new(config.choker.clone()),
            config,
            peers: BTreeMap::new(),
            banned: BTreeSet::new(),
            storing: BTreeSet::new(),
            requests: BTreeSet::new(),
            have_due: None,
            urgent_haves: Vec::new(),
            actions: VecDeque::new(),
            rng: SmallRng::seed_from_u64(seed),
            announced,
            completed,
            first_copy: FirstCopy::new(count, completed),
            endgame_wake: None,
        }
    }

    /// The manifest this transfer serves.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Chunks we hold, verified and stored.
    pub fn have(&self) -> &Bitfield {
        self.picker.have()
    }

    /// True once every chunk is held.
    pub fn is_complete(&self) -> bool {
        self.picker.is_complete()
    }

    /// The Merkle tree as known so far (for saving resume state).
    pub fn tree(&self) -> &MerkleTree {
        &self.tree
    }

    /// Connected peers.
    pub fn peers(&self) -> impl Iterator<Item = P> + '_ {
        self.peers.keys().copied()
    }

    /// Number of connected peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// True if `peer` was banned.
    pub fn is_banned(&self, peer: &P) -> bool {
        self.banned.contains(peer)
    }

    /// Counters for one peer.
    pub fn peer_stats(&self, peer: &P) -> Option<PeerStats> {
        self.peers.get(peer).map(|p| PeerStats {
            chunks: p.have.count_ones(),
            downloaded: p.cold.download.total(),
            uploaded: p.cold.upload.total(),
            choked_by_us: p.we_choke,
            choking_us: p.choking_us,
        })
    }

    /// Our have message for `peer` (also the answer to its have request).
    pub fn have_info(&self, peer: &P) -> HaveInfo {
        let p = self.peers.get(peer);
        HaveInfo {
            have: HaveSet::from_bitfield(self.picker.have()),
            interested: p.is_some_and(|p| p.we_interested),
            choking: p.is_none_or(|p| p.we_choke),
        }
    }

    /// A peer connected (or we learned it is in this swarm). Returns false if refused.
    pub fn handle_peer_connected(&mut self, now: Instant, peer: P) -> bool {
        if self.banned.contains(&peer) {
            self.actions.push_back(Action::Ban {
                peer,
                reason: BanReason::BadHave,
            });
            return false;
        }
        if self.peers.contains_key(&peer) {
            return true;
        }
        if self.peers.len() >= self.config.max_peers {
            return false;
        }
        let count = self.manifest.chunk_count();
        self.peers.insert(
            peer,
            Peer {
                have: Bitfield::new(count),
                heard_from: false,
                interested_in_us: false,
                choking_us: true,
                we_choke: true,
                we_interested: false,
                in_flight: BTreeMap::new(),
                next_have: now,
                urgent: false,
                cold: Box::new(PeerCold {
                    download: RateMeter::new(self.config.rate_window),
                    upload: RateMeter::new(self.config.rate_window),
                    last_received: None,
                    penalized_until: None,
                    delivered: Bitfield::new(count),
                }),
            },
        );
        self.have_due_by(now);
        true
    }

    /// `peer` stopped reading a chunk we were sending it (or misbehaved
    /// otherwise): it loses its upload slot now and gets none until `until`,
    /// so the slot serves a peer that reads.
    pub fn handle_upload_stalled(&mut self, now: Instant, peer: P, until: Instant) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.cold.penalized_until = Some(p.cold.penalized_until.map_or(until, |t| t.max(until)));
        if !p.we_choke {
            self.rechoke(now);
        }
    }

    /// A peer disconnected: its chunks no longer count and its requests are re-picked.
    pub fn handle_peer_disconnected(&mut self, now: Instant, peer: P) {
        let was_unchoked = self.peers.get(&peer).is_some_and(|p| !p.we_choke);
        self.drop_peer(&peer);
        if was_unchoked {
            // Give its upload slot to someone else at once.
            self.rechoke(now);
        }
        self.fill_requests(now);
    }

    /// A have message from `peer` (its request or its response to ours).
    pub fn handle_have(
        &mut self,
        now: Instant,
        peer: P,
        info: &HaveInfo,
    ) -> Result<(), TransferError> {
        if !self.handle_peer_connected(now, peer) {
            return Err(TransferError::UnknownPeer);
        }
        let count = self.manifest.chunk_count();
        let Ok(new) = info.have.to_bitfield(count) else {
            self.ban(peer, BanReason::BadHave);
            return Err(TransferError::BadHave);
        };
        let Some(p) = self.peers.get_mut(&peer) else {
            return Err(TransferError::UnknownPeer);
        };
        if p.heard_from {
            for i in new.iter_ones_missing_from(&p.have) {
                self.picker.peer_gained(i);
            }
            for i in p.have.iter_ones_missing_from(&new) {
                self.picker.peer_lost(i);
            }
        } else {
            self.picker.add_peer(&new);
            p.heard_from = true;
            // Its first word this session: it may have (re)connected after we last
            // told it our holdings, and a peer that knows nothing of ours cannot ask;
            // a complete peer would otherwise leave a returning leecher waiting for
            // the periodic exchange.
            mark_urgent(&mut self.urgent_haves, peer, p, now);
        }
        p.have = new;
        let newly_interested = info.interested && !p.interested_in_us;
        // An unchoked peer that no longer wants anything frees its slot now, not at the next round.
        let slot_freed = !info.interested && p.interested_in_us && !p.we_choke;
        p.interested_in_us = info.interested;
        p.choking_us = info.choking;
        let was_interested = p.we_interested;
        let now_interested = p.have.has_any_missing_from(self.picker.have());
        p.we_interested = now_interested;
        if was_interested != now_interested {
            // Tell the peer promptly so it can unchoke us.
            mark_urgent(&mut self.urgent_haves, peer, p, now);
        }
        if (newly_interested && self.has_free_slot()) || slot_freed {
            self.rechoke(now);
        }
        // Only this peer's holdings and choking changed: no other peer can ask for more.
        self.refill(now, peer);
        self.queue_due_haves(now);
        Ok(())
    }

    /// `peer` asks for chunk `index`: decide whether to serve it.
    pub fn handle_chunk_request(
        &mut self,
        now: Instant,
        peer: P,
        index: ChunkIndex,
    ) -> ChunkAnswer {
        let redundant = match self.peers.get(&peer) {
            Some(p) if !p.we_choke => p.cold.delivered.get(index),
            _ => return ChunkAnswer::Choked,
        };
        if redundant {
            let until = now + self.config.redundant_penalty;
            self.handle_upload_stalled(now, peer, until);
            return ChunkAnswer::AlreadySent;
        }
        if !self.picker.have().get(index) {
            return ChunkAnswer::DontHave;
        }
        match self.tree.proof(index) {
            Some(_) if self.first_copy_refuses(now, peer, index) => ChunkAnswer::DontHave,
            Some(proof) => ChunkAnswer::Serve(proof),
            None => ChunkAnswer::DontHave,
        }
    }

    /// Chunk `index` reached `peer` whole (its response was written out).
    pub fn handle_chunk_delivered(&mut self, peer: P, index: ChunkIndex) {
        if let Some(p) = self.peers.get_mut(&peer) {
            if index < p.cold.delivered.len() {
                p.cold.delivered.set(index);
            }
        }
        self.first_copy_delivered(peer, index);
    }

    /// Our stream to `peer` broke: chunks sent on it may not have arrived, so
    /// asking for them again is no longer redundant.
    pub fn handle_session_reset(&mut self, peer: P) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.cold.delivered = Bitfield::new(p.cold.delivered.len());
        }
        self.first_copy.forget(&peer);
    }

    /// We sent `bytes` of chunk data to `peer`.
    pub fn handle_uploaded(&mut self, now: Instant, peer: P, bytes: u64) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.cold.upload.record(now, bytes);
        }
    }

    /// `peer` answered our request for `index` with a chunk and its proof.
    ///
    /// `index` is the chunk the driver asked for (not what the answer claims), so
    /// a mismatched answer fails verification. On `Ok(Store)` the driver writes
    /// the data and then calls `handle_chunk_stored`. A bad chunk bans the peer.
    pub fn handle_chunk(
        &mut self,
        now: Instant,
        peer: P,
        index: ChunkIndex,
        data: &[u8],
        proof: &[u8],
    ) -> Result<ChunkVerdict, TransferError> {
        let leaf = hash_leaf(data);
        self.handle_chunk_hashed(now, peer, index, data.len(), leaf, proof)
    }

    /// As `handle_chunk`, for a driver that already computed `hash_leaf(data)`
    /// (off the event loop) and passes the data's length and leaf hash.
    pub fn handle_chunk_hashed(
        &mut self,
        now: Instant,
        peer: P,
        index: ChunkIndex,
        len: usize,
        leaf: Hash,
        proof: &[u8],
    ) -> Result<ChunkVerdict, TransferError> {
        let Some(p) = self.peers.get_mut(&peer) else {
            return Err(TransferError::UnknownPeer);
        };
        // A late answer to a request we already gave up on is still welcome if it verifies.
        let sent = p.in_flight.remove(&index);
        let was_in_flight = sent.is_some();
        if let Some(t) = sent {
            self.requests.remove(&(t, peer, index));
        }
        let checked = Proof::from_bytes(proof).and_then(|proof| {
            if len != self.manifest.chunk_len(index) as usize {
                return Err(ProofError::RootMismatch(index));
            }
            self.tree.insert_leaf(index, leaf, &proof)
        });
        if let Err(e) = checked {
            if was_in_flight {
                self.picker.mark_unrequested(index);
            }
            self.ban(peer, BanReason::BadChunk(index));
            self.fill_requests(now);
            return Err(TransferError::BadChunk(e));
        }
        p.cold.download.record(now, len as u64);
        p.cold.last_received = Some(now);
        if self.picker.have().get(index) || self.storing.contains(&index) {
            if was_in_flight {
                self.picker.mark_unrequested(index);
            }
            // The chunk is held or being stored, so only the sender's freed slot is new.
            self.refill(now, peer);
            return Ok(ChunkVerdict::Duplicate);
        }
        self.storing.insert(index);
        // The chunk stays "requested" in the picker until it is stored, so nobody re-picks it.
        if !was_in_flight {
            self.picker.mark_requested(index);
        }
        self.refill(now, peer);
        Ok(ChunkVerdict::Store)
    }

    /// The driver wrote chunk `index` durably: we hold it now and may serve it.
    pub fn handle_chunk_stored(&mut self, now: Instant, index: ChunkIndex) {
        let was_blocked = !self.may_request();
        if !self.storing.remove(&index) {
            return;
        }
        self.picker.mark_have(index);
        if !self.announced {
            self.announced = true;
            self.actions.push_back(Action::Announce);
        }
        let batch = now + self.config.have_batch_delay;
        let mut lowered = false;
        let mut urgent = false;
        // Disjoint fields: read our bitfield in place while updating every peer.
        let have = self.picker.have();
        for (&peer, p) in self.peers.iter_mut() {
            // News that can change interest goes out at once, as BitTorrent's haves
            // do: ours in the peer (it may free a slot for us), or the peer's in us
            // (it lacks the chunk and wants nothing from us yet). In a young swarm a
            // peer holds few chunks and its uplink idles while such news waits.
            // Peers we unchoke (they can request the chunk) hear within the batch
            // delay; a peer interested but choked cannot act on it and hears at the
            // periodic exchange or when unchoked, which cuts have traffic several-fold.
            let was_interested = p.we_interested;
            let peer_has = p.have.get(index);
            // Gaining `index` ends our interest only in peers that hold it.
            if was_interested && peer_has {
                p.we_interested = p.have.has_any_missing_from(have);
            }
            let can_act = !p.we_choke || !p.interested_in_us;
            if was_interested != p.we_interested || (!p.interested_in_us && !peer_has) {
                mark_urgent(&mut self.urgent_haves, peer, p, now);
                urgent = true;
            } else if can_act && !p.have.is_full() {
                p.next_have = p.next_have.min(batch);
                lowered = true;
            }
        }
        if lowered {
            self.have_due_by(batch);
        }
        if urgent {
            self.queue_due_haves(now);
        }
        if self.picker.is_complete() && !self.completed {
            self.completed = true;
            self.actions.push_back(Action::Completed);
            // Seeding ranks differently; re-evaluate at once.
            self.rechoke(now);
        }
        // The sender's slot was refilled when the chunk arrived, and holding a chunk
        // we had requested makes nothing new pickable: only a full write queue that
        // drained can let more requests out.
        if was_blocked {
            self.fill_requests(now);
        }
    }

    /// Writing chunk `index` failed: forget it so it is fetched again.
    pub fn handle_chunk_store_failed(&mut self, now: Instant, index: ChunkIndex) {
        if self.storing.remove(&index) {
            self.picker.mark_unrequested(index);
            self.fill_requests(now);
        }
    }

    /// Our request to `peer` for `index` failed (timeout, stream or connection error).
    pub fn handle_request_failed(&mut self, now: Instant, peer: P, index: ChunkIndex) {
        self.release(&peer, index);
        self.fill_requests(now);
    }

    /// `peer` answered our request for `index` with "choked".
    pub fn handle_choked(&mut self, now: Instant, peer: P, index: ChunkIndex) {
        self.release(&peer, index);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.choking_us = true;
        }
        self.fill_requests(now);
    }

    /// `peer` answered our request for `index` with "don't have".
    pub fn handle_dont_have(&mut self, now: Instant, peer: P, index: ChunkIndex) {
        self.release(&peer, index);
        if let Some(p) = self.peers.get_mut(&peer) {
            if p.have.clear(index) {
                self.picker.peer_lost(index);
            }
            p.we_interested = p.have.has_any_missing_from(self.picker.have());
        }
        self.fill_requests(now);
    }

    /// Timers: request timeouts, rechoking, periodic have exchange.
    pub fn handle_timeout(&mut self, now: Instant) {
        let timeout = self.config.request_timeout;
        let expired: Vec<(P, ChunkIndex)> = self
            .requests
            .iter()
            .take_while(|&&(sent, _, _)| now.saturating_duration_since(sent) >= timeout)
            .map(|&(_, peer, i)| (peer, i))
            .collect();
        for (peer, i) in expired {
            self.release(&peer, i);
        }
        if self.choker.is_due(now) {
            self.rechoke(now);
        } else if self.choker.trial_is_due(now) {
            let views = self.choker_views(now);
            let changes = self.choker.review_optimistic(now, &views, &mut self.rng);
            self.apply_choke_changes(now, changes);
        }
        self.queue_due_haves(now);
        if self.endgame_wake.is_some_and(|t| t <= now) {
            self.endgame_wake = None;
        }
        self.fill_requests(now);
    }

    /// Next work to do, if any.
    pub fn poll_action(&mut self) -> Option<Action<P>> {
        self.actions.pop_front()
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timeout = self.config.request_timeout;
        debug_assert!(self.urgent_haves.is_empty(), "urgent haves left unsent");
        debug_assert!(
            self.peers
                .values()
                .all(|p| self.have_due.is_some_and(|t| t <= p.next_have)),
            "have_due must not be later than any peer's next have"
        );
        let haves = if self.peers.is_empty() {
            None
        } else {
            self.have_due
        };
        let oldest_request = self.requests.first().map(|&(t, _, _)| t + timeout);
        haves
            .into_iter()
            .chain(oldest_request)
            .chain(self.endgame_wake)
            .chain(self.choker.poll_timeout())
            .min()
    }

    fn has_free_slot(&self) -> bool {
        let unchoked = self.peers.values().filter(|p| !p.we_choke).count();
        self.choker.has_free_slot(unchoked, self.choke_mode())
    }

    /// How the choker ranks: seeding once we hold everything.
    fn choke_mode(&self) -> Mode {
        if self.picker.is_complete() {
            Mode::Seeding
        } else {
            Mode::Leeching
        }
    }

    fn rechoke(&mut self, now: Instant) {
        let mode = self.choke_mode();
        let views = self.choker_views(now);
        let changes = self.choker.rechoke(now, &views, mode, &mut self.rng);
        self.apply_choke_changes(now, changes);
    }

    /// What the choker needs to know about every peer now.
    fn choker_views(&self, now: Instant) -> Vec<PeerView<P>> {
        let snub = self.config.choker.snub_timeout;
        self.peers
            .iter()
            .map(|(&peer, p)| PeerView {
                peer,
                interested: p.interested_in_us
                    && self.config.upload_enabled
                    && p.cold.penalized_until.is_none_or(|t| t <= now),
                download_rate: p.cold.download.rate(now),
                upload_rate: p.cold.upload.rate(now),
                snubbed: is_snubbed(
                    now,
                    p.cold.last_received,
                    p.in_flight.values().min().copied(),
                    snub,
                ),
            })
            .collect()
    }

    /// Mirrors the choker's decisions and tells the peers concerned at once.
    fn apply_choke_changes(&mut self, now: Instant, changes: ChokeChanges<P>) {
        for peer in changes.unchoke {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.we_choke = false;
                mark_urgent(&mut self.urgent_haves, peer, p, now);
            }
        }
        for peer in changes.choke {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.we_choke = true;
                mark_urgent(&mut self.urgent_haves, peer, p, now);
            }
        }
        self.queue_due_haves(now);
    }

    fn queue_due_haves(&mut self, now: Instant) {
        let interval = self.config.have_interval;
        let mut due: Vec<P> = Vec::new();
        for peer in std::mem::take(&mut self.urgent_haves) {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.urgent = false;
                if p.next_have <= now {
                    p.next_have = now + interval;
                    due.push(peer);
                }
            }
        }
        if !due.is_empty() {
            self.have_due_by(now + interval);
        }
        if self.have_due.is_some_and(|t| t <= now) {
            // One walk both picks the due peers and finds the next deadline.
            let mut next = None;
            for (&peer, p) in self.peers.iter_mut() {
                if p.next_have <= now {
                    p.next_have = now + interval;
                    due.push(peer);
                }
                lower_to(&mut next, p.next_have);
            }
            self.have_due = next;
        }
        for peer in due {
            let info = self.have_info(&peer);
            self.actions.push_back(Action::SendHave { peer, info });
        }
    }

    /// Some peer's next have exchange is now due at `t` or earlier.
    pub(super) fn have_due_by(&mut self, t: Instant) {
        lower_to(&mut self.have_due, t);
    }

    /// Requests more from `peer` after an event that changed only its state; in
    /// the endgame every idle peer may take a duplicate, so all are considered.
    fn refill(&mut self, now: Instant, peer: P) {
        if self.picker.in_endgame() {
            self.fill_requests(now);
        } else {
            self.fill_peer(now, peer);
            if self.picker.in_endgame() {
                // That fill asked for the last unrequested chunk: idle peers may now help.
                self.fill_requests(now);
            }
        }
    }

    /// Requests more from every peer that has a free request slot.
    fn fill_requests(&mut self, now: Instant) {
        if !self.may_request() {
            return;
        }
        let cap = self.max_depth();
        // Cheap tests first: most peers choke us, have nothing for us or are full,
        // and they cost no rate computation.
        let keys: Vec<P> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.choking_us && p.we_interested && p.in_flight.len() < cap)
            .map(|(&peer, _)| peer)
            .collect();
        if keys.is_empty() {
            return;
        }
        // Start at a random peer so no one is always served first.
        let start = self.rng.random_range(0..keys.len());
        for k in 0..keys.len() {
            self.fill_peer(now, keys[(start + k) % keys.len()]);
        }
    }

    /// False while nothing may be requested: complete, or too much waits to be written.
    fn may_request(&self) -> bool {
        if self.picker.is_complete() {
            return false;
        }
        let chunk_size = u64::from(self.manifest.chunk_size.max(1));
        // Bounded memory: received chunks wait in RAM until written.
        let max_unwritten = (self.config.max_unwritten_bytes / chunk_size).max(1) as usize;
        self.storing.len() < max_unwritten
    }

    /// The deepest pipeline any peer may get.
    fn max_depth(&self) -> usize {
        let chunk_size = u64::from(self.manifest.chunk_size.max(1));
        let byte_cap = (self.config.max_in_flight_bytes / chunk_size).max(1) as usize;
        let (min_depth, max_depth) = (self.config.min_pipeline_depth, self.config.pipeline_depth);
        max_depth.max(min_depth).min(byte_cap)
    }

    /// Requests chunks from `peer` until its pipeline is as deep as its rate warrants.
    fn fill_peer(&mut self, now: Instant, peer: P) {
        if !self.may_request() {
            return;
        }
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        if p.choking_us || !p.we_interested || p.in_flight.len() >= self.max_depth() {
            return;
        }
        let chunk_size = u64::from(self.manifest.chunk_size.max(1));
        let queue_time = self.config.request_queue_time.as_secs_f64();
        let (min_depth, max_depth) = (self.config.min_pipeline_depth, self.config.pipeline_depth);
        let byte_cap = (self.config.max_in_flight_bytes / chunk_size).max(1) as usize;
        let by_rate =
            (p.cold.download.rate(now) as f64 * queue_time / chunk_size as f64).ceil() as usize;
        let depth = by_rate
            .clamp(min_depth, max_depth.max(min_depth))
            .min(byte_cap);
        if p.in_flight.len() >= depth {
            return;
        }
        while let Some(index) = self.pick_for(now, &peer) {
            self.picker.mark_requested(index);
            let Some(p) = self.peers.get_mut(&peer) else {
                break;
            };
            p.in_flight.insert(index, now);
            self.requests.insert((now, peer, index));
            self.actions.push_back(Action::RequestChunk { peer, index });
            if p.in_flight.len() >= depth {
                break;
            }
        }
    }

    /// The next chunk to ask `peer` for.
    ///
    /// Normally a chunk nobody has been asked for. In the endgame (everything
    /// missing is requested somewhere) a peer with nothing in flight may take
    /// one chunk already requested from exactly one other peer, as libtorrent
    /// does: the tail is not held up by one slow peer, yet duplicates stay
    /// bounded by the number of idle peers, not by pipeline depth. Only an ask
    /// older than `endgame_patience` is duplicated; a younger one sets a timer.
    fn pick_for(&mut self, now: Instant, peer: &P) -> Option<ChunkIndex> {
        let p = self.peers.get(peer)?;
        if let Some(i) = self.picker.pick(&p.have, &mut self.rng) {
            return Some(i);
        }
        if !self.picker.in_endgame() || !p.in_flight.is_empty() {
            return None;
        }
        // Each chunk's first ask: `requests` runs oldest first, so the first
        // entry per chunk is its earliest (cheaper than asking every peer per candidate).
        let mut first_ask: BTreeMap<ChunkIndex, Instant> = BTreeMap::new();
        for &(sent, _, i) in &self.requests {
            first_ask.entry(i).or_insert(sent);
        }
        let storing = &self.storing;
        let picker = &self.picker;
        let patience = self.config.endgame_patience;
        // The earliest moment a chunk passed over as too young becomes eligible.
        let wake = std::cell::Cell::new(None::<Instant>);
        let pick = picker.pick_endgame(
            &p.have,
            |i| {
                if p.in_flight.contains_key(&i)
                    || storing.contains(&i)
                    || picker.requested_count(i) >= MAX_REQUESTS_PER_CHUNK
                {
                    return true;
                }
                match first_ask.get(&i) {
                    Some(&t) if now.saturating_duration_since(t) < patience => {
                        let mut w = wake.get();
                        lower_to(&mut w, t + patience);
                        wake.set(w);
                        true
                    }
                    _ => false,
                }
            },
            &mut self.rng,
        );
        if let (None, Some(due)) = (pick, wake.get()) {
            lower_to(&mut self.endgame_wake, due);
        }
        pick
    }

    fn release(&mut self, peer: &P, index: ChunkIndex) {
        if let Some(p) = self.peers.get_mut(peer) {
            let Some(sent) = p.in_flight.remove(&index) else {
                return;
            };
            self.requests.remove(&(sent, *peer, index));
            if !self.storing.contains(&index) {
                self.picker.mark_unrequested(index);
            }
        }
    }

    fn drop_peer(&mut self, peer: &P) {
        let Some(p) = self.peers.remove(peer) else {
            return;
        };
        self.first_copy.forget(peer);
        if p.heard_from {
            self.picker.remove_peer(&p.have);
        }
        for (&i, &sent) in &p.in_flight {
            self.requests.remove(&(sent, *peer, i));
            if !self.storing.contains(&i) {
                self.picker.mark_unrequested(i);
            }
        }
        self.choker.remove_peer(peer);
    }

    fn ban(&mut self, peer: P, reason: BanReason) {
        self.drop_peer(&peer);
        if self.banned.len() < self.config.max_banned {
            self.banned.insert(peer);
        }
        self.actions.push_back(Action::Ban { peer, reason });
    }
}

/// Makes `peer`'s have due at `now`, to be sent by the handler's `queue_due_haves`
/// without walking every peer.
fn mark_urgent<P>(urgent: &mut Vec<P>, peer: P, p: &mut Peer, now: Instant) {
    p.next_have = now;
    if !p.urgent {
        p.urgent = true;
        urgent.push(peer);
    }
}

/// Lowers `slot` to `t` (sets it if empty): timers keep their earliest deadline.
fn lower_to(slot: &mut Option<Instant>, t: Instant) {
    *slot = Some(slot.map_or(t, |d| d.min(t)));
}

#[cfg(test)]
mod tests;
