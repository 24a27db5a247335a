//! A TCP listener for the node's small HTTP servers (metrics, control API)
//! that bounds what a local client can hold: at most `max` connections at
//! once, each closed after a fixed lifetime.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// A listener that holds at most `max` open connections (the next is
/// accepted once one closes), each for at most `lifetime`, so clients that
/// open connections and go quiet cannot hold every slot.
pub struct Bounded {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    lifetime: Duration,
}

impl Bounded {
    /// Bounds `inner` to `max` connections of `lifetime` each.
    pub fn new(inner: TcpListener, max: usize, lifetime: Duration) -> Self {
        Self {
            inner,
            slots: Arc::new(Semaphore::new(max)),
            lifetime,
        }
    }
}

/// A connection, its slot (given back when the connection is dropped) and
/// the end of its life.
pub struct Slotted {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    expires: Pin<Box<Sleep>>,
}

impl Slotted {
    /// True once the connection has lived its time (and registers a wake-up for then).
    fn expired(&mut self, cx: &mut TaskContext<'_>) -> bool {
        self.expires.as_mut().poll(cx).is_ready()
    }
}

impl axum::serve::Listener for Bounded {
    type Io = Slotted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok(slot) = self.slots.clone().acquire_owned().await else {
                // Never closed; if it were, waiting for a slot is all that is left.
                std::future::pending::<()>().await;
                continue;
            };
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let expires = Box::pin(tokio::time::sleep(self.lifetime));
                    return (
                        Slotted {
                            stream,
                            _slot: slot,
                            expires,
                        },
                        addr,
                    );
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::debug!("HTTP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

impl AsyncRead for Slotted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.expired(cx) {
            // End of input: the server closes the connection.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Slotted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.expired(cx) {
            return Poll::Ready(Err(timed_out()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        if self.expired(cx) {
            return Poll::Ready(Err(timed_out()));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "HTTP connection outlived its time",
    )
}

#[cfg(test)]
mod tests {
    use axum::serve::Listener;

    use super::*;

    #[tokio::test]
    async fn a_connection_beyond_the_bound_waits_for_a_free_slot() {
        let inner = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = inner.local_addr().unwrap();
        let mut bounded = Bounded::new(inner, 1, Duration::from_secs(60));
        let _c1 = TcpStream::connect(addr).await.unwrap();
        let _c2 = TcpStream::connect(addr).await.unwrap();
        let (first, _) = bounded.accept().await;
        let waited = tokio::time::timeout(Duration::from_millis(300), bounded.accept()).await;
        assert!(
            waited.is_err(),
            "a second connection got a slot while the first held it"
        );
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(10), bounded.accept()).await;
        assert!(
            second.is_ok(),
            "the freed slot was not given to the waiting connection"
        );
    }
}
