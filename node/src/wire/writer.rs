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
    mut control: libp2p_stream::Control,
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
    let mut stream =
        match tokio::time::timeout(OPEN_TIMEOUT, control.open_stream(peer, PROTOCOL)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e @ libp2p_stream::OpenStreamError::UnsupportedProtocol(_))) => {
                let _ = events.send(refused(e.to_string())).await;
                return;
            }
            Ok(Err(e)) => {
                let _ = events.send(closed(false, e.to_string())).await;
                return;
            }
            Err(_) => {
                let _ = events
                    .send(closed(false, "opening the stream timed out".into()))
                    .await;
                return;
            }
        };
    drop(control);
    let stall = shared.limits.stall_timeout;
    let mut buf = Vec::new();
    let mut tokens = Vec::new();
    let end = loop {
        let Some(first) = queues.next().await else {
            let _ = within(stall, "closing", stream.close()).await;
            return;
        };
        let mut next = Some(first);
        while let Some(q) = next.take() {
            if let Err(e) = encode_into(&mut buf, q, &shared, &mut tokens).await {
                tracing::warn!(%peer, "cannot encode a message: {e}");
            }
            if buf.len() < BATCH_BYTES {
                next = queues.ready();
            }
        }
        if let Err(e) = write_steadily(&mut stream, &buf, stall).await {
            break closed(e.kind() == io::ErrorKind::TimedOut, e.to_string());
        }
        if let Err(e) = within(stall, "reading", stream.flush()).await {
            break closed(e.kind() == io::ErrorKind::TimedOut, e.to_string());
        }
        buf.clear();
        // A lane that carried one large chunk must not hold its size for ever.
        buf.shrink_to(BATCH_BYTES);
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

/// Appends `q` as one frame to `buf`, noting its token; chunk data waits for
/// the upload rate cap first.
async fn encode_into(
    buf: &mut Vec<u8>,
    q: Queued,
    shared: &Shared,
    tokens: &mut Vec<u64>,
) -> io::Result<()> {
    let at = begin_frame(buf);
    match q.out {
        Outgoing::Message(msg) => {
            if let Message::Answer {
                answer: Answer::Chunk { data, .. },
                ..
            } = &msg
            {
                shared.upload.acquire(data.len()).await;
                shared
                    .counters
                    .uploaded
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
            }
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
    end_frame(buf, at)?;
    if let Some(t) = q.token {
        tokens.push(t);
    }
    Ok(())
}

/// The CBOR of `Message::Answer { rid, answer: <...> }` up to the answer
/// itself: serde's externally tagged enum, a map of the variant's fields.
fn answer_prefix(buf: &mut Vec<u8>, rid: u32) {
    buf.push(0xa1); // map of 1: the variant
    cbor_text(buf, "Answer");
    buf.push(0xa2); // map of 2: its fields, in declaration order
    cbor_text(buf, "rid");
    cbor_uint(buf, rid);
    cbor_text(buf, "answer");
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
}
