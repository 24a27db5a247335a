//! The `/kadswarm/chunks/1` codec: length-prefixed, capped CBOR frames, rate limits, and
//! chunk hashing on the connection's own task.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::prelude::*;
use libp2p::request_response;
use libp2p::StreamProtocol;
use protocol::merkle::{hash_leaf, Hash};
use protocol::wire::{Request, Response, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, PROTOCOL_NAME};

use crate::ratelimit::RateLimiter;

/// The protocol name as libp2p wants it.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new(PROTOCOL_NAME);

/// A response plus, for chunks, the leaf hash computed while decoding.
#[derive(Debug)]
pub struct Reply {
    /// The decoded message.
    pub msg: Response,
    /// `hash_leaf` of the chunk data, so the event loop need not hash it.
    pub leaf: Option<Hash>,
}

impl From<Response> for Reply {
    fn from(msg: Response) -> Self {
        Self { msg, leaf: None }
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
}

impl ChunkCodec {
    /// A codec applying these limits and feeding these counters.
    pub fn new(
        upload: Arc<RateLimiter>,
        download: Arc<RateLimiter>,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            upload,
            download,
            counters,
        }
    }
}

/// Reads one frame: a 4-byte big-endian length, then that many bytes.
///
/// The length is checked against `max` before anything is allocated, and the
/// buffer is allocated once at its final size (no growth, no re-copying).
async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message of {len} bytes exceeds {max}"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Writes one frame (see [`read_frame`]) and closes our side of the stream.
async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len()).map_err(invalid)?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(body).await?;
    io.close().await
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
        let buf = read_frame(io, MAX_REQUEST_BYTES).await?;
        Request::decode(&buf).map_err(invalid)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Reply>
    where
        T: AsyncRead + Unpin + Send,
    {
        let buf = read_frame(io, MAX_RESPONSE_BYTES).await?;
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
        Ok(Reply { msg, leaf })
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
        write_frame(io, &req.encode()).await
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
        if let Response::Chunk { data, .. } = &res.msg {
            self.upload.acquire(data.len()).await;
            self.counters
                .uploaded
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        write_frame(io, &res.msg.encode()).await
    }
}
