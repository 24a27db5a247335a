//! The honest plumbing of `/kadswarm/session/2` that the attacks build on:
//! opening our one outbound stream to a peer, and an [`Asker`] that keeps
//! that stream, pipelines asks on it and matches the answers that arrive on
//! the peer's own stream to them by request ID.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::{PeerId, Stream};
use protocol::wire::{Answer, Ask, Message, MAX_MESSAGE_BYTES};
use tokio::sync::oneshot;

use super::frame::{self, read_frame};
use super::net::SESSION;
use super::Counters;

/// How long opening a stream may take.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a session stream to `peer`, counting it (or the failure) in `counters`.
pub async fn open(
    control: &libp2p_stream::Control,
    peer: PeerId,
    counters: &Counters,
) -> io::Result<Stream> {
    let mut control = control.clone();
    match tokio::time::timeout(OPEN_TIMEOUT, control.open_stream(peer, SESSION)).await {
        Ok(Ok(s)) => {
            Counters::add(&counters.streams, 1);
            Ok(s)
        }
        Ok(Err(e)) => {
            Counters::add(&counters.errors, 1);
            Err(io::Error::other(e.to_string()))
        }
        Err(_) => {
            Counters::add(&counters.errors, 1);
            Err(io::ErrorKind::TimedOut.into())
        }
    }
}

/// True for answers that refuse the ask.
pub fn is_refusal(a: &Answer) -> bool {
    matches!(
        a,
        Answer::Choked | Answer::DontHave | Answer::UnknownContent
    )
}

/// Our side of an honest session with one peer: asks go out on our stream,
/// answers come back on the peer's, which the caller hands to
/// [`Asker::read_answers`].
pub struct Asker {
    control: libp2p_stream::Control,
    peer: PeerId,
    /// Sent first on every stream we open (our have).
    hello: Option<Message>,
    out: tokio::sync::Mutex<Option<Stream>>,
    /// Asks awaiting their answer; each entry lives only while its ask waits.
    pending: Mutex<HashMap<u32, oneshot::Sender<Answer>>>,
    next_rid: AtomicU32,
    counters: Arc<Counters>,
}

impl Asker {
    /// A session with `peer`; `hello` is written first on each new stream.
    pub fn new(
        control: libp2p_stream::Control,
        peer: PeerId,
        hello: Option<Message>,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            control,
            peer,
            hello,
            out: tokio::sync::Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            next_rid: AtomicU32::new(1),
            counters,
        }
    }

    /// The peer this session is with.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// Writes `m` on our stream to the peer, opening it (with the hello) if
    /// there is none; a failed write drops the stream so the next send reopens.
    pub async fn send(&self, m: &Message) -> io::Result<()> {
        let mut out = self.out.lock().await;
        let s = match out.as_mut() {
            Some(s) => s,
            None => {
                let mut s = open(&self.control, self.peer, &self.counters).await?;
                if let Some(hello) = &self.hello {
                    frame::send(&mut s, hello).await?;
                }
                out.insert(s)
            }
        };
        let sent = frame::send(s, m).await;
        if sent.is_err() {
            *out = None;
        }
        sent
    }

    /// Asks `ask` and waits up to `timeout` for its answer.
    pub async fn ask(&self, ask: Ask, timeout: Duration) -> io::Result<Answer> {
        let rid = self.next_rid.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending().insert(rid, tx);
        let exchange = async {
            self.send(&Message::Ask { rid, ask }).await?;
            Counters::add(&self.counters.sent, 1);
            rx.await
                .map_err(|_| io::Error::other("the session ended before the answer came"))
        };
        let answer = tokio::time::timeout(timeout, exchange).await;
        self.pending().remove(&rid);
        match answer {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(e)) => {
                Counters::add(&self.counters.errors, 1);
                Err(e)
            }
            Err(_) => {
                Counters::add(&self.counters.errors, 1);
                Err(io::ErrorKind::TimedOut.into())
            }
        }
    }

    /// Reads the peer's session stream until it ends, handing each answer to
    /// the ask that waits for it; everything else is counted and dropped.
    pub async fn read_answers(&self, mut s: Stream) {
        while let Ok(body) = read_frame(&mut s, MAX_MESSAGE_BYTES).await {
            Counters::add(&self.counters.received, 1);
            Counters::add(&self.counters.bytes_read, body.len() as u64);
            let Ok(Message::Answer { rid, answer }) = Message::decode(&body, MAX_MESSAGE_BYTES)
            else {
                continue;
            };
            if is_refusal(&answer) {
                Counters::add(&self.counters.refused, 1);
            }
            if let Some(tx) = self.pending().remove(&rid) {
                let _ = tx.send(answer);
            }
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u32, oneshot::Sender<Answer>>> {
        // A panicking holder cannot leave the map half-changed; keep using it.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}
