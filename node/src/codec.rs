//! The `/kadswarm/chunks/1` codec: length-prefixed, capped CBOR frames, stall
//! deadlines, rate limits, and chunk hashing on the connection's own task.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::prelude::*;
use libp2p::request_response;
use libp2p::StreamProtocol;
use protocol::merkle::{hash_leaf, Hash};
use protocol::wire::{Request, Response, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, PROTOCOL_NAME};

use crate::ratelimit::RateLimiter;

/// The protocol name as libp2p wants it.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new(PROTOCOL_NAME);

/// A response as the codec carries it.
#[derive(Debug)]
pub enum Reply {
    /// A message: decoded from a peer (with, for chunks, the leaf hash computed
    /// while decoding, so the event loop need not hash it), or to be encoded.
    Message {
        /// The message.
        msg: Response,
        /// `hash_leaf` of a received chunk's data.
        leaf: Option<Hash>,
    },
    /// An outgoing message already encoded once and shared by every stream
    /// that sends it (a manifest), so many askers cost one buffer.
    Encoded(Arc<[u8]>),
}

impl From<Response> for Reply {
    fn from(msg: Response) -> Self {
        Reply::Message { msg, leaf: None }
    }
}

/// Limits the codec enforces on every stream, shared with the event loop.
#[derive(Debug)]
pub struct WireLimits {
    /// Largest request frame accepted: room for a request plus the bitfield of
    /// the largest content we hold, so a peer cannot make us buffer more than
    /// a request can need. The event loop raises it as contents are added.
    max_request: AtomicUsize,
    /// A stream that moves no byte of a started frame for this long is dropped
    /// (a reader that stopped reading, or a writer stuck mid-frame).
    pub stall_timeout: Duration,
}

/// Room for any request other than a bitfield (they are well under 200 bytes).
pub const REQUEST_BASE_BYTES: usize = 1024;

impl WireLimits {
    /// Limits for a node holding no content yet.
    pub fn new(stall_timeout: Duration) -> Self {
        Self {
            max_request: AtomicUsize::new(REQUEST_BASE_BYTES),
            stall_timeout,
        }
    }

    /// Accept requests carrying a bitfield for `chunks` chunks.
    pub fn allow_bitfield_for(&self, chunks: u32) {
        let need = REQUEST_BASE_BYTES + (chunks as usize).div_ceil(8);
        self.max_request
            .fetch_max(need.min(MAX_REQUEST_BYTES), Ordering::Relaxed);
    }

    /// The current request frame cap.
    pub fn max_request(&self) -> usize {
        self.max_request.load(Ordering::Relaxed)
    }
}

/// Byte counters shared with the node, for stats.
#[derive(Debug, Default)]
pub struct Counters {
    /// Chunk payload bytes sent.
    pub uploaded: AtomicU64,
    /// Chunk payload bytes received.
    pub downloaded: AtomicU64,
}

/// Codec state shared by every stream of a node.
#[derive(Clone)]
pub struct ChunkCodec {
    upload: Arc<RateLimiter>,
    download: Arc<RateLimiter>,
    counters: Arc<Counters>,
    limits: Arc<WireLimits>,
}

impl ChunkCodec {
    /// A codec applying these rate and size limits and feeding these counters.
    pub fn new(
        upload: Arc<RateLimiter>,
        download: Arc<RateLimiter>,
        counters: Arc<Counters>,
        limits: Arc<WireLimits>,
    ) -> Self {
        Self {
            upload,
            download,
            counters,
            limits,
        }
    }
}

/// Fails with `TimedOut` if `f` does not finish within `stall`.
async fn within<F: Future<Output = io::Result<T>>, T>(
    stall: Duration,
    what: &str,
    f: F,
) -> io::Result<T> {
    match tokio::time::timeout(stall, f).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("peer made no progress {what} for {stall:?}"),
        )),
    }
}

/// Fills `buf`, failing if no byte arrives for `stall`.
///
/// Progress, not completion, is what is timed: a slow but steady peer (one of
/// many streams sharing a capped link) is fine; a peer that stopped is not.
async fn read_steadily<T: AsyncRead + Unpin>(
    io: &mut T,
    mut buf: &mut [u8],
    stall: Duration,
) -> io::Result<()> {
    while !buf.is_empty() {
        let n = within(stall, "sending", io.read(buf)).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[n..];
    }
    Ok(())
}

/// Writes all of `buf`, failing if the peer takes no byte for `stall`.
async fn write_steadily<T: AsyncWrite + Unpin>(
    io: &mut T,
    mut buf: &[u8],
    stall: Duration,
) -> io::Result<()> {
    while !buf.is_empty() {
        let n = within(stall, "reading", io.write(buf)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

/// Reads one frame: a 4-byte big-endian length, then that many bytes.
///
/// The length is checked against `max` before anything is allocated, and the
/// buffer is allocated once at its final size. Once the frame has started it
/// must keep moving (see [`read_steadily`]); a `first_byte` deadline, if
/// given, also bounds the wait for it to start.
async fn read_frame<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    max: usize,
    stall: Duration,
    first_byte: Option<Duration>,
) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    match first_byte {
        Some(limit) => within(limit, "sending a request", io.read_exact(&mut len[..1])).await?,
        None => io.read_exact(&mut len[..1]).await?,
    }
    read_steadily(io, &mut len[1..], stall).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message of {len} bytes exceeds {max}"),
        ));
    }
    let mut buf = vec![0u8; len];
    read_steadily(io, &mut buf, stall).await?;
    Ok(buf)
}

/// Writes one frame (see [`read_frame`]) and closes our side of the stream.
async fn write_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    body: &[u8],
    stall: Duration,
) -> io::Result<()> {
    let len = u32::try_from(body.len()).map_err(invalid)?;
    write_steadily(io, &len.to_be_bytes(), stall).await?;
    write_steadily(io, body, stall).await?;
    within(stall, "reading", io.close()).await
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl request_response::Codec for ChunkCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Reply;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        let stall = self.limits.stall_timeout;
        // A request follows its stream's opening at once; one that does not is an idle slot taken.
        let buf = read_frame(io, self.limits.max_request(), stall, Some(stall)).await?;
        Request::decode(&buf).map_err(invalid)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Reply>
    where
        T: AsyncRead + Unpin + Send,
    {
        // The first byte may wait on the peer's upload queue and rate cap (the request timeout
        // bounds that); a frame once started must keep moving.
        let buf = read_frame(io, MAX_RESPONSE_BYTES, self.limits.stall_timeout, None).await?;
        let msg = Response::decode(&buf).map_err(invalid)?;
        let leaf = match &msg {
            Response::Chunk { data, .. } => {
                // Pace downloads after the fact: the next read waits for this one's tokens.
                self.download.acquire(data.len()).await;
                self.counters
                    .downloaded
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                Some(hash_leaf(data))
            }
            _ => None,
        };
        Ok(Reply::Message { msg, leaf })
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req.encode(), self.limits.stall_timeout).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Reply,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let stall = self.limits.stall_timeout;
        match res {
            Reply::Encoded(frame) => write_frame(io, &frame, stall).await,
            Reply::Message { msg, .. } => {
                if let Response::Chunk { data, .. } = &msg {
                    self.upload.acquire(data.len()).await;
                    self.counters
                        .uploaded
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                write_frame(io, &msg.encode(), stall).await
            }
        }
    }
}
