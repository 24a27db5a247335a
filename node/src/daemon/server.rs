//! Starting and stopping the control API: bind loopback, mint a token,
//! publish both in `control.json`, serve until told to stop.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::views::ControlInfo;
use super::{api, private_file, Daemon, CONTROL_FILE};
use crate::client::Client;
use crate::http_listener::Bounded;

/// Most control connections at once (each command opens one per request).
const MAX_CONNECTIONS: usize = 32;
/// A control connection is closed this long after it was accepted.
const CONNECTION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(30);

/// A running control API; `stop` it before exiting.
pub struct Running {
    control: PathBuf,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
    /// Where the API listens.
    pub url: String,
}

/// Serves the control API for `client` on 127.0.0.1 and resumes the items
/// kept in `data_dir`. The caller holds the data dir's [`super::lock::DaemonLock`].
pub async fn start(client: Client, data_dir: &Path) -> anyhow::Result<Running> {
    let daemon = Daemon::new(client, data_dir)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("cannot listen on 127.0.0.1 for the control API")?;
    let addr = listener.local_addr().context("control API address")?;
    let token: String = rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let url = format!("http://{addr}");
    let info = ControlInfo {
        url: url.clone(),
        token: token.clone(),
        pid: std::process::id(),
    };
    let control = data_dir.join(CONTROL_FILE);
    let bytes = serde_json::to_vec_pretty(&info).context("encoding control.json")?;
    private_file::replace(&control, &bytes)
        .with_context(|| format!("cannot write {}", control.display()))?;
    let app = api::router(daemon.clone(), token);
    let (shutdown, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let listener = Bounded::new(listener, MAX_CONNECTIONS, CONNECTION_LIFETIME);
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::warn!("control API stopped: {e}");
        }
    });
    Arc::clone(&daemon).resume_all();
    tracing::info!("control API on {url}");
    Ok(Running {
        control,
        shutdown,
        task,
        url,
    })
}

impl Running {
    /// Stops serving and removes `control.json`.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        let _ = self.task.await;
        if let Err(e) = std::fs::remove_file(&self.control) {
            tracing::warn!("cannot remove {}: {e}", self.control.display());
        }
    }
}
