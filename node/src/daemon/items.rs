//! The shares and downloads a daemon keeps: what is persisted in
//! `daemon.json` so a restart resumes them, and what each is doing now.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::task::AbortHandle;

use super::private_file;
use super::views::Kind;

/// The item list's file in the data directory.
pub const STATE_FILE: &str = "daemon.json";
/// Most items one daemon keeps.
pub const MAX_ITEMS: usize = 1024;

/// What is persisted of one item.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// Its key.
    pub key: u64,
    /// Share or get.
    pub kind: Kind,
    /// Content ID in hex (a share's, once hashed).
    pub id: Option<String>,
    /// A share's source, or a download's output directory.
    pub path: PathBuf,
    /// A share's chunk size, if one was given.
    pub chunk_size: Option<u32>,
}

#[derive(Serialize, Deserialize, Default)]
struct StateFile {
    version: u32,
    items: Vec<Spec>,
}

/// What an item is doing beyond what the engine reports.
#[derive(Clone, Debug, Default)]
pub enum Stage {
    /// Hashing a share.
    Hashing,
    /// Handed to the engine: its state comes from there.
    #[default]
    Running,
    /// Waiting to try a download again.
    Retrying(String),
    /// Given up; the reason.
    Failed(String),
}

/// One item: its spec, its stage, the task working on it.
pub struct Item {
    /// Persisted part.
    pub spec: Spec,
    /// Current stage.
    pub stage: Stage,
    /// Bytes hashed so far (shares).
    pub hashed: Arc<AtomicU64>,
    /// Bytes to hash in all (shares).
    pub hash_total: Arc<AtomicU64>,
    /// The task working on it, aborted when it is stopped.
    pub task: Option<AbortHandle>,
}

/// Every item, by key.
#[derive(Default)]
pub struct Items {
    items: BTreeMap<u64, Item>,
    next_key: u64,
}

impl Items {
    /// Loads the persisted items of `data_dir` (none if there is no file).
    pub fn load(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(STATE_FILE);
        let Some(bytes) = private_file::read(&path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?
        else {
            return Ok(Self::default());
        };
        let state: StateFile = serde_json::from_slice(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a valid item list ({e}); move it away to start empty",
                path.display()
            )
        })?;
        let mut items = Self::default();
        for spec in state.items.into_iter().take(MAX_ITEMS) {
            items.next_key = items.next_key.max(spec.key + 1);
            items.items.insert(spec.key, Item::new(spec));
        }
        Ok(items)
    }

    /// Writes the item list to `data_dir`.
    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        let state = StateFile {
            version: 1,
            items: self.items.values().map(|i| i.spec.clone()).collect(),
        };
        let bytes = serde_json::to_vec_pretty(&state).map_err(std::io::Error::other)?;
        private_file::replace(&data_dir.join(STATE_FILE), &bytes)
    }

    /// Adds an item; None if the daemon keeps too many.
    pub fn add(
        &mut self,
        kind: Kind,
        id: Option<String>,
        path: PathBuf,
        chunk_size: Option<u32>,
    ) -> Option<u64> {
        if self.items.len() >= MAX_ITEMS {
            return None;
        }
        let key = self.next_key;
        self.next_key += 1;
        let spec = Spec {
            key,
            kind,
            id,
            path,
            chunk_size,
        };
        self.items.insert(key, Item::new(spec));
        Some(key)
    }

    /// The item with an equal spec (same kind, path, ID), if any.
    pub fn find(&self, kind: Kind, id: Option<&str>, path: &Path) -> Option<u64> {
        self.items
            .values()
            .find(|i| {
                i.spec.kind == kind
                    && i.spec.path == path
                    && (kind == Kind::Share || i.spec.id.as_deref() == id)
            })
            .map(|i| i.spec.key)
    }

    /// Keys of the items for content `id`.
    pub fn with_id(&self, id: &str) -> Vec<u64> {
        self.items
            .values()
            .filter(|i| i.spec.id.as_deref() == Some(id))
            .map(|i| i.spec.key)
            .collect()
    }

    /// One item.
    pub fn get(&self, key: u64) -> Option<&Item> {
        self.items.get(&key)
    }

    /// One item, to change.
    pub fn get_mut(&mut self, key: u64) -> Option<&mut Item> {
        self.items.get_mut(&key)
    }

    /// Removes an item and aborts its task.
    pub fn remove(&mut self, key: u64) -> Option<Item> {
        let item = self.items.remove(&key)?;
        if let Some(t) = &item.task {
            t.abort();
        }
        Some(item)
    }

    /// Every item in key order.
    pub fn iter(&self) -> impl Iterator<Item = &Item> {
        self.items.values()
    }

    /// How many items there are.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl Item {
    fn new(spec: Spec) -> Self {
        Self {
            spec,
            stage: Stage::default(),
            hashed: Arc::new(AtomicU64::new(0)),
            hash_total: Arc::new(AtomicU64::new(0)),
            task: None,
        }
    }

    /// Bytes hashed so far.
    pub fn hashed(&self) -> u64 {
        self.hashed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut items = Items::default();
        let a = items
            .add(Kind::Share, Some("ab".into()), "/srv/a".into(), Some(65536))
            .unwrap();
        let b = items
            .add(Kind::Get, Some("cd".into()), "/srv/out".into(), None)
            .unwrap();
        items.save(dir.path()).unwrap();
        let loaded = Items::load(dir.path()).unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded.get(a).unwrap().spec, items.get(a).unwrap().spec);
        assert_eq!(loaded.get(b).unwrap().spec, items.get(b).unwrap().spec);
        // New keys never reuse an old one.
        let mut loaded = loaded;
        let c = loaded.add(Kind::Get, None, "/x".into(), None).unwrap();
        assert!(c > a && c > b);
    }

    #[test]
    fn a_corrupt_list_is_a_clear_error_and_stays_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        private_file::replace(&path, b"{not json").unwrap();
        let err = Items::load(dir.path()).err().unwrap();
        assert!(err.to_string().contains("not a valid item list"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"{not json");
    }

    #[test]
    fn the_list_is_bounded() {
        let mut items = Items::default();
        for i in 0..MAX_ITEMS {
            assert!(items
                .add(Kind::Get, Some(format!("{i}")), "/o".into(), None)
                .is_some());
        }
        assert!(items.add(Kind::Get, None, "/o".into(), None).is_none());
    }
}
