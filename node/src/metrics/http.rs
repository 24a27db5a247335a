//! Serving `GET /metrics` over HTTP for Prometheus.
//!
//! There is no authentication: anyone who can reach the address can read
//! the metrics (content IDs among them). Bind it to loopback, or put it
//! behind something that authenticates, unless the network is trusted.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Sleep;

use crate::Client;

/// The content type of the metrics text (OpenMetrics 1.0, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Most connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 16;
/// A connection is closed this long after it was accepted, so clients that
/// open connections and go quiet cannot hold every slot (a scraper simply
/// reconnects).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// Binds `addr` and serves `/metrics` in a task until the runtime ends;
/// returns the bound address (useful with port 0) and the task.
pub async fn start_metrics_server(
    addr: SocketAddr,
    client: Client,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen for metrics on {addr}; choose another --metrics address")
    })?;
    let bound = listener
        .local_addr()
        .with_context(|| format!("cannot read the metrics address bound for {addr}"))?;
    if !bound.ip().is_loopback() {
        tracing::warn!(
            "metrics on {bound} are readable by anyone who can reach it (no authentication)"
        );
    }
    let task = tokio::spawn(async move {
        if let Err(e) = serve_metrics(listener, client, std::future::pending()).await {
            tracing::error!("metrics server on {bound} stopped: {e}");
        }
    });
    tracing::info!("serving metrics on http://{bound}/metrics");
    Ok((bound, task))
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes.
pub async fn serve_metrics(
    listener: TcpListener,
    client: Client,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(client);
    let listener = Bounded {
        inner: listener,
        slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(client): State<Client>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        client.metrics_text(),
    )
}

/// A listener that holds at most `MAX_CONNECTIONS` open connections: the
/// next is accepted once one closes.
struct Bounded {
    inner: TcpListener,
    slots: Arc<Semaphore>,
}

/// A connection, its slot (given back when the connection is dropped) and
/// the end of its life.
struct Slotted {
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
                    let expires = Box::pin(tokio::time::sleep(CONNECTION_LIFETIME));
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
                    tracing::debug!("metrics accept failed: {e}");
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
        "metrics connection outlived its time",
    )
}
