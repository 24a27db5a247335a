//! What the daemon does for each item: hash and serve a share; fetch a
//! download, retrying while nobody provides it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use protocol::ContentId;

use super::items::Stage;
use super::views::Kind;
use super::Daemon;

/// Wait before looking again for a download nobody provided.
const RETRY_AFTER: Duration = Duration::from_secs(30);

impl Daemon {
    /// Hashes the share, checks it is still the content it was, serves it.
    pub(super) async fn run_share(self: Arc<Self>, key: u64) {
        let Some((path, chunk_size, expected, hashed, total)) = self.items().get(key).map(|i| {
            (
                i.spec.path.clone(),
                i.spec.chunk_size,
                i.spec.id.clone(),
                i.hashed.clone(),
                i.hash_total.clone(),
            )
        }) else {
            return;
        };
        self.set_stage(key, Stage::Hashing);
        let Ok(_slot) = self.hash_slots.acquire().await else {
            return;
        };
        let scan_path = path.clone();
        let scanned = tokio::task::spawn_blocking(move || {
            let scanned = crate::scan::scan_share(&scan_path, chunk_size, &mut |done, all| {
                hashed.store(done, Ordering::Relaxed);
                total.store(all, Ordering::Relaxed);
            })?;
            let storage =
                crate::storage::Storage::open_share(&scanned.manifest, &scan_path, &scanned.files)?;
            anyhow::Ok((scanned, storage))
        })
        .await;
        let (scanned, storage) = match scanned {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return self.set_stage(
                    key,
                    Stage::Failed(format!("cannot share {}: {e:#}", path.display())),
                )
            }
            Err(e) => {
                return self.set_stage(
                    key,
                    Stage::Failed(format!("hashing {} failed: {e}", path.display())),
                )
            }
        };
        let id = scanned.manifest.id();
        if let Some(old) = expected.filter(|old| *old != id.to_string()) {
            return self.set_stage(
                key,
                Stage::Failed(format!(
                    "{} changed since it was shared (ID was {old}, is now {id}); stop it and share it again",
                    path.display()
                )),
            );
        }
        if let Err(e) = self
            .client
            .share(scanned.manifest, scanned.tree, storage)
            .await
        {
            return self.set_stage(key, Stage::Failed(format!("{e:#}")));
        }
        let first_time = self.items().get_mut(key).map(|item| {
            item.stage = Stage::Running;
            let first = item.spec.id.is_none();
            item.spec.id = Some(id.to_string());
            first
        });
        let Some(first_time) = first_time else {
            // Stopped while hashing: do not serve it after all.
            let _ = self.client.stop(id).await;
            return;
        };
        if first_time {
            self.persist();
        }
    }

    /// Fetches the download (resuming from verified chunks on disk), then
    /// leaves it seeding; while nobody provides it, looks again every 30 s.
    pub(super) async fn run_get(self: Arc<Self>, key: u64) {
        loop {
            let Some((id, out)) = self
                .items()
                .get(key)
                .map(|i| (i.spec.id.clone(), i.spec.path.clone()))
            else {
                return;
            };
            let Some(id) = id.and_then(|h| h.parse::<ContentId>().ok()) else {
                return self.set_stage(
                    key,
                    Stage::Failed("the item list holds no valid content ID".into()),
                );
            };
            debug_assert!(self
                .items()
                .get(key)
                .is_none_or(|i| i.spec.kind == Kind::Get));
            self.set_stage(key, Stage::Running);
            let download = match self.client.get(id, out).await {
                Ok(d) => d,
                Err(e) => return self.set_stage(key, Stage::Failed(format!("{e:#}"))),
            };
            // Progress is read from the engine's list; the events are not needed.
            drop(download.events);
            match download.done.await {
                Ok(Ok(_path)) => return,
                Ok(Err(e)) => {
                    tracing::info!("download {id} will be retried: {e}");
                    self.set_stage(key, Stage::Retrying(e));
                    tokio::time::sleep(RETRY_AFTER).await;
                }
                // The node stopped.
                Err(_) => return,
            }
        }
    }
}
