//! The simulated swarm: one real `protocol::transfer::Transfer` per peer,
//! driven exactly as the node drives it (`handle_*` in, `poll_action` out,
//! `poll_timeout`/`handle_timeout` for timers), on a virtual clock.
//!
//! Messages (haves, requests, answers, "unknown") arrive one latency after
//! they are sent; chunks flow through [`Net`] and arrive one latency after
//! their last byte left. Every peer dials `neighbours` random peers already
//! in the swarm, plus the seeder, when it arrives; the peers dialled learn of
//! it from its first have, and refuse it (as the node does, with "unknown")
//! when their transfer is full.

use std::time::{Duration, Instant};

use protocol::manifest::{auto_chunk_size, Layout, ManifestBuilder};
use protocol::merkle::{hash_leaf, Hash, MerkleTree};
use protocol::transfer::{Action, ChunkAnswer, ChunkVerdict, Transfer};
use protocol::wire::HaveInfo;
use protocol::{Bitfield, ChunkIndex, Manifest};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::config::{Arrivals, SimConfig};
use super::flows::{Chunk, FlowId, Net};
use super::queue::{Nanos, Queue, SECOND};

/// The seeder's peer number; leechers are 1..=N.
pub const SEEDER: u32 = 0;

/// What became of one leecher.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerResult {
    /// Peer number (1..=N).
    pub id: u32,
    /// Index into the run's classes.
    pub class: usize,
    /// Arrival time.
    pub arrival: Nanos,
    /// When it held every chunk, if it did.
    pub finish: Option<Nanos>,
    /// When it left, if it did.
    pub left: Option<Nanos>,
    /// Chunk bytes it uploaded.
    pub uploaded: u64,
    /// Chunk bytes it downloaded (duplicates included).
    pub downloaded: u64,
    /// The first chunks it stored (up to `FIRST_CHUNKS`), in order: shows the
    /// picking policy at work (`tests/tests/sim_vs_node.rs` compares it with a node's).
    pub first_chunks: Vec<ChunkIndex>,
}

/// How many stored chunks per peer `PeerResult::first_chunks` keeps.
pub const FIRST_CHUNKS: usize = 64;

/// Counters of one run, for the summary and for spotting model errors.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Events handled.
    pub events: u64,
    /// Chunks delivered and verified as new.
    pub stored: u64,
    /// Chunks delivered that the receiver already had.
    pub duplicates: u64,
    /// Chunk requests answered "choked".
    pub choked: u64,
    /// Chunk requests answered "don't have".
    pub dont_have: u64,
    /// Peers banned (a model error: every chunk here is honest).
    pub bans: u64,
    /// Haves refused because the receiver was full.
    pub refused: u64,
    /// Have messages delivered.
    pub haves: u64,
    /// Chunk requests delivered.
    pub requests: u64,
    /// Transfer timers fired.
    pub timers: u64,
}

/// Width of one bin of [`Outcome::uplinks`].
pub const UPLINK_BIN: Nanos = SECOND / 10;

/// Uplink use over one bin of virtual time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct UplinkBin {
    /// Byte-seconds of uplink capacity that had something to send.
    pub busy: f64,
    /// Byte-seconds of uplink capacity of the peers present.
    pub capacity: f64,
}

/// The result of one run.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Chunk size used.
    pub chunk_size: u32,
    /// Number of chunks.
    pub chunks: u32,
    /// Every leecher, by number.
    pub peers: Vec<PeerResult>,
    /// Chunk bytes the seeder uploaded.
    pub seeder_uploaded: u64,
    /// Virtual time when the run stopped.
    pub end: Nanos,
    /// True if the run hit its time limit with leechers unfinished.
    pub timed_out: bool,
    /// Counters.
    pub counters: Counters,
    /// Uplink use per [`UPLINK_BIN`] from time zero: where capacity sat idle.
    pub uplinks: Vec<UplinkBin>,
}

enum Event {
    Arrive(u32),
    Leave(u32),
    Timer(u32),
    Have {
        from: u32,
        to: u32,
        info: HaveInfo,
    },
    Unknown {
        from: u32,
        to: u32,
    },
    Request {
        from: u32,
        to: u32,
        index: ChunkIndex,
    },
    Choked {
        from: u32,
        to: u32,
        index: ChunkIndex,
    },
    DontHave {
        from: u32,
        to: u32,
        index: ChunkIndex,
    },
    Chunk {
        from: u32,
        to: u32,
        index: ChunkIndex,
        proof: Vec<u8>,
    },
    FlowDone {
        flow: FlowId,
        generation: u64,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    NotYet,
    Active,
    Gone,
}

struct Peer {
    transfer: Option<Transfer<u32>>,
    state: State,
    class: usize,
    uploads: bool,
    arrival: Nanos,
    finish: Option<Nanos>,
    left: Option<Nanos>,
    uploaded: u64,
    downloaded: u64,
    first_chunks: Vec<ChunkIndex>,
    timer_at: Option<Nanos>,
    /// Everyone it dialled or was dialled by (may repeat).
    contacts: Vec<u32>,
}

/// The content every peer shares: manifest, full tree and each chunk's leaf hash.
struct Content {
    manifest: Manifest,
    tree: MerkleTree,
    leaves: Vec<Hash>,
}

/// Runs one simulation to the end (every leecher finished) or the time limit.
pub fn run(config: &SimConfig) -> anyhow::Result<Outcome> {
    let mut world = World::new(config)?;
    world.run();
    Ok(world.outcome())
}

struct World<'a> {
    config: &'a SimConfig,
    base: Instant,
    now: Nanos,
    latency: Nanos,
    queue: Queue<Event>,
    net: Net,
    peers: Vec<Peer>,
    /// Peers in the swarm now, for dialling; `slot[p]` is p's index in it.
    present: Vec<u32>,
    slot: Vec<u32>,
    /// Peers in arrival order, and how many of them are admitted to `present`.
    by_arrival: Vec<u32>,
    admitted: usize,
    content: Content,
    rng: ChaCha8Rng,
    unfinished: usize,
    counters: Counters,
    /// Uplink capacity of the peers present, bytes per second.
    capacity: f64,
    uplinks: Vec<UplinkBin>,
}

impl<'a> World<'a> {
    fn new(config: &'a SimConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(config.size > 0, "the simulated file must not be empty");
        anyhow::ensure!(
            u32::try_from(config.peers).is_ok_and(|n| n < u32::MAX),
            "too many peers: {}",
            config.peers
        );
        anyhow::ensure!(
            !config.classes.is_empty() && config.classes.iter().all(|c| c.weight >= 0.0),
            "need at least one upload class, with non-negative weights"
        );
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let content = build_content(config, &mut rng)?;
        let n = config.peers + 1;
        let classes = assign_classes(config, &mut rng);
        let arrivals = arrival_times(config, &mut rng);
        let byte_rate = |bits: f64| bits / 8.0;
        let mut up = Vec::with_capacity(n);
        let mut down = Vec::with_capacity(n);
        let mut peers = Vec::with_capacity(n);
        for p in 0..n {
            let (class, upload) = if p == 0 {
                (usize::MAX, Some(config.server_upload))
            } else {
                let c = classes[p - 1];
                (c, config.classes[c].upload)
            };
            up.push(upload.map_or(0.0, |r| byte_rate(r.bits_per_sec())));
            down.push(if p == 0 {
                f64::INFINITY
            } else {
                config
                    .download
                    .map_or(f64::INFINITY, |r| byte_rate(r.bits_per_sec()))
            });
            peers.push(Peer {
                transfer: None,
                state: State::NotYet,
                class,
                uploads: upload.is_some(),
                arrival: arrivals[p],
                finish: None,
                left: None,
                uploaded: 0,
                downloaded: 0,
                first_chunks: Vec::new(),
                timer_at: None,
                contacts: Vec::new(),
            });
        }
        let mut queue = Queue::new();
        // The seeder first, then leechers by arrival (ids are in arrival order).
        let by_arrival: Vec<u32> = (0..n as u32).collect();
        for &p in &by_arrival {
            queue.push(arrivals[p as usize], Event::Arrive(p));
        }
        Ok(Self {
            config,
            base: Instant::now(),
            now: 0,
            latency: u64::try_from(config.latency.as_nanos()).unwrap_or(u64::MAX),
            queue,
            net: Net::new(up, down),
            peers,
            present: Vec::with_capacity(n),
            slot: vec![u32::MAX; n],
            by_arrival,
            admitted: 0,
            content,
            rng,
            unfinished: config.peers,
            counters: Counters::default(),
            capacity: 0.0,
            uplinks: Vec::new(),
        })
    }

    fn run(&mut self) {
        let limit = u64::try_from(self.config.time_limit.as_nanos()).unwrap_or(u64::MAX);
        while self.unfinished > 0 {
            let Some((at, event)) = self.queue.pop() else {
                break;
            };
            if at > limit {
                self.now = limit;
                return;
            }
            self.account(at);
            self.now = at;
            self.counters.events += 1;
            self.handle(event);
        }
    }

    /// Adds the uplink use from `self.now` to `to` into its bins.
    fn account(&mut self, to: Nanos) {
        let (busy, capacity) = (self.net.busy_upload(), self.capacity);
        let mut t = self.now;
        while t < to {
            let bin = (t / UPLINK_BIN) as usize;
            let end = ((bin as Nanos + 1) * UPLINK_BIN).min(to);
            if self.uplinks.len() <= bin {
                self.uplinks.resize(bin + 1, UplinkBin::default());
            }
            let dt = (end - t) as f64 / SECOND as f64;
            self.uplinks[bin].busy += busy * dt;
            self.uplinks[bin].capacity += capacity * dt;
            t = end;
        }
    }

    fn outcome(&self) -> Outcome {
        let peers = self
            .peers
            .iter()
            .enumerate()
            .skip(1)
            .map(|(id, p)| PeerResult {
                id: id as u32,
                class: p.class,
                arrival: p.arrival,
                finish: p.finish,
                left: p.left,
                uploaded: p.uploaded,
                downloaded: p.downloaded,
                first_chunks: p.first_chunks.clone(),
            })
            .collect();
        Outcome {
            chunk_size: self.content.manifest.chunk_size,
            chunks: self.content.manifest.chunk_count(),
            peers,
            seeder_uploaded: self.peers[0].uploaded,
            end: self.now,
            timed_out: self.unfinished > 0,
            counters: self.counters.clone(),
            uplinks: self.uplinks.clone(),
        }
    }

    fn at(&self, t: Nanos) -> Instant {
        self.base + Duration::from_nanos(t)
    }

    fn is_active(&self, p: u32) -> bool {
        self.peers[p as usize].state == State::Active
    }

    fn handle(&mut self, event: Event) {
        let now = self.at(self.now);
        match event {
            Event::Arrive(p) => self.arrive(p),
            Event::Leave(p) => self.leave(p),
            Event::Timer(p) => {
                if self.peers[p as usize].timer_at != Some(self.now) || !self.is_active(p) {
                    return;
                }
                self.peers[p as usize].timer_at = None;
                self.counters.timers += 1;
                if let Some(t) = self.transfer(p) {
                    t.handle_timeout(now);
                }
                self.drive(p, true);
            }
            Event::Have { from, to, info } => {
                if !self.is_active(from) || !self.is_active(to) {
                    return;
                }
                self.counters.haves += 1;
                let Some(t) = self.transfer(to) else {
                    return;
                };
                if t.handle_have(now, from, &info).is_err() {
                    // As the node does: tell the sender we are not exchanging with it.
                    self.counters.refused += 1;
                    self.send(from, Event::Unknown { from: to, to: from });
                }
                self.drive(to, false);
            }
            Event::Unknown { from, to } => {
                if !self.is_active(to) {
                    return;
                }
                if let Some(t) = self.transfer(to) {
                    t.handle_peer_disconnected(now, from);
                }
                self.drive(to, false);
            }
            Event::Request { from, to, index } => {
                if !self.is_active(from) || !self.is_active(to) {
                    return;
                }
                self.counters.requests += 1;
                self.serve(to, from, index);
                self.drive(to, false);
            }
            Event::Choked { from, to, index } => {
                if !self.is_active(to) {
                    return;
                }
                if let Some(t) = self.transfer(to) {
                    t.handle_choked(now, from, index);
                }
                self.drive(to, false);
            }
            Event::DontHave { from, to, index } => {
                if !self.is_active(to) {
                    return;
                }
                if let Some(t) = self.transfer(to) {
                    t.handle_dont_have(now, from, index);
                }
                self.drive(to, false);
            }
            Event::Chunk {
                from,
                to,
                index,
                proof,
            } => {
                if !self.is_active(from) || !self.is_active(to) {
                    return;
                }
                self.receive(from, to, index, &proof);
                self.drive(to, false);
            }
            Event::FlowDone { flow, generation } => self.flow_done(flow, generation),
        }
    }

    fn transfer(&mut self, p: u32) -> Option<&mut Transfer<u32>> {
        self.peers[p as usize].transfer.as_mut()
    }

    /// Schedules `event` for `to` one latency from now (dropped if `to` left).
    fn send(&mut self, to: u32, event: Event) {
        if self.peers[to as usize].state != State::Gone {
            self.queue.push_in_order(self.now + self.latency, event);
        }
    }

    fn arrive(&mut self, p: u32) {
        let now = self.at(self.now);
        // Everyone due by now is in the swarm, so a flash crowd's first arrival
        // can dial the last one.
        while let Some(&q) = self.by_arrival.get(self.admitted) {
            if self.peers[q as usize].arrival > self.now {
                break;
            }
            self.slot[q as usize] = self.present.len() as u32;
            self.present.push(q);
            self.admitted += 1;
        }
        let uploads = self.peers[p as usize].uploads;
        let (tree, have) = if p == SEEDER {
            (
                self.content.tree.clone(),
                Bitfield::full(self.content.manifest.chunk_count()),
            )
        } else {
            (
                MerkleTree::with_root(
                    self.content.manifest.root,
                    self.content.manifest.chunk_count(),
                ),
                Bitfield::new(self.content.manifest.chunk_count()),
            )
        };
        let seed = self.rng.next_u64();
        let transfer = Transfer::new(
            self.content.manifest.clone(),
            tree,
            &have,
            self.config.transfer_config(uploads),
            seed,
        );
        self.capacity += self.net.up_rate(p);
        let peer = &mut self.peers[p as usize];
        peer.transfer = Some(transfer);
        peer.state = State::Active;
        if p != SEEDER {
            let dial = self.pick_neighbours(p);
            for q in dial {
                if let Some(t) = self.peers[p as usize].transfer.as_mut() {
                    t.handle_peer_connected(now, q);
                }
                self.peers[p as usize].contacts.push(q);
                self.peers[q as usize].contacts.push(p);
            }
        }
        self.drive(p, false);
    }

    /// Up to `neighbours` distinct random peers in the swarm besides `p`, then the seeder.
    fn pick_neighbours(&mut self, p: u32) -> Vec<u32> {
        let others = self.present.len().saturating_sub(1);
        let want = self.config.neighbours.min(others);
        let mut picked: Vec<u32> = Vec::with_capacity(want + 1);
        if want == others {
            picked.extend(self.present.iter().copied().filter(|&q| q != p));
        } else {
            while picked.len() < want {
                let q = self.present[self.rng.random_range(0..self.present.len())];
                if q != p && !picked.contains(&q) {
                    picked.push(q);
                }
            }
        }
        if self.is_active(SEEDER) && !picked.contains(&SEEDER) {
            picked.push(SEEDER);
        }
        picked
    }

    fn leave(&mut self, p: u32) {
        if !self.is_active(p) {
            return;
        }
        let now = self.at(self.now);
        self.capacity -= self.net.up_rate(p);
        let peer = &mut self.peers[p as usize];
        peer.state = State::Gone;
        peer.left = Some(self.now);
        peer.transfer = None;
        peer.timer_at = None;
        let mut contacts = std::mem::take(&mut peer.contacts);
        let i = self.slot[p as usize] as usize;
        if i < self.present.len() {
            self.present.swap_remove(i);
            if let Some(&moved) = self.present.get(i) {
                self.slot[moved as usize] = i as u32;
            }
            self.slot[p as usize] = u32::MAX;
        }
        self.net.drop_peer(self.now, p);
        self.flush_net();
        contacts.sort_unstable();
        contacts.dedup();
        for q in contacts {
            if !self.is_active(q) {
                continue;
            }
            if let Some(t) = self.transfer(q) {
                t.handle_peer_disconnected(now, p);
            }
            self.drive(q, false);
        }
    }

    /// `to` asks `up` for chunk `index`.
    fn serve(&mut self, up: u32, to: u32, index: ChunkIndex) {
        let now = self.at(self.now);
        let Some(t) = self.transfer(up) else {
            return;
        };
        match t.handle_chunk_request(now, to, index) {
            ChunkAnswer::Serve(proof) => {
                let bytes = t.manifest().chunk_len(index);
                let wire = (f64::from(bytes) * (1.0 + self.config.wire_overhead)).round() as u32;
                let chunk = Chunk {
                    index,
                    bytes,
                    wire,
                    proof: proof.to_bytes(),
                };
                if self.net.enqueue(self.now, up, to, chunk) {
                    if let Some(t) = self.transfer(up) {
                        t.handle_uploaded(now, to, u64::from(bytes));
                    }
                }
                self.flush_net();
            }
            ChunkAnswer::Choked | ChunkAnswer::AlreadySent => {
                self.counters.choked += 1;
                self.send(
                    to,
                    Event::Choked {
                        from: up,
                        to,
                        index,
                    },
                );
            }
            ChunkAnswer::DontHave => {
                self.counters.dont_have += 1;
                self.send(
                    to,
                    Event::DontHave {
                        from: up,
                        to,
                        index,
                    },
                );
            }
        }
    }

    fn flow_done(&mut self, flow: FlowId, generation: u64) {
        let Some(d) = self.net.complete(self.now, flow, generation) else {
            return;
        };
        self.flush_net();
        let now = self.at(self.now);
        let up = &mut self.peers[d.up as usize];
        up.uploaded += u64::from(d.chunk.bytes);
        if let Some(t) = up.transfer.as_mut() {
            t.handle_chunk_delivered(d.down, d.chunk.index);
            if let Some(bytes) = d.next_started {
                t.handle_uploaded(now, d.down, u64::from(bytes));
            }
        }
        self.send(
            d.down,
            Event::Chunk {
                from: d.up,
                to: d.down,
                index: d.chunk.index,
                proof: d.chunk.proof,
            },
        );
    }

    /// Chunk `index` from `from` reached `to`: verified by its transfer against the real leaf hash.
    fn receive(&mut self, from: u32, to: u32, index: ChunkIndex, proof: &[u8]) {
        let now = self.at(self.now);
        let leaf = self.content.leaves[index as usize];
        let len = self.content.manifest.chunk_len(index);
        let peer = &mut self.peers[to as usize];
        peer.downloaded += u64::from(len);
        let Some(t) = peer.transfer.as_mut() else {
            return;
        };
        match t.handle_chunk_hashed(now, from, index, len as usize, leaf, proof) {
            Ok(ChunkVerdict::Store) => {
                // Storage is instant here: the disk is not what is measured.
                t.handle_chunk_stored(now, index);
                self.counters.stored += 1;
                if peer.first_chunks.len() < FIRST_CHUNKS {
                    peer.first_chunks.push(index);
                }
            }
            Ok(ChunkVerdict::Duplicate) => self.counters.duplicates += 1,
            Err(_) => {}
        }
    }

    /// Carries out `p`'s actions and re-arms its timer.
    fn drive(&mut self, p: u32, after_timeout: bool) {
        while let Some(action) = self.transfer(p).and_then(|t| t.poll_action()) {
            match action {
                Action::SendHave { peer, info } => self.send(
                    peer,
                    Event::Have {
                        from: p,
                        to: peer,
                        info,
                    },
                ),
                Action::RequestChunk { peer, index } => self.send(
                    peer,
                    Event::Request {
                        from: p,
                        to: peer,
                        index,
                    },
                ),
                Action::Ban { peer, .. } => {
                    self.counters.bans += 1;
                    self.send(peer, Event::Unknown { from: p, to: peer });
                }
                Action::Announce => {}
                Action::Completed => self.completed(p),
            }
        }
        self.rearm(p, after_timeout);
    }

    fn rearm(&mut self, p: u32, after_timeout: bool) {
        let Some(due) = self.transfer(p).and_then(|t| t.poll_timeout()) else {
            return;
        };
        let base = self.base;
        let mut at =
            u64::try_from(due.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX);
        // A timer that is still due right after handling it would spin: try again shortly.
        let floor = if after_timeout {
            self.now + SECOND / 1000
        } else {
            self.now
        };
        at = at.max(floor);
        let peer = &mut self.peers[p as usize];
        if peer.timer_at != Some(at) {
            peer.timer_at = Some(at);
            self.queue.push(at, Event::Timer(p));
        }
    }

    fn completed(&mut self, p: u32) {
        let peer = &mut self.peers[p as usize];
        if p == SEEDER || peer.finish.is_some() {
            return;
        }
        peer.finish = Some(self.now);
        self.unfinished = self.unfinished.saturating_sub(1);
        let departure = self.config.departure;
        let leave_at = if self.rng.random_bool(departure.leave_prob.clamp(0.0, 1.0)) {
            Some(self.now)
        } else {
            departure
                .stay
                .map(|d| self.now + u64::try_from(d.as_nanos()).unwrap_or(u64::MAX / 2))
        };
        if let Some(at) = leave_at {
            self.queue.push(at, Event::Leave(p));
        }
    }

    fn flush_net(&mut self) {
        for (at, flow, generation) in self.net.scheduled.drain(..) {
            self.queue.push(at, Event::FlowDone { flow, generation });
        }
    }
}

/// Synthetic content of the configured size (chunk `i`'s bytes come from the
/// run's RNG), its manifest and tree, and each chunk's leaf hash computed once.
fn build_content(config: &SimConfig, rng: &mut ChaCha8Rng) -> anyhow::Result<Content> {
    let chunk_size = config
        .chunk_size
        .unwrap_or_else(|| auto_chunk_size(config.size));
    let mut builder = ManifestBuilder::new(
        "sim.bin".into(),
        chunk_size,
        Layout::File {
            length: config.size,
        },
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "cannot describe a {} B file in {chunk_size} B chunks: {e}",
            config.size
        )
    })?;
    let mut leaves = Vec::new();
    let mut buf = vec![0u8; chunk_size as usize];
    let mut left = config.size;
    while left > 0 {
        let len = left.min(u64::from(chunk_size)) as usize;
        rng.fill_bytes(&mut buf[..len]);
        builder.update(&buf[..len]);
        leaves.push(hash_leaf(&buf[..len]));
        left -= len as u64;
    }
    let (manifest, tree) = builder
        .finish()
        .map_err(|e| anyhow::anyhow!("cannot build the simulated manifest: {e}"))?;
    Ok(Content {
        manifest,
        tree,
        leaves,
    })
}

/// Each leecher's class: exact shares by weight (largest remainder), in random order.
fn assign_classes(config: &SimConfig, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let n = config.peers;
    let total: f64 = config.classes.iter().map(|c| c.weight).sum();
    let mut out = Vec::with_capacity(n);
    let mut cumulative = 0.0;
    for (i, c) in config.classes.iter().enumerate() {
        cumulative += c.weight;
        let end = if total > 0.0 {
            ((cumulative / total) * n as f64).round() as usize
        } else {
            n
        };
        while out.len() < end.min(n) {
            out.push(i);
        }
    }
    while out.len() < n {
        out.push(config.classes.len() - 1);
    }
    // Fisher-Yates with the run's RNG.
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        out.swap(i, j);
    }
    out
}

/// Arrival time of the seeder (0) and each leecher, non-decreasing in peer number.
fn arrival_times(config: &SimConfig, rng: &mut ChaCha8Rng) -> Vec<Nanos> {
    let mut out = vec![0; config.peers + 1];
    if let Arrivals::Poisson { per_sec } = config.arrivals {
        let mut t = 0.0f64;
        for a in out.iter_mut().skip(1) {
            let u: f64 = rng.random();
            t += -(1.0 - u).ln() / per_sec.max(1e-9);
            *a = (t * SECOND as f64) as Nanos;
        }
    }
    out
}
