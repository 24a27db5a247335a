//! The event loop: one task owning the libp2p swarm and every content's
//! `Transfer`, driven by swarm events, client commands, disk completions and
//! timers (the rust-libp2p file-sharing shape, without its panics).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::kad::{self, GetProvidersOk, QueryResult};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, InboundRequestId, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{identify, Multiaddr, PeerId, Swarm};
use protocol::merkle::MerkleTree;
use protocol::transfer::{Action, ChunkAnswer, ChunkVerdict, Transfer, TransferConfig};
use protocol::wire::{PeerRecord, Request, Response, MAX_ADDRS_PER_PEER, MAX_PEERS_PER_MESSAGE};
use protocol::{ChunkIndex, ContentId, Manifest};
use serde_bytes::ByteBuf;
use tokio::sync::{mpsc, oneshot};

use crate::behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL};
use crate::client::{Command, GetEvent, Outcome, Stats};
use crate::codec::{Asked, Reply, WireLimits};
use crate::storage::{Opened, Storage};
use crate::strikes::{Strikes, Verdict};
use crate::uploads::{UploadLimits, UploadQueue};

/// First wait between peer searches (DHT lookup plus peer exchange) of an active swarm.
const MIN_SEARCH_INTERVAL: Duration = Duration::from_secs(1);
/// Longest wait between peer searches while we still want more peers.
const MAX_SEARCH_INTERVAL: Duration = Duration::from_secs(30);

/// How a node's event loop behaves.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Bootstrap peers to dial on start.
    pub bootstrap: Vec<Multiaddr>,
    /// Per-content transfer tunables.
    pub transfer: TransferConfig,
    /// Give up finding providers for a `get` after this long.
    pub find_timeout: Duration,
    /// Treat our listen addresses as reachable (LANs, loopback testnets).
    pub listen_addrs_are_external: bool,
    /// Target number of peers per content before peer exchange stops asking.
    pub wanted_peers: usize,
    /// Save resume state at most this often.
    pub save_interval: Duration,
    /// Most uploads (chunks and manifests) queued for a slot; beyond it
    /// requests are answered "choked".
    pub max_queued_uploads: usize,
    /// Most uploads queued for one peer (a little over a pipeline's depth).
    pub max_queued_uploads_per_peer: usize,
    /// Most upload bytes being read or sent at once (queued uploads are served
    /// neediest peer first, equals taking turns).
    pub max_active_upload_bytes: u64,
    /// Most upload bytes being read or sent to one peer at once, so a few
    /// peers that stop reading cannot hold the whole budget.
    pub max_active_upload_bytes_per_peer: u64,
    /// A peer that stalls an upload is choked for this long.
    pub stall_penalty: Duration,
    /// After this many strikes (stalled uploads, requests stuck mid-frame,
    /// oversize or malformed frames) a peer is disconnected and refused for `strike_block`.
    pub max_strikes: u32,
    /// How long a peer that kept misbehaving is refused.
    pub strike_block: Duration,
    /// Most peers remembered as banned (the oldest are forgotten first).
    pub max_banned_peers: usize,
    /// Most peers whose listen addresses we keep for peer exchange.
    pub max_known_peer_addrs: usize,
    /// Most providers remembered per content.
    pub max_providers_per_content: usize,
    /// Most peers asked for a manifest at once while searching.
    pub max_manifest_asks: usize,
    /// Fault injection for tests: flip a bit in every chunk we upload, so
    /// peers' verification and banning can be exercised. Never set it otherwise.
    #[doc(hidden)]
    pub corrupt_uploads: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            bootstrap: Vec::new(),
            transfer: TransferConfig::default(),
            find_timeout: Duration::from_secs(60),
            listen_addrs_are_external: true,
            wanted_peers: 40,
            save_interval: Duration::from_secs(1),
            max_queued_uploads: 4096,
            max_queued_uploads_per_peer: 64,
            max_active_upload_bytes: 32 << 20,
            max_active_upload_bytes_per_peer: 8 << 20,
            stall_penalty: Duration::from_secs(30),
            max_strikes: 3,
            strike_block: Duration::from_secs(60),
            max_banned_peers: 10_000,
            max_known_peer_addrs: 10_000,
            max_providers_per_content: 1000,
            max_manifest_asks: 8,
            corrupt_uploads: false,
        }
    }
}

/// An upload waiting for its turn.
struct Upload {
    id: ContentId,
    what: Serve,
    channel: ResponseChannel<Reply>,
    request: InboundRequestId,
}

/// What an upload sends.
enum Serve {
    /// A chunk (read from disk when its turn comes) and its proof.
    Chunk { index: ChunkIndex, proof: Vec<u8> },
    /// The manifest's shared, pre-encoded response.
    Manifest,
}

/// Results of blocking disk work, sent back to the loop.
enum IoDone {
    Read {
        peer: PeerId,
        upload: Upload,
        result: std::io::Result<Vec<u8>>,
    },
    Written {
        id: ContentId,
        index: ChunkIndex,
        result: std::io::Result<()>,
    },
    Opened {
        id: ContentId,
        result: Result<Opened, String>,
    },
    Finished {
        id: ContentId,
        result: Result<PathBuf, String>,
    },
    Saved {
        id: ContentId,
    },
    /// A manifest received from `peer`, decoded and checked off the loop.
    ManifestChecked {
        id: ContentId,
        peer: PeerId,
        result: Result<Manifest, protocol::manifest::ManifestError>,
    },
}

/// What an outstanding request of ours was for.
#[derive(Clone, Copy)]
enum Pending {
    Manifest(ContentId),
    Have(ContentId),
    Chunk(ContentId, ChunkIndex),
    Peers(ContentId),
}

enum Phase {
    /// Looking for providers and a manifest.
    Searching {
        out_dir: PathBuf,
        asked: HashSet<PeerId>,
        /// A received manifest is being checked; others wait (their askers are asked again).
        checking: bool,
    },
    /// The manifest arrived; storage is being opened (and re-checked).
    Opening { manifest: Manifest },
    /// Exchanging chunks.
    Active(Box<Active>),
}

struct Active {
    transfer: Transfer<PeerId>,
    storage: Arc<RwLock<Storage>>,
    /// `Response::Manifest` with the exact bytes behind the ID, encoded once.
    manifest_frame: Arc<[u8]>,
    dirty: bool,
    saving: bool,
    last_save: Instant,
    finished: bool,
}

struct Content {
    phase: Phase,
    events: Option<mpsc::Sender<GetEvent>>,
    /// Whoever waits for this download's end; told exactly once.
    waiters: Vec<oneshot::Sender<Outcome>>,
    providers: HashSet<PeerId>,
    search_deadline: Option<Instant>,
    query_running: bool,
    next_search: Instant,
    /// Wait before the next peer search while active: short while a swarm
    /// forms, doubling up to `MAX_SEARCH_INTERVAL`.
    search_interval: Duration,
    announced: bool,
    next_announce: Option<Instant>,
}

impl Content {
    /// Tells every waiter how the download ended (exactly once each).
    fn end(&mut self, outcome: Outcome) {
        for w in self.waiters.drain(..) {
            let _ = w.send(outcome.clone());
        }
    }
}

/// The loop's state.
pub struct Engine {
    swarm: Swarm<Behaviour>,
    config: EngineConfig,
    commands: mpsc::Receiver<Command>,
    io_tx: mpsc::Sender<IoDone>,
    io_rx: mpsc::Receiver<IoDone>,
    contents: HashMap<ContentId, Content>,
    pending: HashMap<OutboundRequestId, Pending>,
    provider_queries: HashMap<kad::QueryId, ContentId>,
    announce_queries: HashMap<kad::QueryId, ContentId>,
    listen_addrs: Vec<Multiaddr>,
    listen_waiters: Vec<oneshot::Sender<Vec<Multiaddr>>>,
    bootstrap_dials: HashSet<ConnectionId>,
    bootstrap_ok: usize,
    bootstrap_failed: Vec<String>,
    bootstrap_waiters: Vec<oneshot::Sender<Result<usize, String>>>,
    peer_addrs: HashMap<PeerId, Vec<Multiaddr>>,
    /// Banned peers, oldest first, and the same as a set.
    banned: std::collections::VecDeque<PeerId>,
    banned_set: HashSet<PeerId>,
    uploads: UploadQueue<PeerId, InboundRequestId, Upload>,
    connected: HashSet<PeerId>,
    seed: u64,
    limits: Arc<WireLimits>,
    /// Misbehaviour per peer and the blocks it earned.
    strikes: Strikes<PeerId>,
    /// Chunk responses being written, to note what each peer received.
    delivering: HashMap<InboundRequestId, (ContentId, ChunkIndex)>,
}

/// Most download waiters per content (one per `get` of the same ID).
const MAX_WAITERS: usize = 64;

impl Engine {
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        config: EngineConfig,
        limits: Arc<WireLimits>,
        commands: mpsc::Receiver<Command>,
    ) -> Self {
        let (io_tx, io_rx) = mpsc::channel(1024);
        let seed = u64::from_le_bytes(
            swarm.local_peer_id().to_bytes()[..8]
                .try_into()
                .unwrap_or([7; 8]),
        ) ^ rand::random::<u64>();
        let strikes = Strikes::new(config.max_strikes, config.strike_block);
        let uploads = UploadQueue::new(UploadLimits {
            max_waiting: config.max_queued_uploads,
            max_waiting_per_peer: config.max_queued_uploads_per_peer,
            max_active_bytes: config.max_active_upload_bytes,
            max_active_bytes_per_peer: config.max_active_upload_bytes_per_peer,
        });
        Self {
            swarm,
            config,
            commands,
            io_tx,
            io_rx,
            contents: HashMap::new(),
            pending: HashMap::new(),
            provider_queries: HashMap::new(),
            announce_queries: HashMap::new(),
            listen_addrs: Vec::new(),
            listen_waiters: Vec::new(),
            bootstrap_dials: HashSet::new(),
            bootstrap_ok: 0,
            bootstrap_failed: Vec::new(),
            bootstrap_waiters: Vec::new(),
            peer_addrs: HashMap::new(),
            banned: Default::default(),
            banned_set: HashSet::new(),
            uploads,
            connected: HashSet::new(),
            seed,
            limits,
            strikes,
            delivering: HashMap::new(),
        }
    }

    /// Runs until shut down; saves resume state on the way out.
    pub async fn run(mut self) {
        self.start_bootstrap();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.next_deadline();
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Shutdown(reply)) => {
                        self.save_all_now().await;
                        let _ = reply.send(());
                        return;
                    }
                    Some(cmd) => self.on_command(cmd),
                    None => {
                        self.save_all_now().await;
                        return;
                    }
                },
                Some(done) = self.io_rx.recv() => self.on_io(done),
                _ = sleep => self.on_timers(),
                // Contents need the tick (progress, saves, searches); an idle node sleeps.
                _ = tick.tick(), if !self.contents.is_empty() => self.on_tick(),
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(1);
        self.contents
            .values()
            .filter_map(|c| match &c.phase {
                Phase::Active(a) => a.transfer.poll_timeout(),
                _ => None,
            })
            .min()
            .map_or(far, |t| t.min(far))
    }

    // ---- bootstrap and listening ----

    fn start_bootstrap(&mut self) {
        for addr in self.config.bootstrap.clone() {
            let peer = addr.iter().find_map(|p| match p {
                Protocol::P2p(id) => Some(id),
                _ => None,
            });
            if let Some(peer) = peer {
                let bare: Multiaddr = addr
                    .iter()
                    .filter(|p| !matches!(p, Protocol::P2p(_)))
                    .collect();
                self.swarm.behaviour_mut().kad.add_address(&peer, bare);
            }
            let opts = match peer {
                Some(peer) => DialOpts::peer_id(peer)
                    .addresses(vec![addr.clone()])
                    .build(),
                None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
            };
            let cid = opts.connection_id();
            match self.swarm.dial(opts) {
                Ok(()) => {
                    self.bootstrap_dials.insert(cid);
                }
                Err(e) => self.bootstrap_failed.push(format!("{addr}: {e}")),
            }
        }
        self.check_bootstrap_done();
    }

    fn check_bootstrap_done(&mut self) {
        if !self.bootstrap_dials.is_empty() {
            return;
        }
        let result = if !self.config.bootstrap.is_empty() && self.bootstrap_ok == 0 {
            Err(format!(
                "could not reach any bootstrap peer: {}",
                self.bootstrap_failed.join("; ")
            ))
        } else {
            Ok(self.bootstrap_ok)
        };
        for w in self.bootstrap_waiters.drain(..) {
            let _ = w.send(result.clone());
        }
    }

    fn full_addr(&self, addr: &Multiaddr) -> Multiaddr {
        addr.clone()
            .with_p2p(*self.swarm.local_peer_id())
            .unwrap_or_else(|a| a)
    }

    // ---- commands ----

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::ListenAddrs(reply) => {
                if self.listen_addrs.is_empty() {
                    self.listen_waiters.push(reply);
                } else {
                    let addrs = self
                        .listen_addrs
                        .iter()
                        .map(|a| self.full_addr(a))
                        .collect();
                    let _ = reply.send(addrs);
                }
            }
            Command::Bootstrapped(reply) => {
                self.bootstrap_waiters.push(reply);
                self.check_bootstrap_done();
            }
            Command::Share {
                manifest,
                tree,
                storage,
                reply,
            } => {
                let id = manifest.id();
                let have = protocol::Bitfield::full(manifest.chunk_count());
                self.activate(id, manifest, tree, have, storage, None);
                let _ = reply.send(id);
            }
            Command::Get {
                id,
                out_dir,
                events,
                done,
            } => self.start_get(id, out_dir, events, done),
            Command::Stats(reply) => {
                let _ = reply.send(Stats {
                    uploaded: 0,
                    downloaded: 0,
                    connected_peers: self.connected.len(),
                    banned: self.banned.iter().copied().collect(),
                });
            }
            Command::Shutdown(_) => {}
        }
    }

    fn start_get(
        &mut self,
        id: ContentId,
        out_dir: PathBuf,
        events: mpsc::Sender<GetEvent>,
        done: oneshot::Sender<Outcome>,
    ) {
        if let Some(c) = self.contents.get_mut(&id) {
            if let Phase::Active(a) = &c.phase {
                if a.finished && c.waiters.is_empty() {
                    // Finished and moved into place (waiters are told when that happens).
                    let path = a
                        .storage
                        .read()
                        .map(|s| s.final_path().to_path_buf())
                        .map_err(|_| "storage lock poisoned".to_string());
                    let _ = done.send(path);
                    return;
                }
            }
            if c.waiters.len() >= MAX_WAITERS {
                let _ = done.send(Err(format!("too many waiting downloads of {id}")));
                return;
            }
            c.events = Some(events);
            c.waiters.push(done);
            return;
        }
        let now = Instant::now();
        self.contents.insert(
            id,
            Content {
                phase: Phase::Searching {
                    out_dir,
                    asked: HashSet::new(),
                    checking: false,
                },
                events: Some(events),
                waiters: vec![done],
                providers: HashSet::new(),
                search_deadline: Some(now + self.config.find_timeout),
                query_running: false,
                next_search: now,
                search_interval: MIN_SEARCH_INTERVAL,
                announced: false,
                next_announce: None,
            },
        );
        self.search(id);
    }

    fn search(&mut self, id: ContentId) {
        let Some(c) = self.contents.get_mut(&id) else {
            return;
        };
        if c.query_running {
            return;
        }
        c.query_running = true;
        c.next_search = Instant::now() + Duration::from_secs(2);
        let qid = self
            .swarm
            .behaviour_mut()
            .kad
            .get_providers(kad::RecordKey::new(id.as_bytes()));
        self.provider_queries.insert(qid, id);
    }

    fn activate(
        &mut self,
        id: ContentId,
        manifest: Manifest,
        tree: MerkleTree,
        have: protocol::Bitfield,
        storage: Storage,
        events: Option<mpsc::Sender<GetEvent>>,
    ) {
        // Our manifest is canonical (we built it, or accepted only canonical bytes), so
        // its encoding is exactly the bytes behind the ID.
        let manifest_frame: Arc<[u8]> = Response::Manifest {
            bytes: manifest.to_bytes(),
        }
        .encode()
        .into();
        self.limits.allow_bitfield_for(manifest.chunk_count());
        let complete = have.is_full();
        self.seed = self.seed.wrapping_add(1);
        let transfer = Transfer::new(
            manifest,
            tree,
            &have,
            self.config.transfer.clone(),
            self.seed,
        );
        // A partial seed is a seed; zero-byte content is whole from the start.
        let announce_now = complete || transfer.have().count_ones() > 0;
        let providers = self
            .contents
            .get(&id)
            .map(|c| c.providers.clone())
            .unwrap_or_default();
        let events = events.or_else(|| self.contents.get_mut(&id).and_then(|c| c.events.take()));
        let waiters = self
            .contents
            .get_mut(&id)
            .map(|c| std::mem::take(&mut c.waiters))
            .unwrap_or_default();
        let content = Content {
            phase: Phase::Active(Box::new(Active {
                transfer,
                storage: Arc::new(RwLock::new(storage)),
                manifest_frame,
                dirty: false,
                saving: false,
                last_save: Instant::now(),
                finished: false,
            })),
            events,
            waiters,
            providers: providers.clone(),
            search_deadline: None,
            query_running: false,
            next_search: Instant::now() + MIN_SEARCH_INTERVAL,
            search_interval: MIN_SEARCH_INTERVAL,
            announced: false,
            next_announce: None,
        };
        self.contents.insert(id, content);
        if announce_now {
            self.announce(id);
        }
        let now = Instant::now();
        if let Some(Phase::Active(a)) = self.contents.get_mut(&id).map(|c| &mut c.phase) {
            for p in providers {
                if p != *self.swarm.local_peer_id() {
                    a.transfer.handle_peer_connected(now, p);
                }
            }
        }
        if !complete {
            let connected: Vec<PeerId> = self.connected.iter().copied().collect();
            for p in connected {
                self.probe_swarm_peer(id, p);
            }
        }
        if complete {
            // Already whole: finishing moves a download into place (a share is already there).
            self.on_completed(id);
        }
        self.drive(id);
    }

    fn announce(&mut self, id: ContentId) {
        let Some(c) = self.contents.get_mut(&id) else {
            return;
        };
        c.announced = true;
        c.next_announce = Some(Instant::now() + Duration::from_secs(5));
        match self
            .swarm
            .behaviour_mut()
            .kad
            .start_providing(kad::RecordKey::new(id.as_bytes()))
        {
            Ok(qid) => {
                self.announce_queries.insert(qid, id);
            }
            Err(e) => tracing::warn!(%id, "cannot announce: {e}"),
        }
    }

    // ---- driving transfers ----

    fn drive(&mut self, id: ContentId) {
        loop {
            let Some(Phase::Active(a)) = self.contents.get_mut(&id).map(|c| &mut c.phase) else {
                return;
            };
            let Some(action) = a.transfer.poll_action() else {
                return;
            };
            match action {
                Action::SendHave { peer, info } => {
                    self.send(peer, Request::Have { id, info }, Pending::Have(id))
                }
                Action::RequestChunk { peer, index } => self.send(
                    peer,
                    Request::Chunk { id, index },
                    Pending::Chunk(id, index),
                ),
                Action::Ban { peer, reason } => {
                    tracing::warn!(%peer, ?reason, "banning peer");
                    self.ban(peer);
                }
                Action::Announce => {
                    let announced = self.contents.get(&id).is_some_and(|c| c.announced);
                    if !announced {
                        self.announce(id);
                    }
                }
                Action::Completed => self.on_completed(id),
            }
        }
    }

    /// Sends a request and remembers what its answer will be for.
    fn send(&mut self, peer: PeerId, request: Request, pending: Pending) {
        let rid = self
            .swarm
            .behaviour_mut()
            .chunks
            .send_request(&peer, request.into());
        self.pending.insert(rid, pending);
    }

    fn ban(&mut self, peer: PeerId) {
        if self.banned_set.insert(peer) {
            self.banned.push_back(peer);
            // Bounded: the oldest ban is lifted to make room.
            while self.banned.len() > self.config.max_banned_peers.max(1) {
                if let Some(old) = self.banned.pop_front() {
                    self.banned_set.remove(&old);
                    self.swarm.behaviour_mut().blocked.unblock_peer(old);
                }
            }
        }
        self.swarm.behaviour_mut().blocked.block_peer(peer);
        self.uploads.remove_peer(&peer);
        let now = Instant::now();
        let ids: Vec<ContentId> = self.contents.keys().copied().collect();
        for id in ids {
            if let Some(c) = self.contents.get_mut(&id) {
                c.providers.remove(&peer);
                if let Phase::Active(a) = &mut c.phase {
                    a.transfer.handle_peer_disconnected(now, peer);
                }
            }
        }
    }

    fn on_completed(&mut self, id: ContentId) {
        let Some(Phase::Active(a)) = self.contents.get_mut(&id).map(|c| &mut c.phase) else {
            return;
        };
        if a.finished {
            return;
        }
        a.finished = true;
        let storage = a.storage.clone();
        off_loop(&self.io_tx, move || {
            let result = match storage.write() {
                Ok(mut s) => s.finish().map_err(|e| e.to_string()),
                Err(_) => Err("storage lock poisoned".to_string()),
            };
            IoDone::Finished { id, result }
        });
    }

    // ---- swarm events ----

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!("listening on {address}");
                if self.config.listen_addrs_are_external {
                    self.swarm.add_external_address(address.clone());
                }
                self.listen_addrs.push(address);
                let addrs: Vec<Multiaddr> = self
                    .listen_addrs
                    .iter()
                    .map(|a| self.full_addr(a))
                    .collect();
                for w in self.listen_waiters.drain(..) {
                    let _ = w.send(addrs.clone());
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                self.connected.insert(peer_id);
                if num_established.get() == 1 {
                    let ids: Vec<ContentId> = self.contents.keys().copied().collect();
                    for id in ids {
                        self.probe_swarm_peer(id, peer_id);
                    }
                }
                if self.bootstrap_dials.remove(&connection_id) {
                    self.bootstrap_ok += 1;
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                    self.check_bootstrap_done();
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                if self.bootstrap_dials.remove(&connection_id) {
                    self.bootstrap_failed.push(error.to_string());
                    self.check_bootstrap_done();
                }
                tracing::debug!(?peer_id, "dial failed: {error}");
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                ..
            } => {
                if num_established == 0 {
                    self.connected.remove(&peer_id);
                    self.uploads.remove_peer(&peer_id);
                    let now = Instant::now();
                    let ids: Vec<ContentId> = self.contents.keys().copied().collect();
                    for id in ids {
                        if let Some(Phase::Active(a)) =
                            self.contents.get_mut(&id).map(|c| &mut c.phase)
                        {
                            a.transfer.handle_peer_disconnected(now, peer_id);
                        }
                        self.drive(id);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                let speaks_kad = info.protocols.contains(&KAD_PROTOCOL);
                let addrs: Vec<Multiaddr> = info
                    .listen_addrs
                    .into_iter()
                    .take(MAX_ADDRS_PER_PEER)
                    .collect();
                if speaks_kad {
                    for a in &addrs {
                        self.swarm
                            .behaviour_mut()
                            .kad
                            .add_address(&peer_id, a.clone());
                    }
                }
                if self.peer_addrs.len() < self.config.max_known_peer_addrs
                    || self.peer_addrs.contains_key(&peer_id)
                {
                    self.peer_addrs.insert(peer_id, addrs);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(ev)) => self.on_kad(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Chunks(ev)) => self.on_chunks(ev),
            _ => {}
        }
    }

    fn on_kad(&mut self, ev: kad::Event) {
        let kad::Event::OutboundQueryProgressed {
            id: qid,
            result,
            step,
            stats,
        } = ev
        else {
            return;
        };
        match result {
            QueryResult::GetProviders(Ok(GetProvidersOk::FoundProviders { providers, .. })) => {
                let Some(&id) = self.provider_queries.get(&qid) else {
                    return;
                };
                let me = *self.swarm.local_peer_id();
                let fresh: Vec<PeerId> = providers
                    .into_iter()
                    .filter(|p| *p != me && !self.banned_set.contains(p))
                    .collect();
                if let Some(c) = self.contents.get_mut(&id) {
                    if let Some(ev) = &c.events {
                        let _ = ev.try_send(GetEvent::ProvidersFound(fresh.len()));
                    }
                }
                // Contact them now, while the query still holds their addresses.
                for p in fresh {
                    self.add_swarm_peer(id, p);
                }
            }
            QueryResult::GetProviders(_) => {
                if step.last {
                    if let Some(id) = self.provider_queries.remove(&qid) {
                        if let Some(c) = self.contents.get_mut(&id) {
                            c.query_running = false;
                        }
                    }
                }
            }
            QueryResult::StartProviding(res) => {
                let Some(id) = self.announce_queries.remove(&qid) else {
                    return;
                };
                let stored = stats.num_successes();
                match res {
                    Ok(_) if stored > 0 => {
                        tracing::info!(%id, peers = stored, "announced as provider");
                        if let Some(c) = self.contents.get_mut(&id) {
                            c.next_announce = None;
                        }
                    }
                    _ => {
                        // No peer stored the record (e.g. empty routing table yet): retry soon.
                        tracing::debug!(%id, "provider record not stored yet; will retry");
                        if let Some(c) = self.contents.get_mut(&id) {
                            c.next_announce = Some(Instant::now() + Duration::from_secs(2));
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Offers a have exchange to a connected peer that may be in the swarm of
    /// an unfinished download; one that is not answers "unknown content" and
    /// is dropped again. Other leechers are found this way as soon as we are
    /// connected, long before their provider records turn up in a search.
    fn probe_swarm_peer(&mut self, id: ContentId, peer: PeerId) {
        if peer == *self.swarm.local_peer_id() || self.banned_set.contains(&peer) {
            return;
        }
        let Some(Phase::Active(a)) = self.contents.get_mut(&id).map(|c| &mut c.phase) else {
            return;
        };
        if a.finished || a.transfer.peer_count() >= self.config.wanted_peers {
            return;
        }
        a.transfer.handle_peer_connected(Instant::now(), peer);
        self.drive(id);
    }

    /// A peer that is (probably) in swarm `id`: get its manifest or start exchanging.
    fn add_swarm_peer(&mut self, id: ContentId, peer: PeerId) {
        if peer == *self.swarm.local_peer_id() || self.banned_set.contains(&peer) {
            return;
        }
        let Some(c) = self.contents.get_mut(&id) else {
            return;
        };
        c.providers.insert(peer);
        if c.providers.len() > self.config.max_providers_per_content {
            c.providers.remove(&peer);
        }
        match &mut c.phase {
            Phase::Searching { asked, .. } => {
                if asked.len() < self.config.max_manifest_asks && asked.insert(peer) {
                    let rid = self
                        .swarm
                        .behaviour_mut()
                        .chunks
                        .send_request(&peer, Request::Manifest { id }.into());
                    self.pending.insert(rid, Pending::Manifest(id));
                }
            }
            Phase::Opening { .. } => {}
            Phase::Active(a) => {
                if a.transfer.peer_count() < self.config.wanted_peers * 2 {
                    a.transfer.handle_peer_connected(Instant::now(), peer);
                    self.drive(id);
                }
            }
        }
    }

    fn on_chunks(&mut self, ev: request_response::Event<Asked, Reply>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request_id,
                    request,
                    channel,
                } => match request {
                    Asked::Request(request) => self.on_request(peer, request_id, request, channel),
                    Asked::Broken(why) => {
                        // No answer: dropping the channel closes the stream.
                        drop(channel);
                        self.strike(peer, &format!("sent a broken request ({why})"));
                    }
                },
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(p) = self.pending.remove(&request_id) {
                        self.on_response(peer, p, response);
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                let Some(p) = self.pending.remove(&request_id) else {
                    return;
                };
                tracing::debug!(%peer, "request failed: {error}");
                let now = Instant::now();
                match p {
                    Pending::Chunk(id, index) => {
                        if let Some(Phase::Active(a)) =
                            self.contents.get_mut(&id).map(|c| &mut c.phase)
                        {
                            a.transfer.handle_request_failed(now, peer, index);
                        }
                        self.drive(id);
                    }
                    Pending::Manifest(id) => {
                        if let Some(Phase::Searching { asked, .. }) =
                            self.contents.get_mut(&id).map(|c| &mut c.phase)
                        {
                            asked.remove(&peer);
                        }
                    }
                    Pending::Have(_) | Pending::Peers(_) => {}
                }
            }
            request_response::Event::InboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::debug!(%peer, "inbound request failed: {error}");
                self.delivering.remove(&request_id);
                if self.uploads.finished(request_id) {
                    // Only the codec's no-progress deadline counts: libp2p's own timeout also
                    // covers the time the upload waited in our queue, which is not the peer's doing.
                    let stalled = matches!(
                        &error,
                        request_response::InboundFailure::Io(e)
                            if e.kind() == std::io::ErrorKind::TimedOut
                    );
                    if stalled {
                        self.on_upload_stalled(peer);
                    }
                    self.pump_uploads();
                }
            }
            request_response::Event::ResponseSent {
                peer, request_id, ..
            } => {
                if let Some((id, index)) = self.delivering.remove(&request_id) {
                    if let Some(Phase::Active(a)) = self.contents.get_mut(&id).map(|c| &mut c.phase)
                    {
                        a.transfer.handle_chunk_delivered(peer, index);
                    }
                }
                if self.uploads.finished(request_id) {
                    self.pump_uploads();
                }
            }
        }
    }

    fn respond(&mut self, channel: ResponseChannel<Reply>, msg: Response) {
        self.try_respond(channel, msg);
    }

    /// Sends a response; false if its stream is already gone.
    fn try_respond(&mut self, channel: ResponseChannel<Reply>, msg: Response) -> bool {
        self.swarm
            .behaviour_mut()
            .chunks
            .send_response(channel, msg.into())
            .is_ok()
    }

    /// Starts queued uploads, neediest peer first, while the in-progress bytes allow.
    fn pump_uploads(&mut self) {
        // Peers furthest behind go first, so a swarm finishes together rather than one
        // straggler finishing long after the rest.
        loop {
            let contents = &self.contents;
            // What a peer holds by its own word, or at least what we already sent it:
            // claiming to hold nothing must not buy a place at the front for ever.
            let held = |peer: &PeerId, up: &Upload| match contents.get(&up.id).map(|c| &c.phase) {
                Some(Phase::Active(a)) => a.transfer.peer_stats(peer).map_or(0, |s| {
                    let chunk = u64::from(a.transfer.manifest().chunk_size.max(1));
                    u64::from(s.chunks).max(s.uploaded / chunk)
                }),
                _ => 0,
            };
            let Some((peer, bytes, upload)) = self.uploads.next_by(held) else {
                break;
            };
            let Some(Phase::Active(a)) = self.contents.get(&upload.id).map(|c| &c.phase) else {
                self.respond(upload.channel, Response::UnknownContent);
                continue;
            };
            let Upload {
                id,
                what,
                channel,
                request,
            } = upload;
            match what {
                Serve::Manifest => {
                    let frame = Reply::Encoded(a.manifest_frame.clone());
                    if self
                        .swarm
                        .behaviour_mut()
                        .chunks
                        .send_response(channel, frame)
                        .is_ok()
                    {
                        // Counted until sent, so manifest floods share the upload budget.
                        self.uploads.started(peer, request, bytes);
                    }
                }
                Serve::Chunk { index, proof } => {
                    let storage = a.storage.clone();
                    self.uploads.started(peer, request, bytes);
                    let upload = Upload {
                        id,
                        what: Serve::Chunk { index, proof },
                        channel,
                        request,
                    };
                    off_loop(&self.io_tx, move || IoDone::Read {
                        peer,
                        upload,
                        result: with_storage(&storage, |s| s.read_chunk(index)),
                    });
                }
            }
        }
    }

    /// Queues an upload for `peer`, or answers "choked" at once if its queue is full.
    fn queue_upload(&mut self, peer: PeerId, bytes: u64, upload: Upload) {
        match self.uploads.push(peer, bytes, upload) {
            Ok(()) => self.pump_uploads(),
            Err((why, upload)) => {
                tracing::debug!(%peer, ?why, "upload queue full; answering choked");
                self.respond(upload.channel, Response::Choked);
            }
        }
    }

    /// `peer` stopped reading an upload (or let it time out): it is choked
    /// everywhere for a while, and one that keeps doing it is disconnected and
    /// refused for a while.
    fn on_upload_stalled(&mut self, peer: PeerId) {
        let now = Instant::now();
        tracing::info!(%peer, "peer stopped reading an upload; choking it");
        let until = now + self.config.stall_penalty;
        let ids: Vec<ContentId> = self.contents.keys().copied().collect();
        for id in &ids {
            if let Some(Phase::Active(a)) = self.contents.get_mut(id).map(|c| &mut c.phase) {
                a.transfer.handle_upload_stalled(now, peer, until);
            }
        }
        for upload in self.uploads.remove_peer(&peer) {
            self.respond(upload.channel, Response::Choked);
        }
        self.strike(peer, "stalled an upload");
        for id in ids {
            self.drive(id);
        }
    }

    /// Counts one piece of misbehaviour against `peer`; at `max_strikes` it is
    /// disconnected and refused for `strike_block`.
    fn strike(&mut self, peer: PeerId, what: &str) {
        match self.strikes.strike(Instant::now(), peer) {
            Verdict::Counted(count) => tracing::debug!(%peer, count, "strike: peer {what}"),
            verdict => {
                tracing::warn!(%peer, "peer keeps misbehaving ({what}); disconnecting it");
                if verdict == Verdict::Block {
                    self.swarm.behaviour_mut().blocked.block_peer(peer);
                }
                let _ = self.swarm.disconnect_peer_id(peer);
            }
        }
    }

    /// Lets peers whose block for misbehaving has ended connect again (unless banned).
    fn release_penalty_box(&mut self, now: Instant) {
        for peer in self.strikes.release(now) {
            if !self.banned_set.contains(&peer) {
                self.swarm.behaviour_mut().blocked.unblock_peer(peer);
            }
        }
    }

    fn on_request(
        &mut self,
        peer: PeerId,
        request_id: InboundRequestId,
        request: Request,
        channel: ResponseChannel<Reply>,
    ) {
        let id = *request.content_id();
        let now = Instant::now();
        let searching = matches!(
            self.contents.get(&id).map(|c| &c.phase),
            Some(Phase::Searching { .. })
        );
        if searching {
            // A peer in the swarm (have, chunk or peer exchange) may have the manifest;
            // one asking for the manifest is searching too, and asking it back would ping-pong.
            let in_swarm = !matches!(request, Request::Manifest { .. });
            self.respond(channel, Response::UnknownContent);
            if in_swarm {
                self.add_swarm_peer(id, peer);
            }
            return;
        }
        let Some(Phase::Active(a)) = self.contents.get_mut(&id).map(|c| &mut c.phase) else {
            self.respond(channel, Response::UnknownContent);
            return;
        };
        match request {
            Request::Manifest { .. } => {
                let bytes = a.manifest_frame.len() as u64;
                let upload = Upload {
                    id,
                    what: Serve::Manifest,
                    channel,
                    request: request_id,
                };
                self.queue_upload(peer, bytes, upload);
            }
            Request::Have { info, .. } => match a.transfer.handle_have(now, peer, &info) {
                Ok(()) => {
                    let info = a.transfer.have_info(&peer);
                    self.respond(channel, Response::Have(info));
                }
                Err(_) => self.respond(channel, Response::UnknownContent),
            },
            Request::Chunk { index, .. } => match a.transfer.handle_chunk_request(now, peer, index)
            {
                ChunkAnswer::Serve(proof) => {
                    let bytes = u64::from(a.transfer.manifest().chunk_len(index));
                    let upload = Upload {
                        id,
                        what: Serve::Chunk {
                            index,
                            proof: proof.to_bytes(),
                        },
                        channel,
                        request: request_id,
                    };
                    self.queue_upload(peer, bytes, upload);
                }
                ChunkAnswer::Choked => self.respond(channel, Response::Choked),
                ChunkAnswer::AlreadySent => {
                    self.respond(channel, Response::Choked);
                    self.strike(peer, "asked again for a chunk it already got");
                }
                ChunkAnswer::DontHave => self.respond(channel, Response::DontHave),
            },
            Request::Peers { .. } => {
                let peers: Vec<PeerRecord> = a
                    .transfer
                    .peers()
                    .filter(|p| *p != peer)
                    .filter_map(|p| {
                        let addrs = self.peer_addrs.get(&p)?;
                        Some(PeerRecord {
                            peer: p.to_bytes(),
                            addrs: addrs
                                .iter()
                                .take(MAX_ADDRS_PER_PEER)
                                .map(|a| ByteBuf::from(a.to_vec()))
                                .collect(),
                        })
                    })
                    .take(MAX_PEERS_PER_MESSAGE)
                    .collect();
                self.respond(channel, Response::Peers { peers });
            }
        }
        self.drive(id);
    }

    fn on_response(&mut self, peer: PeerId, pending: Pending, reply: Reply) {
        let now = Instant::now();
        let Reply::Message { msg, leaf } = reply else {
            return; // pre-encoded replies only go out
        };
        match pending {
            Pending::Manifest(id) => {
                let Response::Manifest { bytes } = msg else {
                    // Not (yet) holding it, e.g. still searching itself: ask again on a later round.
                    if let Some(Phase::Searching { asked, .. }) =
                        self.contents.get_mut(&id).map(|c| &mut c.phase)
                    {
                        asked.remove(&peer);
                    }
                    return;
                };
                let Some(c) = self.contents.get_mut(&id) else {
                    return;
                };
                let Phase::Searching {
                    checking, asked, ..
                } = &mut c.phase
                else {
                    return;
                };
                if *checking {
                    // One check at a time; this peer is asked again if that one fails.
                    asked.remove(&peer);
                    return;
                }
                *checking = true;
                // Hashing and validating up to 8 MiB is kept off the event loop.
                off_loop(&self.io_tx, move || IoDone::ManifestChecked {
                    id,
                    peer,
                    result: Manifest::from_bytes_for(&id, &bytes),
                });
            }
            Pending::Have(id) => {
                let Some(Phase::Active(a)) = self.contents.get_mut(&id).map(|c| &mut c.phase)
                else {
                    return;
                };
                match msg {
                    Response::Have(info) => {
                        let _ = a.transfer.handle_have(now, peer, &info);
                    }
                    _ => a.transfer.handle_peer_disconnected(now, peer),
                }
                self.drive(id);
            }
            Pending::Chunk(id, index) => {
                let Some(Phase::Active(a)) = self.contents.get_mut(&id).map(|c| &mut c.phase)
                else {
                    return;
                };
                match msg {
                    Response::Chunk { data, proof, .. } => {
                        let leaf = leaf.unwrap_or_else(|| protocol::merkle::hash_leaf(&data));
                        // Verified against the index we asked for, whatever the answer claims.
                        match a.transfer.handle_chunk_hashed(
                            now,
                            peer,
                            index,
                            data.len(),
                            leaf,
                            &proof,
                        ) {
                            Ok(ChunkVerdict::Store) => {
                                let storage = a.storage.clone();
                                off_loop(&self.io_tx, move || IoDone::Written {
                                    id,
                                    index,
                                    result: with_storage(&storage, |s| s.write_chunk(index, &data)),
                                });
                            }
                            Ok(ChunkVerdict::Duplicate) => {}
                            Err(e) => tracing::warn!(%peer, index, "rejected chunk: {e}"),
                        }
                    }
                    Response::Choked => a.transfer.handle_choked(now, peer, index),
                    Response::DontHave => a.transfer.handle_dont_have(now, peer, index),
                    _ => a.transfer.handle_request_failed(now, peer, index),
                }
                self.drive(id);
            }
            Pending::Peers(id) => {
                let Response::Peers { peers } = msg else {
                    return;
                };
                for rec in peers {
                    let Ok(p) = PeerId::from_bytes(&rec.peer) else {
                        continue;
                    };
                    for a in rec.addrs.iter().take(MAX_ADDRS_PER_PEER) {
                        if let Ok(addr) = Multiaddr::try_from(a.to_vec()) {
                            self.swarm.add_peer_address(p, addr);
                        }
                    }
                    self.add_swarm_peer(id, p);
                }
            }
        }
    }

    // ---- disk completions ----

    fn on_io(&mut self, done: IoDone) {
        let now = Instant::now();
        match done {
            IoDone::Read {
                peer,
                upload,
                result,
            } => {
                let Upload {
                    id,
                    what,
                    channel,
                    request,
                } = upload;
                let Serve::Chunk { index, proof } = what else {
                    return;
                };
                let msg = match result {
                    Ok(mut data) => {
                        if self.config.corrupt_uploads {
                            if let Some(b) = data.first_mut() {
                                *b ^= 1;
                            }
                        }
                        if let Some(Phase::Active(a)) =
                            self.contents.get_mut(&id).map(|c| &mut c.phase)
                        {
                            a.transfer.handle_uploaded(now, peer, data.len() as u64);
                        }
                        Response::Chunk { index, data, proof }
                    }
                    Err(e) => {
                        tracing::error!(%id, index, "cannot read chunk to upload: {e}");
                        Response::DontHave
                    }
                };
                let delivered = matches!(msg, Response::Chunk { .. });
                let sent = self.try_respond(channel, msg);
                if sent && delivered {
                    self.delivering.insert(request, (id, index));
                }
                if !sent && self.uploads.finished(request) {
                    // The stream is gone, so no "sent" event will free the slot.
                    self.pump_uploads();
                }
            }
            IoDone::Written { id, index, result } => {
                let Some(Phase::Active(a)) = self.contents.get_mut(&id).map(|c| &mut c.phase)
                else {
                    return;
                };
                match result {
                    Ok(()) => {
                        a.transfer.handle_chunk_stored(now, index);
                        a.dirty = true;
                    }
                    Err(e) => {
                        tracing::error!(%id, index, "cannot write chunk: {e}");
                        a.transfer.handle_chunk_store_failed(now, index);
                        if let Some(c) = self.contents.get_mut(&id) {
                            c.end(Err(format!("cannot write to disk: {e}")));
                        }
                    }
                }
                self.drive(id);
            }
            IoDone::Opened { id, result } => {
                let Some(c) = self.contents.get_mut(&id) else {
                    return;
                };
                let Phase::Opening { manifest } = &c.phase else {
                    return;
                };
                let manifest = manifest.clone();
                match result {
                    Ok(opened) => {
                        tracing::info!(%id, have = opened.have.count_ones(), total = manifest.chunk_count(), "storage ready");
                        self.activate(id, manifest, opened.tree, opened.have, opened.storage, None);
                    }
                    Err(e) => {
                        c.end(Err(e));
                        self.contents.remove(&id);
                    }
                }
            }
            IoDone::Finished { id, result } => {
                let Some(c) = self.contents.get_mut(&id) else {
                    return;
                };
                if let Ok(path) = &result {
                    tracing::info!(%id, "complete: {}", path.display());
                }
                c.end(result);
            }
            IoDone::ManifestChecked { id, peer, result } => {
                let Some(c) = self.contents.get_mut(&id) else {
                    return;
                };
                let Phase::Searching {
                    out_dir, checking, ..
                } = &mut c.phase
                else {
                    return;
                };
                *checking = false;
                match result {
                    Ok(manifest) => {
                        if let Some(ev) = &c.events {
                            let _ = ev.try_send(GetEvent::Manifest(Box::new(manifest.clone())));
                        }
                        let out_dir = out_dir.clone();
                        c.phase = Phase::Opening {
                            manifest: manifest.clone(),
                        };
                        off_loop(&self.io_tx, move || IoDone::Opened {
                            id,
                            result: Storage::open_download(&manifest, &id, &out_dir)
                                .map_err(|e| e.to_string()),
                        });
                    }
                    Err(e) => {
                        tracing::warn!(%peer, "peer sent a bad manifest: {e}");
                        self.ban(peer);
                    }
                }
            }
            IoDone::Saved { id } => {
                if let Some(Phase::Active(a)) = self.contents.get_mut(&id).map(|c| &mut c.phase) {
                    a.saving = false;
                }
            }
        }
    }

    // ---- timers ----

    fn on_timers(&mut self) {
        let now = Instant::now();
        self.release_penalty_box(now);
        let ids: Vec<ContentId> = self.contents.keys().copied().collect();
        for id in ids {
            if let Some(Phase::Active(a)) = self.contents.get_mut(&id).map(|c| &mut c.phase) {
                if a.transfer.poll_timeout().is_some_and(|t| t <= now) {
                    a.transfer.handle_timeout(now);
                }
            }
            self.drive(id);
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        let ids: Vec<ContentId> = self.contents.keys().copied().collect();
        for id in ids {
            let Some(c) = self.contents.get_mut(&id) else {
                continue;
            };
            // Retry announcing until some peer stores our record.
            if c.next_announce.is_some_and(|t| t <= now) {
                self.announce(id);
                continue;
            }
            let Some(c) = self.contents.get_mut(&id) else {
                continue;
            };
            match &mut c.phase {
                Phase::Searching { asked, .. } => {
                    if c.search_deadline.is_some_and(|d| d <= now) {
                        let why = if c.providers.is_empty() {
                            format!(
                                "no providers found for {id} within {:?}; check the ID and that a seeder is running and bootstrapped",
                                self.config.find_timeout
                            )
                        } else {
                            format!(
                                "found {} provider(s) of {id} but none sent its manifest within {:?}",
                                c.providers.len(),
                                self.config.find_timeout
                            )
                        };
                        c.end(Err(why));
                        self.contents.remove(&id);
                        continue;
                    }
                    // Asks that failed are retried from the providers we know, without
                    // waiting for the DHT query (which may run on for its full timeout).
                    let retry: Vec<PeerId> = if asked.is_empty() {
                        c.providers
                            .iter()
                            .take(self.config.max_manifest_asks)
                            .copied()
                            .collect()
                    } else {
                        Vec::new()
                    };
                    let search_due = c.next_search <= now;
                    for p in retry {
                        self.add_swarm_peer(id, p);
                    }
                    if search_due {
                        self.search(id);
                    }
                }
                Phase::Opening { .. } => {}
                Phase::Active(a) => {
                    if let Some(ev) = &c.events {
                        let _ = ev.try_send(GetEvent::Progress {
                            have: a.transfer.have().count_ones(),
                            total: a.transfer.have().len(),
                            peers: a.transfer.peer_count(),
                        });
                    }
                    let need_peers = a.transfer.peer_count() < self.config.wanted_peers;
                    let search_due = c.next_search <= now;
                    let save_due =
                        now.saturating_duration_since(a.last_save) >= self.config.save_interval;
                    if a.dirty && !a.saving && !a.finished && save_due {
                        a.dirty = false;
                        a.last_save = now;
                        a.saving = true;
                        let storage = a.storage.clone();
                        let have = a.transfer.have().clone();
                        let tree = a.transfer.tree().clone();
                        off_loop(&self.io_tx, move || {
                            save_resume_logged(&storage, id, &have, &tree);
                            IoDone::Saved { id }
                        });
                    }
                    if need_peers && search_due {
                        c.next_search = now + c.search_interval;
                        c.search_interval = (c.search_interval * 2).min(MAX_SEARCH_INTERVAL);
                        let peers: Vec<PeerId> = a.transfer.peers().collect();
                        // Peer exchange with one random neighbour, plus a fresh DHT lookup.
                        if !peers.is_empty() {
                            let k = rand::random_range(0..peers.len());
                            let rid = self
                                .swarm
                                .behaviour_mut()
                                .chunks
                                .send_request(&peers[k], Request::Peers { id }.into());
                            self.pending.insert(rid, Pending::Peers(id));
                        }
                        self.search(id);
                    }
                }
            }
        }
    }

    async fn save_all_now(&mut self) {
        let mut jobs = Vec::new();
        for (id, c) in &self.contents {
            if let Phase::Active(a) = &c.phase {
                if a.finished {
                    continue;
                }
                let storage = a.storage.clone();
                let have = a.transfer.have().clone();
                let tree = a.transfer.tree().clone();
                let id = *id;
                jobs.push(tokio::task::spawn_blocking(move || {
                    save_resume_logged(&storage, id, &have, &tree)
                }));
            }
        }
        for j in jobs {
            let _ = j.await;
        }
    }
}

/// Runs blocking work (disk, hashing) off the event loop; what it returns
/// comes back to `on_io`.
fn off_loop(io: &mpsc::Sender<IoDone>, work: impl FnOnce() -> IoDone + Send + 'static) {
    let io = io.clone();
    tokio::task::spawn_blocking(move || {
        let _ = io.blocking_send(work());
    });
}

/// Runs `f` on shared storage; a poisoned lock is an IO error, not a panic.
fn with_storage<T>(
    storage: &RwLock<Storage>,
    f: impl FnOnce(&Storage) -> std::io::Result<T>,
) -> std::io::Result<T> {
    match storage.read() {
        Ok(s) => f(&s),
        Err(_) => Err(std::io::Error::other("storage lock poisoned")),
    }
}

/// Saves resume state; a failure is logged (the next save retries).
fn save_resume_logged(
    storage: &RwLock<Storage>,
    id: ContentId,
    have: &protocol::Bitfield,
    tree: &MerkleTree,
) {
    if let Err(e) = with_storage(storage, |s| s.save_resume(have, tree)) {
        tracing::warn!(%id, "cannot save resume state: {e}");
    }
}
