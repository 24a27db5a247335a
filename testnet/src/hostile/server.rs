//! Attacks on a node that fetches content: the hostile peer announces itself
//! as a provider, claims every chunk in its have, and answers the getter's
//! asks with lies, on its own session stream under the asks' request IDs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream};
use protocol::wire::{Answer, Ask, HaveInfo, HaveSet, Message};
use protocol::ContentId;
use tokio::task::JoinSet;

use super::frame::{framed, recv, send};
use super::noncanonical::Share;
use super::session::{self, Asker};
use super::{Attack, Counters};
use crate::datagen::SplitMix64;

/// Sessions (inbound session streams) served at once.
const CONCURRENT: usize = 64;
/// How long one relayed ask to the upstream seeder may take.
const RELAY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often our have (interested) goes to the upstream seeder again, so a
/// session it dropped comes back.
const UPSTREAM_HAVE_EVERY: Duration = Duration::from_secs(10);

/// The content a server attack offers.
pub enum Served {
    /// Content it does not have but claims to (lying-seeder, wrong-chunks).
    Claimed(ContentId),
    /// Content it really serves, under a non-canonical manifest.
    Own(Arc<Share>),
}

impl Served {
    /// The content ID announced in the DHT.
    pub fn id(&self) -> ContentId {
        match self {
            Served::Claimed(id) => *id,
            Served::Own(share) => share.id,
        }
    }
}

/// Answers the asks that arrive on session streams the way the attack lies.
pub struct Server {
    attack: Attack,
    served: Served,
    control: libp2p_stream::Control,
    /// Our session with the honest seeder we relay from.
    upstream: Option<Arc<Asker>>,
    counters: Arc<Counters>,
    round: AtomicUsize,
}

/// Our have to the upstream seeder: an honest seeder answers chunk asks only
/// from interested peers it unchokes.
fn interested_have(id: ContentId) -> Message {
    Message::Have {
        id,
        info: HaveInfo {
            have: HaveSet::Nothing,
            interested: true,
            choking: true,
        },
    }
}

/// What goes back for one ask.
enum Reply {
    Answer(Answer),
    /// Stream bytes sent as they are, in place of an answer.
    RawFrame(Vec<u8>),
}

impl Server {
    /// A server for `attack`; `control` opens our session streams, to the
    /// getters and to `upstream` for relaying.
    pub fn new(
        attack: Attack,
        served: Served,
        control: libp2p_stream::Control,
        upstream: Option<PeerId>,
        counters: Arc<Counters>,
    ) -> Self {
        let upstream = upstream.map(|peer| {
            Arc::new(Asker::new(
                control.clone(),
                peer,
                Some(interested_have(served.id())),
                Arc::new(Counters::default()),
            ))
        });
        Self {
            attack,
            served,
            control,
            upstream,
            counters,
            round: AtomicUsize::new(0),
        }
    }

    /// Starts serving the session streams that arrive on `incoming`.
    pub fn spawn(self, tasks: &mut JoinSet<()>, incoming: libp2p_stream::IncomingStreams) {
        let srv = Arc::new(self);
        if let Some(up) = srv.upstream.clone() {
            let have = interested_have(srv.served.id());
            tasks.spawn(async move {
                loop {
                    let _ = up.send(&have).await;
                    tokio::time::sleep(UPSTREAM_HAVE_EVERY).await;
                }
            });
        }
        tasks.spawn(incoming.for_each_concurrent(CONCURRENT, move |(peer, s)| {
            let srv = srv.clone();
            async move {
                match &srv.upstream {
                    Some(up) if up.peer() == peer => up.read_answers(s).await,
                    _ => srv.serve(peer, s).await,
                }
            }
        }));
    }

    /// Our have: every chunk, not interested, not choking.
    fn everything_have(&self) -> Message {
        Message::Have {
            id: self.served.id(),
            info: HaveInfo {
                have: HaveSet::Everything,
                interested: false,
                choking: false,
            },
        }
    }

    /// Our session stream to `peer`, opened with the have that lures it.
    async fn open_to(&self, peer: PeerId) -> Option<Stream> {
        let mut s = session::open(&self.control, peer, &self.counters)
            .await
            .ok()?;
        send(&mut s, &self.everything_have()).await.ok()?;
        Some(s)
    }

    /// Reads `peer`'s session stream and answers each ask on ours, in order.
    async fn serve(&self, peer: PeerId, mut inbound: Stream) {
        Counters::add(&self.counters.streams, 1);
        let mut out = self.open_to(peer).await;
        while let Ok(m) = recv(&mut inbound).await {
            Counters::add(&self.counters.received, 1);
            let (rid, ask) = match m {
                Message::Ask { rid, ask } => (rid, ask),
                // The getter (re)joined the swarm: make sure it hears our claim.
                Message::Have { id, .. } if id == self.served.id() => {
                    if out.is_none() {
                        out = self.open_to(peer).await;
                    } else if let Some(s) = out.as_mut() {
                        if send(s, &self.everything_have()).await.is_err() {
                            out = None;
                        }
                    }
                    continue;
                }
                _ => continue,
            };
            let manifest = matches!(ask, Ask::Manifest { .. });
            let reply = self.reply(ask).await;
            if out.is_none() {
                out = self.open_to(peer).await;
            }
            let Some(s) = out.as_mut() else {
                Counters::add(&self.counters.errors, 1);
                continue;
            };
            let written = match reply {
                Reply::Answer(answer) => send(s, &Message::Answer { rid, answer }).await,
                Reply::RawFrame(bytes) => match s.write_all(&bytes).await {
                    Ok(()) => s.flush().await,
                    Err(e) => Err(e),
                },
            };
            match written {
                Ok(()) => {
                    Counters::add(&self.counters.sent, 1);
                    if manifest {
                        // A getter that only now knows the chunk count hears our claim again.
                        let _ = send(s, &self.everything_have()).await;
                    }
                }
                Err(_) => {
                    // Most likely our garbage got us cut off; reopen for the next answer.
                    Counters::add(&self.counters.errors, 1);
                    out = None;
                }
            }
        }
    }

    async fn reply(&self, ask: Ask) -> Reply {
        if *ask.content_id() != self.served.id() {
            return Reply::Answer(Answer::UnknownContent);
        }
        let answer = match (&self.served, ask) {
            (_, Ask::Peers { .. }) => Answer::Peers { peers: Vec::new() },
            (Served::Own(share), Ask::Manifest { .. }) => Answer::Manifest {
                bytes: share.bytes.clone(),
            },
            (Served::Own(share), Ask::Chunk { index, .. }) => match share.chunk(index) {
                Some((data, proof)) => self.bend_chunk(Answer::Chunk { index, data, proof }),
                None => Answer::DontHave,
            },
            (Served::Claimed(_), ask @ Ask::Manifest { .. }) => self.relay(ask).await,
            (Served::Claimed(_), ask @ Ask::Chunk { index, .. }) => {
                if self.attack != Attack::WrongChunks {
                    return self.lie(index);
                }
                self.bend_chunk(self.relay(ask).await)
            }
        };
        Reply::Answer(answer)
    }

    /// wrong-chunks: one flipped bit, so framing and proof are valid and the data wrong.
    fn bend_chunk(&self, a: Answer) -> Answer {
        match a {
            Answer::Chunk {
                index,
                mut data,
                proof,
            } if self.attack == Attack::WrongChunks => {
                let mid = data.len() / 2;
                if let Some(b) = data.get_mut(mid) {
                    *b ^= 0x10;
                }
                Answer::Chunk { index, data, proof }
            }
            other => other,
        }
    }

    /// lying-seeder's chunk answers, in turn: don't have, a garbage frame, random data.
    fn lie(&self, index: u32) -> Reply {
        let round = self.round.fetch_add(1, Ordering::Relaxed);
        let mut rng = SplitMix64::new(round as u64 ^ 0x5bd1_e995);
        match round % 3 {
            0 => Reply::Answer(Answer::DontHave),
            1 => {
                let mut body = vec![0u8; 512];
                rng.fill(&mut body);
                Reply::RawFrame(framed(&body))
            }
            _ => {
                let mut data = vec![0u8; 16 * 1024];
                rng.fill(&mut data);
                let mut proof = vec![0u8; 32 * 4];
                rng.fill(&mut proof);
                Reply::Answer(Answer::Chunk { index, data, proof })
            }
        }
    }

    /// Asks the upstream seeder and returns its answer ("unknown content" without one).
    async fn relay(&self, ask: Ask) -> Answer {
        let Some(up) = &self.upstream else {
            return Answer::UnknownContent;
        };
        up.ask(ask, RELAY_TIMEOUT)
            .await
            .unwrap_or(Answer::UnknownContent)
    }
}
