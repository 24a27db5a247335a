//! Client commands and each content's life: a `get` starts searching, a
//! manifest (or a share) activates it, ticks run its schedule, the last
//! chunk completes it.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use libp2p::PeerId;
use protocol::merkle::MerkleTree;
use protocol::transfer::Transfer;
use protocol::wire::Answer;
use protocol::{Bitfield, ContentId, Manifest};
use tokio::sync::{mpsc, oneshot};

use super::content::{Active, ActiveFacts, Content, Due, Phase, Schedule, Timing, MAX_WAITERS};
use super::disk::{off_loop, save_off_loop, save_resume_logged, IoDone};
use super::Engine;
use crate::client::{Command, GetEvent, Outcome, Stats};
use crate::storage::Storage;

/// Chunks no connected peer holds named in progress reports, as examples.
pub(super) const UNAVAILABLE_EXAMPLES: usize = 5;

impl Engine {
    pub(super) fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::ListenAddrs(reply) => self.on_listen_addrs_wanted(reply),
            Command::Bootstrapped(reply) => {
                self.bootstrap_waiters.push(reply);
                self.check_bootstrap_done();
            }
            Command::Share {
                manifest,
                tree,
                storage,
                reply,
            } => {
                let id = manifest.id();
                let have = Bitfield::full(manifest.chunk_count());
                self.activate(id, manifest, tree, have, storage, None);
                let _ = reply.send(id);
            }
            Command::Get {
                id,
                out_dir,
                events,
                done,
            } => self.start_get(id, out_dir, events, done),
            Command::Stats(reply) => {
                let _ = reply.send(Stats {
                    uploaded: 0,
                    downloaded: 0,
                    connected_peers: self.connected.len(),
                    banned: self.banned.iter().copied().collect(),
                    nat: self.nat.stats(),
                    ..Stats::default()
                });
            }
            Command::List(reply) => {
                let _ = reply.send(self.content_statuses());
            }
            Command::Stop { id, reply } => {
                let _ = reply.send(self.stop_content(id));
            }
            Command::Peers(reply) => {
                let _ = reply.send(self.peer_statuses());
            }
            Command::Shutdown(_) => {}
        }
    }

    fn timing(&self) -> Timing {
        Timing {
            find_timeout: self.config.find_timeout,
            save_interval: self.config.save_interval,
            wanted_peers: self.config.wanted_peers,
        }
    }

    fn start_get(
        &mut self,
        id: ContentId,
        out_dir: PathBuf,
        events: mpsc::Sender<GetEvent>,
        done: oneshot::Sender<Outcome>,
    ) {
        if let Some(c) = self.contents.get_mut(&id) {
            if let Phase::Active(a) = &c.phase {
                if a.finished && c.waiters.is_empty() {
                    // Finished and moved into place (waiters are told when that happens).
                    let path = a
                        .storage
                        .read()
                        .map(|s| s.final_path().to_path_buf())
                        .map_err(|_| "storage lock poisoned".to_string());
                    let _ = done.send(path);
                    return;
                }
            }
            if c.waiters.len() >= MAX_WAITERS {
                let _ = done.send(Err(format!("too many waiting downloads of {id}")));
                return;
            }
            c.events = Some(events);
            c.waiters.push(done);
            return;
        }
        let now = Instant::now();
        self.contents.insert(
            id,
            Content {
                phase: Phase::Searching {
                    out_dir,
                    asked: HashSet::new(),
                    checking: false,
                },
                events: Some(events),
                waiters: vec![done],
                providers: HashSet::new(),
                schedule: Schedule::searching(now, self.config.find_timeout),
            },
        );
        self.search(id);
    }

    pub(super) fn activate(
        &mut self,
        id: ContentId,
        manifest: Manifest,
        tree: MerkleTree,
        have: Bitfield,
        storage: Storage,
        events: Option<mpsc::Sender<GetEvent>>,
    ) {
        // Our manifest is canonical (we built it, or accepted only canonical bytes), so
        // its encoding is exactly the bytes behind the ID.
        let answer = Answer::Manifest {
            bytes: manifest.to_bytes(),
        };
        let manifest_answer: Arc<[u8]> = cbor4ii::serde::to_vec(Vec::new(), &answer)
            .unwrap_or_default()
            .into();
        self.limits
            .allow_content(manifest.chunk_count(), manifest.chunk_size);
        let complete = have.is_full();
        self.seed = self.seed.wrapping_add(1);
        let transfer = Transfer::new(
            manifest,
            tree,
            &have,
            self.config.transfer.clone(),
            self.seed,
        );
        // A partial seed is a seed; zero-byte content is whole from the start.
        let announce_now = complete || transfer.have().count_ones() > 0;
        let old = self.contents.remove(&id);
        let (providers, old_events, waiters) = match old {
            Some(mut c) => (
                std::mem::take(&mut c.providers),
                c.events.take(),
                std::mem::take(&mut c.waiters),
            ),
            None => Default::default(),
        };
        let now = Instant::now();
        self.contents.insert(
            id,
            Content {
                phase: Phase::Active(Box::new(Active {
                    transfer,
                    storage: Arc::new(RwLock::new(storage)),
                    manifest_answer,
                    dirty: false,
                    saving: false,
                    finished: false,
                })),
                events: events.or(old_events),
                waiters,
                providers: providers.clone(),
                schedule: Schedule::active(now),
            },
        );
        if announce_now {
            self.announce(id);
        }
        let me = *self.swarm.local_peer_id();
        if let Some(a) = self.contents.get_mut(&id).and_then(Content::active_mut) {
            for p in providers.into_iter().filter(|p| *p != me) {
                a.transfer.handle_peer_connected(now, p);
            }
        }
        if complete {
            // Already whole: finishing moves a download into place (a share is already there).
            self.on_completed(id);
        } else {
            let connected: Vec<PeerId> = self.connected.iter().copied().collect();
            for p in connected {
                self.probe_swarm_peer(id, p);
            }
            // Ask the provider we got the manifest from for the rest of the swarm
            // now: in a flash crowd nobody else has announced yet (the schedule
            // asks again within a second as more arrive).
            self.exchange_peers(id);
        }
        self.drive(id);
    }

    pub(super) fn on_completed(&mut self, id: ContentId) {
        let Some(a) = self.contents.get_mut(&id).and_then(Content::active_mut) else {
            return;
        };
        if a.finished {
            return;
        }
        a.finished = true;
        let storage = a.storage.clone();
        off_loop(&self.io_tx, move || {
            let result = match storage.write() {
                Ok(mut s) => s.finish().map_err(|e| e.to_string()),
                Err(_) => Err("storage lock poisoned".to_string()),
            };
            IoDone::Finished { id, result }
        });
    }

    /// Runs one content's schedule.
    pub(super) fn tick_content(&mut self, now: Instant, id: ContentId) {
        let timing = self.timing();
        let Some(c) = self.contents.get_mut(&id) else {
            return;
        };
        let due = match &mut c.phase {
            Phase::Searching { asked, .. } => {
                c.schedule
                    .searching_due(now, &timing, c.providers.len(), asked.is_empty())
            }
            Phase::Opening { .. } => Vec::new(),
            Phase::Active(a) => {
                let availability = a.transfer.availability(UNAVAILABLE_EXAMPLES);
                let starved = !a.finished && availability.unavailable > 0;
                if let Some(ev) = &c.events {
                    let _ = ev.try_send(GetEvent::Progress {
                        have: a.transfer.have().count_ones(),
                        total: a.transfer.have().len(),
                        peers: a.transfer.peer_count(),
                        availability,
                    });
                }
                let facts = ActiveFacts {
                    peers: a.transfer.peer_count(),
                    dirty: a.dirty,
                    saving: a.saving,
                    finished: a.finished,
                    starved,
                };
                c.schedule.active_due(now, &timing, facts)
            }
        };
        for d in due {
            match d {
                Due::Announce => self.announce(id),
                Due::GiveUp(why) => {
                    if let Some(mut c) = self.contents.remove(&id) {
                        c.end(Err(format!("{id}: {why}")));
                    }
                    return;
                }
                Due::AskProviders => {
                    let retry: Vec<PeerId> = self
                        .contents
                        .get(&id)
                        .map(|c| {
                            c.providers
                                .iter()
                                .take(self.config.max_manifest_asks)
                                .copied()
                                .collect()
                        })
                        .unwrap_or_default();
                    for p in retry {
                        self.add_swarm_peer(id, p);
                    }
                }
                Due::Search => self.search(id),
                Due::PeerExchange => self.exchange_peers(id),
                Due::Save => self.save(now, id),
            }
        }
    }

    fn save(&mut self, now: Instant, id: ContentId) {
        let Some(c) = self.contents.get_mut(&id) else {
            return;
        };
        c.schedule.on_save(now);
        let Some(a) = c.active_mut() else {
            return;
        };
        a.dirty = false;
        a.saving = true;
        save_off_loop(&self.io_tx, id, a);
    }

    pub(super) async fn save_all_now(&mut self) {
        let mut jobs = Vec::new();
        for (id, c) in &self.contents {
            if let Phase::Active(a) = &c.phase {
                if a.finished {
                    continue;
                }
                let storage = a.storage.clone();
                let have = a.transfer.have().clone();
                let tree = a.transfer.tree().clone();
                let id = *id;
                jobs.push(tokio::task::spawn_blocking(move || {
                    save_resume_logged(&storage, id, &have, &tree)
                }));
            }
        }
        for j in jobs {
            let _ = j.await;
        }
    }
}
