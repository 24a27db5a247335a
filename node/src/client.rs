//! The handle through which commands reach a running node's event loop.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use libp2p::{Multiaddr, PeerId};
use protocol::merkle::MerkleTree;
use protocol::transfer::Availability;
use protocol::{ContentId, Manifest};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::storage::Storage;
use crate::wire::Counters;

/// Commands from a [`Client`] to the event loop.
pub(crate) enum Command {
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    Bootstrapped(oneshot::Sender<Result<usize, String>>),
    Share {
        manifest: Manifest,
        tree: MerkleTree,
        storage: Storage,
        reply: oneshot::Sender<ContentId>,
    },
    Get {
        id: ContentId,
        out_dir: PathBuf,
        events: mpsc::Sender<GetEvent>,
        done: oneshot::Sender<Outcome>,
    },
    Stats(oneshot::Sender<Stats>),
    List(oneshot::Sender<Vec<ContentStatus>>),
    Stop {
        id: ContentId,
        reply: oneshot::Sender<bool>,
    },
    Peers(oneshot::Sender<Vec<PeerStatus>>),
    Shutdown(oneshot::Sender<()>),
}

/// Progress of a download, as the event loop reports it.
#[derive(Clone, Debug)]
pub enum GetEvent {
    /// Providers were found in the DHT.
    ProvidersFound(usize),
    /// The manifest arrived and matched the ID.
    Manifest(Box<Manifest>),
    /// Chunks held so far.
    Progress {
        /// Verified chunks on disk.
        have: u32,
        /// Chunks in total.
        total: u32,
        /// Peers we exchange with.
        peers: usize,
        /// Distributed copies and the chunks no connected peer holds.
        availability: Availability,
    },
}

/// How a download ended: the path of the verified copy, or why it failed.
pub type Outcome = Result<PathBuf, String>;

/// A download under way: progress events (dropped if the reader falls
/// behind; only the latest matter) and its outcome (never dropped).
pub struct Download {
    /// Progress, best effort.
    pub events: mpsc::Receiver<GetEvent>,
    /// The end: completed at a path, or failed.
    pub done: oneshot::Receiver<Outcome>,
}

/// Counters of one node.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Chunk payload bytes sent.
    pub uploaded: u64,
    /// Chunk payload bytes received.
    pub downloaded: u64,
    /// Peers with an open connection.
    pub connected_peers: usize,
    /// Peers banned for bad data.
    pub banned: Vec<PeerId>,
    /// Session bytes sent: chunk payload, proofs, control, framing.
    pub wire_sent: [u64; 4],
    /// Session bytes received: chunk payload, proofs, control, framing.
    pub wire_received: [u64; 4],
    /// NAT traversal: reachability, reservations, connections by kind, hole punches.
    pub nat: NatStats,
}

/// Whether peers can dial us directly, as AutoNAT (or `--external`) says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reachability {
    /// Not tested yet, or nothing to test.
    #[default]
    Unknown,
    /// An AutoNAT server dialled one of our addresses back, or `--external` says so.
    Public,
    /// Every address AutoNAT tested failed.
    Private,
}

impl Reachability {
    /// Lower-case name, as logs and the stats file print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Public => "public",
            Self::Private => "private",
        }
    }
}

/// NAT traversal counters of one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatStats {
    /// What AutoNAT found.
    pub reachability: Reachability,
    /// Relays we hold a reservation on (their address, ending in /p2p/<relay id>).
    pub reservations: Vec<Multiaddr>,
    /// Open direct connections.
    pub conns_direct: usize,
    /// Open relayed connections.
    pub conns_relayed: usize,
    /// Relayed connections to a peer we had no direct connection to: DCUtR tries a hole punch on each.
    pub punches_tried: u64,
    /// Of those, how many ended with a direct connection.
    pub punches_ok: u64,
    /// Milliseconds from our first relayed connection to the first direct
    /// connection to a peer we had reached over a relay.
    pub first_direct_ms: Option<u64>,
    /// Chunk payload bytes sent and received with peers we had only relayed connections to.
    pub bytes_relayed: u64,
    /// Chunk payload bytes sent and received with peers we had a direct connection to.
    pub bytes_direct: u64,
}

/// Where a content is, as `ls` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentState {
    /// Looking for providers and the manifest.
    Searching,
    /// The manifest arrived; files are being opened and checked.
    Opening,
    /// Exchanging chunks.
    Fetching,
    /// Whole; being moved into place.
    Finishing,
    /// Whole and served.
    Seeding,
}

impl ContentState {
    /// Lower-case name, as the control API and `ls` print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Searching => "searching",
            Self::Opening => "opening",
            Self::Fetching => "fetching",
            Self::Finishing => "finishing",
            Self::Seeding => "seeding",
        }
    }
}

/// One content the node holds.
#[derive(Clone, Debug)]
pub struct ContentStatus {
    /// Its ID.
    pub id: ContentId,
    /// Where it is.
    pub state: ContentState,
    /// Its name, once the manifest is known.
    pub name: Option<String>,
    /// Verified chunks held.
    pub have: u32,
    /// Chunks in all (0 until the manifest is known).
    pub total: u32,
    /// Content bytes in all (0 until the manifest is known).
    pub bytes: u64,
    /// Peers in its swarm (known providers while searching).
    pub peers: usize,
    /// Distributed copies and the chunks no connected peer holds (once active).
    pub availability: Option<Availability>,
    /// Where the whole copy is, once it is whole.
    pub path: Option<PathBuf>,
}

/// One connected peer.
#[derive(Clone, Debug)]
pub struct PeerStatus {
    /// Its ID.
    pub peer: PeerId,
    /// Addresses we know for it.
    pub addrs: Vec<Multiaddr>,
    /// How many of our swarms it is in.
    pub swarms: usize,
}

/// A cheap, cloneable handle to a running node.
#[derive(Clone)]
pub struct Client {
    pub(crate) tx: mpsc::Sender<Command>,
    pub(crate) peer_id: PeerId,
    pub(crate) counters: Arc<Counters>,
    pub(crate) metrics: Arc<Metrics>,
}

impl Client {
    /// This node's peer ID.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> anyhow::Result<T> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| anyhow!("the node has stopped"))?;
        rx.await
            .map_err(|_| anyhow!("the node stopped before answering"))
    }

    /// Addresses we listen on, each ending in `/p2p/<peer id>`; waits for the first.
    pub async fn listen_addrs(&self) -> anyhow::Result<Vec<Multiaddr>> {
        self.ask(Command::ListenAddrs).await
    }

    /// Waits until every bootstrap dial has succeeded or failed; Ok(number reached).
    /// Fails if a bootstrap list was given and none of it could be reached.
    pub async fn bootstrapped(&self) -> anyhow::Result<usize> {
        self.ask(Command::Bootstrapped)
            .await?
            .map_err(|e| anyhow!(e))
    }

    /// Starts seeding already-scanned content; returns its ID.
    pub async fn share(
        &self,
        manifest: Manifest,
        tree: MerkleTree,
        storage: Storage,
    ) -> anyhow::Result<ContentId> {
        self.ask(|reply| Command::Share {
            manifest,
            tree,
            storage,
            reply,
        })
        .await
    }

    /// Starts fetching `id` into `out_dir`.
    pub async fn get(&self, id: ContentId, out_dir: PathBuf) -> anyhow::Result<Download> {
        let (events, events_rx) = mpsc::channel(64);
        let (done, done_rx) = oneshot::channel();
        self.tx
            .send(Command::Get {
                id,
                out_dir,
                events,
                done,
            })
            .await
            .map_err(|_| anyhow!("the node has stopped"))?;
        Ok(Download {
            events: events_rx,
            done: done_rx,
        })
    }

    /// Fetches `id` into `out_dir` and waits until it is complete on disk.
    pub async fn get_and_wait(&self, id: ContentId, out_dir: PathBuf) -> anyhow::Result<PathBuf> {
        let download = self.get(id, out_dir).await?;
        match download.done.await {
            Ok(Ok(path)) => Ok(path),
            Ok(Err(e)) => Err(anyhow!(e)).context(format!("fetching {id}")),
            Err(_) => Err(anyhow!("the node stopped before {id} completed")),
        }
    }

    /// Byte counters and peers.
    pub async fn stats(&self) -> anyhow::Result<Stats> {
        let mut s = self.ask(Command::Stats).await?;
        s.uploaded = self.counters.uploaded.load(Ordering::Relaxed);
        s.downloaded = self.counters.downloaded.load(Ordering::Relaxed);
        s.wire_sent = self.counters.sent.snapshot();
        s.wire_received = self.counters.received.snapshot();
        Ok(s)
    }

    /// The node's metrics as OpenMetrics text (see [`crate::metrics`]).
    pub fn metrics_text(&self) -> String {
        self.metrics.encode()
    }

    /// Every content the node holds.
    pub async fn list(&self) -> anyhow::Result<Vec<ContentStatus>> {
        self.ask(Command::List).await
    }

    /// Stops exchanging and announcing `id` (verified chunks stay on disk); false if unknown.
    pub async fn stop(&self, id: ContentId) -> anyhow::Result<bool> {
        self.ask(|reply| Command::Stop { id, reply }).await
    }

    /// Connected peers.
    pub async fn peers(&self) -> anyhow::Result<Vec<PeerStatus>> {
        self.ask(Command::Peers).await
    }

    /// Saves resume state and stops the node.
    pub async fn shutdown(&self) -> anyhow::Result<()> {
        self.ask(Command::Shutdown).await
    }
}
