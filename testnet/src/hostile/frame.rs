//! Frames of `/kadswarm/session/2` on raw streams: a 4-byte big-endian
//! length, then that many bytes of the CBOR of one [`Message`]. Honest
//! helpers here; the attacks decide what to leave out.

use std::io;
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use protocol::wire::{Message, MAX_MESSAGE_BYTES};

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

/// `body` with its length prefix, as stream bytes.
pub fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// Writes `m` as one frame.
pub async fn send<S: AsyncWrite + Unpin>(s: &mut S, m: &Message) -> io::Result<()> {
    write_frame(s, &m.encode()).await
}

/// Reads and decodes one message of any size a session allows.
pub async fn recv<S: AsyncRead + Unpin>(s: &mut S) -> io::Result<Message> {
    let body = read_frame(s, MAX_MESSAGE_BYTES).await?;
    Message::decode(&body, MAX_MESSAGE_BYTES)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Waits up to `hold` on a stream the other side never writes on (our
/// outbound session stream), so it returns early once the other side ends
/// or resets it. True if it ended.
pub async fn held_until_dropped<S: AsyncRead + Unpin>(s: &mut S, hold: Duration) -> bool {
    let ended = async {
        let mut sink = [0u8; 256];
        loop {
            match s.read(&mut sink).await {
                // Nobody writes on an inbound stream; bytes here are ignored.
                Ok(n) if n > 0 => continue,
                _ => return,
            }
        }
    };
    tokio::time::timeout(hold, ended).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use protocol::wire::Ask;
    use protocol::ContentId;

    #[test]
    fn frames_round_trip_and_lying_lengths_are_refused() {
        futures::executor::block_on(async {
            let mut out = Cursor::new(Vec::new());
            write_frame(&mut out, b"hello").await.unwrap();
            let bytes = out.into_inner();
            assert_eq!(&bytes[..4], &[0, 0, 0, 5]);
            assert_eq!(framed(b"hello"), bytes);
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

    #[test]
    fn messages_round_trip() {
        futures::executor::block_on(async {
            let m = Message::Ask {
                rid: 7,
                ask: Ask::Manifest {
                    id: ContentId::from_bytes([1; 32]),
                },
            };
            let mut out = Cursor::new(Vec::new());
            send(&mut out, &m).await.unwrap();
            let got = recv(&mut Cursor::new(out.into_inner())).await.unwrap();
            assert_eq!(got, m);
        });
    }
}
