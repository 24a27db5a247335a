//! Serving `GET /metrics` over HTTP for Prometheus.
//!
//! There is no authentication: anyone who can reach the address can read
//! the metrics (content IDs among them). Bind it to loopback, or put it
//! behind something that authenticates, unless the network is trusted.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::http_listener::Bounded;
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
    let listener = Bounded::new(listener, MAX_CONNECTIONS, CONNECTION_LIFETIME);
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
