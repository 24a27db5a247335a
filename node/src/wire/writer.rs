//! The writer of one lane of our session with a peer: opens the stream,
//! writes queued messages (control before bulk, small frames gathered into
//! one write), reports what was written, and gives up on a peer that stops
//! reading.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::prelude::*;
use libp2p::PeerId;
use protocol::wire::{Answer, Message};
use tokio::sync::mpsc;

use super::frames::{begin_frame, end_frame, within, write_steadily};
use super::streams::{Outgoing, Queued, Shared, StreamEvent, BATCH_BYTES, OPEN_TIMEOUT};
use super::PROTOCOL;

/// A writer's two queues.
pub(super) struct Queues {
    pub(super) control: mpsc::Receiver<Queued>,
    pub(super) bulk: mpsc::Receiver<Queued>,
}

impl Queues {
    /// The next message, control first; `None` once both senders are gone.
    async fn next(&mut self) -> Option<Queued> {
        tokio::select! {
            biased;
            Some(q) = self.control.recv() => Some(q),
            Some(q) = self.bulk.recv() => Some(q),
            else => None,
        }
    }

    /// A message ready now, control first.
    fn ready(&mut self) -> Option<Queued> {
        self.control
            .try_recv()
            .or_else(|_| self.bulk.try_recv())
            .ok()
    }
}

/// Opens our stream to `peer` and writes what is queued for it, gathering
/// small messages into one write, until the queues' senders are dropped.
pub(super) async fn writer(
    control: libp2p_stream::Control,
    peer: PeerId,
    generation: u64,
    mut queues: Queues,
    shared: Arc<Shared>,
    events: mpsc::Sender<StreamEvent>,
) {
    let closed = |stalled: bool, why: String| StreamEvent::WriterClosed {
        peer,
        generation,
        stalled,
        refused: false,
        why,
    };
    let refused = |why: String| StreamEvent::WriterClosed {
        peer,
        generation,
        stalled: false,
        refused: true,
        why,
    };
    let mut stream = match open(&control, peer).await {
        Ok(s) => s,
        Err(e @ libp2p_stream::OpenStreamError::UnsupportedProtocol(_)) => {
            let _ = events.send(refused(e.to_string())).await;
            return;
        }
        Err(e) => {
            let _ = events.send(closed(false, e.to_string())).await;
            return;
        }
    };
    drop(control);
    let stall = shared.limits.stall_timeout;
    let mut batch = Batch::default();
    let mut tokens = Vec::new();
    let end = loop {
        let Some(first) = queues.next().await else {
            let _ = within(stall, "closing", stream.close()).await;
            return;
        };
        let mut next = Some(first);
        while let Some(q) = next.take() {
            if let Err(e) = encode_into(&mut batch, q, &shared, &mut tokens).await {
                tracing::warn!(%peer, "cannot encode a message: {e}");
            }
            if batch.len() < BATCH_BYTES {
                next = queues.ready();
            }
        }
        if let Err(e) = batch.write_to(&mut stream, stall).await {
            break closed(e.kind() == io::ErrorKind::TimedOut, e.to_string());
        }
        if let Err(e) = within(stall, "reading", stream.flush()).await {
            break closed(e.kind() == io::ErrorKind::TimedOut, e.to_string());
        }
        batch.clear();
        for token in tokens.drain(..) {
            if events
                .send(StreamEvent::Sent { peer, token })
                .await
                .is_err()
            {
                return;
            }
        }
    };
    let _ = events.send(end).await;
}

/// Opens our stream to `peer` within `OPEN_TIMEOUT`. libp2p-stream 0.5 can
/// drop the dial behind an open request when several arrive at once
/// (rust-libp2p#6157), and that open then never completes; so while the
/// first attempt is pending, fresh ones start 1, 3 and 7 s in (they find
/// the connection or dial again), and the first to succeed wins. A slow
/// attempt is never cut short, and any error ends the open at once.
async fn open(
    control: &libp2p_stream::Control,
    peer: PeerId,
) -> Result<libp2p::Stream, libp2p_stream::OpenStreamError> {
    let start = tokio::time::Instant::now();
    let deadline = start + OPEN_TIMEOUT;
    let mut attempts = futures::stream::FuturesUnordered::new();
    let mut next = start;
    let mut gap = OPEN_TIMEOUT / 10;
    loop {
        if tokio::time::Instant::now() >= next && attempts.len() < OPEN_ATTEMPTS {
            if !attempts.is_empty() {
                tracing::debug!(%peer, "opening the stream is slow; trying once more alongside");
            }
            let mut control = control.clone();
            attempts.push(async move { control.open_stream(peer, PROTOCOL).await });
            next += gap;
            gap *= 2;
        }
        let wake = if attempts.len() < OPEN_ATTEMPTS {
            next.min(deadline)
        } else {
            deadline
        };
        tokio::select! {
            Some(result) = attempts.next() => return result,
            _ = tokio::time::sleep_until(wake) => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(libp2p_stream::OpenStreamError::Io(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "opening the stream timed out",
                    )));
                }
            }
        }
    }
}

/// Most attempts at opening one stream at once (see `open`).
const OPEN_ATTEMPTS: usize = 4;

/// Frames gathered for one write: encoded bytes, with chunk data spliced in
/// at offsets instead of copied (a chunk may be 1 MiB or more).
#[derive(Default)]
struct Batch {
    buf: Vec<u8>,
    /// `(offset in buf, data)`, in ascending offset order.
    spliced: Vec<(usize, Vec<u8>)>,
}

impl Batch {
    /// Bytes the batch will write.
    fn len(&self) -> usize {
        self.buf.len() + self.spliced.iter().map(|(_, d)| d.len()).sum::<usize>()
    }

    async fn write_to<T: AsyncWrite + Unpin>(
        &self,
        stream: &mut T,
        stall: std::time::Duration,
    ) -> io::Result<()> {
        let mut from = 0;
        for (at, data) in &self.spliced {
            write_steadily(stream, &self.buf[from..*at], stall).await?;
            write_steadily(stream, data, stall).await?;
            from = *at;
        }
        write_steadily(stream, &self.buf[from..], stall).await
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.spliced.clear();
        // A lane that carried large frames must not hold their size for ever.
        self.buf.shrink_to(BATCH_BYTES);
    }
}

/// Appends `q` as one frame to `batch`, noting its token; chunk data waits for
/// the upload rate cap first.
async fn encode_into(
    batch: &mut Batch,
    q: Queued,
    shared: &Shared,
    tokens: &mut Vec<u64>,
) -> io::Result<()> {
    let buf = &mut batch.buf;
    let at = begin_frame(buf);
    // Chunk data written after `buf[..splice_at]` rather than copied into it.
    let mut splice = None;
    match q.out {
        Outgoing::Message(Message::Answer {
            rid,
            answer: Answer::Chunk { index, data, proof },
        }) => {
            shared.upload.acquire(data.len()).await;
            shared
                .counters
                .uploaded
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            let body_start = buf.len();
            answer_prefix(buf, rid);
            chunk_prefix(buf, index, data.len());
            let splice_at = buf.len();
            cbor_text(buf, "proof");
            cbor_bytes_header(buf, proof.len());
            buf.extend_from_slice(&proof);
            let body = buf.len() - body_start + data.len();
            shared
                .counters
                .sent
                .count_chunk(body, data.len(), proof.len());
            splice = Some((splice_at, data));
        }
        Outgoing::Message(msg) => {
            let body_start = buf.len();
            match cbor4ii::serde::to_vec(std::mem::take(buf), &msg) {
                Ok(done) => *buf = done,
                Err(e) => {
                    // Encoding into memory does not fail; if it ever did, this batch would be lost.
                    buf.truncate(at);
                    return Err(io::Error::new(io::ErrorKind::InvalidInput, e.to_string()));
                }
            }
            shared.counters.sent.count(buf.len() - body_start, &msg);
        }
        Outgoing::Shared { rid, answer } => {
            let body_start = buf.len();
            answer_prefix(buf, rid);
            buf.extend_from_slice(&answer);
            let len = buf.len() - body_start;
            shared
                .counters
                .sent
                .control
                .fetch_add(len as u64, Ordering::Relaxed);
            shared
                .counters
                .sent
                .framing
                .fetch_add(super::frames::PREFIX_LEN as u64, Ordering::Relaxed);
        }
    }
    let spliced_len = splice.as_ref().map_or(0, |(_, d)| d.len());
    end_frame(buf, at, spliced_len)?;
    batch.spliced.extend(splice);
    if let Some(t) = q.token {
        tokens.push(t);
    }
    Ok(())
}

/// The CBOR of `Message::Answer { rid, answer: <...> }` up to the answer
/// itself: serde's externally tagged enum, a map of the variant's fields.
fn answer_prefix(buf: &mut Vec<u8>, rid: u32) {
    variant_head(buf, "Answer", 2);
    cbor_text(buf, "rid");
    cbor_uint(buf, rid);
    cbor_text(buf, "answer");
}

/// The CBOR of `Answer::Chunk { index, data, proof }` up to `data`'s bytes.
fn chunk_prefix(buf: &mut Vec<u8>, index: u32, data_len: usize) {
    variant_head(buf, "Chunk", 3);
    cbor_text(buf, "index");
    cbor_uint(buf, index);
    cbor_text(buf, "data");
    cbor_bytes_header(buf, data_len);
}

/// serde's externally tagged struct variant: a map of 1 from the variant's
/// name to a map of its `fields` (fewer than 24), which follow in declaration order.
fn variant_head(buf: &mut Vec<u8>, name: &str, fields: u8) {
    buf.push(0xa1);
    cbor_text(buf, name);
    buf.push(0xa0 | fields);
}

/// The head of a CBOR byte string of `len` bytes (major type 2).
fn cbor_bytes_header(buf: &mut Vec<u8>, len: usize) {
    match u32::try_from(len) {
        Ok(n) => {
            let at = buf.len();
            cbor_uint(buf, n);
            buf[at] |= 0x40;
        }
        Err(_) => {
            buf.push(0x5b);
            buf.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

fn cbor_text(buf: &mut Vec<u8>, s: &str) {
    // Our field names are all shorter than 24 bytes.
    buf.push(0x60 | s.len() as u8);
    buf.extend_from_slice(s.as_bytes());
}

fn cbor_uint(buf: &mut Vec<u8>, n: u32) {
    match n {
        0..=23 => buf.push(n as u8),
        24..=0xff => buf.extend_from_slice(&[0x18, n as u8]),
        0x100..=0xffff => {
            buf.push(0x19);
            buf.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            buf.push(0x1a);
            buf.extend_from_slice(&n.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::wire::MAX_MESSAGE_BYTES;

    #[test]
    fn a_shared_answer_encodes_as_the_message_would() {
        let answer = Answer::Manifest {
            bytes: vec![1, 2, 3, 4],
        };
        let encoded = cbor4ii::serde::to_vec(Vec::new(), &answer).unwrap();
        for rid in [0, 23, 24, 255, 256, 65_535, 65_536, u32::MAX] {
            let mut buf = Vec::new();
            answer_prefix(&mut buf, rid);
            buf.extend_from_slice(&encoded);
            let want = Message::Answer {
                rid,
                answer: answer.clone(),
            };
            assert_eq!(buf, want.encode(), "rid {rid}");
            assert_eq!(Message::decode(&buf, MAX_MESSAGE_BYTES), Ok(want));
        }
    }

    #[tokio::test]
    async fn a_spliced_chunk_answer_writes_the_bytes_the_message_encodes_to() {
        for (rid, index, len) in [
            (0, 0, 0),
            (7, 23, 23),
            (300, 24, 24),
            (70_000, 511, 32 * 1024),
            (u32::MAX, 70_000, 1 << 20),
        ] {
            let shared = Shared::new(
                Arc::new(super::super::WireLimits::new(
                    std::time::Duration::from_secs(1),
                )),
                Arc::default(),
                Arc::new(crate::ratelimit::RateLimiter::unlimited()),
                Arc::new(crate::ratelimit::RateLimiter::unlimited()),
            );
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let proof = vec![9u8; 9 * 32];
            let msg = Message::Answer {
                rid,
                answer: Answer::Chunk {
                    index,
                    data: data.clone(),
                    proof: proof.clone(),
                },
            };
            let mut batch = Batch::default();
            let mut tokens = Vec::new();
            // A small frame before and after: the splice must keep its place between them.
            let ping = Message::Unknown {
                id: protocol::ContentId::from_bytes([1; 32]),
            };
            for out in [ping.clone(), msg.clone(), ping.clone()] {
                let q = Queued {
                    out: Outgoing::Message(out),
                    token: Some(1),
                };
                encode_into(&mut batch, q, &shared, &mut tokens)
                    .await
                    .unwrap();
            }
            let mut written = futures::io::Cursor::new(Vec::new());
            batch
                .write_to(&mut written, std::time::Duration::from_secs(1))
                .await
                .unwrap();
            let mut want = Vec::new();
            for m in [&ping, &msg, &ping] {
                let body = m.encode();
                want.extend_from_slice(&(body.len() as u32).to_be_bytes());
                want.extend_from_slice(&body);
            }
            assert_eq!(
                written.into_inner(),
                want,
                "rid {rid} index {index} len {len}"
            );
            assert_eq!(batch.len(), want.len());
            // Every written byte is counted once, the chunk's as payload.
            let [payload, proofs, control, framing] = shared.counters.sent.snapshot();
            assert_eq!(payload + proofs + control + framing, want.len() as u64);
            assert_eq!((payload, proofs), (len as u64, proof.len() as u64));
            assert_eq!(tokens.len(), 3);
        }
    }
}
