//! What peers ask of us: manifests, chunks and peer lists, served through
//! the bounded upload queue (neediest peer first), and what happens to a
//! peer that stops reading.

use std::time::Instant;

use libp2p::PeerId;
use protocol::transfer::ChunkAnswer;
use protocol::wire::{Answer, Ask, Message};
use protocol::{ChunkIndex, ContentId};

use super::content::{Content, Phase};
use super::disk::{off_loop, with_storage, IoDone};
use super::Engine;
use crate::wire::streams::Outgoing;

/// An upload waiting for its turn.
pub struct Upload {
    /// The content.
    pub id: ContentId,
    /// What to send.
    pub what: Serve,
    /// The asker's request ID.
    pub rid: u32,
}

/// What an upload sends.
pub enum Serve {
    /// A chunk (read from disk when its turn comes) and its proof.
    Chunk { index: ChunkIndex, proof: Vec<u8> },
    /// The manifest's shared, pre-encoded answer.
    Manifest,
}

impl Engine {
    fn answer(&mut self, peer: PeerId, rid: u32, answer: Answer) {
        self.sessions.sending(Instant::now(), peer);
        self.send(
            peer,
            Outgoing::Message(Message::Answer { rid, answer }),
            None,
        );
    }

    pub(super) fn on_ask(&mut self, peer: PeerId, rid: u32, ask: Ask) {
        let id = *ask.content_id();
        let now = Instant::now();
        let searching = matches!(
            self.contents.get(&id).map(|c| &c.phase),
            Some(Phase::Searching { .. })
        );
        if searching {
            // A peer in the swarm (chunk or peer exchange) may have the manifest;
            // one asking for the manifest is searching too, and asking it back would ping-pong.
            let in_swarm = !matches!(ask, Ask::Manifest { .. });
            self.answer(peer, rid, Answer::UnknownContent);
            if in_swarm {
                self.add_swarm_peer(id, peer);
            }
            return;
        }
        let Some(a) = self.contents.get_mut(&id).and_then(Content::active_mut) else {
            self.answer(peer, rid, Answer::UnknownContent);
            return;
        };
        match ask {
            Ask::Manifest { .. } => {
                let bytes = a.manifest_answer.len() as u64;
                let upload = Upload {
                    id,
                    what: Serve::Manifest,
                    rid,
                };
                self.queue_upload(peer, bytes, upload);
            }
            Ask::Chunk { index, .. } => match a.transfer.handle_chunk_request(now, peer, index) {
                ChunkAnswer::Serve(proof) => {
                    let bytes = u64::from(a.transfer.manifest().chunk_len(index));
                    let upload = Upload {
                        id,
                        what: Serve::Chunk {
                            index,
                            proof: proof.to_bytes(),
                        },
                        rid,
                    };
                    self.queue_upload(peer, bytes, upload);
                }
                ChunkAnswer::Choked => self.answer(peer, rid, Answer::Choked),
                ChunkAnswer::AlreadySent => {
                    self.answer(peer, rid, Answer::Choked);
                    self.strike(peer, "asked again for a chunk it already got");
                }
                ChunkAnswer::DontHave => self.answer(peer, rid, Answer::DontHave),
            },
            Ask::Peers { .. } => {
                let peers = self.peer_records(&id, peer);
                self.answer(peer, rid, Answer::Peers { peers });
            }
        }
        self.drive(id);
    }

    /// Queues an upload for `peer`, or answers "choked" at once if its queue is full.
    fn queue_upload(&mut self, peer: PeerId, bytes: u64, upload: Upload) {
        match self.uploads.push(peer, bytes, upload) {
            Ok(()) => self.pump_uploads(),
            Err((why, upload)) => {
                tracing::debug!(%peer, ?why, "upload queue full; answering choked");
                self.upload_dropped(peer, &upload);
                self.answer(peer, upload.rid, Answer::Choked);
            }
        }
    }

    /// A chunk upload promised to `peer` will not be sent: a seed may give it to another.
    fn upload_dropped(&mut self, peer: PeerId, upload: &Upload) {
        if let Serve::Chunk { index, .. } = upload.what {
            if let Some(a) = self
                .contents
                .get_mut(&upload.id)
                .and_then(Content::active_mut)
            {
                a.transfer.handle_upload_dropped(peer, index);
            }
        }
    }

    /// Starts queued uploads, neediest peer first, while the in-progress bytes allow.
    pub(super) fn pump_uploads(&mut self) {
        // Peers furthest behind go first, so a swarm finishes together rather than one
        // straggler finishing long after the rest.
        loop {
            let contents = &self.contents;
            // What a peer holds by its own word, or at least what we already sent it:
            // claiming to hold nothing must not buy a place at the front for ever.
            let held = |peer: &PeerId, up: &Upload| match contents.get(&up.id).map(|c| &c.phase) {
                Some(Phase::Active(a)) => a.transfer.peer_stats(peer).map_or(0, |s| {
                    let chunk = u64::from(a.transfer.manifest().chunk_size.max(1));
                    u64::from(s.chunks).max(s.uploaded / chunk)
                }),
                _ => 0,
            };
            let Some((peer, bytes, upload)) = self.uploads.next_by(held) else {
                break;
            };
            let Some(Phase::Active(a)) = self.contents.get(&upload.id).map(|c| &c.phase) else {
                self.answer(peer, upload.rid, Answer::UnknownContent);
                continue;
            };
            let token = self.next_token;
            self.next_token += 1;
            match upload.what {
                Serve::Manifest => {
                    let shared = Outgoing::Shared {
                        rid: upload.rid,
                        answer: a.manifest_answer.clone(),
                    };
                    self.sessions.sending(Instant::now(), peer);
                    // Counted until written, so manifest floods share the upload budget.
                    self.uploads.started(peer, token, bytes);
                    if !self.send(peer, shared, Some(token)) {
                        self.uploads.finished(token);
                    }
                }
                Serve::Chunk { index, .. } => {
                    let storage = a.storage.clone();
                    self.uploads.started(peer, token, bytes);
                    off_loop(&self.io_tx, move || IoDone::Read {
                        peer,
                        token,
                        result: with_storage(&storage, |s| s.read_chunk(index)),
                        upload,
                    });
                }
            }
        }
    }

    /// A chunk to upload was read from disk.
    pub(super) fn on_read(
        &mut self,
        peer: PeerId,
        token: u64,
        upload: Upload,
        result: std::io::Result<Vec<u8>>,
    ) {
        if !self.uploads.is_active(&token) {
            return; // the peer left or its stream broke meanwhile
        }
        let Upload { id, what, rid } = upload;
        let Serve::Chunk { index, proof } = what else {
            return;
        };
        let answer = match result {
            Ok(mut data) => {
                if self.config.corrupt_uploads {
                    if let Some(b) = data.first_mut() {
                        *b ^= 1;
                    }
                }
                if let Some(a) = self.contents.get_mut(&id).and_then(Content::active_mut) {
                    a.transfer
                        .handle_uploaded(Instant::now(), peer, data.len() as u64);
                }
                Answer::Chunk { index, data, proof }
            }
            Err(e) => {
                tracing::error!(%id, index, "cannot read chunk to upload: {e}");
                if let Some(a) = self.contents.get_mut(&id).and_then(Content::active_mut) {
                    a.transfer.handle_upload_dropped(peer, index);
                }
                Answer::DontHave
            }
        };
        let delivered = matches!(answer, Answer::Chunk { .. });
        self.sessions.sending(Instant::now(), peer);
        let msg = Outgoing::Message(Message::Answer { rid, answer });
        if self.send(peer, msg, Some(token)) {
            if delivered {
                self.delivering.insert(token, (id, index));
            }
        } else if self.uploads.finished(token) {
            self.pump_uploads();
        }
    }

    /// The writer wrote the upload with this token.
    pub(super) fn on_sent(&mut self, peer: PeerId, token: u64) {
        if let Some((id, index)) = self.delivering.remove(&token) {
            if let Some(a) = self.contents.get_mut(&id).and_then(Content::active_mut) {
                let bytes = a.transfer.manifest().chunk_len(index);
                a.transfer.handle_chunk_delivered(peer, index);
                self.metrics.uploaded(id, u64::from(bytes));
            }
        }
        if self.uploads.finished(token) {
            self.pump_uploads();
        }
    }

    /// `peer` stopped reading what we send it: it is choked everywhere for a
    /// while, and one that keeps doing it is disconnected and refused for a while.
    pub(super) fn on_upload_stalled(&mut self, peer: PeerId) {
        let now = Instant::now();
        tracing::info!(%peer, "peer stopped reading; choking it");
        let until = now + self.config.stall_penalty;
        let ids: Vec<ContentId> = self.contents.keys().copied().collect();
        for id in &ids {
            if let Some(a) = self.contents.get_mut(id).and_then(Content::active_mut) {
                a.transfer.handle_upload_stalled(now, peer, until);
                a.transfer.handle_uploads_dropped(peer);
            }
        }
        // Its queued uploads are dropped unanswered: its stream is gone.
        self.uploads.remove_peer(&peer);
        self.strike(peer, "stalled an upload");
        for id in ids {
            self.drive(id);
        }
    }
}
