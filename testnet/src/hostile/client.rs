//! Attacks on a node that serves content (see [`Attack`]). Each opens
//! session streams to the victim and misuses them in its own way; the
//! victim's own session stream to us is held unread, drained, or read
//! honestly, as the attack needs.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use futures::{AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream};
use protocol::manifest::Manifest;
use protocol::merkle::{HASH_LEN, MAX_DEPTH};
use protocol::wire::{
    Ask, HaveInfo, HaveSet, Message, MAX_BITFIELD_BYTES, MAX_MESSAGE_BYTES, MESSAGE_OVERHEAD_BYTES,
};
use protocol::ContentId;
use tokio::task::JoinSet;

use super::badframes::{bad_frame, BadKind};
use super::frame::{held_until_dropped, read_frame, send};
use super::session::{self, is_refusal, Asker};
use super::{Attack, Counters};
use crate::datagen::SplitMix64;

/// How long an honest exchange (a chunk read at full speed) may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed or cut stream, so a victim that refuses us does not
/// make the attacker spin.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Longest pause between attempts while the victim keeps refusing us (it
/// blocked us): every attempt is a dial and a handshake, and a flood of
/// those is another attack than the one asked for.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(2);
/// How long a garbage stream waits for the victim to cut it off.
const GARBAGE_WAIT: Duration = Duration::from_secs(2);
/// The victim's session streams to us kept at once; libp2p refuses more.
const INBOUND_KEPT: usize = 16;

/// What every worker of one client attack shares.
#[derive(Clone)]
pub struct Ctx {
    control: libp2p_stream::Control,
    victim: PeerId,
    id: ContentId,
    counters: Arc<Counters>,
    hold: Duration,
    /// Chunks in the content (1 when the manifest is not known).
    chunks: u32,
    /// The content's chunk size (0 when the manifest is not known).
    chunk_size: u32,
    /// The next chunk index to ask for, shared so workers cover every index.
    next: Arc<AtomicU32>,
}

impl Ctx {
    /// A context for attacking `victim` about content `id`, described by
    /// `manifest` when the attack needs it.
    pub fn new(
        control: libp2p_stream::Control,
        victim: PeerId,
        id: ContentId,
        manifest: Option<&Manifest>,
        counters: Arc<Counters>,
        hold: Duration,
    ) -> Self {
        Self {
            control,
            victim,
            id,
            counters,
            hold,
            chunks: manifest.map_or(1, |m| m.chunk_count().max(1)),
            chunk_size: manifest.map_or(0, |m| m.chunk_size),
            next: Arc::new(AtomicU32::new(0)),
        }
    }

    /// A new session stream to the victim, or None after a pause that
    /// grows while the victim keeps refusing.
    async fn open(&self, backoff: &mut Backoff) -> Option<Stream> {
        match session::open(&self.control, self.victim, &self.counters).await {
            Ok(s) => {
                backoff.reset();
                Some(s)
            }
            Err(_) => {
                backoff.wait().await;
                None
            }
        }
    }

    fn failed(&self) {
        Counters::add(&self.counters.errors, 1);
    }

    fn next_index(&self) -> u32 {
        self.next.fetch_add(1, Ordering::Relaxed) % self.chunks
    }

    /// Holding nothing and interested: the neediest peer, unchoked first.
    fn needy_have(&self) -> Message {
        Message::Have {
            id: self.id,
            info: HaveInfo {
                have: HaveSet::Nothing,
                interested: true,
                choking: false,
            },
        }
    }
}

/// Pauses between failed attempts: [`RETRY_PAUSE`], doubling up to [`MAX_RETRY_PAUSE`].
#[derive(Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    async fn wait(&mut self) {
        let pause = RETRY_PAUSE.saturating_mul(1 << self.failures.min(6));
        self.failures = self.failures.saturating_add(1);
        tokio::time::sleep(pause.min(MAX_RETRY_PAUSE)).await;
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Starts `attack` (a client attack) into `tasks`, `width` wide (asks in
/// flight or streams, see [`Attack::default_width`]); `incoming` are the
/// session streams the victim opens to us.
pub fn spawn(
    tasks: &mut JoinSet<()>,
    attack: Attack,
    ctx: Ctx,
    incoming: libp2p_stream::IncomingStreams,
    width: usize,
) -> anyhow::Result<()> {
    match attack {
        Attack::SlowReader => {
            tasks.spawn(hold_inbound(incoming, ctx.hold));
            let hello = Some(ctx.needy_have());
            tasks.spawn(ask_and_hold(ctx, width, hello, |c| Ask::Chunk {
                id: c.id,
                index: c.next_index(),
            }));
        }
        Attack::ManifestFlood => {
            tasks.spawn(hold_inbound(incoming, ctx.hold));
            tasks.spawn(ask_and_hold(ctx, width, None, |c| Ask::Manifest {
                id: c.id,
            }));
        }
        Attack::RequestStall => {
            tasks.spawn(hold_inbound(incoming, ctx.hold));
            let size = stall_size(ctx.chunks, ctx.chunk_size);
            for _ in 0..width {
                tasks.spawn(request_stall(ctx.clone(), size));
            }
        }
        Attack::Garbage => {
            tasks.spawn(drain_inbound(incoming, ctx.counters.clone()));
            for k in 0..width {
                tasks.spawn(garbage(ctx.clone(), k as u64));
            }
        }
        Attack::ChunkFlood => {
            let asker = Arc::new(Asker::new(
                ctx.control.clone(),
                ctx.victim,
                Some(ctx.needy_have()),
                ctx.counters.clone(),
            ));
            let reader = asker.clone();
            tasks.spawn(incoming.for_each_concurrent(INBOUND_KEPT, move |(_, s)| {
                let reader = reader.clone();
                async move { reader.read_answers(s).await }
            }));
            for _ in 0..width {
                tasks.spawn(chunk_flood(asker.clone(), ctx.clone()));
            }
        }
        Attack::LyingSeeder | Attack::WrongChunks | Attack::NoncanonicalManifest => {
            bail!("{attack} is a server attack, not a client one")
        }
    }
    Ok(())
}

/// Takes the victim's session streams and never reads them, so what it
/// writes there piles up in its send buffers; each is dropped after `hold`.
async fn hold_inbound(incoming: libp2p_stream::IncomingStreams, hold: Duration) {
    incoming
        .for_each_concurrent(INBOUND_KEPT, |(_, s)| async move {
            tokio::time::sleep(hold).await;
            drop(s);
        })
        .await;
}

/// Reads and discards whatever the victim writes to us.
async fn drain_inbound(incoming: libp2p_stream::IncomingStreams, counters: Arc<Counters>) {
    incoming
        .for_each_concurrent(INBOUND_KEPT, |(_, mut s)| {
            let counters = counters.clone();
            async move {
                while let Ok(body) = read_frame(&mut s, MAX_MESSAGE_BYTES).await {
                    Counters::add(&counters.received, 1);
                    Counters::add(&counters.bytes_read, body.len() as u64);
                }
            }
        })
        .await;
}

/// One session after another: `hello` (if any), then `width` pipelined
/// asks made by `ask`, never reading an answer; the session is held until
/// the victim cuts it or `hold` passes.
async fn ask_and_hold(c: Ctx, width: usize, hello: Option<Message>, ask: fn(&Ctx) -> Ask) {
    let mut backoff = Backoff::default();
    loop {
        let Some(mut s) = c.open(&mut backoff).await else {
            continue;
        };
        let mut wrote = match &hello {
            Some(m) => send(&mut s, m).await,
            None => Ok(()),
        };
        for rid in 0..width as u32 {
            if wrote.is_err() {
                break;
            }
            wrote = send(&mut s, &Message::Ask { rid, ask: ask(&c) }).await;
            if wrote.is_ok() {
                Counters::add(&c.counters.sent, 1);
            }
        }
        if wrote.is_err() {
            c.failed();
        } else {
            // The answers pile up in the victim's send buffers while we wait.
            held_until_dropped(&mut s, c.hold).await;
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// The largest frame a node serving this content accepts from any peer it
/// is not awaiting a manifest from: room for a message plus the content's
/// bitfield, or a chunk with the deepest proof, whichever is larger.
pub fn stall_size(chunks: u32, chunk_size: u32) -> usize {
    let bitfield = (chunks as usize).div_ceil(8).min(MAX_BITFIELD_BYTES);
    let chunk = chunk_size as usize + MAX_DEPTH * HASH_LEN;
    (MESSAGE_OVERHEAD_BYTES + bitfield.max(chunk)).min(MAX_MESSAGE_BYTES)
}

/// Announces a frame of `size` bytes, sends all of it but the last byte,
/// and holds the stream until the victim cuts it or `hold` passes.
async fn request_stall(c: Ctx, size: usize) {
    let filler = vec![0u8; 64 * 1024];
    let mut backoff = Backoff::default();
    loop {
        let Some(mut s) = c.open(&mut backoff).await else {
            continue;
        };
        let mut sent = s.write_all(&(size as u32).to_be_bytes()).await;
        if sent.is_ok() {
            sent = s.flush().await;
        }
        if sent.is_ok() {
            // The frame is announced: the attack is on, whether or not the victim reads on.
            Counters::add(&c.counters.sent, 1);
        }
        let mut left = size - 1; // never the last byte
        while sent.is_ok() && left > 0 {
            let n = left.min(filler.len());
            sent = s.write_all(&filler[..n]).await;
            left -= n;
        }
        if sent.is_ok() {
            sent = s.flush().await;
        }
        match sent {
            Ok(()) => {
                held_until_dropped(&mut s, c.hold).await;
            }
            // A victim that caps frames or streams cuts us off here.
            Err(_) => c.failed(),
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// One kind of bad frame per stream, in turn.
async fn garbage(c: Ctx, seed: u64) {
    let mut rng = SplitMix64::new(seed.wrapping_mul(0x9e37_79b9) ^ 0x6a09_e667);
    let mut round = seed as usize;
    let mut backoff = Backoff::default();
    loop {
        let bad = bad_frame(round, c.id, &mut rng);
        round = round.wrapping_add(1);
        let Some(mut s) = c.open(&mut backoff).await else {
            continue;
        };
        let mut wrote = s.write_all(&bad.bytes).await;
        if wrote.is_ok() {
            wrote = s.flush().await;
        }
        if wrote.is_ok() && bad.kind == BadKind::Truncated {
            // The rest of the frame never comes.
            wrote = s.close().await;
        }
        match wrote {
            Ok(()) => Counters::add(&c.counters.sent, 1),
            Err(_) => c.failed(),
        }
        // Most kinds should make the victim cut us off; give it a moment.
        held_until_dropped(&mut s, GARBAGE_WAIT).await;
    }
}

/// A greedy leecher that looks honest: asks for the next chunk as soon as an
/// answer arrives, and reads every answer at full speed.
async fn chunk_flood(asker: Arc<Asker>, c: Ctx) {
    let mut backoff = Backoff::default();
    loop {
        let ask = Ask::Chunk {
            id: c.id,
            index: c.next_index(),
        };
        match asker.ask(ask, ASK_TIMEOUT).await {
            Ok(a) if !is_refusal(&a) => backoff.reset(),
            // Choked or don't have: do not spin on it.
            Ok(_) => tokio::time::sleep(RETRY_PAUSE).await,
            // Cut off or refused: the victim may have blocked us.
            Err(_) => backoff.wait().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stalled_frame_fits_a_chunk_answer_or_a_bitfield() {
        let chunk = 4 * 1024 * 1024;
        let size = stall_size(4, chunk);
        assert!(size > chunk as usize + MESSAGE_OVERHEAD_BYTES);
        assert!(size <= MAX_MESSAGE_BYTES);
        // 2 TiB in 16 KiB chunks: the bitfield is the larger need.
        let bitfield = stall_size(1 << 27, 16 * 1024);
        assert_eq!(
            bitfield,
            MESSAGE_OVERHEAD_BYTES + (1 << 24).min(MAX_BITFIELD_BYTES)
        );
    }
}
