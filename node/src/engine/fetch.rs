//! What we ask of peers and what they tell us: driving each transfer's
//! actions onto the session streams, and handling haves and answers.

use std::time::Instant;

use libp2p::PeerId;
use protocol::merkle::Hash;
use protocol::transfer::{Action, ChunkVerdict, TransferError};
use protocol::wire::{Answer, Ask, Message};
use protocol::{ContentId, Manifest};

use super::content::{Content, Phase};
use super::disk::{off_loop, with_storage, IoDone};
use super::session::{HaveError, Pending};
use super::Engine;
use crate::wire::streams::{Outgoing, Queued, SendError, StreamEvent};

impl Engine {
    /// Carries out what `id`'s transfer wants done.
    pub(super) fn drive(&mut self, id: ContentId) {
        loop {
            let Some(a) = self.contents.get_mut(&id).and_then(Content::active_mut) else {
                return;
            };
            let Some(action) = a.transfer.poll_action() else {
                return;
            };
            let chunks = a.transfer.manifest().chunk_count();
            match action {
                Action::SendHave { peer, info } => {
                    let msg = self
                        .sessions
                        .have_message(Instant::now(), peer, id, chunks, &info);
                    self.send(peer, Outgoing::Message(msg), None);
                }
                Action::RequestChunk { peer, index } => {
                    // The transfer gave up on an earlier ask for this chunk that the
                    // session still awaits: its answer will do. Asking again would
                    // make the peer send the chunk twice, or, if it already has,
                    // take us for a peer that asks twice and strike us.
                    let what = Pending::Chunk(id, index);
                    if !self.sessions.is_pending(&peer, what) {
                        self.ask(peer, what);
                    }
                }
                Action::Ban { peer, reason } => {
                    tracing::warn!(%peer, ?reason, "banning peer");
                    self.ban(peer);
                }
                Action::Announce => {
                    let announced = self
                        .contents
                        .get(&id)
                        .is_some_and(|c| c.schedule.announced());
                    if !announced {
                        self.announce(id);
                    }
                }
                Action::Completed => self.on_completed(id),
            }
        }
    }

    /// Queues a message for `peer`; a peer whose queue is full has stopped
    /// reading, and its session is dropped once this event is handled.
    pub(super) fn send(&mut self, peer: PeerId, out: Outgoing, token: Option<u64>) -> bool {
        match self.streams.send(peer, Queued { out, token }) {
            Ok(()) => true,
            Err(SendError::Full) => {
                if !self.stalled.contains(&peer) {
                    self.stalled.push(peer);
                }
                false
            }
            Err(SendError::Closed) => {
                if !self.dead_writers.contains(&peer) {
                    self.dead_writers.push(peer);
                }
                false
            }
        }
    }

    /// Asks `peer` for something and remembers what the answer will be for.
    pub(super) fn ask(&mut self, peer: PeerId, what: Pending) {
        let ask = match what {
            Pending::Manifest(id) => Ask::Manifest { id },
            Pending::Chunk(id, index) => Ask::Chunk { id, index },
            Pending::Peers(id) => Ask::Peers { id },
        };
        match self.sessions.ask(Instant::now(), peer, what) {
            Some(rid) => {
                self.send(peer, Outgoing::Message(Message::Ask { rid, ask }), None);
            }
            None => self.ask_failed(peer, what),
        }
    }

    /// An ask of ours will not be answered (timed out, or its stream ended).
    pub(super) fn ask_failed(&mut self, peer: PeerId, what: Pending) {
        let now = Instant::now();
        match what {
            Pending::Chunk(id, index) => {
                if let Some(a) = self.contents.get_mut(&id).and_then(Content::active_mut) {
                    a.transfer.handle_request_failed(now, peer, index);
                }
                self.drive(id);
            }
            Pending::Manifest(id) => {
                self.limits.manifest_done(&peer);
                if let Some(Phase::Searching { asked, .. }) =
                    self.contents.get_mut(&id).map(|c| &mut c.phase)
                {
                    asked.remove(&peer);
                }
            }
            Pending::Peers(_) => {}
        }
    }

    pub(super) fn on_stream_event(&mut self, ev: StreamEvent) {
        match ev {
            StreamEvent::Received { peer, msg, leaf } => self.on_message(peer, msg, leaf),
            StreamEvent::Sent { peer, token } => self.on_sent(peer, token),
            StreamEvent::Broken { peer, why } => {
                self.strike(peer, &format!("sent a broken frame ({why})"));
            }
            StreamEvent::ReaderClosed { peer } => self.reader_ended(peer),
            StreamEvent::WriterClosed {
                peer,
                generation,
                stalled,
                refused,
                why,
            } => {
                if self.streams.writer_closed(&peer, generation) {
                    tracing::debug!(%peer, stalled, refused, "our session stream ended: {why}");
                    if stalled {
                        // Before the writer's uploads end: its queued ones must not restart.
                        self.on_upload_stalled(peer);
                    }
                    self.writer_ended(peer);
                    if refused {
                        self.leave_swarms(peer);
                    }
                }
            }
        }
        self.handle_stalled();
    }

    /// Drops the sessions of peers that stopped reading, and cleans up after
    /// writers found closed while sending.
    pub(super) fn handle_stalled(&mut self) {
        while let Some(peer) = self.stalled.pop() {
            tracing::debug!(%peer, "peer's queue is full; dropping its session");
            self.streams.close(&peer);
            self.on_upload_stalled(peer);
            self.writer_ended(peer);
        }
        while let Some(peer) = self.dead_writers.pop() {
            self.writer_ended(peer);
        }
    }

    /// Drops `peer` from every swarm (a peer that left, or one that will not
    /// take a session stream: a new connection brings it back as a probe).
    pub(super) fn leave_swarms(&mut self, peer: PeerId) {
        let now = Instant::now();
        let ids: Vec<ContentId> = self.contents.keys().copied().collect();
        for id in ids {
            if let Some(a) = self.contents.get_mut(&id).and_then(Content::active_mut) {
                a.transfer.handle_peer_disconnected(now, peer);
            }
            self.drive(id);
        }
    }

    /// Our stream to `peer` is gone: uploads on it end, asks on it fail, and
    /// what we sent it may not have arrived (asking again is no offence).
    pub(super) fn writer_ended(&mut self, peer: PeerId) {
        for c in self.contents.values_mut() {
            if let Some(a) = c.active_mut() {
                a.transfer.handle_session_reset(peer);
            }
        }
        if self.uploads.finish_peer(&peer) > 0 {
            let uploads = &self.uploads;
            self.delivering.retain(|token, _| uploads.is_active(token));
            self.pump_uploads();
        }
        for what in self.sessions.writer_ended(&peer) {
            self.ask_failed(peer, what);
        }
    }

    /// `peer`'s stream to us is gone: its answers will not come.
    fn reader_ended(&mut self, peer: PeerId) {
        for what in self.sessions.reader_ended(&peer) {
            self.ask_failed(peer, what);
        }
    }

    /// Both directions of `peer`'s session are over.
    pub(super) fn end_session(&mut self, peer: PeerId) {
        self.writer_ended(peer);
        self.reader_ended(peer);
    }

    fn on_message(&mut self, peer: PeerId, msg: Message, leaf: Option<Hash>) {
        let now = Instant::now();
        match msg {
            Message::Have { id, .. } | Message::Gained { id, .. } => {
                self.on_have(now, peer, id, &msg)
            }
            Message::Unknown { id } => {
                self.sessions.heard_from(now, peer);
                // If it joins again, it hears our holdings whole.
                self.sessions.forget_told(&peer, &id);
                if let Some(c) = self.contents.get_mut(&id) {
                    c.providers.remove(&peer);
                    if let Some(a) = c.active_mut() {
                        a.transfer.handle_peer_disconnected(now, peer);
                    }
                }
                self.drive(id);
            }
            Message::Ask { rid, ask } => {
                self.sessions.heard_from(now, peer);
                self.on_ask(peer, rid, ask);
            }
            Message::Answer { rid, answer } => match self.sessions.answered(now, peer, rid) {
                Some(what) => self.on_answer(now, peer, what, answer, leaf),
                // Late (given up already): nothing to do.
                None => tracing::debug!(%peer, rid, "answer to no outstanding ask"),
            },
        }
    }

    fn on_have(&mut self, now: Instant, peer: PeerId, id: ContentId, msg: &Message) {
        let Some(c) = self.contents.get_mut(&id) else {
            self.sessions.heard_from(now, peer);
            self.send(peer, Outgoing::Message(Message::Unknown { id }), None);
            return;
        };
        let a = match &mut c.phase {
            Phase::Active(a) => a,
            phase => {
                // Not exchanging yet: the peer drops us until we probe it once active
                // (then both sides start over with whole haves).
                let searching = matches!(phase, Phase::Searching { .. });
                self.sessions.heard_from(now, peer);
                self.send(peer, Outgoing::Message(Message::Unknown { id }), None);
                if searching {
                    // A member of the swarm: it may have the manifest.
                    self.add_swarm_peer(id, peer);
                }
                return;
            }
        };
        let chunks = a.transfer.manifest().chunk_count();
        match self.sessions.read_have(now, peer, chunks, msg) {
            Ok(info) => {
                if a.transfer.handle_have(now, peer, &info).is_err() {
                    // Refused (banned, or no room for more peers): say so.
                    self.send(peer, Outgoing::Message(Message::Unknown { id }), None);
                }
            }
            Err(HaveError::Malformed) => {
                tracing::warn!(%peer, "banning peer: malformed have");
                self.ban(peer);
                return;
            }
            Err(HaveError::NoBase) => {
                // We missed its whole have (we were not exchanging yet): make it start over.
                tracing::debug!(%peer, %id, "have diff without a base; asking for a restart");
                self.send(peer, Outgoing::Message(Message::Unknown { id }), None);
                return;
            }
        }
        self.drive(id);
    }

    fn on_answer(
        &mut self,
        now: Instant,
        peer: PeerId,
        what: Pending,
        answer: Answer,
        leaf: Option<Hash>,
    ) {
        match what {
            Pending::Manifest(id) => {
                self.limits.manifest_done(&peer);
                self.on_manifest_answer(peer, id, answer);
            }
            Pending::Chunk(id, index) => {
                let Some(a) = self.contents.get_mut(&id).and_then(Content::active_mut) else {
                    return;
                };
                match answer {
                    Answer::Chunk { data, proof, .. } => {
                        self.metrics.downloaded(id, data.len() as u64);
                        let leaf = leaf.unwrap_or_else(|| protocol::merkle::hash_leaf(&data));
                        // Verified against the index we asked for, whatever the answer claims.
                        match a.transfer.handle_chunk_hashed(
                            now,
                            peer,
                            index,
                            data.len(),
                            leaf,
                            &proof,
                        ) {
                            Ok(ChunkVerdict::Store) => {
                                self.metrics.chunk_verified();
                                let storage = a.storage.clone();
                                off_loop(&self.io_tx, move || IoDone::Written {
                                    id,
                                    index,
                                    result: with_storage(&storage, |s| s.write_chunk(index, &data)),
                                });
                            }
                            Ok(ChunkVerdict::Duplicate) => self.metrics.chunk_duplicate(),
                            Err(e) => {
                                if matches!(e, TransferError::BadChunk(_)) {
                                    self.metrics.chunk_rejected();
                                }
                                tracing::warn!(%peer, index, "rejected chunk: {e}");
                            }
                        }
                    }
                    Answer::Choked => a.transfer.handle_choked(now, peer, index),
                    Answer::DontHave => a.transfer.handle_dont_have(now, peer, index),
                    _ => a.transfer.handle_request_failed(now, peer, index),
                }
                self.drive(id);
            }
            Pending::Peers(id) => {
                if let Answer::Peers { peers } = answer {
                    self.on_peer_records(id, peers);
                }
            }
        }
    }

    fn on_manifest_answer(&mut self, peer: PeerId, id: ContentId, answer: Answer) {
        let Some(c) = self.contents.get_mut(&id) else {
            return;
        };
        let Phase::Searching {
            checking, asked, ..
        } = &mut c.phase
        else {
            return;
        };
        let Answer::Manifest { bytes } = answer else {
            // Not (yet) holding it, e.g. still searching itself: ask again on a later round.
            asked.remove(&peer);
            return;
        };
        if *checking {
            // One check at a time; this peer is asked again if that one fails.
            asked.remove(&peer);
            return;
        }
        *checking = true;
        // Hashing and validating up to 8 MiB is kept off the event loop.
        off_loop(&self.io_tx, move || IoDone::ManifestChecked {
            id,
            peer,
            result: Manifest::from_bytes_for(&id, &bytes),
        });
    }
}
