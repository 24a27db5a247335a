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

/// A request as the codec carries it.
#[derive(Debug)]
pub enum Asked {
    /// A well-formed request.
    Request(Request),
    /// A frame no honest peer sends: over the cap, malformed, or stuck
    /// mid-frame. Handed up (rather than failing the stream, which libp2p
    /// would not report) so the node can hold it against the peer.
    Broken(String),
}

impl From<Request> for Asked {
    fn from(r: Request) -> Self {
        Asked::Request(r)
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
    type Request = Asked;
    type Response = Reply;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Asked>
    where
        T: AsyncRead + Unpin + Send,
    {
        let stall = self.limits.stall_timeout;
        // A request follows its stream's opening at once; one that does not is an idle slot taken.
        let buf = match read_frame(io, self.limits.max_request(), stall, Some(stall)).await {
            Ok(buf) => buf,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::InvalidData | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(Asked::Broken(e.to_string()))
            }
            Err(e) => return Err(e),
        };
        Ok(match Request::decode(&buf) {
            Ok(r) => Asked::Request(r),
            Err(e) => Asked::Broken(e.to_string()),
        })
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
        req: Asked,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match req {
            Asked::Request(r) => write_frame(io, &r.encode(), self.limits.stall_timeout).await,
            Asked::Broken(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a broken request is never sent",
            )),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    const STALL: Duration = Duration::from_secs(10);

    /// A peer that never reads: every write stays pending.
    struct NeverReads;

    impl AsyncWrite for NeverReads {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Pending
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Pending
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    /// A peer that sends `prefix`, then nothing more, forever.
    struct StopsAfter(Cursor<Vec<u8>>);

    impl AsyncRead for StopsAfter {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            match Pin::new(&mut self.0).poll_read(cx, buf) {
                Poll::Ready(Ok(0)) => Poll::Pending,
                other => other,
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_stops_reading_times_out() {
        let err = write_frame(&mut NeverReads, &[7; 1000], STALL)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_stuck_mid_frame_times_out() {
        // Announces 100 bytes, sends 10 of them, then stalls.
        let mut sent = 100u32.to_be_bytes().to_vec();
        sent.extend_from_slice(&[1; 10]);
        let mut peer = StopsAfter(Cursor::new(sent));
        let err = read_frame(&mut peer, 1024, STALL, Some(STALL))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        // One that never starts is dropped too.
        let mut silent = StopsAfter(Cursor::new(Vec::new()));
        let err = read_frame(&mut silent, 1024, STALL, Some(STALL))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn an_oversize_frame_is_refused_before_its_body_is_read() {
        let mut sent = (REQUEST_BASE_BYTES as u32 + 1).to_be_bytes().to_vec();
        sent.extend_from_slice(&[0; 16]);
        let mut peer = Cursor::new(sent);
        let err = read_frame(&mut peer, REQUEST_BASE_BYTES, STALL, None)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(peer.position(), 4, "read past the length prefix");
    }

    #[test]
    fn the_request_cap_fits_the_largest_bitfield_we_hold() {
        let limits = WireLimits::new(STALL);
        assert_eq!(limits.max_request(), REQUEST_BASE_BYTES);
        limits.allow_bitfield_for(8 * 1000);
        assert_eq!(limits.max_request(), REQUEST_BASE_BYTES + 1000);
        limits.allow_bitfield_for(8);
        assert_eq!(
            limits.max_request(),
            REQUEST_BASE_BYTES + 1000,
            "a smaller content never lowers the cap below a larger one's"
        );
        limits.allow_bitfield_for(u32::MAX);
        assert_eq!(limits.max_request(), MAX_REQUEST_BYTES);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_frames_never_panic_or_overallocate(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            rt.block_on(async {
                let mut peer = Cursor::new(bytes);
                if let Ok(Ok(buf)) = tokio::time::timeout(Duration::from_secs(1), read_frame(&mut peer, 512, STALL, None)).await {
                    assert!(buf.len() <= 512);
                    let _ = Request::decode(&buf);
                }
            });
        }
    }
}
