//! Length-prefixed frames on a byte stream, with no-progress deadlines.
//!
//! A frame is a 4-byte big-endian length, then that many bytes. Reading
//! checks the length against a cap before anything is allocated and grows
//! the buffer only as bytes arrive, so a peer that announces a large frame
//! and trickles it costs what it sent, not what it claimed.

use std::io;
use std::time::Duration;

use futures::prelude::*;

/// Bytes of the length prefix.
pub const PREFIX_LEN: usize = 4;

/// Most bytes the buffer grows by per read while a frame arrives.
const GROW_STEP: usize = 64 * 1024;

/// Fails with `TimedOut` if `f` does not finish within `stall`.
pub async fn within<F: Future<Output = io::Result<T>>, T>(
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
/// many sharing a capped link) is fine; a peer that stopped is not.
pub async fn read_steadily<T: AsyncRead + Unpin>(
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
pub async fn write_steadily<T: AsyncWrite + Unpin>(
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

/// Reads one frame body of at most `max` bytes; `None` on a clean end of
/// stream between frames.
///
/// Waiting for a frame to start has no deadline (a session stream is idle
/// between messages); once started, the frame must keep moving (`stall`).
/// An oversize length is `InvalidData`, read no further than the prefix.
pub async fn read_frame<T: AsyncRead + Unpin>(
    io: &mut T,
    max: usize,
    stall: Duration,
) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; PREFIX_LEN];
    if io.read(&mut len[..1]).await? == 0 {
        return Ok(None);
    }
    read_steadily(io, &mut len[1..], stall).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the {max}-byte limit"),
        ));
    }
    let mut buf = Vec::with_capacity(len.min(GROW_STEP));
    while buf.len() < len {
        let start = buf.len();
        let end = len.min(start + GROW_STEP);
        buf.resize(end, 0);
        read_steadily(io, &mut buf[start..end], stall).await?;
    }
    Ok(Some(buf))
}

/// Starts a frame in `buf`: a placeholder prefix that [`end_frame`] fills in.
pub fn begin_frame(buf: &mut Vec<u8>) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&[0; PREFIX_LEN]);
    at
}

/// Writes the length of the frame begun at `at` into its prefix; `spliced`
/// bytes of the body are written separately, after `buf`'s part of it.
pub fn end_frame(buf: &mut [u8], at: usize, spliced: usize) -> io::Result<()> {
    let body = buf.len() - at - PREFIX_LEN + spliced;
    let len = u32::try_from(body)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame larger than 4 GiB"))?;
    buf[at..at + PREFIX_LEN].copy_from_slice(&len.to_be_bytes());
    Ok(())
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

    /// A peer that sends what it was given, then nothing more, forever.
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

    fn framed(bodies: &[&[u8]]) -> Vec<u8> {
        let mut buf = Vec::new();
        for b in bodies {
            let at = begin_frame(&mut buf);
            buf.extend_from_slice(b);
            end_frame(&mut buf, at, 0).unwrap();
        }
        buf
    }

    #[tokio::test(start_paused = true)]
    async fn frames_round_trip_and_end_cleanly() {
        let big = vec![9u8; 200_000];
        let mut peer = Cursor::new(framed(&[b"one", b"", &big]));
        assert_eq!(
            read_frame(&mut peer, 1 << 20, STALL).await.unwrap(),
            Some(b"one".to_vec())
        );
        assert_eq!(
            read_frame(&mut peer, 1 << 20, STALL).await.unwrap(),
            Some(Vec::new())
        );
        assert_eq!(
            read_frame(&mut peer, 1 << 20, STALL).await.unwrap(),
            Some(big)
        );
        assert_eq!(read_frame(&mut peer, 1 << 20, STALL).await.unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_stops_reading_times_out() {
        let err = write_steadily(&mut NeverReads, &[7; 1000], STALL)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_stuck_midway_times_out() {
        // Announces 100 bytes, sends 10 of them, then stalls.
        let mut sent = 100u32.to_be_bytes().to_vec();
        sent.extend_from_slice(&[1; 10]);
        let mut peer = StopsAfter(Cursor::new(sent));
        let err = read_frame(&mut peer, 1024, STALL).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn an_oversize_frame_is_refused_before_its_body_is_read() {
        let mut sent = 1025u32.to_be_bytes().to_vec();
        sent.extend_from_slice(&[0; 16]);
        let mut peer = Cursor::new(sent);
        let err = read_frame(&mut peer, 1024, STALL).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(peer.position(), 4, "read past the length prefix");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_or_overallocate(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            rt.block_on(async {
                let mut peer = Cursor::new(bytes);
                while let Ok(Ok(Some(buf))) = tokio::time::timeout(Duration::from_secs(1), read_frame(&mut peer, 512, STALL)).await {
                    assert!(buf.len() <= 512);
                }
            });
        }
    }
}
