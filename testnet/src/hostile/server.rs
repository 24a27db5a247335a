//! Attacks on a node that fetches content: the hostile peer announces itself
//! as a provider and answers the getter's requests with lies.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use futures::{AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream};
use protocol::wire::{HaveInfo, HaveSet, Request, Response, MAX_REQUEST_BYTES};
use protocol::ContentId;
use tokio::task::JoinSet;

use super::frame::{ask, read_frame, write_frame};
use super::net::CHUNKS;
use super::noncanonical::Share;
use super::{Attack, Counters};
use crate::datagen::SplitMix64;

/// Inbound streams served at once.
const CONCURRENT: usize = 256;
/// How long one inbound exchange, including a relay upstream, may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

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

/// Answers inbound chunk-protocol streams the way the attack lies.
pub struct Server {
    attack: Attack,
    served: Served,
    control: libp2p_stream::Control,
    upstream: Option<PeerId>,
    counters: Arc<Counters>,
    round: AtomicUsize,
}

/// What goes back on a stream.
enum Answer {
    Message(Response),
    RawFrame(Vec<u8>),
}

impl Server {
    /// A server for `attack`; `control` opens streams to `upstream` for relaying.
    pub fn new(
        attack: Attack,
        served: Served,
        control: libp2p_stream::Control,
        upstream: Option<PeerId>,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            attack,
            served,
            control,
            upstream,
            counters,
            round: AtomicUsize::new(0),
        }
    }

    /// Starts accepting chunk-protocol streams through `control`.
    pub fn spawn(
        self,
        tasks: &mut JoinSet<()>,
        mut control: libp2p_stream::Control,
    ) -> anyhow::Result<()> {
        let incoming = control
            .accept(CHUNKS)
            .map_err(|e| anyhow!("cannot accept {CHUNKS} streams: {e}"))?;
        let srv = Arc::new(self);
        if srv.upstream.is_some() {
            // An honest seeder answers chunk requests only from interested peers it unchokes.
            let s = srv.clone();
            tasks.spawn(async move {
                let have = Request::Have {
                    id: s.served.id(),
                    info: HaveInfo {
                        have: HaveSet::Nothing,
                        interested: true,
                        choking: true,
                    },
                };
                loop {
                    let _ = s.relay(&have).await;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            });
        }
        tasks.spawn(
            incoming.for_each_concurrent(CONCURRENT, move |(_, stream)| {
                let srv = srv.clone();
                async move {
                    let _ = tokio::time::timeout(EXCHANGE_TIMEOUT, srv.serve(stream)).await;
                }
            }),
        );
        Ok(())
    }

    async fn serve(&self, mut s: Stream) {
        Counters::add(&self.counters.streams, 1);
        let req = match read_frame(&mut s, MAX_REQUEST_BYTES).await {
            Ok(body) => Request::decode(&body),
            Err(_) => {
                Counters::add(&self.counters.errors, 1);
                return;
            }
        };
        let Ok(req) = req else {
            Counters::add(&self.counters.errors, 1);
            return;
        };
        Counters::add(&self.counters.received, 1);
        let answer = self.answer(req).await;
        let written = match answer {
            Answer::Message(r) => write_frame(&mut s, &r.encode()).await,
            Answer::RawFrame(bytes) => s.write_all(&bytes).await,
        };
        if written.is_ok() && s.close().await.is_ok() {
            Counters::add(&self.counters.sent, 1);
        } else {
            Counters::add(&self.counters.errors, 1);
        }
    }

    async fn answer(&self, req: Request) -> Answer {
        let everything = || {
            Answer::Message(Response::Have(HaveInfo {
                have: HaveSet::Everything,
                interested: false,
                choking: false,
            }))
        };
        if *req.content_id() != self.served.id() {
            return Answer::Message(Response::UnknownContent);
        }
        match (&self.served, req) {
            (_, Request::Have { .. }) => everything(),
            (_, Request::Peers { .. }) => Answer::Message(Response::Peers { peers: Vec::new() }),
            (Served::Own(share), Request::Manifest { .. }) => Answer::Message(Response::Manifest {
                bytes: share.bytes.clone(),
            }),
            (Served::Own(share), Request::Chunk { index, .. }) => match share.chunk(index) {
                Some((data, proof)) => {
                    Answer::Message(self.bend_chunk(Response::Chunk { index, data, proof }))
                }
                None => Answer::Message(Response::DontHave),
            },
            (Served::Claimed(_), req @ Request::Manifest { .. }) => {
                Answer::Message(self.relay(&req).await)
            }
            (Served::Claimed(_), req @ Request::Chunk { index, .. }) => {
                if self.attack == Attack::WrongChunks {
                    return Answer::Message(self.bend_chunk(self.relay(&req).await));
                }
                self.lie(index)
            }
        }
    }

    /// wrong-chunks: one flipped bit, so framing and proof are valid and the data wrong.
    fn bend_chunk(&self, r: Response) -> Response {
        match r {
            Response::Chunk {
                index,
                mut data,
                proof,
            } if self.attack == Attack::WrongChunks => {
                let mid = data.len() / 2;
                if let Some(b) = data.get_mut(mid) {
                    *b ^= 0x10;
                }
                Response::Chunk { index, data, proof }
            }
            other => other,
        }
    }

    /// lying-seeder's chunk answers, in turn: don't have, a garbage frame, random data.
    fn lie(&self, index: u32) -> Answer {
        let round = self.round.fetch_add(1, Ordering::Relaxed);
        let mut rng = SplitMix64::new(round as u64 ^ 0x5bd1_e995);
        match round % 3 {
            0 => Answer::Message(Response::DontHave),
            1 => {
                let mut body = vec![0u8; 512];
                rng.fill(&mut body);
                let mut out = (body.len() as u32).to_be_bytes().to_vec();
                out.extend_from_slice(&body);
                Answer::RawFrame(out)
            }
            _ => {
                let mut data = vec![0u8; 16 * 1024];
                rng.fill(&mut data);
                let mut proof = vec![0u8; 32 * 4];
                rng.fill(&mut proof);
                Answer::Message(Response::Chunk { index, data, proof })
            }
        }
    }

    /// Asks the upstream seeder and returns its answer ("unknown content" without one).
    async fn relay(&self, req: &Request) -> Response {
        let Some(up) = self.upstream else {
            return Response::UnknownContent;
        };
        let mut control = self.control.clone();
        let Ok(Ok(mut s)) =
            tokio::time::timeout(Duration::from_secs(10), control.open_stream(up, CHUNKS)).await
        else {
            return Response::UnknownContent;
        };
        ask(&mut s, req, EXCHANGE_TIMEOUT)
            .await
            .unwrap_or(Response::UnknownContent)
    }
}
