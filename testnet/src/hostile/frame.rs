//! Frames of `/kadswarm/chunks/1` on raw streams: a 4-byte big-endian length,
//! then that many bytes of CBOR. Honest helpers here; the attacks decide what
//! to leave out.

use std::io;
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use protocol::wire::{Request, Response, MAX_RESPONSE_BYTES};

/// Writes one whole frame and flushes it (our side stays open).
pub async fn write_frame<S: AsyncWrite + Unpin>(s: &mut S, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    s.write_all(&len.to_be_bytes()).await?;
    s.write_all(body).await?;
    s.flush().await
}

/// Reads one frame of at most `max` bytes. Memory grows with the bytes that
/// actually arrive, not with what the length prefix claims.
pub async fn read_frame<S: AsyncRead + Unpin>(s: &mut S, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("peer announced a {len}-byte frame, over {max}"),
        ));
    }
    let mut buf = Vec::new();
    s.take(len as u64).read_to_end(&mut buf).await?;
    if buf.len() != len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(buf)
}

/// Sends `req`, closes our side, and reads and decodes the answer within `timeout`.
pub async fn ask<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    req: &Request,
    timeout: Duration,
) -> io::Result<Response> {
    let exchange = async {
        write_frame(s, &req.encode()).await?;
        s.close().await?;
        let body = read_frame(s, MAX_RESPONSE_BYTES).await?;
        Response::decode(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    #[test]
    fn frames_round_trip_and_lying_lengths_are_refused() {
        futures::executor::block_on(async {
            let mut out = Cursor::new(Vec::new());
            write_frame(&mut out, b"hello").await.unwrap();
            let bytes = out.into_inner();
            assert_eq!(&bytes[..4], &[0, 0, 0, 5]);
            let got = read_frame(&mut Cursor::new(bytes.clone()), 64)
                .await
                .unwrap();
            assert_eq!(got, b"hello");
            assert!(read_frame(&mut Cursor::new(bytes.clone()), 4)
                .await
                .is_err());
            // Claims 5 bytes, holds 3.
            assert!(read_frame(&mut Cursor::new(bytes[..7].to_vec()), 64)
                .await
                .is_err());
        });
    }
}
