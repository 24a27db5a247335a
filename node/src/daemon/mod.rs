//! `node join` as a daemon: one node serving many shares and downloads,
//! driven through a token-protected control API on loopback, keeping its
//! item list across restarts.

pub mod api;
pub mod items;
pub mod lock;
pub mod private_file;
pub mod server;
pub mod views;
mod work;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use protocol::ContentId;

use crate::client::{Client, ContentStatus};
use items::{Item, Items, Stage};
use views::{ItemView, Kind, NodeView, PeerView};

/// The control file's name in the data directory.
pub const CONTROL_FILE: &str = "control.json";
/// Shares hashed at once (hashing is disk- and CPU-bound).
const HASH_SLOTS: usize = 1;

/// The daemon's state, shared by the API handlers and the item tasks.
pub struct Daemon {
    client: Client,
    data_dir: PathBuf,
    items: Mutex<Items>,
    hash_slots: tokio::sync::Semaphore,
}

impl Daemon {
    /// A daemon driving `client`, keeping its items in `data_dir`.
    pub fn new(client: Client, data_dir: &Path) -> anyhow::Result<Arc<Self>> {
        let items = Items::load(data_dir)?;
        Ok(Arc::new(Self {
            client,
            data_dir: data_dir.to_path_buf(),
            items: Mutex::new(items),
            hash_slots: tokio::sync::Semaphore::new(HASH_SLOTS),
        }))
    }

    /// Starts work on every item loaded from disk: shares are hashed again
    /// (files may have changed while we were down), downloads resume.
    pub fn resume_all(self: &Arc<Self>) {
        let keys: Vec<(u64, Kind)> = self
            .items()
            .iter()
            .map(|i| (i.spec.key, i.spec.kind))
            .collect();
        for (key, kind) in keys {
            self.spawn_item(key, kind);
        }
    }

    fn items(&self) -> MutexGuard<'_, Items> {
        // A panic while holding the lock leaves the list as it was; go on with it.
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn persist(&self) {
        if let Err(e) = self.items().save(&self.data_dir) {
            tracing::warn!(
                "cannot save the item list in {}: {e}",
                self.data_dir.display()
            );
        }
    }

    /// Adds a share of `path` (absolute) unless the same path is shared already.
    pub fn add_share(
        self: &Arc<Self>,
        path: PathBuf,
        chunk_size: Option<u32>,
    ) -> Result<u64, String> {
        let key = {
            let mut items = self.items();
            if let Some(key) = items.find(Kind::Share, None, &path) {
                return Ok(key);
            }
            items
                .add(Kind::Share, None, path, chunk_size)
                .ok_or_else(|| {
                    format!(
                        "this daemon already keeps {} items; stop some first",
                        items::MAX_ITEMS
                    )
                })?
        };
        self.persist();
        self.spawn_item(key, Kind::Share);
        Ok(key)
    }

    /// Adds a download of `id` into `out` (absolute) unless it is already kept.
    pub fn add_get(self: &Arc<Self>, id: ContentId, out: PathBuf) -> Result<u64, String> {
        let hex = id.to_string();
        let key = {
            let mut items = self.items();
            if let Some(key) = items.find(Kind::Get, Some(&hex), &out) {
                return Ok(key);
            }
            items.add(Kind::Get, Some(hex), out, None).ok_or_else(|| {
                format!(
                    "this daemon already keeps {} items; stop some first",
                    items::MAX_ITEMS
                )
            })?
        };
        self.persist();
        self.spawn_item(key, Kind::Get);
        Ok(key)
    }

    fn spawn_item(self: &Arc<Self>, key: u64, kind: Kind) {
        let me = self.clone();
        let task = match kind {
            Kind::Share => tokio::spawn(async move { me.run_share(key).await }),
            Kind::Get => tokio::spawn(async move { me.run_get(key).await }),
        };
        if let Some(item) = self.items().get_mut(key) {
            item.task = Some(task.abort_handle());
        } else {
            task.abort();
        }
    }

    /// Stops every item for content `id` (hex) and the engine's exchange of
    /// it; false if nothing was known by that ID.
    pub async fn stop_content(&self, id: ContentId) -> anyhow::Result<bool> {
        let removed: Vec<Item> = {
            let mut items = self.items();
            let keys = items.with_id(&id.to_string());
            keys.into_iter().filter_map(|k| items.remove(k)).collect()
        };
        let known = self.client.stop(id).await?;
        if !removed.is_empty() {
            self.persist();
        }
        Ok(known || !removed.is_empty())
    }

    /// Stops one item by key; false if there is none.
    pub async fn stop_item(&self, key: u64) -> anyhow::Result<bool> {
        let Some(item) = self.items().remove(key) else {
            return Ok(false);
        };
        self.persist();
        if let Some(id) = item
            .spec
            .id
            .as_deref()
            .and_then(|h| h.parse::<ContentId>().ok())
        {
            // Another item may still want the same content.
            if self.items().with_id(&id.to_string()).is_empty() {
                self.client.stop(id).await?;
            }
        }
        Ok(true)
    }

    /// Every item with the engine's view of its content merged in.
    pub async fn item_views(&self) -> anyhow::Result<Vec<ItemView>> {
        let statuses = self.client.list().await?;
        Ok(self.items().iter().map(|i| view(i, &statuses)).collect())
    }

    /// One item's view; None if there is no such key.
    pub async fn item_view(&self, key: u64) -> anyhow::Result<Option<ItemView>> {
        let statuses = self.client.list().await?;
        Ok(self.items().get(key).map(|i| view(i, &statuses)))
    }

    /// The node's own summary.
    pub async fn node_view(&self) -> anyhow::Result<NodeView> {
        let stats = self.client.stats().await?;
        let listen = self.client.listen_addrs().await?;
        Ok(NodeView {
            peer_id: self.client.peer_id().to_string(),
            listen: listen.iter().map(|a| a.to_string()).collect(),
            connected_peers: stats.connected_peers,
            uploaded: stats.uploaded,
            downloaded: stats.downloaded,
            banned: stats.banned.len(),
            items: self.items().len(),
        })
    }

    /// Connected peers.
    pub async fn peer_views(&self) -> anyhow::Result<Vec<PeerView>> {
        Ok(self
            .client
            .peers()
            .await?
            .into_iter()
            .map(|p| PeerView {
                peer_id: p.peer.to_string(),
                addrs: p.addrs.iter().map(|a| a.to_string()).collect(),
                swarms: p.swarms,
            })
            .collect())
    }

    fn set_stage(&self, key: u64, stage: Stage) {
        if let Some(item) = self.items().get_mut(key) {
            item.stage = stage;
        }
    }
}

/// Merges an item with the engine's status of its content.
fn view(item: &Item, statuses: &[ContentStatus]) -> ItemView {
    let status = item
        .spec
        .id
        .as_deref()
        .and_then(|hex| statuses.iter().find(|s| s.id.to_string() == hex));
    let mut v = ItemView {
        key: item.spec.key,
        kind: item.spec.kind,
        id: item.spec.id.clone(),
        state: String::new(),
        name: None,
        have: 0,
        total: 0,
        bytes: 0,
        hashed: item.hashed(),
        peers: 0,
        distributed_copies: None,
        unavailable: 0,
        unavailable_examples: Vec::new(),
        path: item.spec.path.clone(),
        error: None,
    };
    if let Some(s) = status {
        v.name = s.name.clone();
        v.have = s.have;
        v.total = s.total;
        v.bytes = s.bytes;
        v.peers = s.peers;
        if let Some(a) = &s.availability {
            v.distributed_copies = Some(a.distributed_copies);
            v.unavailable = a.unavailable;
            v.unavailable_examples = a.unavailable_examples.clone();
        }
        if item.spec.kind == Kind::Get {
            if let Some(p) = &s.path {
                v.path = p.clone();
            }
        }
    }
    v.state = match (&item.stage, status) {
        (Stage::Hashing, _) => {
            v.bytes = item.hash_total.load(std::sync::atomic::Ordering::Relaxed);
            "hashing".into()
        }
        (Stage::Failed(e), _) => {
            v.error = Some(e.clone());
            "failed".into()
        }
        (Stage::Retrying(e), _) => {
            v.error = Some(e.clone());
            "retrying".into()
        }
        (Stage::Running, Some(s)) => s.state.as_str().into(),
        (Stage::Running, None) => "starting".into(),
    };
    v
}

/// Reads `control.json` of `data_dir`; None if there is none.
pub fn read_control(data_dir: &Path) -> anyhow::Result<Option<views::ControlInfo>> {
    let path = data_dir.join(CONTROL_FILE);
    let Some(bytes) =
        private_file::read(&path).with_context(|| format!("cannot read {}", path.display()))?
    else {
        return Ok(None);
    };
    let info = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a control file", path.display()))?;
    Ok(Some(info))
}
