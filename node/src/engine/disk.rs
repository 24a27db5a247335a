//! Blocking work (disk, hashing) off the event loop, and its completions.

use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Instant;

use libp2p::PeerId;
use protocol::merkle::MerkleTree;
use protocol::{Bitfield, ChunkIndex, ContentId, Manifest};
use tokio::sync::mpsc;

use super::content::{Content, Phase};
use super::serve::Upload;
use super::Engine;
use crate::client::GetEvent;
use crate::storage::{Opened, Storage};

/// Results of blocking work, sent back to the loop.
pub enum IoDone {
    /// A chunk to upload was read.
    Read {
        peer: PeerId,
        token: u64,
        upload: Upload,
        result: std::io::Result<Vec<u8>>,
    },
    /// A verified chunk was written.
    Written {
        id: ContentId,
        index: ChunkIndex,
        result: std::io::Result<()>,
    },
    /// A download's storage was opened (and what it held re-checked).
    Opened {
        id: ContentId,
        result: Result<Opened, String>,
    },
    /// A complete download was moved into place.
    Finished {
        id: ContentId,
        result: Result<PathBuf, String>,
    },
    /// Resume state was saved.
    Saved { id: ContentId },
    /// A manifest received from `peer`, decoded and checked.
    ManifestChecked {
        id: ContentId,
        peer: PeerId,
        result: Result<Manifest, protocol::manifest::ManifestError>,
    },
}

/// Runs blocking work off the event loop; what it returns comes back to `on_io`.
pub fn off_loop(io: &mpsc::Sender<IoDone>, work: impl FnOnce() -> IoDone + Send + 'static) {
    let io = io.clone();
    tokio::task::spawn_blocking(move || {
        let _ = io.blocking_send(work());
    });
}

/// Saves `a`'s resume state off the loop; `IoDone::Saved` reports back.
pub fn save_off_loop(io: &mpsc::Sender<IoDone>, id: ContentId, a: &super::content::Active) {
    let storage = a.storage.clone();
    let have = a.transfer.have().clone();
    let tree = a.transfer.tree().clone();
    off_loop(io, move || {
        save_resume_logged(&storage, id, &have, &tree);
        IoDone::Saved { id }
    });
}

/// Runs `f` on shared storage; a poisoned lock is an IO error, not a panic.
pub fn with_storage<T>(
    storage: &RwLock<Storage>,
    f: impl FnOnce(&Storage) -> std::io::Result<T>,
) -> std::io::Result<T> {
    match storage.read() {
        Ok(s) => f(&s),
        Err(_) => Err(std::io::Error::other("storage lock poisoned")),
    }
}

/// Saves resume state; a failure is logged (the next save retries).
pub fn save_resume_logged(
    storage: &RwLock<Storage>,
    id: ContentId,
    have: &Bitfield,
    tree: &MerkleTree,
) {
    if let Err(e) = with_storage(storage, |s| s.save_resume(have, tree)) {
        tracing::warn!(%id, "cannot save resume state: {e}");
    }
}

impl Engine {
    pub(super) fn on_io(&mut self, done: IoDone) {
        let now = Instant::now();
        match done {
            IoDone::Read {
                peer,
                token,
                upload,
                result,
            } => self.on_read(peer, token, upload, result),
            IoDone::Written { id, index, result } => {
                let Some(c) = self.contents.get_mut(&id) else {
                    return;
                };
                let Some(a) = c.active_mut() else {
                    return;
                };
                match result {
                    Ok(()) => {
                        a.transfer.handle_chunk_stored(now, index);
                        a.dirty = true;
                    }
                    Err(e) => {
                        tracing::error!(%id, index, "cannot write chunk: {e}");
                        a.transfer.handle_chunk_store_failed(now, index);
                        c.end(Err(format!("cannot write to disk: {e}")));
                    }
                }
                self.drive(id);
            }
            IoDone::Opened { id, result } => {
                let Some(c) = self.contents.get_mut(&id) else {
                    return;
                };
                let Phase::Opening { manifest } = &c.phase else {
                    return;
                };
                let manifest = manifest.clone();
                match result {
                    Ok(opened) => {
                        tracing::info!(%id, have = opened.have.count_ones(), total = manifest.chunk_count(), "storage ready");
                        self.activate(id, manifest, opened.tree, opened.have, opened.storage, None);
                    }
                    Err(e) => {
                        c.end(Err(e));
                        self.contents.remove(&id);
                    }
                }
            }
            IoDone::Finished { id, result } => {
                let Some(c) = self.contents.get_mut(&id) else {
                    return;
                };
                if let Ok(path) = &result {
                    tracing::info!(%id, "complete: {}", path.display());
                }
                c.end(result);
            }
            IoDone::ManifestChecked { id, peer, result } => {
                self.on_manifest_checked(id, peer, result)
            }
            IoDone::Saved { id } => {
                if let Some(a) = self.contents.get_mut(&id).and_then(Content::active_mut) {
                    a.saving = false;
                }
            }
        }
    }

    fn on_manifest_checked(
        &mut self,
        id: ContentId,
        peer: PeerId,
        result: Result<Manifest, protocol::manifest::ManifestError>,
    ) {
        let Some(c) = self.contents.get_mut(&id) else {
            return;
        };
        let Phase::Searching {
            out_dir, checking, ..
        } = &mut c.phase
        else {
            return;
        };
        *checking = false;
        match result {
            Ok(manifest) => {
                if let Some(ev) = &c.events {
                    let _ = ev.try_send(GetEvent::Manifest(Box::new(manifest.clone())));
                }
                let out_dir = out_dir.clone();
                c.phase = Phase::Opening {
                    manifest: manifest.clone(),
                };
                off_loop(&self.io_tx, move || IoDone::Opened {
                    id,
                    result: Storage::open_download(&manifest, &id, &out_dir)
                        .map_err(|e| e.to_string()),
                });
            }
            Err(e) => {
                tracing::warn!(%peer, "peer sent a bad manifest: {e}");
                self.ban(peer);
            }
        }
    }
}
