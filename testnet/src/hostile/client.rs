//! Attacks on a node that serves content: each worker task keeps one stream
//! busy, forever, in its own bad way (see [`Attack`]).

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, Stream};
use protocol::manifest::Manifest;
use protocol::wire::{HaveInfo, HaveSet, Request, Response, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};
use protocol::ContentId;
use tokio::task::JoinSet;

use super::frame::{ask, read_frame, write_frame};
use super::net::CHUNKS;
use super::{Attack, Counters};
use crate::datagen::SplitMix64;

/// How long opening a stream may take before the worker tries again.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an honest exchange (manifest, have, a chunk read at full speed) may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed stream, so a victim that refuses us does not make
/// the attacker spin.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// How often the greedy attacks repeat their have (interested, holding nothing).
const HAVE_EVERY: Duration = Duration::from_secs(2);

/// What every worker of one client attack shares.
#[derive(Clone)]
pub struct Ctx {
    control: libp2p_stream::Control,
    victim: PeerId,
    id: ContentId,
    counters: Arc<Counters>,
    hold: Duration,
    /// Chunks in the content (1 until the manifest is known).
    chunks: u32,
    /// The next chunk index to ask for, shared so workers cover every index.
    next: Arc<AtomicU32>,
}

impl Ctx {
    /// A context for attacking `victim` about content `id`.
    pub fn new(
        control: libp2p_stream::Control,
        victim: PeerId,
        id: ContentId,
        counters: Arc<Counters>,
        hold: Duration,
    ) -> Self {
        Self {
            control,
            victim,
            id,
            counters,
            hold,
            chunks: 1,
            next: Arc::new(AtomicU32::new(0)),
        }
    }

    async fn open(&mut self) -> io::Result<Stream> {
        let opened =
            tokio::time::timeout(OPEN_TIMEOUT, self.control.open_stream(self.victim, CHUNKS)).await;
        match opened {
            Ok(Ok(s)) => {
                Counters::add(&self.counters.streams, 1);
                Ok(s)
            }
            Ok(Err(e)) => {
                self.failed();
                Err(io::Error::other(e.to_string()))
            }
            Err(_) => {
                self.failed();
                Err(io::ErrorKind::TimedOut.into())
            }
        }
    }

    fn failed(&self) {
        Counters::add(&self.counters.errors, 1);
    }

    fn next_index(&self) -> u32 {
        self.next.fetch_add(1, Ordering::Relaxed) % self.chunks.max(1)
    }

    /// One honest request and its answer.
    async fn ask(&mut self, req: &Request) -> io::Result<Response> {
        let mut s = self.open().await?;
        Counters::add(&self.counters.sent, 1);
        match ask(&mut s, req, ASK_TIMEOUT).await {
            Ok(r) => {
                Counters::add(&self.counters.received, 1);
                if matches!(
                    r,
                    Response::Choked | Response::DontHave | Response::UnknownContent
                ) {
                    Counters::add(&self.counters.refused, 1);
                }
                Ok(r)
            }
            Err(e) => {
                self.failed();
                Err(e)
            }
        }
    }

    /// Asks for the manifest until the victim gives it, so chunk requests cover real indices.
    async fn learn_chunks(&mut self) -> anyhow::Result<()> {
        let mut last = String::new();
        for _ in 0..20 {
            match self.ask(&Request::Manifest { id: self.id }).await {
                Ok(Response::Manifest { bytes }) => {
                    let m = Manifest::decode_untrusted(&bytes)
                        .context("the victim sent a manifest we cannot decode")?;
                    self.chunks = m.chunk_count().max(1);
                    return Ok(());
                }
                Ok(other) => last = format!("it answered {other:?}"),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!(
            "the victim does not give us the manifest of {} ({last}); does it serve that content?",
            self.id
        )
    }

    fn have(&self) -> Request {
        Request::Have {
            id: self.id,
            info: HaveInfo {
                have: HaveSet::Nothing,
                interested: true,
                choking: false,
            },
        }
    }
}

/// Starts `streams` workers of `attack` (a client attack) into `tasks`.
pub async fn spawn(
    tasks: &mut JoinSet<()>,
    attack: Attack,
    mut ctx: Ctx,
    streams: usize,
) -> anyhow::Result<()> {
    if matches!(attack, Attack::SlowReader | Attack::ChunkFlood) {
        ctx.learn_chunks().await?;
        // Holding nothing and interested: the neediest peer, unchoked first.
        let mut c = ctx.clone();
        tasks.spawn(async move {
            loop {
                let req = c.have();
                let _ = c.ask(&req).await;
                tokio::time::sleep(HAVE_EVERY).await;
            }
        });
    }
    for k in 0..streams {
        let c = ctx.clone();
        match attack {
            Attack::SlowReader => tasks.spawn(slow_reader(c)),
            Attack::ManifestFlood => tasks.spawn(manifest_flood(c)),
            Attack::RequestStall => tasks.spawn(request_stall(c)),
            Attack::Garbage => tasks.spawn(garbage(c, k as u64)),
            Attack::ChunkFlood => tasks.spawn(chunk_flood(c)),
            Attack::LyingSeeder | Attack::WrongChunks | Attack::NoncanonicalManifest => {
                bail!("{attack} is a server attack, not a client one")
            }
        };
    }
    Ok(())
}

/// Writes `req` and holds the stream without reading, then drops it.
async fn send_and_hold(c: &mut Ctx, req: &Request) {
    let Ok(mut s) = c.open().await else {
        tokio::time::sleep(RETRY_PAUSE).await;
        return;
    };
    match write_frame(&mut s, &req.encode()).await {
        Ok(()) => {
            Counters::add(&c.counters.sent, 1);
            // The answer piles up in the victim's send buffers while we wait.
            tokio::time::sleep(c.hold).await;
        }
        Err(_) => {
            c.failed();
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}

async fn slow_reader(mut c: Ctx) {
    loop {
        let req = Request::Chunk {
            id: c.id,
            index: c.next_index(),
        };
        send_and_hold(&mut c, &req).await;
    }
}

async fn manifest_flood(mut c: Ctx) {
    let req = Request::Manifest { id: c.id };
    loop {
        send_and_hold(&mut c, &req).await;
    }
}

/// The largest request frame a node accepted at 52b4bb7.
const STALL_FRAME: usize = MAX_REQUEST_BYTES;

async fn request_stall(mut c: Ctx) {
    let filler = vec![0u8; 64 * 1024];
    loop {
        let Ok(mut s) = c.open().await else {
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        };
        let announced = STALL_FRAME as u32;
        let mut sent = s.write_all(&announced.to_be_bytes()).await;
        if sent.is_ok() {
            sent = s.flush().await;
        }
        if sent.is_ok() {
            // The frame is announced: the attack is on, whether or not the victim reads on.
            Counters::add(&c.counters.sent, 1);
        }
        let mut left = STALL_FRAME - 1; // never the last byte
        while sent.is_ok() && left > 0 {
            let n = left.min(filler.len());
            sent = s.write_all(&filler[..n]).await;
            left -= n;
        }
        if sent.is_ok() {
            sent = s.flush().await;
        }
        match sent {
            Ok(()) => tokio::time::sleep(c.hold).await,
            Err(_) => {
                // A victim that caps request frames cuts us off here.
                c.failed();
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

/// One kind of bad frame per round, in turn.
async fn garbage(mut c: Ctx, seed: u64) {
    let mut rng = SplitMix64::new(seed.wrapping_mul(0x9e37_79b9) ^ 0x6a09_e667);
    let mut round = seed as usize;
    loop {
        let bytes = bad_frame(round, c.id, &mut rng);
        round = round.wrapping_add(1);
        let Ok(mut s) = c.open().await else {
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        };
        if s.write_all(&bytes).await.is_err() || s.close().await.is_err() {
            c.failed();
            continue;
        }
        Counters::add(&c.counters.sent, 1);
        // Whatever comes back (most likely a reset), read it and move on.
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            read_frame(&mut s, MAX_RESPONSE_BYTES),
        )
        .await;
        if let Ok(Ok(body)) = answer {
            Counters::add(&c.counters.received, 1);
            Counters::add(&c.counters.bytes_read, body.len() as u64);
        }
    }
}

/// Bad frame number `round` (cycling through the kinds), as stream bytes.
pub fn bad_frame(round: usize, id: ContentId, rng: &mut SplitMix64) -> Vec<u8> {
    let framed = |body: &[u8]| {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    };
    match round % 8 {
        // A length prefix far over any cap, then a little data.
        0 => {
            let mut out = u32::MAX.to_be_bytes().to_vec();
            out.extend_from_slice(&[0xa1; 64]);
            out
        }
        // A valid request cut in half, the stream then closed.
        1 => {
            let body = Request::Chunk { id, index: 0 }.encode();
            let mut out = framed(&body);
            out.truncate(4 + body.len() / 2);
            out
        }
        // Random bytes in a well-formed frame.
        2 => {
            let mut body = vec![0u8; 64 + (rng.next_u64() % 4096) as usize];
            rng.fill(&mut body);
            framed(&body)
        }
        // An empty frame.
        3 => framed(&[]),
        // Valid CBOR of the wrong type: a response where a request belongs.
        4 => framed(&Response::Choked.encode()),
        // A CBOR integer, then a bare text string.
        5 => framed(&[
            0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x61, b'x',
        ]),
        // Ten thousand nested arrays: a decoder that recurses blows its stack.
        6 => framed(&[0x81; 10_000]),
        // A have whose bitfield byte string claims 4 GiB in a small frame.
        _ => {
            let mut body = vec![0xa1, 0x64];
            body.extend_from_slice(b"Have");
            body.extend_from_slice(&[0xa2, 0x62, b'i', b'd', 0x58, 0x20]);
            body.extend_from_slice(id.as_bytes());
            body.extend_from_slice(&[0x64]);
            body.extend_from_slice(b"info");
            body.extend_from_slice(&[0xa1, 0x64]);
            body.extend_from_slice(b"have");
            body.extend_from_slice(&[0xa1, 0x64]);
            body.extend_from_slice(b"Bits");
            body.extend_from_slice(&[0x5a, 0xff, 0xff, 0xff, 0xff]);
            framed(&body)
        }
    }
}

async fn chunk_flood(mut c: Ctx) {
    let mut buf = Vec::new();
    loop {
        let req = Request::Chunk {
            id: c.id,
            index: c.next_index(),
        };
        let Ok(mut s) = c.open().await else {
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        };
        if write_frame(&mut s, &req.encode()).await.is_err() || s.close().await.is_err() {
            c.failed();
            continue;
        }
        Counters::add(&c.counters.sent, 1);
        buf.clear();
        // Read as fast as the victim sends; no decoding beyond the frame.
        let read = tokio::time::timeout(ASK_TIMEOUT, async {
            let mut len = [0u8; 4];
            s.read_exact(&mut len).await?;
            let len = u32::from_be_bytes(len) as u64;
            s.take(len.min(MAX_RESPONSE_BYTES as u64))
                .read_to_end(&mut buf)
                .await
        })
        .await;
        match read {
            Ok(Ok(n)) => {
                Counters::add(&c.counters.received, 1);
                Counters::add(&c.counters.bytes_read, n as u64);
                if n < 64 {
                    // Choked or don't have: a short answer. Do not spin on it.
                    Counters::add(&c.counters.refused, 1);
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
            _ => {
                c.failed();
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_frame_is_refused_by_the_wire_decoder() {
        let id = ContentId::from_bytes([3; 32]);
        let mut rng = SplitMix64::new(1);
        for round in 0..16 {
            let bytes = bad_frame(round, id, &mut rng);
            let body = bytes.get(4..).unwrap_or(&[]);
            assert!(
                Request::decode(body).is_err(),
                "round {round} decoded as a valid request"
            );
        }
    }
}
