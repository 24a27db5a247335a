//! The event loop: one task owning the libp2p swarm, the session streams and
//! every content's `Transfer`, driven by swarm events, stream events, client
//! commands, disk completions and timers.
//!
//! Each job has its own file: [`lifecycle`] (client commands, each
//! content's start, activation, ticks and completion), [`discovery`] (bootstrap, DHT, peer exchange), [`fetch`]
//! (what we ask of peers and their answers), [`serve`] (what peers ask of
//! us, uploads, strikes), [`disk`] (blocking work and its completions). The
//! decisions live in sans-IO parts: `protocol::transfer`, [`session`] and
//! [`content`].

pub mod config;
pub mod content;
mod control;
mod discovery;
mod disk;
mod fetch;
mod lifecycle;
mod nat;
mod serve;
pub mod session;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::kad;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm};
use protocol::{ChunkIndex, ContentId};
use tokio::sync::{mpsc, oneshot};

pub use config::EngineConfig;
pub use nat::NatConfig;

use crate::behaviour::{Behaviour, BehaviourEvent};
use crate::client::Command;
use crate::metrics::{Metrics, Tracker};
use crate::strikes::{Strikes, Verdict};
use crate::uploads::{UploadLimits, UploadQueue};
use crate::wire::streams::{Shared, StreamEvent, Streams};
use content::{Content, Phase};
use disk::IoDone;
use serve::Upload;
use session::{SessionConfig, Sessions};

/// Stream events buffered for the loop; full, it slows the peers' readers.
const STREAM_EVENTS: usize = 1024;

/// The loop's state.
pub struct Engine {
    swarm: Swarm<Behaviour>,
    config: EngineConfig,
    commands: mpsc::Receiver<Command>,
    io_tx: mpsc::Sender<IoDone>,
    io_rx: mpsc::Receiver<IoDone>,
    streams: Streams,
    stream_rx: mpsc::Receiver<StreamEvent>,
    sessions: Sessions<PeerId>,
    contents: HashMap<ContentId, Content>,
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
    banned: VecDeque<PeerId>,
    banned_set: HashSet<PeerId>,
    /// Uploads by token (reported back by the writer once sent).
    uploads: UploadQueue<PeerId, u64, Upload>,
    next_token: u64,
    connected: HashSet<PeerId>,
    seed: u64,
    limits: Arc<crate::wire::WireLimits>,
    /// Misbehaviour per peer and the blocks it earned.
    strikes: Strikes<PeerId>,
    /// Chunk answers being written, to note what each peer received.
    delivering: HashMap<u64, (ContentId, ChunkIndex)>,
    /// Peers whose writer queue overflowed during this event; their sessions
    /// are dropped once it is handled.
    stalled: Vec<PeerId>,
    /// Peers whose writer was found closed during this event.
    dead_writers: Vec<PeerId>,
    /// Metrics the loop updates.
    metrics: Tracker,
    /// Reachability, relays, hole punches (see [`nat`]).
    nat: nat::NatState,
}

impl Engine {
    pub(crate) fn new(
        mut swarm: Swarm<Behaviour>,
        config: EngineConfig,
        shared: Arc<Shared>,
        commands: mpsc::Receiver<Command>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let (io_tx, io_rx) = mpsc::channel(1024);
        let (stream_tx, stream_rx) = mpsc::channel(STREAM_EVENTS);
        let control = swarm.behaviour_mut().stream.new_control();
        let limits = shared.limits.clone();
        let streams = Streams::start(control, shared, stream_tx)?;
        let seed = u64::from_le_bytes(
            swarm.local_peer_id().to_bytes()[..8]
                .try_into()
                .unwrap_or([7; 8]),
        ) ^ rand::random::<u64>();
        let strikes = Strikes::new(config.max_strikes, config.strike_block);
        let nat = nat::NatState::new(config.nat.clone());
        let uploads = UploadQueue::new(UploadLimits {
            max_waiting: config.max_queued_uploads,
            max_waiting_per_peer: config.max_queued_uploads_per_peer,
            max_active_bytes: config.max_active_upload_bytes,
            max_active_bytes_per_peer: config.max_active_upload_bytes_per_peer,
            min_active_per_peer: config.min_active_uploads_per_peer,
        });
        let sessions = Sessions::new(SessionConfig {
            ask_timeout: config.ask_timeout,
            idle_after: config.session_idle,
            ..SessionConfig::default()
        });
        Ok(Self {
            swarm,
            config,
            commands,
            io_tx,
            io_rx,
            streams,
            stream_rx,
            sessions,
            contents: HashMap::new(),
            provider_queries: HashMap::new(),
            announce_queries: HashMap::new(),
            listen_addrs: Vec::new(),
            listen_waiters: Vec::new(),
            bootstrap_dials: HashSet::new(),
            bootstrap_ok: 0,
            bootstrap_failed: Vec::new(),
            bootstrap_waiters: Vec::new(),
            peer_addrs: HashMap::new(),
            banned: VecDeque::new(),
            banned_set: HashSet::new(),
            uploads,
            next_token: 0,
            connected: HashSet::new(),
            seed,
            limits,
            strikes,
            delivering: HashMap::new(),
            stalled: Vec::new(),
            dead_writers: Vec::new(),
            metrics: Tracker::new(metrics),
            nat,
        })
    }

    /// Runs until shut down; saves resume state on the way out.
    pub async fn run(mut self) {
        self.start_bootstrap();
        self.start_nat();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.next_deadline();
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
                Some(ev) = self.stream_rx.recv() => {
                    self.nat_count(&ev);
                    self.on_stream_event(ev);
                }
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
                // Contents and sessions need the tick (progress, saves, searches, idle
                // sessions); an idle node sleeps.
                _ = tick.tick(), if !self.contents.is_empty() || !self.sessions.is_empty() => self.on_tick(),
            }
            self.handle_stalled();
            self.metrics.prune_if_changed(&self.contents);
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
            .chain(self.sessions.poll_timeout())
            .chain(self.nat.poll_timeout())
            .min()
            .map_or(far, |t| t.min(far))
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        self.metrics.record_swarm(&ev);
        self.nat_observe(&ev);
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => self.on_new_listen_addr(address),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                self.connected.insert(peer_id);
                self.metrics.set_connected(self.connected.len());
                if num_established.get() == 1 {
                    let ids: Vec<ContentId> = self.contents.keys().copied().collect();
                    for id in ids {
                        self.probe_swarm_peer(id, peer_id);
                    }
                }
                self.on_bootstrap_connected(connection_id);
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                self.on_bootstrap_failed(connection_id, error.to_string());
                tracing::debug!(?peer_id, "dial failed: {error}");
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                ..
            } => {
                if num_established == 0 {
                    self.connected.remove(&peer_id);
                    self.metrics.set_connected(self.connected.len());
                    self.on_peer_gone(peer_id);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(ev)) => self.on_identify(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(ev)) => self.on_kad(ev),
            _ => {}
        }
    }

    /// `peer` is gone (disconnected or banned): its session, uploads and
    /// swarm memberships end.
    fn on_peer_gone(&mut self, peer: PeerId) {
        self.streams.close(&peer);
        self.end_session(peer);
        self.uploads.remove_peer(&peer);
        self.uploads.finish_peer(&peer);
        self.leave_swarms(peer);
        self.pump_uploads();
    }

    fn ban(&mut self, peer: PeerId) {
        if self.banned_set.insert(peer) {
            self.metrics.banned();
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
        for c in self.contents.values_mut() {
            c.providers.remove(&peer);
        }
        self.on_peer_gone(peer);
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

    fn on_timers(&mut self) {
        let now = Instant::now();
        self.release_penalty_box(now);
        self.nat_timer(now);
        for (peer, what) in self.sessions.handle_timeout(now) {
            tracing::debug!(%peer, ?what, "ask timed out");
            self.ask_failed(peer, what);
        }
        let ids: Vec<ContentId> = self.contents.keys().copied().collect();
        for id in ids {
            if let Some(a) = self.contents.get_mut(&id).and_then(Content::active_mut) {
                if a.transfer.poll_timeout().is_some_and(|t| t <= now) {
                    a.transfer.handle_timeout(now);
                }
            }
            self.drive(id);
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        for peer in self.sessions.idle(now) {
            tracing::debug!(%peer, "closing an idle session");
            self.streams.close(&peer);
            self.end_session(peer);
        }
        let ids: Vec<ContentId> = self.contents.keys().copied().collect();
        for id in ids {
            self.tick_content(now, id);
        }
        if self.metrics.unchoked_due(now) {
            let unchoked = self
                .contents
                .values()
                .filter_map(|c| match &c.phase {
                    Phase::Active(a) => Some(a),
                    _ => None,
                })
                .flat_map(|a| {
                    let t = &a.transfer;
                    t.peers()
                        .filter(|p| t.peer_stats(p).is_some_and(|s| !s.choked_by_us))
                });
            self.metrics.set_unchoked(unchoked);
        }
        self.metrics.prune(&self.contents);
    }
}
