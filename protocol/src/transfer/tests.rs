//! Several transfers exchanging chunks through a simulated network on a virtual clock.

use super::*;
use crate::manifest::{Layout, ManifestBuilder, MIN_CHUNK_SIZE};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

const LATENCY: Duration = Duration::from_millis(5);

#[derive(Clone, Debug)]
enum Msg {
    HaveReq(HaveInfo),
    HaveResp(HaveInfo),
    ChunkReq(ChunkIndex),
    ChunkResp(ChunkIndex, Answer),
}

#[derive(Clone, Debug)]
enum Answer {
    Chunk(Vec<u8>, Vec<u8>),
    Choked,
    DontHave,
}

#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    Honest,
    Corrupt,
    Silent,
}

struct Sim {
    t0: Instant,
    now: Instant,
    content: Vec<u8>,
    nodes: Vec<Transfer<u32>>,
    stored: Vec<Vec<Option<Vec<u8>>>>,
    behaviour: Vec<Behaviour>,
    queue: BinaryHeap<Reverse<(Instant, u64, u32, u32)>>,
    msgs: BTreeMap<u64, Msg>,
    seq: u64,
    bans: Vec<(u32, u32)>,
    requests: Vec<(u32, u32, ChunkIndex)>,
    /// Chunks that arrived with data: (receiver, sender, index).
    fetched: Vec<(u32, u32, ChunkIndex)>,
    /// Upload bytes per second of each node's link (None: unlimited) and when it is next free.
    uplink: Vec<(Option<u64>, Instant)>,
    /// A node whose disk never finishes writing: its verified chunks pile up here.
    stalled_disk: Option<u32>,
    unwritten: Vec<ChunkIndex>,
}

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 7) as u8).collect()
}

fn build(data: &[u8]) -> (Manifest, MerkleTree) {
    let mut b = ManifestBuilder::new(
        "sim.bin".into(),
        MIN_CHUNK_SIZE,
        Layout::File {
            length: data.len() as u64,
        },
    )
    .unwrap();
    b.update(data);
    b.finish().unwrap()
}

impl Sim {
    /// `seeds` full peers then `leechers` empty ones, all connected to each other.
    fn new(len: usize, seeds: &[Behaviour], leechers: usize, config: TransferConfig) -> Self {
        let data = content(len);
        let (manifest, tree) = build(&data);
        let count = manifest.chunk_count();
        let t0 = Instant::now();
        let mut nodes = Vec::new();
        let mut stored = Vec::new();
        let mut behaviour = Vec::new();
        for (k, &b) in seeds.iter().enumerate() {
            nodes.push(Transfer::new(
                manifest.clone(),
                tree.clone(),
                &Bitfield::full(count),
                config.clone(),
                k as u64,
            ));
            stored.push(
                (0..count)
                    .map(|i| Some(chunk(&manifest, &data, i)))
                    .collect(),
            );
            behaviour.push(b);
        }
        for k in 0..leechers {
            let empty = MerkleTree::with_root(manifest.root, count);
            nodes.push(Transfer::new(
                manifest.clone(),
                empty,
                &Bitfield::new(count),
                config.clone(),
                100 + k as u64,
            ));
            stored.push(vec![None; count as usize]);
            behaviour.push(Behaviour::Honest);
        }
        let n = nodes.len() as u32;
        for a in 0..n {
            for b in 0..n {
                if a != b {
                    nodes[a as usize].handle_peer_connected(t0, b);
                }
            }
        }
        let uplink = vec![(None, t0); n as usize];
        Sim {
            t0,
            now: t0,
            content: data,
            nodes,
            stored,
            behaviour,
            queue: BinaryHeap::new(),
            msgs: BTreeMap::new(),
            seq: 0,
            bans: vec![],
            requests: vec![],
            fetched: vec![],
            uplink,
            stalled_disk: None,
            unwritten: vec![],
        }
    }

    fn send(&mut self, from: u32, to: u32, msg: Msg) {
        let mut at = self.now + LATENCY;
        if let (Msg::ChunkResp(_, Answer::Chunk(data, _)), (Some(rate), free)) =
            (&msg, &mut self.uplink[from as usize])
        {
            // The sender's link carries one chunk after another at its rate.
            let start = (*free).max(self.now);
            *free = start + Duration::from_secs_f64(data.len() as f64 / *rate as f64);
            at = *free + LATENCY;
        }
        self.seq += 1;
        self.msgs.insert(self.seq, msg);
        self.queue.push(Reverse((at, self.seq, from, to)));
    }

    fn drain_actions(&mut self) {
        for id in 0..self.nodes.len() as u32 {
            while let Some(a) = self.nodes[id as usize].poll_action() {
                match a {
                    Action::SendHave { peer, info } => self.send(id, peer, Msg::HaveReq(info)),
                    Action::RequestChunk { peer, index } => {
                        self.requests.push((id, peer, index));
                        self.send(id, peer, Msg::ChunkReq(index));
                    }
                    Action::Ban { peer, .. } => self.bans.push((id, peer)),
                    Action::Announce | Action::Completed => {}
                }
            }
        }
    }

    fn deliver(&mut self, from: u32, to: u32, msg: Msg) {
        let now = self.now;
        if self.nodes[to as usize].is_banned(&from) {
            return;
        }
        match msg {
            Msg::HaveReq(info) => {
                if self.nodes[to as usize]
                    .handle_have(now, from, &info)
                    .is_ok()
                {
                    let reply = self.nodes[to as usize].have_info(&from);
                    self.send(to, from, Msg::HaveResp(reply));
                }
            }
            Msg::HaveResp(info) => {
                let _ = self.nodes[to as usize].handle_have(now, from, &info);
            }
            Msg::ChunkReq(index) => {
                let node = &mut self.nodes[to as usize];
                let answer = match node.handle_chunk_request(now, from, index) {
                    ChunkAnswer::Serve(proof) => {
                        let mut data = self.stored[to as usize][index as usize]
                            .clone()
                            .expect("served chunk is stored");
                        node.handle_uploaded(now, from, data.len() as u64);
                        match self.behaviour[to as usize] {
                            Behaviour::Honest => {}
                            Behaviour::Corrupt => data[0] ^= 0x40,
                            Behaviour::Silent => return,
                        }
                        node.handle_chunk_delivered(from, index);
                        Answer::Chunk(data, proof.to_bytes())
                    }
                    // Honest requesters never ask one peer twice for a chunk it delivered.
                    ChunkAnswer::AlreadySent => panic!("node {from} asked {to} twice for {index}"),
                    ChunkAnswer::Choked => Answer::Choked,
                    ChunkAnswer::DontHave => Answer::DontHave,
                };
                self.send(to, from, Msg::ChunkResp(index, answer));
            }
            Msg::ChunkResp(index, answer) => {
                let node = &mut self.nodes[to as usize];
                match answer {
                    Answer::Chunk(data, proof) => {
                        self.fetched.push((to, from, index));
                        if let Ok(ChunkVerdict::Store) =
                            node.handle_chunk(now, from, index, &data, &proof)
                        {
                            if self.stalled_disk == Some(to) {
                                self.unwritten.push(index);
                                return;
                            }
                            self.stored[to as usize][index as usize] = Some(data);
                            node.handle_chunk_stored(now, index);
                        }
                    }
                    Answer::Choked => node.handle_choked(now, from, index),
                    Answer::DontHave => node.handle_dont_have(now, from, index),
                }
            }
        }
    }

    /// Runs until every node completes or `limit` of virtual time passes.
    fn run(&mut self, limit: Duration) -> bool {
        loop {
            self.drain_actions();
            if self.nodes.iter().all(|n| n.is_complete()) {
                return true;
            }
            if self.now - self.t0 > limit {
                return false;
            }
            let next_msg = self.queue.peek().map(|Reverse((t, ..))| *t);
            let next_timer = self.nodes.iter().filter_map(|n| n.poll_timeout()).min();
            let next = match (next_msg, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).expect("a stalled simulation always has a timer"),
            };
            self.now = self.now.max(next);
            while let Some(Reverse((t, seq, from, to))) = self.queue.peek().copied() {
                if t > self.now {
                    break;
                }
                self.queue.pop();
                let msg = self.msgs.remove(&seq).expect("queued message exists");
                self.deliver(from, to, msg);
            }
            let now = self.now;
            for n in &mut self.nodes {
                if n.poll_timeout().is_some_and(|t| t <= now) {
                    n.handle_timeout(now);
                }
            }
        }
    }

    fn assert_all_verified(&self) {
        let m = self.nodes[0].manifest();
        for (k, s) in self.stored.iter().enumerate() {
            for i in 0..m.chunk_count() {
                assert_eq!(
                    s[i as usize].as_deref(),
                    Some(&chunk(m, &self.content, i)[..]),
                    "node {k} chunk {i}"
                );
            }
            assert!(self.nodes[k].have().is_full(), "node {k} not complete");
        }
    }
}

fn chunk(m: &Manifest, data: &[u8], i: u32) -> Vec<u8> {
    let r = m.chunk_range(i);
    data[r.start as usize..r.end as usize].to_vec()
}

#[test]
fn one_seed_four_leechers_complete_with_every_chunk_verified() {
    let mut sim = Sim::new(
        60 * MIN_CHUNK_SIZE as usize + 123,
        &[Behaviour::Honest],
        4,
        TransferConfig::default(),
    );
    // Every link carries 10 chunks a second: the seed alone would need 24 s for four copies.
    for link in &mut sim.uplink {
        link.0 = Some(10 * u64::from(MIN_CHUNK_SIZE));
    }
    assert!(sim.run(Duration::from_secs(600)), "swarm did not complete");
    sim.assert_all_verified();
    assert!(sim.bans.is_empty());
    // Leechers traded among themselves: some leecher uploaded chunks.
    let leecher_uploads: u64 = (1..5u32)
        .flat_map(|a| (0..5u32).filter(move |&b| b != a).map(move |b| (a, b)))
        .filter_map(|(a, b)| sim.nodes[a as usize].peer_stats(&b).map(|s| s.uploaded))
        .sum();
    let file = sim.content.len() as u64;
    assert!(
        leecher_uploads > file,
        "leechers uploaded only {leecher_uploads} bytes to each other"
    );
    let seed_uploaded: u64 = (1..5u32)
        .filter_map(|b| sim.nodes[0].peer_stats(&b))
        .map(|s| s.uploaded)
        .sum();
    assert!(
        seed_uploaded < 3 * file,
        "seed sent {seed_uploaded} bytes, more than 3 copies"
    );
    // Virtual time: well below the 24 s the seed would need alone (the P2P bound is 4.8 s).
    let took = sim.now - sim.t0;
    eprintln!("swarm of 4 completed in {took:?} of virtual time");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn corrupt_seed_is_banned_and_download_completes_from_honest_one() {
    let mut sim = Sim::new(
        30 * MIN_CHUNK_SIZE as usize,
        &[Behaviour::Corrupt, Behaviour::Honest],
        1,
        TransferConfig::default(),
    );
    let done = sim.run(Duration::from_secs(600));
    assert!(
        sim.bans.contains(&(2, 0)),
        "corrupt peer not banned: {:?}",
        sim.bans
    );
    assert!(!sim.bans.iter().any(|&(_, p)| p == 1), "honest peer banned");
    // The corrupt seed itself never completes anything new; check the leecher.
    let _ = done;
    assert!(sim.nodes[2].is_complete());
    let m = sim.nodes[2].manifest().clone();
    for i in 0..m.chunk_count() {
        assert_eq!(
            sim.stored[2][i as usize].as_deref(),
            Some(&chunk(&m, &sim.content, i)[..])
        );
    }
}

#[test]
fn silent_peer_times_out_and_chunks_are_fetched_elsewhere() {
    let config = TransferConfig {
        request_timeout: Duration::from_secs(3),
        ..TransferConfig::default()
    };
    let mut sim = Sim::new(
        20 * MIN_CHUNK_SIZE as usize,
        &[Behaviour::Silent, Behaviour::Honest],
        1,
        config,
    );
    sim.run(Duration::from_secs(120));
    assert!(sim.nodes[2].is_complete());
    let asked_silent = sim.requests.iter().filter(|r| r.0 == 2 && r.1 == 0).count();
    assert!(asked_silent > 0, "test never exercised the silent peer");
}

#[test]
fn choked_peer_gets_choked_answer_and_no_data() {
    let data = content(4 * MIN_CHUNK_SIZE as usize);
    let (m, tree) = build(&data);
    let count = m.chunk_count();
    let mut seed = Transfer::new(
        m,
        tree,
        &Bitfield::full(count),
        TransferConfig::default(),
        1,
    );
    let t = Instant::now();
    seed.handle_peer_connected(t, 7u32);
    assert_eq!(seed.handle_chunk_request(t, 7, 0), ChunkAnswer::Choked);
    // Once it says it is interested, a free slot unchokes it at once.
    let info = HaveInfo {
        have: HaveSet::Nothing,
        interested: true,
        choking: true,
    };
    seed.handle_have(t, 7, &info).unwrap();
    assert!(matches!(
        seed.handle_chunk_request(t, 7, 0),
        ChunkAnswer::Serve(_)
    ));
    assert_eq!(
        seed.handle_chunk_request(t, 7, count),
        ChunkAnswer::DontHave
    );
}

#[test]
fn bad_have_bitfield_bans() {
    let data = content(20 * MIN_CHUNK_SIZE as usize);
    let (m, tree) = build(&data);
    let count = m.chunk_count();
    let mut seed = Transfer::new(
        m,
        tree,
        &Bitfield::full(count),
        TransferConfig::default(),
        1,
    );
    let t = Instant::now();
    let info = HaveInfo {
        have: HaveSet::Bits(serde_bytes::ByteBuf::from(vec![0xff; 1])),
        interested: true,
        choking: true,
    };
    assert_eq!(
        seed.handle_have(t, 3u32, &info),
        Err(TransferError::BadHave)
    );
    assert!(seed.is_banned(&3));
    let mut saw_ban = false;
    while let Some(a) = seed.poll_action() {
        saw_ban |= matches!(a, Action::Ban { peer: 3, .. });
    }
    assert!(saw_ban);
}

#[test]
fn same_seeds_give_the_same_run() {
    let run = || {
        let mut sim = Sim::new(
            40 * MIN_CHUNK_SIZE as usize,
            &[Behaviour::Honest],
            3,
            TransferConfig::default(),
        );
        sim.run(Duration::from_secs(600));
        (sim.requests.clone(), sim.now - sim.t0)
    };
    assert_eq!(run(), run());
}

#[test]
fn stored_chunks_are_not_refetched() {
    let mut sim = Sim::new(
        50 * MIN_CHUNK_SIZE as usize,
        &[Behaviour::Honest],
        2,
        TransferConfig::default(),
    );
    assert!(sim.run(Duration::from_secs(600)));
    // Outside endgame a leecher fetches each chunk once; endgame may duplicate only the tail.
    let chunks = 50;
    for leecher in [1u32, 2] {
        let mut per_chunk = BTreeMap::new();
        for r in sim.fetched.iter().filter(|r| r.0 == leecher) {
            *per_chunk.entry(r.2).or_insert(0u32) += 1;
        }
        assert_eq!(per_chunk.len(), chunks, "leecher {leecher} missed chunks");
        let dup = per_chunk.values().filter(|&&n| n > 1).count();
        assert!(
            dup <= 2 * TransferConfig::default().pipeline_depth,
            "leecher {leecher} refetched {dup} chunks"
        );
        assert!(
            per_chunk.values().all(|&n| n <= MAX_REQUESTS_PER_CHUNK),
            "leecher {leecher} fetched some chunk more than twice"
        );
        // Asks answered "choked" or "don't have" (the seed offers each chunk once
        // before any twice) are asked again elsewhere, but they stay few.
        let asks = sim.requests.iter().filter(|r| r.0 == leecher).count();
        assert!(
            asks <= chunks * 3 / 2,
            "leecher {leecher} sent {asks} requests for {chunks} chunks"
        );
    }
}

#[test]
fn endgame_rescues_the_tail_from_a_slow_peer_with_few_duplicates() {
    let mut sim = Sim::new(
        100 * MIN_CHUNK_SIZE as usize,
        &[Behaviour::Honest, Behaviour::Honest],
        1,
        TransferConfig::default(),
    );
    // Seed 0 sends one chunk a second, seed 1 a hundred.
    sim.uplink[0].0 = Some(u64::from(MIN_CHUNK_SIZE));
    sim.uplink[1].0 = Some(100 * u64::from(MIN_CHUNK_SIZE));
    assert!(sim.run(Duration::from_secs(600)));
    let took = sim.now - sim.t0;
    let mut per_chunk = BTreeMap::new();
    for r in sim.requests.iter().filter(|r| r.0 == 2) {
        *per_chunk.entry(r.2).or_insert(0u32) += 1;
    }
    let dup = per_chunk.values().filter(|&&n| n > 1).count();
    eprintln!("completed in {took:?} of virtual time with {dup} duplicate requests");
    // Without the endgame the last chunks would wait on seed 0, a second each.
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    let slow_depth = TransferConfig::default().min_pipeline_depth;
    assert!(
        dup <= slow_depth + 1,
        "{dup} duplicate requests; only the slow peer's few should be"
    );
}

/// Chunks the leechers of `sim` (nodes after the `seeds`) asked for more than once.
fn asked_twice(sim: &Sim, seeds: u32) -> usize {
    let mut per_chunk = BTreeMap::new();
    for r in sim.requests.iter().filter(|r| r.0 >= seeds) {
        *per_chunk.entry((r.0, r.2)).or_insert(0u32) += 1;
    }
    per_chunk.values().filter(|&&n| n > 1).count()
}

#[test]
fn endgame_asks_twice_only_for_overdue_chunks() {
    // Three seeds at the same modest rate, one leecher: nothing is late, so
    // the endgame has no reason to fetch anything twice.
    let run = |config: TransferConfig| {
        let mut sim = Sim::new(
            120 * MIN_CHUNK_SIZE as usize,
            &[Behaviour::Honest; 3],
            1,
            config,
        );
        for k in 0..3 {
            sim.uplink[k].0 = Some(20 * u64::from(MIN_CHUNK_SIZE));
        }
        assert!(sim.run(Duration::from_secs(600)));
        asked_twice(&sim, 3)
    };
    let patient = run(TransferConfig::default());
    let eager = run(TransferConfig {
        endgame_patience: Duration::ZERO,
        ..TransferConfig::default()
    });
    eprintln!("asked twice: {patient} with patience, {eager} without");
    assert_eq!(patient, 0, "chunks asked for twice though none was overdue");
    assert!(
        eager > 0,
        "the scenario never reached a duplicating endgame"
    );
}

#[test]
fn a_stalled_disk_stops_new_requests_at_the_unwritten_limit() {
    let config = TransferConfig {
        max_unwritten_bytes: 4 * u64::from(MIN_CHUNK_SIZE),
        ..TransferConfig::default()
    };
    let mut sim = Sim::new(
        100 * MIN_CHUNK_SIZE as usize,
        &[Behaviour::Honest],
        1,
        config,
    );
    sim.stalled_disk = Some(1);
    assert!(
        !sim.run(Duration::from_secs(60)),
        "completed without writing"
    );
    let asked = sim.requests.iter().filter(|r| r.0 == 1).count();
    assert!(
        sim.unwritten.len() >= 4,
        "only {} chunks arrived",
        sim.unwritten.len()
    );
    // Requests already in flight when the limit was hit still land; nothing more is asked.
    let depth = TransferConfig::default().pipeline_depth;
    assert!(
        asked <= 4 + depth,
        "{asked} requests with writes stalled; the limit is 4 chunks"
    );
    assert!(asked < 100, "everything was requested");
}

/// A seed of `chunks` minimum-size chunks, with no peers yet.
fn full_seed(chunks: usize) -> Transfer<u32> {
    let data = content(chunks * MIN_CHUNK_SIZE as usize);
    let (manifest, tree) = build(&data);
    let count = manifest.chunk_count();
    Transfer::new(
        manifest,
        tree,
        &Bitfield::full(count),
        TransferConfig::default(),
        1,
    )
}

/// What a new leecher says: nothing held, everything wanted.
fn wants_everything() -> HaveInfo {
    HaveInfo {
        have: HaveSet::Nothing,
        interested: true,
        choking: true,
    }
}

#[test]
fn a_slot_freed_by_a_finished_peer_is_given_away_at_once() {
    let t0 = Instant::now();
    let mut seed = full_seed(20);
    let wants = wants_everything();
    // A seed's regular slots and the optimistic one, and two peers left waiting.
    let slots = ChokerConfig::default().seed_slots + 1;
    let peers = slots as u32 + 2;
    for peer in 1..=peers {
        seed.handle_peer_connected(t0, peer);
        seed.handle_have(t0, peer, &wants).unwrap();
    }
    let unchoked = |s: &Transfer<u32>| {
        (1..=peers)
            .filter(|p| !s.have_info(p).choking)
            .collect::<Vec<_>>()
    };
    let before = unchoked(&seed);
    assert_eq!(
        before.len(),
        slots,
        "every regular slot and the optimistic one"
    );
    // One of them finishes (from elsewhere) and says so, well before the 10 s round.
    let done = before[0];
    let finished = HaveInfo {
        have: HaveSet::Everything,
        interested: false,
        choking: true,
    };
    let t1 = t0 + Duration::from_millis(300);
    seed.handle_have(t1, done, &finished).unwrap();
    let after = unchoked(&seed);
    let serving: Vec<u32> = after.iter().copied().filter(|&p| p != done).collect();
    assert_eq!(
        serving.len(),
        slots,
        "the freed slot went unused until the next round: {after:?}"
    );
}

#[test]
fn a_peer_that_stops_reading_loses_its_slot_until_its_penalty_ends() {
    let t0 = Instant::now();
    let mut seed = full_seed(20);
    let wants = wants_everything();
    // Every slot taken and one peer waiting.
    let slots = ChokerConfig::default().seed_slots + 1;
    let peers = slots as u32 + 1;
    for peer in 1..=peers {
        seed.handle_have(t0, peer, &wants).unwrap();
    }
    let unchoked = |s: &Transfer<u32>| {
        (1..=peers)
            .filter(|p| !s.have_info(p).choking)
            .collect::<Vec<_>>()
    };
    let before = unchoked(&seed);
    assert_eq!(before.len(), slots);
    let staller = before[0];
    let t1 = t0 + Duration::from_secs(1);
    seed.handle_upload_stalled(t1, staller, t1 + Duration::from_secs(30));
    let after = unchoked(&seed);
    assert!(!after.contains(&staller), "the staller kept its slot");
    assert_eq!(
        after.len(),
        slots,
        "its slot went to the waiting peer: {after:?}"
    );
    assert!(matches!(
        seed.handle_chunk_request(t1, staller, 0),
        ChunkAnswer::Choked
    ));
    // Rechokes during the penalty never pick it, however often they run.
    let mut t = t1;
    for _ in 0..2 {
        t += Duration::from_secs(11);
        seed.handle_timeout(t);
        assert!(!unchoked(&seed).contains(&staller));
    }
    // Once it is over the staller competes again: others leave and it gets a slot.
    let t2 = t1 + Duration::from_secs(31);
    for p in (1..=peers).filter(|&p| p != staller) {
        seed.handle_peer_disconnected(t2, p);
    }
    seed.handle_timeout(t2 + Duration::from_secs(11));
    assert_eq!(unchoked(&seed), vec![staller]);
}

#[test]
fn asking_again_for_a_delivered_chunk_gets_a_peer_choked() {
    let t0 = Instant::now();
    let mut seed = full_seed(8);
    let wants = wants_everything();
    seed.handle_have(t0, 1u32, &wants).unwrap();
    assert!(matches!(
        seed.handle_chunk_request(t0, 1, 3),
        ChunkAnswer::Serve(_)
    ));
    seed.handle_chunk_delivered(1, 3);
    // Another chunk is fine; the same one again is not.
    assert!(matches!(
        seed.handle_chunk_request(t0, 1, 4),
        ChunkAnswer::Serve(_)
    ));
    assert_eq!(
        seed.handle_chunk_request(t0, 1, 3),
        ChunkAnswer::AlreadySent
    );
    assert_eq!(seed.handle_chunk_request(t0, 1, 4), ChunkAnswer::Choked);
    // A reconnected peer starts afresh (it may have lost unsaved chunks).
    let t1 = t0 + Duration::from_secs(31);
    seed.handle_peer_disconnected(t1, 1);
    seed.handle_have(t1, 1, &wants).unwrap();
    assert!(matches!(
        seed.handle_chunk_request(t1, 1, 3),
        ChunkAnswer::Serve(_)
    ));
}

#[test]
fn after_a_session_reset_asking_again_is_no_offence() {
    let t0 = Instant::now();
    let mut seed = full_seed(8);
    seed.handle_have(t0, 1u32, &wants_everything()).unwrap();
    assert!(matches!(
        seed.handle_chunk_request(t0, 1, 3),
        ChunkAnswer::Serve(_)
    ));
    seed.handle_chunk_delivered(1, 3);
    // The stream it went out on broke: it may never have arrived.
    seed.handle_session_reset(1);
    assert!(matches!(
        seed.handle_chunk_request(t0, 1, 3),
        ChunkAnswer::Serve(_)
    ));
}

/// A seed (our peer 0) and a newcomer `me` (the seed's peer 100) that knows
/// the seed's holdings, over 20 chunks; `store_chunk_0` has `me` fetch and store chunk 0.
struct SeedAndMe {
    data: Vec<u8>,
    manifest: Manifest,
    count: u32,
    config: TransferConfig,
    seed: Transfer<u32>,
    me: Transfer<u32>,
}

impl SeedAndMe {
    fn new(t0: Instant) -> Self {
        let data = content(20 * MIN_CHUNK_SIZE as usize);
        let (manifest, tree) = build(&data);
        let count = manifest.chunk_count();
        let config = TransferConfig::default();
        let mut seed = Transfer::new(
            manifest.clone(),
            tree,
            &Bitfield::full(count),
            config.clone(),
            1,
        );
        let mut me = Transfer::new(
            manifest.clone(),
            MerkleTree::with_root(manifest.root, count),
            &Bitfield::new(count),
            config.clone(),
            2,
        );
        seed.handle_peer_connected(t0, 100);
        seed.handle_have(t0, 100, &wants_everything()).unwrap();
        me.handle_peer_connected(t0, 0);
        me.handle_have(t0, 0, &seed.have_info(&100)).unwrap();
        Self {
            data,
            manifest,
            count,
            config,
            seed,
            me,
        }
    }

    fn store_chunk_0(&mut self, t: Instant) {
        let ChunkAnswer::Serve(proof) = self.seed.handle_chunk_request(t, 100, 0) else {
            panic!("seed should serve");
        };
        let chunk0 = chunk(&self.manifest, &self.data, 0);
        assert_eq!(
            self.me.handle_chunk(t, 0, 0, &chunk0, &proof.to_bytes()),
            Ok(ChunkVerdict::Store)
        );
        self.me.handle_chunk_stored(t, 0);
    }
}

#[test]
fn news_of_a_chunk_skips_peers_that_want_it_but_are_choked() {
    let t0 = Instant::now();
    let mut fx = SeedAndMe::new(t0);
    let config = fx.config.clone();
    // Peer 0 is the seed; peers 1..=7 have nothing and want what we get.
    let me = &mut fx.me;
    for p in 1..=7u32 {
        me.handle_peer_connected(t0, p);
        me.handle_have(t0, p, &wants_everything()).unwrap();
    }
    while me.poll_action().is_some() {}
    let choked: Vec<u32> = (1..=7u32).filter(|p| me.have_info(p).choking).collect();
    assert_eq!(choked.len(), 2, "5 of 7 interested peers get a slot");

    let t1 = t0 + Duration::from_millis(10);
    fx.store_chunk_0(t1);
    let me = &mut fx.me;
    me.handle_timeout(t1 + config.have_batch_delay);
    let mut told = BTreeSet::new();
    while let Some(a) = me.poll_action() {
        if let Action::SendHave { peer, .. } = a {
            told.insert(peer);
        }
    }
    for p in 1..=7u32 {
        let expect = !choked.contains(&p);
        assert_eq!(
            told.contains(&p),
            expect,
            "peer {p}: told {told:?}, choked {choked:?}"
        );
    }
}

#[test]
fn news_that_changes_interest_goes_out_at_once_the_rest_waits_for_the_batch() {
    let t0 = Instant::now();
    let mut fx = SeedAndMe::new(t0);
    let (count, config) = (fx.count, fx.config.clone());
    let me = &mut fx.me;
    // Peer 1 wants what we get (and may get a slot); peer 2 has nothing and is
    // not interested in us yet; peer 3 holds only chunk 0, so we are interested
    // in it until we hold chunk 0 ourselves.
    let mut only_0 = Bitfield::new(count);
    only_0.set(0);
    let infos = [
        (1u32, wants_everything()),
        (
            2,
            HaveInfo {
                have: HaveSet::Nothing,
                interested: false,
                choking: true,
            },
        ),
        (
            3,
            HaveInfo {
                have: HaveSet::from_bitfield(&only_0),
                interested: false,
                choking: true,
            },
        ),
    ];
    for (p, info) in &infos {
        me.handle_peer_connected(t0, *p);
        me.handle_have(t0, *p, info).unwrap();
    }
    while me.poll_action().is_some() {}
    assert!(me.have_info(&3).interested && !me.have_info(&1).choking);

    let t1 = t0 + Duration::from_millis(10);
    fx.store_chunk_0(t1);
    let me = &mut fx.me;
    let mut told_now = BTreeMap::new();
    while let Some(a) = me.poll_action() {
        if let Action::SendHave { peer, info } = a {
            told_now.insert(peer, info);
        }
    }
    // Peer 2 can become interested in us: told at once, with chunk 0.
    let to_2 = told_now.get(&2).expect("peer 2 not told at once");
    assert!(to_2.have.to_bitfield(count).unwrap().get(0));
    // Our interest in peer 3 ended: told at once, so its slot can go elsewhere.
    assert!(
        !told_now
            .get(&3)
            .expect("peer 3 not told at once")
            .interested
    );
    // Peer 1 was already interested: its news waits for the batch.
    assert!(!told_now.contains_key(&1), "told {told_now:?}");
    me.handle_timeout(t1 + config.have_batch_delay);
    let mut told_later = BTreeSet::new();
    while let Some(a) = me.poll_action() {
        if let Action::SendHave { peer, .. } = a {
            told_later.insert(peer);
        }
    }
    assert!(told_later.contains(&1), "unchoked peer 1 never told");
}

mod returning_peer;
mod seeder_leaves;
