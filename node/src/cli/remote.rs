//! Talking to a daemon running on the same data directory, found through
//! its `control.json`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use node::daemon::views::{ApiError, API};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest answer we read from the daemon.
const MAX_ANSWER: usize = 16 << 20;
/// A daemon that does not answer in this long is taken as gone.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A daemon we can send requests to.
pub struct Remote {
    addr: SocketAddr,
    token: String,
}

impl Remote {
    /// The daemon of `data_dir` if one answers there; None if none runs.
    pub async fn find(data_dir: &Path) -> anyhow::Result<Option<Self>> {
        let Some(info) = node::daemon::read_control(data_dir)? else {
            return Ok(None);
        };
        let addr: SocketAddr = info
            .url
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .filter(|a: &SocketAddr| a.ip().is_loopback())
            .with_context(|| {
                format!("control.json names {:?}, not a loopback http URL", info.url)
            })?;
        let remote = Self {
            addr,
            token: info.token,
        };
        // A daemon that crashed leaves its control.json behind: check it answers.
        match remote.call(Method::GET, "node", None).await {
            Ok(_) => Ok(Some(remote)),
            Err(e) => {
                tracing::info!("no daemon answers at {}: {e:#}", info.url);
                Ok(None)
            }
        }
    }

    /// GET `path` (below /v1/) and decode the JSON answer.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let bytes = self.call(Method::GET, path, None).await?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("the daemon's answer to {path} is not what this node expects"))
    }

    /// POST `body` as JSON to `path` and decode the JSON answer.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let body = serde_json::to_vec(body).context("encoding the request")?;
        let bytes = self.call(Method::POST, path, Some(body)).await?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("the daemon's answer to {path} is not what this node expects"))
    }

    /// DELETE `path`.
    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        self.call(Method::DELETE, path, None).await.map(|_| ())
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Bytes> {
        tokio::time::timeout(TIMEOUT, self.call_inner(method, path, body))
            .await
            .map_err(|_| {
                anyhow!(
                    "the daemon at {} did not answer within {TIMEOUT:?}",
                    self.addr
                )
            })?
    }

    async fn call_inner(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Bytes> {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("cannot reach the daemon at {}", self.addr))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake with the daemon")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{API}/{path}"))
            .header(hyper::header::HOST, self.addr.to_string())
            .header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            );
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .context("building the request")?;
        let resp = sender
            .send_request(req)
            .await
            .context("sending to the daemon")?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| anyhow!("reading the daemon's answer: {e}"))?
            .to_bytes();
        if status.is_success() {
            return Ok(bytes);
        }
        let msg = serde_json::from_slice::<ApiError>(&bytes)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
        if status == StatusCode::UNAUTHORIZED {
            bail!("the daemon refused our token ({msg}); is control.json current?");
        }
        bail!("{msg}")
    }
}
