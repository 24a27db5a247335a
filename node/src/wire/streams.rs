//! The tasks behind session streams: one writer per peer we talk to (it
//! opens our stream to that peer), one reader per stream a peer opened to us.
//!
//! The event loop never waits on a peer: it hands messages to a writer's
//! bounded queues (`try_send`; a full queue means the peer stopped reading)
//! and receives everything through one bounded event channel, which is what
//! pushes back on a peer that sends faster than we handle.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::prelude::*;
use libp2p::{PeerId, Stream};
use protocol::merkle::{hash_leaf, Hash};
use protocol::wire::{Answer, Message};
use tokio::sync::mpsc;

use super::frames::read_frame;
use super::writer::{writer, Queues};
use super::{Counters, WireLimits, PROTOCOL};
use crate::ratelimit::RateLimiter;

/// Most control messages queued for one peer's writer; a peer that lets it
/// fill has stopped reading.
pub const CONTROL_QUEUE: usize = 512;
/// Most bulk messages (chunks, manifests) queued for one lane of a peer's
/// writer; the upload budget keeps far fewer in flight.
pub const BULK_QUEUE: usize = 256;
/// Streams we open to each peer: the first carries control messages and
/// bulk, the others bulk only. Each yamux stream starts with a 256 KiB send
/// window that grows only once yamux has measured a busy round trip, so
/// one stream on a loaded link is window-bound (256 KiB per round trip);
/// a few lanes give a peer room for a pipeline's worth of chunks at once.
pub const LANES: usize = 4;
/// Extra lanes open this far apart (see `spawn_lane_of`).
const LANE_SPACING: Duration = Duration::from_millis(20);
/// Most streams one peer may have open to us at once (its lanes, on up to two connections).
pub const MAX_INBOUND_PER_PEER: usize = 2 * LANES;
/// Opening our stream to a peer must succeed within this long.
pub(super) const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Small frames are gathered into one write up to this many bytes.
pub(super) const BATCH_BYTES: usize = 128 * 1024;

/// Something to send to a peer.
pub enum Outgoing {
    /// A message to encode.
    Message(Message),
    /// An answer whose CBOR is encoded once and shared (a manifest).
    Shared { rid: u32, answer: Arc<[u8]> },
}

/// A message for a writer, and the token to report once it is written.
pub struct Queued {
    /// What to send.
    pub out: Outgoing,
    /// Reported back as [`StreamEvent::Sent`] when written (uploads).
    pub token: Option<u64>,
}

/// What the stream tasks tell the event loop.
#[derive(Debug)]
pub enum StreamEvent {
    /// A message from `peer`, with the leaf hash of a chunk's data computed
    /// on the reading task.
    Received {
        peer: PeerId,
        msg: Message,
        leaf: Option<Hash>,
    },
    /// The queued message with this token was written to `peer`.
    Sent { peer: PeerId, token: u64 },
    /// `peer` sent a frame no honest peer sends; its stream was dropped.
    Broken { peer: PeerId, why: String },
    /// Our stream to `peer` (writer generation `generation`) ended;
    /// `stalled` if the peer stopped reading, `refused` if it never opened
    /// (the peer does not speak the protocol, or refused the stream).
    WriterClosed {
        peer: PeerId,
        generation: u64,
        stalled: bool,
        refused: bool,
        why: String,
    },
    /// The last of the streams `peer` opened to us ended (while one lane
    /// stays open, its answers may still come).
    ReaderClosed { peer: PeerId },
}

/// Why a message could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The peer's queue is full: it is not reading.
    Full,
    /// Our stream to the peer ended (its close event may still be on its
    /// way); the writer is forgotten, and the next send opens a new one.
    Closed,
}

/// What every stream task shares.
pub struct Shared {
    /// Frame caps.
    pub limits: Arc<WireLimits>,
    /// Byte counters.
    pub counters: Arc<Counters>,
    /// Upload rate cap (chunk data).
    pub upload: Arc<RateLimiter>,
    /// Download rate cap (chunk data).
    pub download: Arc<RateLimiter>,
    /// Streams each peer has open to us.
    inbound: Mutex<HashMap<PeerId, usize>>,
}

impl Shared {
    /// State shared by the stream tasks of one node.
    pub fn new(
        limits: Arc<WireLimits>,
        counters: Arc<Counters>,
        upload: Arc<RateLimiter>,
        download: Arc<RateLimiter>,
    ) -> Arc<Self> {
        Arc::new(Self {
            limits,
            counters,
            upload,
            download,
            inbound: Mutex::new(HashMap::new()),
        })
    }
}

struct Writer {
    /// Haves, asks and short answers: written before any waiting bulk.
    control: mpsc::Sender<Queued>,
    /// Chunk and manifest answers, one queue per lane.
    bulk: Vec<mpsc::Sender<Queued>>,
    /// The lane the next bulk message goes to.
    next_lane: usize,
    generation: u64,
}

impl Queued {
    /// Chunks and manifests are bulk: control messages overtake them, so an
    /// ask or a have never waits behind megabytes of queued answers.
    fn is_bulk(&self) -> bool {
        matches!(
            &self.out,
            Outgoing::Shared { .. }
                | Outgoing::Message(Message::Answer {
                    answer: Answer::Chunk { .. },
                    ..
                })
        )
    }
}

/// The event loop's handle on all session streams.
pub struct Streams {
    control: libp2p_stream::Control,
    shared: Arc<Shared>,
    events: mpsc::Sender<StreamEvent>,
    writers: HashMap<PeerId, Writer>,
    generation: u64,
}

impl Streams {
    /// Starts accepting peers' session streams; events go to `events`.
    pub fn start(
        mut control: libp2p_stream::Control,
        shared: Arc<Shared>,
        events: mpsc::Sender<StreamEvent>,
    ) -> anyhow::Result<Self> {
        let incoming = control
            .accept(PROTOCOL)
            .map_err(|e| anyhow::anyhow!("cannot accept {PROTOCOL} streams: {e}"))?;
        tokio::spawn(accept_loop(incoming, shared.clone(), events.clone()));
        Ok(Self {
            control,
            shared,
            events,
            writers: HashMap::new(),
            generation: 0,
        })
    }

    /// Queues `q` for `peer`, opening our streams to it as needed (the
    /// control lane at once, further bulk lanes when bulk first goes to them).
    pub fn send(&mut self, peer: PeerId, q: Queued) -> Result<(), SendError> {
        if !self.writers.contains_key(&peer) {
            self.generation += 1;
            let (control, control_rx) = mpsc::channel(CONTROL_QUEUE);
            let lane0 = self.spawn_lane(peer, control_rx);
            self.writers.insert(
                peer,
                Writer {
                    control,
                    bulk: vec![lane0],
                    next_lane: 0,
                    generation: self.generation,
                },
            );
        }
        let Some(w) = self.writers.get_mut(&peer) else {
            return Err(SendError::Closed);
        };
        let lane = if q.is_bulk() {
            // Bulk goes round the lanes, so each lane's window carries its share.
            w.next_lane = (w.next_lane + 1) % LANES;
            w.next_lane
        } else {
            usize::MAX
        };
        let needs_lane = lane != usize::MAX && lane >= w.bulk.len();
        let w_generation = w.generation;
        if needs_lane {
            // Extra lanes carry bulk only: their control queue is closed from the start.
            let delay = LANE_SPACING * lane as u32;
            let tx = self.spawn_lane_of(peer, w_generation, mpsc::channel(1).1, delay);
            if let Some(w) = self.writers.get_mut(&peer) {
                w.bulk.push(tx);
            }
        }
        let Some(w) = self.writers.get(&peer) else {
            return Err(SendError::Closed);
        };
        let queue = match w.bulk.get(lane) {
            Some(b) => b,
            None => &w.control,
        };
        match queue.try_send(q) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(SendError::Full),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.writers.remove(&peer);
                Err(SendError::Closed)
            }
        }
    }

    /// Starts the writer of a new lane of the current generation; returns its bulk queue.
    fn spawn_lane(
        &mut self,
        peer: PeerId,
        control: mpsc::Receiver<Queued>,
    ) -> mpsc::Sender<Queued> {
        self.spawn_lane_of(peer, self.generation, control, Duration::ZERO)
    }

    fn spawn_lane_of(
        &mut self,
        peer: PeerId,
        generation: u64,
        control: mpsc::Receiver<Queued>,
        delay: Duration,
    ) -> mpsc::Sender<Queued> {
        let (bulk, bulk_rx) = mpsc::channel(BULK_QUEUE);
        let writer = writer(
            self.control.clone(),
            peer,
            generation,
            Queues {
                control,
                bulk: bulk_rx,
            },
            self.shared.clone(),
            self.events.clone(),
        );
        tokio::spawn(async move {
            // libp2p-stream hands inbound streams over through a one-slot
            // channel and drops any that arrive while it is full, so lanes
            // opened in the same instant would be lost on a busy peer.
            tokio::time::sleep(delay).await;
            writer.await
        });
        bulk
    }

    /// Closes our stream to `peer` once what is queued is written.
    pub fn close(&mut self, peer: &PeerId) {
        self.writers.remove(peer);
    }

    /// A writer ended: true if it was `peer`'s current one (now forgotten).
    pub fn writer_closed(&mut self, peer: &PeerId, generation: u64) -> bool {
        if self
            .writers
            .get(peer)
            .is_some_and(|w| w.generation == generation)
        {
            self.writers.remove(peer);
            true
        } else {
            false
        }
    }
}

async fn accept_loop(
    mut incoming: libp2p_stream::IncomingStreams,
    shared: Arc<Shared>,
    events: mpsc::Sender<StreamEvent>,
) {
    while let Some((peer, stream)) = incoming.next().await {
        let admitted = match shared.inbound.lock() {
            Ok(mut m) => {
                let n = m.entry(peer).or_default();
                if *n < MAX_INBOUND_PER_PEER {
                    *n += 1;
                    true
                } else {
                    false
                }
            }
            Err(_) => false,
        };
        if !admitted {
            tracing::debug!(%peer, "refusing another session stream from a peer");
            continue; // dropping it resets the stream
        }
        tokio::spawn(reader(peer, stream, shared.clone(), events.clone()));
    }
}

/// Reads `peer`'s messages until its stream ends or breaks.
async fn reader(
    peer: PeerId,
    mut stream: Stream,
    shared: Arc<Shared>,
    events: mpsc::Sender<StreamEvent>,
) {
    let stall = shared.limits.stall_timeout;
    let end = loop {
        let max = shared.limits.max_frame_from(&peer);
        let body = match read_frame(&mut stream, max, stall).await {
            Ok(Some(body)) => body,
            Ok(None) => break StreamEvent::ReaderClosed { peer },
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::InvalidData | io::ErrorKind::TimedOut
                ) =>
            {
                break StreamEvent::Broken {
                    peer,
                    why: e.to_string(),
                }
            }
            Err(_) => break StreamEvent::ReaderClosed { peer },
        };
        let msg = match Message::decode(&body, max) {
            Ok(msg) => msg,
            Err(e) => {
                break StreamEvent::Broken {
                    peer,
                    why: e.to_string(),
                }
            }
        };
        shared.counters.received.count(body.len(), &msg);
        drop(body);
        let leaf = match &msg {
            Message::Answer {
                answer: Answer::Chunk { data, .. },
                ..
            } => {
                // Pace downloads after the fact: the next read waits for this one's tokens.
                shared.download.acquire(data.len()).await;
                shared
                    .counters
                    .downloaded
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                Some(hash_leaf(data))
            }
            _ => None,
        };
        if events
            .send(StreamEvent::Received { peer, msg, leaf })
            .await
            .is_err()
        {
            break StreamEvent::ReaderClosed { peer };
        }
    };
    let last = match shared.inbound.lock() {
        Ok(mut m) => match m.get_mut(&peer) {
            Some(n) => {
                *n = n.saturating_sub(1);
                let last = *n == 0;
                if last {
                    m.remove(&peer);
                }
                last
            }
            None => true,
        },
        Err(_) => true,
    };
    let broken = matches!(end, StreamEvent::Broken { .. });
    if broken || last {
        let _ = events.send(end).await;
    }
    if broken && last {
        let _ = events.send(StreamEvent::ReaderClosed { peer }).await;
    }
}
